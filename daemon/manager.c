/* See manager.h. */
#include "manager.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sysexits.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "aws.h"
#include "cli.h"
#include "credentials.h"
#include "envfile.h"
#include "control.h"
#include "health.h"
#include "http.h"
#include "imds.h"
#include "log.h"
#include "render.h"
#include "template.h"
#include "util.h"

typedef struct Waiter {
        ControlRequest *req;
        struct Waiter *next;
} Waiter;

typedef struct Report {
        bool active;
        bool explicit_; /* control or SIGHUP: config re-read, RELOADING=1 */
        uint64_t started_usec;
        char *error;
        char **changed;
        char **restarted;
        char **failed;
        Waiter *waiters;
} Report;

struct Manager {
        uv_loop_t *loop;
        Config *config;
        HttpLoop *http;
        RenderSources src; /* IMDS, AWS, credentials */
        const char *tags_source;
        unsigned aws_calls_last_render;
        UnitManager *units;
        const UnitSet *unit_set;
        HealthServer *health;
        uv_timer_t upstream_timer;
        int upstream_ok; /* -1 unknown, 0 failing, 1 ok */
        bool upstream_in_flight;
        bool draining;
        bool env_stale; /* running on the .env a previous run left: renders failing */
        bool pending_explicit;
        int health_status;
        double bootstrap_ms;
        time_t bootstrapped_at;
        Report report;
        Waiter *next_waiters;
        json_t *health_failing;
        const char *health_state;
        ControlServer *control;
        uv_timer_t watchdog_timer;
        uv_timer_t status_timer; /* keeps the ages in STATUS= current */
        uint64_t render_count, render_failures;

        uv_signal_t sigterm, sigint, sighup;
        uv_timer_t retry_timer, refresh_timer;
        unsigned bootstrap_attempt;

        Phase phase;
        bool rendering;      /* a render is in flight */
        bool reload_pending; /* a reload asked while busy: run once after */
        bool units_started;
        char *role;
        Rendered *env;
        unsigned env_revision;
        time_t env_rendered_at;
        char *last_error;
        uint64_t started_usec;
};

static void start_bootstrap(Manager *m);
static void update_status(Manager *m);

static uint64_t mono_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

static void set_error(Manager *m, const char *msg) {
        free(m->last_error);
        m->last_error = msg ? strdup(msg) : NULL;
}

static unsigned units_active(Manager *m, unsigned *ret_total) {
        unsigned active = 0;
        size_t n = units_count(m->units);
        for (size_t i = 0; i < n; i++) {
                UnitInfo u;
                if (units_get(m->units, i, &u) && streq(u.active_state, "active"))
                        active++;
        }
        *ret_total = (unsigned) n;
        return active;
}

static void format_age(time_t t, char *buf, size_t n) {
        long s = (long) (time(NULL) - t);
        if (s < 60)
                snprintf(buf, n, "%lds", s);
        else if (s < 3600)
                snprintf(buf, n, "%ldm", s / 60);
        else
                snprintf(buf, n, "%ldh%02ldm", s / 3600, (s % 3600) / 60);
}

/* The /health answer, from state already known: published on every change,
 * copied out per probe.  Only what this instance can fix gates it. */
static void publish_health(Manager *m) {
        if (!m->health)
                return;
        json_t *failing = json_array();
        const char *state;
        size_t n = units_count(m->units);
        for (size_t i = 0; i < n; i++) {
                UnitInfo u;
                if (units_get(m->units, i, &u) && !streq(u.active_state, "active")) {
                        char name[300];
                        snprintf(name, sizeof name, "unit:%s", u.name);
                        json_array_append_new(failing, json_string(name));
                }
        }
        if (!m->env_revision && !m->env_stale)
                json_array_append_new(failing, json_string("env"));
        if (m->config->health_upstream && m->upstream_ok == 0)
                json_array_append_new(failing, json_string("app"));
        if (m->draining)
                state = "draining";
        else if (m->phase == PHASE_STARTING)
                state = "starting";
        else
                state = json_array_size(failing) ? "unhealthy" : "healthy";
        int code = streq(state, "healthy") ? 200 : 503;
        json_decref(m->health_failing);
        m->health_failing = json_incref(failing);
        m->health_state = state;
        json_t *doc = json_pack("{s:s, s:o, s:I}", "status", state, "failing", failing, "env_revision",
                                (json_int_t) m->env_revision);
        char *text = json_dumps(doc, JSON_COMPACT);
        if (text) {
                size_t len = strlen(text);
                char *withnl = realloc(text, len + 2);
                if (withnl) {
                        withnl[len] = '\n';
                        withnl[len + 1] = 0;
                        text = withnl;
                }
                health_publish(m->health, code, text);
        }
        if (code != m->health_status && m->health_status)
                log_msg(code == 200 ? LOG_NOTICE : LOG_WARNING, "health: %s (%d)", state, code);
        m->health_status = code;
        free(text);
        json_decref(doc);
}

/* One current line for `systemctl status`. */
static void update_status(Manager *m) {
        publish_health(m);
        unsigned total, active = units_active(m, &total);
        const char *state = m->draining                 ? "draining"
                            : m->phase == PHASE_STARTING  ? "starting"
                            : m->health_status == 200     ? "healthy"
                                                          : "unhealthy";
        char age[32] = "never";
        if (m->env_revision)
                format_age(m->env_rendered_at, age, sizeof age);
        char creds[48] = "";
        time_t exp = credentials_expiration(m->src.creds);
        if (exp) {
                long left = (long) (exp - time(NULL));
                if (left > 0)
                        snprintf(creds, sizeof creds, " · creds %ldh%02ldm", left / 3600, (left % 3600) / 60);
                else
                        snprintf(creds, sizeof creds, " · creds EXPIRED");
        }
        if (m->phase == PHASE_STARTING && m->last_error && !m->env_stale) {
                /* One line: the first problem, and how many more. */
                size_t n = strcspn(m->last_error, "\n");
                unsigned more = 0;
                for (const char *p = m->last_error + n; *p; p++)
                        more += *p == '\n';
                sd_notifyf(false, "STATUS=starting · waiting to render the .env: %.*s%s", (int) n, m->last_error,
                           more ? " (and more: anb-agent status)" : "");
        }
        else if (m->env_stale)
                sd_notifyf(false, "STATUS=%s · %s · %u/%u units active · env: last good from a previous run, render "
                                  "failing%s",
                           state, m->role ? m->role : "default", active, total, creds);
        else
                sd_notifyf(false, "STATUS=%s · %s · %u/%u units active · env r%u (%s ago)%s", state,
                           m->role ? m->role : "default", active, total, m->env_revision, age, creds);
}

/* ---- units ------------------------------------------------------------- */

static void on_unit_changed(UnitManager *um, const UnitInfo *u, const char *old_active, const char *old_sub,
                            uint32_t old_pid, void *userdata) {
        (void) um;
        Manager *m = userdata;
        bool state_changed = !streq(old_active, u->active_state) || !streq(old_sub, u->sub_state);
        bool transient = streq(u->active_state, "activating") || streq(u->active_state, "reloading") ||
                         streq(u->active_state, "deactivating");
        bool bad = streq(u->active_state, "failed") ||
                   (streq(old_active, "active") && !streq(u->active_state, "active") &&
                    !streq(u->active_state, "reloading") && m->phase != PHASE_STOPPING);
        int prio = !*old_active ? LOG_DEBUG : bad ? LOG_WARNING : state_changed && !transient ? LOG_NOTICE : LOG_DEBUG;
        const char *res = *u->result && !streq(u->result, "success") ? u->result : NULL;
        char pid[64] = "";
        if (old_pid != u->main_pid)
                snprintf(pid, sizeof pid, ", MainPID %u → %u", old_pid, u->main_pid);
        log_msg(prio, "%s: %s/%s → %s/%s%s%s%s", u->name, *old_active ? old_active : "?", *old_sub ? old_sub : "?",
                u->active_state, u->sub_state, res ? ", Result=" : "", res ? res : "", pid);
        update_status(m);
}

static void on_bus_changed(UnitManager *um, bool connected, int error, void *userdata) {
        (void) um;
        Manager *m = userdata;
        if (!connected) {
                log_warning("lost the connection to systemd (%s); reconnecting", strerror(-error));
                return;
        }
        log_notice("connected to systemd");
        /* Units not started yet because the bus was missing: go on. */
        if (m->phase == PHASE_STARTING && m->env && !m->units_started && !units_busy(m->units) && !m->rendering)
                start_bootstrap(m);
}

static void on_recovery(UnitManager *um, const char *unit, unsigned attempt, uint64_t delay_ms, void *userdata) {
        (void) um, (void) userdata, (void) delay_ms;
        log_warning("%s stayed failed (systemd stopped restarting it: start limit, or no Restart=); "
                    "ResetFailedUnit and StartUnit, attempt %u",
                    unit, attempt);
}

/* ---- reloads ----------------------------------------------------------
 *
 * One reload runs at a time.  Requests that arrive while one runs (control
 * clients, SIGHUP, the refresh timer) are coalesced into the next one, so
 * each waiter's answer covers a reload that began after it asked. */

static void report_reset(Report *r) {
        free(r->error);
        strv_free(r->changed);
        strv_free(r->restarted);
        strv_free(r->failed);
        *r = (Report) {0};
}

static json_t *strv_to_json(char **l) {
        json_t *a = json_array();
        for (size_t i = 0; l && l[i]; i++)
                json_array_append_new(a, json_string(l[i]));
        return a;
}

static void start_next(Manager *m);

/* Ends the current reload: logs one summary line, answers its waiters,
 * tells systemd, and starts a coalesced one if asked for meanwhile. */
static void reload_end(Manager *m) {
        Report *r = &m->report;
        m->rendering = false;
        double ms = (double) (mono_usec() - r->started_usec) / 1000.0;
        _cleanup_free_ char *keys = strv_join(r->changed, ", ");
        _cleanup_free_ char *units = strv_join(r->restarted, ", ");
        if (r->error)
                log_error("reload failed after %.0f ms; the .env and units are as they were", ms);
        else if (r->active)
                log_notice("reload: %s; restarted: %s (%.0f ms)", keys && *keys ? keys : "no key changed",
                           units && *units ? units : "nothing", ms);
        for (Waiter *w = r->waiters, *next; w; w = next) {
                next = w->next;
                json_t *resp = json_pack("{s:b, s:o, s:o, s:o, s:f, s:I}", "ok", !r->error && !r->failed,
                                         "changed_keys", strv_to_json(r->changed), "restarted_units",
                                         strv_to_json(r->restarted), "failed_units", strv_to_json(r->failed),
                                         "duration_ms", ms, "env_revision", (json_int_t) m->env_revision);
                if (r->error)
                        json_object_set_new(resp, "error", json_string(r->error));
                control_reply(w->req, resp);
                free(w);
        }
        r->waiters = NULL;
        if (r->explicit_)
                sd_notify(false, "READY=1");
        report_reset(r);
        update_status(m);
        start_next(m);
}

static void fail_reload(Manager *m, const char *error) {
        free(m->report.error);
        m->report.error = strdup(error);
        reload_end(m);
}

static void on_units_started(UnitManager *um, const UnitJobResult *r, size_t n, void *userdata) {
        (void) um;
        Manager *m = userdata;
        bool ok = true;
        for (size_t i = 0; i < n; i++)
                if (!streq(r[i].result, "done")) {
                        ok = false;
                        log_error("%s", r[i].message ? r[i].message : r[i].unit);
                }
        m->units_started = true;
        m->phase = PHASE_RUNNING;
        m->bootstrap_ms = (double) (mono_usec() - m->started_usec) / 1000.0;
        m->bootstrapped_at = time(NULL);
        unsigned total, active = units_active(m, &total);
        log_notice("bootstrap finished in %.0f ms: role %s, %u/%u units active%s", m->bootstrap_ms,
                   m->role ? m->role : "default", active, total, ok ? "" : " (some failed to start, see above)");
        sd_notify(false, "READY=1");
        reload_end(m);
}

static void on_units_restarted(UnitManager *um, const UnitJobResult *r, size_t n, void *userdata) {
        (void) um;
        Manager *m = userdata;
        for (size_t i = 0; i < n; i++) {
                if (streq(r[i].result, "done"))
                        strv_push(&m->report.restarted, strdup(r[i].unit));
                else {
                        log_error("%s", r[i].message ? r[i].message : r[i].unit);
                        strv_push(&m->report.failed, strdup(r[i].message ? r[i].message : r[i].unit));
                }
        }
        reload_end(m);
}

/* ---- rendering --------------------------------------------------------- */

static void schedule_bootstrap_retry(Manager *m);

static void choose_units(Manager *m, const char *role) {
        if (!streq_ptr(m->role, role)) {
                if (m->units_started)
                        log_warning("role changed from %s to %s; restart anb-agent to apply it",
                                    m->role ? m->role : "default", role ? role : "default");
                else {
                        free(m->role);
                        m->role = role ? strdup(role) : NULL;
                }
        }
        m->unit_set = config_unit_set(m->config, m->role);
        units_track(m->units, m->unit_set->manage);
}

static void start_units(Manager *m) {
        if (!units_connected(m->units)) {
                log_warning("waiting for systemd's bus to start the units");
                m->rendering = false;
                return;
        }
        int r = units_run(m->units, "StartUnit", m->unit_set->manage, on_units_started, m);
        if (r < 0) {
                log_error("cannot start units: %s", strerror(-r));
                m->rendering = false;
        }
}

static void on_rendered(RenderOutcome *o, void *userdata) {
        Manager *m = userdata;
        if (!o) {
                fail_reload(m, "out of memory");
                return;
        }
        if (o->error) {
                log_lines(LOG_ERR, o->message);
                set_error(m, o->message);
                m->render_failures++;
                log_warning("the .env was not changed");
                if (m->phase == PHASE_STARTING || m->env_stale) {
                        m->rendering = false;
                        if (!m->units_started && access(m->config->env_output, F_OK) == 0) {
                                /* Static stability: a .env from before this start is
                                 * still the app's last good configuration. */
                                log_warning("starting the units with the last good %s (left by a previous run); "
                                            "the render is retried",
                                            m->config->env_output);
                                m->env_stale = true;
                                choose_units(m, o->role);
                                m->rendering = true;
                                start_units(m);
                        }
                        if (m->env_stale && m->phase == PHASE_RUNNING && m->report.active)
                                fail_reload(m, o->message);
                        render_outcome_free(o);
                        update_status(m);
                        schedule_bootstrap_retry(m);
                        return;
                }
                fail_reload(m, o->message);
                render_outcome_free(o);
                return;
        }
        set_error(m, NULL);
        if (m->env_stale)
                log_notice("render works again; the .env is current");
        m->env_stale = false;
        if (o->tags_source)
                m->tags_source = o->tags_source;
        m->aws_calls_last_render = o->aws_calls;
        for (char **w = o->warnings; w && *w; w++)
                log_warning("%s", *w);
        char **changed = rendered_changed_names(m->env, o->rendered);
        bool first = !m->env;
        if (o->changed || first) {
                m->env_revision++;
                m->env_rendered_at = time(NULL);
        }
        rendered_free(m->env);
        m->env = TAKE_PTR(o->rendered);
        choose_units(m, o->role);
        bool content_changed = o->changed;
        render_outcome_free(o);

        if (!m->units_started) {
                log_notice("rendered %s (r%u, %zu variables)", m->config->env_output, m->env_revision,
                           m->env->n_vars);
                strv_free(changed);
                start_units(m);
                return;
        }
        if (!content_changed) {
                strv_free(changed);
                log_info("reload: .env unchanged (r%u); nothing restarted", m->env_revision);
                reload_end(m);
                return;
        }
        m->report.changed = changed;
        _cleanup_free_ char *keys = strv_join(changed, ", ");
        log_notice("reload: .env changed (r%u): %s", m->env_revision, keys && *keys ? keys : "(comments only)");
        char **restart = m->unit_set->restart_on_change;
        if (strv_length(restart) == 0 || units_run(m->units, "RestartUnit", restart, on_units_restarted, m) < 0)
                reload_end(m);
}

/* Re-reads agent.conf for an explicit reload; a bad file is refused and
 * the running configuration stays. */
static int reload_config(Manager *m) {
        Config *c = NULL;
        _cleanup_free_ char *err = NULL;
        int r = config_load(m->config->path, &c, &err);
        if (r < 0) {
                log_error("%s", err ? err : strerror(-r));
                _cleanup_free_ char *msg = strdup_printf("%s (the running configuration stays)",
                                                         err ? err : strerror(-r));
                fail_reload(m, msg ? msg : "bad configuration");
                return r;
        }
        if (!streq(c->health_listen, m->config->health_listen) ||
            !streq(c->control_socket, m->config->control_socket) || c->bus != m->config->bus ||
            !streq(c->imds_endpoint, m->config->imds_endpoint))
                log_warning("%s: [health] listen, [control] socket, [systemd] bus and [imds] take effect at the "
                            "next start of anb-agent",
                            c->path);
        /* Keep the live settings that cannot change under a running loop. */
        free(c->health_listen), c->health_listen = strdup(m->config->health_listen);
        free(c->control_socket), c->control_socket = strdup(m->config->control_socket);
        c->bus = m->config->bus;
        config_free(m->config);
        m->config = c;
        m->unit_set = config_unit_set(c, m->role);
        return 0;
}

static void begin_reload(Manager *m, bool explicit_) {
        Report *r = &m->report;
        r->active = m->phase == PHASE_RUNNING;
        r->explicit_ = explicit_ && m->phase == PHASE_RUNNING;
        r->started_usec = mono_usec();
        if (m->phase == PHASE_RUNNING) {
                /* Requests made during bootstrap wait for the first reload. */
                r->waiters = m->next_waiters;
                m->next_waiters = NULL;
        }
        m->rendering = true;
        if (r->explicit_) {
                sd_notifyf(false, "RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long) mono_usec());
                if (reload_config(m) < 0)
                        return;
        }
        m->render_count++;
        int k = render_start(&m->src, m->config, RENDER_WRITE | RENDER_WANT_ROLE, on_rendered, m);
        if (k < 0) {
                _cleanup_free_ char *msg = strdup_printf("cannot render: %s", strerror(-k));
                fail_reload(m, msg ? msg : "cannot render");
        }
}

/* Asks for a reload: runs now, or right after the one running. */
static void request_reload(Manager *m, bool explicit_, const char *why) {
        if (m->phase == PHASE_STOPPING)
                return;
        if (m->rendering || units_busy(m->units) || m->phase == PHASE_STARTING) {
                m->reload_pending = true;
                m->pending_explicit = m->pending_explicit || explicit_;
                return;
        }
        if (why)
                log_info("reload: %s", why);
        begin_reload(m, explicit_);
}

static void start_next(Manager *m) {
        if (!m->reload_pending || m->phase != PHASE_RUNNING || m->rendering)
                return;
        bool explicit_ = m->pending_explicit;
        m->reload_pending = m->pending_explicit = false;
        log_info("reload: running the coalesced request");
        begin_reload(m, explicit_);
}

/* Bootstrap (and its retries): render, then start the units. */
static void start_bootstrap(Manager *m) {
        if (m->rendering)
                return;
        begin_reload(m, false);
}

static void on_retry(uv_timer_t *t) {
        Manager *m = t->data;
        start_bootstrap(m);
}

static void schedule_bootstrap_retry(Manager *m) {
        unsigned n = m->bootstrap_attempt < 4 ? m->bootstrap_attempt : 4;
        uint64_t delay = 2000ULL << n; /* 2 s ... 32 s */
        m->bootstrap_attempt++;
        log_notice("retrying bootstrap in %llus", (unsigned long long) delay / 1000);
        uv_timer_start(&m->retry_timer, on_retry, delay, 0);
}

static uint64_t jittered(Manager *m) {
        uint64_t base = (uint64_t) m->config->env_refresh_sec * 1000;
        uint64_t spread = base / 5; /* ±10 % */
        return base - base / 10 + (uint64_t) (uv_hrtime() % (spread + 1));
}

static void on_refresh(uv_timer_t *t) {
        Manager *m = t->data;
        if (m->phase == PHASE_RUNNING)
                request_reload(m, false, NULL);
        uv_timer_start(&m->refresh_timer, on_refresh, jittered(m), 0);
}

/* ---- /metrics and the app check ---------------------------------------- */

static void metric_escape(Buf *out, const char *s) {
        for (; *s; s++) {
                if (*s == '\\' || *s == '"')
                        buf_putc(out, '\\');
                if (*s == '\n')
                        buf_puts(out, "\\n");
                else
                        buf_putc(out, *s);
        }
}

static void write_metrics(void *userdata, Buf *out) {
        Manager *m = userdata;
        const HealthStats *hs = health_stats(m->health);
        buf_printf(out,
                   "# HELP anb_health_status 1 when /health answers 200.\n# TYPE anb_health_status gauge\n"
                   "anb_health_status %d\n"
                   "# HELP anb_draining 1 while drain is requested.\n# TYPE anb_draining gauge\nanb_draining %d\n"
                   "# HELP anb_bootstrapped 1 once the first bootstrap finished.\n# TYPE anb_bootstrapped gauge\n"
                   "anb_bootstrapped %d\n",
                   m->health_status == 200, m->draining, m->phase != PHASE_STARTING);
        buf_puts(out, "# HELP anb_unit_active 1 when the managed unit is active.\n# TYPE anb_unit_active gauge\n");
        size_t n = units_count(m->units);
        for (size_t i = 0; i < n; i++) {
                UnitInfo u;
                if (!units_get(m->units, i, &u))
                        continue;
                buf_puts(out, "anb_unit_active{unit=\"");
                metric_escape(out, u.name);
                buf_printf(out, "\",state=\"%s\"} %d\n", u.active_state, streq(u.active_state, "active"));
        }
        buf_puts(out, "# HELP anb_unit_restarts_total systemd's NRestarts for the unit.\n"
                      "# TYPE anb_unit_restarts_total counter\n");
        for (size_t i = 0; i < n; i++) {
                UnitInfo u;
                if (!units_get(m->units, i, &u))
                        continue;
                buf_puts(out, "anb_unit_restarts_total{unit=\"");
                metric_escape(out, u.name);
                buf_printf(out, "\"} %u\n", u.n_restarts);
        }
        buf_printf(out,
                   "# HELP anb_env_revision Revision of the rendered .env (bumps when its content changes).\n"
                   "# TYPE anb_env_revision gauge\nanb_env_revision %u\n"
                   "# HELP anb_env_last_render_timestamp_seconds When the .env content last changed.\n"
                   "# TYPE anb_env_last_render_timestamp_seconds gauge\n"
                   "anb_env_last_render_timestamp_seconds %lld\n"
                   "# HELP anb_renders_total Renders attempted, and failed.\n# TYPE anb_renders_total counter\n"
                   "anb_renders_total %llu\nanb_render_failures_total %llu\n",
                   m->env_revision, (long long) m->env_rendered_at, (unsigned long long) m->render_count,
                   (unsigned long long) m->render_failures);
        if (m->src.imds) {
                const ImdsStats *is = imds_stats(m->src.imds);
                buf_printf(out,
                           "# HELP anb_imds_requests_total IMDS requests by kind.\n"
                           "# TYPE anb_imds_requests_total counter\n"
                           "anb_imds_requests_total{kind=\"token\"} %u\nanb_imds_requests_total{kind=\"get\"} %u\n"
                           "# TYPE anb_imds_retries_total counter\nanb_imds_retries_total %u\n"
                           "# TYPE anb_imds_errors_total counter\nanb_imds_errors_total %u\n",
                           is->token_requests, is->get_requests, is->retries, is->errors);
        }
        if (m->src.aws)
                buf_printf(out,
                           "# HELP anb_aws_requests_total Signed AWS API calls (Secrets Manager, SSM, EC2).\n"
                           "# TYPE anb_aws_requests_total counter\nanb_aws_requests_total %u\n"
                           "# TYPE anb_aws_retries_total counter\nanb_aws_retries_total %u\n"
                           "# TYPE anb_aws_errors_total counter\nanb_aws_errors_total %u\n",
                           aws_stats(m->src.aws)->calls, aws_stats(m->src.aws)->retries, aws_stats(m->src.aws)->errors);
        if (credentials_expiration(m->src.creds))
                buf_printf(out,
                           "# HELP anb_credentials_expiry_seconds Seconds until the role credentials expire.\n"
                           "# TYPE anb_credentials_expiry_seconds gauge\nanb_credentials_expiry_seconds %lld\n",
                           (long long) (credentials_expiration(m->src.creds) - time(NULL)));
        if (m->config->health_upstream)
                buf_printf(out, "# HELP anb_app_check_ok 1 when the app answered its health check.\n"
                                "# TYPE anb_app_check_ok gauge\nanb_app_check_ok %d\n",
                           m->upstream_ok == 1);
        buf_printf(out,
                   "# HELP anb_health_probes_total /health answers by code.\n"
                   "# TYPE anb_health_probes_total counter\n"
                   "anb_health_probes_total{code=\"200\"} %llu\nanb_health_probes_total{code=\"503\"} %llu\n"
                   "# TYPE anb_http_requests_total counter\nanb_http_requests_total %llu\n"
                   "# TYPE anb_http_rejected_total counter\nanb_http_rejected_total %llu\n"
                   "# TYPE anb_http_connections_open gauge\nanb_http_connections_open %u\n"
                   "# TYPE anb_http_connections_evicted_total counter\nanb_http_connections_evicted_total %llu\n",
                   (unsigned long long) hs->probes_ok, (unsigned long long) hs->probes_failing,
                   (unsigned long long) hs->requests, (unsigned long long) hs->rejected, hs->open,
                   (unsigned long long) hs->evicted);
}

static void on_upstream(const HttpResponse *r, void *userdata) {
        Manager *m = userdata;
        m->upstream_in_flight = false;
        int ok = !r->error && r->status >= 200 && r->status < 300;
        if (ok != m->upstream_ok) {
                if (ok)
                        log_notice("app check %s: ok", m->config->health_upstream);
                else if (r->error)
                        log_warning("app check %s failed: %s", m->config->health_upstream, r->reason);
                else
                        log_warning("app check %s failed: HTTP %ld", m->config->health_upstream, r->status);
                m->upstream_ok = ok;
                update_status(m);
        }
}

static void on_upstream_timer(uv_timer_t *t) {
        Manager *m = t->data;
        if (m->upstream_in_flight || m->phase == PHASE_STOPPING)
                return;
        long timeout = m->config->health_upstream_interval_ms < 2000 ? m->config->health_upstream_interval_ms : 2000;
        HttpRequest req = {
                .method = "GET",
                .url = m->config->health_upstream,
                .connect_timeout_ms = timeout,
                .timeout_ms = timeout,
        };
        if (http_start(m->http, &req, on_upstream, m, NULL) >= 0)
                m->upstream_in_flight = true;
}

/* ---- credentials --------------------------------------------------------- */

static void on_credentials(CredentialsEvent ev, const char *message, time_t expiration, void *userdata) {
        Manager *m = userdata;
        long left = (long) (expiration - time(NULL));
        switch (ev) {
        case CREDENTIALS_REFRESHED:
                log_info("role credentials (%s) refreshed; they expire in %ldm", credentials_role(m->src.creds),
                         left / 60);
                break;
        case CREDENTIALS_REFRESH_FAILED:
                log_warning("cannot refresh the role credentials: %s; the current ones stay in use (%lds left), "
                            "retrying",
                            message, left);
                break;
        case CREDENTIALS_EXPIRED:
                log_error("the role credentials expired %lds ago and cannot be refreshed: %s; AWS values cannot be "
                          "re-read, the .env stays as it is",
                          -left, message);
                break;
        }
        update_status(m);
}

/* ---- control socket ------------------------------------------------------ */

static json_t *credentials_json(Manager *m) {
        time_t exp = credentials_expiration(m->src.creds);
        const char *err = credentials_last_error(m->src.creds);
        if (!exp && !err)
                return json_null();
        json_t *c = json_pack("{s:s?, s:I, s:I, s:b}", "role", credentials_role(m->src.creds), "expires_at",
                              (json_int_t) exp, "seconds_left", (json_int_t) (exp ? exp - time(NULL) : 0), "valid",
                              exp > time(NULL));
        json_object_set_new(c, "last_error", err ? json_string(err) : json_null());
        return c;
}

static json_t *status_json(Manager *m) {
        json_t *units = json_array();
        size_t n = units_count(m->units);
        for (size_t i = 0; i < n; i++) {
                UnitInfo u;
                if (units_get(m->units, i, &u))
                        json_array_append_new(units, json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "name", u.name,
                                                               "active_state", u.active_state, "sub_state",
                                                               u.sub_state, "result", u.result, "main_pid",
                                                               (json_int_t) u.main_pid, "restarts",
                                                               (json_int_t) u.n_restarts));
        }
        json_t *aws = json_pack("{s:s?, s:I, s:I, s:I, s:I}", "tags_source", m->tags_source, "calls",
                                (json_int_t) (m->src.aws ? aws_stats(m->src.aws)->calls : 0), "retries",
                                (json_int_t) (m->src.aws ? aws_stats(m->src.aws)->retries : 0), "errors",
                                (json_int_t) (m->src.aws ? aws_stats(m->src.aws)->errors : 0), "calls_last_render",
                                (json_int_t) m->aws_calls_last_render);
        json_t *imds = json_null();
        if (m->src.imds) {
                const ImdsStats *is = imds_stats(m->src.imds);
                imds = json_pack("{s:s, s:I, s:I, s:I, s:I}", "endpoint", m->config->imds_endpoint, "token_requests",
                                 (json_int_t) is->token_requests, "get_requests", (json_int_t) is->get_requests,
                                 "retries", (json_int_t) is->retries, "errors", (json_int_t) is->errors);
        }
        const char *phase = m->phase == PHASE_STARTING ? "starting" : m->phase == PHASE_RUNNING ? "running" : "stopping";
        json_t *st = json_pack(
                "{s:b, s:s, s:s, s:s, s:o, s:b, s:{s:b, s:f, s:I}, s:{s:I, s:I, s:I, s:s, s:s},"
                " s:{s:i, s:s, s:o}, s:o, s:o, s:o, s:o}",
                "ok", 1, "version", ANB_VERSION, "phase", phase, "state", m->health_state ? m->health_state : phase,
                "role", m->role ? json_string(m->role) : json_null(), "draining", m->draining, "bootstrap",
                "finished", m->phase != PHASE_STARTING, "ms", m->bootstrap_ms, "at", (json_int_t) m->bootstrapped_at,
                "env", "revision", (json_int_t) m->env_revision, "rendered_at", (json_int_t) m->env_rendered_at,
                "variables", (json_int_t) (m->env ? m->env->n_vars : 0), "output", m->config->env_output, "format",
                envfile_format_to_string(m->config->env_format), "health", "status", m->health_status, "state",
                m->health_state ? m->health_state : "starting", "failing",
                m->health_failing ? json_incref(m->health_failing) : json_array(), "units", units, "imds", imds,
                "credentials", credentials_json(m), "last_error",
                m->last_error ? json_string(m->last_error) : json_null());
        json_object_set_new(st, "aws", aws);
        json_object_set_new(json_object_get(st, "env"), "stale", json_boolean(m->env_stale));
        return st;
}

static void on_control(ControlRequest *req, json_t *request, void *userdata) {
        Manager *m = userdata;
        const char *cmd = json_string_value(json_object_get(request, "cmd"));
        if (streq(cmd, "status")) {
                control_reply(req, status_json(m));
        } else if (streq(cmd, "drain")) {
                bool undo = json_is_true(json_object_get(request, "undo"));
                if (m->draining != !undo)
                        log_notice("%s (requested by uid %u)", undo ? "drain undone: /health follows the instance again"
                                                                    : "draining: /health answers 503 until `anb-agent drain --undo`",
                                   (unsigned) control_request_uid(req));
                m->draining = !undo;
                update_status(m);
                control_reply(req, json_pack("{s:b, s:b, s:i}", "ok", 1, "draining", (int) m->draining, "health_status",
                                             m->health_status));
        } else if (streq(cmd, "reload")) {
                Waiter *w = calloc(1, sizeof(Waiter));
                if (!w || m->phase == PHASE_STOPPING) {
                        free(w);
                        control_reply(req, json_pack("{s:b, s:s}", "ok", 0, "error", "the agent is stopping"));
                        return;
                }
                w->req = req;
                w->next = m->next_waiters;
                m->next_waiters = w;
                request_reload(m, true, "requested by anb-agent reload");
        } else {
                control_reply(req, json_pack("{s:b, s:s}", "ok", 0, "error", "unknown command"));
        }
}

static void on_control_refused(uid_t uid, pid_t pid, void *userdata) {
        (void) userdata;
        log_warning("control: refused a client with uid %u (pid %d): only root may control the agent", (unsigned) uid,
                    (int) pid);
}

static void on_status_timer(uv_timer_t *t) {
        update_status(t->data);
}

static void on_watchdog(uv_timer_t *t) {
        (void) t;
        /* Sent from the loop itself: a stuck loop stops it, and systemd
         * restarts the agent after WatchdogSec. */
        sd_notify(false, "WATCHDOG=1");
}

/* ---- signals and lifetime --------------------------------------------- */

static void on_signal(uv_signal_t *s, int signum) {
        Manager *m = s->data;
        if (signum == SIGHUP) {
                request_reload(m, true, "SIGHUP");
                return;
        }
        log_notice("%s: exiting; the app's units keep running", strsignal(signum));
        sd_notify(false, "STOPPING=1");
        m->phase = PHASE_STOPPING;
        uv_stop(m->loop);
}

static void free_waiters(Waiter *w) {
        while (w) {
                Waiter *next = w->next;
                free(w);
                w = next;
        }
}

static void manager_teardown(Manager *m) {
        free_waiters(m->next_waiters);
        free_waiters(m->report.waiters);
        m->report.waiters = NULL;
        report_reset(&m->report);
        control_free(m->control);
        json_decref(m->health_failing);
        uv_timer_stop(&m->watchdog_timer);
        uv_timer_stop(&m->status_timer);
        health_free(m->health);
        uv_timer_stop(&m->upstream_timer);
        render_sources_free(&m->src);
        http_loop_free(m->http);
        units_free(m->units);
        uv_signal_stop(&m->sigterm);
        uv_signal_stop(&m->sighup);
        uv_signal_stop(&m->sigint);
        uv_timer_stop(&m->retry_timer);
        uv_timer_stop(&m->refresh_timer);
        cli_close_loop(m->loop);
        rendered_free(m->env);
        free(m->role);
        free(m->last_error);
        config_free(m->config);
}

static void signal_init(Manager *m, uv_signal_t *s, int signum) {
        uv_signal_init(m->loop, s);
        s->data = m;
        uv_signal_start(s, on_signal, signum);
}

int manager_run(Config *config) {
        uv_loop_t loop;
        Manager mgr = {.loop = &loop, .config = config, .started_usec = mono_usec()};
        Manager *m = &mgr;
        int r;

        uv_loop_init(&loop);
        signal(SIGPIPE, SIG_IGN);
        signal_init(m, &m->sigterm, SIGTERM);
        signal_init(m, &m->sigint, SIGINT);
        signal_init(m, &m->sighup, SIGHUP);
        uv_timer_init(&loop, &m->retry_timer);
        uv_timer_init(&loop, &m->refresh_timer);
        uv_timer_init(&loop, &m->upstream_timer);
        uv_timer_init(&loop, &m->watchdog_timer);
        uv_timer_init(&loop, &m->status_timer);
        m->status_timer.data = m;
        m->retry_timer.data = m->refresh_timer.data = m->upstream_timer.data = m;
        m->upstream_ok = -1;

        /* Bind /health first: the ALB sees "starting" (503) from the start,
         * and READY=1 comes only after the port is held. */
        _cleanup_free_ char *herr = NULL;
        r = health_new(&loop, config->health_listen, 0, write_metrics, m, &m->health, &herr);
        if (r < 0) {
                log_error("%s", herr ? herr : strerror(-r));
                manager_teardown(m);
                return r == -EINVAL ? EX_CONFIG : EX_UNAVAILABLE;
        }
        _cleanup_free_ char *cerr = NULL;
        r = control_new(&loop, config->control_socket, on_control, on_control_refused, m, &m->control, &cerr);
        if (r < 0) {
                log_error("%s", cerr ? cerr : strerror(-r));
                manager_teardown(m);
                return EX_CANTCREAT;
        }
        uint64_t wd_usec;
        if (sd_watchdog_enabled(false, &wd_usec) > 0 && wd_usec >= 2000)
                uv_timer_start(&m->watchdog_timer, on_watchdog, 0, wd_usec / 2000);

        r = http_loop_new(&loop, &m->http);
        if (r >= 0)
                r = render_sources_new(&loop, m->http, config, on_credentials, m, &m->src);
        if (r >= 0)
                credentials_keep_fresh(m->src.creds, true);
        UnitManagerEvents ev = {
                .unit_changed = on_unit_changed,
                .bus_changed = on_bus_changed,
                .recovery = on_recovery,
        };
        if (r >= 0)
                r = units_new(&loop, config->bus == BUS_USER, &ev, m, &m->units);
        if (r < 0) {
                log_error("cannot start: %s", strerror(-r));
                manager_teardown(m);
                return EX_OSERR;
        }
        units_set_recovery_delay(m->units, (uint64_t) config->start_limit_retry_sec * 1000);
        if (!units_connected(m->units))
                log_warning("cannot connect to systemd's %s bus yet; retrying",
                            config->bus == BUS_USER ? "user" : "system");
        log_notice("anb-agent %s starting: IMDS %s, .env %s", ANB_VERSION,
                   config->imds_disabled ? "disabled" : config->imds_endpoint, config->env_output);
        update_status(m);
        start_bootstrap(m);
        uv_timer_start(&m->refresh_timer, on_refresh, jittered(m), 0);
        if (config->health_upstream)
                uv_timer_start(&m->upstream_timer, on_upstream_timer, 0, config->health_upstream_interval_ms);
        uv_timer_start(&m->status_timer, on_status_timer, 30000, 30000);

        uv_run(&loop, UV_RUN_DEFAULT);
        manager_teardown(m);
        return 0;
}

int verb_run(const CliOptions *o, int argc, char **argv) {
        int code = cli_no_arguments(argc, argv,
                                    "Usage: anb-agent [--config PATH] run\n\n"
                                    "Runs the daemon: renders the .env, starts the units, stays up.\n"
                                    "Meant for systemd's ExecStart= (Type=notify).\n");
        if (code >= 0)
                return code;
        _cleanup_(config_freep) Config *c = NULL;
        code = cli_load_config(o, &c);
        if (code)
                return code;
        return manager_run(TAKE_PTR(c));
}
