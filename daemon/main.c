/* anb-agent: command line entry point.  Parses the global options, then
 * dispatches to the verb.  Exit codes follow sysexits.h. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include <curl/curl.h>

#include "cli.h"
#include "log.h"
#include "util.h"

typedef struct Verb {
        const char *name;
        int (*fn)(const CliOptions *o, int argc, char **argv);
        const char *help;
} Verb;

static const Verb verbs[] = {
        {"run", verb_run, "run the daemon (systemd's ExecStart)"},
        {"render", verb_render, "resolve the template and write the .env once [--stdout]"},
        {"reload", verb_reload, "re-render and restart what changed in the running agent; print what it did"},
        {"status", verb_status, "show the running agent's state [--json]"},
        {"drain", verb_drain, "make /health answer 503 (draining) [--undo]"},
        {"check-config", verb_check_config, "validate the configuration and template"},
};

static void usage(FILE *f) {
        fprintf(f,
                "Usage: anb-agent [--config PATH] [--verbose] VERB [ARGS]\n"
                "\n"
                "Boots and supervises an ANB instance: renders the app's .env from IMDS,\n"
                "tags and AWS, and starts its units through systemd.\n"
                "\n"
                "Verbs:\n");
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                fprintf(f, "  %-14s %s\n", verbs[i].name, verbs[i].help);
        fprintf(f,
                "\n"
                "Options:\n"
                "  -c, --config PATH  configuration file (default " CONFIG_DEFAULT_PATH ")\n"
                "  -v, --verbose      log debug messages\n"
                "  -h, --help         show this help\n"
                "      --version      show the version\n"
                "\n"
                "Each verb has --help.  Exit codes: 0 ok, 64 usage, 65 a value is missing or invalid,\n"
                "69 unavailable (e.g. the daemon is not running), 70 a reload failed, 73 cannot write\n"
                "the .env, 75 temporary failure (retry), 77 permission denied, 78 configuration error.\n");
}

int main(int argc, char **argv) {
        static const struct option longopts[] = {
                {"config", required_argument, NULL, 'c'},
                {"verbose", no_argument, NULL, 'v'},
                {"help", no_argument, NULL, 'h'},
                {"version", no_argument, NULL, 'V'},
                {0},
        };
        CliOptions o = {.config_path = CONFIG_DEFAULT_PATH};
        int c;

        log_setup("anb-agent");
        /* Options before the verb only; the verb parses the rest. */
        while ((c = getopt_long(argc, argv, "+c:vh", longopts, NULL)) >= 0)
                switch (c) {
                case 'c':
                        o.config_path = optarg;
                        break;
                case 'v':
                        o.verbose = true;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                case 'V':
                        printf("anb-agent %s\n", ANB_VERSION);
                        return 0;
                default:
                        usage(stderr);
                        return EX_USAGE;
                }
        if (optind >= argc) {
                usage(stderr);
                return EX_USAGE;
        }
        if (o.verbose)
                log_set_max_level(LOG_DEBUG);
        const char *name = argv[optind];
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (streq(verbs[i].name, name)) {
                        curl_global_init(CURL_GLOBAL_DEFAULT);
                        int r = verbs[i].fn(&o, argc - optind, argv + optind);
                        curl_global_cleanup();
                        return r;
                }
        fprintf(stderr, "anb-agent: unknown verb '%s' (see anb-agent --help)\n", name);
        return EX_USAGE;
}
