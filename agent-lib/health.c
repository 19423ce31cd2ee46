/* See health.h. */
#include "health.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>

#include "httpconn.h"
#include "log.h"

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
        bool closing;
        unsigned pending_closes;
};

struct Conn {
        uv_tcp_t tcp;
        uv_timer_t timer;
        HealthServer *h;
        HttpConn http;
        Conn *prev, *next;
        unsigned handles; /* open handles; freed at 0 */
        bool closing;
        bool shutting_down;
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
}

static void on_timeout(uv_timer_t *t) {
        Conn *c = t->data;
        c->h->stats.timed_out++;
        conn_close(c);
}

static void arm_timer(Conn *c) {
        uint64_t ms = httpconn_in_request(&c->http) ? HEALTH_HEADER_TIMEOUT_MS : HEALTH_IDLE_TIMEOUT_MS;
        uv_timer_start(&c->timer, on_timeout, ms, 0);
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

static void on_write(uv_write_t *req, int status) {
        WriteReq *w = (WriteReq *) req;
        Conn *c = w->c;
        bool close_after = w->close_after;
        free(w);
        if (status < 0)
                conn_close(c);
        else if (close_after)
                finish_close(c);
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

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
        (void) suggested;
        Conn *c = handle->data;
        *buf = uv_buf_init(c->rbuf, sizeof c->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
        Conn *c = s->data;
        Buf *out = &c->h->out;
        if (n == 0 || c->closing || c->shutting_down)
                return;
        if (n < 0) {
                conn_close(c);
                return;
        }
        out->len = 0;
        unsigned before = c->http.requests;
        bool close = httpconn_feed(&c->http, buf->base, (size_t) n, out);
        if (c->http.error_status || (close && c->http.requests == before))
                c->h->stats.rejected++;
        send_out(c, out, close);
        if (!c->closing && !close)
                arm_timer(c);
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
        c->tcp.data = c->timer.data = c;
        c->handles = 2;
        h->pending_closes++;
        if (uv_accept(server, (uv_stream_t *) &c->tcp) < 0) {
                c->closing = true;
                uv_close((uv_handle_t *) &c->tcp, conn_handle_closed);
                uv_close((uv_handle_t *) &c->timer, conn_handle_closed);
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
        arm_timer(c);
        uv_read_start((uv_stream_t *) &c->tcp, on_alloc, on_read);
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
