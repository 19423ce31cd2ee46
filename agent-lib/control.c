/* See control.h. */
#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define CONTROL_MAX_REQUEST 4096
#define CONTROL_READ_TIMEOUT_MS 5000

struct ControlServer {
        uv_loop_t *loop;
        uv_pipe_t pipe;
        char *path;
        ControlHandler handler;
        ControlRefused refused;
        void *userdata;
        ControlRequest *conns;
        bool closing;
        unsigned pending_closes;
};

struct ControlRequest {
        ControlServer *s;
        uv_pipe_t pipe;
        uv_timer_t timer;
        unsigned handles;
        Buf in;
        uid_t uid;
        bool answered;  /* reply sent or being sent */
        bool dispatched;
        bool closing;
        ControlRequest *prev, *next;
        char rbuf[1024];
};

static void server_maybe_free(ControlServer *s) {
        if (s->closing && s->pending_closes == 0) {
                free(s->path);
                free(s);
        }
}

static void req_closed(uv_handle_t *h) {
        ControlRequest *r = h->data;
        if (--r->handles > 0)
                return;
        ControlServer *s = r->s;
        buf_deinit(&r->in);
        free(r);
        s->pending_closes--;
        server_maybe_free(s);
}

static void req_close(ControlRequest *r) {
        if (r->closing)
                return;
        r->closing = true;
        ControlServer *s = r->s;
        if (r->prev)
                r->prev->next = r->next;
        else if (s->conns == r)
                s->conns = r->next;
        if (r->next)
                r->next->prev = r->prev;
        uv_close((uv_handle_t *) &r->pipe, req_closed);
        uv_close((uv_handle_t *) &r->timer, req_closed);
}

typedef struct WriteCtx {
        uv_write_t w;
        ControlRequest *r;
        char *data;
} WriteCtx;

static void on_written(uv_write_t *w, int status) {
        (void) status;
        WriteCtx *c = (WriteCtx *) w;
        req_close(c->r);
        free(c->data);
        free(c);
}

void control_reply(ControlRequest *r, json_t *response) {
        if (r->answered || r->closing) {
                json_decref(response);
                return;
        }
        r->answered = true;
        char *text = json_dumps(response, JSON_COMPACT);
        json_decref(response);
        WriteCtx *c = calloc(1, sizeof(WriteCtx));
        size_t n = text ? strlen(text) : 0;
        char *line = text ? realloc(text, n + 2) : NULL;
        if (!c || !line) {
                free(c);
                free(line ? line : text);
                req_close(r);
                return;
        }
        line[n] = '\n';
        line[n + 1] = 0;
        c->r = r;
        c->data = line;
        uv_buf_t b = uv_buf_init(line, (unsigned) n + 1);
        if (uv_write(&c->w, (uv_stream_t *) &r->pipe, &b, 1, on_written) < 0) {
                free(line);
                free(c);
                req_close(r);
        }
}

uid_t control_request_uid(const ControlRequest *r) {
        return r->uid;
}

static void reply_error(ControlRequest *r, const char *msg) {
        control_reply(r, json_pack("{s:b, s:s}", "ok", 0, "error", msg));
}

static void on_timeout(uv_timer_t *t) {
        ControlRequest *r = t->data;
        if (!r->dispatched)
                req_close(r);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
        (void) suggested;
        ControlRequest *r = h->data;
        *buf = uv_buf_init(r->rbuf, sizeof r->rbuf);
}

static void dispatch(ControlRequest *r) {
        uv_read_stop((uv_stream_t *) &r->pipe);
        uv_timer_stop(&r->timer);
        r->dispatched = true;
        json_error_t e;
        json_t *req = json_loadb(r->in.data, r->in.len, 0, &e);
        if (!json_is_object(req) || !json_is_string(json_object_get(req, "cmd"))) {
                json_decref(req);
                reply_error(r, "a request is one JSON object with a \"cmd\" string");
                return;
        }
        r->s->handler(r, req, r->s->userdata);
        json_decref(req);
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
        ControlRequest *r = st->data;
        if (n < 0) {
                if (!r->dispatched)
                        req_close(r);
                return;
        }
        if (n == 0 || r->dispatched)
                return;
        const char *nl = memchr(buf->base, '\n', (size_t) n);
        size_t take = nl ? (size_t) (nl - buf->base) : (size_t) n;
        if (r->in.len + take > CONTROL_MAX_REQUEST) {
                r->dispatched = true;
                reply_error(r, "request too long");
                return;
        }
        buf_append(&r->in, buf->base, take);
        if (nl)
                dispatch(r);
}

static void on_connection(uv_stream_t *server, int status) {
        ControlServer *s = server->data;
        if (status < 0)
                return;
        ControlRequest *r = calloc(1, sizeof(ControlRequest));
        if (!r)
                return;
        r->s = s;
        uv_pipe_init(s->loop, &r->pipe, 0);
        uv_timer_init(s->loop, &r->timer);
        r->pipe.data = r->timer.data = r;
        r->handles = 2;
        s->pending_closes++;
        r->next = s->conns;
        if (s->conns)
                s->conns->prev = r;
        s->conns = r;
        if (uv_accept(server, (uv_stream_t *) &r->pipe) < 0) {
                req_close(r);
                return;
        }
        uv_os_fd_t fd;
        struct ucred cred;
        socklen_t len = sizeof cred;
        if (uv_fileno((uv_handle_t *) &r->pipe, &fd) < 0 ||
            getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
                req_close(r);
                return;
        }
        r->uid = cred.uid;
        if (cred.uid != 0 && cred.uid != getuid()) {
                if (s->refused)
                        s->refused(cred.uid, cred.pid, s->userdata);
                r->dispatched = true;
                reply_error(r, "permission denied: only root may control anb-agent");
                return;
        }
        uv_timer_start(&r->timer, on_timeout, CONTROL_READ_TIMEOUT_MS, 0);
        uv_read_start((uv_stream_t *) &r->pipe, on_alloc, on_read);
}

static void listener_closed(uv_handle_t *h) {
        ControlServer *s = h->data;
        s->pending_closes--;
        server_maybe_free(s);
}

static int ensure_dir(const char *path) {
        _cleanup_free_ char *dir = strdup(path);
        if (!dir)
                return -ENOMEM;
        char *slash = strrchr(dir, '/');
        if (!slash || slash == dir)
                return 0;
        *slash = 0;
        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

int control_new(uv_loop_t *loop, const char *path, ControlHandler handler, ControlRefused refused, void *userdata,
                ControlServer **ret, char **ret_error) {
        *ret_error = NULL;
        if (strlen(path) >= sizeof(((struct sockaddr_un *) 0)->sun_path)) {
                *ret_error = strdup_printf("[control] socket path is too long: %s", path);
                return -ENAMETOOLONG;
        }
        int r = ensure_dir(path);
        if (r < 0) {
                *ret_error = strdup_printf("cannot create the directory of %s: %s", path, strerror(-r));
                return r;
        }
        ControlServer *s = calloc(1, sizeof(ControlServer));
        if (!s || !(s->path = strdup(path))) {
                free(s);
                return -ENOMEM;
        }
        s->loop = loop;
        s->handler = handler;
        s->refused = refused;
        s->userdata = userdata;
        uv_pipe_init(loop, &s->pipe, 0);
        s->pipe.data = s;
        s->pending_closes = 1;
        /* A socket left by a previous run that died: nobody answers on it. */
        unlink(path);
        mode_t old = umask(0177);
        r = uv_pipe_bind(&s->pipe, path);
        umask(old);
        if (r == 0)
                r = chmod(path, 0600) < 0 ? -errno : 0;
        if (r == 0)
                r = uv_listen((uv_stream_t *) &s->pipe, 16, on_connection);
        if (r < 0) {
                *ret_error = strdup_printf("cannot listen on %s: %s", path, strerror(-r));
                s->closing = true;
                uv_close((uv_handle_t *) &s->pipe, listener_closed);
                return r;
        }
        *ret = s;
        return 0;
}

void control_free(ControlServer *s) {
        if (!s)
                return;
        while (s->conns)
                req_close(s->conns);
        unlink(s->path);
        s->closing = true;
        uv_close((uv_handle_t *) &s->pipe, listener_closed);
}

/* ---- client ------------------------------------------------------------ */

static int64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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
