/* `anb-agent reload | status [--json] | drain [--undo]`: clients of the
 * running daemon's control socket.  They print what happened and exit
 * 0, or non-zero with the reason (69 when the daemon cannot be reached). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

#include "basic/clock.h"
#include "basic/escape.h"
#include "basic/log.h"
#include "basic/util.h"
#include "cli.h"
#include "server/control_client.h"

#define RELOAD_TIMEOUT_MS (10 * 60 * 1000)

/* The socket from the config, read leniently: a config that no longer
 * loads must not keep an operator from asking the running daemon. */
static char *socket_path(const CliOptions *o) {
        return config_control_socket(o->config_path);
}

static int call(const CliOptions *o, json_t *req, int timeout_ms, bool reports_failure, json_t **ret) {
        _cleanup_free_ char *path = socket_path(o);
        _cleanup_free_ char *err = NULL;
        int r = control_call(path, req, timeout_ms, ret, &err);
        json_decref(req);
        if (r < 0) {
                log_error("%s", err ? err : strerror(-r));
                return r == -EACCES ? EX_NOPERM : r == -ETIMEDOUT ? EX_TEMPFAIL : EX_UNAVAILABLE;
        }
        /* The daemon says how to exit; a refusal ends every verb here,
         * a failed reload is reported by verb_reload. */
        int code = control_response_exit(*ret);
        const char *e = json_string_value(json_object_get(*ret, "error"));
        if (code != 0 && (!reports_failure || code == EX_NOPERM || code == EX_PROTOCOL)) {
                log_error("%s", e ? e : "the agent refused the request");
                json_decref(*ret);
                *ret = NULL;
                return code;
        }
        return 0;
}

/* Prints s[0..n) with every control character (C0, C1, DEL) and invalid
 * byte escaped: answers carry outside text (AWS error messages, IMDS
 * codes, unit names from the config) that must not drive the terminal. */
static void print_text(const char *s, size_t n) {
        Buf b = {0};
        if (text_escape_append(&b, s, n) >= 0 && b.data)
                fputs(b.data, stdout);
        buf_deinit(&b);
}

/* Every string in the answer escaped the same way, so that the printf
 * calls below print none raw.  Line breaks go too: a multi-line text is
 * split before this (print_status's last error). */
static void escape_strings(json_t *j) {
        const char *k;
        json_t *v;
        size_t i;
        if (json_is_object(j))
                json_object_foreach(j, k, v) escape_strings(v);
        else if (json_is_array(j))
                json_array_foreach(j, i, v) escape_strings(v);
        else if (json_is_string(j)) {
                _cleanup_free_ char *e = text_escape(json_string_value(j));
                if (e && !streq(e, json_string_value(j)))
                        json_string_set(j, e);
        }
}

static void print_list(const char *label, json_t *a) {
        size_t i;
        json_t *v;
        printf("%-16s", label);
        if (!json_array_size(a))
                printf("none");
        json_array_foreach(a, i, v) {
                const char *t = json_string_value(v);
                printf("%s", i ? ", " : "");
                print_text(t ? t : "", t ? strlen(t) : 0);
        }
        printf("\n");
}

int verb_reload(const CliOptions *o) {
        json_t *resp = NULL;
        int code = call(o, json_pack("{s:s}", "cmd", "reload"), RELOAD_TIMEOUT_MS, true, &resp);
        if (code)
                return code;
        int exit_code = control_response_exit(resp);
        const char *error = json_string_value(json_object_get(resp, "error"));
        if (error) {
                log_lines(LOG_ERR, error);
                printf("reload failed: the .env and the units are as they were\n");
        } else {
                print_list("changed keys:", json_object_get(resp, "changed_keys"));
                print_list("restarted:", json_object_get(resp, "restarted_units"));
                if (json_array_size(json_object_get(resp, "failed_units")))
                        print_list("failed:", json_object_get(resp, "failed_units"));
        }
        printf("%-16senv r%lld, %.0f ms\n", "result:", (long long) json_integer_value(json_object_get(resp, "env_revision")),
               json_real_value(json_object_get(resp, "duration_ms")));
        json_decref(resp);
        return exit_code;
}

int verb_drain(const CliOptions *o) {
        bool undo = o->undo;
        json_t *resp = NULL;
        int code = call(o, json_pack("{s:s, s:b}", "cmd", "drain", "undo", undo), 10000, false, &resp);
        if (code)
                return code;
        printf("%s: /health now answers %lld\n", json_is_true(json_object_get(resp, "draining")) ? "draining" : "not draining",
               (long long) json_integer_value(json_object_get(resp, "health_status")));
        json_decref(resp);
        return 0;
}

/* "5m ago", or "never". */
static void format_ago(time_t t, char *buf, size_t n) {
        char age[24];
        clock_format_age(t, time(NULL), age, sizeof age);
        snprintf(buf, n, "%s%s", age, t > 0 ? " ago" : "");
}

static const char *str(json_t *o, const char *key) {
        const char *v = json_string_value(json_object_get(o, key));
        return v ? v : "-";
}

static long long num(json_t *o, const char *key) {
        return (long long) json_integer_value(json_object_get(o, key));
}

static void print_status(json_t *st) {
        /* A render's error may be several lines, one per problem: kept
         * apart and each line escaped when printed, below. */
        _cleanup_free_ char *last_error = json_is_string(json_object_get(st, "last_error"))
                                                  ? strdup(json_string_value(json_object_get(st, "last_error")))
                                                  : NULL;
        escape_strings(st);
        json_t *boot = json_object_get(st, "bootstrap"), *env = json_object_get(st, "env");
        json_t *health = json_object_get(st, "health"), *units = json_object_get(st, "units");
        json_t *imds = json_object_get(st, "imds");
        char ago[32];
        printf("anb-agent %s: %s\n", str(st, "version"), str(st, "state"));
        if (json_is_true(json_object_get(boot, "finished"))) {
                format_ago((time_t) num(boot, "at"), ago, sizeof ago);
                printf("  %-12s finished %s, took %.0f ms\n", "bootstrap", ago, json_real_value(json_object_get(boot, "ms")));
        } else
                printf("  %-12s in progress\n", "bootstrap");
        printf("  %-12s %s\n", "role", json_is_string(json_object_get(st, "role")) ? str(st, "role") : "default");
        format_ago((time_t) num(env, "rendered_at"), ago, sizeof ago);
        if (json_is_true(json_object_get(env, "stale")))
                printf("  %-12s the last good %s from a previous run; rendering fails (see last error)\n", "env",
                       str(env, "output"));
        else
                printf("  %-12s r%lld, changed %s, %lld variables → %s (format %s)\n", "env", num(env, "revision"),
                       ago, num(env, "variables"), str(env, "output"), str(env, "format"));
        printf("  %-12s %lld %s", "health", num(health, "status"), str(health, "state"));
        json_t *failing = json_object_get(health, "failing");
        size_t i;
        json_t *v;
        if (json_array_size(failing)) {
                printf("; failing:");
                json_array_foreach(failing, i, v) printf(" %s", json_string_value(v));
        }
        const char *why = json_string_value(json_object_get(st, "drain_reason"));
        const char *spot = json_string_value(json_object_get(st, "spot_notice"));
        if (json_is_true(json_object_get(st, "draining")))
                printf("\n  %-12s yes (/health answers 503): %s%s%s\n", "drain", why ? why : "requested",
                       spot ? ", " : "", spot ? spot : "");
        else
                printf("\n  %-12s no\n", "drain");
        const char *life = json_string_value(json_object_get(st, "lifecycle"));
        if (life)
                printf("  %-12s %s\n", "lifecycle", life);
        printf("  %-12s", "units");
        if (!json_array_size(units))
                printf(" none\n");
        json_array_foreach(units, i, v) {
                char state[80];
                snprintf(state, sizeof state, "%s/%s", str(v, "active_state"), str(v, "sub_state"));
                printf("%s %-24s %-22s pid %-8lld restarts %lld\n", i ? "              " : "", str(v, "name"), state,
                       num(v, "main_pid"), num(v, "restarts"));
        }
        if (json_is_object(imds))
                printf("  %-12s %s: %lld token + %lld get requests, %lld retries, %lld errors\n", "imds",
                       str(imds, "endpoint"), num(imds, "token_requests"), num(imds, "get_requests"),
                       num(imds, "retries"), num(imds, "errors"));
        else
                printf("  %-12s disabled\n", "imds");
        json_t *cr = json_object_get(st, "credentials");
        if (json_is_object(cr)) {
                long long left = num(cr, "seconds_left");
                if (json_is_true(json_object_get(cr, "valid")))
                        printf("  %-12s role %s, expire in %lldh%02lldm", "credentials", str(cr, "role"), left / 3600,
                               (left % 3600) / 60);
                else
                        printf("  %-12s role %s, EXPIRED", "credentials", str(cr, "role"));
                if (json_is_string(json_object_get(cr, "last_error")))
                        printf("; last refresh failed: %s", str(cr, "last_error"));
                printf("\n");
        } else
                printf("  %-12s not used\n", "credentials");
        json_t *aws = json_object_get(st, "aws");
        printf("  %-12s %lld calls (%lld in the last render), %lld retries, %lld errors; tags from %s\n", "aws",
               num(aws, "calls"), num(aws, "calls_last_render"), num(aws, "retries"), num(aws, "errors"),
               json_is_string(json_object_get(aws, "tags_source")) ? str(aws, "tags_source") : "-");
        const char *err = last_error ? last_error : "-";
        for (bool first = true; first || *err; first = false) {
                size_t n = strcspn(err, "\n");
                printf("  %-12s ", first ? "last error" : "");
                print_text(err, n);
                printf("\n");
                err += n;
                if (*err)
                        err++;
        }
}

int verb_status(const CliOptions *o) {
        bool as_json = o->json;
        json_t *resp = NULL;
        int code = call(o, json_pack("{s:s}", "cmd", "status"), 10000, false, &resp);
        if (code)
                return code;
        if (as_json) {
                /* "exit" is for this program, not part of the status. */
                json_object_del(resp, "exit");
                char *text = json_dumps(resp, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
                printf("%s\n", text ? text : "{}");
                free(text);
        } else
                print_status(resp);
        json_decref(resp);
        return 0;
}
