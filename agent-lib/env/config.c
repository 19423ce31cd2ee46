/* See config.h.  Parsing goes through ini_parse_stream() with a reader that
 * counts lines, so the handler can name the line of a bad key or value
 * (Debian's libinih is built without INI_HANDLER_LINENO). */
#include "env/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <ini.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>

#include "basic/util.h"

typedef struct Parser {
        Config *c;
        FILE *f;
        unsigned line;
        char *error;
} Parser;

static char *reader(char *str, int num, void *stream) {
        Parser *p = stream;
        char *s = fgets(str, num, p->f);
        if (s)
                p->line++;
        return s;
}

static int fail(Parser *p, const char *fmt, ...) _printf_(2, 3);
static int fail(Parser *p, const char *fmt, ...) {
        if (p->error)
                return 0;
        _cleanup_free_ char *msg = NULL;
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        p->error = strdup_printf("%s:%u: %s", p->c->path, p->line, msg ? msg : "out of memory");
        return 0;
}

static int set_str(char **dst, const char *v) {
        char *d = strdup(v);
        if (!d)
                return -ENOMEM;
        free(*dst);
        *dst = d;
        return 0;
}

static int parse_uint(const char *v, unsigned min, unsigned max, unsigned *ret) {
        char *end;
        errno = 0;
        if (!*v || *v == '-' || *v == '+')
                return -EINVAL;
        unsigned long n = strtoul(v, &end, 10);
        if (errno || *end || n < min || n > max)
                return -ERANGE;
        *ret = (unsigned) n;
        return 0;
}

static int parse_id(const char *s, unsigned long *ret) {
        char *end;
        errno = 0;
        if (!*s || *s == '-' || *s == '+')
                return -EINVAL;
        unsigned long v = strtoul(s, &end, 10);
        if (*end || errno || v >= (unsigned long) (uid_t) -1)
                return -EINVAL;
        *ret = v;
        return 0;
}

int lookup_user(const char *user, uid_t *ret_uid) {
        unsigned long id;
        if (parse_id(user, &id) >= 0) {
                *ret_uid = (uid_t) id;
                return 0;
        }
        char buf[16384];
        struct passwd pw, *res = NULL;
        int r = getpwnam_r(user, &pw, buf, sizeof buf, &res);
        if (r != 0)
                return -r;
        if (!res)
                return -ESRCH;
        *ret_uid = pw.pw_uid;
        return 0;
}

int lookup_group(const char *group, gid_t *ret_gid) {
        unsigned long id;
        if (parse_id(group, &id) >= 0) {
                *ret_gid = (gid_t) id;
                return 0;
        }
        char buf[16384];
        struct group gr, *res = NULL;
        int r = getgrnam_r(group, &gr, buf, sizeof buf, &res);
        if (r != 0)
                return -r;
        if (!res)
                return -ESRCH;
        *ret_gid = gr.gr_gid;
        return 0;
}

/* "ADDR:PORT": a numeric IPv4 address or [IPv6], port 1..65535.  The ALB
 * needs a fixed port, and a host name would need a resolver at start. */
static bool listen_is_valid(const char *v) {
        const char *colon = strrchr(v, ':');
        char host[INET6_ADDRSTRLEN + 2];
        unsigned port;
        if (!colon || colon == v || (size_t) (colon - v) >= sizeof host ||
            parse_uint(colon + 1, 1, 65535, &port) < 0)
                return false;
        size_t n = (size_t) (colon - v);
        memcpy(host, v, n);
        host[n] = 0;
        unsigned char addr[sizeof(struct in6_addr)];
        if (host[0] == '[' && n > 2 && host[n - 1] == ']') {
                host[n - 1] = 0;
                return inet_pton(AF_INET6, host + 1, addr) == 1;
        }
        return inet_pton(AF_INET, host, addr) == 1;
}

static int set_strv(char ***dst, const char *v) {
        char **l = strv_split(v, " \t");
        if (!l)
                return -ENOMEM;
        strv_free(*dst);
        *dst = l;
        return 0;
}

static UnitSet *role_set(Config *c, const char *role) {
        for (size_t i = 0; i < c->n_roles; i++)
                if (streq(c->roles[i].role, role))
                        return &c->roles[i];
        UnitSet *n = realloc(c->roles, (c->n_roles + 1) * sizeof(UnitSet));
        if (!n)
                return NULL;
        c->roles = n;
        UnitSet *s = &c->roles[c->n_roles];
        *s = (UnitSet) {.role = strdup(role)};
        if (!s->role)
                return NULL;
        c->n_roles++;
        return s;
}

static bool valid_unit_name(const char *n) {
        const char *dot = strrchr(n, '.');
        if (!dot || dot == n || strlen(n) > 255)
                return false;
        for (const char *p = n; *p; p++)
                if (!(('a' <= *p && *p <= 'z') || ('A' <= *p && *p <= 'Z') || ('0' <= *p && *p <= '9') ||
                      strchr(":-_.\\@", *p)))
                        return false;
        return true;
}

static int handle_units(Parser *p, UnitSet *s, const char *name, const char *value) {
        char ***dst;
        if (streq(name, "manage"))
                dst = &s->manage;
        else if (streq(name, "restart_on_change"))
                dst = &s->restart_on_change;
        else if (streq(name, "warm_stop"))
                return fail(p, "'warm_stop' is gone: every managed unit is stopped warm, in reverse order, within "
                               "its own TimeoutStopSec; remove the line");
        else
                return fail(p, "unknown key '%s' in a [units] section", name);
        if (set_strv(dst, value) < 0)
                return fail(p, "out of memory");
        for (char **u = *dst; *u; u++)
                if (!valid_unit_name(*u))
                        return fail(p, "'%s' is not a unit name (e.g. nginx.service)", *u);
        return 1;
}

static int handler(void *user, const char *section, const char *name, const char *value) {
        Parser *p = user;
        Config *c = p->c;
        unsigned u;
        int r = 0;

#define KEY(s, k) (streq(section, s) && streq(name, k))
#define UINT(dst, min, max)                                                                       \
        do {                                                                                      \
                if (parse_uint(value, min, max, &u) < 0)                                          \
                        return fail(p, "%s must be a whole number from %u to %u, not '%s'", name, \
                                    (unsigned) (min), (unsigned) (max), value);                   \
                (dst) = u;                                                                        \
        } while (0)

        if (KEY("imds", "endpoint")) {
                if (*value && strncmp(value, "http://", 7) != 0)
                        return fail(p, "[imds] endpoint must be an http:// URL, not '%s'", value);
                r = set_str(&c->imds_endpoint, value);
        } else if (KEY("imds", "endpoint_mode")) {
                if (streq(value, "ipv4"))
                        r = set_str(&c->imds_endpoint, IMDS_DEFAULT_ENDPOINT);
                else if (streq(value, "ipv6"))
                        r = set_str(&c->imds_endpoint, IMDS_DEFAULT_ENDPOINT_IPV6);
                else
                        return fail(p, "endpoint_mode must be ipv4 or ipv6, not '%s'", value);
        } else if (KEY("imds", "token_ttl"))
                UINT(c->imds_token_ttl, 1, 21600);
        else if (KEY("imds", "connect_timeout_ms"))
                UINT(c->imds_connect_timeout_ms, 10, 60000);
        else if (KEY("imds", "timeout_ms"))
                UINT(c->imds_timeout_ms, 10, 120000);
        else if (KEY("imds", "attempts"))
                UINT(c->imds_attempts, 1, 10);
        else if (KEY("env", "template"))
                r = set_str(&c->env_template, value);
        else if (KEY("env", "output")) {
                if (value[0] != '/')
                        return fail(p, "[env] output must be an absolute path, not '%s'", value);
                r = set_str(&c->env_output, value);
        } else if (KEY("env", "owner")) {
                /* Resolved once per load: the daemon never asks NSS at render time. */
                r = lookup_user(value, &c->env_uid);
                if (r == -ESRCH)
                        return fail(p, "[env] owner '%s' is not a user on this system", value);
                if (r < 0)
                        return fail(p, "cannot look up [env] owner '%s': %s", value, strerror(-r));
                r = set_str(&c->env_owner, value);
        } else if (KEY("env", "group")) {
                r = lookup_group(value, &c->env_gid);
                if (r == -ESRCH)
                        return fail(p, "[env] group '%s' is not a group on this system", value);
                if (r < 0)
                        return fail(p, "cannot look up [env] group '%s': %s", value, strerror(-r));
                r = set_str(&c->env_group, value);
        }
        else if (KEY("env", "mode")) {
                char *end;
                errno = 0;
                unsigned long m = strtoul(value, &end, 8);
                if (errno || !*value || *end || m > 0777)
                        return fail(p, "mode must be octal permission bits such as 0640, not '%s'", value);
                if (m & 0007)
                        return fail(p, "mode %04lo makes the .env readable by every user; it holds secrets", m);
                c->env_mode = (mode_t) m;
        } else if (KEY("env", "format")) {
                if (envfile_format_from_string(value, &c->env_format) < 0)
                        return fail(p, "format must be systemd, dotenv or shell, not '%s'", value);
        } else if (KEY("env", "refresh"))
                UINT(c->env_refresh_sec, 10, 86400);
        else if (KEY("env", "render_timeout"))
                UINT(c->render_timeout_sec, 1, 3600);
        else if (KEY("aws", "credentials_refresh"))
                UINT(c->credentials_refresh_sec, 10, 3600);
        else if (KEY("systemd", "bus")) {
                if (streq(value, "system"))
                        c->bus = BUS_SYSTEM;
                else if (streq(value, "user"))
                        c->bus = BUS_USER;
                else
                        return fail(p, "bus must be system or user, not '%s'", value);
        } else if (KEY("units", "start_limit_retry"))
                UINT(c->start_limit_retry_sec, 1, 3600);
        else if (KEY("units", "role_tag"))
                r = set_str(&c->role_tag, value);
        else if (KEY("units", "default_role"))
                r = set_str(&c->default_role, value);
        else if (streq(section, "units"))
                return handle_units(p, &c->units, name, value);
        else if (strncmp(section, "units.", 6) == 0) {
                if (!section[6])
                        return fail(p, "[units.] needs a role name, e.g. [units.web]");
                UnitSet *s = role_set(c, section + 6);
                if (!s)
                        return fail(p, "out of memory");
                return handle_units(p, s, name, value);
        } else if (KEY("health", "listen")) {
                if (!listen_is_valid(value))
                        return fail(p,
                                    "[health] listen must be ADDR:PORT with a numeric address (0.0.0.0:8081, "
                                    "[::]:8081) and a port from 1 to 65535, not '%s'",
                                    value);
                r = set_str(&c->health_listen, value);
        }
        else if (KEY("health", "upstream"))
                r = set_str(&c->health_upstream, value);
        else if (KEY("health", "upstream_interval_ms"))
                UINT(c->health_upstream_interval_ms, 100, 600000);
        else if (KEY("control", "socket")) {
                if (value[0] != '/')
                        return fail(p, "[control] socket must be an absolute path, not '%s'", value);
                r = set_str(&c->control_socket, value);
        } else if (KEY("drain", "grace"))
                UINT(c->drain_grace_sec, 0, 3600);
        else if (KEY("lifecycle", "launch_hook") || KEY("lifecycle", "terminate_hook")) {
                char **dst = streq(name, "launch_hook") ? &c->launch_hook : &c->terminate_hook;
                for (const char *v = value; *v; v++)
                        if (!((*v >= 'a' && *v <= 'z') || (*v >= 'A' && *v <= 'Z') || (*v >= '0' && *v <= '9') ||
                              *v == '-' || *v == '_' || *v == '/'))
                                return fail(p, "[lifecycle] %s: '%s' is not a lifecycle hook name "
                                               "(letters, digits, '-', '_', '/')", name, value);
                if (strlen(value) > 255)
                        return fail(p, "[lifecycle] %s: longer than 255 characters", name);
                if (*value)
                        r = set_str(dst, value);
                else
                        free(*dst), *dst = NULL;
        } else if (KEY("lifecycle", "abandon_after"))
                UINT(c->abandon_after_sec, 1, 7200);
        else if (KEY("lifecycle", "heartbeat"))
                UINT(c->hook_heartbeat_sec, 1, 7200);
        else if (KEY("lifecycle", "poll_interval_ms"))
                UINT(c->lifecycle_poll_ms, 100, 60000);
        else if (streq(section, "imds") || streq(section, "env") || streq(section, "systemd") || streq(section, "aws") ||
                 streq(section, "health") || streq(section, "control") || streq(section, "drain") ||
                 streq(section, "lifecycle"))
                return fail(p, "unknown key '%s' in [%s]", name, section);
        else
                return fail(p, "unknown section [%s]", section);
        if (r < 0)
                return fail(p, "out of memory");
        return 1;
#undef KEY
#undef UINT
}

static int set_defaults(Config *c, const char *path) {
        *c = (Config) {
                .imds_token_ttl = 21600,
                .imds_connect_timeout_ms = 1000,
                .imds_timeout_ms = 5000,
                .imds_attempts = 4,
                .env_mode = 0640,
                .env_format = ENV_FORMAT_SYSTEMD,
                .env_refresh_sec = 300,
                .render_timeout_sec = 60,
                .start_limit_retry_sec = 10,
                .credentials_refresh_sec = 900,
                .bus = BUS_SYSTEM,
                .health_upstream_interval_ms = 5000,
                .drain_grace_sec = 20,
                .abandon_after_sec = 900,
                .hook_heartbeat_sec = 300,
                .lifecycle_poll_ms = 1000,
        };
        if (!(c->path = strdup(path)) || !(c->imds_endpoint = strdup(IMDS_DEFAULT_ENDPOINT)) ||
            !(c->env_template = strdup("/etc/anb-agent/env.tmpl")) ||
            !(c->env_output = strdup(CONFIG_DEFAULT_ENV_OUTPUT)) || !(c->env_owner = strdup("root")) ||
            !(c->env_group = strdup("root")) || !(c->role_tag = strdup("anb:role")) ||
            !(c->health_listen = strdup("0.0.0.0:8081")) ||
            !(c->control_socket = strdup("/run/anb-agent/control.sock")) ||
            !(c->units.manage = strv_split("", " ")) || !(c->units.restart_on_change = strv_split("", " ")))
                return -ENOMEM;
        return 0;
}

/* The AWS SDKs' variables win over the file, as they do for the SDKs. */
static int apply_environment(Config *c, char **ret_error) {
        const char *e = getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
        if (e && *e) {
                if (strncmp(e, "http://", 7) != 0) {
                        *ret_error = strdup_printf(
                                "AWS_EC2_METADATA_SERVICE_ENDPOINT must be an http:// URL, not '%s'", e);
                        return -EINVAL;
                }
                if (set_str(&c->imds_endpoint, e) < 0)
                        return -ENOMEM;
        }
        e = getenv("AWS_EC2_METADATA_DISABLED");
        c->imds_disabled = e && strcasecmp(e, "true") == 0;
        /* Strip a trailing slash so paths join cleanly. */
        size_t n = strlen(c->imds_endpoint);
        while (n > 7 && c->imds_endpoint[n - 1] == '/')
                c->imds_endpoint[--n] = 0;
        return 0;
}

static int check_units(Config *c, const UnitSet *s, char **ret_error) {
        for (char **u = s->restart_on_change; u && *u; u++)
                if (!strv_contains(s->manage, *u)) {
                        *ret_error = strdup_printf("%s: [units%s%s] restart_on_change names %s, which "
                                                   "is not in manage",
                                                   c->path, s->role ? "." : "", s->role ? s->role : "", *u);
                        return -EINVAL;
                }
        return 0;
}

int config_load(const char *path, Config **ret, char **ret_error) {
        _cleanup_(config_freep) Config *c = calloc(1, sizeof(Config));
        int r;

        *ret_error = NULL;
        if (!c || set_defaults(c, path) < 0)
                return -ENOMEM;

        Parser p = {.c = c};
        p.f = fopen(path, "re");
        if (!p.f) {
                r = -errno;
                *ret_error = strdup_printf("%s: cannot open: %s", path, strerror(errno));
                return r;
        }
        ini_stop_on_first_error = true;
        r = ini_parse_stream(reader, &p, handler, &p);
        fclose(p.f);
        if (p.error) {
                *ret_error = TAKE_PTR(p.error);
                return -EINVAL;
        }
        if (r > 0) {
                *ret_error = strdup_printf("%s:%d: not a [section], key = value, or comment line", path, r);
                return -EINVAL;
        }
        if (r < 0)
                return -ENOMEM;

        r = apply_environment(c, ret_error);
        if (r < 0)
                return r;
        r = check_units(c, &c->units, ret_error);
        for (size_t i = 0; r >= 0 && i < c->n_roles; i++)
                r = check_units(c, &c->roles[i], ret_error);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(c);
        return 0;
}

static void unit_set_deinit(UnitSet *s) {
        free(s->role);
        strv_free(s->manage);
        strv_free(s->restart_on_change);
}

void config_free(Config *c) {
        if (!c)
                return;
        free(c->path);
        free(c->imds_endpoint);
        free(c->env_template);
        free(c->env_output);
        free(c->env_owner);
        free(c->env_group);
        free(c->role_tag);
        free(c->default_role);
        unit_set_deinit(&c->units);
        for (size_t i = 0; i < c->n_roles; i++)
                unit_set_deinit(&c->roles[i]);
        free(c->roles);
        free(c->health_listen);
        free(c->health_upstream);
        free(c->control_socket);
        free(c->launch_hook);
        free(c->terminate_hook);
        free(c);
}

static int socket_handler(void *user, const char *section, const char *name, const char *value) {
        char **dst = user;
        if (streq(section, "control") && streq(name, "socket") && value[0] == '/') {
                free(*dst);
                *dst = strdup(value);
        }
        return 1;
}

char *config_control_socket(const char *path) {
        char *sock = NULL;
        bool stop = ini_stop_on_first_error;
        ini_stop_on_first_error = false;
        (void) ini_parse(path, socket_handler, &sock);
        ini_stop_on_first_error = stop;
        return sock ? sock : strdup("/run/anb-agent/control.sock");
}

const UnitSet *config_unit_set(const Config *c, const char *role) {
        for (size_t i = 0; role && i < c->n_roles; i++)
                if (streq(c->roles[i].role, role))
                        return &c->roles[i];
        return &c->units;
}
