/* The instance's place in its fleet: what EC2 and the Auto Scaling group
 * say about its end, and the lifecycle hooks it answers.
 *
 * Watching: every [lifecycle] poll_interval_ms, two IMDS GETs on the
 * cached token (a client of its own: one attempt, a short timeout, so a
 * slow IMDS never stacks polls): `meta-data/spot/instance-action` (404
 * while there is no interruption notice) and
 * `meta-data/autoscaling/target-lifecycle-state`.  The owner hears of a
 * new spot notice and of every change of the target state.
 *
 * Hooks: fleet_complete_hook() calls autoscaling:CompleteLifecycleAction
 * (Query API 2011-01-01, SigV4 with the role's credentials) for this
 * instance (its id from the identity document) in its group (the tag
 * aws:autoscaling:groupName, from IMDS tags or ec2:DescribeTags);
 * fleet_heartbeat() calls RecordLifecycleActionHeartbeat.  Transport
 * failures and throttling are retried (the AWS client's backoff, then
 * ours); AWS's refusals (e.g. ValidationError: no lifecycle action is
 * pending) are final and reported.
 *
 * The Fleet owns its IMDS client, timers and calls.  It follows the async
 * contract (README): no callback before the starting call returns;
 * fleet_free() cancels everything silently. */
#pragma once

#include <stdbool.h>
#include <uv.h>

#include "env/config.h"
#include "render/render.h"

typedef struct Fleet Fleet;

typedef struct FleetEvents {
        /* A spot interruption notice appeared: action ("terminate",
         * "stop", "hibernate") and when (ISO 8601), both plain text; or
         * (both NULL) the notice is gone again (3 polls in a row without). */
        void (*spot_notice)(const char *action, const char *time, void *userdata);
        /* The ASG's target lifecycle state changed ("InService",
         * "Terminated", ...). */
        void (*target_state)(const char *state, void *userdata);
        /* A hook call ended: error 0 or -errno, with a one-line message. */
        void (*hook_done)(const char *hook, const char *action, int error, const char *message, void *userdata);
} FleetEvents;

int fleet_new(uv_loop_t *loop, HttpLoop *http, const Config *config, const RenderSources *src,
              const FleetEvents *events, void *userdata, Fleet **ret);
void fleet_free(Fleet *f);

/* Starts polling IMDS (no-op when IMDS is disabled): the first poll in
 * first_ms, or at fleet_watch_now(), whichever comes first. */
void fleet_watch(Fleet *f, uint64_t first_ms);
/* Brings the first poll forward to now; later calls do nothing.  Accepts
 * NULL. */
void fleet_watch_now(Fleet *f);

/* result: "CONTINUE" or "ABANDON". */
int fleet_complete_hook(Fleet *f, const char *hook, const char *result);
int fleet_heartbeat(Fleet *f, const char *hook);
