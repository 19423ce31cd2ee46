/* See manager.h. */
#include "manager.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sysexits.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include <jansson.h>

#include "cli.h"
#include "health.h"
#include "http.h"
#include "imds.h"
#include "log.h"
#include "render.h"
#include "template.h"
#include "util.h"

struct Manager {
        uv_loop_t *loop;
        Config *config;
        HttpLoop *http;
        ImdsClient *imds;
        UnitManager *units;
        const UnitSet *unit_set;
        HealthServer *health;
        uv_timer_t upstream_timer;
        int upstream_ok; /* -1 unknown, 0 failing, 1 ok */
        bool upstream_in_flight;
        bool draining;
        int health_status;
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
        int exit_code;
};

static void start_reload(Manager *m, const char *why);

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
        if (!m->env_revision)
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
        json_t *doc = json_pack("{s:s, s:o, s:i}", "status", state, "failing", failing, "env_revision",
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
        if (m->phase == PHASE_STARTING && m->last_error)
                sd_notifyf(false, "STATUS=starting · waiting to render the .env: %s", m->last_error);
        else
                sd_notifyf(false, "STATUS=%s · %s · %u/%u units active · env r%u (%s ago)", state,
                           m->role ? m->role : "default", active, total, m->env_revision, age);
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
        if (m->phase == PHASE_STARTING && m->env && !m->units_started && !units_busy(m->units))
                start_reload(m, NULL);
}

static void on_recovery(UnitManager *um, const char *unit, unsigned attempt, uint64_t delay_ms, void *userdata) {
        (void) um, (void) userdata, (void) delay_ms;
        log_warning("%s stayed failed (systemd stopped restarting it: start limit, or no Restart=); "
                    "ResetFailedUnit and StartUnit, attempt %u",
                    unit, attempt);
}

static bool report_jobs(const char *what, const UnitJobResult *r, size_t n) {
        bool ok = true;
        for (size_t i = 0; i < n; i++)
                if (!streq(r[i].result, "done")) {
                        ok = false;
                        log_error("%s", r[i].message ? r[i].message : r[i].unit);
                }
        (void) what;
        return ok;
}

static void reload_finished(Manager *m) {
        m->rendering = false;
        update_status(m);
        if (m->reload_pending && m->phase == PHASE_RUNNING) {
                m->reload_pending = false;
                start_reload(m, "coalesced request");
        }
}

static void on_units_started(UnitManager *um, const UnitJobResult *r, size_t n, void *userdata) {
        (void) um;
        Manager *m = userdata;
        bool ok = report_jobs("start", r, n);
        m->units_started = true;
        m->phase = PHASE_RUNNING;
        double ms = (double) (mono_usec() - m->started_usec) / 1000.0;
        unsigned total, active = units_active(m, &total);
        log_notice("bootstrap finished in %.0f ms: role %s, %u/%u units active%s", ms, m->role ? m->role : "default",
                   active, total, ok ? "" : " (some failed to start, see above)");
        sd_notify(false, "READY=1");
        reload_finished(m);
}

static void on_units_restarted(UnitManager *um, const UnitJobResult *r, size_t n, void *userdata) {
        (void) um;
        Manager *m = userdata;
        _cleanup_free_ char *names = NULL;
        char **l = NULL;
        for (size_t i = 0; i < n; i++)
                strv_push(&l, strdup(r[i].unit));
        names = strv_join(l, ", ");
        strv_free(l);
        if (report_jobs("restart", r, n))
                log_notice("restarted %s", names && *names ? names : "nothing");
        reload_finished(m);
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
        if (!m->units_started) {
                m->unit_set = config_unit_set(m->config, m->role);
                units_track(m->units, m->unit_set->manage);
        }
}

static void on_rendered(RenderOutcome *o, void *userdata) {
        Manager *m = userdata;
        if (!o) {
                log_error("render: out of memory");
                reload_finished(m);
                return;
        }
        if (o->error) {
                for (char *line = strtok(o->message, "\n"); line; line = strtok(NULL, "\n"))
                        log_error("%s", line);
                set_error(m, o->message);
                m->render_failures++;
                log_warning("the .env was not changed");
                render_outcome_free(o);
                if (m->phase == PHASE_STARTING) {
                        m->rendering = false;
                        update_status(m);
                        schedule_bootstrap_retry(m);
                } else
                        reload_finished(m);
                return;
        }
        set_error(m, NULL);
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

        if (!m->units_started) {
                log_notice("rendered %s (r%u, %zu variables)", m->config->env_output, m->env_revision,
                           m->env->n_vars);
                render_outcome_free(o);
                strv_free(changed);
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
                return;
        }
        if (!o->changed) {
                log_info("reload: .env unchanged (r%u); nothing restarted", m->env_revision);
                render_outcome_free(o);
                strv_free(changed);
                reload_finished(m);
                return;
        }
        _cleanup_free_ char *keys = strv_join(changed, ", ");
        log_notice("reload: .env changed (r%u): %s", m->env_revision, keys && *keys ? keys : "(comments only)");
        strv_free(changed);
        render_outcome_free(o);
        char **restart = m->unit_set->restart_on_change;
        if (strv_length(restart) == 0 || units_run(m->units, "RestartUnit", restart, on_units_restarted, m) < 0)
                reload_finished(m);
}

static void start_reload(Manager *m, const char *why) {
        if (m->phase == PHASE_STOPPING)
                return;
        if (m->rendering || units_busy(m->units)) {
                m->reload_pending = true;
                return;
        }
        if (why)
                log_info("reload: %s", why);
        m->rendering = true;
        m->render_count++;
        int r = render_start(m->imds, m->config, RENDER_WRITE | RENDER_WANT_ROLE, on_rendered, m);
        if (r < 0) {
                log_error("cannot render: %s", strerror(-r));
                m->rendering = false;
        }
}

static void on_retry(uv_timer_t *t) {
        Manager *m = t->data;
        start_reload(m, NULL);
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
                start_reload(m, NULL);
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
        if (m->imds) {
                const ImdsStats *is = imds_stats(m->imds);
                buf_printf(out,
                           "# HELP anb_imds_requests_total IMDS requests by kind.\n"
                           "# TYPE anb_imds_requests_total counter\n"
                           "anb_imds_requests_total{kind=\"token\"} %u\nanb_imds_requests_total{kind=\"get\"} %u\n"
                           "# TYPE anb_imds_retries_total counter\nanb_imds_retries_total %u\n"
                           "# TYPE anb_imds_errors_total counter\nanb_imds_errors_total %u\n",
                           is->token_requests, is->get_requests, is->retries, is->errors);
        }
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

/* ---- signals and lifetime --------------------------------------------- */

static void on_signal(uv_signal_t *s, int signum) {
        Manager *m = s->data;
        if (signum == SIGHUP) {
                if (m->phase == PHASE_RUNNING)
                        start_reload(m, "SIGHUP");
                else
                        m->reload_pending = true;
                return;
        }
        log_notice("%s: exiting; the app's units keep running", strsignal(signum));
        sd_notify(false, "STOPPING=1");
        m->phase = PHASE_STOPPING;
        uv_stop(m->loop);
}

static void close_walk(uv_handle_t *h, void *arg) {
        (void) arg;
        if (!uv_is_closing(h))
                uv_close(h, NULL);
}

static void manager_teardown(Manager *m) {
        health_free(m->health);
        uv_timer_stop(&m->upstream_timer);
        imds_client_free(m->imds);
        http_loop_free(m->http);
        units_free(m->units);
        uv_signal_stop(&m->sigterm);
        uv_signal_stop(&m->sighup);
        uv_signal_stop(&m->sigint);
        uv_timer_stop(&m->retry_timer);
        uv_timer_stop(&m->refresh_timer);
        uv_walk(m->loop, close_walk, NULL);
        uv_run(m->loop, UV_RUN_DEFAULT);
        if (uv_loop_close(m->loop) != 0)
                log_debug("loop closed with handles left");
        rendered_free(m->env);
        free(m->role);
        free(m->last_error);
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

        r = http_loop_new(&loop, &m->http);
        if (r >= 0 && !config->imds_disabled) {
                ImdsOptions io = {
                        .endpoint = config->imds_endpoint,
                        .token_ttl = config->imds_token_ttl,
                        .connect_timeout_ms = config->imds_connect_timeout_ms,
                        .timeout_ms = config->imds_timeout_ms,
                        .attempts = config->imds_attempts,
                };
                r = imds_client_new(&loop, m->http, &io, &m->imds);
        }
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
        start_reload(m, NULL);
        uv_timer_start(&m->refresh_timer, on_refresh, jittered(m), 0);
        if (config->health_upstream)
                uv_timer_start(&m->upstream_timer, on_upstream_timer, 0, config->health_upstream_interval_ms);

        uv_run(&loop, UV_RUN_DEFAULT);
        manager_teardown(m);
        return m->exit_code;
}

int verb_run(const CliOptions *o, int argc, char **argv) {
        if (argc > 1) {
                if (streq(argv[1], "--help") || streq(argv[1], "-h")) {
                        printf("Usage: anb-agent [--config PATH] run\n\n"
                               "Runs the daemon: renders the .env, starts the units, stays up.\n"
                               "Meant for systemd's ExecStart= (Type=notify).\n");
                        return 0;
                }
                log_error("run takes no arguments");
                return EX_USAGE;
        }
        _cleanup_(config_freep) Config *c = NULL;
        int code = cli_load_config(o, &c);
        if (code)
                return code;
        return manager_run(c);
}
