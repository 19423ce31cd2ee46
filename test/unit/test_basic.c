/* basic/: the backoff policy, the intrusive list, the clock. */
#include <check.h>

#include "basic/backoff.h"
#include "basic/clock.h"
#include "basic/list.h"
#include "basic/util.h"
#include "testutil.h"

START_TEST(backoff_doubles_to_cap_with_jitter_in_upper_half) {
        Backoff b;
        backoff_init(&b, 100, 1000, 42);
        static const uint64_t nominal[] = {100, 200, 400, 800, 1000, 1000, 1000};
        for (size_t i = 0; i < ELEMENTSOF(nominal); i++) {
                ck_assert_uint_eq(backoff_peek(&b), nominal[i]);
                uint64_t d = backoff_next(&b);
                ck_assert_uint_ge(d, nominal[i] / 2);
                ck_assert_uint_le(d, nominal[i]);
        }
        ck_assert_uint_eq(b.attempt, ELEMENTSOF(nominal));
        backoff_reset(&b);
        ck_assert_uint_eq(backoff_peek(&b), 100);
}
END_TEST

START_TEST(backoff_jitter_differs_between_seeds) {
        /* Two instances that failed together must not retry together. */
        Backoff a, b;
        backoff_init(&a, 1000, 60000, 1);
        backoff_init(&b, 1000, 60000, 2);
        unsigned same = 0;
        for (int i = 0; i < 16; i++)
                same += backoff_next(&a) == backoff_next(&b);
        ck_assert_uint_lt(same, 4);
}
END_TEST

START_TEST(backoff_survives_huge_attempt_counts) {
        Backoff b;
        backoff_init(&b, 10, 500, 0);
        for (int i = 0; i < 100; i++)
                ck_assert_uint_le(backoff_next(&b), 500);
}
END_TEST

START_TEST(backoff_full_jitter_spreads_over_the_whole_delay) {
        /* A throttled crowd: retries land anywhere in [0, delay], so some
         * land in the lower half too (equal jitter never does). */
        Backoff b;
        backoff_init(&b, 1000, 20000, 7);
        b.full_jitter = true;
        unsigned low = 0;
        for (int i = 0; i < 64; i++) {
                backoff_reset(&b);
                uint64_t d = backoff_next(&b);
                ck_assert_uint_le(d, 1000);
                low += d < 500;
        }
        ck_assert_uint_gt(low, 8);
}
END_TEST

typedef struct Item {
        int v;
        ListLink link;
} Item;

START_TEST(backoff_set_reaims_without_losing_jitter) {
        Backoff b;
        backoff_init(&b, 1000, 32000, 42);
        backoff_set(&b, 500, 100, 3); /* a cap below the base is raised to it */
        ck_assert_uint_eq(b.cap_ms, 500);
        backoff_set(&b, 1000, 32000, 3);
        ck_assert_uint_eq(backoff_peek(&b), 8000);
        uint64_t d = backoff_next(&b);
        ck_assert_uint_ge(d, 4000);
        ck_assert_uint_le(d, 8000);
        ck_assert_uint_eq(b.attempt, 4);
        backoff_set(&b, 0, 0, 0); /* base 0 means 1 ms, as backoff_init */
        ck_assert_uint_eq(backoff_peek(&b), 1);
}
END_TEST

START_TEST(list_append_unlink_in_any_order) {
        ListLink head;
        list_init(&head);
        ck_assert(list_empty(&head));
        Item items[4] = {{.v = 0}, {.v = 1}, {.v = 2}, {.v = 3}};
        for (int i = 0; i < 4; i++)
                list_append(&head, &items[i].link);
        ck_assert_uint_eq(list_size(&head), 4);
        list_unlink(&items[2].link);
        list_unlink(&items[2].link); /* twice is harmless */
        list_unlink(&items[0].link);
        int seen[4], n = 0;
        list_for_each(l, &head) seen[n++] = list_entry(l, Item, link)->v;
        ck_assert_int_eq(n, 2);
        ck_assert_int_eq(seen[0], 1);
        ck_assert_int_eq(seen[1], 3);
        /* Unlinking the current element while iterating (a callback that
         * removes itself) is what _safe is for. */
        list_for_each_safe(l, next, &head) list_unlink(l);
        ck_assert(list_empty(&head));
        ck_assert(!list_linked(&items[1].link));
}
END_TEST

START_TEST(clock_is_monotonic_microseconds) {
        uint64_t a = clock_usec();
        struct timespec ts = {.tv_nsec = 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
        uint64_t b = clock_usec();
        ck_assert_uint_ge(b - a, 2000);
        ck_assert_uint_lt(b - a, 2 * USEC_PER_SEC);
}
END_TEST

START_TEST(clock_format_age_reads_as_an_operator_would) {
        static const struct {
                long ago; /* seconds before now; a negative one is in the future */
                const char *want;
        } rows[] = {
                {0, "0s"},      {5, "5s"},        {119, "119s"},     {120, "2m"},   {600, "10m"},
                {7199, "119m"}, {7200, "2h00m"},  {11040, "3h04m"},  {-3542, "0s"},
        };
        const time_t now = 1800000000;
        char b[32];
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                clock_format_age(now - rows[i].ago, now, b, sizeof b);
                ck_assert_msg(streq(b, rows[i].want), "%ld s ago: got \"%s\", want \"%s\"", rows[i].ago, b,
                              rows[i].want);
        }
        clock_format_age(0, now, b, sizeof b);
        ck_assert_str_eq(b, "never");
}
END_TEST

TEST_SUITE(suite_basic)
Suite *suite_basic(void) {
        Suite *s = suite_create("basic");
        TCase *tc = tcase_create("basic");
        tcase_add_test(tc, backoff_doubles_to_cap_with_jitter_in_upper_half);
        tcase_add_test(tc, backoff_jitter_differs_between_seeds);
        tcase_add_test(tc, backoff_survives_huge_attempt_counts);
        tcase_add_test(tc, backoff_full_jitter_spreads_over_the_whole_delay);
        tcase_add_test(tc, backoff_set_reaims_without_losing_jitter);
        tcase_add_test(tc, list_append_unlink_in_any_order);
        tcase_add_test(tc, clock_is_monotonic_microseconds);
        tcase_add_test(tc, clock_format_age_reads_as_an_operator_would);
        suite_add_tcase(s, tc);
        return s;
}
