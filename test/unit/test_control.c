/* server/control and control_client over a real unix socket on a private
 * loop: every answer carries an exit code, an answer that cannot be
 * encoded is sanitised and always sent, requests are bounded, and
 * control_free() is silent (the async contract).  The client runs in a
 * thread (control_call blocks); the loop ends with uv_loop_close() == 0
 * without closing anything on the server's behalf. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sysexits.h>
#include <unistd.h>

#include "basic/clock.h"
#include "basic/util.h"
#include "server/control.h"
#include "server/control_client.h"
#include "testutil.h"

typedef enum Behaviour {
        ANSWER_INVALID_UTF8,   /* a string made with json_stringn_nocheck */
        ANSWER_NULL,           /* json_pack failed on a non-UTF-8 string */
        ANSWER_FAILED,         /* {"ok": false} without an exit code */
        ANSWER_OWN_EXIT,       /* the owner's exit code is kept */
        ANSWER_SANITISED,      /* control_json_string on outside text */
        HOLD,                  /* keep the request, never answer */
} Behaviour;

typedef struct Ctx {
        uv_loop_t loop;
        ControlServer *server;
        char *dir, *path;
        Behaviour behaviour;
        int handled;
        bool in_new;
        bool after_free;
        ControlRequest *held;
        uv_async_t done;
        /* the client thread */
        pthread_t thread;
        const char *raw;       /* NULL: control_call with {"cmd":"x"} */
        size_t raw_len;
        int call_r;
        json_t *response;
        char *error;
        char *raw_answer;
        uint64_t client_usec;
} Ctx;

static void handler(ControlRequest *req, json_t *request, void *userdata) {
        Ctx *c = userdata;
        (void) request;
        ck_assert(!c->in_new);
        ck_assert(!c->after_free);
        c->handled++;
        switch (c->behaviour) {
        case ANSWER_INVALID_UTF8: {
                json_t *o = json_pack("{s:b}", "ok", 1);
                json_object_set_new(o, "last_error", json_stringn_nocheck("bad \xff\xfe byte", 11));
                control_reply(req, o);
                break;
        }
        case ANSWER_NULL:
                control_reply(req, json_pack("{s:b, s:s}", "ok", 1, "last_error", "bad \xff byte"));
                break;
        case ANSWER_FAILED:
                control_reply(req, json_pack("{s:b, s:s}", "ok", 0, "error", "it failed"));
                break;
        case ANSWER_OWN_EXIT:
                control_reply(req, json_pack("{s:b, s:i}", "ok", 0, "exit", 75));
                break;
        case ANSWER_SANITISED:
                control_reply(req, json_pack("{s:b, s:o}", "ok", 1, "last_error",
                                             control_json_string("tag \xc3 cut, \xed\xa0\x80 surrogate, é kept")));
                break;
        case HOLD:
                c->held = req;
                break;
        }
}

static void refused(uid_t uid, pid_t pid, void *userdata) {
        (void) uid, (void) pid;
        Ctx *c = userdata;
        ck_assert(!c->after_free);
}

static char *raw_exchange(const char *path, const char *data, size_t len) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        strcpy(sa.sun_path, path);
        if (connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0)
                return strdup("connect failed");
        if (len)
                (void) !send(fd, data, len, MSG_NOSIGNAL);
        struct timeval tv = {.tv_sec = 30};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        Buf b = {0};
        char chunk[4096];
        ssize_t n;
        while ((n = read(fd, chunk, sizeof chunk)) > 0)
                buf_append(&b, chunk, (size_t) n);
        int e = errno;
        close(fd);
        /* The server closing with our excess bytes unread resets the
         * connection after its answer. */
        if (n < 0 && e != ECONNRESET)
                return strdup("read timed out");
        buf_puts(&b, "");
        return buf_steal(&b);
}

static void *client(void *userdata) {
        Ctx *c = userdata;
        uint64_t t0 = clock_usec();
        if (c->raw)
                c->raw_answer = raw_exchange(c->path, c->raw, c->raw_len);
        else {
                json_t *req = json_pack("{s:s}", "cmd", "x");
                c->call_r = control_call(c->path, req, 20000, &c->response, &c->error);
                json_decref(req);
        }
        c->client_usec = clock_usec() - t0;
        uv_async_send(&c->done);
        return NULL;
}

static void on_client_done(uv_async_t *a) {
        Ctx *c = a->data;
        c->after_free = true;
        control_free(c->server);
        uv_close((uv_handle_t *) a, NULL);
}

static void ctx_start(Ctx *c, Behaviour b) {
        *c = (Ctx) {.behaviour = b};
        ck_assert_int_eq(uv_loop_init(&c->loop), 0);
        c->dir = test_tmpdir();
        c->path = strdup_printf("%s/run/control.sock", c->dir);
        _cleanup_free_ char *err = NULL;
        c->in_new = true;
        ck_assert_int_eq(control_new(&c->loop, c->path, handler, refused, c, &c->server, &err), 0);
        c->in_new = false;
        uv_async_init(&c->loop, &c->done, on_client_done);
        c->done.data = c;
}

/* Runs the client to its end and the loop until nothing is left. */
static void ctx_run(Ctx *c) {
        ck_assert_int_eq(pthread_create(&c->thread, NULL, client, c), 0);
        uv_run(&c->loop, UV_RUN_DEFAULT);
        pthread_join(c->thread, NULL);
        ck_assert_int_eq(uv_loop_close(&c->loop), 0);
}

static void ctx_end(Ctx *c) {
        json_decref(c->response);
        free(c->error);
        free(c->raw_answer);
        rm_rf(c->dir);
        free(c->dir);
        free(c->path);
}

START_TEST(invalid_utf8_is_sanitised_and_answered) {
        Ctx c;
        ctx_start(&c, ANSWER_INVALID_UTF8);
        ctx_run(&c);
        ck_assert_msg(c.call_r == 0, "%s", c.error);
        ck_assert_str_eq(json_string_value(json_object_get(c.response, "last_error")),
                         "bad \xEF\xBF\xBD\xEF\xBF\xBD byte");
        ck_assert_int_eq(control_response_exit(c.response), 0);
        ck_assert_int_eq(json_integer_value(json_object_get(c.response, "exit")), 0);
        ctx_end(&c);
}
END_TEST

START_TEST(null_response_still_answers) {
        Ctx c;
        ctx_start(&c, ANSWER_NULL);
        ctx_run(&c);
        ck_assert_msg(c.call_r == 0, "%s", c.error);
        ck_assert(json_is_false(json_object_get(c.response, "ok")));
        ck_assert_ptr_nonnull(json_string_value(json_object_get(c.response, "error")));
        ck_assert_int_eq(control_response_exit(c.response), EX_SOFTWARE);
        ctx_end(&c);
}
END_TEST

START_TEST(exit_code_from_ok_or_the_owner) {
        Ctx c;
        ctx_start(&c, ANSWER_FAILED);
        ctx_run(&c);
        ck_assert_msg(c.call_r == 0, "%s", c.error);
        ck_assert_int_eq(json_integer_value(json_object_get(c.response, "exit")), EX_SOFTWARE);
        ctx_end(&c);

        ctx_start(&c, ANSWER_OWN_EXIT);
        ctx_run(&c);
        ck_assert_int_eq(control_response_exit(c.response), 75);
        ctx_end(&c);

        /* A daemon from before "exit": decided from "ok". */
        json_t *old = json_pack("{s:b}", "ok", 0);
        ck_assert_int_eq(control_response_exit(old), EX_SOFTWARE);
        json_object_set_new(old, "ok", json_true());
        ck_assert_int_eq(control_response_exit(old), 0);
        json_decref(old);
}
END_TEST

START_TEST(outside_text_is_made_valid) {
        Ctx c;
        ctx_start(&c, ANSWER_SANITISED);
        ctx_run(&c);
        ck_assert_msg(c.call_r == 0, "%s", c.error);
        ck_assert_str_eq(json_string_value(json_object_get(c.response, "last_error")),
                         "tag \xEF\xBF\xBD cut, \xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD surrogate, é kept");
        ctx_end(&c);
        json_t *n = control_json_string(NULL);
        ck_assert(json_is_null(n));
        json_decref(n);
}
END_TEST

START_TEST(malformed_and_long_requests_get_exit_76) {
        Ctx c;
        ctx_start(&c, ANSWER_FAILED);
        c.raw = "not json\n";
        c.raw_len = strlen(c.raw);
        ctx_run(&c);
        ck_assert_int_eq(c.handled, 0);
        ck_assert_msg(strstr(c.raw_answer, "\"exit\":76"), "%s", c.raw_answer);
        ctx_end(&c);

        char big[6000];
        memset(big, 'x', sizeof big);
        ctx_start(&c, ANSWER_FAILED);
        c.raw = big;
        c.raw_len = sizeof big;
        ctx_run(&c);
        ck_assert_int_eq(c.handled, 0);
        ck_assert_msg(strstr(c.raw_answer, "request too long"), "%s", c.raw_answer);
        ck_assert_msg(strstr(c.raw_answer, "\"exit\":76"), "%s", c.raw_answer);
        ctx_end(&c);
}
END_TEST

START_TEST(silent_client_is_closed_at_the_deadline) {
        /* Connects and sends nothing: closed without an answer at the
         * read deadline (5 s), not held forever. */
        Ctx c;
        ctx_start(&c, ANSWER_FAILED);
        c.raw = "{\"cmd\"";
        c.raw_len = strlen(c.raw);
        ctx_run(&c);
        ck_assert_int_eq(c.handled, 0);
        ck_assert_str_eq(c.raw_answer, "");
        ck_assert_uint_lt(c.client_usec, 15 * USEC_PER_SEC);
        fprintf(stderr, "measured: a request without its newline was closed after %.1f s\n",
                c.client_usec / 1e6);
        ctx_end(&c);
}
END_TEST

/* HOLD: the client's request is never answered; the server is freed from
 * a timer with the request pending. */
static void on_free_timer(uv_timer_t *t) {
        Ctx *c = t->data;
        if (!c->held) {
                uv_timer_start(t, on_free_timer, 10, 0);
                return;
        }
        c->after_free = true;
        control_free(c->server);
        c->held = NULL; /* the owner forgets it, as control.h says */
        uv_close((uv_handle_t *) t, NULL);
}

static void on_client_done_held(uv_async_t *a) {
        uv_close((uv_handle_t *) a, NULL);
}

START_TEST(free_with_pending_request_is_silent) {
        Ctx c;
        ctx_start(&c, HOLD);
        c.done.async_cb = on_client_done_held;
        uv_timer_t t;
        uv_timer_init(&c.loop, &t);
        t.data = &c;
        uv_timer_start(&t, on_free_timer, 10, 0);
        ctx_run(&c);
        ck_assert_int_eq(c.handled, 1);
        ck_assert_int_eq(c.call_r, -EPROTO); /* closed without an answer */
        ctx_end(&c);
        control_free(NULL);
}
END_TEST

Suite *control_suite(void);
TEST_SUITE(control_suite)
Suite *control_suite(void) {
        Suite *s = suite_create("control");
        TCase *tc = tcase_create("socket");
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, invalid_utf8_is_sanitised_and_answered);
        tcase_add_test(tc, null_response_still_answers);
        tcase_add_test(tc, exit_code_from_ok_or_the_owner);
        tcase_add_test(tc, outside_text_is_made_valid);
        tcase_add_test(tc, malformed_and_long_requests_get_exit_76);
        tcase_add_test(tc, silent_client_is_closed_at_the_deadline);
        tcase_add_test(tc, free_with_pending_request_is_silent);
        suite_add_tcase(s, tc);
        return s;
}
