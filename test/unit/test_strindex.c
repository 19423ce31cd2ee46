/* basic/strindex: the hash index behind template and resolver look-ups. */
#include <check.h>
#include <stdio.h>

#include "basic/strindex.h"
#include "basic/util.h"
#include "testutil.h"

START_TEST(test_strindex_put_get_and_duplicates) {
        enum { N = 5000 };
        char **keys = calloc(N, sizeof(char *));
        StrIndex x = {0};
        ck_assert(!strindex_get(&x, 0, "nothing", NULL));
        for (size_t i = 0; i < N; i++) {
                keys[i] = strdup_printf("key-%zu", i);
                ck_assert_int_eq(strindex_put(&x, (unsigned) (i % 3), keys[i], i, NULL), 0);
        }
        ck_assert_uint_eq(x.n, N);
        for (size_t i = 0; i < N; i++) {
                size_t v = 0;
                ck_assert(strindex_get(&x, (unsigned) (i % 3), keys[i], &v));
                ck_assert_uint_eq(v, i);
                /* Same key, other tag: another namespace. */
                ck_assert(!strindex_get(&x, (unsigned) (i % 3) + 1, keys[i], NULL));
        }
        size_t first = 0;
        ck_assert_int_eq(strindex_put(&x, 1, "key-1", 99, &first), 1);
        ck_assert_uint_eq(first, 1);
        ck_assert_int_eq(strindex_put(&x, 2, "key-1", 99, NULL), 0);
        strindex_deinit(&x);
        strindex_deinit(&x);
        for (size_t i = 0; i < N; i++)
                free(keys[i]);
        free(keys);
}
END_TEST

TEST_SUITE(suite_strindex)
Suite *suite_strindex(void) {
        Suite *s = suite_create("strindex");
        TCase *tc = tcase_create("strindex");
        tcase_add_test(tc, test_strindex_put_get_and_duplicates);
        suite_add_tcase(s, tc);
        return s;
}
