/* anb-agent: command line entry point.  One parser for every verb: the
 * global options (--config, --verbose) are accepted before or after the
 * verb, each verb's own flags only with that verb, and `VERB --help`
 * prints the verb's usage.  Then it dispatches.  Exit codes follow
 * sysexits.h. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sysexits.h>

#include <curl/curl.h>
#include <jansson.h>

#include "basic/log.h"
#include "basic/util.h"
#include "basic/wipe.h"
#include "cli.h"

enum {
        FLAG_JSON = 1 << 0,
        FLAG_UNDO = 1 << 1,
        FLAG_STDOUT = 1 << 2,
};

typedef struct Verb {
        const char *name;
        int (*fn)(const CliOptions *o);
        unsigned flags; /* FLAG_* the verb accepts */
        bool curl;      /* needs libcurl initialised */
        const char *synopsis;
        const char *help;  /* one line for anb-agent --help */
        const char *usage; /* for anb-agent VERB --help */
} Verb;

static const Verb verbs[] = {
        {"run", verb_run, 0, true, "run", "run the daemon (systemd's ExecStart)",
         "Runs the daemon: renders the .env, starts the units, stays up.\n"
         "Meant for systemd's ExecStart= (Type=notify).\n"},
        {"render", verb_render, FLAG_STDOUT, true, "render [--stdout]",
         "resolve the template and write the .env once [--stdout]",
         "Resolves the template and replaces the .env atomically; touches no unit.\n"
         "--stdout prints the rendered file instead (it contains secrets).\n"},
        {"reload", verb_reload, 0, false, "reload",
         "re-render and restart what changed in the running agent; print what it did",
         "Asks the running agent to re-read its configuration and every source, re-render\n"
         "the .env and restart only the units whose input changed; prints what it did.\n"},
        {"status", verb_status, FLAG_JSON, false, "status [--json]", "show the running agent's state [--json]",
         "Shows the running agent's state: bootstrap, role, .env revision, health, drain,\n"
         "each managed unit, IMDS.  --json prints the same as one JSON object.\n"},
        {"drain", verb_drain, FLAG_UNDO, false, "drain [--undo]", "make /health answer 503 (draining) [--undo]",
         "Makes /health answer 503 (draining) so the load balancer stops sending traffic;\n"
         "the app keeps running.  --undo returns /health to the instance's real state.\n"},
        {"check-config", verb_check_config, 0, false, "check-config", "validate the configuration and template",
         "Validates the configuration and the template; prints nothing when both are good.\n"},
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
                "Options (before or after the verb):\n"
                "  -c, --config PATH  configuration file (default " CONFIG_DEFAULT_PATH ")\n"
                "  -v, --verbose      log debug messages\n"
                "  -h, --help         show this help (after a verb: the verb's)\n"
                "      --version      show the version\n"
                "\n"
                "Exit codes: 0 ok, 64 usage, 65 a value is missing or invalid, 69 unavailable\n"
                "(e.g. the daemon is not running), 70 a reload failed, 73 cannot write the .env,\n"
                "75 temporary failure (retry), 77 permission denied, 78 configuration error.\n");
}

static const Verb *find_verb(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (streq(verbs[i].name, name))
                        return &verbs[i];
        return NULL;
}

static const char *flag_name(unsigned flag) {
        return flag == FLAG_JSON ? "--json" : flag == FLAG_UNDO ? "--undo" : "--stdout";
}

int main(int argc, char **argv) {
        static const struct option longopts[] = {
                {"config", required_argument, NULL, 'c'},
                {"verbose", no_argument, NULL, 'v'},
                {"help", no_argument, NULL, 'h'},
                {"version", no_argument, NULL, 'V'},
                {"json", no_argument, NULL, 'j'},
                {"undo", no_argument, NULL, 'u'},
                {"stdout", no_argument, NULL, 's'},
                {0},
        };
        CliOptions o = {.config_path = CONFIG_DEFAULT_PATH};
        unsigned flags = 0;
        bool help = false;
        int c;

        /* Secrets, tokens and credentials live in this process: no core dump
         * (the unit also sets LimitCORE=0), no ptrace by a same-uid process,
         * /proc/PID/mem, environ and maps readable by root only. */
        (void) prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
        /* jansson's and libcurl's buffers hold secret values, tokens and
         * signed headers: zero each before it is freed. */
        json_set_alloc_funcs(wipe_malloc, wipe_free);

        log_setup("anb-agent");
        opterr = 0;
        /* Permuting: options anywhere, the verb is the one operand. */
        while ((c = getopt_long(argc, argv, ":c:vh", longopts, NULL)) >= 0)
                switch (c) {
                case 'c':
                        o.config_path = optarg;
                        break;
                case 'v':
                        o.verbose = true;
                        break;
                case 'h':
                        help = true;
                        break;
                case 'V':
                        printf("anb-agent %s\n", ANB_VERSION);
                        return 0;
                case 'j':
                        flags |= FLAG_JSON;
                        break;
                case 'u':
                        flags |= FLAG_UNDO;
                        break;
                case 's':
                        flags |= FLAG_STDOUT;
                        break;
                case ':':
                        log_error("option '%s' needs a value", argv[optind - 1]);
                        return EX_USAGE;
                default:
                        log_error("unknown option '%s' (see anb-agent --help)", argv[optind - 1]);
                        return EX_USAGE;
                }
        if (optind >= argc) {
                if (help) {
                        usage(stdout);
                        return 0;
                }
                usage(stderr);
                return EX_USAGE;
        }
        const Verb *v = find_verb(argv[optind]);
        if (!v) {
                log_error("unknown verb '%s' (see anb-agent --help)", argv[optind]);
                return EX_USAGE;
        }
        if (help) {
                printf("Usage: anb-agent [--config PATH] [--verbose] %s\n\n%s", v->synopsis, v->usage);
                return 0;
        }
        if (optind + 1 < argc) {
                log_error("%s: unexpected argument '%s' (anb-agent %s)", v->name, argv[optind + 1], v->synopsis);
                return EX_USAGE;
        }
        for (unsigned f = 1; f <= FLAG_STDOUT; f <<= 1)
                if ((flags & f) && !(v->flags & f)) {
                        log_error("%s does not take %s (anb-agent %s)", v->name, flag_name(f), v->synopsis);
                        return EX_USAGE;
                }
        o.json = flags & FLAG_JSON;
        o.undo = flags & FLAG_UNDO;
        o.to_stdout = flags & FLAG_STDOUT;
        if (o.verbose)
                log_set_max_level(LOG_DEBUG);
        /* Only verbs that talk HTTP pay for libcurl's start-up. */
        if (v->curl && curl_global_init_mem(CURL_GLOBAL_DEFAULT, wipe_malloc, wipe_free, wipe_realloc, wipe_strdup,
                                            wipe_calloc) != CURLE_OK) {
                log_error("cannot initialise libcurl");
                return EX_OSERR;
        }
        int r = v->fn(&o);
        if (v->curl)
                curl_global_cleanup();
        return r;
}
