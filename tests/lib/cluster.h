/* tests/lib/cluster.h: a deterministic simulator for raft cores (STYLE.md rule
 * 4, after cowsql/raft's test/lib/cluster.h).
 *
 * Up to CLUSTER_MAX nodes run on one virtual clock. Each node has:
 *  - an in-memory disk: hard state (durable at once), a log whose appends
 *    become durable after a configurable virtual delay (a crash loses the ones
 *    still pending), and a snapshot;
 *  - a state machine: a running hash over the applied entries; its snapshot is
 *    a serialisation of that hash padded to a size that spans several chunks.
 * The network delivers messages after a per-link random delay, with optional
 * loss, duplication (and so reordering), and partitions.
 *
 * After every step the harness checks: at most one leader per term; log
 * matching (same index and term => same entry and same previous term); leader
 * completeness; state machine safety (same hash after applying an index on
 * every node); commit index never decreasing during one incarnation; reads
 * never older than what was committed when they were asked. A failed check
 * prints the seed and the tail of the trace and fails the running test.
 *
 * Everything is deterministic for a given seed. */
#ifndef CM_TEST_CLUSTER_H
#define CM_TEST_CLUSTER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "raft/raft.h"

#define CLUSTER_MAX 7

struct cluster;

struct cluster_options {
    unsigned n;             /* servers that exist (ids 1..n), at most CLUSTER_MAX */
    unsigned voters;        /* the first @voters are bootstrapped as voters;
                               the others start empty, to be added later */
    uint64_t seed;          /* PRNG seed of the network, disks and cores */
    unsigned net_delay_min; /* ms, default link delay range */
    unsigned net_delay_max;
    unsigned disk_delay_min; /* ms, time until an append is durable */
    unsigned disk_delay_max;
    unsigned snapshot_pad;    /* extra bytes in each state-machine snapshot */
    struct raft_options raft; /* template; id, seed and tracer are set per node */
    bool trace_stdout;        /* print every trace line as it happens */
    bool capture;             /* cluster_capture(c, true) from the start */
    bool peer_lost_on_crash;  /* a crash tells the nodes it can reach, as a TCP
                                 transport would (RAFT_EVENT_PEER_LOST) */
};

/* Defaults: 3 voters, delays 5-15 ms network and 1-5 ms disk, raft defaults. */
void cluster_options_default(struct cluster_options *o);

struct cluster *cluster_new(const struct cluster_options *o);
void cluster_free(struct cluster *c);

/* The virtual time in ms. */
raft_time cluster_now(const struct cluster *c);
/* Process the next thing that happens (a message delivery, a disk write
 * completing, a snapshot finishing, a timer). Returns false when nothing at
 * all is pending (cannot happen while a node is up). */
bool cluster_step(struct cluster *c);
/* Step until @ms of virtual time have passed. */
void cluster_run(struct cluster *c, raft_time ms);
/* Step until @pred holds or @ms passed; returns whether it holds. */
bool cluster_run_until(struct cluster *c, bool (*pred)(struct cluster *c, void *arg),
                       void *arg, raft_time ms);

/* Feed node @to a RAFT_EVENT_PEER_LOST for @from (a false alarm when @from is
 * alive: what a connection reset does). */
void cluster_peer_lost(struct cluster *c, raft_id to, raft_id from);

/* The leader with the highest term among running nodes, 0 if none. */
raft_id cluster_leader(const struct cluster *c);
/* The core of node @id (NULL when down). */
struct raft *cluster_raft(struct cluster *c, raft_id id);
bool cluster_is_up(const struct cluster *c, raft_id id);
/* Number of entries node @id has applied. */
raft_index cluster_applied(const struct cluster *c, raft_id id);
/* Highest index known committed anywhere. */
raft_index cluster_committed(const struct cluster *c);

/* Operations on the current leader (or @id). Each returns the raft_step
 * result (0, CM_ENOTLEADER, CM_EBUSY, ...). */
int cluster_submit(struct cluster *c, raft_id id, unsigned n, raft_index *ret_index);
int cluster_change(struct cluster *c, raft_id id, uint8_t op, raft_id target);
int cluster_transfer(struct cluster *c, raft_id id, raft_id target);
int cluster_read(struct cluster *c, raft_id id, uint64_t *ret_read_id);
/* Reads answered so far (status 0) and failed (CM_ENOTLEADER). */
unsigned cluster_reads_done(const struct cluster *c);
unsigned cluster_reads_failed(const struct cluster *c);

/* Failures. */
void cluster_crash(struct cluster *c, raft_id id);
/* Start node @id again from its disk (or for the first time). */
void cluster_start(struct cluster *c, raft_id id);
/* Cut every link between @group (n ids) and the rest. */
void cluster_partition(struct cluster *c, const raft_id *group, unsigned n);
/* Cut or restore the link from @a to @b (one direction). */
void cluster_cut(struct cluster *c, raft_id a, raft_id b, bool cut);
/* Loss and duplication in per mille on every link; 0 to stop. */
void cluster_set_faults(struct cluster *c, unsigned loss, unsigned dup);
void cluster_set_delay(struct cluster *c, unsigned min, unsigned max);
/* Restore every link and stop loss and duplication. */
void cluster_heal(struct cluster *c);

/* Liveness check: heal everything, start every server in the configuration and
 * require a leader within @leader_ms and every committed entry applied on
 * every member within @apply_ms. Fails the test otherwise. */
void cluster_check_converges(struct cluster *c, raft_time leader_ms, raft_time apply_ms);

/* Trace: every line is "<time> <node>: <text>" (node 0 for the harness). */
void cluster_tracef(struct cluster *c, raft_id id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Capture every trace line (not only the ring) into a growing buffer, for
 * golden tests; returns the text captured so far (borrowed). */
void cluster_capture(struct cluster *c, bool on);
const char *cluster_captured(const struct cluster *c);
/* Forget what was captured so far. */
void cluster_capture_reset(struct cluster *c);
/* Print the seed and the last @n lines of the trace. */
void cluster_dump(const struct cluster *c, FILE *f, unsigned n);
/* Record a violation: dump and fail the running test. */
_Noreturn void cluster_fail(struct cluster *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
