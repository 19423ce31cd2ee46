/* The async contract (README, "The async contract"), module by module:
 * no callback before the starting call returns; after _cancel() the
 * callback never runs; _free() with work pending calls nothing back and
 * leaves a loop that closes (uv_loop_close() == 0, nothing force-closed).
 * Against test/fakes/imds.py on loopback. */
#include <errno.h>
#include <stdio.h>
#include <sysexits.h>
#include <unistd.h>

#include "aws/aws.h"
#include "aws/credentials.h"
#include "aws/imds.h"
#include "basic/util.h"
#include "env/config.h"
#include "loop/http.h"
#include "render/render.h"
#include "render/resolve.h"
#include "testutil.h"

typedef ImdsEnv Env;

static void env_start(Env *e, const char *state) {
        imds_env_start(e, state, (ImdsOptions) {.attempts = 2, .backoff_ms = 10});
}

static void env_stop(Env *e) {
        imds_env_stop(e);
}

static void run_until(uv_loop_t *loop, const int *flag) {
        for (int i = 0; !*flag && i < 100000; i++)
                uv_run(loop, UV_RUN_ONCE);
        ck_assert_msg(*flag, "callback never ran");
}

/* A few more turns, so that a callback that should not come would. */
static void run_a_while(uv_loop_t *loop) {
        for (int i = 0; i < 20; i++) {
                uv_run(loop, UV_RUN_NOWAIT);
                usleep(5000);
        }
}

/* ---- http ---------------------------------------------------------------- */

static void on_http(const HttpResponse *r, void *ud) {
        (void) r;
        (*(int *) ud)++;
}

static int http_get(Env *e, const char *path, int *calls, HttpCall **ret) {
        char url[256];
        snprintf(url, sizeof url, "%s/%s", e->fake.url, path);
        HttpRequest req = {.method = "GET", .url = url, .connect_timeout_ms = 1000, .timeout_ms = 5000};
        return http_start(e->http, &req, on_http, calls, ret);
}

START_TEST(http_follows_the_async_contract) {
        Env e;
        env_start(&e, NULL);
        int a = 0, b = 0, c = 0;
        HttpCall *ca = NULL;
        ck_assert_int_eq(http_get(&e, "latest/meta-data/", &a, &ca), 0);
        ck_assert_int_eq(http_get(&e, "latest/meta-data/", &b, NULL), 0);
        ck_assert_int_eq(a + b, 0); /* not before the call returned */
        http_cancel(ca);
        http_cancel(NULL);
        run_until(&e.loop, &b);
        run_a_while(&e.loop);
        ck_assert_int_eq(a, 0); /* cancelled: never */
        ck_assert_int_eq(http_get(&e, "latest/meta-data/", &c, NULL), 0);
        http_loop_free(e.http); /* pending: silently */
        e.http = NULL;
        imds_client_free(e.imds);
        e.imds = NULL;
        loop_finish(&e.loop);
        ck_assert_int_eq(c, 0);
        fake_stop(&e.fake);
}
END_TEST

/* ---- imds ---------------------------------------------------------------- */

static void on_imds(const ImdsResult *r, void *ud) {
        (void) r;
        (*(int *) ud)++;
}

static void on_imds_creds(int error, const char *message, AwsCredentials *c, void *ud) {
        (void) error, (void) message;
        aws_credentials_free(c);
        (*(int *) ud)++;
}

START_TEST(imds_follows_the_async_contract) {
        Env e;
        env_start(&e, NULL);
        int a = 0, b = 0, c = 0, d = 0, f = 0;
        ImdsCall *ca = NULL, *cf = NULL;
        ck_assert_int_eq(imds_get(e.imds, "meta-data/instance-id", on_imds, &a, &ca), 0);
        ck_assert_int_eq(imds_get(e.imds, "meta-data/instance-id", on_imds, &b, NULL), 0);
        ck_assert_int_eq(imds_fetch_credentials(e.imds, on_imds_creds, &f, &cf), 0);
        ck_assert_int_eq(a + b + f, 0);
        imds_cancel(ca);
        imds_cancel(cf);
        imds_cancel(NULL);
        run_until(&e.loop, &b);
        run_a_while(&e.loop);
        ck_assert_int_eq(a + f, 0);
        /* With a token in hand, the answer is still not given at the call. */
        ck_assert_int_eq(imds_get(e.imds, "meta-data/no-such-path", on_imds, &d, NULL), 0);
        ck_assert_int_eq(d, 0);
        run_until(&e.loop, &d);
        /* Pending at free: silently, with the token PUT and a backoff. */
        imds_drop_token(e.imds);
        /* Every GET fails (count 100), so nothing can complete before the free. */
        fake_post(&e.fake, "fault", "{\"kind\":\"status\",\"status\":500,\"count\":100,\"path\":\"meta-data/\"}");
        ck_assert_int_eq(imds_get(e.imds, "meta-data/instance-id", on_imds, &c, NULL), 0);
        ck_assert_int_eq(imds_fetch_credentials(e.imds, on_imds_creds, &c, NULL), 0);
        uv_run(&e.loop, UV_RUN_NOWAIT);
        imds_client_free(e.imds);
        e.imds = NULL;
        env_stop(&e);
        ck_assert_int_eq(c, 0);
}
END_TEST

/* ---- aws ----------------------------------------------------------------- */

static void on_aws(const AwsResult *r, void *ud) {
        (void) r;
        (*(int *) ud)++;
}

START_TEST(aws_follows_the_async_contract) {
        Env e;
        env_start(&e, NULL);
        /* Any HTTP peer will do: the answers' content does not matter here. */
        setenv("AWS_ENDPOINT_URL", e.fake.url, 1);
        AwsClient *aws;
        ck_assert_int_eq(aws_client_new(&e.loop, e.http, &aws), 0);
        AwsCredentials creds = {.role = "r", .access_key_id = "AKIDEXAMPLE", .secret_access_key = "s", .token = "t"};
        int a = 0, b = 0, c = 0;
        AwsCall *ca = NULL;
        ck_assert_int_eq(aws_call_json(aws, &creds, "eu-west-1", AWS_SSM, "AmazonSSM.GetParameters", "{}", on_aws,
                                       &a, &ca),
                         0);
        ck_assert_int_eq(aws_call_query(aws, &creds, "eu-west-1", AWS_EC2, "Action=DescribeTags", on_aws, &b, NULL),
                         0);
        ck_assert_int_eq(a + b, 0);
        aws_cancel(ca);
        aws_cancel(NULL);
        run_until(&e.loop, &b);
        run_a_while(&e.loop);
        ck_assert_int_eq(a, 0);
        ck_assert_int_eq(aws_call_json(aws, &creds, "eu-west-1", AWS_SSM, "AmazonSSM.GetParameters", "{}", on_aws,
                                       &c, NULL),
                         0);
        aws_client_free(aws);
        aws_client_free(NULL);
        unsetenv("AWS_ENDPOINT_URL");
        env_stop(&e);
        ck_assert_int_eq(c, 0);
}
END_TEST

/* ---- credentials --------------------------------------------------------- */

typedef struct Got {
        int calls;
        int error;
        char message[512];
        time_t expiration;
} Got;

static void on_creds(int error, const char *message, const AwsCredentials *c, void *ud) {
        Got *g = ud;
        g->calls++;
        g->error = error;
        snprintf(g->message, sizeof g->message, "%s", message ? message : "");
        g->expiration = c ? c->expiration : 0;
}

START_TEST(credentials_follow_the_async_contract) {
        Env e;
        env_start(&e, NULL);
        CredentialsCache *none, *cc;
        /* IMDS disabled: the answer is known at the call, and deferred. */
        ck_assert_int_eq(credentials_new(&e.loop, NULL, 0, NULL, NULL, &none), 0);
        Got n = {0};
        ck_assert_int_eq(credentials_get(none, false, on_creds, &n, NULL), 0);
        ck_assert_int_eq(n.calls, 0);
        run_until(&e.loop, &n.calls);
        ck_assert_int_eq(n.error, -ENETUNREACH);
        credentials_free(none);

        ck_assert_int_eq(credentials_new(&e.loop, e.imds, 0, NULL, NULL, &cc), 0);
        Got a = {0}, b = {0}, c = {0}, d = {0};
        CredentialsWait *wa = NULL;
        ck_assert_int_eq(credentials_get(cc, false, on_creds, &a, &wa), 0);
        ck_assert_int_eq(credentials_get(cc, false, on_creds, &b, NULL), 0);
        ck_assert_int_eq(a.calls + b.calls, 0);
        credentials_cancel(wa);
        credentials_cancel(NULL);
        run_until(&e.loop, &b.calls);
        run_a_while(&e.loop);
        ck_assert_int_eq(a.calls, 0);
        ck_assert_int_eq(b.error, 0);
        /* Cached: known at the call, still deferred. */
        ck_assert_int_eq(credentials_get(cc, false, on_creds, &c, NULL), 0);
        ck_assert_int_eq(c.calls, 0);
        run_until(&e.loop, &c.calls);
        ck_assert_int_eq(c.error, 0);
        /* A fetch in flight at free: silently, its IMDS call cancelled.
         * Every IMDS answer fails meanwhile, so it cannot finish inside
         * the uv_run below (it did, now and then, under valgrind). */
        fake_post(&e.fake, "fault", "{\"kind\":\"status\",\"status\":500,\"count\":100,\"path\":\"meta-data/\"}");
        ck_assert_int_eq(credentials_get(cc, true, on_creds, &d, NULL), 0);
        credentials_keep_fresh(cc, true);
        uv_run(&e.loop, UV_RUN_NOWAIT);
        credentials_free(cc);
        credentials_free(NULL);
        env_stop(&e);
        ck_assert_int_eq(d.calls, 0);
}
END_TEST

START_TEST(credentials_served_expired_are_a_failed_fetch_and_asked_again) {
        Env e;
        env_start(&e, "{\"credentials_ttl\": -120}");
        CredentialsCache *cc;
        ck_assert_int_eq(credentials_new(&e.loop, e.imds, 0, NULL, NULL, &cc), 0);
        Got g = {0};
        ck_assert_int_eq(credentials_get(cc, false, on_creds, &g, NULL), 0);
        run_until(&e.loop, &g.calls);
        ck_assert_int_eq(g.error, -EKEYEXPIRED);
        ck_assert_msg(strstr(g.message, "already expired"), "message: %s", g.message);
        ck_assert_int_eq(credentials_expiration(cc), 0); /* never adopted */
        /* The first answer and three more tries. */
        ck_assert_int_eq(fake_count(&e.fake, "meta-data/iam/security-credentials/anb-instance-role"), 4);

        /* IMDS serves fresh ones again: the next ask succeeds. */
        fake_post(&e.fake, "state", "{\"credentials_ttl\": 21600}");
        g = (Got) {0};
        ck_assert_int_eq(credentials_get(cc, false, on_creds, &g, NULL), 0);
        run_until(&e.loop, &g.calls);
        ck_assert_int_eq(g.error, 0);
        ck_assert_int_gt(g.expiration, time(NULL) + 3600);
        credentials_free(cc);
        env_stop(&e);
}
END_TEST

/* ---- resolver ------------------------------------------------------------ */

static void on_resolved(Resolver *r, void *ud) {
        (void) r;
        (*(int *) ud)++;
}

static Resolver *resolver_for(Env *e, const char *tmpl) {
        Template *t = NULL;
        char *err = NULL;
        Resolver *r = NULL;
        ck_assert_int_eq(template_parse("t", tmpl, strlen(tmpl), &t, &err), 0);
        ck_assert_int_eq(resolver_new(&e->loop, e->imds, NULL, NULL, NULL, &r), 0);
        ck_assert_int_eq(resolver_want_template(r, t), 0);
        template_free(t);
        return r;
}

START_TEST(resolver_follows_the_async_contract) {
        Env e;
        env_start(&e, NULL);
        /* Only env: everything is known at the call; the answer is deferred. */
        int a = 0, b = 0;
        Resolver *ra = resolver_for(&e, "A=${env:HOME:-x}\n");
        ck_assert_int_eq(resolver_start(ra, on_resolved, &a), 0);
        ck_assert_int_eq(a, 0);
        run_until(&e.loop, &a);
        resolver_free(ra);
        /* Freed with IMDS calls in flight: silently (every GET fails
         * meanwhile, so nothing can complete inside the uv_run). */
        fake_post(&e.fake, "fault", "{\"kind\":\"status\",\"status\":500,\"count\":100,\"path\":\"\"}");
        Resolver *rb = resolver_for(&e, "A=${imds:instance-id}\nB=${identity:region}\nC=${tag:Name}\n");
        ck_assert_int_eq(resolver_start(rb, on_resolved, &b), 0);
        uv_run(&e.loop, UV_RUN_NOWAIT);
        resolver_free(rb);
        resolver_free(NULL);
        run_a_while(&e.loop);
        env_stop(&e);
        ck_assert_int_eq(b, 0);
}
END_TEST

/* ---- render -------------------------------------------------------------- */

typedef struct Rendered_ {
        int calls;
        RenderOutcome *o;
} RenderGot;

static void on_render(RenderOutcome *o, void *ud) {
        RenderGot *g = ud;
        g->calls++;
        render_outcome_free(g->o);
        g->o = o;
}

typedef struct RenderEnv {
        Env e;
        char *dir;
        char path[512], tmpl[512], out[512];
        Config *config;
        RenderSources src;
} RenderEnv;

static void render_env_start(RenderEnv *re, const char *state, const char *tmpl, const char *extra_conf) {
        env_start(&re->e, state);
        imds_client_free(re->e.imds); /* the sources make their own */
        re->e.imds = NULL;
        re->dir = test_tmpdir();
        snprintf(re->path, sizeof re->path, "%s/agent.conf", re->dir);
        snprintf(re->tmpl, sizeof re->tmpl, "%s/env.tmpl", re->dir);
        snprintf(re->out, sizeof re->out, "%s/.env", re->dir);
        if (tmpl)
                write_text(re->tmpl, tmpl);
        char conf[2048];
        snprintf(conf, sizeof conf,
                 "[imds]\nendpoint = %s\ntimeout_ms = 5000\n[env]\ntemplate = %s\noutput = %s\nowner = %u\n"
                 "group = %u\n%s",
                 re->e.fake.url, re->tmpl, re->out, (unsigned) getuid(), (unsigned) getgid(),
                 extra_conf ? extra_conf : "");
        write_text(re->path, conf);
        char *err = NULL;
        ck_assert_msg(config_load(re->path, &re->config, &err) == 0, "config: %s", err);
        ck_assert_int_eq(render_sources_new(&re->e.loop, re->e.http, re->config, NULL, NULL, &re->src), 0);
}

static void render_env_stop(RenderEnv *re) {
        render_sources_free(&re->src);
        env_stop(&re->e);
        config_free(re->config);
        rm_rf(re->dir);
        free(re->dir);
}

START_TEST(render_follows_the_async_contract) {
        RenderEnv re;
        render_env_start(&re, NULL, NULL, NULL);
        /* No template: the failure is known soon, but called back later. */
        RenderGot a = {0}, b = {0}, c = {0};
        ck_assert_int_eq(render_start(&re.src, re.config, RENDER_WRITE, on_render, &a, NULL), 0);
        ck_assert_int_eq(a.calls, 0);
        run_until(&re.e.loop, &a.calls);
        ck_assert_int_eq(a.o->exit_code, EX_CONFIG);
        render_outcome_free(a.o);

        write_text(re.tmpl, "ID=${imds:instance-id}\nR=${identity:region}\nN=${tag:Name}\n");
        /* Cancelled at once, and cancelled waiting on IMDS: never called. */
        RenderJob *jb = NULL, *jc = NULL;
        ck_assert_int_eq(render_start(&re.src, re.config, RENDER_WRITE, on_render, &b, &jb), 0);
        render_cancel(jb);
        render_cancel(NULL);
        ck_assert_int_eq(render_start(&re.src, re.config, RENDER_WRITE, on_render, &c, &jc), 0);
        for (int i = 0; i < 3; i++)
                uv_run(&re.e.loop, UV_RUN_ONCE);
        /* The documented order: the job first, then its sources. */
        render_cancel(jc);
        render_env_stop(&re);
        ck_assert_int_eq(b.calls + c.calls, 0);
        ck_assert_int_ne(access(re.out, F_OK), 0);
}
END_TEST

START_TEST(render_writes_on_the_work_queue) {
        RenderEnv re;
        render_env_start(&re, NULL, "ID=${imds:instance-id}\nN=${tag:Name}\n", NULL);
        RenderGot a = {0};
        ck_assert_int_eq(render_start(&re.src, re.config, RENDER_WRITE, on_render, &a, NULL), 0);
        run_until(&re.e.loop, &a.calls);
        ck_assert_msg(a.o->error == 0, "render: %s", a.o->message);
        ck_assert(a.o->changed);
        _cleanup_free_ char *cmd = strdup_printf("cat %s", re.out);
        _cleanup_free_ char *text = run_capture(cmd, NULL);
        ck_assert_str_eq(text, "ID='i-0123456789abcdef0'\nN='anb-web-1'\n");
        render_outcome_free(a.o);
        render_env_stop(&re);
}
END_TEST

START_TEST(render_past_its_deadline_fails_naming_what_it_waited_for) {
        RenderEnv re;
        render_env_start(&re, NULL, "ID=${imds:instance-id}\nN=${identity:region}\n", "render_timeout = 1\n");
        write_text(re.out, "OLD=1\n");
        fake_post(&re.e.fake, "fault", "{\"kind\":\"slow\",\"delay_ms\":4000,\"path\":\"meta-data/instance-id\"}");
        RenderGot a = {0};
        uint64_t t0 = uv_hrtime();
        ck_assert_int_eq(render_start(&re.src, re.config, RENDER_WRITE, on_render, &a, NULL), 0);
        run_until(&re.e.loop, &a.calls);
        /* Generous: the deadline (1 s) fired, not the 4 s answer. */
        ck_assert_uint_lt((uv_hrtime() - t0) / 1000000, 3500);
        ck_assert_int_eq(a.o->error, -ETIMEDOUT);
        ck_assert_int_eq(a.o->exit_code, EX_TEMPFAIL);
        ck_assert_msg(strstr(a.o->message, "waiting for imds:instance-id"), "message: %s", a.o->message);
        ck_assert_msg(!strstr(a.o->message, "identity:region"), "message: %s", a.o->message);
        ck_assert(strstr(a.o->message, "[env] render_timeout"));
        _cleanup_free_ char *cmd = strdup_printf("cat %s", re.out);
        _cleanup_free_ char *text = run_capture(cmd, NULL);
        ck_assert_str_eq(text, "OLD=1\n");
        render_outcome_free(a.o);
        render_env_stop(&re);
}
END_TEST

TEST_SUITE(suite_contract)
Suite *suite_contract(void) {
        Suite *s = suite_create("contract");
        TCase *tc = tcase_create("modules");
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, http_follows_the_async_contract);
        tcase_add_test(tc, imds_follows_the_async_contract);
        tcase_add_test(tc, aws_follows_the_async_contract);
        tcase_add_test(tc, credentials_follow_the_async_contract);
        tcase_add_test(tc, credentials_served_expired_are_a_failed_fetch_and_asked_again);
        tcase_add_test(tc, resolver_follows_the_async_contract);
        tcase_add_test(tc, render_follows_the_async_contract);
        tcase_add_test(tc, render_writes_on_the_work_queue);
        tcase_add_test(tc, render_past_its_deadline_fails_naming_what_it_waited_for);
        suite_add_tcase(s, tc);
        return s;
}
