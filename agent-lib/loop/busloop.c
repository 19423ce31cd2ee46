/* See busloop.h. */
#include "loop/busloop.h"

#include <errno.h>
#include <poll.h>
#include <time.h>

#include "basic/log.h"

static void process(BusLoop *b) {
        int r;
        if (b->disconnected)
                return;
        do
                r = sd_bus_process(b->bus, NULL);
        while (r > 0);
        if (r < 0 || !sd_bus_is_open(b->bus)) {
                b->disconnected = true;
                uv_poll_stop(&b->poll);
                uv_timer_stop(&b->timer);
                uv_prepare_stop(&b->prepare);
                if (b->on_disconnect)
                        b->on_disconnect(b, r < 0 ? r : -ECONNRESET, b->userdata);
        }
}

static void on_poll(uv_poll_t *p, int status, int events) {
        (void) status, (void) events;
        process(p->data);
}

static void on_timer(uv_timer_t *t) {
        process(t->data);
}

static uint64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

static void on_prepare(uv_prepare_t *p) {
        BusLoop *b = p->data;
        if (b->disconnected)
                return;
        int e = sd_bus_get_events(b->bus);
        if (e < 0) {
                process(b);
                return;
        }
        int events = ((e & POLLIN) ? UV_READABLE : 0) | ((e & POLLOUT) ? UV_WRITABLE : 0);
        if (events != b->events) {
                uv_poll_start(&b->poll, events, on_poll);
                b->events = events;
        }
        uint64_t usec;
        if (sd_bus_get_timeout(b->bus, &usec) < 0 || usec == UINT64_MAX) {
                uv_timer_stop(&b->timer);
                return;
        }
        uint64_t now = now_usec();
        uint64_t ms = usec > now ? (usec - now + 999) / 1000 : 0;
        uv_timer_start(&b->timer, on_timer, ms, 0);
}

int busloop_init(BusLoop *b, uv_loop_t *loop, sd_bus *bus, BusLoopDisconnect on_disconnect, void *userdata) {
        *b = (BusLoop) {.loop = loop, .on_disconnect = on_disconnect, .userdata = userdata};
        b->fd = sd_bus_get_fd(bus);
        if (b->fd < 0)
                return b->fd;
        int r = uv_poll_init(loop, &b->poll, b->fd);
        if (r < 0)
                return -EIO;
        b->bus = sd_bus_ref(bus);
        uv_timer_init(loop, &b->timer);
        uv_prepare_init(loop, &b->prepare);
        b->poll.data = b->timer.data = b->prepare.data = b;
        b->open_handles = 3;
        uv_prepare_start(&b->prepare, on_prepare);
        return 0;
}

static void handle_closed(uv_handle_t *h) {
        BusLoop *b = h->data;
        if (--b->open_handles == 0 && b->on_closed)
                b->on_closed(b, b->userdata);
}

void busloop_deinit(BusLoop *b, BusLoopClosed on_closed) {
        if (!b->bus)
                return;
        b->on_closed = on_closed;
        b->disconnected = true;
        /* Close the handles before the fd goes with the bus. */
        uv_close((uv_handle_t *) &b->poll, handle_closed);
        uv_close((uv_handle_t *) &b->timer, handle_closed);
        uv_close((uv_handle_t *) &b->prepare, handle_closed);
        /* Close without flushing: a peer that stopped reading (a hung or
         * dead bus) must not block the loop.  Whatever was still queued
         * is dropped with the connection. */
        sd_bus_close_unref(b->bus);
        b->bus = NULL;
}

int bus_open(bool user, sd_bus **ret) {
        return user ? sd_bus_open_user(ret) : sd_bus_open_system(ret);
}
