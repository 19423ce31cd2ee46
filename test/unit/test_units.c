/* systemd/units: the table (all-or-nothing units_track) without a bus, and
 * the async contract against a real systemd manager.
 *
 * The suite "units_bus" needs `systemd --user` on the session bus with the
 * units test/integration/test-units-bus.sh installs; it runs there (inside
 * test/harness.sh) and reports skips elsewhere. */
#include <check.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "basic/clock.h"
#include "basic/util.h"
#include "loop/busloop.h"
#include "systemd/units.h"
#include "testutil.h"

/* Fault injection: the Nth call of sd_bus_path_encode (counting from 1)
 * fails with -ENOMEM; units.c calls it once per new Unit.  The
 * executable's definition takes precedence over libsystemd's. */
static int fail_path_encode_at;

int sd_bus_path_encode(const char *prefix, const char *external_id, char **ret_path);
int sd_bus_path_encode(const char *prefix, const char *external_id, char **ret_path) {
        static int (*real)(const char *, const char *, char **);
        if (!real)
                real = (int (*)(const char *, const char *, char **)) dlsym(RTLD_NEXT, "sd_bus_path_encode");
        if (fail_path_encode_at > 0 && --fail_path_encode_at == 0)
                return -ENOMEM;
        return real(prefix, external_id, ret_path);
}

static void assert_table(UnitManager *m, const char *const *want) {
        size_t n = 0;
        while (want[n])
                n++;
        ck_assert_uint_eq(units_count(m), n);
        for (size_t i = 0; i < n; i++) {
                UnitInfo u;
                ck_assert(units_get(m, i, &u));
                ck_assert_str_eq(u.name, want[i]);
        }
}

/* Frees m and asserts the loop has nothing left, without closing
 * anything on the manager's behalf. */
static void free_and_close(uv_loop_t *loop, UnitManager *m) {
        units_free(m);
        uv_run(loop, UV_RUN_DEFAULT);
        ck_assert_int_eq(uv_loop_close(loop), 0);
}

START_TEST(track_oom_leaves_the_table_as_it_was) {
        /* No bus: the table works without one (the manager retries). */
        setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/anb-test-bus", 1);
        uv_loop_t loop;
        uv_loop_init(&loop);
        UnitManager *m = NULL;
        ck_assert_int_eq(units_new(&loop, true, NULL, NULL, &m), 0);
        ck_assert(!units_connected(m));
        char *first[] = {"a.service", "b.service", NULL};
        ck_assert_int_eq(units_track(m, first), 0);
        assert_table(m, (const char *const[]) {"a.service", "b.service", NULL});

        /* a is kept, c is made, d fails: nothing may change. */
        char *second[] = {"a.service", "c.service", "d.service", NULL};
        fail_path_encode_at = 2;
        ck_assert_int_eq(units_track(m, second), -ENOMEM);
        assert_table(m, (const char *const[]) {"a.service", "b.service", NULL});

        /* Failing on the first new unit, after a kept one. */
        fail_path_encode_at = 1;
        ck_assert_int_eq(units_track(m, second), -ENOMEM);
        assert_table(m, (const char *const[]) {"a.service", "b.service", NULL});

        ck_assert_int_eq(units_track(m, second), 0);
        assert_table(m, (const char *const[]) {"a.service", "c.service", "d.service", NULL});
        char *dup[] = {"d.service", "d.service", "a.service", NULL};
        ck_assert_int_eq(units_track(m, dup), 0);
        assert_table(m, (const char *const[]) {"d.service", "a.service", NULL});
        free_and_close(&loop, m);
}
END_TEST

START_TEST(free_accepts_null_and_run_needs_a_bus) {
        units_free(NULL);
        units_cancel(NULL);
        setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/anb-test-bus", 1);
        uv_loop_t loop;
        uv_loop_init(&loop);
        UnitManager *m = NULL;
        ck_assert_int_eq(units_new(&loop, true, NULL, NULL, &m), 0);
        char *names[] = {"a.service", NULL};
        UnitsRun *run = NULL;
        ck_assert_int_eq(units_run(m, "StartUnit", names, NULL, NULL, &run), -ENOTCONN);
        ck_assert_ptr_null(run);
        free_and_close(&loop, m);
}
END_TEST

/* ---- against systemd --user ------------------------------------------ */

static bool have_bus(void) {
        return getenv("ANB_TEST_SYSTEMD_BUS") != NULL;
}

#define REQUIRE_BUS() ck_assert(have_bus())

typedef struct Done {
        bool returned; /* units_run has returned */
        bool early;    /* done ran before that */
        int calls;
        size_t n;
        char *results[8];
        uint64_t usec[8];
} Done;

static void on_done(UnitManager *m, const UnitJobResult *r, size_t n, void *userdata) {
        (void) m;
        Done *d = userdata;
        if (!d->returned)
                d->early = true;
        d->calls++;
        d->n = n;
        for (size_t i = 0; i < n && i < 8; i++) {
                d->results[i] = strdup_printf("%s=%s", r[i].unit, r[i].result);
                d->usec[i] = r[i].usec;
        }
}

static void done_clear(Done *d) {
        for (size_t i = 0; i < 8; i++)
                free(d->results[i]);
}

static void on_stop_timer(uv_timer_t *t) {
        *(int *) t->data = 1;
}

/* Runs the loop until *flag or ms have passed (by the loop's own timer:
 * a second clock could see the time up before the timer fires, or the
 * timer fire before that clock agrees, and then wait for nothing). */
static void run_until(uv_loop_t *loop, const int *flag, unsigned ms) {
        int expired = 0;
        uv_timer_t t;
        uv_timer_init(loop, &t);
        t.data = &expired;
        uv_timer_start(&t, on_stop_timer, ms, 0);
        while ((!flag || !*flag) && !expired)
                uv_run(loop, UV_RUN_ONCE);
        uv_close((uv_handle_t *) &t, NULL);
        uv_run(loop, UV_RUN_NOWAIT);
}

static UnitManager *connect_manager(uv_loop_t *loop) {
        uv_loop_init(loop);
        UnitManager *m = NULL;
        ck_assert_int_eq(units_new(loop, true, NULL, NULL, &m), 0);
        ck_assert(units_connected(m));
        return m;
}

static void sh(const char *cmd) {
        int st = system(cmd);
        ck_assert_msg(st == 0, "%s: status %d", cmd, st);
}

static uint64_t prop_u64(const char *unit, const char *prop) {
        _cleanup_free_ char *cmd = strdup_printf("systemctl --user show -P %s %s", prop, unit);
        _cleanup_free_ char *out = run_capture(cmd, NULL);
        return strtoull(out, NULL, 10);
}

START_TEST(run_done_never_before_return) {
        REQUIRE_BUS();
        uv_loop_t loop;
        UnitManager *m = connect_manager(&loop);
        /* An empty list is known at once: still told from the loop. */
        Done d = {0};
        char *none[] = {NULL};
        ck_assert_int_eq(units_run(m, "StartUnit", none, on_done, &d, NULL), 0);
        d.returned = true;
        ck_assert_int_eq(d.calls, 0);
        run_until(&loop, &d.calls, 5000);
        ck_assert_int_eq(d.calls, 1);
        ck_assert(!d.early);
        ck_assert_uint_eq(d.n, 0);

        /* A unit that does not exist: refused by systemd. */
        Done e = {0};
        char *names[] = {"anbt-fast.service", "anbt-missing-unit.service", NULL};
        ck_assert_int_eq(units_run(m, "StartUnit", names, on_done, &e, NULL), 0);
        e.returned = true;
        ck_assert_int_eq(units_run(m, "StartUnit", names, on_done, &e, NULL), -EBUSY);
        run_until(&loop, &e.calls, 10000);
        ck_assert_int_eq(e.calls, 1);
        ck_assert(!e.early);
        ck_assert_uint_eq(e.n, 2);
        ck_assert_str_eq(e.results[0], "anbt-fast.service=done");
        ck_assert_str_eq(e.results[1], "anbt-missing-unit.service=error");
        done_clear(&e);
        sh("systemctl --user stop anbt-fast.service");
        free_and_close(&loop, m);
}
END_TEST

START_TEST(cancel_means_no_callback) {
        REQUIRE_BUS();
        uv_loop_t loop;
        UnitManager *m = connect_manager(&loop);
        Done d = {0};
        char *names[] = {"anbt-slow.service", "anbt-fast.service", NULL};
        UnitsRun *run = NULL;
        ck_assert_int_eq(units_run(m, "StartUnit", names, on_done, &d, &run), 0);
        d.returned = true;
        ck_assert_ptr_nonnull(run);
        units_cancel(run);
        ck_assert(!units_busy(m));
        /* Long enough for both jobs to end (slow sleeps 0.5 s). */
        run_until(&loop, NULL, 1500);
        ck_assert_int_eq(d.calls, 0);
        /* The manager takes a new run after a cancel. */
        ck_assert_int_eq(units_run(m, "StopUnit", names, on_done, &d, NULL), 0);
        d.returned = true;
        run_until(&loop, &d.calls, 10000);
        ck_assert_int_eq(d.calls, 1);
        done_clear(&d);
        free_and_close(&loop, m);
}
END_TEST

START_TEST(free_during_run_is_silent) {
        REQUIRE_BUS();
        uv_loop_t loop;
        UnitManager *m = connect_manager(&loop);
        Done d = {0};
        char *names[] = {"anbt-slow.service", "anbt-fast.service", NULL};
        ck_assert_int_eq(units_track(m, names), 0);
        ck_assert_int_eq(units_run(m, "StartUnit", names, on_done, &d, NULL), 0);
        d.returned = true;
        /* Let the method calls go out and some replies come in. */
        uv_run(&loop, UV_RUN_NOWAIT);
        free_and_close(&loop, m);
        ck_assert_int_eq(d.calls, 0);
        sh("systemctl --user stop anbt-slow.service anbt-fast.service");
}
END_TEST

START_TEST(untracked_unit_gets_no_reply) {
        /* GetAll goes out on the loop turn after a unit is tracked;
         * untracking it then leaves the reply to arrive for a freed Unit
         * unless its slot went with it (under ASan: heap-use-after-free
         * in on_get_all). */
        REQUIRE_BUS();
        uv_loop_t loop;
        UnitManager *m = connect_manager(&loop);
        char *names[] = {"anbt-fast.service", "anbt-slow.service", NULL};
        char *none[] = {NULL};
        for (int i = 0; i < 20; i++) {
                ck_assert_int_eq(units_track(m, names), 0);
                uv_run(&loop, UV_RUN_NOWAIT); /* the GetAll calls go out */
                ck_assert_int_eq(units_track(m, none), 0);
        }
        ck_assert_int_eq(units_track(m, names), 0);
        /* The table still fills from the last GetAll. */
        UnitInfo u;
        uint64_t deadline = clock_usec() + 10 * USEC_PER_SEC;
        do {
                run_until(&loop, NULL, 100);
                ck_assert(units_get(m, 0, &u));
        } while (!*u.load_state && clock_usec() < deadline);
        ck_assert_str_eq(u.load_state, "loaded");
        free_and_close(&loop, m);
}
END_TEST

START_TEST(start_jobs_are_queued_together) {
        /* slow sleeps 0.5 s in its start, fast does not, and nothing
         * orders them: queued together, fast is active first although
         * listed second.  after is ordered After=slow and listed first:
         * systemd holds it until slow is active. */
        REQUIRE_BUS();
        sh("systemctl --user stop anbt-after.service anbt-slow.service anbt-fast.service");
        uv_loop_t loop;
        UnitManager *m = connect_manager(&loop);
        Done d = {0};
        char *names[] = {"anbt-after.service", "anbt-slow.service", "anbt-fast.service", NULL};
        ck_assert_int_eq(units_run(m, "StartUnit", names, on_done, &d, NULL), 0);
        d.returned = true;
        run_until(&loop, &d.calls, 10000);
        ck_assert_int_eq(d.calls, 1);
        ck_assert_str_eq(d.results[0], "anbt-after.service=done");
        ck_assert_str_eq(d.results[1], "anbt-slow.service=done");
        ck_assert_str_eq(d.results[2], "anbt-fast.service=done");
        uint64_t slow_active = prop_u64("anbt-slow.service", "ActiveEnterTimestampMonotonic");
        uint64_t fast_active = prop_u64("anbt-fast.service", "ActiveEnterTimestampMonotonic");
        uint64_t after_start = prop_u64("anbt-after.service", "InactiveExitTimestampMonotonic");
        fprintf(stderr, "measured: job times after %.0f ms, slow %.0f ms, fast %.0f ms; fast active %.0f ms before slow\n",
                d.usec[0] / 1000.0, d.usec[1] / 1000.0, d.usec[2] / 1000.0,
                ((double) slow_active - (double) fast_active) / 1000.0);
        ck_assert_uint_gt(slow_active, 0);
        ck_assert_uint_lt(fast_active, slow_active);
        ck_assert_uint_ge(after_start, slow_active);
        done_clear(&d);

        /* Stops are the same call: systemd stops after before slow. */
        Done s = {0};
        ck_assert_int_eq(units_run(m, "StopUnit", names, on_done, &s, NULL), 0);
        s.returned = true;
        run_until(&loop, &s.calls, 10000);
        ck_assert_int_eq(s.calls, 1);
        for (size_t i = 0; i < 3; i++)
                ck_assert_msg(strstr(s.results[i], "=done"), "%s", s.results[i]);
        uint64_t after_stopped = prop_u64("anbt-after.service", "InactiveEnterTimestampMonotonic");
        uint64_t slow_stopping = prop_u64("anbt-slow.service", "ActiveExitTimestampMonotonic");
        ck_assert_uint_le(after_stopped, slow_stopping);
        done_clear(&s);
        free_and_close(&loop, m);
}
END_TEST

/* ---- busloop ----------------------------------------------------------- */

typedef struct BusCtx {
        bool in_deinit;
        int replies, disconnects, closed;
} BusCtx;

static int on_reply(sd_bus_message *m, void *userdata, sd_bus_error *e) {
        (void) m, (void) e;
        ((BusCtx *) userdata)->replies++;
        return 0;
}

static void on_bus_disconnect(BusLoop *b, int error, void *userdata) {
        (void) b, (void) error;
        ((BusCtx *) userdata)->disconnects++;
}

static void on_bus_closed(BusLoop *b, void *userdata) {
        (void) b;
        BusCtx *c = userdata;
        ck_assert(!c->in_deinit);
        c->closed++;
}

START_TEST(busloop_deinit_is_silent) {
        REQUIRE_BUS();
        uv_loop_t loop;
        uv_loop_init(&loop);
        sd_bus *bus = NULL;
        ck_assert_int_eq(bus_open(true, &bus), 0);
        BusLoop b;
        BusCtx c = {0};
        ck_assert_int_eq(busloop_init(&b, &loop, bus, on_bus_disconnect, &c), 0);
        /* One call answered through the loop ... */
        ck_assert_int_ge(sd_bus_call_method_async(bus, NULL, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                                  "org.freedesktop.DBus", "GetId", on_reply, &c, ""), 0);
        while (c.replies == 0)
                uv_run(&loop, UV_RUN_ONCE);
        /* ... one left pending at deinit: never answered. */
        ck_assert_int_ge(sd_bus_call_method_async(bus, NULL, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                                  "org.freedesktop.DBus", "GetId", on_reply, &c, ""), 0);
        c.in_deinit = true;
        busloop_deinit(&b, on_bus_closed);
        c.in_deinit = false;
        sd_bus_unref(bus);
        ck_assert_int_eq(c.closed, 0);
        uv_run(&loop, UV_RUN_DEFAULT);
        ck_assert_int_eq(c.closed, 1);
        ck_assert_int_eq(c.replies, 1);
        ck_assert_int_eq(c.disconnects, 0);
        ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

START_TEST(busloop_deinit_does_not_wait_for_a_stopped_peer) {
        /* The bus daemon stops reading (SIGSTOP) with megabytes queued on
         * our side: closing must not wait for it to read them. */
        REQUIRE_BUS();
        const char *pid_s = getenv("ANB_TEST_DBUS_PID");
        ck_assert_ptr_nonnull(pid_s);
        pid_t dbus = (pid_t) atoi(pid_s);
        uv_loop_t loop;
        uv_loop_init(&loop);
        sd_bus *bus = NULL;
        ck_assert_int_eq(bus_open(true, &bus), 0);
        BusLoop b;
        BusCtx c = {0};
        ck_assert_int_eq(busloop_init(&b, &loop, bus, on_bus_disconnect, &c), 0);
        ck_assert_int_eq(kill(dbus, SIGSTOP), 0);
        _cleanup_free_ char *big = malloc(64 * 1024);
        memset(big, 'x', 64 * 1024 - 1);
        big[64 * 1024 - 1] = 0;
        for (int i = 0; i < 200; i++)
                ck_assert_int_ge(sd_bus_call_method_async(bus, NULL, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                                          "org.freedesktop.DBus.Peer", "Ping", NULL, NULL, "s", big),
                                 0);
        uv_run(&loop, UV_RUN_NOWAIT); /* writes what the socket takes */
        uint64_t t0 = clock_usec();
        busloop_deinit(&b, on_bus_closed);
        uint64_t took = clock_usec() - t0;
        kill(dbus, SIGCONT);
        sd_bus_unref(bus);
        uv_run(&loop, UV_RUN_DEFAULT);
        ck_assert_int_eq(uv_loop_close(&loop), 0);
        fprintf(stderr, "measured: busloop_deinit with 12.5 MiB queued to a stopped bus: %.1f ms\n", took / 1000.0);
        ck_assert_uint_lt(took, 5 * USEC_PER_SEC);
}
END_TEST


/* ---- a peer that drops the connection ----------------------------------- */

/* A bus peer in a thread (no dbus-daemon): answers every call with an
 * empty reply, and closes the connection when StartUnit arrives, the
 * call's reply still pending. */
typedef struct DropPeer {
        int listen_fd;
        pthread_t thread;
} DropPeer;

static int drop_filter(sd_bus_message *msg, void *userdata, sd_bus_error *e) {
        (void) userdata, (void) e;
        sd_bus *b = sd_bus_message_get_bus(msg);
        uint8_t type = 0;
        if (sd_bus_message_get_type(msg, &type) < 0 || type != SD_BUS_MESSAGE_METHOD_CALL)
                return 1;
        const char *member = sd_bus_message_get_member(msg);
        if (streq(member, "StartUnit")) {
                sd_bus_close(b);
                return 1;
        }
        if (sd_bus_message_get_expect_reply(msg)) {
                sd_bus_message *r = NULL;
                ck_assert_int_ge(sd_bus_message_new_method_return(msg, &r), 0);
                bool daemon = streq(member, "Hello") || streq(member, "AddMatch");
                ck_assert_int_ge(sd_bus_message_set_sender(r, daemon ? "org.freedesktop.DBus" : "org.freedesktop.systemd1"), 0);
                if (streq(member, "Hello"))
                        ck_assert_int_ge(sd_bus_message_append(r, "s", ":1.42"), 0);
                (void) sd_bus_send(b, r, NULL);
                sd_bus_message_unref(r);
        }
        return 1;
}

static void *drop_peer(void *userdata) {
        DropPeer *p = userdata;
        int fd = accept4(p->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
                return NULL;
        sd_bus *b = NULL;
        sd_id128_t id;
        sd_id128_randomize(&id);
        if (sd_bus_new(&b) < 0 || sd_bus_set_fd(b, fd, fd) < 0 || sd_bus_set_server(b, 1, id) < 0 ||
            sd_bus_set_anonymous(b, 1) < 0 || sd_bus_add_filter(b, NULL, drop_filter, NULL) < 0 || sd_bus_start(b) < 0)
                return NULL;
        for (int i = 0; i < 500 && sd_bus_is_open(b) > 0; i++)
                if (sd_bus_process(b, NULL) == 0)
                        (void) sd_bus_wait(b, 20000);
        sd_bus_flush_close_unref(b);
        return NULL;
}

typedef struct LostBus {
        UnitManager *m;
        int runs, disconnects;
        bool connected_at_done;
        char *message;
} LostBus;

static void on_lost_bus(UnitManager *m, bool connected, int error, void *userdata) {
        (void) m, (void) error;
        LostBus *l = userdata;
        if (!connected)
                l->disconnects++;
}

static void on_lost_run(UnitManager *m, const UnitJobResult *r, size_t n, void *userdata) {
        LostBus *l = userdata;
        l->runs++;
        l->connected_at_done = units_connected(m);
        ck_assert_uint_eq(n, 1);
        l->message = strdup(r[0].message ? r[0].message : "");
        ck_assert_str_eq(r[0].result, "error");
}

START_TEST(a_bus_lost_with_a_reply_pending_is_a_lost_bus) {
        /* sd-bus answers the pending StartUnit with its own "Connection
         * terminated" before the loop learns the bus is gone.  The run
         * must end as a lost bus (the owner starts the units again when
         * it is back), not as systemd refusing the unit: a manager that
         * took it for a refusal declared its bootstrap done with nothing
         * started. */
        _cleanup_free_ char *dir = test_tmpdir();
        _cleanup_free_ char *path = strdup_printf("%s/bus", dir);
        _cleanup_free_ char *address = strdup_printf("unix:path=%s", path);
        DropPeer p = {.listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)};
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
        ck_assert_int_eq(bind(p.listen_fd, (struct sockaddr *) &sa, sizeof sa), 0);
        ck_assert_int_eq(listen(p.listen_fd, 1), 0);
        ck_assert_int_eq(pthread_create(&p.thread, NULL, drop_peer, &p), 0);
        /* Restored at the end: under CK_FORK=no (valgrind) the suites
         * share this process's environment. */
        const char *was = getenv("DBUS_SYSTEM_BUS_ADDRESS");
        _cleanup_free_ char *saved = was ? strdup(was) : NULL;
        ck_assert_int_eq(setenv("DBUS_SYSTEM_BUS_ADDRESS", address, 1), 0);

        uv_loop_t loop;
        uv_loop_init(&loop);
        LostBus l = {0};
        UnitManagerEvents ev = {.bus_changed = on_lost_bus};
        ck_assert_int_eq(units_new(&loop, false, &ev, &l, &l.m), 0);
        ck_assert(units_connected(l.m));
        char *names[] = {"anb-worker.service", NULL};
        ck_assert_int_eq(units_track(l.m, names), 0);
        ck_assert_int_eq(units_run(l.m, "StartUnit", names, on_lost_run, &l, NULL), 0);
        run_until(&loop, &l.disconnects, 10000);
        ck_assert_int_eq(l.runs, 1);
        ck_assert_msg(!l.connected_at_done, "units_connected() was true when the run ended: %s", l.message);
        ck_assert_msg(strstr(l.message, "lost the connection to systemd"), "%s", l.message);
        ck_assert_int_eq(l.disconnects, 1);
        free(l.message);
        units_free(l.m);
        uv_run(&loop, UV_RUN_DEFAULT);
        ck_assert_int_eq(uv_loop_close(&loop), 0);
        ck_assert_int_eq(pthread_join(p.thread, NULL), 0);
        close(p.listen_fd);
        rm_rf(dir);
        if (saved)
                setenv("DBUS_SYSTEM_BUS_ADDRESS", saved, 1);
        else
                unsetenv("DBUS_SYSTEM_BUS_ADDRESS");
}
END_TEST

Suite *units_suite(void);
TEST_SUITE(units_suite)
Suite *units_suite(void) {
        Suite *s = suite_create("units");
        TCase *tc = tcase_create("table");
        tcase_add_test(tc, track_oom_leaves_the_table_as_it_was);
        tcase_add_test(tc, free_accepts_null_and_run_needs_a_bus);
        suite_add_tcase(s, tc);
        TCase *lost = tcase_create("lost_bus");
        tcase_set_timeout(lost, 20);
        tcase_add_test(lost, a_bus_lost_with_a_reply_pending_is_a_lost_bus);
        suite_add_tcase(s, lost);
        return s;
}

Suite *units_bus_suite(void);
TEST_SUITE(units_bus_suite)
Suite *units_bus_suite(void) {
        Suite *s = suite_create("units_bus");
        /* Registered only next to systemd --user: elsewhere these tests
         * neither run nor count as passed. */
        if (!have_bus())
                return s;
        TCase *tc = tcase_create("contract");
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, run_done_never_before_return);
        tcase_add_test(tc, cancel_means_no_callback);
        tcase_add_test(tc, free_during_run_is_silent);
        tcase_add_test(tc, untracked_unit_gets_no_reply);
        tcase_add_test(tc, start_jobs_are_queued_together);
        suite_add_tcase(s, tc);
        TCase *bl = tcase_create("busloop");
        tcase_set_timeout(bl, 20);
        tcase_add_test(bl, busloop_deinit_is_silent);
        tcase_add_test(bl, busloop_deinit_does_not_wait_for_a_stopped_peer);
        suite_add_tcase(s, bl);
        return s;
}
