/* The CLI side of the control socket (see control.h for the protocol):
 * one blocking request/response exchange, for `anb-agent reload | status
 * | drain`.  It owns nothing between calls and never runs on the daemon's
 * loop (it blocks, up to its timeout). */
#pragma once

#include <jansson.h>

/* Connects to path, sends request (borrowed) as one line, waits up to
 * timeout_ms for the response line.  Returns 0 and *ret_response (an
 * object), or -errno and *ret_error saying what happened. */
int control_call(const char *path, json_t *request, int timeout_ms, json_t **ret_response, char **ret_error);

/* The exit code the daemon chose for this response ("exit"); for a
 * daemon that sends none: 0, or EX_SOFTWARE when "ok" is false. */
int control_response_exit(const json_t *response);
