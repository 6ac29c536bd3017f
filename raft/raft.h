/* raft/: consensus for clusterctl (DESIGN.md §4).
 *
 * Three layers behind this one header:
 *
 *  1. The core (struct raft): a pure state machine. No I/O, no clock reads, no
 *     unseeded randomness. The host feeds events with raft_step() and carries out
 *     the update it gets back. Modelled on cowsql/raft's raft_step().
 *  2. Storage (struct raft_store): raft.db in SQLite (WAL), term/vote, the log,
 *     snapshots on disk; group commit; I/O fault injection for tests.
 *  3. Codec and transport (struct raft_transport): versioned, length-prefixed
 *     binary frames over TCP on libev, with reconnect and backoff.
 *
 * Errors are negative cm_err codes (lib/base). Unless said otherwise, pointers
 * passed in are borrowed for the duration of the call, and pointers handed out in
 * a struct raft_update are owned by the core and valid until the next raft_step()
 * or raft_free() on the same object.
 *
 * Thread safety: none; each object is used from one thread.
 */
#ifndef RAFT_H
#define RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cm_buf;
struct cm_errbuf;

typedef uint64_t raft_id;    /* server id, never 0 */
typedef uint64_t raft_term;  /* election term */
typedef uint64_t raft_index; /* log index, first entry is 1; 0 means none */
typedef uint64_t raft_time;  /* milliseconds of the host's monotonic clock */

#define RAFT_ADDRESS_MAX 64 /* "host:port" including the terminator */

/* ======================================================================= data */

struct raft_buffer {
    void *base;
    size_t len;
};

enum raft_entry_type {
    RAFT_COMMAND = 1, /* an opaque state-machine command */
    RAFT_BARRIER = 2, /* no-op a new leader appends to commit its term (§5.4.2) */
    RAFT_CHANGE = 3,  /* a membership configuration (raft_config_encode) */
};

/* One log entry. Its index is implied by its position. */
struct raft_entry {
    raft_term term;
    uint8_t type; /* enum raft_entry_type */
    struct raft_buffer buf;
};

enum raft_member_role {
    RAFT_VOTER = 1,   /* counts for elections and commitment */
    RAFT_LEARNER = 2, /* receives the log, never votes */
};

struct raft_server {
    raft_id id;
    uint8_t role; /* enum raft_member_role */
    char address[RAFT_ADDRESS_MAX];
};

/* A membership configuration. Owns its servers array (cm_malloc). */
struct raft_config {
    unsigned n;
    struct raft_server *servers;
};

/* Add a server. Errors: CM_EEXIST (id or address taken), CM_EINVAL (id 0, bad
 * role, address too long), CM_ENOMEM. */
int raft_config_add(struct raft_config *c, raft_id id, const char *address,
                    enum raft_member_role role);
/* Remove @id. Errors: CM_ENOTFOUND. */
int raft_config_remove(struct raft_config *c, raft_id id);
/* The server with @id, or NULL. Borrowed until @c changes. */
const struct raft_server *raft_config_get(const struct raft_config *c, raft_id id);
unsigned raft_config_voter_count(const struct raft_config *c);
/* Deep copy into *ret (untouched on failure). Errors: CM_ENOMEM. */
int raft_config_copy(const struct raft_config *src, struct raft_config *ret);
/* Free the servers; @c becomes empty. */
void raft_config_close(struct raft_config *c);
/* Serialise into a new buffer (cm_malloc; caller frees ret->base). */
int raft_config_encode(const struct raft_config *c, struct raft_buffer *ret);
/* Parse untrusted bytes. Errors: CM_EMALFORMED, CM_ETRUNC, CM_ETOOBIG, CM_ENOMEM. */
int raft_config_decode(const void *data, size_t len, struct raft_config *ret);

/* ======================================================================= messages */

enum raft_msg_type {
    RAFT_MSG_APPEND = 1,          /* AppendEntries (also heartbeat) */
    RAFT_MSG_APPEND_RESULT = 2,   /* its answer */
    RAFT_MSG_VOTE = 3,            /* RequestVote, or pre-vote (§9.6) */
    RAFT_MSG_VOTE_RESULT = 4,     /* its answer */
    RAFT_MSG_SNAPSHOT = 5,        /* InstallSnapshot, one chunk */
    RAFT_MSG_SNAPSHOT_RESULT = 6, /* its answer */
    RAFT_MSG_TIMEOUT_NOW = 7,     /* leadership transfer: start an election now */
};

struct raft_append {
    raft_term term;
    raft_index prev_index;
    raft_term prev_term;
    raft_index commit; /* leader's commit index */
    uint64_t seq;      /* heartbeat round, echoed back (ReadIndex, §6.4) */
    unsigned n_entries;
    struct raft_entry *entries; /* entries prev_index+1 ... */
};

struct raft_append_result {
    raft_term term;
    uint8_t rejected;        /* 0: accepted; 1: log did not match at prev_index */
    raft_index last_index;   /* accepted: the follower's match index (durable);
                                rejected: a hint, the follower's last log index
                                or lower (the last entry whose term is not
                                newer than prev_term) */
    raft_index reject_index; /* rejected: the prev_index that did not match */
    uint64_t seq;            /* echoed from the request */
};

struct raft_vote {
    raft_term term; /* for a pre-vote: the term the candidate would use */
    raft_index last_index;
    raft_term last_term;
    uint8_t pre_vote; /* 1: pre-vote, changes no state on the receiver */
    uint8_t disrupt;  /* 1: after TimeoutNow; voters ignore their leader lease */
};

struct raft_vote_result {
    raft_term term;
    uint8_t granted;
    uint8_t pre_vote; /* echoed */
};

/* One chunk of a snapshot. On the sending side the core leaves chunk.base NULL
 * and sets chunk.len: the host fills in bytes [offset, offset+len) of its
 * snapshot at last_index before sending (and drops the message if it no longer
 * has that snapshot). On the receiving side chunk holds the bytes. */
struct raft_snapshot_msg {
    raft_term term;
    raft_index last_index;
    raft_term last_term;
    struct raft_config config; /* membership at last_index */
    raft_index config_index;   /* index of that configuration's entry */
    uint64_t size;             /* total snapshot size in bytes */
    uint64_t offset;           /* of this chunk */
    struct raft_buffer chunk;
    uint8_t done; /* 1: last chunk */
};

struct raft_snapshot_result {
    raft_term term;
    raft_index last_index; /* of the snapshot being installed */
    uint64_t next_offset;  /* bytes received so far; 0 restarts the transfer */
    uint8_t rejected;      /* 1: chunk not taken (out of order: resume at
                              next_offset; or a stale term) */
};

struct raft_timeout_now {
    raft_term term;
    raft_index last_index;
    raft_term last_term;
};

struct raft_message {
    uint8_t type; /* enum raft_msg_type */
    raft_id from; /* outgoing: the core fills it; incoming: the transport's
                     authenticated peer id */
    raft_id to;
    union {
        struct raft_append append;
        struct raft_append_result append_result;
        struct raft_vote vote;
        struct raft_vote_result vote_result;
        struct raft_snapshot_msg snapshot;
        struct raft_snapshot_result snapshot_result;
        struct raft_timeout_now timeout_now;
    };
};

/* ======================================================================= core */

enum raft_role {
    RAFT_FOLLOWER = 0,     /* follows a leader, or waits for one */
    RAFT_PRECANDIDATE = 1, /* [transient] asking for pre-votes */
    RAFT_CANDIDATE = 2,    /* [transient] asking for votes */
    RAFT_LEADER = 3,       /* replicates and commits */
};

/* Tracer: cores trace, they do not log (STYLE.md rule 16). @msg is one line. */
struct raft_tracer {
    void *data;
    void (*emit)(void *data, raft_id id, raft_time now, const char *msg);
};

struct raft_options {
    raft_id id;                    /* this server */
    uint64_t seed;                 /* PRNG seed for election timeouts */
    unsigned heartbeat_ms;         /* default 100 */
    unsigned election_ms;          /* timeout is random in [election, 2*election),
                                      default 1000 */
    unsigned max_append_entries;   /* per AppendEntries, default 512 */
    size_t max_append_bytes;       /* per AppendEntries, default 1 MiB */
    unsigned max_inflight;         /* pipelined AppendEntries per follower, default 32 */
    raft_index snapshot_threshold; /* applied entries between snapshots, default 8192 */
    raft_index snapshot_trailing;  /* entries kept after a snapshot, default 2048 */
    size_t snapshot_chunk;         /* InstallSnapshot chunk size, default 256 KiB */
    bool disable_pre_vote;         /* pre-vote is on unless set */
    bool disable_check_quorum;     /* check-quorum is on unless set */
    struct raft_tracer tracer;     /* optional */
};

/* Fill @o with the defaults above (id and seed 0). */
void raft_options_default(struct raft_options *o);

/* Durable state the host loaded from storage, handed to raft_start(). */
struct raft_load {
    raft_term term;
    raft_id voted_for;
    /* Latest snapshot; snapshot_index 0 means none. */
    raft_index snapshot_index;
    raft_term snapshot_term;
    struct raft_config snapshot_config;
    raft_index snapshot_config_index;
    uint64_t snapshot_size;
    /* Log entries first_index .. first_index+n_entries-1 (copied by the core).
     * first_index may be <= snapshot_index (trailing entries). */
    raft_index first_index;
    unsigned n_entries;
    const struct raft_entry *entries;
    /* Highest index the state machine has already applied (it survives restarts
     * in state.db); the core will not hand out entries at or below it again. */
    raft_index applied_index;
};

enum raft_event_type {
    RAFT_EVENT_TICK = 1,           /* time passed; nothing else */
    RAFT_EVENT_RECEIVE = 2,        /* a message arrived */
    RAFT_EVENT_PERSISTED = 3,      /* log entries are durable up to an index */
    RAFT_EVENT_SNAPSHOT_TAKEN = 4, /* the host took and stored a snapshot */
    RAFT_EVENT_SUBMIT = 5,         /* propose entries (leader only) */
    RAFT_EVENT_CHANGE = 6,         /* propose a membership change (leader only) */
    RAFT_EVENT_TRANSFER = 7,       /* hand leadership over (leader only) */
    RAFT_EVENT_READ_INDEX = 8,     /* start a linearizable read (leader only) */
    RAFT_EVENT_PEER_LOST = 9,      /* the transport lost its connection from a peer */
};

enum raft_change_op {
    RAFT_CHANGE_ADD_LEARNER = 1, /* new server as a learner */
    RAFT_CHANGE_PROMOTE = 2,     /* learner -> voter */
    RAFT_CHANGE_DEMOTE = 3,      /* voter -> learner */
    RAFT_CHANGE_REMOVE = 4,      /* drop the server */
};

struct raft_event {
    uint8_t type;  /* enum raft_event_type */
    raft_time now; /* the host's monotonic time, never decreasing */
    union {
        /* RECEIVE: borrowed for the call; the core copies what it keeps. */
        struct raft_message receive;
        /* PERSISTED: every entry up to @index is durable; @term is the term of
         * the entry at @index (so a persisted event for a since-truncated
         * entry is recognised and ignored). */
        struct {
            raft_index index;
            raft_term term;
        } persisted;
        /* SNAPSHOT_TAKEN: a snapshot of the state machine at @index (an applied
         * index, >= the one asked for in update->snapshot_at) of @size bytes
         * is durable. */
        struct {
            raft_index index;
            uint64_t size;
        } snapshot;
        /* SUBMIT: entries of type RAFT_COMMAND (or RAFT_BARRIER); copied. */
        struct {
            unsigned n;
            const struct raft_entry *entries;
        } submit;
        /* CHANGE */
        struct {
            uint8_t op; /* enum raft_change_op */
            raft_id id;
            char address[RAFT_ADDRESS_MAX]; /* ADD_LEARNER only */
        } change;
        /* TRANSFER: 0 picks the most up-to-date voter. */
        struct {
            raft_id id;
        } transfer;
        /* READ_INDEX: @id is the host's handle, returned in update->reads. */
        struct {
            uint64_t id;
        } read;
        /* PEER_LOST: the connection @id had opened to us closed (its process
         * exited or crashed, or the link broke). A follower that loses its
         * leader this way drops the leader's lease and campaigns after a short
         * random delay instead of a whole election timeout; pre-vote keeps a
         * false alarm from disrupting a leader that is still alive. */
        struct {
            raft_id id;
        } peer;
    };
};

struct raft_read_result {
    uint64_t id;      /* from RAFT_EVENT_READ_INDEX */
    int status;       /* 0, or CM_ENOTLEADER when leadership was lost */
    raft_index index; /* status 0: wait until applied >= index, then read */
};

/* What the host must do, in this order:
 *   1. if hard_state_changed: write term and voted_for durably (fsync);
 *   2. if snapshot_chunk.len or snapshot_install: write the incoming chunk at
 *      its offset; on install, replace the state machine and the log with the
 *      received snapshot (durably) before going on;
 *   3. if truncate_from: delete log entries >= truncate_from;
 *      if n_entries: append entries at entries_first (durability may be
 *      deferred and batched; feed RAFT_EVENT_PERSISTED when durable);
 *   4. if compact_to: entries <= compact_to may be deleted from storage;
 *   5. send messages (best effort; the core retries);
 *   6. apply committed entries apply[0..n_apply) at indices apply_first...;
 *   7. if snapshot_at: take a snapshot at the applied index when convenient and
 *      feed RAFT_EVENT_SNAPSHOT_TAKEN;
 *   8. answer reads (each once its index is applied).
 * Everything is owned by the core until the next raft_step()/raft_free(). */
struct raft_update {
    bool hard_state_changed;
    raft_term term;
    raft_id voted_for;

    struct {
        raft_index last_index;
        raft_term last_term;
        uint64_t size;
        uint64_t offset;
        struct raft_buffer chunk;
    } snapshot_chunk;
    bool snapshot_install; /* the chunk above completed the snapshot */
    struct raft_config snapshot_config;
    raft_index snapshot_config_index;

    raft_index truncate_from;
    raft_index entries_first;
    unsigned n_entries;
    const struct raft_entry *entries;

    raft_index compact_to;

    unsigned n_messages;
    struct raft_message *messages;

    raft_index apply_first;
    unsigned n_apply;
    const struct raft_entry *apply;

    raft_index snapshot_at;

    unsigned n_reads;
    struct raft_read_result *reads;

    /* Set by RAFT_EVENT_SUBMIT/CHANGE: where the first proposed entry went. */
    raft_index submitted_index;
    raft_term submitted_term;

    bool role_changed; /* role, term or known leader changed */
};

struct raft;

/* Create a core. Returns NULL on OOM. @o is copied. */
struct raft *raft_new(const struct raft_options *o);
/* Free the core and everything it owns. Accepts NULL. */
void raft_free(struct raft *r);

/* Load durable state and start as a follower at @now. @load is borrowed (entries
 * and config copied). Errors: CM_EINVAL (inconsistent load), CM_ENOMEM. */
int raft_start(struct raft *r, const struct raft_load *load, raft_time now,
               struct raft_update *out);

/* Feed one event; fill @out (cleared first) with what to do.
 * Errors (nothing changed, @out empty):
 *   CM_ENOTLEADER  submit/change/transfer/read on a non-leader (see raft_leader);
 *   CM_EBUSY       a change while another is uncommitted, or during a transfer;
 *   CM_EINVAL      a malformed event (unknown type, bad change);
 *   CM_ENOMEM      out of memory.
 * Messages from unknown servers or stale terms are dropped, not errors. */
int raft_step(struct raft *r, const struct raft_event *ev, struct raft_update *out);

/* The time at which the host must feed a RAFT_EVENT_TICK at the latest. */
raft_time raft_timeout(const struct raft *r);

enum raft_role raft_role(const struct raft *r);
raft_id raft_id_of(const struct raft *r);
raft_term raft_current_term(const struct raft *r);
/* The current leader as far as this server knows (0: unknown); its address via
 * raft_config_get(raft_config_current(r), id). */
raft_id raft_leader(const struct raft *r);
raft_index raft_commit_index(const struct raft *r);
raft_index raft_last_index(const struct raft *r);
raft_index raft_applied_index(const struct raft *r);
/* The latest configuration (possibly uncommitted); borrowed. */
const struct raft_config *raft_config_current(const struct raft *r);
/* Leader only: the match index of @id (0 if unknown). */
raft_index raft_match_index(const struct raft *r, raft_id id);

/* The first entry of a new cluster: a RAFT_CHANGE entry with @c, to be stored at
 * index 1, term 1 by every server bootstrapped with the same @c before its first
 * raft_start(). ret->buf.base is cm_malloc'd (caller frees). */
int raft_bootstrap_entry(const struct raft_config *c, struct raft_entry *ret);

/* ======================================================================= codec */

/* A frame on the wire:
 *   u32 length (of what follows) | u8 version (RAFT_WIRE_VERSION) | u8 channel |
 *   body
 * so length = 2 + body length, and the body is at most RAFT_FRAME_MAX bytes.
 * Channel RAFT_CHANNEL_RAFT carries one struct raft_message; other channels carry
 * the node RPCs that share the connection (DESIGN.md §4). Integers big-endian.
 *
 * HELLO body:    u64 sender id (never 0) | u64 cluster id
 * RAFT body:     u8 type | u64 from | u64 to (both never 0) | fields by type:
 *   APPEND            u64 term, prev_index, prev_term, commit, seq | u32 n |
 *                     n * (u64 term | u8 type | u32 len | len bytes)
 *   APPEND_RESULT     u64 term | u8 rejected | u64 last_index, reject_index, seq
 *   VOTE              u64 term, last_index, last_term | u8 pre_vote | u8 disrupt
 *   VOTE_RESULT       u64 term | u8 granted | u8 pre_vote
 *   SNAPSHOT          u64 term, last_index, last_term, config_index, size, offset |
 *                     u8 done | u32 len | config (raft_config_encode) |
 *                     u32 len | chunk bytes         (offset + chunk len <= size)
 *   SNAPSHOT_RESULT   u64 term, last_index, next_offset | u8 rejected
 *   TIMEOUT_NOW       u64 term, last_index, last_term
 * Flags (u8) are 0 or 1. Decoding is strict: anything else, including trailing
 * bytes, is refused, so every accepted body re-encodes to the same bytes. */
#define RAFT_WIRE_VERSION  1
#define RAFT_CHANNEL_HELLO 0 /* first frame: the sender's id and cluster */
#define RAFT_CHANNEL_RAFT  1
#define RAFT_CHANNEL_RPC   2
#define RAFT_CHANNEL_JOIN                                                              \
    3                                  /* first frame of a joining node (no HELLO, see \
                                          raft_transport_options.join) */
#define RAFT_JOIN_MAX     (60u * 1024) /* a JOIN body before authentication */
#define RAFT_FRAME_HEADER 6            /* length + version + channel */
#define RAFT_FRAME_MAX    (16u * 1024 * 1024) /* body limit */
#define RAFT_HELLO_BODY   16                  /* id + cluster id */

/* Append the frame for @m to @out. On failure @out is unchanged.
 * Errors: CM_ETOOBIG (body over RAFT_FRAME_MAX, an entry over 4 GiB),
 * CM_EINVAL (unknown type, ids 0, flag not 0/1, snapshot chunk with len but no
 * bytes), CM_ENOMEM. */
int raft_msg_encode(const struct raft_message *m, struct cm_buf *out);

/* Parse one RAFT_CHANNEL_RAFT body (the bytes after the header). Entry and chunk
 * buffers point into @body (borrowed: valid while @body is); the entries array
 * and the config are allocated: release with raft_msg_close(). ret is untouched
 * on failure.
 * Errors: CM_ETRUNC (body ends early), CM_EMALFORMED (unknown type, bad enum or
 * flag value, ids 0, trailing bytes, inconsistent snapshot offset/size),
 * CM_ETOOBIG (a count larger than the remaining bytes could hold), CM_ENOMEM;
 * errors of raft_config_decode for the snapshot's config. */
int raft_msg_decode(const void *body, size_t len, struct raft_message *ret);
/* Free what raft_msg_decode allocated; @m keeps its scalar fields. Accepts a
 * zeroed message. */
void raft_msg_close(struct raft_message *m);

/* Append a frame with @channel and @body (len <= RAFT_FRAME_MAX) to @out; used
 * for RAFT_CHANNEL_RPC. On failure @out is unchanged.
 * Errors: CM_ETOOBIG, CM_EINVAL (unknown channel), CM_ENOMEM. */
int raft_frame_encode(uint8_t channel, const void *body, size_t len, struct cm_buf *out);

/* Check a frame header (the first RAFT_FRAME_HEADER of @len bytes at @data)
 * before its body is buffered: *ret_channel and *ret_body_len (<= RAFT_FRAME_MAX)
 * on success. Errors: CM_ETRUNC (fewer than RAFT_FRAME_HEADER bytes),
 * CM_EPROTO (another wire version), CM_EMALFORMED (unknown channel, length < 2),
 * CM_ETOOBIG (body over RAFT_FRAME_MAX). */
int raft_frame_header(const void *data, size_t len, uint8_t *ret_channel,
                      uint32_t *ret_body_len);

/* Parse exactly one whole frame at @data: header as raft_frame_header, then the
 * body (*ret_body points into @data). Errors: those of raft_frame_header,
 * CM_ETRUNC (body incomplete), CM_EMALFORMED (bytes after the frame). */
int raft_frame_decode(const void *data, size_t len, uint8_t *ret_channel,
                      const void **ret_body, size_t *ret_body_len);

/* Append the HELLO frame for sender @id (not 0) in cluster @cluster_id.
 * Errors: CM_EINVAL (id 0), CM_ENOMEM; @out unchanged on failure. */
int raft_hello_encode(raft_id id, uint64_t cluster_id, struct cm_buf *out);
/* Parse a HELLO body. Errors: CM_ETRUNC, CM_EMALFORMED (id 0, trailing bytes). */
int raft_hello_decode(const void *body, size_t len, raft_id *ret_id,
                      uint64_t *ret_cluster_id);

/* ======================================================================= storage */

/* raft.db: SQLite in WAL mode with synchronous=FULL, opened in exclusive locking
 * mode (one process per directory).
 *   raft_meta(key TEXT PRIMARY KEY, value)  format, term, voted_for, snapshot meta
 *   raft_log(idx INTEGER PRIMARY KEY, term, type, data BLOB)
 * Snapshots live next to it as files snapshot-<index> (written via a temp file,
 * fsync, rename, fsync of the directory). At open, files named snapshot-<n>.tmp
 * and snapshots raft_meta does not name are removed.
 *
 * Every change is one transaction, so a crash at any instant leaves the log of
 * some earlier instant: contiguous, and holding everything a call reported
 * durable. Errors fill @eb with the operation and the file it concerns. After an
 * I/O error, close the store and open it again (a raft node must treat that as
 * fatal or restart its storage). Indices and terms must fit in 63 bits. */
struct raft_store;

/* Open (creating if needed) the store in the existing directory @dir (copied).
 * Runs PRAGMA quick_check and checks the schema, raft_meta and the log's bounds.
 * Errors: CM_ECORRUPT (not a database, damaged pages, another schema, a bad meta
 * value, a log with holes, a missing snapshot file; the message names the file),
 * CM_EBUSYDIR (another process has it open), CM_EIO, CM_ENOSPC, CM_ENOMEM, others
 * from the OS (CM_ENOENT: no such directory). */
int raft_store_open(const char *dir, struct raft_store **ret, struct cm_errbuf *eb);
/* Close; entries queued and not flushed are dropped. Accepts NULL. */
void raft_store_close(struct raft_store *s);

/* Fill @ret with the durable state (entries and config allocated; release with
 * raft_load_close()); queued entries are not included. applied_index is 0 (it
 * lives in state.db). The log is validated while it is read: contiguous, terms
 * >= 1 and never decreasing, known types, agreeing with the snapshot's term and
 * starting at or before snapshot_index + 1.
 * Errors: CM_ECORRUPT, CM_ETOOBIG (more than UINT_MAX entries), CM_EIO, CM_ENOMEM;
 * @ret is untouched on failure. */
int raft_store_load(struct raft_store *s, struct raft_load *ret, struct cm_errbuf *eb);
/* Free what raft_store_load allocated and zero @l. Accepts a zeroed @l. */
void raft_load_close(struct raft_load *l);

/* Term and vote, durable on return. Entries queued by raft_store_append go into
 * the same transaction (the next flush then reports them without writing).
 * Errors: CM_EIO, CM_ENOSPC, CM_ERANGE, CM_ENOMEM. */
int raft_store_set_hard_state(struct raft_store *s, raft_term term, raft_id voted_for,
                              struct cm_errbuf *eb);

/* Queue a truncate-and-append (step 3 of struct raft_update) without syncing; the
 * entries are copied. @truncate_from 0 truncates nothing; @n 0 appends nothing.
 * After the truncation the log must end at @first - 1, terms must not decrease
 * and @truncate_from must be above the snapshot. Nothing changes on failure.
 * Errors: CM_EINVAL (not contiguous, bad term or type, truncation into the
 * snapshot), CM_ERANGE, CM_ETOOBIG (an entry over 2 GiB), CM_ENOMEM, CM_EIO. */
int raft_store_append(struct raft_store *s, raft_index truncate_from, raft_index first,
                      const struct raft_entry *entries, unsigned n, struct cm_errbuf *eb);
/* Make everything queued durable in one transaction with one WAL fsync (group
 * commit) and return the last durable index and its term (the snapshot's when
 * the log is empty; 0/0 for an empty store). With nothing queued it only
 * reports. On failure the queue is kept, but reopen before trusting the store.
 * Errors: CM_EIO, CM_ENOSPC, CM_ENOMEM. */
int raft_store_flush(struct raft_store *s, raft_index *ret_index, raft_term *ret_term,
                     struct cm_errbuf *eb);

/* Delete entries <= @index (which must not exceed the snapshot's index; one
 * transaction). Errors: CM_EINVAL (beyond the snapshot), CM_EIO, CM_ENOSPC. */
int raft_store_compact(struct raft_store *s, raft_index index, struct cm_errbuf *eb);

/* Snapshots. A snapshot is opaque bytes produced by the state machine. */
/* Record that the file at @path (already fsynced, on the store's file system;
 * a name like <dir>/snapshot-<index>.tmp is fine) is the snapshot at
 * @index/@term with @config (copied): it is renamed into the store, meta updated
 * atomically (queued entries go into the same transaction), the previous one
 * removed. The log is kept (compact it after).
 * @index must be newer than the current snapshot and within the log, with @term
 * the term of its entry there (the current index and term again is a no-op that
 * removes @path). Errors: CM_ESTALE (older), CM_EINVAL, CM_EIO, CM_ENOSPC,
 * CM_ENOMEM, others from rename(2) (-EXDEV: another file system). */
int raft_store_snapshot_put(struct raft_store *s, const char *path, raft_index index,
                            raft_term term, const struct raft_config *config,
                            raft_index config_index, struct cm_errbuf *eb);
/* Read @len bytes at @offset of the current snapshot (when it is at @index) into
 * @dst. Errors: CM_ENOTFOUND (no snapshot at that index), CM_EINVAL (beyond its
 * size), CM_EIO. */
int raft_store_snapshot_read(struct raft_store *s, raft_index index, uint64_t offset,
                             void *dst, size_t len, struct cm_errbuf *eb);
/* The path of the current snapshot file, or NULL. Borrowed until the snapshot
 * changes or the store closes. */
const char *raft_store_snapshot_path(struct raft_store *s);
/* Receiving: write a chunk of an incoming snapshot into snapshot-<index>.tmp;
 * offset 0 starts a new one (dropping any other), later chunks must follow on at
 * the bytes received so far. Errors: CM_ESTALE (not newer than the current
 * snapshot), CM_EINVAL (unexpected offset or index), CM_EIO, CM_ENOSPC. */
int raft_store_snapshot_write_chunk(struct raft_store *s, raft_index index,
                                    uint64_t offset, const void *data, size_t len,
                                    struct cm_errbuf *eb);
/* Receiving: the incoming snapshot is complete: fsync, rename, fsync the
 * directory, then one transaction drops the whole log (and the queue) and records
 * index, term, @config (copied), config_index and size; the previous snapshot
 * file is removed. *ret_path is the installed file (borrowed, as from
 * raft_store_snapshot_path) to restore from. On failure the transfer must start
 * again at offset 0. Errors: CM_EINVAL (nothing received at @index, bad meta),
 * CM_ESTALE, CM_EIO, CM_ENOSPC, CM_ENOMEM. */
int raft_store_snapshot_finish(struct raft_store *s, raft_index index, raft_term term,
                               const struct raft_config *config, raft_index config_index,
                               const char **ret_path, struct cm_errbuf *eb);

/* Fault injection (tests): fail the Nth upcoming write/sync at the file-system
 * layer (xWrite/xSync/xTruncate of a wrapping SQLite VFS, plus the snapshot file
 * writes and the file and directory fsyncs) with @err (CM_ENOSPC becomes
 * SQLITE_FULL, anything else an SQLITE_IOERR variant or CM_EIO). Only that one
 * operation fails. n=0 disables. Process-wide, not thread-safe. */
void raft_store_fault_set(unsigned n, int err);
/* Whether the armed failure happened since the last raft_store_fault_set(). */
bool raft_store_fault_fired(void);
/* Writes and syncs counted since the last raft_store_fault_set(). */
unsigned raft_store_fault_count(void);

/* ======================================================================= transport */

/* TCP transport on libev (DESIGN.md §4). Every server dials each peer it is told
 * about (raft_transport_set_peer) and sends on that outgoing connection only;
 * it receives on the connections peers dial to it. Each connection starts with
 * a HELLO frame (sender id, cluster id); an inbound connection whose first frame
 * is not a valid HELLO of our cluster is closed (and counted). Outgoing
 * connections are re-dialled with jittered exponential backoff.
 *
 * Messages are encoded when queued and written in batches (many frames per
 * writev) just before the loop blocks, so all sends of one loop iteration cost
 * one system call per peer. Frames queued when a connection breaks are dropped
 * (raft retries); frames queued while it is down wait for the next dial and are
 * dropped if that fails too.
 *
 * Threading: one loop, one thread. Callbacks run from the loop; they may call
 * any function here, including raft_transport_close(). */

struct ev_loop;
struct cm_stream;
struct raft_transport;

/* Called for every decoded raft message (borrowed for the call): m->from is the
 * sender's HELLO id and m->to our id (messages that claim otherwise are dropped
 * and counted). */
typedef void (*raft_transport_recv_fn)(void *data, const struct raft_message *m);
/* Called for every RAFT_CHANNEL_RPC frame body from peer @from (borrowed). */
typedef void (*raft_transport_rpc_fn)(void *data, raft_id from, const void *body,
                                      size_t len);

struct raft_transport_options {
    raft_id id;                /* this server */
    uint64_t cluster_id;       /* peers with another cluster id are refused */
    const char *bind_address;  /* "host:port" to listen on (numeric; port 0 ok) */
    unsigned reconnect_min_ms; /* default 50 */
    unsigned reconnect_max_ms; /* default 2000 */
    size_t max_queue_bytes;    /* per peer; beyond it messages drop; default 64 MiB */
    unsigned hello_timeout_ms; /* inbound: time to send HELLO; default 5000 */
    unsigned max_inbound;      /* inbound connections at once; default 256 */
    raft_transport_recv_fn recv;
    raft_transport_rpc_fn rpc; /* optional: RPC frames are dropped without it */
    /* Optional: an authenticated inbound connection from @id closed. Called
     * after the connection is freed; it must not close the transport. */
    void (*peer_lost)(void *data, raft_id id);
    void *data;
    /* Optional: turns each connected socket into a stream (net/net.h
     * cm_stream_wrap_fn; TLS plugs in here). Default: plain TCP. @fd transfers
     * on success only. */
    int (*wrap)(void *wrap_data, int fd, bool server, struct cm_stream **ret);
    void *wrap_data;
    /* Optional: decides whether an inbound connection that sent a valid HELLO
     * from @id may carry raft and RPC frames (with mTLS: whether the peer
     * presented a certificate of the cluster CA). Non-zero refuses it (counted
     * in refused). NULL: every HELLO of our cluster is accepted. */
    int (*authorize)(void *data, const struct cm_stream *s, raft_id id);
    /* Optional: an inbound connection whose first frame is a RAFT_CHANNEL_JOIN
     * frame (body at most RAFT_JOIN_MAX, borrowed for the call) is handed over:
     * @s transfers to the callback, which answers on it and closes it; the
     * transport forgets the connection. Bytes after the frame are dropped.
     * NULL: such a connection is refused like any other without a HELLO. */
    void (*join)(void *data, struct cm_stream *s, const void *body, size_t len);
};

/* Counters, for tests and metrics. */
struct raft_transport_stats {
    uint64_t accepted;        /* inbound connections accepted */
    uint64_t refused;         /* inbound closed: bad/missing HELLO, wrong cluster,
                                 malformed frame, over max_inbound */
    uint64_t dropped;         /* received messages dropped (wrong from/to, no rpc
                                 callback) */
    uint64_t connected;       /* outgoing connections established */
    uint64_t disconnected;    /* outgoing connections lost or failed to connect */
    uint64_t frames_sent;     /* frames queued onto a connection */
    uint64_t frames_received; /* frames received after the HELLO */
    uint64_t queue_full;      /* sends refused with CM_EAGAIN */
    uint64_t joins;           /* inbound connections handed to the join callback */
};

/* Listen on o->bind_address and start. @loop and @o are borrowed (strings
 * copied); the transport lives until raft_transport_close().
 * Errors: CM_EINVAL (id 0, no recv callback, bad address, min > max backoff),
 * CM_EADDRINUSE and other socket errors (named in @eb), CM_ENOMEM. */
int raft_transport_start(struct ev_loop *loop, const struct raft_transport_options *o,
                         struct raft_transport **ret, struct cm_errbuf *eb);
/* Stop every watcher, close every socket and drop queued frames; free once no
 * callback of this transport is running (at once when called from outside its
 * callbacks, else when the running callback returns). No callback runs after
 * this. Accepts NULL. */
void raft_transport_close(struct raft_transport *t);
/* The port actually bound (useful with port 0). */
uint16_t raft_transport_port(const struct raft_transport *t);
/* Tell the transport where @id lives (from the configuration); a new address
 * drops the current connection and redials. @address is copied.
 * Errors: CM_EINVAL (id 0 or our own id, address not a numeric host:port),
 * CM_ENOMEM. */
int raft_transport_set_peer(struct raft_transport *t, raft_id id, const char *address);
/* Forget @id, dropping its connection and queue. Errors: CM_ENOTFOUND. */
int raft_transport_remove_peer(struct raft_transport *t, raft_id id);
/* Queue @m for m->to (encoded immediately; m->from is sent as our id).
 * Errors: CM_ENOTFOUND (unknown peer), CM_EAGAIN (queue full), CM_ETOOBIG,
 * CM_EINVAL (not encodable), CM_ECLOSED (transport closing), CM_ENOMEM. */
int raft_transport_send(struct raft_transport *t, const struct raft_message *m);
/* Queue one RAFT_CHANNEL_RPC frame with @body (copied) for @to. Errors as
 * raft_transport_send. */
int raft_transport_send_rpc(struct raft_transport *t, raft_id to, const void *body,
                            size_t len);
/* Bytes queued for @id and not yet written (0 for an unknown peer). */
size_t raft_transport_queued(const struct raft_transport *t, raft_id id);
void raft_transport_get_stats(const struct raft_transport *t,
                              struct raft_transport_stats *ret);

/* ======================================================================= host */

/* The host driver: runs a core with its storage and transport on a libev loop and
 * drives a state machine through struct raft_fsm. lib/state plugs in here without
 * raft knowing what it stores (DESIGN.md §4).
 *
 * Group commit: proposals made during one loop iteration are submitted together,
 * and all log appends of the iteration are made durable by one flush (one fsync)
 * in an ev_prepare watcher, just before the loop blocks. */

/* The replicated state machine. Every callback runs on the loop's thread. */
struct raft_fsm {
    void *data;
    /* Apply the committed entry at @index. Called for every entry in order,
     * including RAFT_BARRIER and RAFT_CHANGE ones (@type says which), so the
     * state machine can record its applied index. Must be deterministic; a
     * non-zero return is fatal (the node stops). */
    int (*apply)(void *data, raft_index index, uint8_t type, const void *buf, size_t len);
    /* Write a snapshot of the state as of the last applied index to the new
     * file @path and fsync it. */
    int (*snapshot)(void *data, const char *path, struct cm_errbuf *eb);
    /* Replace the whole state with the snapshot file @path, taken at @index. */
    int (*restore)(void *data, const char *path, raft_index index, struct cm_errbuf *eb);
    /* The highest index the state machine has applied (0 when empty). */
    raft_index (*applied_index)(void *data);
};

struct raft_host_options {
    raft_id id;
    uint64_t cluster_id;
    const char *data_dir;     /* raft.db and snapshots; must exist */
    const char *bind_address; /* "host:port" for the transport */
    /* Only for a new cluster's first start: the initial configuration, stored as
     * entry 1 when the log is empty. NULL to join an existing cluster. */
    const struct raft_config *bootstrap;
    struct raft_options raft; /* timeouts etc.; id and seed are set from above */
    struct raft_fsm fsm;
    /* Optional: role, term or leader changed. */
    void (*on_change)(void *data, enum raft_role role, raft_term term, raft_id leader);
    /* Optional, passed to the transport (see struct raft_transport_options):
     * node RPC frames, the stream wrapper (TLS), HELLO authorization and
     * joining connections. They get @data. */
    raft_transport_rpc_fn rpc;
    int (*wrap)(void *wrap_data, int fd, bool server, struct cm_stream **ret);
    void *wrap_data;
    int (*authorize)(void *data, const struct cm_stream *s, raft_id id);
    void (*join)(void *data, struct cm_stream *s, const void *body, size_t len);
    /* Optional: where servers live before the configuration says so (a node
     * that just joined must answer the leader before the log told it the
     * leader's address). @n_peers entries, copied. */
    const struct raft_server *peers;
    unsigned n_peers;
    /* Optional: a fatal storage or state-machine error; the host has stopped.
     * Default: log it and exit(1) (a raft node must not go on after losing
     * durability). */
    void (*on_fatal)(void *data, const struct cm_errbuf *eb);
    void *data;
};

struct raft_host;

/* The term of the entry at @index and the configuration in force at @index, as the
 * core knows them: what a snapshot taken at @index must record. ret_config is a
 * copy (release with raft_config_close). Errors: CM_ENOTFOUND (index compacted
 * away or beyond the log), CM_ENOMEM. */
int raft_snapshot_meta(const struct raft *r, raft_index index, raft_term *ret_term,
                       struct raft_config *ret_config, raft_index *ret_config_index);

/* Completion of a proposal, a membership change or a read. status 0: applied at
 * @index (for a read: safe to read, the state machine has applied @index).
 * CM_ENOTLEADER: this node is not (or stopped being) the leader and the entry
 * was not committed at that index; CM_ESHUTDOWN: the host closed. */
typedef void (*raft_host_done_fn)(void *data, int status, raft_index index);

/* Open storage, bootstrap if asked, restore the state machine from the latest
 * snapshot if it is behind, start the transport and the core.
 * Errors: from storage (CM_ECORRUPT naming the file), the transport, CM_ENOMEM. */
int raft_host_start(struct ev_loop *loop, const struct raft_host_options *o,
                    struct raft_host **ret, struct cm_errbuf *eb);
/* Stop, failing pending requests with CM_ESHUTDOWN. Accepts NULL. */
void raft_host_close(struct raft_host *h);

/* Propose a command (copied). @cb runs once, from the loop, never from inside this
 * call. Errors (then @cb never runs): CM_ENOTLEADER, CM_ETOOBIG, CM_ENOMEM. */
int raft_host_propose(struct raft_host *h, const void *buf, size_t len,
                      raft_host_done_fn cb, void *data);
/* Linearizable read barrier (ReadIndex). Same contract as raft_host_propose. */
int raft_host_read_index(struct raft_host *h, raft_host_done_fn cb, void *data);
/* Membership change (see enum raft_change_op). Errors also: CM_EBUSY. */
int raft_host_change(struct raft_host *h, enum raft_change_op op, raft_id id,
                     const char *address, raft_host_done_fn cb, void *data);
/* Leadership transfer to @id (0: the best voter). */
int raft_host_transfer(struct raft_host *h, raft_id id);

/* Queue a node RPC frame with @body (copied) for server @to, on the connection
 * this server dialled to it (see the transport). Errors: CM_ENOTFOUND (not a
 * known peer), CM_EAGAIN (queue full), CM_ETOOBIG, CM_ESHUTDOWN, CM_ENOMEM. */
int raft_host_send_rpc(struct raft_host *h, raft_id to, const void *body, size_t len);
/* Tell the transport where @id lives although the configuration does not (yet)
 * list it (see raft_host_options.peers). Errors: as raft_transport_set_peer. */
int raft_host_set_peer(struct raft_host *h, raft_id id, const char *address);
/* Transport counters (refused connections etc.). */
void raft_host_transport_stats(const struct raft_host *h,
                               struct raft_transport_stats *ret);

/* The core, for queries (role, term, leader, config, indices). Borrowed. */
const struct raft *raft_host_core(const struct raft_host *h);
uint16_t raft_host_port(const struct raft_host *h);

#endif /* RAFT_H */
