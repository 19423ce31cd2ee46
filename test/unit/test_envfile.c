/* Quoting (read back by python-dotenv and sh here; by systemd in the
 * integration tests) and the atomic replace of the .env. */
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "env/envfile.h"
#include "testutil.h"

static const struct {
        const char *value;
        const char *quoted;
        bool portable;
} quote_cases[] = {
        {"", "''", true},
        {"plain", "'plain'", true},
        {"hello world", "'hello world'", true},
        {"$HOME and ${X}", "\"\\$HOME and \\${X}\"", false},
        {"`cmd`", "'`cmd`'", true},
        {"#not a comment", "'#not a comment'", true},
        {"a=b", "'a=b'", true},
        {"multi\nline", "'multi\nline'", true},
        {"C:\\dir", "'C:\\dir'", true},
        {"say \"hi\"", "'say \"hi\"'", true},
        {"it's", "\"it's\"", true},
        {"two\\\\slashes", "\"two\\\\\\\\slashes\"", true},
        {"ends\\", "\"ends\\\\\"", false},
        {"it's \"q\"\nx", "\"it's \\\"q\\\"\nx\"", true},
        {"it's $5", "\"it's \\$5\"", false},
        {"it's `x`", "\"it's \\`x\\`\"", false},
        {"cr\rx", "\"cr\rx\"", false},
        {"${HOME}", "\"\\${HOME}\"", false},
        {"${HOME", "'${HOME'", true},
};

START_TEST(test_envfile_quote_picks_common_form) {
        for (size_t i = 0; i < ELEMENTSOF(quote_cases); i++) {
                Buf b = {0};
                bool portable;
                ck_assert_int_eq(envfile_quote(&b, quote_cases[i].value, ENV_FORMAT_SYSTEMD, &portable), 0);
                ck_assert_msg(streq(b.data, quote_cases[i].quoted), "case %zu: got [%s] want [%s]", i, b.data,
                              quote_cases[i].quoted);
                ck_assert_msg(portable == quote_cases[i].portable, "case %zu: portable=%d", i, portable);
                buf_deinit(&b);
        }
}
END_TEST

/* The dotenv format's own forms, where no quoting serves all three. */
static const struct {
        const char *value;
        const char *quoted; /* NULL: refused */
} dotenv_cases[] = {
        {"it's $5", "\"it's $5\""},
        {"it's `x`", "\"it's `x`\""},
        {"${HOME}", "\"${HOME}\""},
        {"$'\nLD_PRELOAD=/x.so\n#", "\"$'\nLD_PRELOAD=/x.so\n#\""},
        {"it's \\ \"q\" $", "\"it's \\\\ \\\"q\\\" $\""},
        {"cr\rx $", "\"cr\\rx $\""},
        {"ends\\", NULL},
        {"it's $\\", NULL},
};

START_TEST(test_envfile_dotenv_format_uses_double_quotes_and_refuses_a_trailing_backslash) {
        for (size_t i = 0; i < ELEMENTSOF(dotenv_cases); i++) {
                Buf b = {0};
                bool portable = true;
                int r = envfile_quote(&b, dotenv_cases[i].value, ENV_FORMAT_DOTENV, &portable);
                if (!dotenv_cases[i].quoted)
                        ck_assert_msg(r == -EDOM, "case %zu: %d", i, r);
                else {
                        ck_assert_int_eq(r, 0);
                        ck_assert_msg(streq(b.data, dotenv_cases[i].quoted), "case %zu: got [%s] want [%s]", i,
                                      b.data, dotenv_cases[i].quoted);
                }
                ck_assert(!portable);
                buf_deinit(&b);
        }
}
END_TEST

START_TEST(test_envfile_quote_rejects_invalid_utf8) {
        Buf b = {0};
        bool portable;
        ck_assert_int_eq(envfile_quote(&b, "bad\xff", ENV_FORMAT_SYSTEMD, &portable), -EILSEQ);
        ck_assert_int_eq(envfile_quote(&b, "\xc3\x28", ENV_FORMAT_SYSTEMD, &portable), -EILSEQ);
        ck_assert_int_eq(envfile_quote(&b, "caf\xc3\xa9", ENV_FORMAT_SYSTEMD, &portable), 0);
        buf_deinit(&b);
}
END_TEST

/* Values that exercise every special character the readers care about. */
static const char *const readback_values[] = {
        "plain", "", " lead and trail ", "hello world", "it's", "say \"hi\"", "$HOME", "${HOME}", "${HOME", "$$", "cr\rlf",
        "a\\b", "two\\\\slashes", "ends\\", "\\'", "#hash", "a=b=c", "multi\nline\n", "tab\there",
        "`cmd`", "caf\xc3\xa9 \xe2\x82\xac", "it's $5", "it's `x`", "it's \\ \"q\" $ ` done", "'",
        "\"", "\\", "x\\$y", "x'\nINJECTED=1\n'", "y\"\nINJECTED=2\n\"", "z\\\nINJECTED=3",
        "$'\nINJECTED=4\n#", "it's\\", "it's \\\\ $x",
};

static char *read_back(const char *reader, const char *file) {
        char cmd[1024];
        if (streq(reader, "sh"))
                snprintf(cmd, sizeof cmd,
                         "env -i /bin/sh -c 'set -a; . \"%s\"; test -z \"${INJECTED+x}\" || exit 9; "
                         "test \"$W\" = w || exit 8; printf %%s \"$V\"'",
                         file);
        else
                snprintf(cmd, sizeof cmd,
                         "/usr/bin/python3 -c 'import dotenv,sys; "
                         "d=dotenv.dotenv_values(sys.argv[1]); assert list(d)==[\"V\", \"W\"], list(d); "
                         "assert d[\"W\"]==\"w\", d[\"W\"]; "
                         "sys.stdout.buffer.write(d[\"V\"].encode())' \"%s\"",
                         file);
        int status;
        char *out = run_capture(cmd, &status);
        ck_assert_msg(status == 0, "%s failed to read %s", reader, file);
        return out;
}

static void check_readers(EnvFormat format) {
        _cleanup_free_ char *dir = test_tmpdir();
        char file[300];
        snprintf(file, sizeof file, "%s/.env", dir);
        for (size_t i = 0; i < ELEMENTSOF(readback_values); i++) {
                const char *v = readback_values[i];
                Buf b = {0};
                bool portable;
                buf_puts(&b, "V=");
                int r = envfile_quote(&b, v, format, &portable);
                size_t n = strlen(v);
                if (format == ENV_FORMAT_DOTENV && n > 0 && v[n - 1] == '\\') {
                        /* No form python-dotenv reads: refused. */
                        ck_assert_int_eq(r, -EDOM);
                        buf_deinit(&b);
                        continue;
                }
                ck_assert_int_eq(r, 0);
                /* A double-quoted value after it: a reader that runs past
                 * V's closing quote reads W wrong, or more variables. */
                buf_puts(&b, "\nW=\"w\"\n");
                write_text(file, b.data);
                const char *readers[] = {"sh", "dotenv"};
                for (size_t k = 0; k < 2; k++) {
                        /* A value with no common form only has to satisfy
                         * the reader its format was chosen for. */
                        if (!portable && !(format == ENV_FORMAT_DOTENV ? k == 1 : k == 0))
                                continue;
                        /* ...and python-dotenv cannot be given ${...} at
                         * all, nor a CR but in the dotenv format's \r
                         * (README, "The .env file"). */
                        if (k == 1 && (strstr(v, "${") || (strchr(v, '\r') && format != ENV_FORMAT_DOTENV)))
                                continue;
                        char *got = read_back(readers[k], file);
                        ck_assert_msg(streq(got, v), "%s read [%s] back as [%s] from %s", readers[k], v, got,
                                      b.data);
                        free(got);
                }
                buf_deinit(&b);
        }
        rm_rf(dir);
}

START_TEST(test_envfile_sh_and_dotenv_read_back_exact_values) {
        check_readers(ENV_FORMAT_SYSTEMD);
}
END_TEST

START_TEST(test_envfile_dotenv_format_serves_dotenv) {
        check_readers(ENV_FORMAT_DOTENV);
}
END_TEST

static unsigned count_entries(const char *dir) {
        DIR *d = opendir(dir);
        unsigned n = 0;
        struct dirent *e;
        while ((e = readdir(d)))
                if (!streq(e->d_name, ".") && !streq(e->d_name, ".."))
                        n++;
        closedir(d);
        return n;
}

START_TEST(test_envfile_write_replaces_atomically_with_mode_and_reports_change) {
        _cleanup_free_ char *dir = test_tmpdir();
        char path[300];
        snprintf(path, sizeof path, "%s/.env", dir);
        write_text(path, "OLD='1'\n");
        chmod(path, 0644);

        bool changed;
        ck_assert_int_eq(envfile_write(path, "NEW='2'\n", 8, getuid(), getgid(), 0640, &changed), 0);
        ck_assert(changed);
        struct stat st;
        ck_assert_int_eq(stat(path, &st), 0);
        ck_assert_int_eq(st.st_mode & 07777, 0640);
        char *text;
        ck_assert_int_eq(read_file_full(path, 100, &text, NULL), 0);
        ck_assert_str_eq(text, "NEW='2'\n");
        free(text);
        ck_assert_uint_eq(count_entries(dir), 1);

        /* Same content again: nothing is written, the inode stays. */
        ino_t ino = st.st_ino;
        ck_assert_int_eq(envfile_write(path, "NEW='2'\n", 8, getuid(), getgid(), 0640, &changed), 0);
        ck_assert(!changed);
        ck_assert_int_eq(stat(path, &st), 0);
        ck_assert_uint_eq(st.st_ino, ino);

        /* Only the mode differs: rewritten, but the content did not change. */
        ck_assert_int_eq(envfile_write(path, "NEW='2'\n", 8, getuid(), getgid(), 0600, &changed), 0);
        ck_assert(!changed);
        ck_assert_int_eq(stat(path, &st), 0);
        ck_assert_int_eq(st.st_mode & 07777, 0600);
        rm_rf(dir);
}
END_TEST

START_TEST(test_envfile_write_into_missing_directory_fails_cleanly) {
        bool changed;
        ck_assert_int_eq(envfile_write("/tmp/anb-no-such-dir/x/.env", "A=1\n", 4, 0, 0, 0600, &changed), -ENOENT);
}
END_TEST

START_TEST(test_envfile_enospc_keeps_old_file_and_leaves_no_temp) {
        if (geteuid() != 0) {
                fprintf(stderr, "skipped: needs root for a private tmpfs\n");
                return;
        }
        /* check forks each test: the mount namespace dies with it. */
        ck_assert_int_eq(unshare(CLONE_NEWNS), 0);
        ck_assert_int_eq(mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL), 0);
        _cleanup_free_ char *dir = test_tmpdir();
        ck_assert_int_eq(mount("tmpfs", dir, "tmpfs", 0, "size=16k"), 0);
        char path[300];
        snprintf(path, sizeof path, "%s/.env", dir);
        write_text(path, "KEEP='me'\n");

        size_t big = 64 * 1024;
        char *content = malloc(big);
        memset(content, 'x', big);
        bool changed;
        ck_assert_int_eq(envfile_write(path, content, big, 0, 0, 0640, &changed), -ENOSPC);
        char *text;
        ck_assert_int_eq(read_file_full(path, 100, &text, NULL), 0);
        ck_assert_str_eq(text, "KEEP='me'\n");
        ck_assert_uint_eq(count_entries(dir), 1);
        free(text);
        free(content);
        umount(dir);
        rmdir(dir);
}
END_TEST

TEST_SUITE(suite_envfile)
Suite *suite_envfile(void) {
        Suite *s = suite_create("envfile");
        TCase *tc = tcase_create("quote");
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_envfile_quote_picks_common_form);
        tcase_add_test(tc, test_envfile_dotenv_format_uses_double_quotes_and_refuses_a_trailing_backslash);
        tcase_add_test(tc, test_envfile_quote_rejects_invalid_utf8);
        tcase_add_test(tc, test_envfile_sh_and_dotenv_read_back_exact_values);
        tcase_add_test(tc, test_envfile_dotenv_format_serves_dotenv);
        suite_add_tcase(s, tc);
        tc = tcase_create("write");
        tcase_add_test(tc, test_envfile_write_replaces_atomically_with_mode_and_reports_change);
        tcase_add_test(tc, test_envfile_write_into_missing_directory_fails_cleanly);
        tcase_add_test(tc, test_envfile_enospc_keeps_old_file_and_leaves_no_temp);
        suite_add_tcase(s, tc);
        return s;
}
