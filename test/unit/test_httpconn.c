/* The health server's request handling (httpconn), table-driven: status
 * codes for good and hostile requests, every incomplete prefix, keep-alive
 * and pipelining, and input placed just before a PROT_NONE page so an
 * over-read crashes the test. */
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "httpconn.h"
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
        *ret_close = httpconn_feed(&c, at, len, &out);
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
                ck_assert(!httpconn_feed(&c, req + k, 1, &out));
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
        ck_assert(httpconn_feed(&c, req, strlen(req), &out));
        ck_assert_uint_eq(c.requests, 3); /* nothing after the closing request */
        const char *a = strstr(out.data, "HTTP/1.1 200");
        const char *b = strstr(out.data, "HTTP/1.1 404");
        const char *d = strstr(out.data, "HTTP/1.1 503");
        ck_assert(a && b && d && a < b && b < d);
        ck_assert_ptr_nonnull(strstr(d, "Connection: close"));
        buf_deinit(&out);
}
END_TEST

Suite *suite_httpconn(void) {
        Suite *s = suite_create("httpconn");
        TCase *tc = tcase_create("requests");
        tcase_add_test(tc, test_httpconn_answers_table);
        tcase_add_test(tc, test_httpconn_head_has_no_body);
        tcase_add_test(tc, test_httpconn_oversized_headers_431_and_long_url_414);
        tcase_add_test(tc, test_httpconn_every_prefix_waits_for_more);
        tcase_add_test(tc, test_httpconn_pipelined_requests_answered_in_order);
        suite_add_tcase(s, tc);
        return s;
}
