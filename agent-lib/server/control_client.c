/* See control_client.h. */
#include "server/control_client.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sysexits.h>
#include <unistd.h>

#include "basic/clock.h"
#include "basic/util.h"

/* A status is a few KiB; anything near this is not an answer. */
#define CONTROL_MAX_RESPONSE (4u << 20)


static int64_t now_ms(void) {
        return (int64_t) (clock_usec() / USEC_PER_MSEC);
}

int control_call(const char *path, json_t *request, int timeout_ms, json_t **ret_response, char **ret_error) {
        *ret_error = NULL;
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(path) >= sizeof sa.sun_path)
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
                int e = errno;
                close(fd);
                if (e == ENOENT || e == ECONNREFUSED)
                        *ret_error = strdup_printf("cannot reach the agent at %s: %s (is anb-agent running?)", path,
                                                   strerror(e));
                else
                        *ret_error = strdup_printf("cannot reach the agent at %s: %s", path, strerror(e));
                return -e;
        }
        char *text = json_dumps(request, JSON_COMPACT);
        Buf out = {0};
        int r = text ? 0 : -ENOMEM;
        if (r >= 0)
                r = buf_printf(&out, "%s\n", text);
        free(text);
        /* The daemon may answer (a refusal) and close before reading: a
         * failed send is not the end, the answer is still to be read. */
        for (size_t off = 0; r >= 0 && off < out.len;) {
                ssize_t k = send(fd, out.data + off, out.len - off, MSG_NOSIGNAL);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        break;
                off += (size_t) k;
        }
        buf_deinit(&out);
        Buf in = {0};
        int64_t deadline = now_ms() + timeout_ms;
        while (r >= 0) {
                int64_t left = deadline - now_ms();
                if (left <= 0) {
                        r = -ETIMEDOUT;
                        *ret_error = strdup_printf("no answer from the agent within %d s", timeout_ms / 1000);
                        break;
                }
                struct pollfd p = {.fd = fd, .events = POLLIN};
                int k = poll(&p, 1, (int) left);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0) {
                        r = -errno;
                        break;
                }
                if (k == 0)
                        continue;
                char chunk[4096];
                ssize_t n = read(fd, chunk, sizeof chunk);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        r = -errno;
                        break;
                }
                if (n == 0)
                        break;
                if (in.len + (size_t) n > CONTROL_MAX_RESPONSE) {
                        r = -EMSGSIZE;
                        *ret_error = strdup("the agent's answer is too long");
                        break;
                }
                buf_append(&in, chunk, (size_t) n);
                if (memchr(chunk, '\n', (size_t) n))
                        break;
        }
        close(fd);
        if (r < 0) {
                buf_deinit(&in);
                return r;
        }
        json_t *resp = in.len ? json_loadb(in.data, in.len, JSON_DISABLE_EOF_CHECK, NULL) : NULL;
        buf_deinit(&in);
        if (!json_is_object(resp)) {
                json_decref(resp);
                *ret_error = strdup("the agent closed the connection without an answer");
                return -EPROTO;
        }
        *ret_response = resp;
        return 0;
}

int control_response_exit(const json_t *response) {
        json_t *e = json_object_get(response, "exit");
        if (json_is_integer(e) && json_integer_value(e) >= 0 && json_integer_value(e) <= 255)
                return (int) json_integer_value(e);
        return json_is_false(json_object_get(response, "ok")) ? EX_SOFTWARE : 0;
}
