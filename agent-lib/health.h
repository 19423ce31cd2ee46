/* The health server: /health, /health/live and /metrics over plain HTTP
 * on the libuv loop, for the ALB's target-group health check.
 *
 * Answers come from state the owner already holds: the owner publishes
 * the /health answer (status code and JSON) with health_publish()
 * whenever its state changes, and a probe just copies those bytes out; no
 * I/O, no work per probe.  /metrics is produced by the owner's callback.
 *
 * Hostile clients cannot stall it: a request must arrive within
 * HEALTH_HEADER_TIMEOUT_MS of its first byte, an idle keep-alive
 * connection closes after HEALTH_IDLE_TIMEOUT_MS, and at max_connections
 * the oldest connection is dropped to let a new one (a probe) in.
 *
 * The server owns its listening socket and connections; health_free()
 * closes them (memory goes in the close callbacks). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "util.h"

#define HEALTH_HEADER_TIMEOUT_MS 2000
#define HEALTH_IDLE_TIMEOUT_MS 4000
#define HEALTH_MAX_CONNECTIONS 512

typedef struct HealthServer HealthServer;

typedef struct HealthStats {
        uint64_t probes_ok;      /* /health answered 200 */
        uint64_t probes_failing; /* /health answered 503 */
        uint64_t requests;
        uint64_t rejected;       /* 4xx answers */
        uint64_t connections;    /* accepted */
        uint64_t evicted;        /* dropped at the connection cap */
        uint64_t timed_out;
        unsigned open;
} HealthStats;

typedef void (*HealthMetrics)(void *userdata, Buf *out);

/* listen is "ADDR:PORT" ([v6]:port for IPv6).  Binds and listens before
 * returning, so the caller knows the port is held. */
int health_new(uv_loop_t *loop, const char *listen, unsigned max_connections, HealthMetrics metrics,
               void *userdata, HealthServer **ret, char **ret_error);
void health_free(HealthServer *h);

/* Replaces the /health answer. */
int health_publish(HealthServer *h, int status, const char *json);
const HealthStats *health_stats(const HealthServer *h);
/* The bound port (useful with port 0). */
int health_port(const HealthServer *h);

int parse_listen_address(const char *listen, struct sockaddr_storage *ret);
