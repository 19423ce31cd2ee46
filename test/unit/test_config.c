/* Configuration: defaults, the pinned keys, and file:line errors. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "env/config.h"
#include "testutil.h"

static int load(const char *text, Config **c, char **err, char **path_out) {
        static char path[300];
        _cleanup_free_ char *dir = test_tmpdir();
        snprintf(path, sizeof path, "%s/agent.conf", dir);
        write_text(path, text);
        free(*err);
        *err = NULL;
        int r = config_load(path, c, err);
        *path_out = path;
        return r;
}

START_TEST(test_config_defaults_and_pinned_keys) {
        unsetenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
        unsetenv("AWS_EC2_METADATA_DISABLED");
        Config *c = NULL;
        char *err = NULL, *path;
        ck_assert_int_eq(load("# nothing\n", &c, &err, &path), 0);
        ck_assert_str_eq(c->imds_endpoint, "http://169.254.169.254");
        ck_assert_uint_eq(c->imds_token_ttl, 21600);
        ck_assert_str_eq(c->health_listen, "0.0.0.0:8081");
        ck_assert_str_eq(c->control_socket, "/run/anb-agent/control.sock");
        ck_assert_int_eq(c->env_mode, 0640);
        ck_assert_str_eq(c->env_output, "/var/lib/anb-agent/.env");
        ck_assert_int_eq(c->env_uid, 0);
        ck_assert_int_eq(c->env_gid, 0);
        ck_assert_int_eq(c->bus, BUS_SYSTEM);
        ck_assert(!c->imds_disabled);
        config_free(c);

        const char *full = "[imds]\nendpoint = http://127.0.0.1:1338/\ntoken_ttl = 60\n"
                           "[env]\ntemplate = /t\noutput = /o/.env\nowner = nobody\ngroup = nogroup\nmode = 0600\n"
                           "format = dotenv\n"
                           "[systemd]\nbus = user\n"
                           "[units]\nmanage = redis-server.service anb-api.service nginx.service\n"
                           "restart_on_change = anb-api.service\n"
                           "[units.worker]\nmanage = redis-server.service anb-worker.service\n"
                           "[health]\nlisten = 127.0.0.1:9000\n[control]\nsocket = /run/x.sock\n";
        ck_assert_int_eq(load(full, &c, &err, &path), 0);
        ck_assert_str_eq(c->imds_endpoint, "http://127.0.0.1:1338");
        ck_assert_uint_eq(c->imds_token_ttl, 60);
        ck_assert_int_eq(c->env_mode, 0600);
        ck_assert_int_eq(c->env_uid, 65534);
        ck_assert_int_eq(c->env_gid, 65534);
        ck_assert_str_eq(c->env_owner, "nobody");
        ck_assert_int_eq(c->env_format, ENV_FORMAT_DOTENV);
        ck_assert_int_eq(c->bus, BUS_USER);
        ck_assert_uint_eq(strv_length(c->units.manage), 3);
        ck_assert_str_eq(config_unit_set(c, "worker")->manage[1], "anb-worker.service");
        ck_assert_ptr_eq(config_unit_set(c, "web"), &c->units);
        ck_assert_ptr_eq(config_unit_set(c, NULL), &c->units);
        config_free(c);
}
END_TEST

START_TEST(test_config_environment_overrides_endpoint) {
        Config *c = NULL;
        char *err = NULL, *path;
        setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:1338", 1);
        setenv("AWS_EC2_METADATA_DISABLED", "TRUE", 1);
        ck_assert_int_eq(load("[imds]\nendpoint_mode = ipv6\n", &c, &err, &path), 0);
        ck_assert_str_eq(c->imds_endpoint, "http://127.0.0.1:1338");
        ck_assert(c->imds_disabled);
        config_free(c);
        unsetenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
        unsetenv("AWS_EC2_METADATA_DISABLED");
        ck_assert_int_eq(load("[imds]\nendpoint_mode = ipv6\n", &c, &err, &path), 0);
        ck_assert_str_eq(c->imds_endpoint, "http://[fd00:ec2::254]");
        config_free(c);
        setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "https://x", 1);
        ck_assert_int_eq(load("", &c, &err, &path), -EINVAL);
        ck_assert_ptr_nonnull(strstr(err, "AWS_EC2_METADATA_SERVICE_ENDPOINT must be an http:// URL"));
        unsetenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
        free(err);
}
END_TEST

static const struct {
        const char *text;
        unsigned line;
        const char *message;
} bad[] = {
        {"[imds]\nendpoint = http://x\ncolour = blue\n", 3, "unknown key 'colour' in [imds]"},
        {"[imsd]\nendpoint = http://x\n", 2, "unknown section [imsd]"},
        {"[imds]\ntoken_ttl = 0\n", 2, "token_ttl must be a whole number from 1 to 21600, not '0'"},
        {"[imds]\ntoken_ttl = 21601\n", 2, "token_ttl must be a whole number from 1 to 21600, not '21601'"},
        {"[imds]\ntoken_ttl = 5s\n", 2, "token_ttl must be a whole number from 1 to 21600, not '5s'"},
        {"[imds]\nendpoint = https://169.254.169.254\n", 2,
         "[imds] endpoint must be an http:// URL, not 'https://169.254.169.254'"},
        {"\n\n[env]\nmode = 0644\n", 4, "mode 0644 makes the .env readable by every user; it holds secrets"},
        {"[env]\nmode = rw\n", 2, "mode must be octal permission bits such as 0640, not 'rw'"},
        {"[env]\nformat = yaml\n", 2, "format must be systemd, dotenv or shell, not 'yaml'"},
        {"[env]\noutput = relative/.env\n", 2, "[env] output must be an absolute path, not 'relative/.env'"},
        {"[systemd]\nbus = session\n", 2, "bus must be system or user, not 'session'"},
        {"[units]\nmanage = nginx\n", 2, "'nginx' is not a unit name (e.g. nginx.service)"},
        {"[units]\nwatch = nginx.service\n", 2, "unknown key 'watch' in a [units] section"},
        {"[units.]\nmanage = a.service\n", 2, "[units.] needs a role name, e.g. [units.web]"},
        {"[health]\nlisten = 127.0.0.1:1\nport = 2\n", 3, "unknown key 'port' in [health]"},
        {"[health]\nlisten = localhost:8081\n", 2,
         "[health] listen must be ADDR:PORT with a numeric address (0.0.0.0:8081, [::]:8081) and a port from 1 "
         "to 65535, not 'localhost:8081'"},
        {"[health]\nlisten = 0.0.0.0:0\n", 2,
         "[health] listen must be ADDR:PORT with a numeric address (0.0.0.0:8081, [::]:8081) and a port from 1 "
         "to 65535, not '0.0.0.0:0'"},
        {"\n[health]\nlisten = 8081\n", 3,
         "[health] listen must be ADDR:PORT with a numeric address (0.0.0.0:8081, [::]:8081) and a port from 1 "
         "to 65535, not '8081'"},
        {"[health]\nlisten = 127.0.0.1:65536\n", 2,
         "[health] listen must be ADDR:PORT with a numeric address (0.0.0.0:8081, [::]:8081) and a port from 1 "
         "to 65535, not '127.0.0.1:65536'"},
        {"[health]\nlisten = ::1:8081\n", 2,
         "[health] listen must be ADDR:PORT with a numeric address (0.0.0.0:8081, [::]:8081) and a port from 1 "
         "to 65535, not '::1:8081'"},
        {"[env]\nmode = 0600\nowner = no-such-user-anb\n", 3,
         "[env] owner 'no-such-user-anb' is not a user on this system"},
        {"[env]\ngroup = no-such-group-anb\n", 2, "[env] group 'no-such-group-anb' is not a group on this system"},
        {"[env]\nowner = -1\n", 2, "[env] owner '-1' is not a user on this system"},
        {"[env]\nthis is not ini\n", 2, "not a [section], key = value, or comment line"},
};

START_TEST(test_config_errors_name_file_and_line) {
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                Config *c = NULL;
                char *err = NULL, *path;
                int r = load(bad[i].text, &c, &err, &path);
                ck_assert_msg(r == -EINVAL, "case %zu: loaded", i);
                _cleanup_free_ char *want = strdup_printf("%s:%u: %s", path, bad[i].line, bad[i].message);
                ck_assert_msg(err && streq(err, want), "case %zu: got [%s] want [%s]", i, err, want);
                free(err);
        }
}
END_TEST

START_TEST(test_config_listen_and_numeric_owner_accepted) {
        Config *c = NULL;
        char *err = NULL, *path;
        static const char *const good[] = {"[::]:8081", "[::1]:1", "127.0.0.1:65535", "0.0.0.0:8081"};
        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                _cleanup_free_ char *text = strdup_printf("[health]\nlisten = %s\n", good[i]);
                ck_assert_msg(load(text, &c, &err, &path) == 0, "%s: %s", good[i], err);
                ck_assert_str_eq(c->health_listen, good[i]);
                config_free(c);
        }
        ck_assert_int_eq(load("[env]\nowner = 1234\ngroup = 4321\n", &c, &err, &path), 0);
        ck_assert_int_eq(c->env_uid, 1234);
        ck_assert_int_eq(c->env_gid, 4321);
        config_free(c);
        free(err);
}
END_TEST

START_TEST(test_config_restart_unit_must_be_managed) {
        Config *c = NULL;
        char *err = NULL, *path;
        ck_assert_int_eq(load("[units]\nmanage = a.service\nrestart_on_change = b.service\n", &c, &err, &path),
                         -EINVAL);
        ck_assert_ptr_nonnull(strstr(err, "restart_on_change names b.service, which is not in manage"));
        free(err);
}
END_TEST

START_TEST(test_config_missing_file) {
        Config *c = NULL;
        char *err = NULL;
        ck_assert_int_eq(config_load("/nonexistent/agent.conf", &c, &err), -ENOENT);
        ck_assert_str_eq(err, "/nonexistent/agent.conf: cannot open: No such file or directory");
        free(err);
}
END_TEST

TEST_SUITE(suite_config)
Suite *suite_config(void) {
        Suite *s = suite_create("config");
        TCase *tc = tcase_create("load");
        tcase_add_test(tc, test_config_defaults_and_pinned_keys);
        tcase_add_test(tc, test_config_environment_overrides_endpoint);
        tcase_add_test(tc, test_config_errors_name_file_and_line);
        tcase_add_test(tc, test_config_listen_and_numeric_owner_accepted);
        tcase_add_test(tc, test_config_restart_unit_must_be_managed);
        tcase_add_test(tc, test_config_missing_file);
        suite_add_tcase(s, tc);
        return s;
}
