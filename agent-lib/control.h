/* The control socket: a unix stream socket (mode 0600) on the daemon's
 * loop, speaking JSON lines.  A client sends one request line
 * ({"cmd": "status"} ...) and reads one response line; the connection
 * then closes.  Peers are checked with SO_PEERCRED: only root and the
 * daemon's own uid are served; anyone else gets an error line.
 *
 * The handler may answer at once or later (a reload answers when it is
 * done) through control_reply().  The server owns its connections; a
 * ControlRequest stays valid until it is answered or the server frees it
 * (then control_request_cancelled() tells the owner not to answer). */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <sys/types.h>
#include <uv.h>

typedef struct ControlServer ControlServer;
typedef struct ControlRequest ControlRequest;

/* request is borrowed for the call; answer through control_reply(). */
typedef void (*ControlHandler)(ControlRequest *req, json_t *request, void *userdata);
/* A client that was refused (not root, not our uid): for the owner's log. */
typedef void (*ControlRefused)(uid_t uid, pid_t pid, void *userdata);

int control_new(uv_loop_t *loop, const char *path, ControlHandler handler, ControlRefused refused, void *userdata,
                ControlServer **ret, char **ret_error);
/* Closes the socket and every connection (pending requests are dropped),
 * unlinks the path. */
void control_free(ControlServer *s);

/* Sends response (a JSON object, reference stolen) and closes. */
void control_reply(ControlRequest *req, json_t *response);
uid_t control_request_uid(const ControlRequest *req);

/* Client side (the CLI): connects, sends request, waits up to timeout_ms
 * for the response line.  Returns 0 or -errno; *ret_error explains. */
int control_call(const char *path, json_t *request, int timeout_ms, json_t **ret_response, char **ret_error);
