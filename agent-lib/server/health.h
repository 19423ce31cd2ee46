/* The health server: /health, /health/live and /metrics over plain HTTP
 * on the libuv loop, for the ALB's target-group health check.
 *
 * Answers come from state the owner already holds: the owner publishes
 * the /health answer (status code and JSON) with health_publish()
 * whenever its state changes, and a probe just copies those bytes out; no
 * I/O, no work per probe.  /metrics is produced by the owner's callback.
 *
 * Hostile clients cannot stall it or grow its memory: a request must be
 * complete within HEALTH_HEADER_TIMEOUT_MS of its first byte however the
 * rest trickles in; a connection closes when no request begins within
 * HEALTH_IDLE_TIMEOUT_MS of connecting or of its last answer (so also
 * when the peer does not read its answers); while more than
 * HEALTH_MAX_QUEUED_OUTPUT bytes of answers wait for the peer to read
 * them, nothing more is read or answered on that connection; one loop
 * turn answers at most HTTPCONN_MAX_ANSWERS_PER_FEED requests per
 * connection; and at max_connections the oldest connection is dropped to
 * let a new one (a probe) in.
 *
 * The server owns its listening socket and connections; health_free()
 * closes them (memory goes in the close callbacks). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "basic/util.h"

#define HEALTH_HEADER_TIMEOUT_MS 2000
#define HEALTH_IDLE_TIMEOUT_MS 4000
#define HEALTH_MAX_CONNECTIONS 512
#define HEALTH_MAX_QUEUED_OUTPUT (64 * 1024)

typedef struct HealthServer HealthServer;

typedef struct HealthStats {
        uint64_t probes_ok;      /* /health answered 200 */
        uint64_t probes_failing; /* /health answered 503 */
        uint64_t requests;
        uint64_t rejected;       /* 4xx answers */
        uint64_t connections;    /* accepted */
        uint64_t evicted;        /* dropped at the connection cap */
        uint64_t timed_out;
        uint64_t throttled;      /* reading stopped: answers not taken */
        size_t max_queued;       /* most answer bytes queued on one connection */
        unsigned open;
} HealthStats;

typedef void (*HealthMetrics)(void *userdata, Buf *out);

/* listen is "ADDR:PORT" ([v6]:port for IPv6).  Binds and listens before
 * returning, so the caller knows the port is held. */
int health_new(uv_loop_t *loop, const char *listen, unsigned max_connections, HealthMetrics metrics,
               void *userdata, HealthServer **ret, char **ret_error);
void health_free(HealthServer *h);

/* For tests: shorter deadlines than the HEALTH_*_TIMEOUT_MS defaults. */
void health_set_timeouts(HealthServer *h, unsigned header_ms, unsigned idle_ms);

/* Replaces the /health answer. */
int health_publish(HealthServer *h, int status, const char *json);
const HealthStats *health_stats(const HealthServer *h);
/* The bound port (useful with port 0). */
int health_port(const HealthServer *h);

int parse_listen_address(const char *listen, struct sockaddr_storage *ret);
