/* Fuzz the nf_tables ack reader (lb_nft_acks_feed, lb/nft.c): the first 8 bytes are
 * the batch's first sequence number and message count (little-endian u32 each,
 * the count kept small), the rest one datagram of kernel replies, from a copy of
 * exactly that size so ASan sees a read one past the end. Whatever the bytes: a
 * recorded error is a negative errno at a sequence number of the batch, its text
 * is terminated inside the buffer, and the acks counted never exceed the replies
 * the datagram can hold. Fed in one piece or split at the first message boundary,
 * the same datagram gives the same result when both halves parse. */
#include <stdlib.h>

#include "base/base.h"
#include "fuzz.h"
#include "lb/lb_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 8) {
        return 0;
    }
    uint32_t seq0, nmsgs;
    memcpy(&seq0, data, 4);
    memcpy(&nmsgs, data + 4, 4);
    nmsgs %= 4096;
    size_t len = size - 8;
    uint8_t *copy = malloc(len ? len : 1);
    if (copy == NULL) {
        return 0;
    }
    memcpy(copy, data + 8, len);

    struct lb_nft_acks a = {.seq0 = seq0, .nmsgs = nmsgs};
    int rv = lb_nft_acks_feed(&a, copy, len);
    if (rv != 0 && rv != CM_EMALFORMED && rv != CM_EPROTO) {
        abort();
    }
    if (a.nacks > len / 36) { /* an ack is at least a header and a nlmsgerr */
        abort();
    }
    if (a.err != 0) {
        if (a.err > 0 || a.err < -4095 || a.err_seq - seq0 > nmsgs) {
            abort();
        }
    }
    if (strnlen(a.msg, sizeof(a.msg)) == sizeof(a.msg)) {
        abort();
    }
    if (rv == 0 && len >= 16) {
        /* Split after the first message and feed both halves. */
        uint32_t first;
        memcpy(&first, copy, 4);
        size_t cut = CM_MIN((size_t)((first + 3u) & ~3u), len);
        struct lb_nft_acks b = {.seq0 = seq0, .nmsgs = nmsgs};
        int r1 = lb_nft_acks_feed(&b, copy, cut);
        int r2 = lb_nft_acks_feed(&b, copy + cut, len - cut);
        if (r1 == 0 && r2 == 0 &&
            (b.nacks != a.nacks || b.err != a.err || b.err_seq != a.err_seq ||
             strcmp(b.msg, a.msg) != 0)) {
            abort();
        }
    }
    free(copy);
    return 0;
}
