/* raft/core_int.h: internals of the pure Raft core, shared by raft/core.c,
 * raft/log.c and raft/replication.c. Not part of the public API. */
#ifndef RAFT_CORE_INT_H
#define RAFT_CORE_INT_H

#include "base/base.h"
#include "raft/raft.h"

/* Upper bound for options.max_inflight: the per-follower ring is inline so that
 * configuration changes never allocate one. */
#define RAFT__INFLIGHT_MAX 64

/* In-memory log. entries[k] is the entry at index offset+1+k. Each entry's buffer
 * is owned (cm_malloc, NULL when empty). Entries at or below the snapshot index
 * may be kept as trailing entries for lagging followers. */
struct raft__log {
    raft_index offset;
    unsigned n;
    unsigned cap;
    struct raft_entry *entries;
};

enum raft__progress_state {
    RAFT__PROBE = 0,    /* one AppendEntries at a time until next_index is found */
    RAFT__PIPELINE = 1, /* optimistic next_index, up to max_inflight in flight */
    RAFT__SNAPSHOT = 2, /* sending InstallSnapshot chunks, one at a time */
};

/* What the leader knows about one server of the configuration (Raft §5.3 Fig. 2
 * nextIndex/matchIndex); candidates reuse it to count votes. */
struct raft__progress {
    raft_id id;
    raft_index next;
    raft_index match;
    uint8_t state;          /* enum raft__progress_state */
    bool paused;            /* probe: an AppendEntries is outstanding */
    bool recent;            /* heard from since the last check-quorum round */
    bool granted;           /* candidate: vote (or pre-vote) granted */
    uint64_t acked_seq;     /* highest heartbeat round acknowledged (§6.4) */
    raft_time last_advance; /* pipeline: when match last moved */
    /* pipeline: last index carried by each outstanding AppendEntries (ring) */
    raft_index inflight[RAFT__INFLIGHT_MAX];
    unsigned in_head;
    unsigned in_count;
    /* snapshot: which snapshot and how much of it the follower has */
    raft_index snap_index;
    uint64_t snap_offset;
    raft_time snap_sent;
};

struct raft__read {
    uint64_t id;
    uint64_t seq;     /* heartbeat round that must be acknowledged by a quorum */
    raft_index index; /* commit index recorded at the request */
};

struct raft {
    struct raft_options o;
    struct cm_rng rng;
    bool started;

    /* Durable state (Raft §5.1 Fig. 2). */
    raft_term term;
    raft_id voted_for;

    /* Volatile state. */
    enum raft_role role;
    raft_id leader;
    raft_time now;
    raft_index commit;
    raft_index applied;   /* handed to the host in update->apply */
    raft_index persisted; /* local log durable up to here */

    struct raft__log log;

    /* Latest snapshot. */
    struct {
        raft_index index;
        raft_term term;
        struct raft_config config;
        raft_index config_index;
        uint64_t size;
        bool requested; /* update->snapshot_at sent, SNAPSHOT_TAKEN pending */
    } snap;

    /* Latest configuration in the log (possibly uncommitted, thesis §4.1). */
    struct raft_config config;
    raft_index config_index;

    /* One entry per server of config (same order), capacity progress_cap. */
    struct raft__progress *progress;
    unsigned progress_cap;

    /* Timers. */
    raft_time election_start;   /* follower/candidate: timer reset */
    unsigned election_timeout;  /* randomized in [election, 2*election) */
    raft_time leader_contact;   /* follower: last message from the leader */
    raft_time heartbeat_due;    /* leader: next heartbeat round */
    raft_time quorum_check_due; /* leader: next check-quorum round */

    /* Follower: replies to the current leader. */
    raft_index match_hint; /* our log matches the leader's up to here (this term) */
    uint64_t leader_seq;   /* last heartbeat round seen from the leader */

    /* Leader. */
    raft_index term_start;  /* index of the barrier appended on election */
    uint64_t seq;           /* heartbeat round counter */
    raft_id transfer_to;    /* leadership transfer target, 0 none */
    raft_time transfer_due; /* give up then */
    bool transfer_sent;     /* TIMEOUT_NOW already sent */

    /* ReadIndex requests waiting for their heartbeat round (§6.4). */
    struct raft__read *reads;
    unsigned n_reads;
    unsigned reads_cap;

    /* Receiving a snapshot. */
    struct {
        raft_index index;
        raft_term term;
        uint64_t next_offset;
        void *buf; /* copy of the current chunk */
        size_t buf_cap;
    } recv;

    /* The update being built by the current step. */
    struct raft_update *out;
    raft_index out_append_from; /* lowest index written this step, 0 none */
    struct raft_message *msgs;
    raft_index *msg_first; /* per message: index of its first entry */
    unsigned n_msgs;
    unsigned msgs_cap;
    struct raft_read_result *read_out;
    unsigned read_out_cap;
};

/* ------------------------------------------------------------ log (log.c) */

raft_index raft__log_last(const struct raft__log *l);
/* The entry at @index or NULL when it is not in memory. */
struct raft_entry *raft__log_get(const struct raft__log *l, raft_index index);
/* Make room for @n more entries. 0 or CM_ENOMEM. */
int raft__log_reserve(struct raft__log *l, unsigned n);
/* Append (after raft__log_reserve): takes the buffer. */
void raft__log_push(struct raft__log *l, const struct raft_entry *e);
/* Drop entries >= @index. */
void raft__log_truncate(struct raft__log *l, raft_index index);
/* Drop entries <= @index. */
void raft__log_compact(struct raft__log *l, raft_index index);
/* Drop everything; the next entry will be @index+1. */
void raft__log_reset(struct raft__log *l, raft_index index);
void raft__log_close(struct raft__log *l);

/* Deep copy of an entry's buffer. */
int raft__entry_copy(const struct raft_entry *src, struct raft_entry *dst);

/* ------------------------------------------------------------ config.c */

/* The role of @id in an encoded configuration, 0 when absent or malformed.
 * Never allocates. */
uint8_t raft__config_role_in(const void *data, size_t len, raft_id id);

/* ------------------------------------------------------------ core.c */

void raft__tracef(struct raft *r, const char *fmt, ...) CM_PRINTF(2, 3);
raft_index raft__last_index(const struct raft *r);
raft_term raft__last_term(const struct raft *r);
/* Term of the entry at @index; false when unknown (compacted). */
bool raft__term_at(const struct raft *r, raft_index index, raft_term *ret);
/* Queue a message; returns it (to be filled) or NULL when the buffer is full
 * (then the message is lost, which Raft tolerates). */
struct raft_message *raft__send(struct raft *r, uint8_t type, raft_id to);
void raft__become_follower(struct raft *r, raft_term term, raft_id leader);
void raft__reset_election_timer(struct raft *r);
bool raft__is_voter(const struct raft *r, raft_id id);
struct raft__progress *raft__progress_get(struct raft *r, raft_id id);
int raft__progress_reserve(struct raft *r, unsigned n);
/* Replace the configuration (progress already reserved); takes ownership. */
void raft__config_set(struct raft *r, struct raft_config *c, raft_index index);
/* The configuration in force at @index (>= snapshot index). */
int raft__config_at(const struct raft *r, raft_index index, struct raft_config *ret,
                    raft_index *ret_index);

/* ------------------------------------------------------------ replication.c */

void raft__leader_init(struct raft *r);
void raft__heartbeat(struct raft *r);
void raft__send_append(struct raft *r, struct raft__progress *pr, bool heartbeat);
void raft__replicate_all(struct raft *r);
void raft__maybe_commit(struct raft *r);
void raft__fail_reads(struct raft *r);
void raft__reads_check(struct raft *r);
/* What an AppendEntries will do to the log, computed (and allocated) before
 * any state changes so that CM_ENOMEM leaves the core untouched. */
struct raft__append_plan {
    bool match;       /* the log matched at prev_index */
    raft_index first; /* index of copies[0] */
    bool truncate;    /* entries >= first conflict and go */
    unsigned n_copies;
    struct raft_entry *copies; /* owned until applied */
    bool has_config;           /* the configuration changes to @config */
    struct raft_config config;
    raft_index config_index;
};
int raft__append_prepare(struct raft *r, const struct raft_message *m,
                         struct raft__append_plan *p);
void raft__append_plan_close(struct raft__append_plan *p);
void raft__recv_append(struct raft *r, const struct raft_message *m,
                       struct raft__append_plan *p);
/* Likewise for InstallSnapshot: copies the chunk and, on the last one, the
 * configuration. */
struct raft__snapshot_plan {
    bool has_config;
    struct raft_config config;  /* for the snapshot */
    struct raft_config current; /* for the configuration in force */
};
int raft__snapshot_prepare(struct raft *r, const struct raft_message *m,
                           struct raft__snapshot_plan *p);
void raft__recv_append_result(struct raft *r, const struct raft_message *m);
void raft__recv_snapshot(struct raft *r, const struct raft_message *m,
                         struct raft__snapshot_plan *p);
void raft__recv_snapshot_result(struct raft *r, const struct raft_message *m);
void raft__persisted(struct raft *r, raft_index index, raft_term term);
int raft__snapshot_taken(struct raft *r, raft_index index, uint64_t size);
int raft__submit(struct raft *r, const struct raft_entry *entries, unsigned n);
int raft__change(struct raft *r, const struct raft_event *ev);
int raft__read_index(struct raft *r, uint64_t id);
void raft__config_committed(struct raft *r);

#endif /* RAFT_CORE_INT_H */
