/* Helpers shared by the unit tests: temp dirs, running the IMDS fake as a
 * child process and talking to its /_fake/ control endpoints, and running
 * a libuv loop to completion with a leak check. */
#pragma once

#include <check.h>
#include <stdbool.h>
#include <sys/types.h>
#include <uv.h>

#include "aws/imds.h"

/* Each test file registers its suite with TEST_SUITE(fn) (a constructor),
 * so adding a file touches no shared list. */
void test_register_suite(Suite *(*make)(void));
#define TEST_SUITE(fn)                                                      \
        Suite *fn(void);                                                    \
        __attribute__((constructor)) static void register_##fn(void) {     \
                test_register_suite(fn);                                    \
        }

/* mkdtemp under $TMPDIR (else /tmp); the caller removes it with rm_rf. */
char *test_tmpdir(void);
void rm_rf(const char *path);
void write_text(const char *path, const char *text);

typedef struct Fake {
        pid_t pid;
        int port;
        char *dir;
        char url[64];
} Fake;

/* Starts test/fakes/imds.py on a free loopback port; state_json (may be
 * NULL) is merged over its default state. */
void fake_start(Fake *f, const char *state_json);
void fake_stop(Fake *f);
/* POST body to /_fake/what; returns the HTTP status. */
long fake_post(Fake *f, const char *what, const char *body);
/* GET /_fake/stats and return the named counter ("token_put", "get"). */
long fake_count(Fake *f, const char *counter);

/* The IMDS fake with a loop, an HttpLoop and an ImdsClient on it. */
typedef struct ImdsEnv {
        Fake fake;
        uv_loop_t loop;
        HttpLoop *http;
        ImdsClient *imds;
} ImdsEnv;
/* o: the client's options; its endpoint is set to the fake's. */
void imds_env_start(ImdsEnv *e, const char *state_json, ImdsOptions o);
/* Frees what is left, runs the loop out, asserts it closes. */
void imds_env_stop(ImdsEnv *e);

/* Runs the loop until nothing is left and asserts uv_loop_close() == 0,
 * without closing anything itself: a forgotten handle fails the test. */
void loop_finish(uv_loop_t *loop);

/* Runs `cmd` with /bin/sh, captures stdout (at most 64 KiB). */
char *run_capture(const char *cmd, int *ret_status);
