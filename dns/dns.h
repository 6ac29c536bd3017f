/* dns/: the DNS protocol library of clusterctl (DESIGN.md §8).
 *
 * Three parts behind this one header, none of which does I/O:
 *
 *  1. Wire format: domain names (RFC 1035 §3.1, §4.1.4 compression), a message
 *     reader (header, questions, resource records of every section, EDNS0 OPT per
 *     RFC 6891), a query parser that also validates a query, and a bounded
 *     message writer with name compression that drops whole records when the
 *     size limit is reached.
 *  2. The zone (struct dns_zone): an immutable, reference-counted snapshot of
 *     every name the cluster answers for, derived from a description of the
 *     cluster that the caller feeds to a builder (struct dns_zone_builder).
 *     Names are looked up in a hash table keyed by the lower-cased wire name.
 *  3. The answer engine, dns_answer(): a pure function from (zone, query bytes)
 *     to response bytes, written into a caller-provided buffer. It never
 *     allocates, so a server thread can answer at line rate.
 *
 * The server (UDP/TCP on libev), the forwarder (c-ares) and the zone built from
 * the state.db replica are the last section of this header; they do I/O.
 *
 * Errors are negative cm_err codes (lib/base). Unless said otherwise, pointers
 * passed in are borrowed for the duration of the call and strings are copied.
 *
 * Thread safety: a built struct dns_zone is immutable, so any number of threads
 * may call dns_answer() on it concurrently; dns_zone_ref()/dns_zone_unref() are
 * atomic. Builders, readers and writers are used from one thread each.
 */
#ifndef DNS_H
#define DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cm_wire;

/* ======================================================================= constants */

#define DNS_HEADER_LEN  12
#define DNS_NAME_MAX    255   /* wire length of a name, root label included */
#define DNS_LABEL_MAX   63    /* RFC 1035 §2.3.4 */
#define DNS_UDP_MIN     512   /* UDP payload without EDNS (RFC 1035 §4.2.1) */
#define DNS_EDNS_SIZE   1232  /* default EDNS payload we offer (DNS flag day 2020) */
#define DNS_EDNS_MAX    4096  /* the largest EDNS payload we ever use */
#define DNS_TCP_MAX     65535 /* a TCP message is prefixed by a 16-bit length */
#define DNS_DEFAULT_TTL 5     /* seconds; answers change at commit time */

enum dns_type {
    DNS_TYPE_A = 1,
    DNS_TYPE_NS = 2,
    DNS_TYPE_CNAME = 5,
    DNS_TYPE_SOA = 6,
    DNS_TYPE_HINFO = 13,
    DNS_TYPE_TXT = 16,
    DNS_TYPE_AAAA = 28,
    DNS_TYPE_SRV = 33,
    DNS_TYPE_OPT = 41,
    DNS_TYPE_IXFR = 251,
    DNS_TYPE_AXFR = 252,
    DNS_TYPE_MAILB = 253,
    DNS_TYPE_MAILA = 254,
    DNS_TYPE_ANY = 255,
};

enum dns_class {
    DNS_CLASS_IN = 1,
    DNS_CLASS_CH = 3,
    DNS_CLASS_ANY = 255,
};

enum dns_opcode {
    DNS_OPCODE_QUERY = 0,
    DNS_OPCODE_NOTIFY = 4,
    DNS_OPCODE_UPDATE = 5,
};

/* Response codes; values above 15 need EDNS (the upper 8 bits go in the OPT). */
enum dns_rcode {
    DNS_RCODE_NOERROR = 0,
    DNS_RCODE_FORMERR = 1,
    DNS_RCODE_SERVFAIL = 2,
    DNS_RCODE_NXDOMAIN = 3,
    DNS_RCODE_NOTIMP = 4,
    DNS_RCODE_REFUSED = 5,
    DNS_RCODE_BADVERS = 16, /* RFC 6891 §6.1.3 */
};

/* Header flag bits (RFC 1035 §4.1.1, RFC 4035 §3.2 for AD/CD). */
#define DNS_FLAG_QR          0x8000u
#define DNS_FLAG_AA          0x0400u
#define DNS_FLAG_TC          0x0200u
#define DNS_FLAG_RD          0x0100u
#define DNS_FLAG_RA          0x0080u
#define DNS_FLAG_AD          0x0020u
#define DNS_FLAG_CD          0x0010u
#define DNS_OPCODE_OF(flags) ((unsigned)((flags) >> 11) & 0xfu)
#define DNS_RCODE_OF(flags)  ((unsigned)(flags)&0xfu)

#define DNS_EDNS_DO 0x8000u /* DNSSEC OK, in the OPT's flags (RFC 3225) */

enum dns_section {
    DNS_SECTION_QUESTION = 0,
    DNS_SECTION_ANSWER = 1,
    DNS_SECTION_AUTHORITY = 2,
    DNS_SECTION_ADDITIONAL = 3,
};

/* ======================================================================= names */

/* A domain name in uncompressed wire form: length-prefixed labels ending with the
 * root label (a zero byte). The root name is { len 1, "\0" }. */
struct dns_name {
    size_t len; /* 1..DNS_NAME_MAX */
    uint8_t data[DNS_NAME_MAX];
};

/* Read a name at the cursor of @w (which spans the whole message, so compression
 * pointers can be followed) into @ret. The cursor ends after the name as it
 * appears in place (after the first pointer). Pointers must point strictly before
 * the start of the label sequence that contains them and not into the header, so
 * every jump goes backwards and loops are impossible.
 * Errors (also set as the cursor's sticky error): CM_ETRUNC (packet ends inside
 * the name), CM_EMALFORMED (forward pointer, pointer loop, pointer into the header,
 * reserved label type 0x40/0x80), CM_ETOOBIG (name longer than 255 bytes). */
int dns_name_read(struct cm_wire *w, struct dns_name *ret);

/* Text ("api.backend.shop.cluster", trailing dot optional, "." or "" for the root)
 * to wire form. No escapes: every character but '.' goes into a label as is.
 * Errors: CM_EINVAL (empty label, e.g. "a..b"), CM_ETOOBIG (label over 63 bytes,
 * name over 255 bytes). */
int dns_name_from_str(const char *s, struct dns_name *ret);

/* Wire form to text with a trailing dot ("api.cluster."; the root is "."). Bytes
 * outside printable ASCII and '.' or '\\' inside labels are written as \DDD or \.
 * Returns the text length, or CM_EMSGSIZE when @cap is too small (then @out holds
 * a truncated, terminated string when cap > 0), CM_EINVAL for a bad name. */
int dns_name_to_str(const struct dns_name *name, char *out, size_t cap);

/* Case-insensitive (ASCII only, RFC 4343) equality of two well-formed names. */
bool dns_name_equal(const struct dns_name *a, const struct dns_name *b);

/* Lower-case ASCII letters of a name in place. */
void dns_name_lower(struct dns_name *name);

/* Number of labels, the root excluded ("a.b." has 2). */
unsigned dns_name_labels(const struct dns_name *name);

/* True when @name equals @zone or is below it (case-insensitive). */
bool dns_name_in_zone(const struct dns_name *name, const struct dns_name *zone);

/* ======================================================================= messages */

struct dns_header {
    uint16_t id;
    uint16_t flags; /* QR, opcode, AA, TC, RD, RA, Z, AD, CD, rcode (DNS_FLAG_*) */
    uint16_t qdcount;
    uint16_t ancount;
    uint16_t nscount;
    uint16_t arcount;
};

struct dns_question {
    struct dns_name name; /* as sent: case preserved */
    uint16_t qtype;
    uint16_t qclass;
};

/* EDNS0 as carried by an OPT pseudo-record (RFC 6891 §6.1.3). */
struct dns_edns {
    uint16_t udp_size; /* requestor's payload size (the OPT's CLASS) */
    uint8_t ext_rcode; /* upper 8 bits of the 12-bit rcode */
    uint8_t version;
    uint16_t flags; /* DNS_EDNS_DO and zero bits */
};

/* A resource record as read from a message. The rdata of the types this library
 * knows (A, AAAA, NS, SOA, SRV, OPT) is decoded, with names decompressed; @rdata
 * always points at the raw bytes, borrowed from the message (they may contain
 * compression pointers for NS and SOA). */
struct dns_rr {
    struct dns_name owner;
    uint16_t type;
    uint16_t rclass;
    uint32_t ttl;
    uint16_t rdlength;
    const uint8_t *rdata;
    union {
        uint8_t a[4];
        uint8_t aaaa[16];
        struct dns_name ns;
        struct {
            uint16_t priority;
            uint16_t weight;
            uint16_t port;
            struct dns_name target;
        } srv;
        struct {
            struct dns_name mname;
            struct dns_name rname;
            uint32_t serial;
            uint32_t refresh;
            uint32_t retry;
            uint32_t expire;
            uint32_t minimum;
        } soa;
        struct dns_edns opt; /* from the CLASS and TTL fields */
    } data;
};

/* Walks a whole message, section by section. Embedded by the caller. */
struct dns_reader {
    /* read-only */
    struct dns_header header;
    /* private */
    const uint8_t *msg;
    size_t len;
    size_t pos;
    enum dns_section section;
    unsigned left; /* records left in @section */
};

/* Read the header of @msg (borrowed until the reader is dropped).
 * Errors: CM_ETRUNC (fewer than 12 bytes). */
int dns_reader_init(struct dns_reader *r, const uint8_t *msg, size_t len);

/* The next question. Returns 0, CM_ENOENT when the questions are over, or the
 * error of dns_name_read / CM_ETRUNC. */
int dns_reader_question(struct dns_reader *r, struct dns_question *ret_q);

/* The next resource record of the answer, authority or additional section (the
 * questions not yet read are skipped first), and its section in @ret_section
 * (may be NULL). Returns 0, CM_ENOENT when all records are read, or an error:
 * CM_ETRUNC, CM_EMALFORMED (a known type's rdata does not fill its rdlength
 * exactly, a bad name), CM_ETOOBIG. A reader that failed stays failed. */
int dns_reader_rr(struct dns_reader *r, struct dns_rr *ret_rr,
                  enum dns_section *ret_section);

/* After the last record: 0 when the message ends there, CM_EMALFORMED when bytes
 * follow, CM_EINVAL when records are left to read. */
int dns_reader_finish(const struct dns_reader *r);

/* Parse and check a whole message: every question and record. 0 or the first
 * error of the reader. A convenience for tests and the forwarder. */
int dns_message_check(const uint8_t *msg, size_t len);

/* A query as the answer engine sees it. */
struct dns_query {
    struct dns_header header;
    struct dns_question question; /* valid when has_question */
    struct dns_edns edns;         /* valid when has_edns */
    bool has_question;
    bool has_edns;
    /* The rcode the query calls for before any lookup: NOERROR for a good query,
     * FORMERR, NOTIMP (opcode other than QUERY) or BADVERS (EDNS version > 0). */
    uint16_t rcode;
};

/* Parse and validate a query (RFC 1035 §4.1, RFC 6891 §6.1.1): QR clear, opcode
 * QUERY, exactly one question, no answer or authority records, at most one OPT
 * (owner root) in the additional section, nothing after the last record.
 * Returns 0 for a good query; CM_ETRUNC when even the header is missing (@ret_q
 * is then undefined); otherwise CM_EPROTO with ret_q->rcode set to the error to
 * answer with, ret_q->header valid and has_question/has_edns telling what could
 * be parsed. */
int dns_query_parse(const uint8_t *msg, size_t len, struct dns_query *ret_q);

/* Writes a message into a caller-owned buffer, compressing names (RFC 1035
 * §4.1.4). A record that does not fit within the limit is not written at all and
 * CM_EMSGSIZE is returned; the writer stays usable. Embedded by the caller. */
#define DNS_COMPRESS_MAX 64 /* remembered name suffixes; more are written plain */

struct dns_writer {
    /* private */
    uint8_t *buf;
    size_t cap;   /* bytes the buffer has */
    size_t limit; /* bytes the message may use (<= cap) */
    size_t len;
    uint16_t counts[4];
    int section;
    unsigned ncompress;
    struct {
        uint16_t off; /* where a name suffix starts in the message */
        uint16_t len; /* its uncompressed wire length */
    } compress[DNS_COMPRESS_MAX];
};

/* A point to roll a writer back to (records, counts and compression state). */
struct dns_writer_mark {
    size_t len;
    uint16_t counts[4];
    int section;
    unsigned ncompress;
};

/* Start a message in @buf (borrowed while writing) of @cap bytes, with the limit
 * equal to @cap (at most 65535). The header is written with zero counts. */
void dns_writer_init(struct dns_writer *w, uint8_t *buf, size_t cap,
                     const struct dns_header *h);
/* Change the size limit (clamped to the buffer's capacity). Records already
 * written are kept even when they exceed the new limit. */
void dns_writer_set_limit(struct dns_writer *w, size_t limit);
/* Write a question (before any record). Errors: CM_EMSGSIZE, CM_EINVAL (after a
 * record). */
int dns_writer_question(struct dns_writer *w, const struct dns_question *q);
/* Write a record into @section (sections must not go backwards). Known types are
 * encoded from rr->data (names compressed for NS and SOA, never for SRV targets,
 * RFC 2782); other types copy rr->rdata/rdlength as is; OPT takes its CLASS and
 * TTL from rr->data.opt and writes an empty rdata. Only rr->owner, type, rclass,
 * ttl and the data are used.
 * Errors: CM_EMSGSIZE (over the limit: nothing written), CM_EINVAL. */
int dns_writer_rr(struct dns_writer *w, enum dns_section section,
                  const struct dns_rr *rr);
/* Add an OPT record to the additional section (RFC 6891 §6.1.2). */
int dns_writer_opt(struct dns_writer *w, const struct dns_edns *edns);
void dns_writer_mark(const struct dns_writer *w, struct dns_writer_mark *ret_m);
void dns_writer_rollback(struct dns_writer *w, const struct dns_writer_mark *m);
/* Set flags in the header (OR). */
void dns_writer_set_flags(struct dns_writer *w, uint16_t flags);
/* Write the section counts into the header; returns the message length. The
 * writer may go on afterwards (finish again at the end). */
size_t dns_writer_finish(struct dns_writer *w);

/* ======================================================================= zone */

/* An IPv4 or IPv6 address. */
#define DNS_AF_INET4 4
#define DNS_AF_INET6 6
struct dns_addr {
    uint8_t family; /* DNS_AF_INET4 or DNS_AF_INET6 */
    uint8_t bytes[16];
};
/* "10.0.0.1" or "fd00::1". Errors: CM_EINVAL. */
int dns_addr_parse(const char *s, struct dns_addr *ret);

/* Task states as far as DNS cares. */
enum dns_task_state {
    DNS_TASK_STARTING = 0, /* assigned or launching: not in DNS */
    DNS_TASK_RUNNING,      /* running: in DNS when healthy */
    DNS_TASK_DRAINING,     /* being stopped (DESIGN.md §9): left DNS already */
    DNS_TASK_STOPPED,      /* finished, failed or killed: not in DNS */
};

enum dns_health {
    DNS_HEALTH_NONE = 0,  /* the app has no health checks: counts as healthy */
    DNS_HEALTH_UNKNOWN,   /* checks not reported yet */
    DNS_HEALTH_HEALTHY,   /* passing */
    DNS_HEALTH_UNHEALTHY, /* failing */
};

#define DNS_PROTO_TCP 0x1u
#define DNS_PROTO_UDP 0x2u

struct dns_port {
    uint16_t port;      /* host port, > 0 */
    const char *name;   /* port name ("http"), or NULL */
    unsigned protocols; /* DNS_PROTO_TCP | DNS_PROTO_UDP; 0 means TCP */
};

struct dns_task {
    const char *id;       /* task id ("shop_backend_api.0b3c..."), becomes a label */
    const char *node;     /* name of the node running it */
    const char *agent_id; /* Mesos compat canonical names only; NULL: @node */
    struct dns_addr host; /* where the task is reachable */
    enum dns_task_state state;
    enum dns_health health;
    const struct dns_port *ports;
    size_t nports;
};

struct dns_app {
    const char *path; /* "/shop/backend/api" */
    const struct dns_task *tasks;
    size_t ntasks;
};

struct dns_zone_config {
    const char *domain; /* the zone's origin; NULL: "cluster" */
    uint32_t ttl;       /* of every record; 0: DNS_DEFAULT_TTL */
    /* SOA (RFC 1035 §3.3.13). serial: the raft applied index (mod 2^32).
     * 0 for refresh/retry/expire/minimum means 60 / 600 / 86400 / ttl. */
    uint32_t serial;
    uint32_t refresh;
    uint32_t retry;
    uint32_t expire;
    uint32_t minimum;
    const char *mname; /* NULL: the first NS name, else "ns1.<domain>" */
    const char *rname; /* NULL: "hostmaster.<domain>" */
    /* --dns-compat mesos: also the Mesos-DNS names of compat.md §3.2 under the
     * same domain (D), framework F = "marathon", with DiscoveryInfo semantics:
     * T.F.D, L.F.D, C.F.D and the same under F.slave.D (A/AAAA);
     * _L._<proto>.F.D and _<portname>._L._<proto>.F.D (SRV to C.F.D);
     * _L._tcp/_udp.F.slave.D (SRV to C.F.slave.D, every port); F.D (the
     * leader), _leader._tcp/_udp.D, _framework._tcp.F.D, master.D, masterN.D
     * (the NS servers), slave.D, _slave._tcp.D. T is the reversed path with a
     * label per segment, L its one-label form, C = L-H-S with H = zbase32(sha1(
     * task id))[:5] and S the last '-' part of the agent id. As in Mesos-DNS,
     * tasks count when running, whatever their health. Names that collide with
     * native ones merge their records. */
    bool mesos_compat;
    uint16_t compat_leader_port;    /* _leader._tcp/_udp; 0: 5050 */
    uint16_t compat_framework_port; /* _framework._tcp.marathon; 0: 8080 */
    uint16_t compat_agent_port;     /* _slave._tcp; 0: 5051 */
};

struct dns_zone_builder;
struct dns_zone;

/* Records of one type at one name (STYLE.md rule 13): an app with more tasks is
 * refused; records merged from several sources beyond it are dropped. */
#define DNS_RRSET_MAX 8192

/* A builder for a zone with @cfg (copied). Errors: CM_EINVAL (bad domain, mname,
 * rname), CM_ETOOBIG, CM_ENOMEM. */
int dns_zone_builder_new(const struct dns_zone_config *cfg,
                         struct dns_zone_builder **ret_b);
/* Free a builder that was not built. Accepts NULL. */
void dns_zone_builder_free(struct dns_zone_builder *b);

/* The add functions derive names as DESIGN.md §8 says. A name part that is not a
 * valid label is mapped like Mesos-DNS does (compat.md §3.1): lower-cased, '-',
 * '.' and '_' become '-', other characters outside [a-z0-9] are dropped, leading
 * and trailing '-' trimmed; labels longer than 63 keep their first 63 bytes
 * (task ids: their last 63, where the unique part is).
 *
 * On CM_EINVAL or CM_ETOOBIG nothing was added. CM_ENOMEM leaves the builder
 * failed: every later call, and dns_zone_build, return CM_ENOMEM. */

/* A name server of the zone: NS at the apex, and A/AAAA at @name when it is in
 * the zone. @name is absolute ("ns1.cluster" or "node-a.node.cluster").
 * Errors: CM_EINVAL, CM_ETOOBIG, CM_ENOMEM. */
int dns_zone_add_ns(struct dns_zone_builder *b, const char *name,
                    const struct dns_addr *addr);
/* leader.<domain>. May be called more than once (several addresses). */
int dns_zone_add_leader(struct dns_zone_builder *b, const struct dns_addr *addr);
/* <node>.node.<domain>. */
int dns_zone_add_node(struct dns_zone_builder *b, const char *node,
                      const struct dns_addr *addr);
/* An app and its tasks: A/AAAA at the app's name for running, healthy tasks;
 * SRV _<last>._<proto>.<rest> per task and port, _<portname>._<proto>.<name>
 * per named port, target <task>.<node>.node.<domain> with the task's address.
 * Errors: CM_EINVAL (path empty or not starting with '/', first segment a
 * reserved label "vip", "node" or "leader", empty segment, a task without id,
 * node or address, a port 0), CM_ETOOBIG (a name over 255 bytes, more than
 * DNS_RRSET_MAX tasks), CM_ENOMEM. */
int dns_zone_add_app(struct dns_zone_builder *b, const struct dns_app *app);
/* <reversed path>.vip.<domain> A/AAAA. @path like an app path ("/web"). */
int dns_zone_add_vip(struct dns_zone_builder *b, const char *path,
                     const struct dns_addr *addr);

/* Freeze the builder into a zone with one reference. Consumes @b always.
 * Errors: CM_ENOMEM (also for a builder that failed earlier). */
int dns_zone_build(struct dns_zone_builder *b, struct dns_zone **ret_zone);

/* Take a reference (atomic). Returns @z. */
struct dns_zone *dns_zone_ref(struct dns_zone *z);
/* Drop a reference (atomic); the last one frees the zone. Accepts NULL. */
void dns_zone_unref(struct dns_zone *z);

/* The origin, lower-cased. Borrowed while the zone is referenced. */
const struct dns_name *dns_zone_origin(const struct dns_zone *z);
/* Number of names (including empty non-terminals and the apex). */
size_t dns_zone_size(const struct dns_zone *z);

/* ======================================================================= answers */

struct dns_answer_opts {
    bool tcp;         /* over TCP: up to 65535 bytes, no UDP size rules */
    bool forward;     /* names outside the zone are forwarded by the caller */
    uint16_t udp_max; /* our EDNS payload size (advertised, and the most we send
                       * over UDP); 0: DNS_EDNS_SIZE; clamped to 512..4096 */
    uint32_t rotate;  /* rotates multi-record RRsets (e.g. a per-thread counter) */
};

/* What dns_answer did, for the server's counters and forwarding. */
struct dns_answer_info {
    uint16_t rcode;     /* the response's (extended) rcode */
    uint16_t qtype;     /* 0 when there was no question */
    bool out_of_zone;   /* the name is outside the zone */
    bool forward;       /* nothing written: forward the query (opts->forward) */
    bool truncated;     /* TC set */
    bool authoritative; /* AA set */
    size_t limit;       /* the size limit that applied */
};

/* Answer the query @q (@qlen bytes) from @z into @resp (@cap bytes, at least
 * 512). A pure function: no allocation, no clock, no I/O.
 *
 * Returns the response length (> 0), or 0 when nothing must be sent: the input
 * is shorter than a header or is itself a response (QR set), or the name is
 * outside the zone and opts->forward is set (then info->forward is true).
 * Negative: CM_EINVAL (@cap < 512).
 *
 * The response never exceeds the limit: over UDP 512 bytes without EDNS, else
 * the requestor's size clamped to [512, udp_max]; over TCP min(@cap, 65535).
 * When the answer RRset does not fit, it is left out whole and TC is set;
 * additional records that do not fit are left out without TC.
 * @info may be NULL. @z may be NULL (every name is then outside the zone). */
int dns_answer(const struct dns_zone *z, const uint8_t *q, size_t qlen, uint8_t *resp,
               size_t cap, const struct dns_answer_opts *opts,
               struct dns_answer_info *info);

/* ======================================================================= server
 *
 * The I/O side of dns/ (dns/server.c, forward.c, zone_state.c, resolv.c,
 * zone_text.c): a UDP/TCP server on libev that answers from the zone last
 * published and forwards other names through c-ares, the zone built from the
 * local state.db replica, and resolv.conf parsing. These use libev, c-ares,
 * sockets and lib/state; the parts above stay pure.
 */

struct cm_state;
struct cm_buf;
struct cm_errbuf;
struct ev_loop;

/* ----------------------------------------------------------------- upstreams */

#define DNS_UPSTREAM_MAX 8 /* resolvers we forward to, at most */

/* An upstream resolver. */
struct dns_upstream {
    struct dns_addr addr;
    uint16_t port; /* 53 unless given */
};

/* "192.0.2.1", "192.0.2.1:5353", "2001:db8::1", "[2001:db8::1]:5353" into @ret.
 * Errors: CM_EINVAL (not a numeric address, a scope id, port 0 or over 65535). */
int dns_upstream_parse(const char *s, struct dns_upstream *ret);

/* Parse resolv.conf text (resolv.conf(5); pure): the address of every
 * "nameserver ADDR" line, in order, into @ret (@cap entries; later ones are
 * ignored, as libc keeps its first three). Lines whose first non-blank byte is
 * '#' or ';' are comments, words after the address are ignored, other keywords
 * (search, options, ...) are skipped, and so are addresses that do not parse or
 * carry a scope id ("fe80::1%eth0": c-ares cannot use them). @text need not be
 * NUL-terminated. *ret_n receives the number stored (0 is not an error). */
void dns_resolv_conf_parse(const char *text, size_t len, struct dns_upstream *ret,
                           size_t cap, size_t *ret_n);

/* Read the file @path (at most 64 KiB) and parse it as above.
 * Errors: from open/read (CM_ENOENT, CM_EACCES, ...), CM_ETOOBIG. */
int dns_resolv_conf_load(const char *path, struct dns_upstream *ret, size_t cap,
                         size_t *ret_n);

/* ----------------------------------------------------------------- zone from state */

/* A named VIP to publish (<reversed path>.vip.<domain>). */
struct dns_vip {
    const char *path; /* "/web" */
    struct dns_addr addr;
};

/* Parsed app specs kept between builds, so that a rebuild after a task change
 * parses only the apps whose spec changed. One cache per thread of use. */
struct dns_state_cache;

/* Errors: CM_ENOMEM. */
int dns_state_cache_new(struct dns_state_cache **ret_cache);
/* Accepts NULL. */
void dns_state_cache_free(struct dns_state_cache *c);

/* What dns_zone_from_state takes besides the replica. Every field may be 0/NULL. */
struct dns_state_info {
    const char *leader;                 /* node id of the raft leader */
    const struct dns_addr *leader_addr; /* else looked up from @leader's node row */
    const struct dns_vip *vips;         /* named VIPs (borrowed for the call) */
    size_t nvips;
    struct dns_state_cache *cache; /* NULL: parse every app spec each time */
};

/* What a build found, for logs and tests. */
struct dns_state_report {
    size_t apps;          /* app rows */
    size_t tasks;         /* running task rows */
    size_t nodes;         /* node rows published (not down) */
    size_t skipped_tasks; /* running tasks without a usable address or app */
    size_t skipped_apps;  /* apps the builder refused (e.g. too many tasks) */
    size_t parsed_specs;  /* specs parsed in this build (the rest came from the cache) */
};

/* Build the whole zone from the replica @s (DESIGN.md §8): every app with its
 * running tasks (A/AAAA and SRV for the healthy ones, port names and protocols
 * from the app's spec: portDefinitions for host networking, else the port
 * mappings that have a host port, matched in order with the task's host ports),
 * every node that is not down as <node>.node.<domain> and as an NS of the zone,
 * leader.<domain>, and @info's VIPs. Health counts as "healthy" for an app
 * without health checks and as "unknown" (not served) for one whose checks have
 * not reported yet. A task's address is its host column when numeric, else its
 * node's address. cfg->serial 0 means the applied index. @info and @ret_report
 * may be NULL. A task or app the builder refuses is counted in the report and
 * left out; the rest of the zone is still built.
 * Thread safety: uses @s and info->cache from the calling thread only.
 * Errors: CM_EINVAL (@cfg), CM_ENOMEM, storage errors of lib/state. */
int dns_zone_from_state(struct cm_state *s, const struct dns_zone_config *cfg,
                        const struct dns_state_info *info, struct dns_zone **ret_zone,
                        struct dns_state_report *ret_report);

/* Append the zone as an RFC 1035 §5 master file ($ORIGIN, $TTL, SOA, NS, then
 * every name's A, AAAA and SRV records in name order) to @out: for debugging
 * and for loading the same data into another server. Errors: CM_ENOMEM. */
int dns_zone_to_text(const struct dns_zone *z, struct cm_buf *out);

/* ----------------------------------------------------------------- server */

struct dns_server;

struct dns_server_config {
    /* "127.0.0.1:53", "[::1]:8600", "0.0.0.0:53" (UDP and TCP). Port 0 picks a
     * free port, the same for UDP and TCP (dns_server_port). Replies to a
     * wildcard address leave from the address the query came to. */
    const char *addr;
    /* 0: run on @loop, in the caller's thread. N >= 1: N worker threads, each
     * with its own loop and its own SO_REUSEPORT UDP and TCP sockets. */
    unsigned threads;
    struct ev_loop *loop; /* threads == 0 only */
    uint16_t udp_max;     /* our EDNS payload size; 0: DNS_EDNS_SIZE */
    /* TCP (RFC 7766): several queries per connection, answered in order except
     * forwarded ones, which come back when upstream answers. */
    unsigned tcp_max_conns; /* open connections, all threads together; 0: 512 */
    unsigned tcp_idle_ms;   /* a connection with nothing to do is closed; 0: 10 s */
    size_t tcp_out_max;     /* pending output before reading stops; 0: 128 KiB */
    size_t tcp_query_max;   /* longest query accepted (longer: close); 0: 16 KiB */
    /* Forwarding of names outside the zone. Off: they get REFUSED. */
    bool forward;
    const struct dns_upstream *upstreams; /* copied; NULL: from @resolv_conf */
    size_t nupstreams;
    const char *resolv_conf;     /* NULL: "/etc/resolv.conf" */
    unsigned forward_max;        /* outstanding forwards per thread; 0: 1024 */
    unsigned forward_timeout_ms; /* per try; 0: 1500 */
    unsigned forward_tries;      /* tries per upstream; 0: 2 */
};

/* Counters since start, summed over the threads (each read is atomic, the set
 * is not a snapshot). */
struct dns_server_stats {
    uint64_t udp_queries;     /* datagrams received */
    uint64_t tcp_queries;     /* TCP messages received */
    uint64_t answered;        /* responses sent from the zone */
    uint64_t dropped;         /* no response: QR set, too short, or send failed */
    uint64_t truncated;       /* UDP responses with TC (ours or relayed) */
    uint64_t forwarded;       /* queries sent upstream */
    uint64_t forward_ok;      /* upstream responses relayed */
    uint64_t forward_failed;  /* SERVFAIL for an upstream failure or timeout */
    uint64_t forward_limited; /* SERVFAIL because forward_max were outstanding */
    uint64_t tcp_accepted;    /* connections accepted */
    uint64_t tcp_refused;     /* connections closed at once (tcp_max_conns) */
    uint64_t tcp_closed_idle; /* connections closed by the idle timeout */
    uint64_t tcp_closed_bad;  /* connections closed for a query over the limit */
    uint64_t zone_swaps;      /* zones picked up by the threads */
};

/* Bind the sockets and start serving (threads: started before the return; else
 * the watchers are started on cfg->loop). Until a zone is published every name
 * is outside the zone (forwarded, or REFUSED). With cfg->forward, upstreams
 * that are our own address and port are dropped (they would loop); when none
 * is left (or resolv.conf is missing or names none), forwarding is off and
 * names outside the zone get REFUSED: check dns_server_upstreams().
 * @eb (may be NULL) names what failed.
 * Errors: CM_EINVAL (address not numeric, threads > 256), CM_EADDRINUSE,
 * CM_EACCES (port < 1024 without the capability), CM_ENOMEM, others from the
 * OS (resolv.conf unreadable), CM_EIO (c-ares failed to start). */
int dns_server_new(const struct dns_server_config *cfg, struct dns_server **ret_s,
                   struct cm_errbuf *eb);

/* The port the server listens on (useful with port 0). */
uint16_t dns_server_port(const struct dns_server *s);

/* The upstreams in use (after resolv.conf and the removal of our own address),
 * in *ret_n; borrowed while the server lives. */
const struct dns_upstream *dns_server_upstreams(const struct dns_server *s,
                                                size_t *ret_n);

/* Make @z (may be NULL) the zone answered from. The reference transfers to the
 * server. Queries handled after the return see @z; a thread still answering
 * from the previous zone keeps its own reference until its current batch ends,
 * and the previous zone is freed when the last one lets go (threads that are
 * idle are woken to let go). Call from one thread (the one that owns the
 * server), never from a callback of the server. */
void dns_server_publish(struct dns_server *s, struct dns_zone *z);

/* Counters. Any thread. */
void dns_server_stats(const struct dns_server *s, struct dns_server_stats *ret);

/* Stop (joins the threads; with threads == 0, stops the watchers on the
 * caller's loop), close every socket and connection, cancel forwards, drop the
 * zone. Call from the thread that created the server. Accepts NULL. */
void dns_server_free(struct dns_server *s);

#endif /* DNS_H */
