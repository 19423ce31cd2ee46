/* See credentials.h. */
#include "credentials.h"

#include <errno.h>
#include <stdio.h>

#include "log.h"
#include "util.h"

typedef struct Waiter {
        CredentialsDone done;
        void *userdata;
        struct Waiter *next;
} Waiter;

struct CredentialsCache {
        uv_loop_t *loop;
        ImdsClient *imds;
        unsigned margin_sec;
        CredentialsEvents events;
        void *userdata;
        AwsCredentials *current;
        bool fetching;
        bool keep_fresh;
        bool freeing;
        unsigned retry_attempt;
        Waiter *waiters;
        char *last_error;
        uv_timer_t timer;
};

static void fetch(CredentialsCache *c);

static bool valid(const CredentialsCache *c) {
        return c->current && time(NULL) < c->current->expiration;
}

static void on_timer(uv_timer_t *t) {
        fetch(t->data);
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
        unsigned n = c->retry_attempt < 4 ? c->retry_attempt : 4;
        uint64_t delay = 15000ULL << n; /* 15 s ... 240 s */
        c->retry_attempt++;
        if (c->current) {
                int64_t left = (int64_t) c->current->expiration - (int64_t) time(NULL);
                if (left > 2 && (uint64_t) left * 1000 / 2 < delay)
                        delay = (uint64_t) left * 1000 / 2;
        }
        uv_timer_start(&c->timer, on_timer, delay, 0);
}

static void answer(CredentialsCache *c, int error, const char *message) {
        Waiter *w = c->waiters;
        c->waiters = NULL;
        while (w) {
                Waiter *next = w->next;
                w->done(error, message, error ? NULL : c->current, w->userdata);
                free(w);
                w = next;
        }
}

static void on_fetched(int error, const char *message, AwsCredentials *creds, void *userdata) {
        CredentialsCache *c = userdata;
        c->fetching = false;
        if (error == -ECANCELED || c->freeing) {
                aws_credentials_free(creds);
                return;
        }
        if (!error) {
                bool renewed = !c->current || creds->expiration > c->current->expiration;
                aws_credentials_free(c->current);
                c->current = creds;
                free(c->last_error);
                c->last_error = NULL;
                c->retry_attempt = 0;
                if (c->events && renewed)
                        c->events(CREDENTIALS_REFRESHED, NULL, creds->expiration, c->userdata);
                schedule(c, renewed);
                answer(c, 0, NULL);
                return;
        }
        free(c->last_error);
        c->last_error = strdup(message ? message : strerror(-error));
        if (valid(c)) {
                /* Static stability: the ones we have still work. */
                if (c->events)
                        c->events(CREDENTIALS_REFRESH_FAILED, c->last_error, c->current->expiration, c->userdata);
                if (c->keep_fresh)
                        schedule_retry(c);
                answer(c, 0, NULL);
                return;
        }
        if (c->current && c->events)
                c->events(CREDENTIALS_EXPIRED, c->last_error, c->current->expiration, c->userdata);
        if (c->keep_fresh)
                schedule_retry(c);
        _cleanup_free_ char *msg = strdup_printf("cannot get the instance role's credentials from IMDS: %s",
                                                 c->last_error);
        answer(c, error, msg ? msg : c->last_error);
}

static void fetch(CredentialsCache *c) {
        if (c->fetching)
                return;
        c->fetching = true;
        int r = imds_fetch_credentials(c->imds, on_fetched, c);
        if (r < 0)
                on_fetched(r, strerror(-r), NULL, c);
}

int credentials_get(CredentialsCache *c, bool force, CredentialsDone done, void *userdata) {
        if (!c->imds) {
                done(-ENETUNREACH, "IMDS is disabled, so there are no role credentials", NULL, userdata);
                return 0;
        }
        /* A minute of slack: a signed call must not reach AWS expired. */
        if (!force && c->current && time(NULL) + 60 < c->current->expiration) {
                done(0, NULL, c->current, userdata);
                return 0;
        }
        Waiter *w = calloc(1, sizeof(Waiter));
        if (!w)
                return -ENOMEM;
        *w = (Waiter) {done, userdata, c->waiters};
        c->waiters = w;
        fetch(c);
        return 0;
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
        uv_timer_init(loop, &c->timer);
        c->timer.data = c;
        *ret = c;
        return 0;
}

static void timer_closed(uv_handle_t *h) {
        CredentialsCache *c = h->data;
        aws_credentials_free(c->current);
        free(c->last_error);
        free(c);
}

void credentials_free(CredentialsCache *c) {
        if (!c)
                return;
        c->freeing = true;
        answer(c, -ECANCELED, "cancelled");
        uv_timer_stop(&c->timer);
        uv_close((uv_handle_t *) &c->timer, timer_closed);
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
