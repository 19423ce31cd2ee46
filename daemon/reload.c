/* The daemon's renders and reloads: starting a render (after re-reading
 * agent.conf off the loop for an explicit reload), taking its outcome into
 * the lifecycle, and the report each reload's waiters are answered with.
 * See manager.c for the wiring and lifecycle.h for when these run. */
#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "aws/credentials.h"
#include "basic/clock.h"
#include "basic/log.h"
#include "basic/util.h"
#include "manager-internal.h"

/* A .env from before is there: a regular file (lstat: a symlink the app
 * user planted is not a last good configuration). */
bool env_on_disk(Manager *m) {
        struct stat st;
        return lstat(m->config->env_output, &st) == 0 && S_ISREG(st.st_mode);
}

/* Every way a reload or bootstrap render can fail ends here: the
 * lifecycle decides what a failure means with or without a .env from
 * before. */
static void render_failed(Manager *m) {
        dispatch(m, (LifeEvent) {.kind = LIFE_RENDER_FAILED, .env_exists = env_on_disk(m)});
}

void set_error(Manager *m, const char *msg) {
        free(m->last_error);
        m->last_error = msg ? strdup(msg) : NULL;
}

/* ---- reload reports and their waiters ------------------------------- */

static json_t *strv_to_json(char **l) {
        json_t *a = json_array();
        for (size_t i = 0; l && l[i]; i++)
                json_array_append_new(a, json_string(l[i]));
        return a;
}

void report_clear(Report *r) {
        free(r->error);
        strv_free(r->changed);
        strv_free(r->restarted);
        strv_free(r->failed);
        r->error = NULL;
        r->changed = r->restarted = r->failed = NULL;
}

void report_set_error(Manager *m, const char *error) {
        free(m->report.error);
        m->report.error = strdup(error);
}

void answer_all_with(ListLink *waiters, const char *error, int exit_code) {
        list_for_each_safe(l, next, waiters) {
                Waiter *w = list_entry(l, Waiter, link);
                list_unlink(&w->link);
                control_reply(w->req, json_pack("{s:b, s:o, s:i}", "ok", 0, "error", control_json_string(error), "exit",
                                                exit_code));
                free(w);
        }
}

void answer_all(ListLink *waiters, const char *error) {
        answer_all_with(waiters, error, EX_UNAVAILABLE);
}

/* Ends the reload in flight: one summary line, an answer to each waiter. */
void reload_end(Manager *m) {
        Report *r = &m->report;
        double ms = clock_ms_since(r->started_usec);
        _cleanup_free_ char *keys = strv_join(r->changed, ", ");
        _cleanup_free_ char *units = strv_join(r->restarted, ", ");
        if (r->error)
                log_error("reload failed after %.0f ms; the .env and units are as they were", ms);
        else
                log_notice("reload: %s; restarted: %s (%.0f ms)", keys && *keys ? keys : "no key changed",
                           units && *units ? units : "nothing", ms);
        list_for_each_safe(l, next, &r->waiters) {
                Waiter *w = list_entry(l, Waiter, link);
                list_unlink(&w->link);
                bool ok = !r->error && !r->failed;
                json_t *resp = json_pack("{s:b, s:i, s:o, s:o, s:o, s:f, s:I}", "ok", ok, "exit",
                                         ok ? 0 : EX_SOFTWARE, "changed_keys", strv_to_json(r->changed),
                                         "restarted_units", strv_to_json(r->restarted), "failed_units",
                                         strv_to_json(r->failed), "duration_ms", ms, "env_revision",
                                         (json_int_t) m->env_revision);
                if (r->error)
                        json_object_set_new(resp, "error", control_json_string(r->error));
                control_reply(w->req, resp);
                free(w);
        }
        report_clear(r);
}

/* ---- rendering --------------------------------------------------------- */

static void on_rendered(RenderOutcome *o, void *userdata) {
        Manager *m = userdata;
        fleet_watch_now(m->fleet); /* the first render ended: poll now */
        m->render_in_flight = false;
        m->render_job = NULL;
        if (m->life.state == LIFE_STOPPING || m->life.state == LIFE_DRAINING || m->life.state == LIFE_TERMINATING) {
                /* Cancelled by the lifecycle: nothing to report. */
                render_outcome_free(o);
                return;
        }
        if (!o || o->error) {
                const char *msg = o ? o->message : "out of memory";
                log_lines(LOG_ERR, msg);
                set_error(m, msg);
                report_set_error(m, msg);
                m->render_failures++;
                log_warning("the .env was not changed");
                /* Nothing rendered yet: a reload asked meanwhile would wait
                 * for as long as IMDS or AWS stay down.  Answer it now. */
                if (m->life.state == LIFE_STARTING && !list_empty(&m->next_waiters)) {
                        _cleanup_free_ char *why = strdup_printf("the agent is still starting and its render "
                                                                 "failed: %s", msg);
                        answer_all_with(&m->next_waiters, why ? why : msg, EX_SOFTWARE);
                }
                /* The role tag may have resolved although the render
                 * failed (a secret or parameter did not): the units of the
                 * last good .env are the instance's role's, not the
                 * default's.  When the tag could not be read for a
                 * moment, the role that .env was written for (render.h);
                 * a certain default only for the units about to start on
                 * that .env.  Never a guess: it would fix the units before
                 * the retry reads the tag. */
                RoleSource src = o ? o->role_source : ROLE_UNKNOWN;
                bool env = !m->unit_set && src != ROLE_UNKNOWN && env_on_disk(m);
                if (src == ROLE_SAVED && env)
                        log_notice("the role tag cannot be read: role %s, the one the last good %s was written for",
                                   o->role, m->config->env_output);
                if (!m->unit_set && (src == ROLE_TAG || ((src == ROLE_SAVED || src == ROLE_DEFAULT) && env)))
                        choose_units(m, o->role);
                render_outcome_free(o);
                render_failed(m);
                return;
        }
        set_error(m, NULL);
        if (m->life.env_stale)
                log_notice("render works again; the .env is current");
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
        /* A role guessed while the tag failed for a moment changes nothing
         * chosen already (and says nothing about a role change). */
        choose_units(m, o->role_source == ROLE_UNKNOWN && m->unit_set ? m->role : o->role);
        bool content_changed = o->changed;
        /* This run's own write is the exact stamp; a later unchanged
         * render's mtime is the same write seen through the coarser clock
         * (or someone else's touch): kept as it was. */
        if (o->env_written_usec && (o->changed || !m->env_written_usec))
                m->env_written_usec = o->env_written_usec;
        render_outcome_free(o);
        /* Units left on an older .env restart as if it had changed now. */
        _cleanup_free_ char *stale = m->life.state == LIFE_STARTING ? NULL : stale_units(m);
        if (stale && !content_changed)
                stale_restart_spend(m);

        if (m->life.state == LIFE_STARTING)
                log_notice("rendered %s (r%u, %zu variables)", m->config->env_output, m->env_revision,
                           m->env->n_vars);
        else if (!content_changed && stale)
                log_notice("reload: .env unchanged (r%u), but %s started before it was written: restarting",
                           m->env_revision, stale);
        else if (!content_changed)
                log_info("reload: .env unchanged (r%u); nothing restarted", m->env_revision);
        else {
                _cleanup_free_ char *keys = strv_join(changed, ", ");
                log_notice("reload: .env changed (r%u): %s", m->env_revision, keys && *keys ? keys : "(comments only)");
        }
        strv_free(m->report.changed);
        m->report.changed = changed;
        _cleanup_(strv_freep) char **restarts = units_to_restart(m);
        dispatch(m, (LifeEvent) {.kind = LIFE_RENDERED,
                                 .changed = content_changed || stale,
                                 .restarts = strv_length(restarts) > 0});
}

void start_render(Manager *m) {
        m->render_count++;
        /* Until the units are chosen the role must not be a guess. */
        RenderFlags flags = RENDER_WRITE | RENDER_WANT_ROLE | (m->unit_set ? 0 : RENDER_NEED_ROLE);
        int k = render_start(&m->src, m->config, flags, on_rendered, m, &m->render_job);
        if (k < 0) {
                _cleanup_free_ char *msg = strdup_printf("cannot render: %s", strerror(-k));
                report_set_error(m, msg ? msg : "cannot render");
                set_error(m, msg);
                render_failed(m);
                return;
        }
        m->render_in_flight = true;
}

/* Re-reads agent.conf off the loop (file I/O and NSS look-ups may block);
 * a bad file is refused and the running configuration stays. */
static void config_work(uv_work_t *w) {
        Manager *m = w->data;
        m->loaded_r = config_load(m->config->path, &m->loaded_config, &m->loaded_error);
}

static void config_done(uv_work_t *w, int status) {
        Manager *m = w->data;
        m->config_loading = false;
        Config *c = TAKE_PTR(m->loaded_config);
        _cleanup_free_ char *err = TAKE_PTR(m->loaded_error);
        int r = status < 0 ? status : m->loaded_r;
        if (m->life.state != LIFE_RELOADING) {
                config_free(c);
                return;
        }
        if (r < 0) {
                log_error("%s", err ? err : strerror(-r));
                _cleanup_free_ char *msg = strdup_printf("%s (the running configuration stays)",
                                                         err ? err : strerror(-r));
                report_set_error(m, msg ? msg : "bad configuration");
                config_free(c);
                render_failed(m);
                return;
        }
        if (!streq(c->health_listen, m->config->health_listen) ||
            !streq(c->control_socket, m->config->control_socket) || c->bus != m->config->bus ||
            !streq(c->imds_endpoint, m->config->imds_endpoint))
                log_warning("%s: [health] listen, [control] socket, [systemd] bus and [imds] take effect at the "
                            "next start of anb-agent",
                            c->path);
        if (manage_changed(m, c)) {
                _cleanup_free_ char *keep = strv_join(m->manage, " ");
                log_warning("%s: the manage list of role %s changed; anb-agent supervises %s until its next start "
                            "(systemctl restart anb-agent)",
                            c->path, m->role ? m->role : "default", keep && *keep ? keep : "no unit");
        }
        /* Keep the live settings that cannot change under a running loop. */
        free(c->health_listen), c->health_listen = strdup(m->config->health_listen);
        free(c->control_socket), c->control_socket = strdup(m->config->control_socket);
        c->bus = m->config->bus;
        config_free(m->config);
        m->config = c;
        m->unit_set = config_unit_set(c, m->role);
        units_set_recovery_delay(m->units, (uint64_t) c->start_limit_retry_sec * 1000);
        start_render(m);
}

void start_config_reload(Manager *m) {
        m->config_work.data = m;
        int r = uv_queue_work(m->loop, &m->config_work, config_work, config_done);
        if (r < 0) {
                report_set_error(m, "cannot re-read the configuration");
                render_failed(m);
                return;
        }
        m->config_loading = true;
}

