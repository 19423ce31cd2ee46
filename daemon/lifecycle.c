/* See lifecycle.h. */
#include "lifecycle.h"

#include <stddef.h>

static const char *const state_names[_LIFE_STATE_MAX] = {
        [LIFE_STARTING] = "starting",
        [LIFE_WAITING_BUS] = "waiting-for-bus",
        [LIFE_STARTING_UNITS] = "starting-units",
        [LIFE_RUNNING] = "running",
        [LIFE_RELOADING] = "reloading",
        [LIFE_DRAINING] = "draining",
        [LIFE_TERMINATING] = "terminating",
        [LIFE_STOPPING] = "stopping",
};

static const char *const event_names[_LIFE_EVENT_MAX] = {
        [LIFE_BEGIN] = "begin",
        [LIFE_RENDERED] = "rendered",
        [LIFE_RENDER_FAILED] = "render-failed",
        [LIFE_UNITS_DONE] = "units-done",
        [LIFE_RETRY] = "retry",
        [LIFE_RELOAD] = "reload",
        [LIFE_BUS_UP] = "bus-up",
        [LIFE_BUS_DOWN] = "bus-down",
        [LIFE_SIGTERM] = "sigterm",
        [LIFE_GRACE_OVER] = "grace-over",
        [LIFE_TERMINATE] = "terminate",
        [LIFE_HOOK_DONE] = "hook-done",
};

const char *life_state_to_string(LifeState s) {
        return s >= 0 && s < _LIFE_STATE_MAX ? state_names[s] : "?";
}

const char *life_event_to_string(LifeEventKind k) {
        return k >= 0 && k < _LIFE_EVENT_MAX ? event_names[k] : "?";
}

bool life_serving(LifeState s) {
        return s == LIFE_RUNNING || s == LIFE_RELOADING;
}

void life_init(Life *l) {
        *l = (Life) {.state = LIFE_STARTING};
}

static bool leaving(const Life *l) {
        return l->state == LIFE_DRAINING || l->state == LIFE_TERMINATING || l->state == LIFE_STOPPING;
}

static unsigned begin_reload(Life *l, bool explicit_) {
        l->state = LIFE_RELOADING;
        l->current_explicit = explicit_;
        l->restarting = false;
        return LIFE_DO_TAKE_PENDING | (explicit_ ? LIFE_DO_RELOADING | LIFE_DO_RELOAD_CONFIG : 0) | LIFE_DO_RENDER;
}

/* Back to RUNNING, or straight into the coalesced reload asked meanwhile. */
static unsigned to_running(Life *l) {
        l->state = LIFE_RUNNING;
        l->current_explicit = l->restarting = false;
        if (!l->pending)
                return 0;
        bool explicit_ = l->pending_explicit;
        l->pending = l->pending_explicit = false;
        return begin_reload(l, explicit_);
}

/* Units can be started: now if the bus is there, else when it comes. */
static unsigned start_units(Life *l) {
        if (!l->bus_up) {
                l->state = LIFE_WAITING_BUS;
                return 0;
        }
        l->state = LIFE_STARTING_UNITS;
        return LIFE_DO_START_UNITS;
}

static unsigned end_reload(Life *l) {
        return LIFE_DO_END_RELOAD | (l->current_explicit ? LIFE_DO_READY : 0);
}

static unsigned on_rendered(Life *l, const LifeEvent *ev) {
        switch (l->state) {
        case LIFE_STARTING:
                l->env_stale = false;
                return LIFE_DO_RESET_RETRY | start_units(l);
        case LIFE_RELOADING:
                if (l->restarting)
                        return 0;
                l->env_stale = false;
                if (ev->changed && ev->restarts) {
                        l->restarting = true;
                        return LIFE_DO_RESET_RETRY | LIFE_DO_RESTART_UNITS;
                }
                return LIFE_DO_RESET_RETRY | end_reload(l) | to_running(l);
        default:
                return 0;
        }
}

static unsigned on_render_failed(Life *l, const LifeEvent *ev) {
        switch (l->state) {
        case LIFE_STARTING:
                if (ev->env_exists && !l->units_started) {
                        /* Static stability: the .env a previous run left is
                         * the app's last good configuration. */
                        l->env_stale = true;
                        return LIFE_DO_ARM_RETRY | start_units(l);
                }
                return LIFE_DO_ARM_RETRY;
        case LIFE_RELOADING: {
                if (l->restarting)
                        return 0;
                unsigned a = end_reload(l) | (l->env_stale ? LIFE_DO_ARM_RETRY : 0);
                return a | to_running(l);
        }
        default:
                return 0;
        }
}

static unsigned on_units_done(Life *l) {
        switch (l->state) {
        case LIFE_STARTING_UNITS:
                l->units_started = true;
                return LIFE_DO_READY | to_running(l);
        case LIFE_RELOADING:
                if (!l->restarting)
                        return 0;
                return end_reload(l) | to_running(l);
        case LIFE_TERMINATING:
                return LIFE_DO_COMPLETE_HOOK;
        default:
                return 0;
        }
}

static unsigned on_retry(Life *l) {
        switch (l->state) {
        case LIFE_STARTING:
                return LIFE_DO_RENDER;
        case LIFE_RUNNING:
                return l->env_stale ? begin_reload(l, false) : 0;
        case LIFE_WAITING_BUS:
        case LIFE_STARTING_UNITS:
        case LIFE_RELOADING:
                /* Busy: the retry runs as soon as the daemon is idle, never
                 * dropped. */
                if (l->env_stale)
                        l->pending = true;
                return 0;
        default:
                return 0;
        }
}

static unsigned on_reload(Life *l, bool explicit_) {
        if (leaving(l))
                return LIFE_DO_REFUSE;
        if (l->state == LIFE_RUNNING)
                return begin_reload(l, explicit_);
        l->pending = true;
        l->pending_explicit = l->pending_explicit || explicit_;
        return 0;
}

unsigned life_step(Life *l, const LifeEvent *ev) {
        switch (ev->kind) {
        case LIFE_BEGIN:
                return l->state == LIFE_STARTING ? LIFE_DO_RENDER : 0;
        case LIFE_RENDERED:
                return on_rendered(l, ev);
        case LIFE_RENDER_FAILED:
                return on_render_failed(l, ev);
        case LIFE_UNITS_DONE:
                return on_units_done(l);
        case LIFE_RETRY:
                return on_retry(l);
        case LIFE_RELOAD:
                return on_reload(l, ev->explicit_);
        case LIFE_BUS_UP:
                l->bus_up = true;
                if (l->state == LIFE_WAITING_BUS)
                        return start_units(l);
                return 0;
        case LIFE_BUS_DOWN:
                l->bus_up = false;
                /* Start jobs lost with the bus are queued again when it
                 * comes back (starting a started unit is a no-op). */
                if (l->state == LIFE_STARTING_UNITS)
                        l->state = LIFE_WAITING_BUS;
                return 0;
        case LIFE_SIGTERM:
                if (l->state == LIFE_STOPPING)
                        return 0;
                if (l->state == LIFE_TERMINATING && !l->hook_done && !l->exit_after_hook) {
                        /* The group waits for the hook: answer it first
                         * (the units' stop timeouts and TimeoutStopSec
                         * bound the wait); a second SIGTERM leaves now. */
                        l->exit_after_hook = true;
                        return 0;
                }
                /* In TERMINATING /health has answered 503 since the
                 * terminate began: a drain grace now would only delay the
                 * exit the operator asked for twice. */
                if (ev->grace && l->state != LIFE_DRAINING && l->state != LIFE_TERMINATING) {
                        l->state = LIFE_DRAINING;
                        l->pending = l->pending_explicit = false;
                        return LIFE_DO_CANCEL | LIFE_DO_ARM_GRACE;
                }
                l->state = LIFE_STOPPING;
                l->pending = l->pending_explicit = false;
                return LIFE_DO_CANCEL | LIFE_DO_EXIT;
        case LIFE_GRACE_OVER:
                if (l->state != LIFE_DRAINING)
                        return 0;
                l->state = LIFE_STOPPING;
                return LIFE_DO_EXIT;
        case LIFE_HOOK_DONE:
                if (l->state != LIFE_TERMINATING)
                        return 0;
                l->hook_done = true;
                if (!l->exit_after_hook)
                        return 0;
                l->state = LIFE_STOPPING;
                return LIFE_DO_EXIT;
        case LIFE_TERMINATE:
                if (leaving(l))
                        return 0;
                l->state = LIFE_TERMINATING;
                l->pending = l->pending_explicit = false;
                return LIFE_DO_CANCEL | LIFE_DO_STOP_UNITS;
        default:
                return 0;
        }
}
