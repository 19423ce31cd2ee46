/* The template grammar, table-driven: what renders, what fails and the
 * line:column each error names. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "basic/clock.h"

#include "env/template.h"
#include "testutil.h"

/* A lookup over a fixed table; "fail:" keys fail like a broken source. */
static const char *const values[][3] = {
        {"tag", "anb:env", "staging"},   {"tag", "Name", "web 1"},         {"identity", "region", "eu-west-1"},
        {"imds", "placement/region", "eu-west-1"}, {"env", "HOME", "/root"}, {"tag", "empty", ""},
        {"tag", "quote", "it's $5"},
};

static int lookup(void *ud, TemplateSource s, const char *key, const char **v, const char **reason) {
        (void) ud;
        if (strncmp(key, "fail:", 5) == 0) {
                *reason = "the source is down";
                return -ETIMEDOUT;
        }
        for (size_t i = 0; i < ELEMENTSOF(values); i++)
                if (streq(values[i][0], template_source_to_string(s)) && streq(values[i][1], key)) {
                        *v = values[i][2];
                        return 0;
                }
        return -ENOENT;
}

static const struct {
        const char *in;
        const char *out;
} good[] = {
        {"", ""},
        {"\n", "\n"},
        {"# comment ${not:parsed}\n", "# comment ${not:parsed}\n"},
        {"   # indented comment\n\n", "   # indented comment\n\n"},
        {"A=plain", "A='plain'\n"},
        {"A=\n", "A=''\n"},
        {"A=${tag:anb:env}\n", "A='staging'\n"},
        {"A=${tag:Name}\n", "A='web 1'\n"},
        {"A=pre-${identity:region}-post\n", "A='pre-eu-west-1-post'\n"},
        {"A=${imds:placement/region}\n", "A='eu-west-1'\n"},
        {"A=${env:HOME}\n", "A='/root'\n"},
        {"A=${tag:missing:-fallback}\n", "A='fallback'\n"},
        {"A=${tag:missing:-}\n", "A=''\n"},
        {"A=${tag:anb:env:-unused}\n", "A='staging'\n"},
        {"A=${tag:empty:-unused}\n", "A=''\n"},
        {"A=$$\n", "A='$'\n"},
        {"A=$$$$x\n", "A='$$x'\n"},
        {"A=$${tag:Name}\n", "A=\"\\${tag:Name}\"\n"},
        {"A=${tag:quote}\n", "A=\"it's \\$5\"\n"},
        {"A=x\r\nB=y\r\n", "A='x'\nB='y'\n"},
        {"A=a=b#c\n", "A='a=b#c'\n"},
        {"A=${tag:Name}${tag:Name}\n", "A='web 1web 1'\n"},
        {"_x1=${tag:missing:-a:-b}\n", "_x1='a:-b'\n"},
};

START_TEST(test_template_renders_table) {
        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                Template *t = NULL;
                char *err = NULL;
                int r = template_parse("t.tmpl", good[i].in, strlen(good[i].in), &t, &err);
                ck_assert_msg(r == 0, "case %zu: parse failed: %s", i, err);
                Rendered *out = NULL;
                r = template_render(t, lookup, NULL, ENV_FORMAT_SYSTEMD, &out, &err);
                ck_assert_msg(r == 0, "case %zu: render failed: %s", i, err);
                ck_assert_msg(streq(out->text, good[i].out), "case %zu: got [%s] want [%s]", i, out->text,
                              good[i].out);
                rendered_free(out);
                template_free(t);
        }
}
END_TEST

static const struct {
        const char *in;
        const char *error;
} bad_syntax[] = {
        {"A=${tag:Name\n", "t.tmpl:1:3: unterminated '${' (missing '}')"},
        {"# ok\nA=x ${tags:Name}\n", "t.tmpl:2:5: unknown source 'tags' (known: imds, identity, tag, secret, "
                                     "param, env)"},
        {"A=${Name}\n", "t.tmpl:1:3: '${Name}' needs SOURCE:KEY, e.g. ${tag:Name}"},
        {"A=${tag:}\n", "t.tmpl:1:3: empty key in '${tag:}'"},
        {"A=${tag::-x}\n", "t.tmpl:1:3: empty key in '${tag::-x}'"},
        {"A=cost $5\n", "t.tmpl:1:8: stray '$' (write $$ for a literal $, ${SOURCE:KEY} for a value)"},
        {"A=$\n", "t.tmpl:1:3: stray '$' (write $$ for a literal $, ${SOURCE:KEY} for a value)"},
        {"just text\n", "t.tmpl:1:1: expected NAME=VALUE, a comment or a blank line"},
        {"1A=x\n", "t.tmpl:1:1: '1A' is not a variable name (letters, digits and _, not starting with a digit)"},
        {"export A=x\n", "t.tmpl:1:1: 'export A' is not a variable name (letters, digits and _, not starting with "
                         "a digit)"},
        {"A=1\nB=2\nA=3\n", "t.tmpl:3:1: A is already set on line 1"},
};

START_TEST(test_template_syntax_errors_name_line_and_column) {
        for (size_t i = 0; i < ELEMENTSOF(bad_syntax); i++) {
                Template *t = NULL;
                char *err = NULL;
                int r = template_parse("t.tmpl", bad_syntax[i].in, strlen(bad_syntax[i].in), &t, &err);
                ck_assert_msg(r == -EINVAL, "case %zu: parse succeeded", i);
                ck_assert_msg(err && streq(err, bad_syntax[i].error), "case %zu: got [%s] want [%s]", i, err,
                              bad_syntax[i].error);
                ck_assert_ptr_null(t);
                free(err);
        }
}
END_TEST

START_TEST(test_template_missing_values_are_all_reported) {
        const char *in = "A=${tag:anb:env}\nB=${tag:nope}\n# c\nC=x${identity:nothing}y\nD=${imds:fail:x}\n";
        Template *t = NULL;
        char *err = NULL;
        ck_assert_int_eq(template_parse("/etc/anb-agent/env.tmpl", in, strlen(in), &t, &err), 0);
        Rendered *out = NULL;
        int r = template_render(t, lookup, NULL, ENV_FORMAT_SYSTEMD, &out, &err);
        ck_assert_int_eq(r, -ENOENT);
        ck_assert_ptr_null(out);
        ck_assert_str_eq(err, "/etc/anb-agent/env.tmpl:2:3: tag 'nope' has no value and no default\n"
                              "/etc/anb-agent/env.tmpl:4:4: identity 'nothing' has no value and no default\n"
                              "/etc/anb-agent/env.tmpl:5:3: imds 'fail:x': the source is down");
        free(err);
        template_free(t);
}
END_TEST

START_TEST(test_template_nul_byte_is_rejected) {
        Template *t = NULL;
        char *err = NULL;
        ck_assert_int_eq(template_parse("t", "A=x\0y\n", 6, &t, &err), -EINVAL);
        ck_assert_ptr_nonnull(strstr(err, "NUL"));
        free(err);
}
END_TEST

START_TEST(test_template_refs_listed_in_order) {
        const char *in = "A=${tag:x}${secret:db#password}\nB=${param:/anb/p:-d}\n";
        Template *t = NULL;
        char *err = NULL;
        ck_assert_int_eq(template_parse("t", in, strlen(in), &t, &err), 0);
        ck_assert_int_eq(template_n_refs(t), 3);
        ck_assert_int_eq(template_ref(t, 0)->source, SOURCE_TAG);
        ck_assert_str_eq(template_ref(t, 1)->key, "db#password");
        ck_assert_int_eq(template_ref(t, 1)->source, SOURCE_SECRET);
        ck_assert_str_eq(template_ref(t, 2)->key, "/anb/p");
        ck_assert_str_eq(template_ref(t, 2)->def, "d");
        ck_assert_int_eq(template_ref(t, 2)->line, 2);
        template_free(t);
}
END_TEST

static Rendered *render_str(const char *in) {
        Template *t = NULL;
        char *err = NULL;
        Rendered *out = NULL;
        ck_assert_int_eq(template_parse("t", in, strlen(in), &t, &err), 0);
        ck_assert_int_eq(template_render(t, lookup, NULL, ENV_FORMAT_SYSTEMD, &out, &err), 0);
        template_free(t);
        return out;
}

START_TEST(test_template_changed_names_lists_keys_not_values) {
        Rendered *a = render_str("A=1\nB=2\nC=3\n");
        Rendered *b = render_str("A=1\nB=changed\nD=4\n");
        char **l = rendered_changed_names(a, b);
        _cleanup_free_ char *j = strv_join(l, ",");
        ck_assert_str_eq(j, "B,C,D");
        strv_free(l);
        l = rendered_changed_names(a, a);
        ck_assert_int_eq(strv_length(l), 0);
        strv_free(l);
        l = rendered_changed_names(NULL, a);
        ck_assert_int_eq(strv_length(l), 3);
        strv_free(l);
        rendered_free(a);
        rendered_free(b);
}
END_TEST

/* Every reference gets its own value; counts the lookups. */
typedef struct Counting {
        unsigned calls;
        const char *suffix;
        char buf[64];
} Counting;

static int lookup_counting(void *ud, TemplateSource s, const char *key, const char **v, const char **reason) {
        Counting *c = ud;
        (void) s, (void) reason;
        c->calls++;
        snprintf(c->buf, sizeof c->buf, "%s%s", key, c->suffix);
        *v = c->buf;
        return 0;
}

/* Generous, for a loaded machine and ASan (~0.1 s at -O2, ~0.6 s under
 * ASan); under valgrind everything is ~50x slower.  The bound still
 * proves "not quadratic": the old code took 3 s for the parse alone and
 * more than 8 s for all of this. */
static double bound_ms(double ms) {
        const char *p = getenv("LD_PRELOAD");
        return p && strstr(p, "vgpreload") ? ms * 60 : ms;
}

START_TEST(test_template_40000_lines_parse_render_and_diff_in_linear_time) {
        enum { N = 40000 };
        Buf text = {0};
        for (unsigned i = 0; i < N; i++)
                ck_assert_int_eq(buf_printf(&text, "V%u=${tag:k%u}\n", i, i), 0);
        ck_assert_uint_lt(text.len, 1024 * 1024); /* under the template cap */

        uint64_t t0 = clock_usec();
        Template *t = NULL;
        char *err = NULL;
        ck_assert_int_eq(template_parse("big", text.data, text.len, &t, &err), 0);
        ck_assert_uint_eq(template_n_refs(t), N);
        Counting ca = {.suffix = "a"}, cb = {.suffix = "a"};
        Rendered *a = NULL, *b = NULL;
        ck_assert_int_eq(template_render(t, lookup_counting, &ca, ENV_FORMAT_SYSTEMD, &a, &err), 0);
        ck_assert_uint_eq(ca.calls, N); /* each reference looked up once */
        ck_assert_uint_eq(a->n_vars, N);
        ck_assert_int_eq(template_render(t, lookup_counting, &cb, ENV_FORMAT_SYSTEMD, &b, &err), 0);
        char **same = rendered_changed_names(a, b);
        ck_assert_uint_eq(strv_length(same), 0);
        strv_free(same);
        rendered_free(b);
        cb = (Counting) {.suffix = "b"};
        ck_assert_int_eq(template_render(t, lookup_counting, &cb, ENV_FORMAT_SYSTEMD, &b, &err), 0);
        char **all = rendered_changed_names(a, b);
        ck_assert_uint_eq(strv_length(all), N);
        ck_assert_str_eq(all[0], "V0");
        ck_assert_str_eq(all[1], "V1");
        ck_assert_str_eq(all[2], "V10");
        double ms = clock_ms_since(t0);
        fprintf(stderr, "template: %u lines (%zu bytes) parsed, rendered 3x and diffed 2x in %.0f ms\n", N,
                text.len, ms);
        ck_assert_msg(ms < bound_ms(3000), "took %.0f ms: not linear", ms);
        strv_free(all);
        rendered_free(a);
        rendered_free(b);
        template_free(t);
        buf_deinit(&text);
}
END_TEST

START_TEST(test_template_duplicate_name_names_the_first_line) {
        const char *in = "A=1\nB=2\n# c\nA=3\n";
        Template *t = NULL;
        char *err = NULL;
        ck_assert_int_eq(template_parse("t", in, strlen(in), &t, &err), -EINVAL);
        ck_assert_str_eq(err, "t:4:1: A is already set on line 1");
        free(err);
}
END_TEST

TEST_SUITE(suite_template)
Suite *suite_template(void) {
        Suite *s = suite_create("template");
        TCase *tc = tcase_create("grammar");
        tcase_add_test(tc, test_template_renders_table);
        tcase_add_test(tc, test_template_syntax_errors_name_line_and_column);
        tcase_add_test(tc, test_template_missing_values_are_all_reported);
        tcase_add_test(tc, test_template_nul_byte_is_rejected);
        tcase_add_test(tc, test_template_refs_listed_in_order);
        tcase_add_test(tc, test_template_changed_names_lists_keys_not_values);
        tcase_add_test(tc, test_template_duplicate_name_names_the_first_line);
        suite_add_tcase(s, tc);
        tc = tcase_create("scale");
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_template_40000_lines_parse_render_and_diff_in_linear_time);
        suite_add_tcase(s, tc);
        return s;
}
