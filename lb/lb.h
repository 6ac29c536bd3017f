/* lb/: L4 virtual IPs on every node (DESIGN.md §9), in the style of DC/OS Minuteman.
 *
 * - declarations: Minuteman's VIP labels (shared/specs/compat.md §4.1) parsed into
 *   struct lb_decl, their DNS names (§4.2), and the deterministic allocator the
 *   leader runs to give named VIPs an address from --vip-cidr;
 * - the VIP table: an immutable, refcounted snapshot (VIP ip:port/proto -> backends
 *   with weights and draining flags) that the main thread builds and publishes and
 *   the data plane reads (DESIGN.md §3); struct lb_slot is the atomic hand-over;
 * - backend choice: the lesser-loaded of two random eligible backends (power of two
 *   choices) with a seeded cm_rng and per-backend active connection counts;
 * - PROXY protocol v2 headers (encode for backends, parse for tests and fuzzing);
 * - VIP addresses on the loopback interface through rtnetlink;
 * - mode `nat`: kernel DNAT in one nftables table `ip clusterctl`, replaced in one
 *   transaction on every change (our own nf_tables netlink code, lb/nft.c);
 * - mode `proxy`: a userspace TCP proxy on libev (splice data path, half-close,
 *   connect timeout and retry, idle timeout, draining, PROXY v2, per-VIP metrics).
 *
 * Addresses are IPv4 for now: IPv6 VIP labels are recognised and refused with
 * CM_EUNSUPPORTED. Ports are in host byte order everywhere in this API; addresses
 * (struct in_addr) in network byte order, as the socket API has them.
 *
 * Errors are negative cm_err codes (lib/base); boundary functions also fill a
 * caller-owned struct cm_errbuf (may be NULL) naming what failed and why.
 *
 * Threads: the pure parts (labels, allocator, tables, choice, PROXY v2) are safe
 * from any thread on distinct objects; a published table is immutable and may be
 * read by any number of threads at once. Backend load counters and metrics are
 * atomics shared by every proxy thread. An lb_proxy belongs to the thread running
 * its loop, except lb_proxy_publish() which any thread may call. lb_nat and the
 * lb_addr_* functions keep no shared state.
 */
#ifndef LB_LB_H
#define LB_LB_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct cm_buf;
struct cm_errbuf;
struct cm_rng;
struct ev_loop;

/* ------------------------------------------------------------------ limits */

#define LB_NAME_MAX         256             /* a named VIP's name, terminator included */
#define LB_MAX_VIPS         65536           /* VIPs in one table */
#define LB_MAX_BACKENDS     4096            /* backends of one VIP */
#define LB_WEIGHT_MAX       1000            /* a backend's relative weight */
#define LB_VIP_CIDR_DEFAULT "198.18.0.0/15" /* RFC 2544 benchmarking range */

enum lb_proto {
    LB_PROTO_TCP = 0, /* the data plane serves TCP */
    LB_PROTO_UDP = 1, /* parsed and stored; nat mode programs it, proxy mode skips it */
};

/* An IPv4 address and port. */
struct lb_endpoint {
    struct in_addr addr; /* network byte order */
    uint16_t port;       /* host byte order */
};

/* "a.b.c.d:port" into @out (at least LB_ENDPOINT_STRLEN bytes). Returns @out. */
#define LB_ENDPOINT_STRLEN 22
char *lb_endpoint_str(struct lb_endpoint ep, char *out);

/* Parse a numeric "a.b.c.d:port" (port 1..65535). 0 or CM_EINVAL. */
int lb_endpoint_parse(const char *s, struct lb_endpoint *ret);

static inline bool lb_endpoint_eq(struct lb_endpoint a, struct lb_endpoint b)
{
    return a.addr.s_addr == b.addr.s_addr && a.port == b.port;
}

/* ------------------------------------------------------------------ declarations */

enum lb_decl_kind {
    LB_DECL_NAMED = 0, /* "/name:port" or "name:port": address allocated by the leader */
    LB_DECL_ADDR = 1,  /* "a.b.c.d:port": the address is given */
};

/* One VIP asked for by a label. */
struct lb_decl {
    enum lb_decl_kind kind;
    enum lb_proto proto;
    char name[LB_NAME_MAX]; /* NAMED: as written without the leading '/'; else "" */
    struct in_addr addr;    /* ADDR: the address; NAMED: 0 */
    uint16_t port;          /* 1..65535 */
    int port_index;         /* legacy app label: <idx> of vip_PORT<idx>; else -1 */
};

/* Parse a port label (Marathon portDefinitions[i].labels or
 * container.portMappings[i].labels): a key starting with "VIP" or "vip" (the rest is
 * not interpreted) with the value "<name>:<port>" or "<ipv4>:<port>", split on the
 * last ':' (compat.md §4.1). @proto is the protocol of that port.
 * A name is 1..255 printable characters without spaces; a leading '/' is dropped.
 * Errors (with @eb naming the label and the reason): CM_ENOTFOUND (the key is not a
 * VIP label: not an error for callers walking all labels; @eb untouched),
 * CM_EINVAL (syntax, port), CM_EUNSUPPORTED (an IPv6 address). @ret is written on
 * success only. */
int lb_port_label_parse(const char *key, const char *value, enum lb_proto proto,
                        struct lb_decl *ret, struct cm_errbuf *eb);

/* Parse a legacy Minuteman app/task label (DC/OS <= 1.7): key "VIP_PORT<idx>" in any
 * letter case, value "tcp://<ipv4>:<port>" or "udp://<ipv4>:<port>". ret->port_index
 * is <idx>, the index of the app's port the VIP is backed by. Errors as for
 * lb_port_label_parse (CM_ENOTFOUND: not such a key). */
int lb_app_label_parse(const char *key, const char *value, struct lb_decl *ret,
                       struct cm_errbuf *eb);

/* The Minuteman DNS name fragment of a named VIP (compat.md §4.2):
 * "<frag(name)>.<frag(framework)>" (the caller appends its zone, e.g.
 * ".l4lb.thisdcos.directory"), where frag splits on '.', drops empty parts,
 * lower-cases, keeps [a-z0-9], maps '-' and '_' to '-', drops everything else
 * (including '/'), strips leading '-' and caps each part at 63.
 * Errors: CM_EINVAL (nothing left of @name or @framework), CM_EMSGSIZE (@cap). */
int lb_vip_dns_name(const char *name, const char *framework, char *out, size_t cap);

/* ------------------------------------------------------------------ allocator */

struct lb_cidr {
    struct in_addr net; /* network byte order, host bits zero */
    uint8_t prefix;     /* 0..32 */
};

/* Parse "a.b.c.d/n"; host bits must be zero. 0 or CM_EINVAL. */
int lb_cidr_parse(const char *s, struct lb_cidr *ret);
bool lb_cidr_contains(const struct lb_cidr *c, struct in_addr a);

/* A name -> address pair already in the state. @name NULL: an address taken by an
 * address VIP (or anything else) that named VIPs must avoid. */
struct lb_alloc_entry {
    const char *name; /* borrowed */
    struct in_addr addr;
};

/* Give the named VIP @name an address in @cidr, deterministically from @name and the
 * @taken set only (no clock, no randomness): the leader runs it and stores the
 * result. When @name is already in @taken its address is returned. Otherwise the
 * search starts at FNV-1a(name) mod (usable addresses) and probes linearly,
 * wrapping; the network and broadcast addresses are skipped for prefixes up to /30.
 * @name is taken without a leading '/'. Errors: CM_EINVAL (empty name, bad cidr),
 * CM_ENOSPC (every address is taken), CM_ENOMEM. */
int lb_vip_alloc(const struct lb_cidr *cidr, const struct lb_alloc_entry *taken,
                 size_t ntaken, const char *name, struct in_addr *ret);

/* ------------------------------------------------------------------ VIP table */

enum lb_mode {
    LB_MODE_AUTO = 0,  /* whatever the node runs (nat when nftables works) */
    LB_MODE_NAT = 1,   /* kernel DNAT (lb_nat) */
    LB_MODE_PROXY = 2, /* userspace proxy (lb_proxy); forced by proxy_protocol */
};

/* Input of lb_table_new. */
struct lb_backend_spec {
    struct lb_endpoint ep;
    uint32_t weight; /* 0..LB_WEIGHT_MAX; 0: unhealthy, no new connections */
    bool draining;   /* no new connections; existing ones get the drain timeout */
};

struct lb_vip_spec {
    struct lb_endpoint vip;
    enum lb_proto proto;
    const char *name; /* borrowed, may be NULL (address VIPs); copied */
    enum lb_mode mode;
    bool proxy_protocol; /* send a PROXY v2 header to backends (proxy mode only) */
    const struct lb_backend_spec *backends; /* borrowed; copied */
    size_t nbackends;
};

/* Shared across snapshots (see lb_table_new's @prev); private. */
struct lb_backend_state;
struct lb_vip_state;

/* Read-only views into a table; valid while the caller holds a reference. */
struct lb_backend {
    /* read-only */
    struct lb_endpoint ep;
    uint32_t weight;
    bool draining;
    bool eligible; /* weight > 0 and not draining */
    /* private */
    struct lb_backend_state *state;
};

struct lb_vip {
    /* read-only */
    struct lb_endpoint vip;
    enum lb_proto proto;
    enum lb_mode mode;
    bool proxy_protocol;
    const char *name; /* "" for address VIPs */
    struct lb_backend *backends;
    size_t nbackends;
    const uint32_t *eligible; /* indexes into backends of the eligible ones */
    size_t neligible;
    uint32_t total_weight; /* of the eligible backends */
    /* private */
    struct lb_vip_state *state;
};

struct lb_table;

/* Build an immutable table from @vips (everything copied). VIPs are sorted by
 * (address, port, proto). @prev (may be NULL; borrowed) is the table this one
 * replaces: a backend present in both (same VIP key and endpoint) keeps its load
 * counters and drain deadline, and a VIP keeps its metrics, so connections opened
 * under an older table are counted in the new one.
 * Errors (with @eb naming the VIP or backend): CM_EINVAL (duplicate VIP or backend
 * in one VIP, port 0, weight above LB_WEIGHT_MAX, bad mode), CM_ETOOBIG (over
 * LB_MAX_VIPS or LB_MAX_BACKENDS), CM_ENOMEM. *ret holds one reference. */
int lb_table_new(const struct lb_vip_spec *vips, size_t nvips,
                 const struct lb_table *prev, struct lb_table **ret,
                 struct cm_errbuf *eb);

/* Take another reference; returns @t. Any thread. */
struct lb_table *lb_table_ref(struct lb_table *t);
/* Drop a reference; the last one frees the table. Accepts NULL. Any thread. */
void lb_table_unref(struct lb_table *t);

size_t lb_table_count(const struct lb_table *t);
/* The @i-th VIP (i < count), in sorted order. */
const struct lb_vip *lb_table_at(const struct lb_table *t, size_t i);
/* The VIP with this key, or NULL. O(log n). */
const struct lb_vip *lb_table_find(const struct lb_table *t, struct lb_endpoint vip,
                                   enum lb_proto proto);

/* Connections still open to backend @be across every VIP of @t, counting those
 * opened under earlier tables that @t inherited. The executor polls this after
 * marking a task draining and kills the task at 0. Proxy mode only: nat mode
 * connections are in conntrack and not counted here.
 * Errors: CM_ENOTFOUND (@be is not a backend of any VIP in @t). */
int lb_table_backend_conns(const struct lb_table *t, struct lb_endpoint be,
                           uint64_t *ret_conns);

/* ------------------------------------------------------------------ backend choice */

/* Pick a backend of @vip for a new connection: two distinct eligible backends at
 * random (@rng), the one with fewer active connections per unit of weight wins, ties
 * to the first drawn ("The Power of Two Choices in Randomized Load Balancing",
 * Mitzenmacher 2001). With one eligible backend it is chosen. Backends whose index
 * is in @exclude (may be NULL; e.g. those a connect already failed on) are skipped.
 * Returns the index into vip->backends, or CM_ENOTFOUND when none is eligible. */
int lb_choose(const struct lb_vip *vip, struct cm_rng *rng, const uint32_t *exclude,
              size_t nexclude);

/* Active connections on @b (all threads). */
uint32_t lb_backend_active(const struct lb_backend *b);
/* Count a connection to @b opening / ending (atomics; any thread). The data plane
 * calls these; tests use them to set up loads. */
void lb_backend_conn_begin(const struct lb_backend *b);
void lb_backend_conn_end(const struct lb_backend *b);

/* Per-VIP metrics, summed over every proxy thread and table generation. */
struct lb_vip_metrics {
    uint64_t active;    /* connections open now */
    uint64_t total;     /* connections accepted */
    uint64_t failed;    /* accepted but no backend could be reached */
    uint64_t bytes_in;  /* client -> backend, bytes written to backends */
    uint64_t bytes_out; /* backend -> client */
    int listen_error;   /* proxy mode: errno of the last failed bind/listen of VIP:port
                         * on this node (any thread); 0 when it listens */
};
void lb_vip_metrics_get(const struct lb_vip *v, struct lb_vip_metrics *ret);

/* ------------------------------------------------------------------ publication */

/* Holds the current table for readers on other threads (DESIGN.md §3): the writer
 * publishes, readers take a reference. A short mutex guards only the pointer and
 * the reference count increment, so a reader never sees a freed table. */
struct lb_slot;

/* Errors: CM_ENOMEM. */
int lb_slot_new(struct lb_slot **ret);
/* Drops the held table. Accepts NULL. No reader may be inside lb_slot_get. */
void lb_slot_free(struct lb_slot *s);
/* Replace the current table with @t (may be NULL); the reference in @t transfers.
 * The previous table loses the slot's reference (freed when no reader holds it). */
void lb_slot_publish(struct lb_slot *s, struct lb_table *t);
/* A new reference to the current table, or NULL when none is published. */
struct lb_table *lb_slot_get(struct lb_slot *s);
/* Bumped by each publish: readers compare it to know when to call lb_slot_get. */
uint64_t lb_slot_generation(const struct lb_slot *s);

/* ------------------------------------------------------------------ PROXY protocol v2 */

/* HAProxy's PROXY protocol, version 2 (doc/proxy-protocol.txt §2.2): a 16-byte
 * header (12-byte signature, ver/cmd, family/proto, length) and an address block. */
#define LB_PP2_SIG_LEN    12
#define LB_PP2_HDR_LEN    16
#define LB_PP2_ENCODE_MAX (LB_PP2_HDR_LEN + 36) /* what lb_pp2_encode writes at most */

enum lb_pp2_cmd {
    LB_PP2_LOCAL = 0, /* health check from the proxy itself: no addresses */
    LB_PP2_PROXY = 1, /* relayed connection: the addresses follow */
};

struct lb_pp2 {
    enum lb_pp2_cmd cmd;
    int family;                  /* AF_UNSPEC, AF_INET, AF_INET6 or AF_UNIX */
    int socktype;                /* SOCK_STREAM, SOCK_DGRAM or 0 (unspec) */
    struct sockaddr_storage src; /* AF_INET/AF_INET6: the client */
    struct sockaddr_storage dst; /* AF_INET/AF_INET6: the address it connected to */
    size_t len;                  /* header bytes in total (16 + address + TLVs) */
    size_t tlv_off, tlv_len;     /* TLV area, offsets into the parsed buffer */
};

/* Write a PROXY-command header for a TCP connection from @src to @dst (both AF_INET
 * or both AF_INET6) into @buf. Errors: CM_EINVAL (families), CM_EMSGSIZE (@cap). */
int lb_pp2_encode(const struct sockaddr *src, const struct sockaddr *dst, void *buf,
                  size_t cap, size_t *ret_len);

/* Parse the header at the start of @buf (untrusted; read through cm_wire). TLVs are
 * checked to tile the area after the addresses exactly. Errors: CM_ETRUNC (a prefix
 * of a valid header: read more), CM_EMALFORMED (bad signature, version, command,
 * family, or lengths). @ret is written on success only. */
int lb_pp2_parse(const void *buf, size_t len, struct lb_pp2 *ret);

/* ------------------------------------------------------------------ addresses */

/* VIP addresses are added as /32 with the address label "<ifname>:cm" (IFA_LABEL):
 * the marker by which lb_addr_sync finds the addresses clusterctl owns, including
 * those left behind by a crash. Everything goes over one NETLINK_ROUTE socket per
 * call, in the network namespace of the calling thread. Needs CAP_NET_ADMIN. */

/* Add @a to @ifname ("lo"). Adding an address already present is not an error.
 * Errors: CM_ENOENT (no such interface), CM_EPERM, others from the kernel. */
int lb_addr_add(const char *ifname, struct in_addr a, struct cm_errbuf *eb);
/* Remove @a from @ifname. Removing an absent address is not an error. */
int lb_addr_del(const char *ifname, struct in_addr a, struct cm_errbuf *eb);
/* The addresses on @ifname carrying our label, into @out (up to @cap; *ret_n is the
 * total, which may exceed @cap). */
int lb_addr_list(const char *ifname, struct in_addr *out, size_t cap, size_t *ret_n,
                 struct cm_errbuf *eb);
/* Make our addresses on @ifname exactly @want: remove those with our label not in
 * @want and add the missing ones. Idempotent; repairs what a crash left. */
int lb_addr_sync(const char *ifname, const struct in_addr *want, size_t n,
                 struct cm_errbuf *eb);

/* ------------------------------------------------------------------ mode nat */

#define LB_NFT_FAMILY "ip"
#define LB_NFT_TABLE  "clusterctl"

/* True in every build: mode nat is programmed through our own nf_tables netlink
 * code (lb/nft.c), no library needed. Kept for `clusterctl version`. */
bool lb_nat_built(void);

/* Mode nat owns one table, `ip clusterctl`, replaced whole on every change by one
 * nf_tables netlink batch (NEWTABLE + DELTABLE + NEWTABLE, then its chains, maps
 * and rules): the kernel commits all of it or none. Per VIP of the table whose
 * mode is NAT (or AUTO when @auto_is_nat), a verdict map keyed by (daddr,
 * l4proto, dport) jumps to a chain that DNATs with `numgen random mod <total
 * weight> map { range : addr . port }`; a VIP without an eligible backend rejects
 * (TCP reset / ICMP port unreachable). Hooks: prerouting (containers and other
 * hosts) and output (the node itself). Postrouting masquerades only traffic the
 * node itself sent from a VIP address to a non-local backend (that source would
 * not be routable back); everything else keeps the client's address. nat.c's
 * header comment shows the table as `nft list` prints it. */
struct lb_nat;

/* Remove a table left by an earlier run (crash clean-up) and return a handle.
 * Errors: the kernel's negative errno (CM_EPERM without CAP_NET_ADMIN,
 * -EPROTONOSUPPORT without nfnetlink; @eb names the message it refused), CM_EPROTO
 * (a reply we cannot read, or a batch the kernel dropped unanswered), CM_ENOMEM. */
int lb_nat_new(struct lb_nat **ret, struct cm_errbuf *eb);
/* Replace the table with @t's rules, atomically. On failure the previous rules stay
 * and @eb names the refused message ("nftables: NEWRULE chain vip_3: ..."). */
int lb_nat_apply(struct lb_nat *n, const struct lb_table *t, bool auto_is_nat,
                 struct cm_errbuf *eb);
/* Remove the table (shutdown; idempotent). */
int lb_nat_clear(struct lb_nat *n, struct cm_errbuf *eb);
/* Free (does not remove the table: call lb_nat_clear first). Accepts NULL. */
void lb_nat_free(struct lb_nat *n);

/* ------------------------------------------------------------------ mode proxy */

struct lb_proxy_opts {
    uint32_t connect_timeout_ms; /* per backend attempt; 0: 2000 */
    uint32_t idle_timeout_ms;    /* no byte either way; 0: 600000 */
    uint32_t drain_timeout_ms;   /* after a backend is marked draining; 0: 5000 */
    uint32_t retries;            /* further backends after a failed connect; 0: 2 */
    uint32_t max_accept;         /* accepts per listener per wake-up; 0: 64 */
    uint32_t max_conns;          /* open client connections; 0: 65536 */
    bool no_splice;              /* copy through buffers instead of splice(2) */
    bool serve_auto;             /* also serve VIPs whose mode is AUTO */
    bool reuseport;              /* SO_REUSEPORT listeners (one proxy per thread) */
    uint64_t seed;               /* backend choice PRNG */
};

struct lb_proxy;

/* A proxy on @loop (borrowed until lb_proxy_free). It serves the TCP VIPs of the
 * tables it is given whose mode is PROXY (or AUTO with serve_auto). Listeners use
 * IP_FREEBIND, so a VIP can be served before its address is on the interface.
 * Errors: CM_ENOMEM. */
int lb_proxy_new(struct ev_loop *loop, const struct lb_proxy_opts *opts,
                 struct lb_proxy **ret, struct cm_errbuf *eb);

/* Install @t (borrowed; the proxy takes its own reference) now: open listeners
 * for new VIPs, close those of removed VIPs, and start drain deadlines for backends
 * newly marked draining. Existing connections keep their backends. Loop thread
 * only. A VIP that cannot be listened on is skipped and reported (the first
 * error is returned after all others were installed). */
int lb_proxy_set_table(struct lb_proxy *p, struct lb_table *t, struct cm_errbuf *eb);

/* Hand @t (the reference transfers; may be NULL to stop serving) to the proxy from
 * any thread; the loop installs it at its next wake-up. */
void lb_proxy_publish(struct lb_proxy *p, struct lb_table *t);

/* Open client connections. */
size_t lb_proxy_conns(const struct lb_proxy *p);

/* The listening port of @vip (its port unless it was 0, for tests), or 0. */
uint16_t lb_proxy_port(const struct lb_proxy *p, struct lb_endpoint vip);

/* Stop every watcher, close every connection and listener, drop tables and free.
 * Synchronous: libev callbacks never run for a stopped watcher, so nothing is
 * pending afterwards. Loop thread, outside the proxy's own callbacks. Accepts NULL. */
void lb_proxy_free(struct lb_proxy *p);

/* ------------------------------------------------------------------ proxy threads */

/* Mode proxy off the daemon's main loop (DESIGN.md §3): one lb_proxy per thread,
 * each on its own libev loop, sharing the VIP ports through SO_REUSEPORT (with
 * more than one thread) so that the kernel spreads new connections over them.
 * Tables reach every thread through its publication slot; per-VIP metrics and
 * backend loads are summed over the threads (they live in the table state). */
#define LB_PROXY_THREADS_MAX         64
#define LB_PROXY_THREADS_DEFAULT_MAX 8 /* the default is the CPU count, capped here */

struct lb_proxy_pool;

/* The CPUs this process may run on, between 1 and LB_PROXY_THREADS_DEFAULT_MAX. */
unsigned lb_proxy_threads_default(void);

/* Start @nthreads proxy threads (0: lb_proxy_threads_default()) with @opts (may be
 * NULL; copied; thread i seeds its PRNG from opts->seed and i). No table yet: call
 * lb_proxy_pool_publish. Errors: CM_EINVAL (over LB_PROXY_THREADS_MAX), CM_ENOMEM,
 * thread creation errors. */
int lb_proxy_pool_new(const struct lb_proxy_opts *opts, unsigned nthreads,
                      struct lb_proxy_pool **ret, struct cm_errbuf *eb);

/* Hand @t (the reference transfers; NULL stops serving) to every thread; each
 * installs it at its next wake-up (lb_proxy_set_table). Listen errors there are
 * not reported (the VIP is skipped on that thread). One writer at a time. */
void lb_proxy_pool_publish(struct lb_proxy_pool *pp, struct lb_table *t);

unsigned lb_proxy_pool_threads(const struct lb_proxy_pool *pp);

/* Stop and join every thread, then close its connections and listeners (as
 * lb_proxy_free) and free everything. Not from a proxy thread. Accepts NULL. */
void lb_proxy_pool_free(struct lb_proxy_pool *pp);

#endif /* LB_LB_H */
