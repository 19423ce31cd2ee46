/* The IMDSv2 client and the resolver against test/fakes/imds.py on
 * loopback: token handling, retries, faults, and request counts. */
#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include "basic/util.h"
#include "loop/http.h"
#include "aws/imds.h"
#include "render/resolve.h"
#include "testutil.h"

typedef ImdsEnv Env;

typedef struct Got {
        int error;
        long status;
        char body[256];
        char message[512];
        int calls;
} Got;

static void env_start(Env *e, const char *state, long timeout_ms, unsigned attempts, unsigned ttl) {
        imds_env_start(e, state,
                       (ImdsOptions) {
                               .token_ttl = ttl ? ttl : 21600,
                               .connect_timeout_ms = 500,
                               .timeout_ms = timeout_ms ? timeout_ms : 2000,
                               .attempts = attempts ? attempts : 3,
                               .backoff_ms = 20,
                       });
}

static void env_stop(Env *e) {
        imds_env_stop(e);
}

static void on_got(const ImdsResult *r, void *ud) {
        Got *g = ud;
        g->calls++;
        g->error = r->error;
        g->status = r->status;
        if (!r->error)
                snprintf(g->body, sizeof g->body, "%.*s", (int) r->body_len, r->body);
        if (r->message)
                snprintf(g->message, sizeof g->message, "%s", r->message);
}

static Got get(Env *e, const char *path) {
        Got g = {0};
        ck_assert_int_eq(imds_get(e->imds, path, on_got, &g, NULL), 0);
        while (g.calls == 0)
                uv_run(&e->loop, UV_RUN_ONCE);
        ck_assert_int_eq(g.calls, 1);
        return g;
}

START_TEST(test_imds_get_uses_one_token_for_many_requests) {
        Env e;
        env_start(&e, NULL, 0, 0, 0);
        Got a = get(&e, "meta-data/placement/region");
        ck_assert_int_eq(a.error, 0);
        ck_assert_str_eq(a.body, "eu-west-1");
        Got b = get(&e, "meta-data/instance-id");
        ck_assert_str_eq(b.body, "i-0123456789abcdef0");
        ck_assert_int_eq(fake_count(&e.fake, "token_put"), 1);
        ck_assert_int_eq(fake_count(&e.fake, "get"), 2);
        ck_assert_int_eq(fake_count(&e.fake, "unauthorized"), 0);
        env_stop(&e);
}
END_TEST

START_TEST(test_imds_expired_token_is_replaced_and_request_retried_once) {
        Env e;
        env_start(&e, NULL, 0, 0, 0);
        ck_assert_int_eq(get(&e, "meta-data/instance-id").error, 0);
        fake_post(&e.fake, "expire-tokens", NULL);
        Got g = get(&e, "meta-data/instance-id");
        ck_assert_int_eq(g.error, 0);
        ck_assert_int_eq(fake_count(&e.fake, "token_put"), 2);
        ck_assert_int_eq(fake_count(&e.fake, "unauthorized"), 1);
        env_stop(&e);
}
END_TEST

START_TEST(test_imds_token_renewed_before_ttl_runs_out) {
        Env e;
        env_start(&e, NULL, 0, 0, 1);
        ck_assert_int_eq(get(&e, "meta-data/instance-id").error, 0);
        usleep(1100 * 1000);
        uv_update_time(&e.loop);
        ck_assert_int_eq(get(&e, "meta-data/instance-id").error, 0);
        ck_assert_int_eq(fake_count(&e.fake, "token_put"), 2);
        ck_assert_int_eq(fake_count(&e.fake, "unauthorized"), 0);
        env_stop(&e);
}
END_TEST

START_TEST(test_imds_5xx_and_429_are_retried) {
        Env e;
        env_start(&e, NULL, 0, 3, 0);
        fake_post(&e.fake, "fault", "{\"kind\":\"status\",\"status\":500,\"path\":\"meta-data/\"}");
        fake_post(&e.fake, "fault", "{\"kind\":\"status\",\"status\":429,\"path\":\"meta-data/\"}");
        Got g = get(&e, "meta-data/instance-id");
        ck_assert_int_eq(g.error, 0);
        ck_assert_int_eq(fake_count(&e.fake, "get"), 3);
        ck_assert_uint_eq(imds_stats(e.imds)->retries, 2);
        env_stop(&e);
}
END_TEST

START_TEST(test_imds_retries_are_bounded) {
        Env e;
        env_start(&e, NULL, 0, 3, 0);
        fake_post(&e.fake, "fault", "{\"kind\":\"status\",\"status\":503,\"count\":10,\"path\":\"meta-data/\"}");
        Got g = get(&e, "meta-data/instance-id");
        ck_assert_int_eq(g.error, -EIO);
        ck_assert_int_eq(g.status, 503);
        ck_assert_int_eq(fake_count(&e.fake, "get"), 3);
        ck_assert_ptr_nonnull(strstr(g.message, "after 3 attempt(s): HTTP 503"));
        env_stop(&e);
}
END_TEST

START_TEST(test_imds_other_4xx_not_retried) {
        Env e;
        env_start(&e, NULL, 0, 3, 0);
        fake_post(&e.fake, "fault", "{\"kind\":\"status\",\"status\":403,\"path\":\"meta-data/\"}");
        Got g = get(&e, "meta-data/instance-id");
        ck_assert_int_eq(g.error, -EIO);
        ck_assert_int_eq(fake_count(&e.fake, "get"), 1);
        Got n = get(&e, "meta-data/no-such-thing");
        ck_assert_int_eq(n.error, -ENOENT);
        ck_assert_int_eq(fake_count(&e.fake, "get"), 2);
        env_stop(&e);
}
END_TEST

START_TEST(test_imds_slow_answer_times_out_then_retry_succeeds) {
        Env e;
        env_start(&e, NULL, 300, 2, 0);
        fake_post(&e.fake, "fault", "{\"kind\":\"slow\",\"delay_ms\":1500,\"path\":\"meta-data/\"}");
        uint64_t t0 = uv_hrtime();
        Got g = get(&e, "meta-data/instance-id");
        ck_assert_int_eq(g.error, 0);
        ck_assert_uint_eq(imds_stats(e.imds)->retries, 1);
        /* Bounded by the 300 ms timeout, not the 1.5 s delay. */
        ck_assert_uint_lt((uv_hrtime() - t0) / 1000000, 1400);
        env_stop(&e);
}
END_TEST

START_TEST(test_imds_dropped_connection_is_retried) {
        Env e;
        env_start(&e, NULL, 0, 3, 0);
        /* Two drops: curl itself retries once on a reused connection that
         * turns out dead; the second drop reaches the client's retry. */
        fake_post(&e.fake, "fault", "{\"kind\":\"drop\",\"count\":2,\"path\":\"meta-data/\"}");
        Got g = get(&e, "meta-data/instance-id");
        ck_assert_int_eq(g.error, 0);
        ck_assert_uint_ge(imds_stats(e.imds)->retries, 1);
        env_stop(&e);
}
END_TEST

/* IMDS failing the token PUT (5xx after the retries) is a temporary
 * failure like any other request's, not a refusal: callers retry it. */
START_TEST(test_imds_token_5xx_is_a_temporary_failure) {
        Env e;
        env_start(&e, NULL, 0, 2, 0);
        fake_post(&e.fake, "fault", "{\"kind\":\"status\",\"status\":500,\"count\":100,\"path\":\"api/token\"}");
        Got g = get(&e, "meta-data/instance-id");
        ck_assert_int_eq(g.error, -EIO);
        ck_assert_ptr_nonnull(strstr(g.message, "IMDSv2 token request"));
        ck_assert_int_eq(fake_count(&e.fake, "get"), 0);
        env_stop(&e);
}
END_TEST

START_TEST(test_imds_token_refused_fails_without_v1_fallback) {
        Env e;
        env_start(&e, NULL, 0, 3, 0);
        fake_post(&e.fake, "fault", "{\"kind\":\"status\",\"status\":403,\"path\":\"api/token\"}");
        Got g = get(&e, "meta-data/instance-id");
        ck_assert_int_eq(g.error, -EACCES);
        ck_assert_ptr_nonnull(strstr(g.message, "IMDSv2 token request"));
        ck_assert_ptr_nonnull(strstr(g.message, "X-Forwarded-For"));
        ck_assert_ptr_nonnull(strstr(g.message, "IMDSv1 is never used"));
        /* No tokenless GET was ever sent. */
        ck_assert_int_eq(fake_count(&e.fake, "get"), 0);
        env_stop(&e);
}
END_TEST

START_TEST(test_imds_unreachable_endpoint_fails_with_hint) {
        uv_loop_t loop;
        HttpLoop *http;
        ImdsClient *imds;
        uv_loop_init(&loop);
        ck_assert_int_eq(http_loop_new(&loop, &http), 0);
        /* Port 9 on loopback: nothing listens, connections are refused. */
        ImdsOptions o = {.endpoint = "http://127.0.0.1:9", .attempts = 2, .backoff_ms = 10};
        ck_assert_int_eq(imds_client_new(&loop, http, &o, &imds), 0);
        Got g = {0};
        ck_assert_int_eq(imds_get(imds, "meta-data/instance-id", on_got, &g, NULL), 0);
        while (!g.calls)
                uv_run(&loop, UV_RUN_ONCE);
        ck_assert_int_eq(g.error, -ECONNREFUSED);
        ck_assert_ptr_nonnull(strstr(g.message, "hop limit"));
        ck_assert_uint_eq(imds_stats(imds)->token_requests, 2);
        imds_client_free(imds);
        http_loop_free(http);
        loop_finish(&loop);
}
END_TEST

START_TEST(test_imds_redirects_not_followed_and_proxy_env_ignored) {
        /* A proxy from the environment would swallow every request. */
        setenv("http_proxy", "http://127.0.0.1:9", 1);
        setenv("HTTP_PROXY", "http://127.0.0.1:9", 1);
        setenv("ALL_PROXY", "http://127.0.0.1:9", 1);
        Env e;
        env_start(&e, NULL, 0, 3, 0);
        ck_assert_int_eq(get(&e, "meta-data/instance-id").error, 0);
        fake_post(&e.fake, "fault", "{\"kind\":\"redirect\",\"status\":301,\"path\":\"meta-data/\"}");
        Got g = get(&e, "meta-data/instance-id");
        ck_assert_int_eq(g.error, -EIO);
        ck_assert_int_eq(g.status, 301);
        ck_assert_int_eq(fake_count(&e.fake, "redirected"), 0);
        ck_assert_int_eq(fake_count(&e.fake, "get"), 2);
        env_stop(&e);
}
END_TEST

typedef struct Creds {
        int error;
        char message[512];
        AwsCredentials *c;
        bool done;
} Creds;

static void on_creds(int error, const char *message, AwsCredentials *c, void *ud) {
        Creds *x = ud;
        x->error = error;
        snprintf(x->message, sizeof x->message, "%s", message ? message : "");
        x->c = c;
        x->done = true;
}

START_TEST(test_imds_role_credentials_fetched_and_parsed) {
        Env e;
        env_start(&e, NULL, 0, 0, 0);
        Creds x = {0};
        ck_assert_int_eq(imds_fetch_credentials(e.imds, on_creds, &x, NULL), 0);
        while (!x.done)
                uv_run(&e.loop, UV_RUN_ONCE);
        ck_assert_int_eq(x.error, 0);
        ck_assert_str_eq(x.c->role, "anb-instance-role");
        ck_assert_int_eq(strncmp(x.c->access_key_id, "ASIA", 4), 0);
        ck_assert_int_gt(x.c->expiration, time(NULL) + 5 * 3600);
        aws_credentials_free(x.c);
        env_stop(&e);

        env_start(&e, "{\"credentials_code\": \"Failed\"}", 0, 0, 0);
        x = (Creds) {0};
        ck_assert_int_eq(imds_fetch_credentials(e.imds, on_creds, &x, NULL), 0);
        while (!x.done)
                uv_run(&e.loop, UV_RUN_ONCE);
        ck_assert_int_eq(x.error, -EACCES);
        ck_assert_str_eq(x.message, "IMDS reports Code=Failed for role anb-instance-role's credentials");
        env_stop(&e);
}
END_TEST

typedef struct Resolved {
        bool done;
} Resolved;

static void on_resolved(Resolver *r, void *ud) {
        (void) r;
        ((Resolved *) ud)->done = true;
}

static Resolver *resolve(Env *e, const char *tmpl) {
        Template *t = NULL;
        char *err = NULL;
        Resolver *r = NULL;
        ck_assert_int_eq(template_parse("t", tmpl, strlen(tmpl), &t, &err), 0);
        ck_assert_int_eq(resolver_new(&e->loop, e->imds, NULL, NULL, NULL, &r), 0);
        ck_assert_int_eq(resolver_want_template(r, t), 0);
        Resolved d = {0};
        ck_assert_int_eq(resolver_start(r, on_resolved, &d), 0);
        while (!d.done)
                uv_run(&e->loop, UV_RUN_ONCE);
        template_free(t);
        return r;
}

START_TEST(test_resolver_fetches_each_key_once_with_one_token) {
        Env e;
        env_start(&e, NULL, 0, 0, 0);
        Resolver *r = resolve(&e, "A=${identity:region}\nB=${identity:accountId}\nC=${tag:anb:env}\n"
                                  "D=${tag:anb:env}-${tag:Name}\nE=${imds:placement/availability-zone}\n"
                                  "F=${imds:placement/availability-zone}\nG=${tag:absent:-x}\n");
        const char *v, *why;
        ck_assert_int_eq(resolver_lookup(r, SOURCE_IDENTITY, "accountId", &v, &why), 0);
        ck_assert_str_eq(v, "123456789012");
        ck_assert_int_eq(resolver_lookup(r, SOURCE_TAG, "Name", &v, &why), 0);
        ck_assert_str_eq(v, "anb-web-1");
        ck_assert_int_eq(resolver_lookup(r, SOURCE_TAG, "absent", &v, &why), -ENOENT);
        /* token, identity document, tag list, 2 tags, 1 meta-data path. */
        ck_assert_int_eq(fake_count(&e.fake, "token_put"), 1);
        ck_assert_int_eq(fake_count(&e.fake, "get"), 5);
        resolver_free(r);
        env_stop(&e);
}
END_TEST

START_TEST(test_resolver_runs_at_most_8_requests_at_once) {
        Env e;
        env_start(&e, NULL, 0, 0, 0);
        Buf t = {0};
        for (int i = 0; i < 20; i++)
                buf_printf(&t, "K%d=${imds:k%d:-x}\n", i, i);
        buf_puts(&t, "A=${identity:region}\nT=${tag:Name}\n");
        Resolver *r = resolve(&e, t.data);
        const char *v, *why;
        ck_assert_int_eq(resolver_lookup(r, SOURCE_TAG, "Name", &v, &why), 0);
        ck_assert_int_eq(resolver_lookup(r, SOURCE_IDENTITY, "region", &v, &why), 0);
        /* 20 paths, the identity document, the tag list, one tag. */
        ck_assert_int_eq(fake_count(&e.fake, "get"), 23);
        ck_assert_uint_eq(resolver_peak_in_flight(r), 8);
        ck_assert_int_eq(fake_count(&e.fake, "token_put"), 1);
        buf_deinit(&t);
        resolver_free(r);
        env_stop(&e);
}
END_TEST

START_TEST(test_resolver_tags_disabled_says_so) {
        Env e;
        env_start(&e, "{\"tags_enabled\": false}", 0, 0, 0);
        Resolver *r = resolve(&e, "A=${tag:anb:env:-dev}\n");
        const char *v, *why = NULL;
        ck_assert_int_eq(resolver_lookup(r, SOURCE_TAG, "anb:env", &v, &why), -EOPNOTSUPP);
        ck_assert_ptr_nonnull(strstr(why, "InstanceMetadataTags=enabled"));
        resolver_free(r);
        env_stop(&e);
}
END_TEST

START_TEST(test_resolver_without_aws_secret_and_param_fail_clearly) {
        Env e;
        env_start(&e, NULL, 0, 0, 0);
        Resolver *r = resolve(&e, "A=${secret:db#password}\nB=${param:/anb/x}\nC=${imds:../../etc}\n");
        const char *v, *why = NULL;
        ck_assert_int_eq(resolver_lookup(r, SOURCE_SECRET, "db#password", &v, &why), -EOPNOTSUPP);
        ck_assert_ptr_nonnull(strstr(why, "AWS sources are not configured"));
        ck_assert_int_eq(resolver_lookup(r, SOURCE_PARAM, "/anb/x", &v, &why), -EOPNOTSUPP);
        ck_assert_int_eq(resolver_lookup(r, SOURCE_IMDS, "../../etc", &v, &why), -EINVAL);
        ck_assert_int_eq(fake_count(&e.fake, "get"), 0);
        resolver_free(r);
        env_stop(&e);
}
END_TEST

TEST_SUITE(suite_imds)
Suite *suite_imds(void) {
        Suite *s = suite_create("imds");
        TCase *tc = tcase_create("client");
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_imds_get_uses_one_token_for_many_requests);
        tcase_add_test(tc, test_imds_expired_token_is_replaced_and_request_retried_once);
        tcase_add_test(tc, test_imds_token_renewed_before_ttl_runs_out);
        tcase_add_test(tc, test_imds_5xx_and_429_are_retried);
        tcase_add_test(tc, test_imds_retries_are_bounded);
        tcase_add_test(tc, test_imds_other_4xx_not_retried);
        tcase_add_test(tc, test_imds_slow_answer_times_out_then_retry_succeeds);
        tcase_add_test(tc, test_imds_dropped_connection_is_retried);
        tcase_add_test(tc, test_imds_token_5xx_is_a_temporary_failure);
        tcase_add_test(tc, test_imds_token_refused_fails_without_v1_fallback);
        tcase_add_test(tc, test_imds_unreachable_endpoint_fails_with_hint);
        tcase_add_test(tc, test_imds_role_credentials_fetched_and_parsed);
        tcase_add_test(tc, test_imds_redirects_not_followed_and_proxy_env_ignored);
        suite_add_tcase(s, tc);
        tc = tcase_create("resolver");
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_resolver_fetches_each_key_once_with_one_token);
        tcase_add_test(tc, test_resolver_runs_at_most_8_requests_at_once);
        tcase_add_test(tc, test_resolver_tags_disabled_says_so);
        tcase_add_test(tc, test_resolver_without_aws_secret_and_param_fail_clearly);
        suite_add_tcase(s, tc);
        return s;
}
