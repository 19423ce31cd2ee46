/* See testutil.h. */
#include "testutil.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "basic/util.h"

char *test_tmpdir(void) {
        const char *base = getenv("TMPDIR");
        char *d = strdup_printf("%s/anb-test.XXXXXX", base && *base ? base : "/tmp");
        ck_assert_ptr_nonnull(d);
        ck_assert_ptr_nonnull(mkdtemp(d));
        return d;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
        (void) st, (void) flag, (void) ftw;
        remove(p);
        return 0;
}

void rm_rf(const char *path) {
        nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

void write_text(const char *path, const char *text) {
        FILE *f = fopen(path, "we");
        ck_assert_msg(f, "cannot write %s", path);
        fputs(text, f);
        fclose(f);
}

static const char *srcdir(void) {
        const char *s = getenv("ANB_SRCDIR");
        return s ? s : ".";
}

void fake_start(Fake *f, const char *state_json) {
        *f = (Fake) {0};
        f->dir = test_tmpdir();
        char portfile[256], statefile[256], script[512];
        snprintf(portfile, sizeof portfile, "%s/port", f->dir);
        snprintf(statefile, sizeof statefile, "%s/state.json", f->dir);
        snprintf(script, sizeof script, "%s/test/fakes/imds.py", srcdir());
        if (state_json)
                write_text(statefile, state_json);
        f->pid = fork();
        ck_assert_int_ge(f->pid, 0);
        if (f->pid == 0) {
                int null = open("/dev/null", O_RDWR);
                dup2(null, STDOUT_FILENO);
                execl("/usr/bin/python3", "python3", script, "--port", "0", "--port-file", portfile,
                      state_json ? "--state" : NULL, statefile, (char *) NULL);
                _exit(127);
        }
        for (int i = 0; i < 500; i++) {
                FILE *p = fopen(portfile, "re");
                if (p) {
                        if (fscanf(p, "%d", &f->port) == 1) {
                                fclose(p);
                                snprintf(f->url, sizeof f->url, "http://127.0.0.1:%d", f->port);
                                return;
                        }
                        fclose(p);
                }
                usleep(10000);
        }
        ck_abort_msg("IMDS fake did not start");
}

void fake_stop(Fake *f) {
        if (f->pid > 0) {
                kill(f->pid, SIGTERM);
                waitpid(f->pid, NULL, 0);
        }
        if (f->dir) {
                rm_rf(f->dir);
                free(f->dir);
        }
        *f = (Fake) {0};
}

static size_t collect(char *p, size_t s, size_t n, void *ud) {
        buf_append(ud, p, s * n);
        return s * n;
}

static long fake_call(Fake *f, const char *method, const char *what, const char *body, Buf *out) {
        char url[256];
        snprintf(url, sizeof url, "%s/_fake/%s", f->url, what);
        CURL *c = curl_easy_init();
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_PROXY, "");
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 5L);
        if (streq(method, "POST"))
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "{}");
        long status = 0;
        ck_assert_int_eq(curl_easy_perform(c), CURLE_OK);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(c);
        return status;
}

long fake_post(Fake *f, const char *what, const char *body) {
        Buf b = {0};
        long s = fake_call(f, "POST", what, body, &b);
        buf_deinit(&b);
        return s;
}

long fake_count(Fake *f, const char *counter) {
        Buf b = {0};
        ck_assert_int_eq(fake_call(f, "GET", "stats", NULL, &b), 200);
        char key[64];
        snprintf(key, sizeof key, "\"%s\": ", counter);
        const char *p = strstr(b.data, key);
        ck_assert_msg(p, "no counter %s in %s", counter, b.data);
        long v = strtol(p + strlen(key), NULL, 10);
        buf_deinit(&b);
        return v;
}

static void report_open(uv_handle_t *h, void *arg) {
        int *n = arg;
        fprintf(stderr, "handle left open: %s%s\n", uv_handle_type_name(uv_handle_get_type(h)),
                uv_is_closing(h) ? " (closing)" : "");
        (*n)++;
}

/* Nothing is force-closed: a handle a module forgot to close keeps the loop
 * from closing, and that fails the test (libuv's own tests do the same). */
void loop_finish(uv_loop_t *loop) {
        uv_run(loop, UV_RUN_DEFAULT);
        int r = uv_loop_close(loop);
        if (r != 0) {
                int open_handles = 0;
                uv_walk(loop, report_open, &open_handles);
                ck_abort_msg("uv_loop_close() = %s: %d handle(s) left open", uv_err_name(r), open_handles);
        }
}

char *run_capture(const char *cmd, int *ret_status) {
        FILE *p = popen(cmd, "re");
        ck_assert_ptr_nonnull(p);
        Buf b = {0};
        char chunk[4096];
        size_t n;
        while ((n = fread(chunk, 1, sizeof chunk, p)) > 0)
                buf_append(&b, chunk, n);
        int st = pclose(p);
        if (ret_status)
                *ret_status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        if (!b.data)
                buf_puts(&b, "");
        return buf_steal(&b);
}

void imds_env_start(ImdsEnv *e, const char *state_json, ImdsOptions o) {
        fake_start(&e->fake, state_json);
        uv_loop_init(&e->loop);
        ck_assert_int_eq(http_loop_new(&e->loop, &e->http), 0);
        o.endpoint = e->fake.url;
        ck_assert_int_eq(imds_client_new(&e->loop, e->http, &o, &e->imds), 0);
}

void imds_env_stop(ImdsEnv *e) {
        imds_client_free(e->imds);
        http_loop_free(e->http);
        loop_finish(&e->loop);
        fake_stop(&e->fake);
}
