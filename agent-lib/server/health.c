/* See health.h. */
#include "server/health.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>

#include "server/httpconn.h"
#include "basic/log.h"

typedef struct Conn Conn;

struct HealthServer {
        uv_loop_t *loop;
        uv_tcp_t listener;
        unsigned max_connections;
        HealthMetrics metrics;
        void *userdata;
        char *body;
        size_t body_len;
        int status;
        Conn *oldest, *newest; /* by accept time */
        HealthStats stats;
        Buf out;     /* responses being produced (reused per read) */
        Buf metrics_buf; /* the /metrics body (reused) */
        unsigned header_timeout_ms, idle_timeout_ms;
        bool closing;
        unsigned pending_closes;
};

struct Conn {
        uv_tcp_t tcp;
        uv_timer_t timer; /* the one deadline: a request's, or idle */
        uv_idle_t resume; /* feeds what is left of rbuf on the next turn */
        HealthServer *h;
        HttpConn http;
        Conn *prev, *next;
        unsigned handles; /* open handles; freed at 0 */
        bool closing;
        bool shutting_down;
        bool reading;
        bool throttled; /* stopped for back-pressure */
        size_t rpos, rlen; /* rbuf[rpos..rlen) is read but not yet fed */
        char rbuf[4096];
};

static void server_maybe_free(HealthServer *h) {
        if (h->closing && h->pending_closes == 0) {
                free(h->body);
                buf_deinit(&h->out);
                buf_deinit(&h->metrics_buf);
                free(h);
        }
}

static void conn_handle_closed(uv_handle_t *handle) {
        Conn *c = handle->data;
        if (--c->handles > 0)
                return;
        HealthServer *h = c->h;
        free(c);
        h->pending_closes--;
        server_maybe_free(h);
}

static void conn_close(Conn *c) {
        if (c->closing)
                return;
        c->closing = true;
        HealthServer *h = c->h;
        if (c->prev)
                c->prev->next = c->next;
        else
                h->oldest = c->next;
        if (c->next)
                c->next->prev = c->prev;
        else
                h->newest = c->prev;
        h->stats.open--;
        uv_close((uv_handle_t *) &c->tcp, conn_handle_closed);
        uv_close((uv_handle_t *) &c->timer, conn_handle_closed);
        uv_close((uv_handle_t *) &c->resume, conn_handle_closed);
}

static void on_timeout(uv_timer_t *t) {
        Conn *c = t->data;
        c->h->stats.timed_out++;
        conn_close(c);
}

/* Deadlines move only when a request begins (it must be complete within
 * the header timeout of that first byte) or when the last one in flight
 * is answered (the next must begin within the idle timeout).  Bytes that
 * neither begin nor finish a request -- one more header byte, blank lines
 * between requests -- never extend either. */
static void arm_timer(Conn *c, unsigned begun_before, unsigned answered_before) {
        HealthServer *h = c->h;
        if (httpconn_in_request(&c->http)) {
                if (c->http.begun != begun_before)
                        uv_timer_start(&c->timer, on_timeout, h->header_timeout_ms, 0);
        } else if (c->http.requests != answered_before)
                uv_timer_start(&c->timer, on_timeout, h->idle_timeout_ms, 0);
}

static void route(void *userdata, const char *path, HttpReply *r) {
        HealthServer *h = userdata;
        h->stats.requests++;
        if (streq(path, "/health")) {
                r->status = h->status;
                r->content_type = "application/json";
                r->body = h->body;
                r->body_len = h->body_len;
                if (h->status == 200)
                        h->stats.probes_ok++;
                else
                        h->stats.probes_failing++;
        } else if (streq(path, "/health/live")) {
                r->status = 200;
                r->body = "ok\n";
                r->body_len = 3;
        } else if (streq(path, "/metrics") && h->metrics) {
                h->metrics_buf.len = 0;
                h->metrics(h->userdata, &h->metrics_buf);
                r->status = 200;
                r->content_type = "text/plain; version=0.0.4; charset=utf-8";
                r->body = h->metrics_buf.data ? h->metrics_buf.data : "";
                r->body_len = h->metrics_buf.len;
        } else
                r->status = 404;
}

typedef struct WriteReq {
        uv_write_t req;
        Conn *c;
        bool close_after;
        size_t len;
        char data[];
} WriteReq;

static void on_shutdown(uv_shutdown_t *req, int status) {
        (void) status;
        Conn *c = req->data;
        free(req);
        conn_close(c);
}

static void finish_close(Conn *c) {
        if (c->closing || c->shutting_down)
                return;
        uv_shutdown_t *req = malloc(sizeof *req);
        c->shutting_down = true;
        uv_read_stop((uv_stream_t *) &c->tcp);
        if (!req || uv_shutdown(req, (uv_stream_t *) &c->tcp, on_shutdown) < 0) {
                free(req);
                conn_close(c);
                return;
        }
        req->data = c;
}

static void conn_pump(Conn *c);

static void on_write(uv_write_t *req, int status) {
        WriteReq *w = (WriteReq *) req;
        Conn *c = w->c;
        bool close_after = w->close_after;
        free(w);
        if (status == UV_ECANCELED || c->closing)
                return;
        if (status < 0)
                conn_close(c);
        else if (close_after)
                finish_close(c);
        else
                conn_pump(c);
}

/* Sends out: try_write first (the usual case writes it all with no
 * allocation), queue a copy of what is left. */
static void send_out(Conn *c, const Buf *out, bool close_after) {
        size_t off = 0;
        if (out->len) {
                uv_buf_t b = uv_buf_init(out->data, (unsigned) out->len);
                int n = uv_try_write((uv_stream_t *) &c->tcp, &b, 1);
                if (n > 0)
                        off = (size_t) n;
                else if (n != UV_EAGAIN && n != UV_ENOSYS) {
                        conn_close(c);
                        return;
                }
        }
        if (off == out->len) {
                if (close_after)
                        finish_close(c);
                return;
        }
        WriteReq *w = malloc(sizeof(WriteReq) + out->len - off);
        if (!w) {
                conn_close(c);
                return;
        }
        w->c = c;
        w->close_after = close_after;
        w->len = out->len - off;
        memcpy(w->data, out->data + off, w->len);
        uv_buf_t b = uv_buf_init(w->data, (unsigned) w->len);
        if (uv_write(&w->req, (uv_stream_t *) &c->tcp, &b, 1, on_write) < 0) {
                free(w);
                conn_close(c);
        }
}

static void on_resume(uv_idle_t *idle);
static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
        (void) suggested;
        Conn *c = handle->data;
        *buf = uv_buf_init(c->rbuf, sizeof c->rbuf);
}

static size_t queued(const Conn *c) {
        return uv_stream_get_write_queue_size((const uv_stream_t *) &c->tcp);
}

/* Feeds one batch of what was read (at most HTTPCONN_MAX_ANSWERS_PER_FEED
 * answers), then decides: feed more on the next loop turn, read more, or
 * -- while the output not yet taken by the peer is over
 * HEALTH_MAX_QUEUED_OUTPUT -- neither, until on_write says it drained.
 * So a client that pipelines requests and never reads costs at most the
 * cap plus one batch of answers, and one connection cannot monopolise a
 * loop turn. */
static void conn_pump(Conn *c) {
        HealthServer *h = c->h;
        if (c->closing || c->shutting_down)
                return;
        if (c->rpos < c->rlen && queued(c) <= HEALTH_MAX_QUEUED_OUTPUT) {
                Buf *out = &h->out;
                out->len = 0;
                unsigned answered = c->http.requests, begun = c->http.begun;
                size_t used;
                bool close = httpconn_feed(&c->http, c->rbuf + c->rpos, c->rlen - c->rpos, out, &used);
                c->rpos += used;
                if (c->http.error_status || (close && c->http.requests == answered))
                        h->stats.rejected++;
                if (close)
                        c->rpos = c->rlen = 0;
                else
                        arm_timer(c, begun, answered);
                send_out(c, out, close);
                if (c->closing || c->shutting_down)
                        return;
                if (queued(c) > h->stats.max_queued)
                        h->stats.max_queued = queued(c);
        }
        bool pending = c->rpos < c->rlen;
        bool blocked = queued(c) > HEALTH_MAX_QUEUED_OUTPUT;
        if (!pending)
                c->rpos = c->rlen = 0;
        if (pending && !blocked)
                uv_idle_start(&c->resume, on_resume);
        else
                uv_idle_stop(&c->resume);
        if (!pending && !blocked) {
                if (!c->reading && uv_read_start((uv_stream_t *) &c->tcp, on_alloc, on_read) == 0)
                        c->reading = true;
        } else if (c->reading) {
                uv_read_stop((uv_stream_t *) &c->tcp);
                c->reading = false;
        }
        if (blocked && !c->throttled)
                h->stats.throttled++;
        c->throttled = blocked;
}

static void on_resume(uv_idle_t *idle) {
        conn_pump(idle->data);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
        Conn *c = s->data;
        (void) buf;
        if (n == 0 || c->closing || c->shutting_down)
                return;
        if (n < 0) {
                conn_close(c);
                return;
        }
        c->rpos = 0;
        c->rlen = (size_t) n;
        conn_pump(c);
}

static void evict_oldest(HealthServer *h) {
        Conn *victim = h->oldest;
        if (!victim)
                return;
        h->stats.evicted++;
        conn_close(victim);
}

static void on_connection(uv_stream_t *server, int status) {
        HealthServer *h = server->data;
        if (status < 0)
                return;
        Conn *c = calloc(1, sizeof(Conn));
        if (!c)
                return;
        c->h = h;
        uv_tcp_init(h->loop, &c->tcp);
        uv_timer_init(h->loop, &c->timer);
        uv_idle_init(h->loop, &c->resume);
        c->tcp.data = c->timer.data = c->resume.data = c;
        c->handles = 3;
        h->pending_closes++;
        if (uv_accept(server, (uv_stream_t *) &c->tcp) < 0) {
                c->closing = true;
                uv_close((uv_handle_t *) &c->tcp, conn_handle_closed);
                uv_close((uv_handle_t *) &c->timer, conn_handle_closed);
                uv_close((uv_handle_t *) &c->resume, conn_handle_closed);
                return;
        }
        if (h->stats.open >= h->max_connections)
                evict_oldest(h);
        c->prev = h->newest;
        if (h->newest)
                h->newest->next = c;
        else
                h->oldest = c;
        h->newest = c;
        h->stats.open++;
        h->stats.connections++;
        httpconn_init(&c->http, route, h);
        uv_tcp_nodelay(&c->tcp, 1);
        /* The first request must begin within the idle timeout. */
        uv_timer_start(&c->timer, on_timeout, h->idle_timeout_ms, 0);
        conn_pump(c);
}

int parse_listen_address(const char *listen, struct sockaddr_storage *ret) {
        char host[128];
        const char *colon = strrchr(listen, ':');
        if (!colon || colon == listen || (size_t) (colon - listen) >= sizeof host)
                return -EINVAL;
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (!colon[1] || *end || port < 0 || port > 65535)
                return -EINVAL;
        size_t n = (size_t) (colon - listen);
        memcpy(host, listen, n);
        host[n] = 0;
        memset(ret, 0, sizeof *ret);
        if (host[0] == '[' && n > 2 && host[n - 1] == ']') {
                host[n - 1] = 0;
                return uv_ip6_addr(host + 1, (int) port, (struct sockaddr_in6 *) ret) == 0 ? 0 : -EINVAL;
        }
        return uv_ip4_addr(host, (int) port, (struct sockaddr_in *) ret) == 0 ? 0 : -EINVAL;
}

static void listener_closed(uv_handle_t *handle) {
        HealthServer *h = handle->data;
        h->pending_closes--;
        server_maybe_free(h);
}

int health_new(uv_loop_t *loop, const char *listen, unsigned max_connections, HealthMetrics metrics,
               void *userdata, HealthServer **ret, char **ret_error) {
        struct sockaddr_storage addr;
        *ret_error = NULL;
        if (parse_listen_address(listen, &addr) < 0) {
                *ret_error = strdup_printf("[health] listen must be ADDR:PORT, not '%s'", listen);
                return -EINVAL;
        }
        HealthServer *h = calloc(1, sizeof(HealthServer));
        if (!h)
                return -ENOMEM;
        *h = (HealthServer) {
                .loop = loop,
                .max_connections = max_connections ? max_connections : HEALTH_MAX_CONNECTIONS,
                .metrics = metrics,
                .userdata = userdata,
                .status = 503,
                .header_timeout_ms = HEALTH_HEADER_TIMEOUT_MS,
                .idle_timeout_ms = HEALTH_IDLE_TIMEOUT_MS,
        };
        health_publish(h, 503, "{\"status\":\"starting\"}\n");
        uv_tcp_init(loop, &h->listener);
        h->listener.data = h;
        h->pending_closes = 1;
        int r = uv_tcp_bind(&h->listener, (struct sockaddr *) &addr, 0);
        if (r == 0)
                r = uv_listen((uv_stream_t *) &h->listener, 1024, on_connection);
        if (r < 0) {
                *ret_error = strdup_printf("cannot listen on %s: %s", listen, uv_strerror(r));
                h->closing = true;
                uv_close((uv_handle_t *) &h->listener, listener_closed);
                return -EADDRINUSE;
        }
        *ret = h;
        return 0;
}

void health_free(HealthServer *h) {
        if (!h)
                return;
        while (h->oldest)
                conn_close(h->oldest);
        h->closing = true;
        uv_close((uv_handle_t *) &h->listener, listener_closed);
}

int health_publish(HealthServer *h, int status, const char *json) {
        char *b = strdup(json);
        if (!b)
                return -ENOMEM;
        free(h->body);
        h->body = b;
        h->body_len = strlen(b);
        h->status = status;
        return 0;
}

void health_set_timeouts(HealthServer *h, unsigned header_ms, unsigned idle_ms) {
        h->header_timeout_ms = header_ms;
        h->idle_timeout_ms = idle_ms;
}

const HealthStats *health_stats(const HealthServer *h) {
        return &h->stats;
}

int health_port(const HealthServer *h) {
        struct sockaddr_storage a;
        int n = sizeof a;
        if (uv_tcp_getsockname(&h->listener, (struct sockaddr *) &a, &n) < 0)
                return -1;
        return a.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *) &a)->sin6_port)
                                       : ntohs(((struct sockaddr_in *) &a)->sin_port);
}
