/* dns/ server internals shared by server.c and forward.c. Not for other
 * components (STYLE.md rule 1). */
#ifndef DNS_SERVER_INT_H
#define DNS_SERVER_INT_H

#include "dns/dns_int.h"

struct ev_loop;

/* ---------------------------------------------------------------- forwarder
 *
 * One c-ares channel on one libev loop: raw queries go to the upstreams in
 * order and the raw response comes back. Used from the loop's thread only. */
struct dns__fwd;

/* The outcome of one dns__fwd_send: @status 0 and the upstream's response
 * (@resp, @len bytes, borrowed for the call; its ID is the forwarder's, not the
 * client's), or CM_ETIMEDOUT (no upstream answered in time), CM_EIO (every
 * upstream failed or refused), CM_ENOMEM, CM_ECANCELED (the forwarder is being
 * freed: send nothing). */
typedef void (*dns__fwd_cb)(void *data, int status, const uint8_t *resp, size_t len);

/* A forwarder on @loop to @ups (@n >= 1, copied). @tcp: every query over TCP
 * (the client came over TCP), else UDP, and TCP again for an answer that was
 * truncated or over 512 bytes, so a response is always whole. @timeout_ms per
 * try, @tries per upstream.
 * Errors: CM_ENOMEM, CM_EIO (c-ares failed to start). */
int dns__fwd_new(struct ev_loop *loop, const struct dns_upstream *ups, size_t n, bool tcp,
                 unsigned timeout_ms, unsigned tries, struct dns__fwd **ret);

/* Send the query @q (@len bytes, copied). @cb is called exactly once, possibly
 * before this returns (an immediate failure). */
void dns__fwd_send(struct dns__fwd *f, const uint8_t *q, size_t len, dns__fwd_cb cb,
                   void *data);

/* Cancel every query (their callbacks run with CM_ECANCELED), stop the
 * watchers, free. Accepts NULL. */
void dns__fwd_free(struct dns__fwd *f);

#endif /* DNS_SERVER_INT_H */
