/* Runs every unit-test suite (libcheck, forked: one process per test).
 * Suites register themselves (TEST_SUITE in testutil.h). */
#include <curl/curl.h>
#include <stdlib.h>

#include "testutil.h"

static Suite *(*suites[64])(void);
static size_t n_suites;

void test_register_suite(Suite *(*make)(void)) {
        if (n_suites < sizeof suites / sizeof suites[0])
                suites[n_suites++] = make;
        else
                abort();
}

int main(void) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        SRunner *sr = srunner_create(NULL);
        for (size_t i = 0; i < n_suites; i++)
                srunner_add_suite(sr, suites[i]());
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        curl_global_cleanup();
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
