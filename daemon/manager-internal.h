/* The daemon's state, shared by its two halves: manager.c (wiring: the
 * loop, signals, timers, the control socket, and executing what the
 * lifecycle decides) and publish.c (what operators and the ALB see:
 * /health, STATUS=, `status --json`, /metrics).  Nothing else includes
 * this. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>
#include <uv.h>

#include "basic/backoff.h"
#include "basic/list.h"
#include "env/config.h"
#include "fleet.h"
#include "lifecycle.h"
#include "render/render.h"
#include "server/control.h"
#include "server/health.h"
#include "systemd/units.h"

/* One lifecycle hook's completion: sent once the instance decides, retried
 * with backoff until AWS has it (or says there is nothing to complete). */
typedef struct HookCall {
        const char *what;  /* "launch" or "terminate" */
        char *name;        /* the hook, as configured when decided */
        char *result;      /* CONTINUE or ABANDON once decided */
        bool in_flight;
        bool done;
        unsigned failures;
        Backoff backoff;
        uv_timer_t retry;
} HookCall;

/* A control client waiting for the answer of a reload. */
typedef struct Waiter {
        ListLink link;
        ControlRequest *req;
} Waiter;

/* What the reload in flight did, for its summary and its waiters. */
typedef struct Report {
        uint64_t started_usec;
        char *error;
        char **changed;
        char **restarted;
        char **failed;
        ListLink waiters;
} Report;

typedef struct Manager {
        uv_loop_t *loop;
        Config *config;
        HttpLoop *http;
        RenderSources src; /* IMDS, AWS, credentials */
        UnitManager *units;
        const UnitSet *unit_set; /* the role's [units] in the live config */
        /* The units supervised: the role's manage list as the agent chose
         * it at start.  A reload's new list takes effect at the next
         * start, as the bus and the listen address do: it is warned about,
         * not half-applied (tracked, never started). */
        char **manage;
        HealthServer *health;
        ControlServer *control;

        Life life;
        LifeEvent queue[8]; /* events raised while one is being handled */
        unsigned queued;
        bool dispatching;

        bool render_in_flight;
        RenderJob *render_job; /* the render in flight, cancelled at teardown */
        bool config_loading;
        Backoff retry_backoff;
        Report report;
        ListLink next_waiters; /* asked while busy: join the next reload */

        bool operator_drain; /* `anb-agent drain` */
        char *spot_notice;   /* "ACTION at TIME" once EC2 announced an interruption */
        Fleet *fleet;
        char *heartbeat_hook; /* the hook heartbeats are sent for, or NULL */
        HookCall launch, terminate; /* [lifecycle] launch_hook, terminate_hook */
        UnitsRun *jobs;   /* the job sequence in flight (start, restart, stop) */
        bool stop_pending; /* TERMINATING: the stop could not reach systemd yet */
        char *role;
        Rendered *env;
        unsigned env_revision;
        time_t env_rendered_at;
        char *last_error;
        const char *tags_source;
        unsigned aws_calls_last_render;
        uint64_t render_count, render_failures;
        /* When the .env on disk was last written (CLOCK_REALTIME us: this
         * run's own write, else the file's mtime at the first render), and
         * the restarts made for the .env revision stale_restart_for
         * because a restart_on_change unit started before that
         * (stale_units()). */
        uint64_t env_written_usec;
        unsigned stale_restart_for, stale_restarts;
        uint64_t started_usec;
        double bootstrap_ms;
        time_t bootstrapped_at;

        int upstream_ok; /* -1 unknown, 0 failing, 1 ok */
        bool upstream_in_flight;
        int health_status;
        const char *health_state;
        json_t *health_failing;

        uv_signal_t sigterm, sigint, sighup;
        uv_timer_t retry_timer, refresh_timer, grace_timer, upstream_timer, watchdog_timer, status_timer;
        uv_timer_t abandon_timer, heartbeat_timer;
        uv_work_t config_work;
        Config *loaded_config; /* the config work's result */
        char *loaded_error;
        int loaded_r;
} Manager;

/* manager.c: the one place lifecycle events are handled (re-entry is
 * queued); the units a role selects. */
void dispatch(Manager *m, LifeEvent ev);
void choose_units(Manager *m, const char *role);
/* Whether config c gives the role another manage list than the one the
 * agent supervises. */
bool manage_changed(const Manager *m, const Config *c);
/* Whether a changed .env restarts unit: in the live config's
 * restart_on_change and among the units supervised (a unit a reload added
 * to both waits, with manage, for the next start). */
bool restarts_on_change(const Manager *m, const char *unit);
/* Those units, in restart_on_change's order (caller frees). */
char **units_to_restart(const Manager *m);
/* The restart_on_change units running on an older .env than the one on
 * disk (started before it was written: an agent restart, or a restart
 * lost with the bus, came between), space-separated; NULL if none. */
char *stale_units(Manager *m);
/* A restart for staleness starts: at most 3 per .env written. */
void stale_restart_spend(Manager *m);

/* reload.c: renders, config re-reads, reload reports and their waiters. */
bool env_on_disk(Manager *m);
void set_error(Manager *m, const char *msg);
void report_clear(Report *r);
void report_set_error(Manager *m, const char *error);
void answer_all_with(ListLink *waiters, const char *error, int exit_code);
void answer_all(ListLink *waiters, const char *error);
void reload_end(Manager *m);
void start_render(Manager *m);
void start_config_reload(Manager *m);

/* hooks.c: spot notices, the group's Terminated, the lifecycle hooks. */
void state_changed(Manager *m); /* publishes; the first 200 completes the launch hook */
void heartbeats_for(Manager *m, const char *hook);
void hook_decide(Manager *m, HookCall *h, const char *result, const char *why);
void on_abandon(uv_timer_t *t);
void on_spot_notice(const char *action, const char *when, void *userdata);
void on_target_state(const char *state, void *userdata);
void on_hook_done(const char *hook, const char *action, int error, const char *message, void *userdata);

/* publish.c */
const char *drain_reason(const Manager *m); /* NULL when not draining */
void publish_health(Manager *m);
void update_status(Manager *m);
void write_metrics(void *userdata, Buf *out);
json_t *status_json(Manager *m);
unsigned units_active(Manager *m, unsigned *ret_total);
