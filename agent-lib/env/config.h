/* The agent's configuration: /etc/anb-agent/agent.conf (INI, parsed by
 * libinih).  Every key, its default and meaning is documented in
 * conf/agent.conf.  config_load() reports the first problem as
 * "file:line: message"; the caller exits 78 (EX_CONFIG) on it.  It
 * checks everything `run` relies on before it starts (the listen
 * address, that [env] owner and group exist), so check-config passes only
 * what run accepts.
 * A Config owns all its strings. */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "env/envfile.h"

typedef enum BusKind {
        BUS_SYSTEM,
        BUS_USER,
} BusKind;

typedef struct UnitSet {
        char *role;               /* NULL for the [units] default set */
        char **manage;            /* in start order */
        char **restart_on_change; /* subset of units restarted when the .env changes */
} UnitSet;

typedef struct Config {
        char *path;

        char *imds_endpoint; /* resolved: env var, config, then default */
        bool imds_disabled;  /* AWS_EC2_METADATA_DISABLED=true */
        unsigned imds_token_ttl;
        unsigned imds_connect_timeout_ms;
        unsigned imds_timeout_ms;
        unsigned imds_attempts;

        char *env_template;
        char *env_output;
        char *env_owner;  /* as written, for messages */
        char *env_group;
        uid_t env_uid;    /* resolved by config_load (root by default) */
        gid_t env_gid;
        mode_t env_mode;
        EnvFormat env_format;
        unsigned env_refresh_sec;
        unsigned render_timeout_sec; /* [env] render_timeout: a render's overall deadline */
        unsigned credentials_refresh_sec; /* [aws] credentials_refresh: margin before Expiration */

        BusKind bus;

        unsigned start_limit_retry_sec;

        char *role_tag;
        char *default_role;
        UnitSet units;      /* [units] */
        UnitSet *roles;     /* [units.ROLE] */
        size_t n_roles;

        char *health_listen;
        char *health_upstream;
        unsigned health_upstream_interval_ms;

        char *control_socket;

        unsigned drain_grace_sec; /* [drain] grace: /health 503 this long after SIGTERM */

        char *launch_hook;          /* [lifecycle]: ASG hook names, NULL for none */
        char *terminate_hook;
        unsigned abandon_after_sec; /* launch: ABANDON if not healthy by then */
        unsigned hook_heartbeat_sec; /* RecordLifecycleActionHeartbeat this often while a hook waits */
        unsigned lifecycle_poll_ms; /* IMDS spot/ASG-state poll */
} Config;

#define CONFIG_DEFAULT_PATH "/etc/anb-agent/agent.conf"
/* root's directory (StateDirectory= in the unit): the app user can plant
 * nothing beside the .env, and systemd reads it for the app as root. */
#define CONFIG_DEFAULT_ENV_OUTPUT "/var/lib/anb-agent/.env"
#define IMDS_DEFAULT_ENDPOINT "http://169.254.169.254"
#define IMDS_DEFAULT_ENDPOINT_IPV6 "http://[fd00:ec2::254]"

/* Loads path (defaults applied first, then the environment's overrides).
 * On failure returns a negative errno and, where there is one, a message
 * "path:line: what is wrong" in *ret_error (caller frees). */
int config_load(const char *path, Config **ret, char **ret_error);
void config_free(Config *c);
static inline void config_freep(Config **c) {
        config_free(*c);
}

/* [control] socket from path, read leniently (the rest of the file may be
 * broken: an operator must still reach the running daemon); the default
 * when absent or unreadable.  Caller frees. */
char *config_control_socket(const char *path);

/* A user or group name (or number) to its id: -ESRCH when there is no
 * such user or group, another negative errno when NSS failed.  Blocking
 * (NSS): config_load calls it, once per load. */
int lookup_user(const char *user, uid_t *ret_uid);
int lookup_group(const char *group, gid_t *ret_gid);

/* The unit set for role (NULL or unknown role: the [units] default). */
const UnitSet *config_unit_set(const Config *c, const char *role);
