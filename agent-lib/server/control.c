/* See control.h. */
#include "server/control.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sysexits.h>
#include <unistd.h>

#include "basic/log.h"
#include "basic/util.h"

#define CONTROL_MAX_REQUEST 4096
/* From accept to the request's newline, and from the answer to its last
 * byte written: a deadline each, never extended by a read. */
#define CONTROL_READ_TIMEOUT_MS 5000
#define CONTROL_WRITE_TIMEOUT_MS 5000
/* Connections open at once (waiting reloads included); more are closed
 * as they are accepted. */
#define CONTROL_MAX_CONNECTIONS 64

struct ControlServer {
        uv_loop_t *loop;
        uv_pipe_t pipe;
        char *path;
        ControlHandler handler;
        ControlRefused refused;
        void *userdata;
        ControlRequest *conns;
        unsigned n_conns;
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
        s->n_conns--;
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

/* Length of the valid UTF-8 sequence at p (as jansson accepts it: no
 * overlong forms, no surrogates, nothing above U+10FFFF, no NUL), or 0. */
static size_t utf8_sequence(const unsigned char *p, size_t left) {
        unsigned char c = p[0];
        if (c == 0)
                return 0;
        if (c < 0x80)
                return 1;
        size_t n = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (n == 0 || n > left)
                return 0;
        uint32_t cp = c & (0x7F >> n);
        for (size_t i = 1; i < n; i++) {
                if ((p[i] & 0xC0) != 0x80)
                        return 0;
                cp = (cp << 6) | (p[i] & 0x3F);
        }
        if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
                return 0;
        return n;
}

json_t *control_json_stringn(const char *s, size_t len) {
        if (!s)
                return json_null();
        Buf b = {0};
        const unsigned char *p = (const unsigned char *) s;
        for (size_t i = 0; i < len;) {
                size_t n = utf8_sequence(p + i, len - i);
                if (n > 0) {
                        buf_append(&b, s + i, n);
                        i += n;
                } else {
                        buf_puts(&b, "\xEF\xBF\xBD"); /* U+FFFD */
                        i++;
                }
        }
        json_t *j = json_stringn(b.data ? b.data : "", b.len);
        buf_deinit(&b);
        return j;
}

json_t *control_json_string(const char *s) {
        return control_json_stringn(s, s ? strlen(s) : 0);
}

/* A copy of v whose strings and keys are valid UTF-8. */
static json_t *sanitized(json_t *v) {
        if (json_is_string(v))
                return control_json_stringn(json_string_value(v), json_string_length(v));
        if (json_is_array(v)) {
                json_t *a = json_array();
                size_t i;
                json_t *e;
                json_array_foreach(v, i, e) json_array_append_new(a, sanitized(e));
                return a;
        }
        if (json_is_object(v)) {
                json_t *o = json_object();
                const char *k;
                json_t *e;
                json_object_foreach(v, k, e) {
                        json_t *key = control_json_string(k);
                        const char *kv = json_string_value(key);
                        json_object_set_new(o, kv ? kv : "?", sanitized(e));
                        json_decref(key);
                }
                return o;
        }
        return json_incref(v);
}

/* The response as one line; never NULL unless out of memory. */
static char *reply_text(json_t *response) {
        char *text = json_dumps(response, JSON_COMPACT);
        if (!text) {
                /* A string that is not UTF-8 (made with a _nocheck call). */
                json_t *clean = sanitized(response);
                text = json_dumps(clean, JSON_COMPACT);
                json_decref(clean);
        }
        if (!text)
                text = strdup("{\"ok\":false,\"error\":\"the agent could not encode its answer\",\"exit\":70}");
        return text;
}

static void on_write_timeout(uv_timer_t *t) {
        req_close(t->data);
}

void control_reply(ControlRequest *r, json_t *response) {
        if (!r || r->answered || r->closing) {
                json_decref(response);
                return;
        }
        r->answered = true;
        /* The owner failed to build its answer (json_pack returns NULL for
         * a string that is not UTF-8): the client still gets one. */
        if (!response)
                response = json_pack("{s:b, s:s, s:i}", "ok", 0, "error",
                                     "the agent could not build its answer (see its log)", "exit", EX_SOFTWARE);
        if (json_is_object(response) && !json_object_get(response, "exit"))
                json_object_set_new(response, "exit",
                                    json_integer(json_is_false(json_object_get(response, "ok")) ? EX_SOFTWARE : 0));
        char *text = reply_text(response);
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
                return;
        }
        /* A client that does not read its answer does not hold the
         * connection. */
        uv_timer_start(&r->timer, on_write_timeout, CONTROL_WRITE_TIMEOUT_MS, 0);
}

uid_t control_request_uid(const ControlRequest *r) {
        return r->uid;
}

static void reply_error(ControlRequest *r, int exit_code, const char *msg) {
        control_reply(r, json_pack("{s:b, s:s, s:i}", "ok", 0, "error", msg, "exit", exit_code));
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

json_t *control_parse_request(const char *line, size_t len, const char **ret_error) {
        if (len > CONTROL_MAX_REQUEST) {
                *ret_error = "request too long";
                return NULL;
        }
        json_t *req = json_loadb(line, len, 0, NULL);
        if (!json_is_object(req) || !json_is_string(json_object_get(req, "cmd"))) {
                json_decref(req);
                *ret_error = "a request is one JSON object with a \"cmd\" string";
                return NULL;
        }
        return req;
}

static void dispatch(ControlRequest *r) {
        uv_read_stop((uv_stream_t *) &r->pipe);
        uv_timer_stop(&r->timer);
        r->dispatched = true;
        const char *error;
        json_t *req = control_parse_request(r->in.data, r->in.len, &error);
        if (!req) {
                reply_error(r, EX_PROTOCOL, error);
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
                uv_read_stop(st);
                uv_timer_stop(&r->timer);
                reply_error(r, EX_PROTOCOL, "request too long");
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
        s->n_conns++;
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
        if (s->n_conns > CONTROL_MAX_CONNECTIONS) {
                req_close(r);
                return;
        }
        r->uid = cred.uid;
        if (cred.uid != 0 && cred.uid != getuid()) {
                if (s->refused)
                        s->refused(cred.uid, cred.pid, s->userdata);
                r->dispatched = true;
                reply_error(r, EX_NOPERM, "permission denied: only root may control anb-agent");
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
