/* What operators and the ALB see, built from state the daemon already
 * holds (no work per probe): the /health answer, the one STATUS= line of
 * `systemctl status`, `anb-agent status --json` and /metrics.  Every
 * string that came from outside (tags, IMDS, AWS error text) is escaped
 * before it reaches STATUS= or a metric label. */
#include <stdio.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "aws/aws.h"
#include "aws/credentials.h"
#include "aws/imds.h"
#include "basic/clock.h"
#include "basic/escape.h"
#include "basic/log.h"
#include "basic/util.h"
#include "manager-internal.h"

unsigned units_active(Manager *m, unsigned *ret_total) {
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

static bool starting(const Manager *m) {
        LifeState s = m->life.state;
        return s == LIFE_STARTING || s == LIFE_WAITING_BUS || s == LIFE_STARTING_UNITS;
}

const char *drain_reason(const Manager *m) {
        switch (m->life.state) {
        case LIFE_TERMINATING:
                return "the Auto Scaling group terminates this instance";
        case LIFE_DRAINING:
        case LIFE_STOPPING:
                return "the agent is stopping (SIGTERM)";
        default:
                break;
        }
        if (m->spot_notice)
                return "spot interruption notice";
        if (m->operator_drain)
                return "drain requested (anb-agent drain)";
        return NULL;
}

static bool draining(const Manager *m) {
        return drain_reason(m) != NULL;
}

/* A unit the agent is restarting on purpose (a changed .env) is not a
 * failure while it goes down and comes back: its socket, held by systemd,
 * keeps connections waiting for the new process.  If the restart fails,
 * the unit ends "failed" and counts again. */
static bool restarting_on_purpose(const Manager *m, const UnitInfo *u) {
        return m->life.state == LIFE_RELOADING && m->life.restarting && m->unit_set &&
               restarts_on_change(m, u->name) && !streq(u->active_state, "failed");
}

/* The /health answer, published on every change, copied out per probe.
 * Only what this instance can fix gates it. */
void publish_health(Manager *m) {
        if (!m->health)
                return;
        json_t *failing = json_array();
        size_t n = units_count(m->units);
        for (size_t i = 0; i < n; i++) {
                UnitInfo u;
                if (units_get(m->units, i, &u) && (!streq(u.active_state, "active") || u.recovering) &&
                    !restarting_on_purpose(m, &u)) {
                        char name[300];
                        snprintf(name, sizeof name, "unit:%s", u.name);
                        json_array_append_new(failing, json_string(name));
                }
        }
        if (!m->env_revision && !m->life.env_stale)
                json_array_append_new(failing, json_string("env"));
        if (m->config->health_upstream && m->upstream_ok == 0)
                json_array_append_new(failing, json_string("app"));
        const char *state = draining(m)   ? "draining"
                            : starting(m) ? "starting"
                            : json_array_size(failing) ? "unhealthy"
                                                       : "healthy";
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

/* The first line of s, escaped (basic/escape.h), so nothing from outside
 * can end STATUS= early or add a line (MAINPID=, READY=1) to the
 * notification; *ret_more_lines counts the lines left out. */
static void status_escape(const char *s, char *buf, size_t n, unsigned *ret_more_lines) {
        size_t first = strcspn(s, "\n");
        unsigned more = 0;
        for (const char *p = s + first; *p; p++)
                more += *p == '\n';
        text_escape_to(buf, n, s, first);
        if (ret_more_lines)
                *ret_more_lines = more;
}

/* One current line for `systemctl status`. */
void update_status(Manager *m) {
        publish_health(m);
        unsigned total, active = units_active(m, &total);
        const char *state = m->health_state ? m->health_state : "starting";
        char age[32] = "never";
        if (m->env_revision)
                clock_format_age(m->env_rendered_at, time(NULL), age, sizeof age);
        char creds[48] = "";
        time_t exp = credentials_expiration(m->src.creds);
        if (exp) {
                long left = (long) (exp - time(NULL));
                if (left > 0)
                        snprintf(creds, sizeof creds, " · creds %ldh%02ldm", left / 3600, (left % 3600) / 60);
                else
                        snprintf(creds, sizeof creds, " · creds EXPIRED");
        }
        /* The role is a plain name (checked when it was chosen). */
        const char *role = m->role ? m->role : "default";
        if (starting(m) && m->last_error && !m->life.env_stale) {
                /* One line: the first problem, and how many more. */
                char first[400];
                unsigned more;
                status_escape(m->last_error, first, sizeof first, &more);
                sd_notifyf(false, "STATUS=starting · waiting to render the .env: %s%s", first,
                           more ? " (and more: anb-agent status)" : "");
        } else if (draining(m))
                sd_notifyf(false, "STATUS=draining · %s%s%s · %s · %u/%u units active · env r%u%s", drain_reason(m),
                           m->spot_notice ? ": " : "", m->spot_notice ? m->spot_notice : "", role, active, total,
                           m->env_revision, creds);
        else if (m->life.env_stale)
                sd_notifyf(false, "STATUS=%s · %s · %u/%u units active · env: last good from a previous run, render "
                                  "failing%s",
                           state, role, active, total, creds);
        else
                sd_notifyf(false, "STATUS=%s · %s · %u/%u units active · env r%u (%s ago)%s", state, role, active, total,
                           m->env_revision, age, creds);
}

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

void write_metrics(void *userdata, Buf *out) {
        Manager *m = userdata;
        const HealthStats *hs = health_stats(m->health);
        buf_printf(out,
                   "# HELP anb_health_status 1 when /health answers 200.\n# TYPE anb_health_status gauge\n"
                   "anb_health_status %d\n"
                   "# HELP anb_draining 1 while draining (drain requested, SIGTERM grace, terminating).\n"
                   "# TYPE anb_draining gauge\nanb_draining %d\n"
                   "# HELP anb_bootstrapped 1 once the first bootstrap finished.\n# TYPE anb_bootstrapped gauge\n"
                   "anb_bootstrapped %d\n",
                   m->health_status == 200, draining(m), m->life.units_started);
        buf_puts(out, "# HELP anb_unit_active 1 when the managed unit is active.\n# TYPE anb_unit_active gauge\n");
        size_t n = units_count(m->units);
        for (size_t i = 0; i < n; i++) {
                UnitInfo u;
                if (!units_get(m->units, i, &u))
                        continue;
                buf_puts(out, "anb_unit_active{unit=\"");
                metric_escape(out, u.name);
                buf_puts(out, "\",state=\"");
                metric_escape(out, u.active_state);
                buf_printf(out, "\"} %d\n", streq(u.active_state, "active"));
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

static json_t *credentials_json(Manager *m) {
        time_t exp = credentials_expiration(m->src.creds);
        const char *err = credentials_last_error(m->src.creds);
        if (!exp && !err)
                return json_null();
        json_t *c = json_pack("{s:s?, s:I, s:I, s:b}", "role", credentials_role(m->src.creds), "expires_at",
                              (json_int_t) exp, "seconds_left", (json_int_t) (exp ? exp - time(NULL) : 0), "valid",
                              exp > time(NULL));
        json_object_set_new(c, "last_error", control_json_string(err));
        return c;
}

/* Old names for old scripts: "starting", "running" or "stopping". */
static const char *phase_name(const Manager *m) {
        return starting(m) ? "starting" : m->life.state == LIFE_STOPPING ? "stopping" : "running";
}

json_t *status_json(Manager *m) {
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
        const char *phase = phase_name(m);
        json_t *st = json_pack(
                "{s:b, s:i, s:s, s:s, s:s, s:s, s:o, s:b, s:{s:b, s:f, s:I}, s:{s:I, s:I, s:I, s:s, s:s},"
                " s:{s:i, s:s, s:o}, s:o, s:o, s:o, s:o}",
                "ok", 1, "exit", 0, "version", ANB_VERSION, "phase", phase, "lifecycle",
                life_state_to_string(m->life.state), "state", m->health_state ? m->health_state : phase, "role",
                m->role ? json_string(m->role) : json_null(), "draining", draining(m), "bootstrap", "finished",
                m->life.units_started, "ms", m->bootstrap_ms, "at", (json_int_t) m->bootstrapped_at, "env",
                "revision", (json_int_t) m->env_revision, "rendered_at", (json_int_t) m->env_rendered_at,
                "variables", (json_int_t) (m->env ? m->env->n_vars : 0), "output", m->config->env_output, "format",
                envfile_format_to_string(m->config->env_format), "health", "status", m->health_status, "state",
                m->health_state ? m->health_state : "starting", "failing",
                m->health_failing ? json_incref(m->health_failing) : json_array(), "units", units, "imds", imds,
                "credentials", credentials_json(m), "last_error",
                control_json_string(m->last_error));
        if (!st)
                return json_pack("{s:b, s:i, s:s}", "ok", 0, "exit", 70, "error", "cannot encode the status");
        json_object_set_new(st, "aws", aws);
        json_object_set_new(st, "drain_reason", drain_reason(m) ? json_string(drain_reason(m)) : json_null());
        json_object_set_new(st, "spot_notice", control_json_string(m->spot_notice));
        json_object_set_new(json_object_get(st, "env"), "stale", json_boolean(m->life.env_stale));
        return st;
}
