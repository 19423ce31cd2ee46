/* The daemon's side of the fleet: what it does when EC2 announces a spot
 * interruption or the Auto Scaling group a termination, and the lifecycle
 * hooks it answers -- decided once, retried until AWS has them, with
 * heartbeats meanwhile.  daemon/fleet.c does the IMDS polling and the AWS
 * calls; this file decides.  See manager.c for the wiring. */
#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "aws/credentials.h"
#include "basic/clock.h"
#include "basic/log.h"
#include "basic/util.h"
#include "manager-internal.h"

static void on_hook_retry(uv_timer_t *t);

/* ---- the fleet: spot notices, the ASG's lifecycle and its hooks ---------- */

static void on_heartbeat(uv_timer_t *t) {
        Manager *m = t->data;
        if (m->heartbeat_hook)
                fleet_heartbeat(m->fleet, m->heartbeat_hook);
}

void heartbeats_for(Manager *m, const char *hook) {
        free(m->heartbeat_hook);
        m->heartbeat_hook = hook ? strdup(hook) : NULL;
        if (m->heartbeat_hook)
                uv_timer_start(&m->heartbeat_timer, on_heartbeat, (uint64_t) m->config->hook_heartbeat_sec * 1000,
                               (uint64_t) m->config->hook_heartbeat_sec * 1000);
        else
                uv_timer_stop(&m->heartbeat_timer);
}

static const char *hook_name(const Manager *m, const HookCall *h) {
        return h == &m->launch ? m->config->launch_hook : m->config->terminate_hook;
}

static void hook_send(Manager *m, HookCall *h) {
        if (!h->name || h->done || h->in_flight || !h->result)
                return;
        /* In flight before the call: its answer may come from inside it
         * (no IMDS, say), and on_hook_done only takes a call in flight. */
        h->in_flight = true;
        int r = fleet_complete_hook(m->fleet, h->name, h->result);
        if (r < 0) {
                h->in_flight = false;
                log_error("lifecycle hook %s: cannot complete it: %s", h->name, strerror(-r));
                uv_timer_start(&h->retry, on_hook_retry, backoff_next(&h->backoff), 0);
        }
}

static void on_hook_retry(uv_timer_t *t) {
        Manager *m = t->data;
        hook_send(m, t == &m->launch.retry ? &m->launch : &m->terminate);
}

/* Decides a hook's result once; the call goes out now and is retried
 * until AWS has it. */
void hook_decide(Manager *m, HookCall *h, const char *result, const char *why) {
        const char *name = hook_name(m, h);
        if (!name || h->result)
                return;
        h->result = strdup(result);
        h->name = strdup(name); /* a reload renaming the hook meanwhile changes nothing */
        log_notice("lifecycle hook %s: %s (%s)", name, result, why);
        hook_send(m, h);
}

static void send_launch_hook(Manager *m, const char *result) {
        if (m->launch.result || !m->config->launch_hook)
                return;
        uv_timer_stop(&m->abandon_timer);
        hook_decide(m, &m->launch, result, streq(result, "CONTINUE") ? "the instance is healthy" : "not healthy in time");
}

/* Publishes the new state; the first 200 completes the launch hook. */
void state_changed(Manager *m) {
        update_status(m);
        if (m->health_status == 200 && life_serving(m->life.state))
                send_launch_hook(m, "CONTINUE");
}

void on_abandon(uv_timer_t *t) {
        Manager *m = t->data;
        log_error("not healthy %us after start ([lifecycle] abandon_after): abandoning the launch", m->config->abandon_after_sec);
        send_launch_hook(m, "ABANDON");
}

void on_spot_notice(const char *action, const char *when, void *userdata) {
        Manager *m = userdata;
        if (!action) {
                if (!m->spot_notice)
                        return;
                log_notice("the spot interruption notice (%s) is gone from IMDS: no longer draining for it",
                           m->spot_notice);
                free(m->spot_notice), m->spot_notice = NULL;
                state_changed(m);
                return;
        }
        free(m->spot_notice);
        m->spot_notice = strdup_printf("%s at %s", action, when);
        log_warning("spot interruption notice: %s at %s; /health answers 503 (draining)", action, when);
        state_changed(m);
}

void on_target_state(const char *state, void *userdata) {
        Manager *m = userdata;
        log_notice("Auto Scaling target lifecycle state: %s", state);
        if (!streq(state, "Terminated"))
                return;
        log_warning("the Auto Scaling group terminates this instance: draining (503), stopping the units%s",
                    m->config->terminate_hook ? ", then completing the terminate hook" : "");
        if (m->config->terminate_hook)
                heartbeats_for(m, m->config->terminate_hook);
        dispatch(m, (LifeEvent) {.kind = LIFE_TERMINATE});
}

void on_hook_done(const char *hook, const char *action, int error, const char *message, void *userdata) {
        Manager *m = userdata;
        if (m->life.state == LIFE_STOPPING)
                return;
        bool heartbeat = streq(action, "heartbeat");
        bool nothing_pending = error && message && strstr(message, "ValidationError");
        if (!error)
                log_notice("lifecycle hook %s: %s sent", hook, heartbeat ? "heartbeat" : action);
        else if (nothing_pending)
                log_notice("lifecycle hook %s: %s: AWS says no lifecycle action is pending (%s)", hook, action, message);
        else
                log_error("lifecycle hook %s: %s failed: %s", hook, action, message ? message : strerror(-error));
        if (heartbeat)
                return;
        HookCall *h = streq_ptr(hook, m->launch.name) && m->launch.in_flight       ? &m->launch
                      : streq_ptr(hook, m->terminate.name) && m->terminate.in_flight ? &m->terminate
                                                                                      : NULL;
        if (!h)
                return;
        h->in_flight = false;
        /* Answered, or nothing to answer: done.  Else ask again, unless the
         * terminate hook keeps failing while the agent waits to exit. */
        if (!error || nothing_pending || (h == &m->terminate && ++h->failures >= 5)) {
                h->done = true;
                if (streq_ptr(m->heartbeat_hook, hook))
                        heartbeats_for(m, NULL);
                if (h == &m->terminate)
                        dispatch(m, (LifeEvent) {.kind = LIFE_HOOK_DONE});
                return;
        }
        uint64_t delay = backoff_next(&h->backoff);
        log_notice("lifecycle hook %s: asking again in %.1fs", hook, (double) delay / 1000.0);
        uv_timer_start(&h->retry, on_hook_retry, delay, 0);
}

