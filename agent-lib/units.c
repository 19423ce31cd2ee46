/* See units.h. */
#include "units.h"

#include <errno.h>
#include <stdio.h>
#include <time.h>

#include "busloop.h"
#include "log.h"
#include "util.h"

#define SD_DEST "org.freedesktop.systemd1"
#define SD_PATH "/org/freedesktop/systemd1"
#define SD_MANAGER "org.freedesktop.systemd1.Manager"

typedef struct Unit {
        UnitManager *m;
        char *name;
        char *path;
        char *load_state, *active_state, *sub_state, *result;
        uint32_t main_pid, n_restarts;
        uint64_t changed_usec;
        sd_bus_slot *match;
        /* start-limit recovery */
        uv_timer_t *recovery_timer;
        unsigned recovery_attempt;
} Unit;

typedef struct Sequence {
        char *method;
        char **names;
        size_t next;
        char *job_path;      /* job of the current unit, once StartUnit answered */
        char *early_result;  /* JobRemoved seen before the method's reply */
        UnitJobResult *results;
        char **strings;      /* owned strings the results point into */
        size_t n_results;
        UnitsDone done;
        void *userdata;
} Sequence;

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
        unsigned reconnect_attempt;
        bool freeing;
        bool in_new;
        unsigned pending_closes; /* handles whose close callbacks are due */
        uint64_t recovery_delay_ms;

        Unit **units;
        size_t n_units;
        Sequence *seq;
};

static void sequence_step(UnitManager *m);
static int connect_bus(UnitManager *m);

static uint64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

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
                .changed_usec = u->changed_usec,
        };
}

/* ---- properties ------------------------------------------------------ */

static void schedule_recovery(Unit *u);
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
        u->changed_usec = now_usec();
        /* "failed" is where systemd stops trying: its start limit was hit
         * (systemd 252 then still reports the first failure's Result, e.g.
         * exit-code, not start-limit-hit) or the unit has no Restart=. */
        if (streq_ptr(u->active_state, "failed") && !streq_ptr(old_active, "failed"))
                schedule_recovery(u);
        else if (!streq_ptr(u->active_state, "failed"))
                cancel_recovery(u);
        if (streq_ptr(u->active_state, "active"))
                u->recovery_attempt = 0;
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
        /* An empty interface asks for the properties of every interface
         * (Unit and Service) in one call. */
        return sd_bus_call_method_async(u->m->bus, NULL, SD_DEST, u->path, "org.freedesktop.DBus.Properties",
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

static int watch_unit(Unit *u) {
        UnitManager *m = u->m;
        sd_bus_slot_unref(u->match);
        u->match = NULL;
        int r = sd_bus_match_signal_async(m->bus, &u->match, SD_DEST, u->path, "org.freedesktop.DBus.Properties",
                                          "PropertiesChanged", on_properties_changed, NULL, u);
        if (r < 0)
                return r;
        return refresh_unit(u);
}

/* ---- start-limit recovery ------------------------------------------- */

static int on_recovery_start(sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        (void) error;
        Unit *u = userdata;
        if (sd_bus_message_is_method_error(reply, NULL))
                log_debug("units: recovery start of %s: %s", u->name, sd_bus_message_get_error(reply)->message);
        return 0;
}

static void on_recovery_timer(uv_timer_t *t) {
        Unit *u = t->data;
        UnitManager *m = u->m;
        /* Only a unit that stayed failed: systemd passes through "failed"
         * on its way to an auto-restart too. */
        if (!m->bus || !streq_ptr(u->active_state, "failed"))
                return;
        u->recovery_attempt++;
        if (m->events.recovery)
                m->events.recovery(m, u->name, u->recovery_attempt, 0, m->userdata);
        /* Both calls are queued in order on the same connection. */
        sd_bus_call_method_async(m->bus, NULL, SD_DEST, SD_PATH, SD_MANAGER, "ResetFailedUnit", NULL, NULL, "s",
                                 u->name);
        sd_bus_call_method_async(m->bus, NULL, SD_DEST, SD_PATH, SD_MANAGER, "StartUnit", on_recovery_start, u,
                                 "ss", u->name, "replace");
}

static void schedule_recovery(Unit *u) {
        UnitManager *m = u->m;
        if (!u->recovery_timer) {
                u->recovery_timer = calloc(1, sizeof(uv_timer_t));
                if (!u->recovery_timer)
                        return;
                uv_timer_init(m->loop, u->recovery_timer);
                u->recovery_timer->data = u;
        }
        unsigned n = u->recovery_attempt < 5 ? u->recovery_attempt : 5;
        uint64_t delay = m->recovery_delay_ms << n; /* 10 s, 20 s, ... 320 s */
        uv_timer_start(u->recovery_timer, on_recovery_timer, delay, 0);
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
        sd_bus_slot_unref(u->match);
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

static Unit *find_unit(const UnitManager *m, const char *name) {
        /* Entries may be NULL while units_track() moves them. */
        for (size_t i = 0; i < m->n_units; i++)
                if (m->units[i] && streq(m->units[i]->name, name))
                        return m->units[i];
        return NULL;
}

int units_track(UnitManager *m, char *const *names) {
        size_t n = strv_length(names);
        Unit **nu = calloc(n + 1, sizeof(Unit *));
        if (!nu)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                Unit *u = find_unit(m, names[i]);
                if (u) {
                        /* Keep the existing entry (and its state). */
                        for (size_t k = 0; k < m->n_units; k++)
                                if (m->units[k] == u)
                                        m->units[k] = NULL;
                        nu[i] = u;
                        continue;
                }
                u = calloc(1, sizeof(Unit));
                if (!u || !(u->name = strdup(names[i])) ||
                    sd_bus_path_encode("/org/freedesktop/systemd1/unit", names[i], &u->path) < 0) {
                        unit_free(u);
                        for (size_t k = 0; k < i; k++)
                                if (!find_unit(m, nu[k]->name))
                                        unit_free(nu[k]);
                        free(nu);
                        return -ENOMEM;
                }
                u->m = m;
                nu[i] = u;
                if (m->bus)
                        watch_unit(u);
        }
        for (size_t k = 0; k < m->n_units; k++)
                unit_free(m->units[k]);
        free(m->units);
        m->units = nu;
        m->n_units = n;
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


void units_set_recovery_delay(UnitManager *m, uint64_t ms) {
        m->recovery_delay_ms = ms ? ms : 10000;
}

bool units_connected(const UnitManager *m) {
        return m->bus != NULL;
}

/* ---- sequences -------------------------------------------------------- */

static void sequence_free(Sequence *s) {
        if (!s)
                return;
        free(s->method);
        strv_free(s->names);
        free(s->job_path);
        free(s->early_result);
        free(s->results);
        strv_free(s->strings);
        free(s);
}

static const char *keep(Sequence *s, char *str) {
        if (!str || strv_push(&s->strings, str) < 0) {
                free(str);
                return "out of memory";
        }
        return str;
}

static void sequence_record(UnitManager *m, const char *result, char *message) {
        Sequence *s = m->seq;
        const char *name = s->names[s->next];
        s->results[s->n_results++] = (UnitJobResult) {
                .unit = name,
                .result = keep(s, strdup(result)),
                .message = message ? keep(s, message) : NULL,
        };
        free(s->job_path);
        s->job_path = NULL;
        free(s->early_result);
        s->early_result = NULL;
        s->next++;
        sequence_step(m);
}

typedef struct FailCtx {
        UnitManager *m;
        char *result;
} FailCtx;

/* After a failed job: fetch the unit's state so the report says what the
 * operator needs (state, the service's Result, where to look). */
static int on_failed_state(sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        (void) error;
        FailCtx *f = userdata;
        UnitManager *m = f->m;
        Sequence *s = m->seq;
        if (!s) {
                free(f->result);
                free(f);
                return 0;
        }
        const char *name = s->names[s->next];
        Unit *u = find_unit(m, name);
        Unit tmp = {.m = m};
        Unit *t = u ? u : &tmp;
        if (!sd_bus_message_is_method_error(reply, NULL))
                (void) (u ? apply_props(u, reply) : read_props(&tmp, reply));
        char *msg = strdup_printf("%s: %s job %s; unit is %s/%s%s%s — check `journalctl -u %s` and "
                                  "`systemctl status %s`",
                                  name, s->method, f->result, str_or_empty(t->active_state),
                                  str_or_empty(t->sub_state), t->result && *t->result ? ", Result=" : "",
                                  str_or_empty(t->result), name, name);
        if (!u) {
                free(tmp.load_state), free(tmp.active_state), free(tmp.sub_state), free(tmp.result);
        }
        char *result = f->result;
        free(f);
        sequence_record(m, result, msg);
        free(result);
        return 0;
}

static void job_finished(UnitManager *m, const char *result) {
        Sequence *s = m->seq;
        if (streq(result, "done")) {
                sequence_record(m, "done", NULL);
                return;
        }
        FailCtx *f = calloc(1, sizeof(FailCtx));
        _cleanup_free_ char *path = NULL;
        if (f)
                f->m = m;
        if (!f || !(f->result = strdup(result)) ||
            sd_bus_path_encode("/org/freedesktop/systemd1/unit", s->names[s->next], &path) < 0 ||
            sd_bus_call_method_async(m->bus, NULL, SD_DEST, path, "org.freedesktop.DBus.Properties", "GetAll",
                                     on_failed_state, f, "s", "") < 0) {
                if (f)
                        free(f->result);
                free(f);
                sequence_record(m, result, strdup_printf("%s: %s job %s", s->names[s->next], s->method, result));
        }
}

static int on_job_removed(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        (void) error;
        UnitManager *m = userdata;
        uint32_t id;
        const char *job, *unit, *result;
        if (sd_bus_message_read(msg, "uoss", &id, &job, &unit, &result) < 0)
                return 0;
        Sequence *s = m->seq;
        if (!s || s->next >= strv_length(s->names))
                return 0;
        if (s->job_path && streq(s->job_path, job)) {
                job_finished(m, result);
                return 0;
        }
        /* The signal can overtake the method's reply: remember it. */
        if (!s->job_path && streq(unit, s->names[s->next]) && !s->early_result) {
                char *e = strdup_printf("%s\n%s", job, result);
                s->early_result = e;
        }
        return 0;
}

static int on_job_queued(sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        (void) error;
        UnitManager *m = userdata;
        Sequence *s = m->seq;
        if (!s)
                return 0;
        const char *name = s->names[s->next];
        if (sd_bus_message_is_method_error(reply, NULL)) {
                const sd_bus_error *e = sd_bus_message_get_error(reply);
                sequence_record(m, "error",
                                strdup_printf("%s: %s refused: %s", name, s->method,
                                              e->message ? e->message : e->name));
                return 0;
        }
        const char *job;
        if (sd_bus_message_read(reply, "o", &job) < 0 || !(s->job_path = strdup(job))) {
                sequence_record(m, "error", strdup_printf("%s: unreadable reply to %s", name, s->method));
                return 0;
        }
        if (s->early_result) {
                char *nl = strchr(s->early_result, '\n');
                *nl = 0;
                if (streq(s->early_result, job)) {
                        _cleanup_free_ char *res = strdup(nl + 1);
                        job_finished(m, res ? res : "failed");
                        return 0;
                }
                free(s->early_result);
                s->early_result = NULL;
        }
        return 0;
}

static void sequence_step(UnitManager *m) {
        Sequence *s = m->seq;
        if (s->next >= strv_length(s->names)) {
                m->seq = NULL;
                if (s->done)
                        s->done(m, s->results, s->n_results, s->userdata);
                sequence_free(s);
                return;
        }
        const char *name = s->names[s->next];
        int r = sd_bus_call_method_async(m->bus, NULL, SD_DEST, SD_PATH, SD_MANAGER, s->method, on_job_queued, m,
                                         "ss", name, "replace");
        if (r < 0)
                sequence_record(m, "error", strdup_printf("%s: cannot call %s: %s", name, s->method, strerror(-r)));
}

int units_run(UnitManager *m, const char *method, char *const *names, UnitsDone done, void *userdata) {
        if (m->seq)
                return -EBUSY;
        if (!m->bus)
                return -ENOTCONN;
        Sequence *s = calloc(1, sizeof(Sequence));
        if (!s || !(s->method = strdup(method)) || !(s->names = strv_copy(names)) ||
            !(s->results = calloc(strv_length(names) + 1, sizeof(UnitJobResult)))) {
                sequence_free(s);
                return -ENOMEM;
        }
        s->done = done;
        s->userdata = userdata;
        m->seq = s;
        sequence_step(m);
        return 0;
}

bool units_busy(const UnitManager *m) {
        return m->seq != NULL;
}

/* ---- connection ------------------------------------------------------- */

static void fail_sequence(UnitManager *m, const char *why) {
        Sequence *s = m->seq;
        if (!s)
                return;
        while (s->next < strv_length(s->names)) {
                const char *name = s->names[s->next];
                s->results[s->n_results++] = (UnitJobResult) {
                        .unit = name,
                        .result = "error",
                        .message = keep(s, strdup_printf("%s: %s", name, why)),
                };
                s->next++;
        }
        m->seq = NULL;
        if (s->done)
                s->done(m, s->results, s->n_results, s->userdata);
        sequence_free(s);
}

static void on_reconnect_timer(uv_timer_t *t) {
        UnitManager *m = t->data;
        /* The old connection's handles must have closed before the
         * BusLoop is set up again. */
        int r = m->busloop.open_handles == 0 ? connect_bus(m) : -EBUSY;
        if (r < 0) {
                unsigned n = m->reconnect_attempt < 5 ? m->reconnect_attempt : 5;
                m->reconnect_attempt++;
                uv_timer_start(&m->reconnect_timer, on_reconnect_timer, 1000ULL << n, 0);
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
        for (size_t i = 0; i < m->n_units; i++) {
                m->units[i]->match = sd_bus_slot_unref(m->units[i]->match);
        }
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
        fail_sequence(m, "lost the connection to systemd");
        if (m->events.bus_changed)
                m->events.bus_changed(m, false, error, m->userdata);
        m->reconnect_attempt = 1;
        uv_timer_start(&m->reconnect_timer, on_reconnect_timer, 1000, 0);
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
                r = sd_bus_call_method_async(bus, NULL, SD_DEST, SD_PATH, SD_MANAGER, "Subscribe", NULL, NULL, "");
        for (size_t i = 0; r >= 0 && i < m->n_units; i++)
                r = watch_unit(m->units[i]);
        if (r < 0) {
                drop_bus(m);
                return r;
        }
        m->reconnect_attempt = 0;
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
        if (events)
                m->events = *events;
        m->userdata = userdata;
        uv_timer_init(loop, &m->reconnect_timer);
        m->reconnect_timer.data = m;
        m->in_new = true;
        int r = connect_bus(m);
        m->in_new = false;
        if (r < 0) {
                /* No bus yet (e.g. early boot): keep trying; the owner
                 * hears of it through bus_changed. */
                log_debug("units: cannot connect to the bus: %s", strerror(-r));
                m->reconnect_attempt = 1;
                uv_timer_start(&m->reconnect_timer, on_reconnect_timer, 1000, 0);
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
        if (m->seq) {
                Sequence *s = m->seq;
                m->seq = NULL;
                sequence_free(s);
        }
        for (size_t i = 0; i < m->n_units; i++)
                unit_free(m->units[i]);
        free(m->units);
        m->units = NULL;
        m->n_units = 0;
        drop_bus(m);
        uv_timer_stop(&m->reconnect_timer);
        m->freeing = true;
        m->pending_closes++;
        uv_close((uv_handle_t *) &m->reconnect_timer, manager_timer_closed);
}
