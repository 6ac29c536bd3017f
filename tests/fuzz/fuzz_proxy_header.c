/* Fuzz the PROXY protocol v2 parser (lb_pp2_parse): any bytes, from a copy of
 * exactly that size so ASan sees a read one past the end. On success the parsed
 * lengths must lie inside the input, and a PROXY header over TCP/IPv4 or IPv6 must
 * re-encode to the same 16 + address bytes. Every strict prefix of an accepted
 * header must be reported as truncated, never as a header. */
#include <stdlib.h>
#include <sys/socket.h>

#include "base/base.h"
#include "fuzz.h"
#include "lb/lb.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy = malloc(size ? size : 1);
    if (copy == NULL) {
        return 0;
    }
    memcpy(copy, data, size);
    struct lb_pp2 p;
    int rv = lb_pp2_parse(copy, size, &p);
    if (rv == 0) {
        if (p.len > size || p.len < LB_PP2_HDR_LEN || p.tlv_off + p.tlv_len > p.len) {
            abort();
        }
        for (size_t i = 0; i < CM_MIN(p.len, (size_t)64); i++) {
            struct lb_pp2 q;
            if (lb_pp2_parse(copy, i, &q) != CM_ETRUNC) {
                abort();
            }
        }
        if (p.cmd == LB_PP2_PROXY && p.socktype == SOCK_STREAM &&
            (p.family == AF_INET || p.family == AF_INET6)) {
            uint8_t enc[LB_PP2_ENCODE_MAX];
            size_t elen;
            if (lb_pp2_encode((struct sockaddr *)&p.src, (struct sockaddr *)&p.dst, enc,
                              sizeof(enc), &elen) != 0) {
                abort();
            }
            /* Same signature, command, family and addresses; only the length field
             * differs when the input carried TLVs. */
            if (memcmp(enc, copy, 14) != 0 ||
                memcmp(enc + LB_PP2_HDR_LEN, copy + LB_PP2_HDR_LEN,
                       elen - LB_PP2_HDR_LEN) != 0) {
                abort();
            }
        }
    } else if (rv != CM_ETRUNC && rv != CM_EMALFORMED) {
        abort();
    }
    free(copy);
    return 0;
}
