/* lib/node internals for running many nodes as one cluster (issue 8): node RPC
 * (rpc.c), write forwarding, consistent reads, heartbeats and members
 * (cluster.c), autopilot (autopilot.c) and joining (join.c). Not an API. */
#ifndef CM_NODE_CLUSTER_INT_H
#define CM_NODE_CLUSTER_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api/api.h"
#include "base/base.h"
#include "net/net.h"

struct ev_loop;
struct raft_host;
struct cm_state;
struct cm_controller;
struct cm_stream;

/* ================================================================ node RPC */

/* A node RPC is one JSON object in a RAFT_CHANNEL_RPC frame:
 *   {"v":1,"t":"<type>","id":N, ...fields of the type...}
 * "id" is the caller's request id (0: one-way, no reply); a reply has type
 * "reply" and the request's id. Bodies that do not parse, carry another "v" or
 * an unknown type are dropped and counted; unknown fields are ignored, so a
 * newer node may add some. */
#define CM_RPC_VERSION  1
#define CM_RPC_MAX_BODY (12u * 1024 * 1024) /* a forwarded command (8 MiB) + JSON */

enum cm_rpc_type {
    CM_RPC_REPLY = 0,       /* {status, index, msg, data} */
    CM_RPC_PROPOSE = 1,     /* follower -> leader: {cmd} */
    CM_RPC_READ_INDEX = 2,  /* follower -> leader: {} -> reply {status, index} */
    CM_RPC_HEARTBEAT = 3,   /* node -> leader: {name, raft_id, at, http} -> reply
                               {data: members JSON} */
    CM_RPC_ADD_LEARNER = 4, /* member -> leader: {raft_id, name, address} */
};

/* A decoded or to-be-encoded message. Strings are borrowed (from the caller when
 * encoding; from the decoded document, until cm_rpc_msg_done, when decoding) and
 * NULL when absent. */
struct cm_rpc_msg {
    enum cm_rpc_type type;
    uint64_t id;
    int status;          /* reply: 0 or a cm_err */
    uint64_t index;      /* reply: the log index (propose, read) */
    int64_t at;          /* heartbeat: sender's wall clock, ms */
    uint64_t raft_id;    /* heartbeat, add_learner */
    const char *msg;     /* reply: why it failed */
    const char *cmd;     /* propose: the command (JSON text) */
    const char *name;    /* heartbeat, add_learner: node name */
    const char *address; /* add_learner: advertised rpc host:port */
    const char *http;    /* heartbeat: the sender's API address */
    const char *data;    /* reply: type-specific JSON text */
    void *doc;           /* private: the decoded document */
};

/* Append @m as a body. Errors: CM_ENOMEM, CM_EINVAL (unknown type). */
int cm_rpc_encode(const struct cm_rpc_msg *m, struct cm_buf *out);
/* Parse untrusted bytes into @ret (release with cm_rpc_msg_done). Errors:
 * CM_ETOOBIG, CM_EMALFORMED (not JSON, a field of the wrong type, a missing
 * field), CM_EPROTO (another version), CM_EUNSUPPORTED (unknown type),
 * CM_ENOMEM. @ret is zeroed on failure. */
int cm_rpc_decode(const void *body, size_t len, struct cm_rpc_msg *ret);
void cm_rpc_msg_done(struct cm_rpc_msg *m);
/* "propose", ...; "?" for an unknown type. */
const char *cm_rpc_type_name(enum cm_rpc_type t);

struct cm_rpc;
/* Send @body to node @to (the raft host's RPC channel). */
typedef int (*cm_rpc_send_fn)(void *data, uint64_t to, const void *body, size_t len);
/* A request or one-way message from @from (borrowed for the call). */
typedef void (*cm_rpc_request_fn)(void *data, uint64_t from, const struct cm_rpc_msg *m);
/* The end of a call: @status 0 with @reply, or CM_ETIMEDOUT / CM_ESHUTDOWN with
 * @reply NULL. The reply's own status is in reply->status. */
typedef void (*cm_rpc_reply_fn)(void *arg, int status, const struct cm_rpc_msg *reply);

struct cm_rpc_stats {
    uint64_t sent;
    uint64_t received;
    uint64_t dropped;  /* bad bodies, replies nobody waits for */
    uint64_t timeouts; /* calls that got no reply in time */
};

int cm_rpc_new(struct ev_loop *loop, cm_rpc_send_fn send, cm_rpc_request_fn request,
               void *data, struct cm_rpc **ret);
/* Fail pending calls with CM_ESHUTDOWN (their callbacks run now) and free.
 * Accepts NULL. */
void cm_rpc_free(struct cm_rpc *r);
/* Send request @m (its id is set here) to @to; @cb runs once, from the loop,
 * never inside this call, unless this returns an error. Errors: from @send
 * (CM_ENOTFOUND: no connection to @to is configured), CM_ENOMEM. */
int cm_rpc_call(struct cm_rpc *r, uint64_t to, struct cm_rpc_msg *m, unsigned timeout_ms,
                cm_rpc_reply_fn cb, void *arg);
/* Send a one-way message or a reply (m->id as given). */
int cm_rpc_send(struct cm_rpc *r, uint64_t to, const struct cm_rpc_msg *m);
/* A frame arrived from @from. */
void cm_rpc_receive(struct cm_rpc *r, uint64_t from, const void *body, size_t len);
void cm_rpc_get_stats(const struct cm_rpc *r, struct cm_rpc_stats *ret);

/* ================================================================ autopilot */

/* What the leader knows of one member for the decision. */
struct cm_autopilot_server {
    uint64_t id;
    bool voter;
    bool healthy;      /* heard from (heartbeat) within CM_AUTOPILOT_HEALTHY_MS */
    bool caught_up;    /* match index within CM_AUTOPILOT_MAX_LAG of the commit */
    int64_t silent_ms; /* since its last heartbeat (the leader itself: 0) */
};

struct cm_autopilot_input {
    uint64_t self; /* the leader: never demoted by itself */
    unsigned want_voters;
    bool change_pending; /* a membership change is not committed yet */
    unsigned n;
    const struct cm_autopilot_server *servers;
};

enum cm_autopilot_op {
    CM_AUTOPILOT_NONE = 0,
    CM_AUTOPILOT_PROMOTE, /* learner -> voter */
    CM_AUTOPILOT_DEMOTE,  /* voter -> learner */
};

struct cm_autopilot_action {
    enum cm_autopilot_op op;
    uint64_t id;
    const char *why; /* static text for the log */
};

/* A voter silent this long is dead: replaced by a healthy learner, then demoted.
 * 30 s rides out a node's restart or a short partition (which must not cost a
 * membership change each time) and is still short against the hours a dead
 * machine would otherwise hold a vote. */
#define CM_AUTOPILOT_GRACE_MS 30000
/* Heard from within this: healthy (three heartbeats). */
#define CM_AUTOPILOT_HEALTHY_MS 3000
/* A learner this close to the commit index is caught up. */
#define CM_AUTOPILOT_MAX_LAG 64

/* The one change to make now (pure). */
void cm_autopilot_decide(const struct cm_autopilot_input *in,
                         struct cm_autopilot_action *ret);

/* ================================================================ the cluster glue */

struct cm_cluster;

struct cm_cluster_options {
    struct ev_loop *loop;
    struct cm_state *state;           /* borrowed */
    struct cm_clock *clock;           /* borrowed */
    struct cm_controller *controller; /* borrowed: heartbeats go to it */
    const char *name;                 /* copied */
    uint64_t raft_id;
    unsigned voters;          /* --voters */
    const char *http_address; /* copied */
};

int cm_cluster_new(const struct cm_cluster_options *o, struct cm_cluster **ret);
void cm_cluster_free(struct cm_cluster *c);
/* Raft is running (set once, before the loop runs), or closed (NULL: from then
 * on everything fails with CM_ESHUTDOWN). */
void cm_cluster_set_raft(struct cm_cluster *c, struct raft_host *raft);
void cm_cluster_set_http(struct cm_cluster *c, const char *http_address);
/* The raft host's rpc callback. */
void cm_cluster_rpc(void *data, uint64_t from, const void *body, size_t len);
/* Role or leader changed. */
void cm_cluster_on_change(struct cm_cluster *c, bool leader);
/* Called after each loop iteration's applies: completes waits on the replica. */
void cm_cluster_applied(struct cm_cluster *c);

/* Validate, then propose on the leader or forward to it; the cm_api_ops.propose
 * contract. */
int cm_cluster_propose(struct cm_cluster *c, const char *cmd, size_t len,
                       cm_api_done_fn done, void *arg, struct cm_errbuf *eb);
/* ReadIndex through the leader, then wait until this replica has applied that
 * index; the cm_api_ops.read_barrier contract. */
int cm_cluster_read_barrier(struct cm_cluster *c, cm_api_done_fn done, void *arg);
/* The members as a JSON array (GET /v1/members). */
int cm_cluster_members_json(struct cm_cluster *c, struct cm_buf *out);
/* The API address of member @id as last reported, into @buf; false when unknown. */
bool cm_cluster_http_of(struct cm_cluster *c, uint64_t id, char *buf, size_t cap);
/* Leader: add a joining node as a learner (locally, or through the leader by
 * RPC when this node does not lead). @done gets 0 once the change is committed
 * (or the node was already a member). */
int cm_cluster_add_learner(struct cm_cluster *c, uint64_t id, const char *name,
                           const char *address, cm_api_done_fn done, void *arg);
/* Prometheus lines. */
void cm_cluster_metrics(struct cm_cluster *c, struct cm_buf *out);
struct raft_config;
/* A copy of the current raft configuration (release with raft_config_close). */
int cm_cluster_config(struct cm_cluster *c, struct raft_config *ret);

/* ================================================================ join (join.c) */

#define CM_JOIN_VERSION     1
#define CM_JOIN_MAX_MEMBERS 16
/* The cluster CA lives ten years; node certificates one year and are renewed
 * by their node from the CA (every node has it) a month before they expire. */
#define CM_CA_DAYS           3650
#define CM_NODE_CERT_DAYS    365
#define CM_NODE_RENEW_BEFORE (30 * 86400)

struct cm_join_member {
    uint64_t id;
    char address[64];
};

/* A JOIN request; strings borrowed (encode) or from the document (decode). */
struct cm_join_req {
    const char *secret;
    const char *name;
    uint64_t raft_id;
    const char *address; /* advertised rpc host:port */
    const char *csr;     /* PEM */
    void *doc;
};

struct cm_join_reply {
    int status; /* 0, or why it was refused (with msg) */
    const char *msg;
    uint64_t cluster_id;
    const char *ca;     /* PEM */
    const char *ca_key; /* PEM: every member can sign later joins */
    const char *cert;   /* PEM chain: leaf, then the CA */
    const char *secret; /* the join secret, so this node can admit others */
    unsigned n_members;
    struct cm_join_member members[CM_JOIN_MAX_MEMBERS];
    void *doc;
};

/* Codec of the JOIN frame bodies (untrusted on both sides). Errors: CM_ETOOBIG,
 * CM_EMALFORMED, CM_EPROTO (another version), CM_ENOMEM. */
int cm_join_req_encode(const struct cm_join_req *r, struct cm_buf *out);
int cm_join_req_decode(const void *body, size_t len, struct cm_join_req *ret);
void cm_join_req_done(struct cm_join_req *r);
int cm_join_reply_encode(const struct cm_join_reply *r, struct cm_buf *out);
int cm_join_reply_decode(const void *body, size_t len, struct cm_join_reply *ret);
void cm_join_reply_done(struct cm_join_reply *r);

/* The first server: create what is missing of the CA, this node's certificate
 * (CN @name, IP of @address) and the join token in @tls_dir. */
int cm_join_bootstrap(const char *tls_dir, uint64_t cluster_id, const char *name,
                      const char *address, struct cm_errbuf *eb);
/* Read <tls_dir>/join-token. */
int cm_join_token_load(const char *tls_dir, struct cm_join_token *ret,
                       struct cm_errbuf *eb);

struct cm_join_client {
    const char *tls_dir;
    const char *token;
    const char *name;
    uint64_t raft_id;
    const char *address; /* our advertised rpc host:port */
    unsigned n_join;
    const char (*join)[128];
};

struct cm_join_result {
    uint64_t cluster_id;
    unsigned n_members;
    struct cm_join_member members[CM_JOIN_MAX_MEMBERS];
    char tls_dir[1100];
    char fingerprint[65]; /* the token's CA */
    char *cert;           /* the chain; checked and installed by cm_join_finish */
};

/* Join (blocking, retried for a while): on success the CA key and the token
 * are stored and @ret holds the cluster id; store the id, then call
 * cm_join_finish() to check and write ca.pem and node.pem (the "joined" mark). Errors:
 * CM_EPERM (wrong secret, CA does not match the token), CM_EINVAL (bad token),
 * CM_ETIMEDOUT and others. */
int cm_join_run(const struct cm_join_client *jc, struct cm_join_result *ret,
                struct cm_errbuf *eb);
int cm_join_finish(struct cm_join_result *r, struct cm_errbuf *eb);

/* The members' side: answers JOIN connections the transport hands over. */
struct cm_join_server;
int cm_join_server_new(struct ev_loop *loop, struct cm_cluster *cluster,
                       const char *tls_dir, uint64_t cluster_id,
                       struct cm_join_server **ret);
/* @s transfers; @body is borrowed. */
void cm_join_server_accept(struct cm_join_server *js, struct cm_stream *s,
                           const void *body, size_t len);
void cm_join_server_free(struct cm_join_server *js);

/* <data-dir>/peers: the members a joining node was told about, as raft peer
 * hints for every start (raft_host_options.peers). */
struct raft_server;
int cm_join_peers_save(const char *data_dir, const struct cm_join_result *r,
                       struct cm_errbuf *eb);
unsigned cm_join_peers_load(const char *data_dir, struct raft_server *out, unsigned max);

/* Certificate rotation: when node.pem expires within CM_NODE_RENEW_BEFORE of
 * @now_s (or @force), issue a new one from the CA in @tls_dir and reload @tls
 * (connections made after use it; existing ones go on). Returns 1 when renewed,
 * 0 when not needed, or an error. */
struct cm_tls;
int cm_join_renew(const char *tls_dir, const char *name, const char *address,
                  struct cm_tls *tls, bool force, int64_t now_s, struct cm_errbuf *eb);

#endif
