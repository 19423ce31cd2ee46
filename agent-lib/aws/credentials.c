/* See credentials.h. */
#include "aws/credentials.h"

#include <errno.h>
#include <stdio.h>

#include "basic/backoff.h"
#include "basic/list.h"
#include "basic/log.h"
#include "basic/util.h"

/* Credentials served already expired: asked for again this many times. */
#define EXPIRED_RETRIES 3

struct CredentialsWait {
        CredentialsCache *c;
        CredentialsDone done;
        void *userdata;
        bool ready;      /* answered on the next loop turn, not by a fetch */
        int ready_error; /* with ready: the answer */
        ListLink link;
};

struct CredentialsCache {
        uv_loop_t *loop;
        ImdsClient *imds;
        unsigned margin_sec;
        CredentialsEvents events;
        void *userdata;
        AwsCredentials *current;
        ImdsCall *fetch; /* in flight */
        bool keep_fresh;
        Backoff refresh_backoff; /* keep-fresh retries after a failed refresh */
        Backoff expired_backoff; /* asking again for credentials served expired */
        ListLink waiters;
        char *last_error;
        uv_timer_t timer;  /* refresh and retries */
        uv_timer_t answer; /* answers known at the call, deferred to the loop */
        unsigned open_handles;
};

static void fetch_from_timer(CredentialsCache *c);

static bool valid(const CredentialsCache *c) {
        return c->current && time(NULL) < c->current->expiration;
}

static void on_timer(uv_timer_t *t) {
        fetch_from_timer(t->data);
}

static void schedule(CredentialsCache *c, bool renewed) {
        if (!c->keep_fresh || !c->current)
                return;
        time_t now = time(NULL);
        int64_t left = (int64_t) c->current->expiration - (int64_t) now;
        int64_t at = (int64_t) c->current->expiration - c->margin_sec;
        /* Jitter (up to a fifth of the margin), so a fleet does not refresh
         * in lockstep. */
        at -= (int64_t) (uv_hrtime() % ((uint64_t) c->margin_sec / 5 + 1));
        int64_t delay = at - (int64_t) now;
        /* Inside the margin already (IMDS handed out the same credentials
         * again: it rotates them only minutes before they expire): ask
         * again at a polite pace, not in a loop. */
        if (delay < 5 || !renewed) {
                int64_t pace = left / 4;
                delay = pace < 5 ? 5 : pace > 60 ? 60 : pace;
        }
        uv_timer_start(&c->timer, on_timer, (uint64_t) delay * 1000, 0);
}

static void schedule_retry(CredentialsCache *c) {
        uint64_t delay = backoff_next(&c->refresh_backoff); /* 15 s ... 240 s */
        if (c->current) {
                int64_t left = (int64_t) c->current->expiration - (int64_t) time(NULL);
                if (left > 2 && (uint64_t) left * 1000 / 2 < delay)
                        delay = (uint64_t) left * 1000 / 2;
        }
        uv_timer_start(&c->timer, on_timer, delay, 0);
}

static void wait_free(CredentialsWait *w) {
        list_unlink(&w->link);
        free(w);
}

static CredentialsWait *first_waiter(CredentialsCache *c, bool ready) {
        list_for_each(l, &c->waiters) {
                CredentialsWait *w = list_entry(l, CredentialsWait, link);
                if (w->ready == ready)
                        return w;
        }
        return NULL;
}

/* Answers every waiter of a fetch.  From the head each time: a callback may
 * cancel another waiter or add one. */
static void answer_fetched(CredentialsCache *c, int error, const char *message) {
        CredentialsWait *w;
        while ((w = first_waiter(c, false))) {
                CredentialsDone done = w->done;
                void *ud = w->userdata;
                wait_free(w);
                done(error, message, error ? NULL : c->current, ud);
        }
}

static void on_answer(uv_timer_t *t) {
        CredentialsCache *c = t->data;
        CredentialsWait *w;
        while ((w = first_waiter(c, true))) {
                CredentialsDone done = w->done;
                void *ud = w->userdata;
                int error = w->ready_error;
                wait_free(w);
                if (error)
                        done(error, "IMDS is disabled, so there are no role credentials", NULL, ud);
                else if (!c->current)
                        done(-EKEYEXPIRED, "the role credentials were dropped", NULL, ud);
                else
                        done(0, NULL, c->current, ud);
        }
}

static void fetch_failed(CredentialsCache *c, int error, const char *message) {
        free(c->last_error);
        c->last_error = strdup(message ? message : strerror(-error));
        if (error == -EKEYEXPIRED && first_waiter(c, false) &&
            c->expired_backoff.attempt < EXPIRED_RETRIES) {
                /* A rotation race at IMDS: ask again before anyone hears. */
                uint64_t delay = backoff_next(&c->expired_backoff);
                log_debug("credentials: served expired, asking again in %llu ms", (unsigned long long) delay);
                uv_timer_start(&c->timer, on_timer, delay, 0);
                return;
        }
        backoff_reset(&c->expired_backoff);
        if (valid(c)) {
                /* Static stability: the ones we have still work. */
                if (c->events)
                        c->events(CREDENTIALS_REFRESH_FAILED, c->last_error, c->current->expiration, c->userdata);
                if (c->keep_fresh)
                        schedule_retry(c);
                answer_fetched(c, 0, NULL);
                return;
        }
        if (c->current && c->events)
                c->events(CREDENTIALS_EXPIRED, c->last_error, c->current->expiration, c->userdata);
        if (c->keep_fresh)
                schedule_retry(c);
        _cleanup_free_ char *msg = strdup_printf("cannot get the instance role's credentials from IMDS: %s",
                                                 c->last_error ? c->last_error : "out of memory");
        answer_fetched(c, error, msg ? msg : "cannot get the instance role's credentials from IMDS");
}

static void on_fetched(int error, const char *message, AwsCredentials *creds, void *userdata) {
        CredentialsCache *c = userdata;
        c->fetch = NULL;
        if (!error && creds->expiration <= time(NULL)) {
                /* Signing with them would only earn ExpiredToken answers. */
                _cleanup_free_ char *msg = strdup_printf("IMDS served credentials for role %s that have already "
                                                         "expired (%lld s ago)",
                                                         creds->role,
                                                         (long long) (time(NULL) - creds->expiration));
                aws_credentials_free(creds);
                fetch_failed(c, -EKEYEXPIRED, msg ? msg : "IMDS served expired credentials");
                return;
        }
        if (error) {
                fetch_failed(c, error, message);
                return;
        }
        bool renewed = !c->current || creds->expiration > c->current->expiration;
        aws_credentials_free(c->current);
        c->current = creds;
        free(c->last_error);
        c->last_error = NULL;
        backoff_reset(&c->refresh_backoff);
        backoff_reset(&c->expired_backoff);
        if (c->events && renewed)
                c->events(CREDENTIALS_REFRESHED, NULL, creds->expiration, c->userdata);
        schedule(c, renewed);
        answer_fetched(c, 0, NULL);
}

static int fetch(CredentialsCache *c) {
        if (c->fetch)
                return 0;
        uv_timer_stop(&c->timer);
        return imds_fetch_credentials(c->imds, on_fetched, c, &c->fetch);
}

static void fetch_from_timer(CredentialsCache *c) {
        int r = fetch(c);
        if (r < 0)
                fetch_failed(c, r, strerror(-r));
}

int credentials_get(CredentialsCache *c, bool force, CredentialsDone done, void *userdata,
                    CredentialsWait **ret_wait) {
        CredentialsWait *w = calloc(1, sizeof(CredentialsWait));
        if (!w)
                return -ENOMEM;
        *w = (CredentialsWait) {.c = c, .done = done, .userdata = userdata};
        list_append(&c->waiters, &w->link);
        if (!c->imds) {
                w->ready = true;
                w->ready_error = -ENETUNREACH;
        } else if (!force && c->current && time(NULL) + 60 < c->current->expiration)
                /* A minute of slack: a signed call must not reach AWS expired. */
                w->ready = true;
        if (w->ready)
                uv_timer_start(&c->answer, on_answer, 0, 0);
        else if (!c->fetch && !(c->expired_backoff.attempt > 0 && uv_is_active((uv_handle_t *) &c->timer))) {
                /* (else a fetch, or a retry of credentials served expired, is
                 * under way: it answers.) */
                int r = fetch(c);
                if (r < 0) {
                        wait_free(w);
                        return r;
                }
        }
        if (ret_wait)
                *ret_wait = w;
        return 0;
}

void credentials_cancel(CredentialsWait *w) {
        if (w)
                wait_free(w);
}

void credentials_keep_fresh(CredentialsCache *c, bool on) {
        c->keep_fresh = on;
        if (on)
                schedule(c, true);
        else
                uv_timer_stop(&c->timer);
}

int credentials_new(uv_loop_t *loop, ImdsClient *imds, unsigned margin_sec, CredentialsEvents events,
                    void *userdata, CredentialsCache **ret) {
        CredentialsCache *c = calloc(1, sizeof(CredentialsCache));
        if (!c)
                return -ENOMEM;
        *c = (CredentialsCache) {
                .loop = loop,
                .imds = imds,
                .margin_sec = margin_sec ? margin_sec : 900,
                .events = events,
                .userdata = userdata,
        };
        list_init(&c->waiters);
        backoff_init(&c->refresh_backoff, 15000, 240000, uv_hrtime());
        backoff_init(&c->expired_backoff, 500, 4000, uv_hrtime() ^ (uintptr_t) c);
        uv_timer_init(loop, &c->timer);
        uv_timer_init(loop, &c->answer);
        c->timer.data = c->answer.data = c;
        c->open_handles = 2;
        *ret = c;
        return 0;
}

static void handle_closed(uv_handle_t *h) {
        CredentialsCache *c = h->data;
        if (--c->open_handles > 0)
                return;
        aws_credentials_free(c->current);
        free(c->last_error);
        free(c);
}

void credentials_free(CredentialsCache *c) {
        if (!c)
                return;
        while (!list_empty(&c->waiters))
                wait_free(list_entry(c->waiters.next, CredentialsWait, link));
        imds_cancel(c->fetch);
        c->fetch = NULL;
        uv_close((uv_handle_t *) &c->timer, handle_closed);
        uv_close((uv_handle_t *) &c->answer, handle_closed);
}

time_t credentials_expiration(const CredentialsCache *c) {
        return c && c->current ? c->current->expiration : 0;
}

const char *credentials_role(const CredentialsCache *c) {
        return c && c->current ? c->current->role : NULL;
}

const char *credentials_last_error(const CredentialsCache *c) {
        return c ? c->last_error : NULL;
}
