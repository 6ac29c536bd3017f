/* lb/: private to this directory. */
#ifndef LB_LB_INT_H
#define LB_LB_INT_H

#include <stdatomic.h>
#include <stdint.h>

#include "lb/lb.h"

/* Load and drain state of one backend of one VIP, shared by every table generation
 * that has it (lb_table_new's @prev) and by every proxy thread. */
struct lb_backend_state {
    atomic_uint refs;
    atomic_uint active;                      /* open connections */
    atomic_uint_least64_t drain_deadline_ns; /* 0: not draining (proxy clock) */
};

/* Metrics of one VIP, shared like lb_backend_state. */
struct lb_vip_state {
    atomic_uint refs;
    atomic_uint_least64_t active;
    atomic_uint_least64_t total;
    atomic_uint_least64_t failed;
    atomic_uint_least64_t bytes_in;
    atomic_uint_least64_t bytes_out;
    atomic_int listen_error; /* errno of the last failed bind/listen, 0 once it works */
};

struct lb_table {
    atomic_uint refs;
    struct lb_vip *vips; /* sorted by lb__vip_cmp */
    size_t nvips;
};

int lb__key_cmp(struct lb_endpoint a, enum lb_proto pa, struct lb_endpoint b,
                enum lb_proto pb);

/* ------------------------------------------------------------------ nft.c */

/* nf_tables batches over NETLINK_NETFILTER (our own encoder, kernel UAPI only). A
 * batch is NFNL_MSG_BATCH_BEGIN, messages each with NLM_F_ACK, NFNL_MSG_BATCH_END,
 * built into one buffer and sent in one sendmsg: the kernel commits all or none.
 * Appends never fail on the spot: the first CM_ENOMEM / CM_ETOOBIG (an attribute
 * over 64 KiB) sticks in err and lb_nft_batch_end returns it. */

#define LB_NFT_NEST_MAX 8
#define LB_NFT_WHAT_MAX 48

struct lb_nft_msginfo {
    uint16_t type;              /* NFT_MSG_* */
    char what[LB_NFT_WHAT_MAX]; /* "chain vip_3", for the error message */
};

struct lb_nft_batch {
    struct cm_buf buf;
    struct lb_nft_msginfo *msgs; /* msgs[i] has sequence number seq0 + 1 + i */
    size_t nmsgs, capmsgs;
    uint32_t seq0; /* BATCH_BEGIN's sequence number */
    size_t msg_at; /* offset of the open message's header; SIZE_MAX: none */
    size_t nests[LB_NFT_NEST_MAX];
    size_t depth;
    uint32_t set_id; /* last NFTA_SET_ID handed out */
    int err;         /* sticky */
};

/* Start a batch (writes BATCH_BEGIN). */
void lb_nft_batch_init(struct lb_nft_batch *b, uint32_t seq0);
/* Append BATCH_END. Returns the sticky error (0 when the batch is complete). */
int lb_nft_batch_end(struct lb_nft_batch *b);
void lb_nft_batch_done(struct lb_nft_batch *b);
/* Open message NFT_MSG_@nft_type (family ip, NLM_F_REQUEST | NLM_F_ACK | @flags);
 * @fmt names what it is about in an error message. Closes the previous message. */
void lb_nft_msg(struct lb_nft_batch *b, uint16_t nft_type, uint16_t flags,
                const char *fmt, ...) CM_PRINTF(4, 5);
void lb_nft_put(struct lb_nft_batch *b, uint16_t type, const void *data, size_t len);
void lb_nft_put_be32(struct lb_nft_batch *b, uint16_t type, uint32_t v);
void lb_nft_put_str(struct lb_nft_batch *b, uint16_t type, const char *s);
void lb_nft_nest(struct lb_nft_batch *b, uint16_t type);
void lb_nft_nest_end(struct lb_nft_batch *b);
/* A fresh NFTA_SET_ID (unique within the batch). */
uint32_t lb_nft_set_id(struct lb_nft_batch *b);

/* One expression each (an NFTA_LIST_ELEM inside NFTA_RULE_EXPRESSIONS). Registers
 * are enum nft_registers values. */
void lb_nft_expr_payload(struct lb_nft_batch *b, uint32_t dreg, uint32_t base,
                         uint32_t offset, uint32_t len);
void lb_nft_expr_meta(struct lb_nft_batch *b, uint32_t key, uint32_t dreg);
void lb_nft_expr_ct(struct lb_nft_batch *b, uint32_t key, uint32_t dreg);
void lb_nft_expr_cmp(struct lb_nft_batch *b, uint32_t sreg, uint32_t op, const void *data,
                     size_t len);
/* reg = (reg & mask) ^ xor over @len bytes. */
void lb_nft_expr_bitwise(struct lb_nft_batch *b, uint32_t reg, const void *mask,
                         const void * xor, size_t len);
void lb_nft_expr_numgen_random(struct lb_nft_batch *b, uint32_t dreg, uint32_t mod);
/* reg = htonl/htons(reg), in place. */
void lb_nft_expr_hton(struct lb_nft_batch *b, uint32_t reg, uint32_t len, uint32_t size);
/* @dreg < 0: a set membership test; else a map lookup into @dreg (NFT_REG_VERDICT
 * for a verdict map). */
void lb_nft_expr_lookup(struct lb_nft_batch *b, uint32_t sreg, int32_t dreg,
                        const char *set, uint32_t set_id);
void lb_nft_expr_dnat(struct lb_nft_batch *b, uint32_t reg_addr, uint32_t reg_proto);
void lb_nft_expr_masq(struct lb_nft_batch *b);
/* NFT_REJECT_ICMP_UNREACH with an ICMP code, or NFT_REJECT_TCP_RST (code 0). */
void lb_nft_expr_reject(struct lb_nft_batch *b, uint32_t type, uint8_t code);

/* Replies to a batch: one ack (error 0) or error per message, and possibly one
 * error with BATCH_BEGIN's sequence number for the batch as a whole. */
struct lb_nft_acks {
    uint32_t seq0;  /* BATCH_BEGIN's sequence number */
    uint32_t nmsgs; /* messages seq0 + 1 .. seq0 + nmsgs */
    size_t nacks;   /* replies to those seen so far */
    int err;        /* the error to report (batch-wide first, else lowest seq); 0 */
    uint32_t err_seq;
    char msg[96]; /* the kernel's extended-ack text for err, "" when none */
};

/* Parse one datagram of replies into @a. Errors: CM_EMALFORMED (a message or
 * attribute runs past its bounds, an error code out of range), CM_EPROTO (a reply
 * to a sequence number outside the batch, or a message that is no ack). */
int lb_nft_acks_feed(struct lb_nft_acks *a, const void *buf, size_t len);

/* Send the ended batch in one sendmsg and read every reply. On failure @eb names
 * the first failing message: "nftables: NEWRULE chain vip_3: invalid argument". */
int lb_nft_batch_send(const struct lb_nft_batch *b, struct cm_errbuf *eb);

/* nat.c: the batch that replaces table ip clusterctl with @t's rules (see nat.c's
 * header comment for the ruleset), sequence numbers from @seq0. @b is initialised
 * here; the caller frees it with lb_nft_batch_done whatever the result. Errors:
 * CM_ENOMEM, CM_ETOOBIG. */
int lb__nat_batch(const struct lb_table *t, bool auto_is_nat, uint32_t seq0,
                  struct lb_nft_batch *b);

#endif
