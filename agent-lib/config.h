/* The agent's configuration: /etc/anb-agent/agent.conf (INI, parsed by
 * libinih).  Every key, its default and meaning is documented in
 * conf/agent.conf.  config_load() reports the first problem as
 * "file:line: message"; the caller exits 78 (EX_CONFIG) on it.
 * A Config owns all its strings. */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "envfile.h"

typedef enum BusKind {
        BUS_SYSTEM,
        BUS_USER,
} BusKind;

typedef struct UnitSet {
        char *role;               /* NULL for the [units] default set */
        char **manage;            /* in start order */
        char **restart_on_change; /* subset of units restarted when the .env changes */
        char **warm_stop;         /* units stopped with TERM and waited for (celery) */
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
        char *env_owner;
        char *env_group;
        mode_t env_mode;
        EnvFormat env_format;
        unsigned env_refresh_sec;
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
} Config;

#define CONFIG_DEFAULT_PATH "/etc/anb-agent/agent.conf"
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

/* The unit set for role (NULL or unknown role: the [units] default). */
const UnitSet *config_unit_set(const Config *c, const char *role);
