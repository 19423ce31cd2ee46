/* `anb-agent render` and `anb-agent check-config`: one-shot verbs that
 * run a private libuv loop to completion.  They touch no unit. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <sysexits.h>
#include <uv.h>

#include "cli.h"
#include "envfile.h"
#include "aws.h"
#include "credentials.h"
#include "http.h"
#include "imds.h"
#include "log.h"
#include "render.h"
#include "template.h"
#include "util.h"

typedef struct RenderCli {
        RenderOutcome *outcome;
} RenderCli;

static void on_render(RenderOutcome *o, void *userdata) {
        RenderCli *rc = userdata;
        rc->outcome = o;
}

/* Renders once; returns a sysexits code. */
static int render_once(const Config *c, bool write, bool print) {
        uv_loop_t loop;
        HttpLoop *http = NULL;
        RenderSources src = {0};
        RenderCli rc = {0};
        int r, code = 0;

        uv_loop_init(&loop);
        r = http_loop_new(&loop, &http);
        if (r >= 0)
                r = render_sources_new(&loop, http, c, NULL, NULL, &src);
        if (r >= 0)
                r = render_start(&src, c, write ? RENDER_WRITE : 0, on_render, &rc);
        if (r >= 0)
                uv_run(&loop, UV_RUN_DEFAULT);

        RenderOutcome *o = rc.outcome;
        if (r < 0 || !o) {
                log_error("render failed: %s", strerror(r < 0 ? -r : ENOMEM));
                code = EX_OSERR;
        } else if (o->error) {
                log_lines(LOG_ERR, o->message);
                code = o->exit_code;
        } else {
                for (char **w = o->warnings; w && *w; w++)
                        log_warning("%s", *w);
                if (print)
                        fwrite(o->rendered->text, 1, o->rendered->len, stdout);
                if (write)
                        log_info("%s %s (%zu variables)", o->changed ? "wrote" : "unchanged:", c->env_output,
                                 o->rendered->n_vars);
        }
        if (src.imds) {
                const ImdsStats *s = imds_stats(src.imds);
                log_debug("IMDS requests: %u token, %u get, %u retries", s->token_requests, s->get_requests,
                          s->retries);
        }
        if (src.aws)
                log_debug("AWS requests: %u (%u retries)", aws_stats(src.aws)->calls, aws_stats(src.aws)->retries);
        if (o && o->tags_source)
                log_debug("tags from %s", o->tags_source);
        render_outcome_free(o);
        render_sources_free(&src);
        http_loop_free(http);
        uv_run(&loop, UV_RUN_DEFAULT); /* the freed objects' close callbacks */
        cli_close_loop(&loop);
        return code;
}

int verb_render(const CliOptions *opts, int argc, char **argv) {
        static const struct option longopts[] = {
                {"stdout", no_argument, NULL, 's'},
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        bool to_stdout = false;
        int ch;
        optind = 1;
        while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) >= 0)
                switch (ch) {
                case 's':
                        to_stdout = true;
                        break;
                case 'h':
                        printf("Usage: anb-agent [--config PATH] render [--stdout]\n\n"
                               "Resolves the template and replaces the .env atomically; touches no unit.\n"
                               "--stdout prints the rendered file instead (it contains secrets).\n");
                        return 0;
                default:
                        return EX_USAGE;
                }
        if (optind < argc) {
                log_error("render takes no arguments besides --stdout");
                return EX_USAGE;
        }
        _cleanup_(config_freep) Config *c = NULL;
        int code = cli_load_config(opts, &c);
        if (code)
                return code;
        if (to_stdout)
                log_warning("--stdout prints the rendered .env, secrets included; mind where it goes");
        return render_once(c, !to_stdout, to_stdout);
}

int verb_check_config(const CliOptions *opts, int argc, char **argv) {
        int code = cli_no_arguments(argc, argv,
                                    "Usage: anb-agent [--config PATH] check-config\n\n"
                                    "Validates the configuration and the template; prints nothing when both are "
                                    "good.\n");
        if (code >= 0)
                return code;
        _cleanup_(config_freep) Config *c = NULL;
        code = cli_load_config(opts, &c);
        if (code)
                return code;
        _cleanup_free_ char *err = NULL;
        _cleanup_(template_freep) Template *t = NULL;
        int r = render_load_template(c, &t, &err);
        if (r < 0) {
                log_error("%s", err ? err : strerror(-r));
                return r == -ENOMEM ? EX_OSERR : EX_CONFIG;
        }
        return 0;
}
