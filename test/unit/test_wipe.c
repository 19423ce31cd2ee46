/* basic/wipe: the allocator handed to jansson and libcurl so that their
 * buffers (secret values, tokens, signed headers) are zeroed before they
 * are freed. */
#include <check.h>
#include <jansson.h>
#include <malloc.h>
#include <string.h>

#include "basic/wipe.h"
#include "testutil.h"

static bool all_zero(const unsigned char *p, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (p[i])
                        return false;
        return true;
}

START_TEST(test_wipe_block_zeroes_the_whole_allocation) {
        for (size_t n = 1; n < 300; n += 37) {
                unsigned char *p = wipe_malloc(n);
                ck_assert_ptr_nonnull(p);
                size_t usable = malloc_usable_size(p);
                ck_assert_uint_ge(usable, n);
                memset(p, 'S', usable);
                wipe_block(p);
                ck_assert(all_zero(p, usable));
                wipe_free(p);
        }
        wipe_free(NULL);
}
END_TEST

START_TEST(test_wipe_realloc_keeps_content_and_never_leaves_a_copy) {
        char *p = wipe_strdup("AKIASECRETTOKEN");
        ck_assert_str_eq(p, "AKIASECRETTOKEN");
        /* Shrinking (or growing within the block) keeps the block. */
        ck_assert_ptr_eq(wipe_realloc(p, 4), p);
        /* Growing past it moves to a new block, content kept; the old one
         * went through wipe_free (libc's realloc would free it as it is). */
        char *q = wipe_realloc(p, 4096);
        ck_assert_ptr_nonnull(q);
        ck_assert(memcmp(q, "AKIA", 4) == 0);
        ck_assert_ptr_null(wipe_realloc(q, 0));
        char *r = wipe_realloc(NULL, 8);
        ck_assert_ptr_nonnull(r);
        wipe_free(r);
        int *z = wipe_calloc(4, sizeof(int));
        ck_assert(all_zero((unsigned char *) z, 4 * sizeof(int)));
        wipe_free(z);
}
END_TEST

START_TEST(test_wipe_serves_jansson) {
        json_set_alloc_funcs(wipe_malloc, wipe_free);
        json_malloc_t m;
        json_free_t f;
        json_get_alloc_funcs(&m, &f);
        ck_assert(m == wipe_malloc && f == wipe_free);
        json_t *doc = json_loads("{\"SecretString\":\"first-S3cret\"}", 0, NULL);
        ck_assert_str_eq(json_string_value(json_object_get(doc, "SecretString")), "first-S3cret");
        json_decref(doc);
        json_set_alloc_funcs(malloc, free);
}
END_TEST

TEST_SUITE(suite_wipe)
Suite *suite_wipe(void) {
        Suite *s = suite_create("wipe");
        TCase *tc = tcase_create("wipe");
        tcase_add_test(tc, test_wipe_block_zeroes_the_whole_allocation);
        tcase_add_test(tc, test_wipe_realloc_keeps_content_and_never_leaves_a_copy);
        tcase_add_test(tc, test_wipe_serves_jansson);
        suite_add_tcase(s, tc);
        return s;
}
