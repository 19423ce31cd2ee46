/* The health server's request handling (httpconn), table-driven: status
 * codes for good and hostile requests, every incomplete prefix, keep-alive
 * and pipelining, and input placed just before a PROT_NONE page so an
 * over-read crashes the test. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "basic/clock.h"
#include "server/health.h"
#include "server/httpconn.h"
#include "testutil.h"

static void route(void *ud, const char *path, HttpReply *r) {
        (void) ud;
        if (streq(path, "/health")) {
                r->status = 503;
                r->content_type = "application/json";
                r->body = "{\"status\":\"starting\"}";
                r->body_len = strlen(r->body);
        } else if (streq(path, "/health/live")) {
                r->status = 200;
                r->body = "ok\n";
                r->body_len = 3;
        }
}

/* Feeds req in one piece from a buffer that ends at a PROT_NONE page. */
static char *feed_guarded(const char *req, size_t len, bool *ret_close) {
        long page = sysconf(_SC_PAGESIZE);
        size_t pages = (len + (size_t) page - 1) / (size_t) page + 1;
        char *map = mmap(NULL, pages * (size_t) page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        ck_assert_ptr_ne(map, MAP_FAILED);
        char *guard = map + (pages - 1) * (size_t) page;
        ck_assert_int_eq(mprotect(guard, (size_t) page, PROT_NONE), 0);
        char *at = guard - len;
        memcpy(at, req, len);
        HttpConn c;
        Buf out = {0};
        httpconn_init(&c, route, NULL);
        *ret_close = httpconn_feed(&c, at, len, &out, NULL);
        munmap(map, pages * (size_t) page);
        if (!out.data)
                buf_puts(&out, "");
        return buf_steal(&out);
}

static int first_status(const char *resp) {
        int status = 0;
        sscanf(resp, "HTTP/1.1 %d", &status);
        return status;
}

static char big_header[10000];

static const struct {
        const char *name;
        const char *req;
        int status; /* 0: no answer yet (incomplete) */
        bool close;
} cases[] = {
        {"health GET", "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", 503, false},
        {"health HEAD", "HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n", 503, false},
        {"live", "GET /health/live HTTP/1.1\r\n\r\n", 200, false},
        {"query ignored", "GET /health/live?x=1 HTTP/1.1\r\n\r\n", 200, false},
        {"unknown path", "GET /nope HTTP/1.1\r\n\r\n", 404, false},
        {"POST", "POST /health HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405, false},
        {"DELETE", "DELETE /health HTTP/1.1\r\n\r\n", 405, false},
        {"HTTP/1.0 closes", "GET /health/live HTTP/1.0\r\n\r\n", 200, true},
        {"HTTP/1.0 keep-alive", "GET /health/live HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 200, false},
        {"Connection: close", "GET /health/live HTTP/1.1\r\nConnection: close\r\n\r\n", 200, true},
        {"garbage", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400, true},
        {"bad version", "GET /health HTTP/9.9\r\n\r\n", 400, true},
        {"CL and TE", "GET /health HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400,
         true},
        {"two CL", "GET /health HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400, true},
        {"bad chunk", "GET /health HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400, true},
        {"body too large", "GET /health HTTP/1.1\r\nContent-Length: 5000\r\n\r\n", 0, false},
        {"bare LF lines", "GET /health/live HTTP/1.1\nHost: x\n\n", 400, true},
        {"absolute URL", "GET http://x/health/live HTTP/1.1\r\n\r\n", 404, false},
        {"upgrade h2c", "GET /health/live HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n", 200, true},
        {"CONNECT", "CONNECT x:443 HTTP/1.1\r\n\r\n", 405, true},
        {"PRI preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, true},
};

START_TEST(test_httpconn_answers_table) {
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                bool close;
                char *resp = feed_guarded(cases[i].req, strlen(cases[i].req), &close);
                int st = first_status(resp);
                ck_assert_msg(st == cases[i].status, "%s: status %d want %d (%s)", cases[i].name, st,
                              cases[i].status, resp);
                ck_assert_msg(close == cases[i].close, "%s: close=%d", cases[i].name, close);
                if (st)
                        ck_assert_msg(strstr(resp, "Content-Length: ") && strstr(resp, "Cache-Control: no-store"),
                                      "%s: headers: %s", cases[i].name, resp);
                if (st == 405)
                        ck_assert_ptr_nonnull(strstr(resp, "Allow: GET, HEAD\r\n"));
                free(resp);
        }
}
END_TEST

START_TEST(test_httpconn_head_has_no_body) {
        bool close;
        char *resp = feed_guarded("HEAD /health HTTP/1.1\r\n\r\n", 25, &close);
        ck_assert_ptr_nonnull(strstr(resp, "Content-Length: 21\r\n"));
        ck_assert_int_eq(resp[strlen(resp) - 1], '\n');
        ck_assert_ptr_null(strstr(resp, "starting"));
        free(resp);
}
END_TEST

START_TEST(test_httpconn_oversized_headers_431_and_long_url_414) {
        memset(big_header, 'a', sizeof big_header);
        Buf req = {0};
        buf_printf(&req, "GET /health HTTP/1.1\r\nX-Big: %.*s\r\n\r\n", 9000, big_header);
        bool close;
        char *resp = feed_guarded(req.data, req.len, &close);
        ck_assert_int_eq(first_status(resp), 431);
        ck_assert(close);
        free(resp);
        buf_deinit(&req);
        buf_printf(&req, "GET /%.*s HTTP/1.1\r\n\r\n", 3000, big_header);
        resp = feed_guarded(req.data, req.len, &close);
        ck_assert_int_eq(first_status(resp), 414);
        free(resp);
        buf_deinit(&req);
        /* A body over the cap is refused as it arrives. */
        buf_printf(&req, "GET /health HTTP/1.1\r\nContent-Length: 5000\r\n\r\n%.*s", 5000, big_header);
        resp = feed_guarded(req.data, req.len, &close);
        ck_assert_int_eq(first_status(resp), 413);
        free(resp);
        buf_deinit(&req);
}
END_TEST

START_TEST(test_httpconn_every_prefix_waits_for_more) {
        const char *req = "GET /health/live HTTP/1.1\r\nHost: example\r\nUser-Agent: ELB-HealthChecker/2.0\r\n\r\n";
        size_t n = strlen(req);
        for (size_t k = 0; k < n; k++) {
                bool close;
                char *resp = feed_guarded(req, k, &close);
                ck_assert_msg(!close && !*resp, "prefix %zu answered: %s", k, resp);
                free(resp);
        }
        /* Byte by byte, the whole request is answered once. */
        HttpConn c;
        Buf out = {0};
        httpconn_init(&c, route, NULL);
        for (size_t k = 0; k < n; k++)
                ck_assert(!httpconn_feed(&c, req + k, 1, &out, NULL));
        ck_assert_int_eq(first_status(out.data), 200);
        ck_assert_uint_eq(c.requests, 1);
        buf_deinit(&out);
}
END_TEST

START_TEST(test_httpconn_pipelined_requests_answered_in_order) {
        const char *req = "GET /health/live HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\n\r\nHEAD /health HTTP/1.1\r\n"
                          "Connection: close\r\n\r\nGET /health/live HTTP/1.1\r\n\r\n";
        HttpConn c;
        Buf out = {0};
        httpconn_init(&c, route, NULL);
        ck_assert(httpconn_feed(&c, req, strlen(req), &out, NULL));
        ck_assert_uint_eq(c.requests, 3); /* nothing after the closing request */
        const char *a = strstr(out.data, "HTTP/1.1 200");
        const char *b = strstr(out.data, "HTTP/1.1 404");
        const char *d = strstr(out.data, "HTTP/1.1 503");
        ck_assert(a && b && d && a < b && b < d);
        ck_assert_ptr_nonnull(strstr(d, "Connection: close"));
        buf_deinit(&out);
}
END_TEST

START_TEST(test_httpconn_feed_stops_after_answer_limit) {
        Buf req = {0}, out = {0};
        for (int i = 0; i < 20; i++)
                buf_puts(&req, "GET /health/live HTTP/1.1\r\n\r\n");
        HttpConn c;
        httpconn_init(&c, route, NULL);
        size_t off = 0, used, feeds = 0;
        while (off < req.len) {
                ck_assert(!httpconn_feed(&c, req.data + off, req.len - off, &out, &used));
                ck_assert_uint_le(c.requests, (feeds + 1) * HTTPCONN_MAX_ANSWERS_PER_FEED);
                off += used;
                feeds++;
        }
        ck_assert_uint_eq(c.requests, 20);
        ck_assert_uint_eq(feeds, (20 + HTTPCONN_MAX_ANSWERS_PER_FEED - 1) / HTTPCONN_MAX_ANSWERS_PER_FEED);
        buf_deinit(&req);
        buf_deinit(&out);
}
END_TEST

/* The health server on a real loop, with a plain socket as the client,
 * driven from a timer on the same loop. */
typedef struct Client {
        HealthServer *h;
        int fd;
        uv_timer_t tick;
        const char *drip; /* sent one byte per tick, cycling */
        size_t drip_pos;
        uint64_t start, closed_at, deadline;
        size_t flood_sent, received;
        unsigned ticks;
        bool flood;
        bool reading;
} Client;

static int client_connect(HealthServer *h) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(fd, 0);
        int small = 4096;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t) health_port(h))};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ck_assert_int_eq(connect(fd, (struct sockaddr *) &a, sizeof a), 0);
        return fd;
}

/* True once the server closed the connection (EOF or reset). */
static bool client_poll_closed(Client *cl) {
        char b[65536];
        for (;;) {
                ssize_t n = recv(cl->fd, b, sizeof b, MSG_DONTWAIT);
                if (n > 0) {
                        cl->received += (size_t) n;
                        if (!cl->reading)
                                return false; /* a drip's answer: read, not counted as close */
                        continue;
                }
                return n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
        }
}

static void client_tick(uv_timer_t *t) {
        Client *cl = t->data;
        cl->ticks++;
        if (cl->flood) {
                static const char req[] = "GET /metrics HTTP/1.1\r\n\r\n";
                /* 2,000 requests: 32 MiB of answers, were they all queued. */
                while (cl->flood_sent < 2000 &&
                       send(cl->fd, req, sizeof req - 1, MSG_DONTWAIT | MSG_NOSIGNAL) == sizeof req - 1)
                        cl->flood_sent++;
        } else if (cl->drip) {
                send(cl->fd, cl->drip + cl->drip_pos, 1, MSG_NOSIGNAL);
                if (!cl->drip[++cl->drip_pos])
                        cl->drip_pos = 0;
        }
        bool closed = (cl->drip || cl->reading) && client_poll_closed(cl);
        if (closed && !cl->closed_at)
                cl->closed_at = clock_usec();
        if (closed || clock_usec() > cl->deadline)
                uv_timer_stop(t);
}

static void run_client(uv_loop_t *loop, Client *cl, unsigned period_ms, unsigned limit_ms) {
        cl->start = clock_usec();
        cl->deadline = cl->start + (uint64_t) limit_ms * 1000;
        cl->closed_at = 0;
        uv_timer_init(loop, &cl->tick);
        cl->tick.data = cl;
        uv_timer_start(&cl->tick, client_tick, period_ms, period_ms);
        while (uv_is_active((uv_handle_t *) &cl->tick))
                uv_run(loop, UV_RUN_ONCE);
        uv_close((uv_handle_t *) &cl->tick, NULL);
        uv_run(loop, UV_RUN_NOWAIT); /* the close completes */
}

static HealthServer *server_start(uv_loop_t *loop, HealthMetrics metrics) {
        HealthServer *h;
        char *err = NULL;
        uv_loop_init(loop);
        ck_assert_int_eq(health_new(loop, "127.0.0.1:0", 0, metrics, NULL, &h, &err), 0);
        return h;
}

/* Slowloris: one byte every 50 ms of a request that never ends.  The
 * 300 ms deadline runs from the first byte: closed, not kept forever. */
START_TEST(test_health_dripping_request_closed_at_deadline_from_first_byte) {
        uv_loop_t loop;
        HealthServer *h = server_start(&loop, NULL);
        health_set_timeouts(h, 300, 60000);
        Client cl = {.h = h, .fd = client_connect(h), .drip = "GET /health HTTP/1.1\r\nX-Drip: aaaaaaaaaaaaaaaaaaaa"};
        run_client(&loop, &cl, 50, 5000);
        ck_assert_msg(cl.closed_at, "a dripping request was kept open for 5 s (%u bytes sent)", cl.ticks);
        unsigned ms = (unsigned) ((cl.closed_at - cl.start) / 1000);
        fprintf(stderr, "measured: a request dripping a byte every 50 ms closed after %u ms (deadline 300 ms)\n", ms);
        ck_assert_uint_lt(ms, 2000);
        ck_assert_uint_eq(health_stats(h)->timed_out, 1);
        close(cl.fd);
        health_free(h);
        loop_finish(&loop);
}
END_TEST

/* Blank lines between keep-alive requests begin nothing: they do not
 * extend the idle timeout either. */
START_TEST(test_health_blank_lines_do_not_extend_idle_timeout) {
        uv_loop_t loop;
        HealthServer *h = server_start(&loop, NULL);
        health_set_timeouts(h, 60000, 300);
        Client cl = {.h = h, .fd = client_connect(h), .drip = "\r\n"};
        const char *req = "GET /health/live HTTP/1.1\r\n\r\n";
        ck_assert_int_eq(send(cl.fd, req, strlen(req), 0), (ssize_t) strlen(req));
        run_client(&loop, &cl, 50, 5000);
        ck_assert_msg(cl.closed_at, "blank lines kept an idle connection open for 5 s");
        ck_assert_uint_gt(cl.received, 0); /* the request was answered */
        fprintf(stderr, "measured: an idle connection sending CRLFs closed after %u ms (idle timeout 300 ms)\n",
                (unsigned) ((cl.closed_at - cl.start) / 1000));
        ck_assert_uint_lt((cl.closed_at - cl.start) / 1000, 2000);
        close(cl.fd);
        health_free(h);
        loop_finish(&loop);
}
END_TEST

#define METRICS_BODY 16384
static void big_metrics(void *ud, Buf *out) {
        (void) ud;
        char chunk[1024];
        memset(chunk, 'm', sizeof chunk);
        for (int i = 0; i < METRICS_BODY / 1024; i++)
                buf_append(out, chunk, sizeof chunk);
}

/* Back-pressure: a client pipelining /metrics (16 KiB answers) without
 * reading gets at most the output cap plus one batch queued, not one
 * answer per request sent; once it reads, every request is answered. */
START_TEST(test_health_pipelined_flood_without_reading_is_bounded) {
        uv_loop_t loop;
        HealthServer *h = server_start(&loop, big_metrics);
        health_set_timeouts(h, 60000, 60000);
        Client cl = {.h = h, .fd = client_connect(h), .flood = true};
        run_client(&loop, &cl, 1, 1000);
        const HealthStats *st = health_stats(h);
        size_t bound = HEALTH_MAX_QUEUED_OUTPUT + HTTPCONN_MAX_ANSWERS_PER_FEED * (METRICS_BODY + 512);
        fprintf(stderr,
                "measured: flood of %zu pipelined /metrics in 1 s without reading: %llu answered, "
                "largest queue %zu bytes (bound %zu), throttled %llu times\n",
                cl.flood_sent, (unsigned long long) st->requests, st->max_queued, bound,
                (unsigned long long) st->throttled);
        ck_assert_uint_eq(cl.flood_sent, 2000);
        ck_assert_uint_le(st->max_queued, bound);
        ck_assert_uint_gt(st->throttled, 0);
        /* The client reads now: everything it sent is answered. */
        cl.flood = false;
        cl.reading = true;
        size_t want = 0;
        Buf one = {0};
        buf_printf(&one, "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                         "Content-Length: %d\r\nCache-Control: no-store\r\nConnection: keep-alive\r\n\r\n",
                   METRICS_BODY);
        want = cl.flood_sent * (one.len + METRICS_BODY);
        buf_deinit(&one);
        cl.deadline = clock_usec() + 20 * USEC_PER_SEC;
        uv_timer_init(&loop, &cl.tick);
        cl.tick.data = &cl;
        uv_timer_start(&cl.tick, client_tick, 1, 1);
        while (uv_is_active((uv_handle_t *) &cl.tick) && cl.received < want)
                uv_run(&loop, UV_RUN_ONCE);
        uv_close((uv_handle_t *) &cl.tick, NULL);
        ck_assert_uint_eq(cl.received, want);
        ck_assert_uint_eq(st->requests, cl.flood_sent);
        close(cl.fd);
        health_free(h);
        loop_finish(&loop);
}
END_TEST

TEST_SUITE(suite_httpconn)
Suite *suite_httpconn(void) {
        Suite *s = suite_create("httpconn");
        TCase *tc = tcase_create("requests");
        tcase_add_test(tc, test_httpconn_answers_table);
        tcase_add_test(tc, test_httpconn_head_has_no_body);
        tcase_add_test(tc, test_httpconn_oversized_headers_431_and_long_url_414);
        tcase_add_test(tc, test_httpconn_every_prefix_waits_for_more);
        tcase_add_test(tc, test_httpconn_pipelined_requests_answered_in_order);
        tcase_add_test(tc, test_httpconn_feed_stops_after_answer_limit);
        suite_add_tcase(s, tc);
        TCase *srv = tcase_create("server");
        tcase_set_timeout(srv, 60);
        tcase_add_test(srv, test_health_dripping_request_closed_at_deadline_from_first_byte);
        tcase_add_test(srv, test_health_blank_lines_do_not_extend_idle_timeout);
        tcase_add_test(srv, test_health_pipelined_flood_without_reading_is_bounded);
        suite_add_tcase(s, srv);
        return s;
}
