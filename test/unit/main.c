/* Runs every unit-test suite (libcheck, forked: one process per test). */
#include <curl/curl.h>
#include <stdlib.h>

#include "testutil.h"

int main(void) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        SRunner *sr = srunner_create(suite_template());
        srunner_add_suite(sr, suite_envfile());
        srunner_add_suite(sr, suite_config());
        srunner_add_suite(sr, suite_imds());
        srunner_add_suite(sr, suite_httpconn());
        srunner_add_suite(sr, suite_log());
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        curl_global_cleanup();
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
