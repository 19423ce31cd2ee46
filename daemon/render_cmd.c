/* `anb-agent render` and `anb-agent check-config`: one-shot verbs that
 * run a private libuv loop to completion.  They touch no unit. */
#include <errno.h>
#include <stdio.h>
#include <sysexits.h>
#include <uv.h>

#include "cli.h"
#include "env/envfile.h"
#include "aws/aws.h"
#include "aws/credentials.h"
#include "loop/http.h"
#include "aws/imds.h"
#include "basic/log.h"
#include "render/render.h"
#include "env/template.h"
#include "basic/util.h"

typedef struct RenderCli {
        RenderOutcome *outcome;
} RenderCli;

static void on_render(RenderOutcome *o, void *userdata) {
        RenderCli *rc = userdata;
        rc->outcome = o;
}

/* Where the .env goes: a symlink on the way is refused (run's every write
 * would fail), a directory another user can change is warned about (that
 * user can make systemd read any file into the app's environment).
 * Returns 0 or EX_CONFIG. */
static int check_output_dir(const Config *c) {
        _cleanup_free_ char *unsafe = NULL;
        int r = envfile_check_dir(c->env_output, &unsafe);
        if (r == -ELOOP) {
                log_error("%s: [env] output %s has a symlink on the way; the agent writes through none", c->path,
                          c->env_output);
                return EX_CONFIG;
        }
        if (r > 0)
                log_warning("%s: [env] output %s is in reach of a user other than root (%s): that user can plant "
                            "a symlink systemd follows as root; see anb-agent.conf(5)",
                            c->path, c->env_output, unsafe);
        return 0;
}

/* Renders once; returns a sysexits code. */
static int render_once(const Config *c, bool write, bool print) {
        uv_loop_t loop;
        HttpLoop *http = NULL;
        RenderSources src = {0};
        RenderCli rc = {0};
        int r, code = 0;

        if (write) {
                /* A crash between create and rename left a temp beside the .env. */
                int k = envfile_remove_stale_temps(c->env_output);
                if (k > 0)
                        log_notice("removed %d temp file%s a crash left beside %s", k, k == 1 ? "" : "s",
                                   c->env_output);
                else if (k < 0)
                        log_warning("cannot clean up temp files beside %s: %s", c->env_output, strerror(-k));
        }
        uv_loop_init(&loop);
        r = http_loop_new(&loop, &http);
        if (r >= 0)
                r = render_sources_new(&loop, http, c, NULL, NULL, &src);
        if (r >= 0)
                r = render_start(&src, c, write ? RENDER_WRITE : 0, on_render, &rc, NULL);
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

int verb_render(const CliOptions *opts) {
        bool to_stdout = opts->to_stdout;
        _cleanup_(config_freep) Config *c = NULL;
        int code = cli_load_config(opts, &c);
        if (code)
                return code;
        if (to_stdout)
                log_warning("--stdout prints the rendered .env, secrets included; mind where it goes");
        else if ((code = check_output_dir(c)))
                return code;
        return render_once(c, !to_stdout, to_stdout);
}

int cli_check_config(const Config *c) {
        _cleanup_free_ char *err = NULL;
        _cleanup_(template_freep) Template *t = NULL;
        int r = render_load_template(c, &t, &err);
        if (r < 0) {
                log_error("%s", err ? err : strerror(-r));
                return r == -ENOMEM ? EX_OSERR : EX_CONFIG;
        }
        return check_output_dir(c);
}

int verb_check_config(const CliOptions *opts) {
        _cleanup_(config_freep) Config *c = NULL;
        int code = cli_load_config(opts, &c);
        if (code)
                return code;
        return cli_check_config(c);
}
