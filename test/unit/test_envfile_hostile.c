/* The .env's directory in the hands of a user the agent does not trust:
 * a FIFO, a symlink or a hard link at the path, a symlinked directory on
 * the way, temp files a crash left behind.  Run as root (like the agent)
 * in a directory owned by `nobody`; skipped otherwise. */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "basic/clock.h"
#include "env/envfile.h"
#include "render/render.h"
#include "testutil.h"

typedef struct Scene {
        char *base;       /* root-owned, 0700 */
        char app[300];    /* base/app, owned by nobody: the app user's directory */
        char path[320];   /* base/app/.env */
        char victim[300]; /* base/victim: a root file the app user wants */
        uid_t nobody;
        gid_t nogroup;
} Scene;

static const char victim_text[] = "root:secret-hash:19000::::::\n";

static bool scene_setup(Scene *s) {
        if (geteuid() != 0) {
                fprintf(stderr, "skipped: needs root (the agent's view of an untrusted directory)\n");
                return false;
        }
        struct passwd *pw = getpwnam("nobody");
        ck_assert_ptr_nonnull(pw);
        *s = (Scene) {.base = test_tmpdir(), .nobody = pw->pw_uid, .nogroup = pw->pw_gid};
        snprintf(s->app, sizeof s->app, "%s/app", s->base);
        snprintf(s->path, sizeof s->path, "%s/.env", s->app);
        snprintf(s->victim, sizeof s->victim, "%s/victim", s->base);
        ck_assert_int_eq(mkdir(s->app, 0755), 0);
        ck_assert_int_eq(chown(s->app, s->nobody, s->nogroup), 0);
        write_text(s->victim, victim_text);
        ck_assert_int_eq(chmod(s->victim, 0600), 0);
        return true;
}

static void scene_teardown(Scene *s) {
        rm_rf(s->base);
        free(s->base);
}

static void assert_victim_untouched(const Scene *s) {
        struct stat st;
        ck_assert_int_eq(lstat(s->victim, &st), 0);
        ck_assert_int_eq(st.st_uid, 0);
        ck_assert_int_eq(st.st_gid, 0);
        ck_assert_int_eq(st.st_mode & 07777, 0600);
        char *text;
        ck_assert_int_eq(read_file_full(s->victim, 4096, &text, NULL), 0);
        ck_assert_str_eq(text, victim_text);
        free(text);
}

/* path is now a regular file of ours, one link, with this content. */
static void assert_ours(const Scene *s, const char *content) {
        struct stat st;
        ck_assert_int_eq(lstat(s->path, &st), 0);
        ck_assert_msg(S_ISREG(st.st_mode), "not a regular file: %o", st.st_mode);
        ck_assert_int_eq(st.st_nlink, 1);
        ck_assert_int_eq(st.st_uid, s->nobody);
        ck_assert_int_eq(st.st_gid, s->nogroup);
        ck_assert_int_eq(st.st_mode & 07777, 0640);
        char *text;
        ck_assert_int_eq(read_file_full(s->path, 4096, &text, NULL), 0);
        ck_assert_str_eq(text, content);
        free(text);
}

static int write_env(const Scene *s, const char *path, const char *content, bool *changed) {
        return envfile_write(path, content, strlen(content), s->nobody, s->nogroup, 0640, changed);
}

START_TEST(test_envfile_fifo_at_path_is_replaced_without_blocking) {
        Scene s;
        if (!scene_setup(&s))
                return;
        ck_assert_int_eq(mkfifo(s.path, 0666), 0);
        ck_assert_int_eq(lchown(s.path, s.nobody, s.nogroup), 0);
        /* On the old code this open() waited for a writer forever: the
         * tcase timeout fails it. */
        uint64_t t0 = clock_usec();
        bool changed = false;
        ck_assert_int_eq(write_env(&s, s.path, "A='1'\n", &changed), 0);
        ck_assert_msg(clock_ms_since(t0) < 5000, "took %.0f ms", clock_ms_since(t0));
        ck_assert(changed);
        assert_ours(&s, "A='1'\n");
        scene_teardown(&s);
}
END_TEST

START_TEST(test_envfile_read_file_full_refuses_a_fifo_without_blocking) {
        _cleanup_free_ char *dir = test_tmpdir();
        char fifo[300];
        snprintf(fifo, sizeof fifo, "%s/fifo", dir);
        ck_assert_int_eq(mkfifo(fifo, 0600), 0);
        char *text = NULL;
        ck_assert_int_eq(read_file_full(fifo, 100, &text, NULL), -EINVAL);
        ck_assert_int_eq(read_file_full(dir, 100, &text, NULL), -EISDIR);
        rm_rf(dir);
}
END_TEST

START_TEST(test_envfile_symlink_at_path_is_replaced_never_followed) {
        Scene s;
        if (!scene_setup(&s))
                return;
        /* The symlink points at a file that already holds exactly what is
         * written, with the wanted owner and mode: the old code called that
         * "unchanged" and left the symlink, which the app user could then
         * point anywhere (systemd reads EnvironmentFile= as root). */
        char decoy[320];
        snprintf(decoy, sizeof decoy, "%s/decoy", s.app);
        write_text(decoy, "A='1'\n");
        ck_assert_int_eq(chown(decoy, s.nobody, s.nogroup), 0);
        ck_assert_int_eq(chmod(decoy, 0640), 0);
        ck_assert_int_eq(symlink(decoy, s.path), 0);
        bool changed = false;
        ck_assert_int_eq(write_env(&s, s.path, "A='1'\n", &changed), 0);
        assert_ours(&s, "A='1'\n");

        /* A symlink to a root file: replaced; the file is neither read
         * into a comparison nor chowned nor written. */
        ck_assert_int_eq(unlink(s.path), 0);
        ck_assert_int_eq(symlink(s.victim, s.path), 0);
        ck_assert_int_eq(write_env(&s, s.path, "B='2'\n", &changed), 0);
        ck_assert(changed);
        assert_ours(&s, "B='2'\n");
        assert_victim_untouched(&s);
        scene_teardown(&s);
}
END_TEST

START_TEST(test_envfile_symlinked_directory_on_the_path_is_refused) {
        Scene s;
        if (!scene_setup(&s))
                return;
        /* app/conf -> base (root's directory): writing app/conf/.env must
         * not create base/.env, nor replace base/victim through it. */
        char link[320], through[340], target[320];
        snprintf(link, sizeof link, "%s/conf", s.app);
        ck_assert_int_eq(symlink(s.base, link), 0);
        snprintf(through, sizeof through, "%s/victim", link);
        bool changed = false;
        ck_assert_int_eq(write_env(&s, through, "C='3'\n", &changed), -ELOOP);
        assert_victim_untouched(&s);
        snprintf(through, sizeof through, "%s/.env", link);
        ck_assert_int_eq(write_env(&s, through, "C='3'\n", &changed), -ELOOP);
        snprintf(target, sizeof target, "%s/.env", s.base);
        ck_assert_int_eq(access(target, F_OK), -1);

        /* The same for the directory itself being a symlink. */
        char moved[300];
        snprintf(moved, sizeof moved, "%s/app.real", s.base);
        ck_assert_int_eq(rename(s.app, moved), 0);
        ck_assert_int_eq(symlink(s.base, s.app), 0);
        ck_assert_int_eq(write_env(&s, s.path, "C='3'\n", &changed), -ELOOP);
        ck_assert_int_eq(access(target, F_OK), -1);
        ck_assert_int_eq(envfile_remove_stale_temps(s.path), -ELOOP);
        scene_teardown(&s);
}
END_TEST

START_TEST(test_envfile_hard_link_at_path_is_replaced_not_written_through) {
        Scene s;
        if (!scene_setup(&s))
                return;
        /* A hard link to a root file: content and owner of that file stay. */
        ck_assert_int_eq(link(s.victim, s.path), 0);
        bool changed = false;
        ck_assert_int_eq(write_env(&s, s.path, "D='4'\n", &changed), 0);
        ck_assert(changed);
        assert_ours(&s, "D='4'\n");
        assert_victim_untouched(&s);

        /* A second name for the .env itself (the app user keeping a copy of
         * every later secret): even with identical content, owner and mode
         * the link is broken, not kept (and a file with two names is not
         * even read to compare, so it counts as changed). */
        char keep[320];
        snprintf(keep, sizeof keep, "%s/keep", s.app);
        ck_assert_int_eq(link(s.path, keep), 0);
        ck_assert_int_eq(write_env(&s, s.path, "D='4'\n", &changed), 0);
        ck_assert(changed);
        assert_ours(&s, "D='4'\n");
        ck_assert_int_eq(write_env(&s, s.path, "E='5'\n", &changed), 0);
        char *text;
        ck_assert_int_eq(read_file_full(keep, 100, &text, NULL), 0);
        ck_assert_str_eq(text, "D='4'\n");
        free(text);
        scene_teardown(&s);
}
END_TEST

START_TEST(test_envfile_stale_temps_are_removed_and_nothing_else) {
        Scene s;
        if (!scene_setup(&s))
                return;
        write_text(s.path, "OLD='1'\n");
        static const char *const stale[] = {".env.anb-agent.a1B2c3", ".env.anb-agent.XXXXXX"};
        static const char *const keep[] = {".env.anb-agent.toolong", "other.anb-agent.a1B2c3", ".env.bak",
                                           ".env.anb-agent."};
        char p[400];
        for (size_t i = 0; i < ELEMENTSOF(stale); i++) {
                snprintf(p, sizeof p, "%s/%s", s.app, stale[i]);
                write_text(p, "HALF='written");
        }
        for (size_t i = 0; i < ELEMENTSOF(keep); i++) {
                snprintf(p, sizeof p, "%s/%s", s.app, keep[i]);
                write_text(p, "x");
        }
        /* A planted symlink with a temp's name: the link goes, its target stays. */
        snprintf(p, sizeof p, "%s/.env.anb-agent.zzzzzz", s.app);
        ck_assert_int_eq(symlink(s.victim, p), 0);

        ck_assert_int_eq(envfile_remove_stale_temps(s.path), 3);
        for (size_t i = 0; i < ELEMENTSOF(stale); i++) {
                snprintf(p, sizeof p, "%s/%s", s.app, stale[i]);
                ck_assert_msg(access(p, F_OK) < 0, "%s left", stale[i]);
        }
        for (size_t i = 0; i < ELEMENTSOF(keep); i++) {
                snprintf(p, sizeof p, "%s/%s", s.app, keep[i]);
                ck_assert_msg(access(p, F_OK) == 0, "%s removed", keep[i]);
        }
        ck_assert_int_eq(access(s.path, F_OK), 0);
        assert_victim_untouched(&s);
        ck_assert_int_eq(envfile_remove_stale_temps(s.path), 0);

        char missing[400];
        snprintf(missing, sizeof missing, "%s/no-such-dir/.env", s.base);
        ck_assert_int_eq(envfile_remove_stale_temps(missing), 0);
        scene_teardown(&s);
}
END_TEST

START_TEST(test_envfile_path_with_dot_components_is_refused) {
        _cleanup_free_ char *dir = test_tmpdir();
        char p[400];
        bool changed;
        const char *base = strrchr(dir, '/') + 1;
        snprintf(p, sizeof p, "%s/../%s/.env", dir, base);
        ck_assert_int_eq(envfile_write(p, "A=1\n", 4, 0, 0, 0600, &changed), -EINVAL);
        snprintf(p, sizeof p, "%s/.", dir);
        ck_assert_int_eq(envfile_write(p, "A=1\n", 4, 0, 0, 0600, &changed), -EINVAL);
        snprintf(p, sizeof p, "%s/", dir);
        ck_assert_int_eq(envfile_write(p, "A=1\n", 4, 0, 0, 0600, &changed), -EINVAL);
        ck_assert_int_eq(envfile_write("", "A=1\n", 4, 0, 0, 0600, &changed), -EINVAL);
        rm_rf(dir);
}
END_TEST

START_TEST(test_envfile_check_dir_names_a_directory_another_user_controls) {
        Scene s;
        if (!scene_setup(&s))
                return;
        char *unsafe = NULL;
        ck_assert_int_eq(envfile_check_dir(s.path, &unsafe), 1);
        ck_assert_str_eq(unsafe, s.app);
        free(unsafe);

        /* Root's, 0755, under a root-owned or sticky chain: safe. */
        char safe[320], p[340];
        snprintf(safe, sizeof safe, "%s/state", s.base);
        ck_assert_int_eq(mkdir(safe, 0755), 0);
        snprintf(p, sizeof p, "%s/.env", safe);
        unsafe = (char *) "untouched";
        ck_assert_int_eq(envfile_check_dir(p, &unsafe), 0);
        ck_assert_ptr_null(unsafe);

        /* Group-writable, or sticky and world-writable as the .env's own
         * directory: not safe. */
        ck_assert_int_eq(chmod(safe, 0775), 0);
        ck_assert_int_eq(envfile_check_dir(p, &unsafe), 1);
        ck_assert_str_eq(unsafe, safe);
        free(unsafe);
        ck_assert_int_eq(chmod(safe, 01777), 0);
        ck_assert_int_eq(envfile_check_dir(p, &unsafe), 1);
        free(unsafe);
        /* ...but fine on the way to a root-owned directory. */
        char inner[360];
        snprintf(inner, sizeof inner, "%s/inner", safe);
        ck_assert_int_eq(mkdir(inner, 0700), 0);
        snprintf(p, sizeof p, "%s/inner/.env", safe);
        ck_assert_int_eq(envfile_check_dir(p, &unsafe), 0);

        /* A symlink on the way. */
        char link[320];
        snprintf(link, sizeof link, "%s/link", s.base);
        ck_assert_int_eq(symlink(safe, link), 0);
        snprintf(p, sizeof p, "%s/inner/.env", link);
        ck_assert_int_eq(envfile_check_dir(p, &unsafe), -ELOOP);
        scene_teardown(&s);
}
END_TEST

TEST_SUITE(suite_envfile_hostile)
/* The role file beside the .env steers which units start after a restart
 * that cannot read the role tag: only a file the agent itself wrote is
 * believed, never one the app user placed, linked or opened up. */
START_TEST(test_role_file_is_believed_only_when_the_agent_wrote_it) {
        Scene s;
        if (!scene_setup(&s))
                return;
        char role[340], other[320];
        snprintf(role, sizeof role, "%s.role", s.path);
        snprintf(other, sizeof other, "%s/web-role", s.base);
        char *v = NULL;
        ck_assert_int_eq(render_read_saved_role(role, &v), -ENOENT);

        bool changed;
        ck_assert_int_eq(envfile_write(role, "worker\n", 7, geteuid(), getegid(), 0644, &changed), 0);
        ck_assert_int_eq(render_read_saved_role(role, &v), 0);
        ck_assert_str_eq(v, "worker");
        free(v), v = NULL;

        ck_assert_int_eq(chmod(role, 0664), 0); /* another may have written it */
        ck_assert_int_eq(render_read_saved_role(role, &v), -EPERM);
        ck_assert_int_eq(chmod(role, 0644), 0);
        ck_assert_int_eq(chown(role, s.nobody, s.nogroup), 0); /* the app user's */
        ck_assert_int_eq(render_read_saved_role(role, &v), -EPERM);

        write_text(other, "web\n"); /* root's, elsewhere: linked in */
        ck_assert_int_eq(unlink(role), 0);
        ck_assert_int_eq(symlink(other, role), 0);
        ck_assert_int_eq(render_read_saved_role(role, &v), -EPERM);
        ck_assert_int_eq(unlink(role), 0);
        ck_assert_int_eq(link(other, role), 0);
        ck_assert_int_eq(render_read_saved_role(role, &v), -EPERM);
        ck_assert_int_eq(unlink(role), 0);

        ck_assert_int_eq(mkfifo(role, 0644), 0); /* no writer: a blocking open would hang */
        uint64_t t0 = clock_usec();
        ck_assert_int_eq(render_read_saved_role(role, &v), -EPERM);
        ck_assert_uint_lt(clock_usec() - t0, 2 * USEC_PER_SEC);
        ck_assert_int_eq(unlink(role), 0);

        /* A symlinked directory on the way: neither read nor removed
         * through it (the app user swapping a directory for a link). */
        char via[340], link_dir[320];
        snprintf(link_dir, sizeof link_dir, "%s/link", s.base);
        snprintf(via, sizeof via, "%s/.env.role", link_dir);
        ck_assert_int_eq(envfile_write(role, "worker\n", 7, geteuid(), getegid(), 0644, &changed), 0);
        ck_assert_int_eq(symlink(s.app, link_dir), 0);
        ck_assert_int_eq(render_read_saved_role(via, &v), -EPERM);
        ck_assert_int_eq(envfile_remove(via), -ELOOP);
        ck_assert_int_eq(access(role, F_OK), 0);
        ck_assert_int_eq(envfile_remove(role), 0);
        ck_assert_int_eq(access(role, F_OK), -1);
        ck_assert_int_eq(envfile_remove(role), 0); /* already gone: fine */

        const char *bad[] = {"wor ker\n", "web\nworker\n", "", "../web\n",
                             "a-role-name-longer-than-sixty-four-characters-is-not-a-plain-role-name\n"};
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
                ck_assert_int_eq(envfile_write(role, bad[i], strlen(bad[i]), geteuid(), getegid(), 0644, &changed), 0);
                ck_assert_msg(render_read_saved_role(role, &v) == -EBADMSG, "believed: [%s]", bad[i]);
                ck_assert_ptr_null(v);
        }
        scene_teardown(&s);
}
END_TEST

/* Only a failure that lasts makes default_role certain (recorded beside
 * the .env, over a role recorded before); one a retry may cure keeps the
 * recorded role.  Credentials served expired (a clock ahead at boot) or
 * a garbled answer once counted as lasting. */
START_TEST(test_role_tag_failures_that_last_and_those_that_pass) {
        const int lasts[] = {-ENETUNREACH, -EOPNOTSUPP, -EACCES, -ENOKEY};
        const int passes[] = {-EIO, -ETIMEDOUT, -ECONNREFUSED, -ECONNRESET, -EHOSTUNREACH,
                              -EKEYEXPIRED, -EBADMSG, -EPROTO, -ENOMEM};
        for (size_t i = 0; i < sizeof lasts / sizeof *lasts; i++)
                ck_assert_msg(render_role_failure_lasts(lasts[i]), "%s should last", strerror(-lasts[i]));
        for (size_t i = 0; i < sizeof passes / sizeof *passes; i++)
                ck_assert_msg(!render_role_failure_lasts(passes[i]), "%s should pass", strerror(-passes[i]));
}
END_TEST

Suite *suite_envfile_hostile(void) {
        Suite *s = suite_create("envfile_hostile");
        TCase *tc = tcase_create("untrusted directory");
        tcase_set_timeout(tc, 10);
        tcase_add_test(tc, test_envfile_fifo_at_path_is_replaced_without_blocking);
        tcase_add_test(tc, test_envfile_read_file_full_refuses_a_fifo_without_blocking);
        tcase_add_test(tc, test_envfile_symlink_at_path_is_replaced_never_followed);
        tcase_add_test(tc, test_envfile_symlinked_directory_on_the_path_is_refused);
        tcase_add_test(tc, test_envfile_hard_link_at_path_is_replaced_not_written_through);
        tcase_add_test(tc, test_envfile_stale_temps_are_removed_and_nothing_else);
        tcase_add_test(tc, test_envfile_path_with_dot_components_is_refused);
        tcase_add_test(tc, test_envfile_check_dir_names_a_directory_another_user_controls);
        tcase_add_test(tc, test_role_file_is_believed_only_when_the_agent_wrote_it);
        tcase_add_test(tc, test_role_tag_failures_that_last_and_those_that_pass);
        suite_add_tcase(s, tc);
        return s;
}
