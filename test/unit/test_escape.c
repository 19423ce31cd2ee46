/* basic/escape: outside text made safe for line-oriented sinks. */
#include <check.h>
#include <string.h>

#include "basic/escape.h"
#include "testutil.h"

static const struct {
        const char *in;
        const char *out;
} escape_cases[] = {
        {"", ""},
        {"plain web-1", "plain web-1"},
        {"web\nMAINPID=1\nREADY=1", "web\\nMAINPID=1\\nREADY=1"},
        {"cr\rlf\r\n", "cr\\rlf\\r\\n"},
        {"tab\there", "tab\\there"},
        {"back\\slash", "back\\\\slash"},
        {"\x1b[31mred", "\\x1b[31mred"},
        {"nul-less \x01\x1f\x7f", "nul-less \\x01\\x1f\\x7f"},
        {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"},
        {"c1 \xc2\x9b" "2J", "c1 \\xc2\\x9b2J"},
        {"nbsp \xc2\xa0", "nbsp \xc2\xa0"},
        {"bad \xff\xfe", "bad \\xff\\xfe"},
        {"overlong \xc0\xaf", "overlong \\xc0\\xaf"},
        {"surrogate \xed\xa0\x80", "surrogate \\xed\\xa0\\x80"},
        {"cut \xe2\x82", "cut \\xe2\\x82"},
        {"too big \xf4\x90\x80\x80", "too big \\xf4\\x90\\x80\\x80"},
};

START_TEST(test_escape_table) {
        for (size_t i = 0; i < ELEMENTSOF(escape_cases); i++) {
                char *got = text_escape(escape_cases[i].in);
                ck_assert_ptr_nonnull(got);
                ck_assert_msg(streq(got, escape_cases[i].out), "case %zu: got [%s] want [%s]", i, got,
                              escape_cases[i].out);
                free(got);
                char buf[256];
                size_t n = text_escape_to(buf, sizeof buf, escape_cases[i].in, strlen(escape_cases[i].in));
                ck_assert_str_eq(buf, escape_cases[i].out);
                ck_assert_uint_eq(n, strlen(escape_cases[i].out));
        }
}
END_TEST

START_TEST(test_escape_output_has_no_control_bytes) {
        /* Every byte value, alone and after a lead byte: the result holds
         * nothing below 0x20, no DEL, and is valid UTF-8. */
        for (unsigned a = 1; a < 256; a++)
                for (unsigned b = 0; b < 256; b += (a >= 0xc0 ? 1 : 255)) {
                        char in[3] = {(char) a, (char) b, 0};
                        char *got = text_escape(in);
                        for (const char *p = got; *p; p++)
                                ck_assert_msg((unsigned char) *p >= 0x20 && *p != 0x7f, "%02x %02x", a, b);
                        ck_assert(utf8_is_valid(got, strlen(got)));
                        free(got);
                }
}
END_TEST

START_TEST(test_escape_to_cuts_only_between_escapes) {
        char buf[8];
        ck_assert_uint_eq(text_escape_to(buf, sizeof buf, "ab\n\n\n", 5), 6);
        ck_assert_str_eq(buf, "ab\\n\\n");
        ck_assert_uint_eq(text_escape_to(buf, sizeof buf, "\x01\x02", 2), 4);
        ck_assert_str_eq(buf, "\\x01");
        ck_assert_uint_eq(text_escape_to(buf, 1, "abc", 3), 0);
        ck_assert_str_eq(buf, "");
        ck_assert_uint_eq(text_escape_to(buf, 0, "abc", 3), 0);
}
END_TEST

TEST_SUITE(suite_escape)
Suite *suite_escape(void) {
        Suite *s = suite_create("escape");
        TCase *tc = tcase_create("escape");
        tcase_add_test(tc, test_escape_table);
        tcase_add_test(tc, test_escape_output_has_no_control_bytes);
        tcase_add_test(tc, test_escape_to_cuts_only_between_escapes);
        suite_add_tcase(s, tc);
        return s;
}
