/* See manager.h.  The wiring half of the daemon: it owns the loop and
 * everything on it, turns what happens (a render's outcome, the units'
 * jobs, timers, signals, control requests, the bus) into lifecycle events,
 * and executes the actions life_step() returns.  Renders and reload
 * reports are in reload.c, the fleet's hooks in hooks.c, what operators
 * and the ALB see in publish.c. */
#include "manager.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "aws/credentials.h"
#include "basic/clock.h"
#include "basic/log.h"
#include "basic/util.h"
#include "cli.h"
#include "loop/http.h"
#include "manager-internal.h"

static char **reversed(char *const *l);
static char **to_stop(Manager *m);
static void on_units_stopped(UnitManager *um, const UnitJobResult *r, size_t n, void *userdata);
static void run_units(Manager *m, const char *method, char **names, UnitsDone done);
static void restart_stale(Manager *m);

/* ---- units ------------------------------------------------------------- */

static void on_unit_changed(UnitManager *um, const UnitInfo *u, const char *old_active, const char *old_sub,
                            uint32_t old_pid, void *userdata) {
        (void) um;
        Manager *m = userdata;
        bool moved = !streq(old_active, u->active_state) || !streq(old_sub, u->sub_state);
        bool transient = streq(u->active_state, "activating") || streq(u->active_state, "reloading") ||
                         streq(u->active_state, "deactivating");
        bool expected_stop = m->life.state == LIFE_TERMINATING || m->life.state == LIFE_STOPPING;
        bool bad = streq(u->active_state, "failed") ||
                   (streq(old_active, "active") && !streq(u->active_state, "active") &&
                    !streq(u->active_state, "reloading") && !expected_stop);
        int prio = !*old_active ? LOG_DEBUG : bad ? LOG_WARNING : moved && !transient ? LOG_NOTICE : LOG_DEBUG;
        const char *res = *u->result && !streq(u->result, "success") ? u->result : NULL;
        char pid[64] = "";
        if (old_pid != u->main_pid)
                snprintf(pid, sizeof pid, ", MainPID %u → %u", old_pid, u->main_pid);
        log_msg(prio, "%s: %s/%s → %s/%s%s%s%s", u->name, *old_active ? old_active : "?", *old_sub ? old_sub : "?",
                u->active_state, u->sub_state, res ? ", Result=" : "", res ? res : "", pid);
        state_changed(m);
        restart_stale(m);
}

/* Restarts for staleness per .env: more would mean the stamps cannot be
 * trusted (a unit whose restart does not exec), not an old .env. */
#define STALE_RESTARTS_MAX 3

bool restarts_on_change(const Manager *m, const char *unit) {
        return m->unit_set && strv_contains(m->unit_set->restart_on_change, unit) && strv_contains(m->manage, unit);
}

char **units_to_restart(const Manager *m) {
        char **l = calloc(1, sizeof(char *));
        for (char **u = m->unit_set ? m->unit_set->restart_on_change : NULL; l && u && *u; u++)
                if (restarts_on_change(m, *u))
                        strv_push(&l, strdup(*u));
        return l;
}

char *stale_units(Manager *m) {
        if (!m->env_written_usec || !m->unit_set)
                return NULL;
        if (m->stale_restart_for == m->env_revision && m->stale_restarts >= STALE_RESTARTS_MAX)
                return NULL;
        /* The clock was stepped back since the write: wall-clock stamps
         * from before and after cannot be compared. */
        if (m->env_written_usec > clock_realtime_usec())
                return NULL;
        _cleanup_(strv_freep) char **stale = NULL;
        for (size_t i = 0; i < units_count(m->units); i++) {
                UnitInfo u;
                if (!units_get(m->units, i, &u) || !restarts_on_change(m, u.name))
                        continue;
                bool running = streq(u.active_state, "active") || streq(u.active_state, "activating") ||
                               streq(u.active_state, "reloading");
                if (running && u.exec_main_start_usec && u.exec_main_start_usec < m->env_written_usec) {
                        char *name = strdup(u.name);
                        if (!name || strv_push(&stale, name) < 0) {
                                free(name);
                                return NULL;
                        }
                }
        }
        return stale ? strv_join(stale, " ") : NULL;
}

void stale_restart_spend(Manager *m) {
        if (m->stale_restart_for != m->env_revision) {
                m->stale_restart_for = m->env_revision;
                m->stale_restarts = 0;
        }
        m->stale_restarts++;
}

/* Restarts (through a reload: render, then the restarts) units left on an
 * older .env; the reload spends one of the .env's few restarts. */
static void restart_stale(Manager *m) {
        if (m->life.state != LIFE_RUNNING)
                return;
        _cleanup_free_ char *stale = stale_units(m);
        if (!stale)
                return;
        log_notice("%s started before the .env it reads was last written (an agent restart or a lost bus came "
                   "between): restarting",
                   stale);
        dispatch(m, (LifeEvent) {.kind = LIFE_RELOAD});
}

static void on_bus_changed(UnitManager *um, bool connected, int error, void *userdata) {
        (void) um;
        Manager *m = userdata;
        if (connected)
                log_notice("connected to systemd");
        else
                log_warning("lost the connection to systemd (%s); reconnecting", strerror(-error));
        dispatch(m, (LifeEvent) {.kind = connected ? LIFE_BUS_UP : LIFE_BUS_DOWN});
        if (connected && m->stop_pending && m->life.state == LIFE_TERMINATING) {
                m->stop_pending = false;
                _cleanup_(strv_freep) char **rev = to_stop(m);
                run_units(m, "StopUnit", rev, on_units_stopped);
        }
        /* Restarts lost with the bus: the units' start stamps from before
         * are still in the table. */
        if (connected)
                restart_stale(m);
}

static void on_recovery(UnitManager *um, const char *unit, unsigned attempt, uint64_t delay_ms, void *userdata) {
        (void) um, (void) userdata, (void) delay_ms;
        log_warning("%s stayed failed (systemd stopped restarting it: start limit, or no Restart=); "
                    "ResetFailedUnit and StartUnit, attempt %u",
                    unit, attempt);
}

/* The bootstrap's time and line, for status and the log; also when the
 * role manages no unit. */
static void bootstrap_finished(Manager *m, bool ok) {
        m->bootstrap_ms = clock_ms_since(m->started_usec);
        m->bootstrapped_at = time(NULL);
        unsigned total, active = units_active(m, &total);
        log_notice("bootstrap finished in %.0f ms: role %s, %u/%u units active%s", m->bootstrap_ms,
                   m->role ? m->role : "default", active, total, ok ? "" : " (some failed to start, see above)");
}

static void on_units_started(UnitManager *um, const UnitJobResult *r, size_t n, void *userdata) {
        (void) um;
        Manager *m = userdata;
        m->jobs = NULL;
        if (m->life.state != LIFE_STARTING_UNITS)
                return; /* the bus went and came back: a newer start runs */
        if (!units_connected(m->units)) {
                /* The bus went with the jobs: start them again when it is
                 * back, rather than call this a bootstrap. */
                dispatch(m, (LifeEvent) {.kind = LIFE_BUS_DOWN});
                return;
        }
        bool ok = true;
        for (size_t i = 0; i < n; i++)
                if (!streq(r[i].result, "done")) {
                        ok = false;
                        log_error("%s", r[i].message ? r[i].message : r[i].unit);
                }
        bootstrap_finished(m, ok);
        dispatch(m, (LifeEvent) {.kind = LIFE_UNITS_DONE});
        restart_stale(m); /* units that were running before this start */
}

static void on_units_restarted(UnitManager *um, const UnitJobResult *r, size_t n, void *userdata) {
        (void) um;
        Manager *m = userdata;
        m->jobs = NULL;
        if (m->life.state != LIFE_RELOADING)
                return;
        for (size_t i = 0; i < n; i++) {
                if (streq(r[i].result, "done"))
                        strv_push(&m->report.restarted, strdup(r[i].unit));
                else {
                        log_error("%s", r[i].message ? r[i].message : r[i].unit);
                        strv_push(&m->report.failed, strdup(r[i].message ? r[i].message : r[i].unit));
                }
        }
        dispatch(m, (LifeEvent) {.kind = LIFE_UNITS_DONE});
}

static void on_units_stopped(UnitManager *um, const UnitJobResult *r, size_t n, void *userdata) {
        (void) um;
        Manager *m = userdata;
        m->jobs = NULL;
        if (m->life.state != LIFE_TERMINATING)
                return;
        if (!units_connected(m->units)) {
                log_warning("the bus went while the units were stopping; stopping them again when it is back");
                m->stop_pending = true;
                return;
        }
        for (size_t i = 0; i < n; i++)
                if (!streq(r[i].result, "done"))
                        log_error("%s", r[i].message ? r[i].message : r[i].unit);
        log_notice("the managed units are stopped");
        dispatch(m, (LifeEvent) {.kind = LIFE_UNITS_DONE});
}

void choose_units(Manager *m, const char *role) {
        if (!streq_ptr(m->role, role)) {
                /* Once units were picked, a new role needs a restart. */
                if (m->unit_set)
                        log_warning("role changed from %s to %s; restart anb-agent to apply it",
                                    m->role ? m->role : "default", role ? role : "default");
                else {
                        free(m->role);
                        m->role = role ? strdup(role) : NULL;
                }
        }
        m->unit_set = config_unit_set(m->config, m->role);
        if (m->manage)
                return;
        m->manage = strv_copy(m->unit_set->manage);
        int r = m->manage ? units_track(m->units, m->manage) : -ENOMEM;
        if (r < 0)
                log_error("cannot track the units: %s", strerror(-r));
}

bool manage_changed(const Manager *m, const Config *c) {
        if (!m->manage)
                return false;
        char *const *l = config_unit_set(c, m->role)->manage;
        size_t n = strv_length(l);
        if (n != strv_length(m->manage))
                return true;
        for (size_t i = 0; i < n; i++)
                if (!streq(l[i], m->manage[i]))
                        return true;
        return false;
}

/* Queues jobs; a synchronous failure (no bus) becomes the event it means. */
static void run_units(Manager *m, const char *method, char **names, UnitsDone done) {
        if (strv_length(names) == 0) {
                dispatch(m, (LifeEvent) {.kind = LIFE_UNITS_DONE});
                return;
        }
        units_cancel(m->jobs); /* never two sequences: the lifecycle wants this one */
        m->jobs = NULL;
        int r = units_run(m->units, method, names, done, m, &m->jobs);
        if (r == -ENOTCONN && streq(method, "StopUnit")) {
                /* Not stopped: stopped when the bus is back. */
                log_warning("waiting for systemd's bus to stop the units");
                m->stop_pending = true;
        } else if (r == -ENOTCONN) {
                log_warning("waiting for systemd's bus to %s the units", streq(method, "StartUnit") ? "start" : "reach");
                /* Not a success: the reload says so; the units restart
                 * when the bus is back (they run on an older .env). */
                if (!streq(method, "StartUnit"))
                        strv_push(&m->report.failed,
                                  strdup_printf("%s: systemd's bus is not connected; done when it is back", method));
                dispatch(m, (LifeEvent) {.kind = LIFE_BUS_DOWN});
                if (!streq(method, "StartUnit"))
                        dispatch(m, (LifeEvent) {.kind = LIFE_UNITS_DONE});
        } else if (r < 0) {
                log_error("cannot %s the units: %s", method, strerror(-r));
                if (!streq(method, "StartUnit"))
                        strv_push(&m->report.failed, strdup_printf("%s: %s", method, strerror(-r)));
                dispatch(m, (LifeEvent) {.kind = LIFE_UNITS_DONE});
        }
}

/* What to stop, last started first: the units supervised, or -- when the
 * agent stops before it knew its role (restarted during Terminating:Wait,
 * its first render slower than the first poll) -- every unit any role
 * manages, so whatever the previous run started still stops warm and in
 * order (stopping a unit that is not running does nothing). */
static char **to_stop(Manager *m) {
        if (m->manage)
                return reversed(m->manage);
        _cleanup_(strv_freep) char **all = strv_copy(m->config->units.manage);
        for (size_t i = 0; all && i < m->config->n_roles; i++)
                for (char **u = m->config->roles[i].manage; u && *u; u++)
                        if (!strv_contains(all, *u))
                                strv_push(&all, strdup(*u));
        if (strv_length(all))
                log_notice("the role is not known yet (no render since the agent started): stopping every unit a "
                           "role manages");
        return reversed(all);
}

static char **reversed(char *const *l) {
        size_t n = strv_length(l);
        char **r = calloc(n + 1, sizeof(char *));
        for (size_t i = 0; r && i < n; i++)
                r[i] = strdup(l[n - 1 - i]);
        return r;
}

/* ---- executing the lifecycle's decisions ------------------------------- */

static void on_retry(uv_timer_t *t) {
        dispatch(t->data, (LifeEvent) {.kind = LIFE_RETRY});
}

static void on_grace_over(uv_timer_t *t) {
        Manager *m = t->data;
        log_notice("drain grace (%us) over: exiting", m->config->drain_grace_sec);
        dispatch(m, (LifeEvent) {.kind = LIFE_GRACE_OVER});
}

static void execute(Manager *m, unsigned a) {
        if (a & LIFE_DO_CANCEL) {
                /* A render in flight is cancelled (its calls with it); unit
                 * jobs already queued are systemd's and finish, their
                 * results ignored in these states.  Nobody waits. */
                render_cancel(m->render_job);
                m->render_job = NULL;
                m->render_in_flight = false;
                units_cancel(m->jobs);
                m->jobs = NULL;
                if (!list_empty(&m->report.waiters) || !list_empty(&m->next_waiters))
                        log_info("answering pending reloads: the agent is leaving");
                answer_all(&m->report.waiters, "the agent is stopping");
                answer_all(&m->next_waiters, "the agent is stopping");
                report_clear(&m->report);
                uv_timer_stop(&m->retry_timer);
        }
        if (a & LIFE_DO_END_RELOAD)
                reload_end(m);
        if (a & LIFE_DO_READY)
                sd_notify(false, "READY=1");
        if (a & LIFE_DO_RESET_RETRY) {
                backoff_reset(&m->retry_backoff);
                uv_timer_stop(&m->retry_timer);
        }
        if (a & LIFE_DO_ARM_RETRY) {
                uint64_t delay = backoff_next(&m->retry_backoff);
                log_notice("retrying the render in %.1fs", (double) delay / 1000.0);
                uv_timer_start(&m->retry_timer, on_retry, delay, 0);
        }
        if (a & LIFE_DO_TAKE_PENDING) {
                report_clear(&m->report);
                m->report.started_usec = clock_usec();
                while (!list_empty(&m->next_waiters)) {
                        ListLink *l = m->next_waiters.next;
                        list_unlink(l);
                        list_append(&m->report.waiters, l);
                }
        }
        if (a & LIFE_DO_RELOADING)
                sd_notifyf(false, "RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long) clock_usec());
        if (a & LIFE_DO_RELOAD_CONFIG)
                start_config_reload(m); /* renders when the new config is in */
        else if (a & LIFE_DO_RENDER)
                start_render(m);
        if (a & LIFE_DO_START_UNITS) {
                if (m->life.env_stale)
                        log_warning("starting the units with the last good %s (left by a previous run); "
                                    "the render is retried",
                                    m->config->env_output);
                if (!m->unit_set) { /* the render failed: the role tag is unknown */
                        if (m->config->n_roles > 0)
                                log_warning("the role is not known (the role tag was not read, and no role the "
                                            "agent can trust is recorded beside the .env): starting the units of "
                                            "%s%s until a render reads it (then restart anb-agent if the role "
                                            "differs)",
                                            m->config->default_role ? "role " : "[units]",
                                            m->config->default_role ? m->config->default_role : "");
                        choose_units(m, m->config->default_role);
                }
                if (strv_length(m->manage) == 0)
                        bootstrap_finished(m, true); /* nothing to start: done now */
                run_units(m, "StartUnit", m->manage, on_units_started);
        }
        if (a & LIFE_DO_RESTART_UNITS) {
                _cleanup_(strv_freep) char **names = units_to_restart(m);
                run_units(m, "RestartUnit", names, on_units_restarted);
        }
        if (a & LIFE_DO_STOP_UNITS) {
                _cleanup_(strv_freep) char **rev = to_stop(m);
                log_notice("stopping the managed units in reverse order (each within its own stop timeout)");
                units_set_recovery(m->units, false);
                run_units(m, "StopUnit", rev, on_units_stopped);
        }
        if (a & LIFE_DO_COMPLETE_HOOK) {
                if (m->config->terminate_hook)
                        hook_decide(m, &m->terminate, "CONTINUE", "the units are stopped");
                else
                        dispatch(m, (LifeEvent) {.kind = LIFE_HOOK_DONE});
        }
        if (a & LIFE_DO_ARM_GRACE) {
                log_notice("draining: /health answers 503 for %us, then the agent exits; the app's units keep "
                           "running",
                           m->config->drain_grace_sec);
                uv_timer_start(&m->grace_timer, on_grace_over, (uint64_t) m->config->drain_grace_sec * 1000, 0);
        }
        if (a & LIFE_DO_EXIT) {
                sd_notify(false, "STOPPING=1");
                uv_stop(m->loop);
        }
}

/* The one place events are handled.  An event raised while another is
 * being handled (an action that fails at once) is queued and handled
 * right after, so life_step() never re-enters. */
void dispatch(Manager *m, LifeEvent ev) {
        if (m->dispatching) {
                if (m->queued < ELEMENTSOF(m->queue))
                        m->queue[m->queued++] = ev;
                else
                        log_error("lifecycle: event queue full, dropped %s", life_event_to_string(ev.kind));
                return;
        }
        m->dispatching = true;
        for (;;) {
                LifeState from = m->life.state;
                unsigned a = life_step(&m->life, &ev);
                if (from != m->life.state || a)
                        log_debug("lifecycle: %s --%s--> %s (actions %#x)", life_state_to_string(from),
                                  life_event_to_string(ev.kind), life_state_to_string(m->life.state), a);
                execute(m, a);
                if (!m->queued)
                        break;
                ev = m->queue[0];
                memmove(m->queue, m->queue + 1, --m->queued * sizeof(LifeEvent));
        }
        m->dispatching = false;
        /* Reloads asked for meanwhile are kept (they run when the units
         * are up), but not waited for while the bus is away: it may stay
         * away for long, and each client killed while waiting would hold
         * one of the control socket's 64 connections. */
        if (m->life.state == LIFE_WAITING_BUS && !list_empty(&m->next_waiters))
                answer_all_with(&m->next_waiters,
                                "systemd's bus is not connected yet: the reload runs as soon as it is back", EX_TEMPFAIL);
        state_changed(m);
}

/* ---- timers, credentials, the app check -------------------------------- */

static uint64_t jittered(Manager *m) {
        uint64_t base = (uint64_t) m->config->env_refresh_sec * 1000;
        uint64_t spread = base / 5; /* ±10 % */
        return base - base / 10 + (uint64_t) (uv_hrtime() % (spread + 1));
}

static void on_refresh(uv_timer_t *t) {
        Manager *m = t->data;
        if (m->life.state == LIFE_RUNNING)
                dispatch(m, (LifeEvent) {.kind = LIFE_RELOAD});
        uv_timer_start(&m->refresh_timer, on_refresh, jittered(m), 0);
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
                state_changed(m);
        }
}

static void on_upstream_timer(uv_timer_t *t) {
        Manager *m = t->data;
        if (m->upstream_in_flight || m->life.state == LIFE_STOPPING)
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
        state_changed(m);
}

static void on_status_timer(uv_timer_t *t) {
        state_changed(t->data);
}

static void on_watchdog(uv_timer_t *t) {
        (void) t;
        /* Sent from the loop itself: a stuck loop stops it, and systemd
         * restarts the agent after WatchdogSec. */
        sd_notify(false, "WATCHDOG=1");
}

/* ---- control socket and signals ---------------------------------------- */

static void on_control(ControlRequest *req, json_t *request, void *userdata) {
        Manager *m = userdata;
        const char *cmd = json_string_value(json_object_get(request, "cmd"));
        if (streq_ptr(cmd, "status")) {
                control_reply(req, status_json(m));
        } else if (streq_ptr(cmd, "drain")) {
                bool undo = json_is_true(json_object_get(request, "undo"));
                if (m->operator_drain != !undo)
                        log_notice("%s (requested by uid %u)", undo ? "drain undone: /health follows the instance again"
                                                                    : "draining: /health answers 503 until `anb-agent drain --undo`",
                                   (unsigned) control_request_uid(req));
                m->operator_drain = !undo;
                state_changed(m);
                control_reply(req, json_pack("{s:b, s:i, s:b, s:i}", "ok", 1, "exit", 0, "draining",
                                             (int) m->operator_drain, "health_status", m->health_status));
        } else if (streq_ptr(cmd, "reload")) {
                Waiter *w = calloc(1, sizeof(Waiter));
                if (!w) {
                        control_reply(req, json_pack("{s:b, s:s, s:i}", "ok", 0, "error", "out of memory", "exit",
                                                     EX_OSERR));
                        return;
                }
                w->req = req;
                list_append(&m->next_waiters, &w->link);
                log_info("reload: requested by anb-agent reload");
                dispatch(m, (LifeEvent) {.kind = LIFE_RELOAD, .explicit_ = true});
                /* Refused (leaving): the waiter is still queued. */
                if (m->life.state == LIFE_DRAINING || m->life.state == LIFE_TERMINATING ||
                    m->life.state == LIFE_STOPPING)
                        answer_all(&m->next_waiters, "the agent is stopping");
        } else {
                control_reply(req, json_pack("{s:b, s:s, s:i}", "ok", 0, "error", "unknown command", "exit", EX_USAGE));
        }
}

static void on_control_refused(uid_t uid, pid_t pid, void *userdata) {
        (void) userdata;
        log_warning("control: refused a client with uid %u (pid %d): only root may control the agent", (unsigned) uid,
                    (int) pid);
}

static void on_signal(uv_signal_t *s, int signum) {
        Manager *m = s->data;
        if (signum == SIGHUP) {
                log_info("reload: SIGHUP");
                dispatch(m, (LifeEvent) {.kind = LIFE_RELOAD, .explicit_ = true});
                return;
        }
        bool grace = signum == SIGTERM && m->config->drain_grace_sec > 0 && m->life.state != LIFE_DRAINING;
        if (!grace)
                log_notice("%s: exiting; the app's units keep running", strsignal(signum));
        dispatch(m, (LifeEvent) {.kind = LIFE_SIGTERM, .grace = grace});
}

/* ---- lifetime ------------------------------------------------------------ */

static void manager_teardown(Manager *m) {
        /* STOPPING: whatever the frees below call back is ignored. */
        m->life.state = LIFE_STOPPING;
        answer_all(&m->report.waiters, "the agent is stopping");
        answer_all(&m->next_waiters, "the agent is stopping");
        report_clear(&m->report);
        control_free(m->control);
        m->control = NULL;
        health_free(m->health);
        m->health = NULL;
        uv_timer_stop(&m->watchdog_timer);
        uv_timer_stop(&m->status_timer);
        uv_timer_stop(&m->upstream_timer);
        uv_timer_stop(&m->grace_timer);
        uv_timer_stop(&m->abandon_timer);
        uv_timer_stop(&m->heartbeat_timer);
        render_cancel(m->render_job); /* before its sources; silently */
        m->render_job = NULL;
        render_sources_free(&m->src); /* cancels silently */
        fleet_free(m->fleet);
        m->fleet = NULL;
        http_loop_free(m->http);
        m->http = NULL;
        units_free(m->units);
        m->units = NULL;
        uv_signal_stop(&m->sigterm);
        uv_signal_stop(&m->sighup);
        uv_signal_stop(&m->sigint);
        uv_timer_stop(&m->retry_timer);
        uv_timer_stop(&m->refresh_timer);
        /* A config re-read in flight finishes on its thread first. */
        cli_close_loop(m->loop);
        config_free(m->loaded_config);
        free(m->loaded_error);
        json_decref(m->health_failing);
        m->health_failing = NULL;
        rendered_free(m->env);
        strv_free(m->manage);
        free(m->role);
        free(m->last_error);
        free(m->spot_notice);
        free(m->heartbeat_hook);
        free(m->launch.result);
        free(m->terminate.result);
        free(m->launch.name);
        free(m->terminate.name);
        config_free(m->config);
}

static void signal_init(Manager *m, uv_signal_t *s, int signum) {
        uv_signal_init(m->loop, s);
        s->data = m;
        uv_signal_start(s, on_signal, signum);
}

static void timer_init(Manager *m, uv_timer_t *t) {
        uv_timer_init(m->loop, t);
        t->data = m;
}

int manager_run(Config *config) {
        uv_loop_t loop;
        Manager mgr = {.loop = &loop, .config = config, .started_usec = clock_usec(), .upstream_ok = -1};
        Manager *m = &mgr;
        int r;

        life_init(&m->life);
        list_init(&m->next_waiters);
        list_init(&m->report.waiters);
        /* Render retries: 2-4 s at first, doubling up to 16-32 s. */
        backoff_init(&m->retry_backoff, 4000, 32000, uv_hrtime());
        uv_loop_init(&loop);
        signal(SIGPIPE, SIG_IGN);
        signal_init(m, &m->sigterm, SIGTERM);
        signal_init(m, &m->sigint, SIGINT);
        signal_init(m, &m->sighup, SIGHUP);
        timer_init(m, &m->retry_timer);
        timer_init(m, &m->refresh_timer);
        timer_init(m, &m->grace_timer);
        timer_init(m, &m->upstream_timer);
        timer_init(m, &m->watchdog_timer);
        timer_init(m, &m->status_timer);
        timer_init(m, &m->abandon_timer);
        timer_init(m, &m->launch.retry);
        timer_init(m, &m->terminate.retry);
        backoff_init(&m->launch.backoff, 2000, 60000, uv_hrtime());
        backoff_init(&m->terminate.backoff, 2000, 30000, uv_hrtime() + 1);
        timer_init(m, &m->heartbeat_timer);

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
        FleetEvents fev = {
                .spot_notice = on_spot_notice,
                .target_state = on_target_state,
                .hook_done = on_hook_done,
        };
        if (r >= 0)
                r = fleet_new(&loop, m->http, config, &m->src, &fev, m, &m->fleet);
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
        log_notice("anb-agent %s starting: IMDS %s, .env %s", ANB_VERSION,
                   config->imds_disabled ? "disabled" : config->imds_endpoint, config->env_output);
        /* A crash between creating and renaming a temp .env left it there. */
        r = envfile_remove_stale_temps(config->env_output);
        _cleanup_free_ char *role_path = render_role_path(config);
        int r2 = role_path ? envfile_remove_stale_temps(role_path) : 0;
        if (r > 0 || r2 > 0)
                log_notice("removed %d temporary file(s) a previous run left beside the .env",
                           (r > 0 ? r : 0) + (r2 > 0 ? r2 : 0));
        /* The .env's directory was checked (cli_check_config) before this. */
        if (units_connected(m->units))
                m->life.bus_up = true;
        else
                log_warning("cannot connect to systemd's %s bus yet; retrying",
                            config->bus == BUS_USER ? "user" : "system");
        dispatch(m, (LifeEvent) {.kind = LIFE_BEGIN});
        /* The first spot and lifecycle poll waits for the first render's
         * end, one poll interval (1 s) at most: at boot the render's IMDS
         * requests are the critical path to READY, and they go first. */
        fleet_watch(m->fleet, config->lifecycle_poll_ms < 1000 ? config->lifecycle_poll_ms : 1000);
        if (config->launch_hook) {
                uv_timer_start(&m->abandon_timer, on_abandon, (uint64_t) config->abandon_after_sec * 1000, 0);
                heartbeats_for(m, config->launch_hook);
        }
        uv_timer_start(&m->refresh_timer, on_refresh, jittered(m), 0);
        if (config->health_upstream)
                uv_timer_start(&m->upstream_timer, on_upstream_timer, 0, config->health_upstream_interval_ms);
        uv_timer_start(&m->status_timer, on_status_timer, 30000, 30000);

        uv_run(&loop, UV_RUN_DEFAULT);
        manager_teardown(m);
        return 0;
}

int verb_run(const CliOptions *o) {
        _cleanup_(config_freep) Config *c = NULL;
        int code = cli_load_config(o, &c);
        if (!code)
                code = cli_check_config(c);
        if (code)
                return code;
        return manager_run(TAKE_PTR(c));
}
