/* See units.h. */
#include "systemd/units.h"

#include <errno.h>
#include <stdio.h>

#include "basic/backoff.h"
#include "basic/clock.h"
#include "basic/log.h"
#include "basic/util.h"
#include "loop/busloop.h"

#define SD_DEST "org.freedesktop.systemd1"
#define SD_PATH "/org/freedesktop/systemd1"
#define SD_MANAGER "org.freedesktop.systemd1.Manager"

typedef struct Unit {
        UnitManager *m;
        char *name;
        char *path;
        char *load_state, *active_state, *sub_state, *result;
        uint32_t main_pid, n_restarts;
        uint64_t exec_main_start_usec;
        uint64_t changed_usec;
        /* Every call in flight for this unit has its slot here: unit_free()
         * unrefs them, so no reply ever reaches a freed Unit. */
        sd_bus_slot *match;
        sd_bus_slot *get_all;
        sd_bus_slot *recovery_call;
        /* start-limit recovery */
        uv_timer_t *recovery_timer;
        unsigned recovery_attempt; /* resets and starts made since the unit last settled */
        Backoff recovery;          /* the wait before the next one */
        bool unsettled; /* failed (or auto-restarted) and not up for a whole delay since */
        bool refresh_due; /* watched: its GetAll is due (see on_refresh_timer) */
} Unit;

/* One unit's job in a run. */
typedef struct Job {
        UnitsRun *run;
        const char *name;    /* points into run->names */
        sd_bus_slot *call;   /* the method call, then the failed-state GetAll */
        char *job_path;      /* once the method answered */
        char *early_job;     /* JobRemoved seen before the method's reply ... */
        char *early_result;  /* ... and its result */
        uint64_t queued_usec;
        bool queued, finished;
        char *result;
        char *message;
        uint64_t usec;
} Job;

struct UnitsRun {
        UnitManager *m;
        char *method;
        char **names;
        bool one_at_a_time;
        Job *jobs;
        size_t n_jobs;
        size_t next;         /* one_at_a_time: the next job to queue */
        size_t n_finished;
        UnitsDone done;
        void *userdata;
};

struct UnitManager {
        uv_loop_t *loop;
        bool user_bus;
        UnitManagerEvents events;
        void *userdata;

        sd_bus *bus;
        BusLoop busloop;
        bool attached;
        sd_bus_slot *job_removed;
        uv_timer_t reconnect_timer;
        /* Delivers a run's result on the next loop iteration when it is
         * known inside units_run() (no callback before the call returns). */
        uv_timer_t finish_timer;
        /* Sends the GetAll of newly watched units on a later loop turn:
         * a StartUnit the owner queues in this turn reaches systemd
         * first, and a unit with a job in the run waits for its end (see
         * on_refresh_timer). */
        uv_timer_t refresh_timer;
        Backoff reconnect; /* 0.5-1 s, doubling to 16-32 s */
        bool freeing;
        bool in_new;
        unsigned pending_closes; /* handles whose close callbacks are due */
        uint64_t recovery_delay_ms;
        bool recovery_off; /* the units are being stopped for good */

        Unit **units;
        size_t n_units;
        UnitsRun *run;
};

static int connect_bus(UnitManager *m);
static void run_advance(UnitsRun *run);

static int set_str(char **dst, const char *v) {
        if (streq_ptr(*dst, v))
                return 0;
        char *d = strdup(v);
        if (!d)
                return -ENOMEM;
        free(*dst);
        *dst = d;
        return 0;
}

static const char *str_or_empty(const char *s) {
        return s ? s : "";
}

static void unit_info(const Unit *u, UnitInfo *ret) {
        *ret = (UnitInfo) {
                .name = u->name,
                .load_state = str_or_empty(u->load_state),
                .active_state = str_or_empty(u->active_state),
                .sub_state = str_or_empty(u->sub_state),
                .result = str_or_empty(u->result),
                .main_pid = u->main_pid,
                .n_restarts = u->n_restarts,
                .exec_main_start_usec = u->exec_main_start_usec,
                .changed_usec = u->changed_usec,
                .recovering = u->unsettled,
        };
}

/* ---- properties ------------------------------------------------------ */

static void schedule_recovery(Unit *u);
static void schedule_settled(Unit *u);
static void cancel_recovery(Unit *u);

/* Reads an a{sv} of unit/service properties into u. */
static int read_props(Unit *u, sd_bus_message *msg) {
        int r = sd_bus_message_enter_container(msg, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(msg, 'e', "sv")) > 0) {
                const char *name, *contents;
                char type;
                if ((r = sd_bus_message_read(msg, "s", &name)) < 0 ||
                    (r = sd_bus_message_peek_type(msg, &type, &contents)) < 0)
                        return r;
                char **str = streq(name, "ActiveState") ? &u->active_state
                             : streq(name, "SubState")  ? &u->sub_state
                             : streq(name, "LoadState") ? &u->load_state
                             : streq(name, "Result")    ? &u->result
                                                        : NULL;
                uint32_t *num = streq(name, "MainPID") ? &u->main_pid : streq(name, "NRestarts") ? &u->n_restarts : NULL;
                if (str && streq(contents, "s")) {
                        const char *v;
                        if ((r = sd_bus_message_read(msg, "v", "s", &v)) < 0 || (r = set_str(str, v)) < 0)
                                return r;
                } else if (num && streq(contents, "u")) {
                        if ((r = sd_bus_message_read(msg, "v", "u", num)) < 0)
                                return r;
                } else if (streq(name, "ExecMainStartTimestamp") && streq(contents, "t")) {
                        if ((r = sd_bus_message_read(msg, "v", "t", &u->exec_main_start_usec)) < 0)
                                return r;
                } else if ((r = sd_bus_message_skip(msg, "v")) < 0)
                        return r;
                if ((r = sd_bus_message_exit_container(msg)) < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(msg);
}

static void props_updated(Unit *u, const char *old_active, const char *old_sub, uint32_t old_pid) {
        UnitManager *m = u->m;
        if (streq_ptr(old_active, u->active_state) && streq_ptr(old_sub, u->sub_state) && old_pid == u->main_pid)
                return;
        u->changed_usec = clock_usec();
        /* "failed" is where systemd stops trying: its start limit was hit
         * (systemd 252 then still reports the first failure's Result, e.g.
         * exit-code, not start-limit-hit) or the unit has no Restart=. */
        if (streq_ptr(u->active_state, "failed") || streq_ptr(u->sub_state, "auto-restart"))
                u->unsettled = true;
        if (streq_ptr(u->active_state, "failed") && !streq_ptr(old_active, "failed"))
                schedule_recovery(u);
        else if (streq_ptr(u->active_state, "active") && !streq_ptr(old_active, "active") && u->unsettled)
                /* Recovered only once it stays up: a Type=simple unit is
                 * "active" the moment it is forked, and one that crashes
                 * at once would otherwise reset the backoff every time. */
                schedule_settled(u);
        else if (!streq_ptr(u->active_state, "failed") && !streq_ptr(u->active_state, "active"))
                cancel_recovery(u);
        if (m->events.unit_changed) {
                UnitInfo info;
                unit_info(u, &info);
                m->events.unit_changed(m, &info, str_or_empty(old_active), str_or_empty(old_sub), old_pid,
                                       m->userdata);
        }
}

static int apply_props(Unit *u, sd_bus_message *msg) {
        _cleanup_free_ char *old_active = u->active_state ? strdup(u->active_state) : NULL;
        _cleanup_free_ char *old_sub = u->sub_state ? strdup(u->sub_state) : NULL;
        uint32_t old_pid = u->main_pid;
        int r = read_props(u, msg);
        if (r < 0)
                return r;
        props_updated(u, old_active, old_sub, old_pid);
        return 0;
}

static int on_get_all(sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        (void) error;
        Unit *u = userdata;
        u->get_all = sd_bus_slot_unref(u->get_all);
        if (sd_bus_message_is_method_error(reply, NULL)) {
                log_debug("units: GetAll %s: %s", u->name, sd_bus_message_get_error(reply)->message);
                return 0;
        }
        int r = apply_props(u, reply);
        if (r < 0)
                log_debug("units: cannot read properties of %s: %s", u->name, strerror(-r));
        return 0;
}

static int refresh_unit(Unit *u) {
        /* A newer GetAll answers for the older one. An empty interface
         * asks for the properties of every interface (Unit and Service)
         * in one call. */
        u->get_all = sd_bus_slot_unref(u->get_all);
        return sd_bus_call_method_async(u->m->bus, &u->get_all, SD_DEST, u->path, "org.freedesktop.DBus.Properties",
                                        "GetAll", on_get_all, u, "s", "");
}

static int on_properties_changed(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        (void) error;
        Unit *u = userdata;
        const char *iface;
        int r = sd_bus_message_read(msg, "s", &iface);
        if (r < 0)
                return 0;
        if (!streq(iface, "org.freedesktop.systemd1.Unit") && !streq(iface, "org.freedesktop.systemd1.Service"))
                return 0;
        r = apply_props(u, msg);
        if (r < 0)
                return 0;
        /* Properties only invalidated (no value sent): fetch them. */
        if (sd_bus_message_enter_container(msg, 'a', "s") > 0) {
                const char *name;
                bool want = false;
                while (sd_bus_message_read(msg, "s", &name) > 0)
                        want = want || streq(name, "ActiveState") || streq(name, "SubState") ||
                               streq(name, "MainPID") || streq(name, "Result");
                if (want)
                        refresh_unit(u);
        }
        return 0;
}

static bool job_in_flight(const UnitManager *m, const char *name) {
        for (size_t i = 0; m->run && i < m->run->n_jobs; i++) {
                const Job *j = &m->run->jobs[i];
                if (j->queued && !j->finished && streq(j->name, name))
                        return true;
        }
        return false;
}

/* The GetAll of watched units.  One whose job in the current run has not
 * ended waits for that end (job_record): systemd answers bus calls before
 * it runs its jobs, and a dump of every property costs it ~1.5 ms per unit
 * here, so at boot the units' start waited behind them.  Its
 * PropertiesChanged match is in place meanwhile, so nothing is missed. */
static void on_refresh_timer(uv_timer_t *t) {
        UnitManager *m = t->data;
        for (size_t i = 0; m->bus && i < m->n_units; i++) {
                Unit *u = m->units[i];
                if (!u->refresh_due || job_in_flight(m, u->name))
                        continue;
                int r = refresh_unit(u);
                if (r < 0) {
                        /* Out of memory, or a bus on its way out (its
                         * reconnect watches again): try again in 1 s. */
                        log_debug("units: cannot read the state of %s: %s", u->name, strerror(-r));
                        uv_timer_start(t, on_refresh_timer, 1000, 0);
                } else
                        u->refresh_due = false;
        }
}

/* The match now, so no change is missed; the state on a later turn. */
static int watch_unit(Unit *u) {
        UnitManager *m = u->m;
        sd_bus_slot_unref(u->match);
        u->match = NULL;
        int r = sd_bus_match_signal_async(m->bus, &u->match, SD_DEST, u->path, "org.freedesktop.DBus.Properties",
                                          "PropertiesChanged", on_properties_changed, NULL, u);
        if (r < 0)
                return r;
        u->refresh_due = true;
        uv_timer_start(&m->refresh_timer, on_refresh_timer, 0, 0);
        return 0;
}

/* The unit's calls go with the connection they were made on. */
static void unit_drop_calls(Unit *u) {
        u->refresh_due = false; /* the next connection watches it again */
        u->match = sd_bus_slot_unref(u->match);
        u->get_all = sd_bus_slot_unref(u->get_all);
        u->recovery_call = sd_bus_slot_unref(u->recovery_call);
}

/* ---- start-limit recovery ------------------------------------------- */

static int on_recovery_start(sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        (void) error;
        Unit *u = userdata;
        u->recovery_call = sd_bus_slot_unref(u->recovery_call);
        if (sd_bus_message_is_method_error(reply, NULL))
                log_debug("units: recovery start of %s: %s", u->name, sd_bus_message_get_error(reply)->message);
        return 0;
}

static void on_recovery_timer(uv_timer_t *t) {
        Unit *u = t->data;
        UnitManager *m = u->m;
        /* Only a unit that stayed failed: systemd passes through "failed"
         * on its way to an auto-restart too. */
        if (m->recovery_off || !streq_ptr(u->active_state, "failed"))
                return;
        if (!m->bus) {
                /* The bus is away: try again later.  After a reconnect the
                 * table reads "failed" again, no change, so nothing else
                 * would schedule it. */
                schedule_recovery(u);
                return;
        }
        u->recovery_attempt++;
        if (m->events.recovery)
                m->events.recovery(m, u->name, u->recovery_attempt, 0, m->userdata);
        /* Both calls are queued in order on the same connection; the reset
         * has no reply handler, so nothing of it refers to u. */
        u->recovery_call = sd_bus_slot_unref(u->recovery_call);
        sd_bus_call_method_async(m->bus, NULL, SD_DEST, SD_PATH, SD_MANAGER, "ResetFailedUnit", NULL, NULL, "s",
                                 u->name);
        sd_bus_call_method_async(m->bus, &u->recovery_call, SD_DEST, SD_PATH, SD_MANAGER, "StartUnit",
                                 on_recovery_start, u, "ss", u->name, "replace");
}

static bool ensure_recovery_timer(Unit *u) {
        if (!u->recovery_timer) {
                u->recovery_timer = calloc(1, sizeof(uv_timer_t));
                if (!u->recovery_timer)
                        return false;
                uv_timer_init(u->m->loop, u->recovery_timer);
                u->recovery_timer->data = u;
        }
        return true;
}

/* The unit stayed active for a whole recovery delay after it failed (and
 * systemd or we restarted it): recovered.  The backoff starts over and the owner hears of it (the
 * unit no longer counts as recovering). */
static void on_settled(uv_timer_t *t) {
        Unit *u = t->data;
        UnitManager *m = u->m;
        if (!streq_ptr(u->active_state, "active"))
                return;
        u->recovery_attempt = 0;
        u->unsettled = false;
        if (m->events.unit_changed) {
                UnitInfo info;
                unit_info(u, &info);
                m->events.unit_changed(m, &info, info.active_state, info.sub_state, info.main_pid, m->userdata);
        }
}

/* Up this long after a failure: recovered.  The first recovery delay, at
 * most 5 s, so a single crash costs /health seconds, not a whole delay. */
static void schedule_settled(Unit *u) {
        uint64_t settle = u->m->recovery_delay_ms < 5000 ? u->m->recovery_delay_ms : 5000;
        if (ensure_recovery_timer(u))
                uv_timer_start(u->recovery_timer, on_settled, settle, 0);
}

static void schedule_recovery(Unit *u) {
        UnitManager *m = u->m;
        if (!ensure_recovery_timer(u))
                return;
        /* The attempts made decide the wait, at most the delay at first:
         * 5-10 s, 10-20 s, ... 160-320 s.  Passing through "failed" on
         * systemd's own restarts schedules again without counting; the
         * delay changes when a reload changes start_limit_retry. */
        backoff_set(&u->recovery, m->recovery_delay_ms, m->recovery_delay_ms * 32, u->recovery_attempt);
        uv_timer_start(u->recovery_timer, on_recovery_timer, backoff_next(&u->recovery), 0);
}

static void cancel_recovery(Unit *u) {
        if (u->recovery_timer)
                uv_timer_stop(u->recovery_timer);
}

/* ---- units table ----------------------------------------------------- */

static void free_cb(uv_handle_t *h) {
        free(h);
}

static void unit_free(Unit *u) {
        if (!u)
                return;
        unit_drop_calls(u);
        if (u->recovery_timer)
                uv_close((uv_handle_t *) u->recovery_timer, free_cb);
        free(u->name);
        free(u->path);
        free(u->load_state);
        free(u->active_state);
        free(u->sub_state);
        free(u->result);
        free(u);
}

static Unit *find_in(Unit *const *units, size_t n, const char *name) {
        for (size_t i = 0; i < n; i++)
                if (units[i] && streq(units[i]->name, name))
                        return units[i];
        return NULL;
}

static Unit *unit_new(UnitManager *m, const char *name) {
        Unit *u = calloc(1, sizeof(Unit));
        if (!u)
                return NULL;
        u->m = m;
        backoff_init(&u->recovery, m->recovery_delay_ms, m->recovery_delay_ms * 32, uv_hrtime() ^ (uintptr_t) u);
        if (!(u->name = strdup(name)) || sd_bus_path_encode("/org/freedesktop/systemd1/unit", name, &u->path) < 0) {
                unit_free(u);
                return NULL;
        }
        return u;
}

int units_track(UnitManager *m, char *const *names) {
        size_t n = strv_length(names);
        _cleanup_free_ Unit **nu = calloc(n + 1, sizeof(Unit *));
        _cleanup_free_ bool *fresh = calloc(n + 1, sizeof(bool));
        if (!nu || !fresh)
                return -ENOMEM;
        /* First everything that can fail, touching nothing the manager
         * holds: the new table borrows the units it keeps. */
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
                if (find_in(nu, k, names[i]))
                        continue; /* listed twice */
                Unit *u = find_in(m->units, m->n_units, names[i]);
                if (!u) {
                        u = unit_new(m, names[i]);
                        if (!u) {
                                for (size_t j = 0; j < k; j++)
                                        if (fresh[j])
                                                unit_free(nu[j]);
                                return -ENOMEM;
                        }
                        fresh[k] = true;
                }
                nu[k++] = u;
        }
        /* Then the swap, which cannot fail. */
        for (size_t i = 0; i < m->n_units; i++)
                if (!find_in(nu, k, m->units[i]->name))
                        unit_free(m->units[i]);
        free(m->units);
        m->units = TAKE_PTR(nu);
        m->n_units = k;
        for (size_t i = 0; m->bus && i < k; i++)
                if (fresh[i]) {
                        int r = watch_unit(m->units[i]);
                        if (r < 0)
                                log_debug("units: cannot watch %s: %s", m->units[i]->name, strerror(-r));
                }
        return 0;
}

size_t units_count(const UnitManager *m) {
        return m->n_units;
}

bool units_get(const UnitManager *m, size_t i, UnitInfo *ret) {
        if (i >= m->n_units)
                return false;
        unit_info(m->units[i], ret);
        return true;
}

void units_set_recovery(UnitManager *m, bool on) {
        m->recovery_off = !on;
}

void units_set_recovery_delay(UnitManager *m, uint64_t ms) {
        m->recovery_delay_ms = ms ? ms : 10000;
}

/* Open, not just there: between the connection's end and the loop's
 * on_disconnect, sd-bus answers pending calls with made-up errors, and a
 * caller told of those must see the bus gone. */
bool units_connected(const UnitManager *m) {
        return m->bus && sd_bus_is_open(m->bus) > 0;
}

/* ---- runs ------------------------------------------------------------- */

static void job_drop_call(Job *j) {
        j->call = sd_bus_slot_unref(j->call);
}

static void run_free(UnitsRun *run) {
        if (!run)
                return;
        for (size_t i = 0; i < run->n_jobs; i++) {
                Job *j = &run->jobs[i];
                job_drop_call(j);
                free(j->job_path);
                free(j->early_job);
                free(j->early_result);
                free(j->result);
                free(j->message);
        }
        free(run->jobs);
        free(run->method);
        strv_free(run->names);
        free(run);
}

/* Hands the results to the owner; the run is gone afterwards. */
static void run_finish(UnitsRun *run) {
        UnitManager *m = run->m;
        _cleanup_free_ UnitJobResult *results = calloc(run->n_jobs + 1, sizeof(UnitJobResult));
        for (size_t i = 0; results && i < run->n_jobs; i++) {
                Job *j = &run->jobs[i];
                results[i] = (UnitJobResult) {
                        .unit = j->name,
                        .result = j->result ? j->result : "error",
                        .message = j->message ? j->message : (j->result ? NULL : "out of memory"),
                        .usec = j->usec,
                };
        }
        m->run = NULL;
        uv_timer_stop(&m->finish_timer);
        if (run->done)
                run->done(m, results, results ? run->n_jobs : 0, run->userdata);
        run_free(run);
}

static void job_record(Job *j, const char *result, char *message) {
        job_drop_call(j);
        j->finished = true;
        j->result = strdup(result);
        j->message = message;
        j->usec = j->queued_usec ? clock_usec() - j->queued_usec : 0;
        j->run->n_finished++;
        UnitManager *m = j->run->m;
        Unit *u = find_in(m->units, m->n_units, j->name);
        if (u && u->refresh_due) /* its GetAll waited for this */
                uv_timer_start(&m->refresh_timer, on_refresh_timer, 0, 0);
}

/* After a failed job: fetch the unit's state so the report says what the
 * operator needs (state, the service's Result, where to look). */
static int on_failed_state(sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        (void) error;
        Job *j = userdata;
        UnitsRun *run = j->run;
        UnitManager *m = run->m;
        /* Read into a scratch Unit: the tracked one hears of the same
         * state through its signals, and no owner callback may run here. */
        Unit tmp = {.m = m}, *t = &tmp;
        if (!sd_bus_message_is_method_error(reply, NULL))
                (void) read_props(&tmp, reply);
        char *msg = strdup_printf("%s: %s job %s; unit is %s/%s%s%s — check `journalctl -u %s` and "
                                  "`systemctl status %s`",
                                  j->name, run->method, j->early_result, str_or_empty(t->active_state),
                                  str_or_empty(t->sub_state), t->result && *t->result ? ", Result=" : "",
                                  str_or_empty(t->result), j->name, j->name);
        free(tmp.load_state), free(tmp.active_state), free(tmp.sub_state), free(tmp.result);
        uint64_t usec = j->usec;
        job_record(j, j->early_result, msg);
        j->usec = usec;
        run_advance(run);
        return 0;
}

static void job_removed(Job *j, const char *result) {
        UnitsRun *run = j->run;
        if (streq(result, "done")) {
                job_record(j, "done", NULL);
                run_advance(run);
                return;
        }
        /* early_result keeps the result while the unit's state is read. */
        char *res = strdup(result);
        if (!res) {
                job_record(j, result, NULL);
                run_advance(run);
                return;
        }
        free(j->early_result);
        j->early_result = res;
        j->usec = clock_usec() - j->queued_usec;
        _cleanup_free_ char *path = NULL;
        job_drop_call(j);
        if (sd_bus_path_encode("/org/freedesktop/systemd1/unit", j->name, &path) < 0 ||
            sd_bus_call_method_async(run->m->bus, &j->call, SD_DEST, path, "org.freedesktop.DBus.Properties",
                                     "GetAll", on_failed_state, j, "s", "") < 0) {
                job_record(j, result, strdup_printf("%s: %s job %s", j->name, run->method, result));
                run_advance(run);
        }
}

static int on_job_removed(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        (void) error;
        UnitManager *m = userdata;
        uint32_t id;
        const char *job, *unit, *result;
        if (sd_bus_message_read(msg, "uoss", &id, &job, &unit, &result) < 0)
                return 0;
        UnitsRun *run = m->run;
        if (!run)
                return 0;
        for (size_t i = 0; i < run->n_jobs; i++) {
                Job *j = &run->jobs[i];
                if (!j->queued || j->finished || (j->job_path && j->early_result))
                        continue;
                if (j->job_path && streq(j->job_path, job)) {
                        job_removed(j, result);
                        return 0;
                }
                /* The signal can overtake the method's reply: remember the
                 * unit's latest, the reply says whether it is ours. */
                if (!j->job_path && streq(unit, j->name)) {
                        char *p = strdup(job), *r = strdup(result);
                        if (p && r) {
                                free(j->early_job), j->early_job = p;
                                free(j->early_result), j->early_result = r;
                        } else
                                free(p), free(r);
                        return 0;
                }
        }
        return 0;
}

static int on_job_queued(sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        (void) error;
        Job *j = userdata;
        UnitsRun *run = j->run;
        job_drop_call(j);
        if (sd_bus_message_is_method_error(reply, NULL)) {
                /* The connection ended with the call pending (sd-bus's own
                 * "Connection terminated"): not systemd refusing it.  The
                 * job stays open and on_disconnect ends the run as a lost
                 * bus, which the owner retries when the bus is back. */
                if (sd_bus_is_open(sd_bus_message_get_bus(reply)) <= 0)
                        return 0;
                const sd_bus_error *e = sd_bus_message_get_error(reply);
                job_record(j, "error",
                           strdup_printf("%s: %s refused: %s", j->name, run->method, e->message ? e->message : e->name));
                run_advance(run);
                return 0;
        }
        const char *job;
        if (sd_bus_message_read(reply, "o", &job) < 0 || !(j->job_path = strdup(job))) {
                job_record(j, "error", strdup_printf("%s: unreadable reply to %s", j->name, run->method));
                run_advance(run);
                return 0;
        }
        if (j->early_job && streq(j->early_job, job)) {
                _cleanup_free_ char *res = TAKE_PTR(j->early_result);
                job_removed(j, res);
                return 0;
        }
        free(j->early_job), j->early_job = NULL;
        free(j->early_result), j->early_result = NULL;
        return 0;
}

static void job_queue(Job *j) {
        UnitsRun *run = j->run;
        j->queued = true;
        j->queued_usec = clock_usec();
        /* A restart the agent asks for (the .env changed) is not a crash:
         * it must not spend the unit's start limit (StartLimitBurst=, 5 in
         * 10 s by default), or a few quick changes leave the API failed
         * with start-limit-hit and its socket with it.  ResetFailedUnit
         * resets that counter; queued first on the same connection, systemd
         * runs it before the restart.  Crash restarts (Restart=) still
         * count between two of ours. */
        if (streq(run->method, "RestartUnit"))
                (void) sd_bus_call_method_async(run->m->bus, NULL, SD_DEST, SD_PATH, SD_MANAGER, "ResetFailedUnit", NULL,
                                         NULL, "s", j->name);
        int r = sd_bus_call_method_async(run->m->bus, &j->call, SD_DEST, SD_PATH, SD_MANAGER, run->method,
                                         on_job_queued, j, "ss", j->name, "replace");
        if (r < 0)
                job_record(j, "error", strdup_printf("%s: cannot call %s: %s", j->name, run->method, strerror(-r)));
}

/* Queues what may be queued; finishes the run when every job is done. */
static void run_advance(UnitsRun *run) {
        if (run->one_at_a_time)
                while (run->next < run->n_jobs && run->n_finished == run->next)
                        job_queue(&run->jobs[run->next++]);
        if (run->n_finished == run->n_jobs)
                run_finish(run);
}

static void on_finish_timer(uv_timer_t *t) {
        UnitManager *m = t->data;
        if (m->run && m->run->n_finished == m->run->n_jobs)
                run_finish(m->run);
}

int units_run(UnitManager *m, const char *method, char *const *names, UnitsDone done, void *userdata,
              UnitsRun **ret_run) {
        if (m->run)
                return -EBUSY;
        if (!m->bus)
                return -ENOTCONN;
        UnitsRun *run = calloc(1, sizeof(UnitsRun));
        if (!run || !(run->method = strdup(method)) || !(run->names = strv_copy(names)) ||
            !(run->jobs = calloc(strv_length(names) + 1, sizeof(Job)))) {
                run_free(run);
                return -ENOMEM;
        }
        run->m = m;
        run->n_jobs = strv_length(names);
        run->done = done;
        run->userdata = userdata;
        /* Start and stop jobs are queued together: systemd orders them by
         * After=/Before= (stops in reverse), so the whole run takes as long
         * as its critical path.  Restarts go one unit at a time: each
         * restart_on_change service is down while its job runs, and one at
         * a time keeps the others serving meanwhile (a rolling restart);
         * queued together they would all be down at once. */
        run->one_at_a_time = !streq(method, "StartUnit") && !streq(method, "StopUnit");
        for (size_t i = 0; i < run->n_jobs; i++)
                run->jobs[i] = (Job) {.run = run, .name = run->names[i]};
        m->run = run;
        if (run->one_at_a_time) {
                if (run->n_jobs > 0)
                        job_queue(&run->jobs[run->next++]);
                while (run->next < run->n_jobs && run->n_finished == run->next)
                        job_queue(&run->jobs[run->next++]);
        } else
                for (size_t i = 0; i < run->n_jobs; i++)
                        job_queue(&run->jobs[i]);
        /* Everything already known (nothing to do, calls refused at once)
         * is told on the next loop iteration, never from inside this call. */
        if (run->n_finished == run->n_jobs)
                uv_timer_start(&m->finish_timer, on_finish_timer, 0, 0);
        if (ret_run)
                *ret_run = run;
        return 0;
}

void units_cancel(UnitsRun *run) {
        if (!run)
                return;
        UnitManager *m = run->m;
        if (m->run == run) {
                m->run = NULL;
                uv_timer_stop(&m->finish_timer);
                /* GetAlls that waited for a job of this run. */
                uv_timer_start(&m->refresh_timer, on_refresh_timer, 0, 0);
        }
        run_free(run);
}

bool units_busy(const UnitManager *m) {
        return m->run != NULL;
}

/* ---- connection ------------------------------------------------------- */

/* The connection is gone: every job still open failed with it. */
static void fail_run(UnitManager *m, const char *why) {
        UnitsRun *run = m->run;
        if (!run)
                return;
        for (size_t i = 0; i < run->n_jobs; i++) {
                Job *j = &run->jobs[i];
                if (!j->finished)
                        job_record(j, "error", strdup_printf("%s: %s", j->name, why));
        }
        run_finish(run);
}

static void on_reconnect_timer(uv_timer_t *t) {
        UnitManager *m = t->data;
        /* The old connection's handles must have closed before the
         * BusLoop is set up again. */
        int r = m->busloop.open_handles == 0 ? connect_bus(m) : -EBUSY;
        if (r < 0) {
                uv_timer_start(&m->reconnect_timer, on_reconnect_timer, backoff_next(&m->reconnect), 0);
        }
}

static void maybe_free(UnitManager *m) {
        if (m->freeing && m->pending_closes == 0)
                free(m);
}

static void on_busloop_closed(BusLoop *b, void *userdata) {
        (void) b;
        UnitManager *m = userdata;
        m->pending_closes--;
        maybe_free(m);
}

static void drop_bus(UnitManager *m) {
        for (size_t i = 0; i < m->n_units; i++)
                unit_drop_calls(m->units[i]);
        for (size_t i = 0; m->run && i < m->run->n_jobs; i++)
                job_drop_call(&m->run->jobs[i]);
        m->job_removed = sd_bus_slot_unref(m->job_removed);
        if (m->attached) {
                m->pending_closes++;
                busloop_deinit(&m->busloop, on_busloop_closed);
        }
        m->attached = false;
        m->bus = sd_bus_unref(m->bus);
}

static void on_disconnect(BusLoop *b, int error, void *userdata) {
        (void) b;
        UnitManager *m = userdata;
        drop_bus(m);
        fail_run(m, "lost the connection to systemd");
        if (m->events.bus_changed)
                m->events.bus_changed(m, false, error, m->userdata);
        backoff_reset(&m->reconnect);
        uv_timer_start(&m->reconnect_timer, on_reconnect_timer, backoff_next(&m->reconnect), 0);
}

static int connect_bus(UnitManager *m) {
        sd_bus *bus = NULL;
        int r = bus_open(m->user_bus, &bus);
        if (r < 0)
                return r;
        m->bus = bus;
        r = busloop_init(&m->busloop, m->loop, bus, on_disconnect, m);
        if (r < 0) {
                m->bus = sd_bus_unref(m->bus);
                return r;
        }
        m->attached = true;
        r = sd_bus_match_signal_async(bus, &m->job_removed, SD_DEST, SD_PATH, SD_MANAGER, "JobRemoved",
                                      on_job_removed, NULL, m);
        if (r >= 0)
                /* No handler, no slot: sd-bus expects no reply and keeps
                 * nothing of it (a slot with a NULL handler would be
                 * called). */
                r = sd_bus_call_method_async(bus, NULL, SD_DEST, SD_PATH, SD_MANAGER, "Subscribe", NULL, NULL, "");
        for (size_t i = 0; r >= 0 && i < m->n_units; i++)
                r = watch_unit(m->units[i]);
        if (r < 0) {
                drop_bus(m);
                return r;
        }
        backoff_reset(&m->reconnect);
        if (m->events.bus_changed && !m->in_new)
                m->events.bus_changed(m, true, 0, m->userdata);
        return 0;
}

int units_new(uv_loop_t *loop, bool user_bus, const UnitManagerEvents *events, void *userdata, UnitManager **ret) {
        UnitManager *m = calloc(1, sizeof(UnitManager));
        if (!m)
                return -ENOMEM;
        m->loop = loop;
        m->user_bus = user_bus;
        m->recovery_delay_ms = 10000;
        backoff_init(&m->reconnect, 1000, 32000, uv_hrtime());
        if (events)
                m->events = *events;
        m->userdata = userdata;
        uv_timer_init(loop, &m->reconnect_timer);
        uv_timer_init(loop, &m->finish_timer);
        uv_timer_init(loop, &m->refresh_timer);
        m->reconnect_timer.data = m->finish_timer.data = m->refresh_timer.data = m;
        m->in_new = true;
        int r = connect_bus(m);
        m->in_new = false;
        if (r < 0) {
                /* No bus yet (e.g. early boot): keep trying; the owner
                 * hears of it through bus_changed. */
                log_debug("units: cannot connect to the bus: %s", strerror(-r));
                uv_timer_start(&m->reconnect_timer, on_reconnect_timer, backoff_next(&m->reconnect), 0);
        }
        *ret = m;
        return 0;
}

static void manager_timer_closed(uv_handle_t *h) {
        UnitManager *m = h->data;
        m->pending_closes--;
        maybe_free(m);
}

void units_free(UnitManager *m) {
        if (!m)
                return;
        units_cancel(m->run);
        for (size_t i = 0; i < m->n_units; i++)
                unit_free(m->units[i]);
        free(m->units);
        m->units = NULL;
        m->n_units = 0;
        drop_bus(m);
        m->freeing = true;
        m->pending_closes += 3;
        uv_close((uv_handle_t *) &m->reconnect_timer, manager_timer_closed);
        uv_close((uv_handle_t *) &m->finish_timer, manager_timer_closed);
        uv_close((uv_handle_t *) &m->refresh_timer, manager_timer_closed);
}
