/* lb/: private to this directory. */
#ifndef LB_LB_INT_H
#define LB_LB_INT_H

#include <stdatomic.h>

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

#endif
