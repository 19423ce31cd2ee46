/* sd-bus on a libuv loop (the contract of sd_bus_get_fd(3)): before each
 * loop iteration a uv_prepare_t re-arms a uv_poll_t with
 * sd_bus_get_events() (POLLOUT only when sd-bus has output queued) and a
 * uv_timer_t from sd_bus_get_timeout() (absolute CLOCK_MONOTONIC µs,
 * rounded up to whole ms); fd and timer callbacks run sd_bus_process()
 * until it returns 0.  Model: flux-core's src/modules/sdbus/watcher.c.
 *
 * A BusLoop is embedded by its owner (transparent, _init/_deinit); it holds
 * a reference on the bus.  on_disconnect runs once when the connection
 * fails or closes; the owner then deinits and may reconnect.
 *
 * The async contract (README): no callback runs from busloop_init or
 * busloop_deinit; after busloop_deinit, on_disconnect never runs and no
 * sd-bus callback is dispatched by this BusLoop; on_closed runs later,
 * from the loop, once the handles are closed. */
#pragma once

#include <stdbool.h>
#include <systemd/sd-bus.h>
#include <uv.h>

typedef struct BusLoop BusLoop;
typedef void (*BusLoopDisconnect)(BusLoop *b, int error, void *userdata);
typedef void (*BusLoopClosed)(BusLoop *b, void *userdata);

struct BusLoop {
        uv_loop_t *loop;
        sd_bus *bus;
        uv_poll_t poll;
        uv_timer_t timer;
        uv_prepare_t prepare;
        int fd;
        int events;
        unsigned open_handles;
        bool disconnected;
        BusLoopDisconnect on_disconnect;
        BusLoopClosed on_closed;
        void *userdata;
};

/* Attaches bus (a started connection) to loop. */
int busloop_init(BusLoop *b, uv_loop_t *loop, sd_bus *bus, BusLoopDisconnect on_disconnect, void *userdata);
/* Closes the bus without flushing (never blocks on a peer that does not
 * read) and closes the handles; on_closed (may be NULL) runs from the loop
 * when the handles' memory is no longer used.  A no-op on a BusLoop that
 * is not attached. */
void busloop_deinit(BusLoop *b, BusLoopClosed on_closed);

/* Opens the system bus (honours DBUS_SYSTEM_BUS_ADDRESS) or the user bus. */
int bus_open(bool user, sd_bus **ret);
