/* Logging: under journald (JOURNAL_STREAM names stderr) every line carries
 * its <N> priority; on a terminal it reads "anb-agent: warning: ...". */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "env/envfile.h"
#include "basic/log.h"
#include "testutil.h"

static void log_sample(void) {
        log_warning("unit %s failed", "x.service");
        log_notice("bootstrap finished");
        log_debug("not shown at the default level");
}

/* Runs emit with stderr sent to a file; returns what was written. */
static char *log_to_file(bool journal, void (*emit)(void)) {
        _cleanup_free_ char *dir = test_tmpdir();
        char path[300];
        snprintf(path, sizeof path, "%s/err", dir);
        int fd = open(path, O_CREAT | O_RDWR | O_TRUNC | O_CLOEXEC, 0600);
        ck_assert_int_ge(fd, 0);
        int saved = dup(STDERR_FILENO);
        dup2(fd, STDERR_FILENO);
        struct stat st;
        fstat(fd, &st);
        char stream[64];
        snprintf(stream, sizeof stream, "%lu:%lu", (unsigned long) st.st_dev, (unsigned long) st.st_ino);
        if (journal)
                setenv("JOURNAL_STREAM", stream, 1);
        else
                unsetenv("JOURNAL_STREAM");
        log_setup("anb-agent");
        emit();
        fflush(stderr);
        dup2(saved, STDERR_FILENO);
        close(saved);
        close(fd);
        char *text;
        ck_assert_int_eq(read_file_full(path, 65536, &text, NULL), 0);
        rm_rf(dir);
        return text;
}

START_TEST(test_log_priorities_for_journald_and_terminal) {
        char *j = log_to_file(true, log_sample);
        ck_assert_str_eq(j, "<4>unit x.service failed\n<5>bootstrap finished\n");
        free(j);
        char *t = log_to_file(false, log_sample);
        ck_assert_str_eq(t, "anb-agent: warning: unit x.service failed\nanb-agent: bootstrap finished\n");
        free(t);
}
END_TEST

/* A tag value as an attacker would set it: newlines with journal priority
 * prefixes and sd_notify assignments, a CR, an ESC sequence, DEL, a C1
 * CSI, invalid UTF-8 -- and valid UTF-8, which stays. */
static const char poisoned[] = "web\nMAINPID=1\n<0>READY=1\rSTATUS=x\x1b[2J\x7f\xff\xc2\x9b caf\xc3\xa9\t\\";
static const char poisoned_escaped[] =
        "web\\nMAINPID=1\\n<0>READY=1\\rSTATUS=x\\x1b[2J\\x7f\\xff\\xc2\\x9b caf\xc3\xa9\\t\\\\";

static void log_poisoned(void) {
        log_warning("role tag is '%s'", poisoned);
}

START_TEST(test_log_escapes_outside_text_so_no_line_is_forged) {
        char *j = log_to_file(true, log_poisoned);
        char want[512];
        snprintf(want, sizeof want, "<4>role tag is '%s'\n", poisoned_escaped);
        ck_assert_str_eq(j, want);
        free(j);
        char *t = log_to_file(false, log_poisoned);
        snprintf(want, sizeof want, "anb-agent: warning: role tag is '%s'\n", poisoned_escaped);
        ck_assert_str_eq(t, want);
        free(t);
}
END_TEST

static void log_multi(void) {
        log_lines(LOG_ERR, "first\nsecond\r<0>forged\n\nthird \x1b[31m");
}

START_TEST(test_log_lines_logs_each_line_escaped) {
        char *j = log_to_file(true, log_multi);
        ck_assert_str_eq(j, "<3>first\n<3>second\\r<0>forged\n<3>third \\x1b[31m\n");
        free(j);
}
END_TEST

static void log_long(void) {
        char big[3000];
        memset(big, '\n', sizeof big - 1);
        big[sizeof big - 1] = 0;
        log_error("%s", big);
}

START_TEST(test_log_long_message_is_one_line_cut_between_escapes) {
        char *j = log_to_file(true, log_long);
        ck_assert_ptr_eq(strchr(j, '\n'), j + strlen(j) - 1);
        size_t n = strlen(j) - strlen("<3>") - 1;
        ck_assert_uint_eq(n % 2, 0); /* whole "\n" escapes only */
        ck_assert_uint_ge(n, 2000);
        free(j);
}
END_TEST

TEST_SUITE(suite_log)
Suite *suite_log(void) {
        Suite *s = suite_create("log");
        TCase *tc = tcase_create("sink");
        tcase_add_test(tc, test_log_priorities_for_journald_and_terminal);
        tcase_add_test(tc, test_log_escapes_outside_text_so_no_line_is_forged);
        tcase_add_test(tc, test_log_lines_logs_each_line_escaped);
        tcase_add_test(tc, test_log_long_message_is_one_line_cut_between_escapes);
        suite_add_tcase(s, tc);
        return s;
}
