/* The control socket: a unix stream socket (mode 0600) on the daemon's
 * loop, speaking JSON lines.  A client sends one request line
 * ({"cmd": "status"} ...) and reads one response line; the connection
 * then closes.  Peers are checked with SO_PEERCRED: only root and the
 * daemon's own uid are served; anyone else gets an error line.  A request
 * is at most 4 KiB and must arrive within 5 s of the connection; an
 * answer must be read within 5 s; at most 64 connections are open.
 *
 * Every response carries "exit": the exit code the CLI ends with (0, or a
 * sysexits.h code: 77 refused, 76 a malformed request, 70 a failure);
 * control_reply() adds it from "ok" when the owner does not.  A client
 * always gets an answer: a response that cannot be encoded (a string
 * that is not UTF-8) is sent with the bad bytes replaced by U+FFFD, and a
 * NULL response (a json_pack that failed) becomes an error answer.
 *
 * The handler may answer at once or later (a reload answers when it is
 * done) through control_reply().  The server owns its connections; a
 * ControlRequest stays valid until it is answered or the server is freed.
 *
 * The async contract (README): the handler and the refused callback never
 * run from control_new() or control_free(); control_free() drops pending
 * requests silently (no callback during or after it; their clients see
 * the connection close) and accepts NULL; after it the owner must forget
 * every ControlRequest it still holds.  The client side is
 * control_client.h. */
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

/* Sends response (a JSON object, reference stolen; NULL answers with an
 * error) and closes.  Ignored on a request already answered. */
void control_reply(ControlRequest *req, json_t *response);
uid_t control_request_uid(const ControlRequest *req);

/* One request line (without its newline) as the server reads it: a JSON
 * object with a "cmd" string (caller decrefs), else NULL and *ret_error
 * says what is wrong.  Public for the fuzzer. */
json_t *control_parse_request(const char *line, size_t len, const char **ret_error);

/* Outside text (an error from AWS, a tag) as a JSON string for a
 * response: bytes that are not UTF-8 become U+FFFD; NULL gives null.
 * Never NULL unless out of memory. */
json_t *control_json_string(const char *s);
json_t *control_json_stringn(const char *s, size_t len);
