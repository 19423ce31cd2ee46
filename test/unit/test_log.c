/* Logging: under journald (JOURNAL_STREAM names stderr) every line carries
 * its <N> priority; on a terminal it reads "anb-agent: warning: ...". */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "envfile.h"
#include "log.h"
#include "testutil.h"

static char *log_to_file(bool journal) {
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
        log_warning("unit %s failed", "x.service");
        log_notice("bootstrap finished");
        log_debug("not shown at the default level");
        fflush(stderr);
        dup2(saved, STDERR_FILENO);
        close(saved);
        close(fd);
        char *text;
        ck_assert_int_eq(read_file_full(path, 4096, &text, NULL), 0);
        rm_rf(dir);
        return text;
}

START_TEST(test_log_priorities_for_journald_and_terminal) {
        char *j = log_to_file(true);
        ck_assert_str_eq(j, "<4>unit x.service failed\n<5>bootstrap finished\n");
        free(j);
        char *t = log_to_file(false);
        ck_assert_str_eq(t, "anb-agent: warning: unit x.service failed\nanb-agent: bootstrap finished\n");
        free(t);
}
END_TEST

Suite *suite_log(void) {
        Suite *s = suite_create("log");
        TCase *tc = tcase_create("sink");
        tcase_add_test(tc, test_log_priorities_for_journald_and_terminal);
        suite_add_tcase(s, tc);
        return s;
}
