/* The daemon's state machine (daemon/lifecycle.c), table-driven: every
 * state × event that does something, and the ones that must do nothing. */
#include <check.h>

#include "../../daemon/lifecycle.h"
#include "basic/util.h"
#include "testutil.h"

/* Rows name only the fields that matter; the rest are false. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#define R LIFE_DO_RENDER
#define RC LIFE_DO_RELOAD_CONFIG
#define SU LIFE_DO_START_UNITS
#define RU LIFE_DO_RESTART_UNITS
#define STU LIFE_DO_STOP_UNITS
#define AR LIFE_DO_ARM_RETRY
#define RR LIFE_DO_RESET_RETRY
#define RDY LIFE_DO_READY
#define RLD LIFE_DO_RELOADING
#define ER LIFE_DO_END_RELOAD
#define REF LIFE_DO_REFUSE
#define AG LIFE_DO_ARM_GRACE
#define CAN LIFE_DO_CANCEL
#define EX LIFE_DO_EXIT
#define HOOK LIFE_DO_COMPLETE_HOOK
#define TP LIFE_DO_TAKE_PENDING

typedef struct Row {
        const char *what;
        Life before;
        LifeEvent ev;
        LifeState after;
        unsigned actions;
        bool pending_after;
        bool stale_after;
} Row;

#define S(st, ...) {.state = LIFE_##st, __VA_ARGS__}
#define E(k, ...) {.kind = LIFE_##k, __VA_ARGS__}

static const Row rows[] = {
        {"begin renders", S(STARTING), E(BEGIN), LIFE_STARTING, R},
        {"begin twice does nothing", S(RUNNING), E(BEGIN), LIFE_RUNNING, 0},
        {"first render, bus up: start units", S(STARTING, .bus_up = true), E(RENDERED, .changed = true),
         LIFE_STARTING_UNITS, RR | SU},
        {"first render, no bus: wait for it", S(STARTING), E(RENDERED, .changed = true), LIFE_WAITING_BUS, RR},
        {"bus comes: start units", S(WAITING_BUS), E(BUS_UP), LIFE_STARTING_UNITS, SU},
        {"bus lost while units start: wait for it again", S(STARTING_UNITS, .bus_up = true), E(BUS_DOWN),
         LIFE_WAITING_BUS, 0},
        {"bus lost while running changes nothing", S(RUNNING, .bus_up = true), E(BUS_DOWN), LIFE_RUNNING, 0},
        {"bus up elsewhere only records it", S(RUNNING), E(BUS_UP), LIFE_RUNNING, 0},
        {"render fails, no .env: retry later", S(STARTING, .bus_up = true), E(RENDER_FAILED), LIFE_STARTING, AR},
        {"render fails, .env from before: start on it and retry", S(STARTING, .bus_up = true),
         E(RENDER_FAILED, .env_exists = true), LIFE_STARTING_UNITS, AR | SU, false, true},
        {"retry while starting renders again", S(STARTING), E(RETRY), LIFE_STARTING, R},
        {"units started: READY", S(STARTING_UNITS), E(UNITS_DONE), LIFE_RUNNING, RDY},
        {"units started with a request pending: READY, then the coalesced reload",
         S(STARTING_UNITS, .pending = true, .pending_explicit = true), E(UNITS_DONE), LIFE_RELOADING,
         RDY | TP | RLD | RC | R},
        /* The dropped-retry defect: a retry during slow unit starts on a
         * stale .env must run once the units are up. */
        {"retry during unit start on a stale .env is kept", S(STARTING_UNITS, .env_stale = true), E(RETRY),
         LIFE_STARTING_UNITS, 0, true, true},
        {"...and runs when the units are up", S(STARTING_UNITS, .env_stale = true, .pending = true),
         E(UNITS_DONE), LIFE_RELOADING, RDY | TP | R, false, true},
        {"retry while running on a stale .env re-renders", S(RUNNING, .env_stale = true), E(RETRY),
         LIFE_RELOADING, TP | R, false, true},
        {"a stray retry when the .env is current does nothing", S(RUNNING), E(RETRY), LIFE_RUNNING, 0},
        {"stale render works again: restart", S(RELOADING, .env_stale = true),
         E(RENDERED, .changed = true, .restarts = true), LIFE_RELOADING, RR | RU},
        {"stale render fails again: retry", S(RELOADING, .env_stale = true), E(RENDER_FAILED, .env_exists = true),
         LIFE_RUNNING, ER | AR, false, true},
        {"reload while running", S(RUNNING), E(RELOAD), LIFE_RELOADING, TP | R},
        {"explicit reload re-reads the config, RELOADING=1", S(RUNNING), E(RELOAD, .explicit_ = true),
         LIFE_RELOADING, TP | RLD | RC | R},
        {"reload while reloading is coalesced", S(RELOADING), E(RELOAD), LIFE_RELOADING, 0, true},
        {"reload while starting waits for the first reload", S(STARTING), E(RELOAD), LIFE_STARTING, 0, true},
        {"reload while units start is coalesced", S(STARTING_UNITS), E(RELOAD), LIFE_STARTING_UNITS, 0, true},
        {"unchanged render ends the reload", S(RELOADING), E(RENDERED), LIFE_RUNNING, RR | ER},
        {"unchanged render ends an explicit reload with READY", S(RELOADING, .current_explicit = true),
         E(RENDERED), LIFE_RUNNING, RR | ER | RDY},
        {"changed render with nothing to restart ends the reload", S(RELOADING), E(RENDERED, .changed = true),
         LIFE_RUNNING, RR | ER},
        {"changed render restarts", S(RELOADING), E(RENDERED, .changed = true, .restarts = true), LIFE_RELOADING,
         RR | RU},
        {"restarts done end the reload", S(RELOADING, .restarting = true), E(UNITS_DONE), LIFE_RUNNING, ER},
        {"restarts done with a request pending start it", S(RELOADING, .restarting = true, .pending = true),
         E(UNITS_DONE), LIFE_RELOADING, ER | TP | R},
        {"failed reload ends it, the old .env stays", S(RELOADING), E(RENDER_FAILED, .env_exists = true),
         LIFE_RUNNING, ER},
        {"units done without jobs asked is ignored", S(RELOADING), E(UNITS_DONE), LIFE_RELOADING, 0},
        {"sigterm with grace drains", S(RUNNING), E(SIGTERM, .grace = true), LIFE_DRAINING, CAN | AG},
        {"sigterm mid-reload with grace cancels it", S(RELOADING, .pending = true), E(SIGTERM, .grace = true),
         LIFE_DRAINING, CAN | AG},
        {"sigterm without grace stops", S(RELOADING), E(SIGTERM), LIFE_STOPPING, CAN | EX},
        {"second sigterm while draining stops now", S(DRAINING), E(SIGTERM, .grace = true), LIFE_STOPPING,
         CAN | EX},
        {"grace over stops", S(DRAINING), E(GRACE_OVER), LIFE_STOPPING, EX},
        {"grace over elsewhere is ignored", S(RUNNING), E(GRACE_OVER), LIFE_RUNNING, 0},
        {"sigterm while stopping does nothing", S(STOPPING), E(SIGTERM), LIFE_STOPPING, 0},
        /* The shutdown defect: nothing that arrives while stopping starts
         * work or ends a reload. */
        {"render result while stopping is ignored", S(STOPPING), E(RENDER_FAILED), LIFE_STOPPING, 0},
        {"render success while stopping is ignored", S(STOPPING), E(RENDERED, .changed = true), LIFE_STOPPING, 0},
        {"units done while stopping is ignored", S(STOPPING), E(UNITS_DONE), LIFE_STOPPING, 0},
        {"reload while stopping is refused", S(STOPPING), E(RELOAD, .explicit_ = true), LIFE_STOPPING, REF},
        {"reload while draining is refused", S(DRAINING), E(RELOAD), LIFE_DRAINING, REF},
        {"retry while draining is ignored", S(DRAINING, .env_stale = true), E(RETRY), LIFE_DRAINING, 0, false, true},
        {"bus back while stopping starts nothing", S(STOPPING), E(BUS_UP), LIFE_STOPPING, 0},
        {"terminate while running stops the units", S(RUNNING), E(TERMINATE), LIFE_TERMINATING, CAN | STU},
        {"terminate while starting stops the units", S(STARTING_UNITS), E(TERMINATE), LIFE_TERMINATING, CAN | STU},
        {"units stopped: complete the hook", S(TERMINATING), E(UNITS_DONE), LIFE_TERMINATING, HOOK},
        {"reload while terminating is refused", S(TERMINATING), E(RELOAD), LIFE_TERMINATING, REF},
        {"terminate twice does nothing", S(TERMINATING), E(TERMINATE), LIFE_TERMINATING, 0},
        {"sigterm before the terminate hook is answered waits for it", S(TERMINATING), E(SIGTERM, .grace = true),
         LIFE_TERMINATING, 0},
        {"...the hook answered: leave", S(TERMINATING, .exit_after_hook = true), E(HOOK_DONE), LIFE_STOPPING, EX},
        {"a second sigterm while waiting for the hook leaves now", S(TERMINATING, .exit_after_hook = true),
         E(SIGTERM, .grace = true), LIFE_STOPPING, CAN | EX},
        {"hook answered, no sigterm yet: stay", S(TERMINATING), E(HOOK_DONE), LIFE_TERMINATING, 0},
        {"sigterm after the hook was answered leaves (503 since the terminate began)", S(TERMINATING, .hook_done = true),
         E(SIGTERM, .grace = true), LIFE_STOPPING, CAN | EX},
        {"hook done outside terminating is ignored", S(RUNNING), E(HOOK_DONE), LIFE_RUNNING, 0},
};

START_TEST(lifecycle_transition_table) {
        const Row *r = &rows[_i];
        Life l = r->before;
        unsigned a = life_step(&l, &r->ev);
        ck_assert_msg(l.state == r->after, "%s: state %s, want %s", r->what, life_state_to_string(l.state),
                      life_state_to_string(r->after));
        ck_assert_msg(a == r->actions, "%s: actions %#x, want %#x", r->what, a, r->actions);
        ck_assert_msg(l.pending == r->pending_after, "%s: pending %d", r->what, l.pending);
        ck_assert_msg(l.env_stale == r->stale_after, "%s: env_stale %d", r->what, l.env_stale);
}
END_TEST

START_TEST(lifecycle_every_state_and_event_is_named) {
        for (int s = 0; s < _LIFE_STATE_MAX; s++)
                ck_assert_str_ne(life_state_to_string(s), "?");
        for (int e = 0; e < _LIFE_EVENT_MAX; e++)
                ck_assert_str_ne(life_event_to_string(e), "?");
}
END_TEST

START_TEST(lifecycle_no_event_starts_work_once_stopping) {
        /* Whatever arrives after STOPPING (in any order, with any flags),
         * no action but refusing is ever asked for. */
        for (int e = 0; e < _LIFE_EVENT_MAX; e++)
                for (int flags = 0; flags < 32; flags++) {
                        Life l = {.state = LIFE_STOPPING, .env_stale = flags & 1, .bus_up = flags & 2};
                        LifeEvent ev = {.kind = e, .changed = flags & 4, .restarts = flags & 4,
                                        .env_exists = flags & 8, .explicit_ = flags & 16, .grace = flags & 16};
                        unsigned a = life_step(&l, &ev);
                        ck_assert_msg((a & ~(unsigned) LIFE_DO_REFUSE) == 0, "event %s asked %#x while stopping",
                                      life_event_to_string(e), a);
                        ck_assert_int_eq(l.state, LIFE_STOPPING);
                }
}
END_TEST

START_TEST(lifecycle_bootstrap_story) {
        /* IMDS down at start with a .env from before, then back: the path
         * that once lost its retry. */
        Life l;
        life_init(&l);
        ck_assert_uint_eq(life_step(&l, &(LifeEvent) {.kind = LIFE_BEGIN}), R);
        life_step(&l, &(LifeEvent) {.kind = LIFE_BUS_UP});
        ck_assert_uint_eq(life_step(&l, &(LifeEvent) {.kind = LIFE_RENDER_FAILED, .env_exists = true}), AR | SU);
        ck_assert_uint_eq(life_step(&l, &(LifeEvent) {.kind = LIFE_RETRY}), 0); /* units slow: kept */
        ck_assert_uint_eq(life_step(&l, &(LifeEvent) {.kind = LIFE_UNITS_DONE}), RDY | TP | R);
        ck_assert_uint_eq(life_step(&l, &(LifeEvent) {.kind = LIFE_RENDERED, .changed = true, .restarts = true}),
                          RR | RU);
        ck_assert(!l.env_stale);
        ck_assert_uint_eq(life_step(&l, &(LifeEvent) {.kind = LIFE_UNITS_DONE}), ER);
        ck_assert_int_eq(l.state, LIFE_RUNNING);
}
END_TEST

TEST_SUITE(suite_lifecycle)
Suite *suite_lifecycle(void) {
        Suite *s = suite_create("lifecycle");
        TCase *tc = tcase_create("lifecycle");
        tcase_add_loop_test(tc, lifecycle_transition_table, 0, (int) ELEMENTSOF(rows));
        tcase_add_test(tc, lifecycle_every_state_and_event_is_named);
        tcase_add_test(tc, lifecycle_no_event_starts_work_once_stopping);
        tcase_add_test(tc, lifecycle_bootstrap_story);
        suite_add_tcase(s, tc);
        return s;
}
