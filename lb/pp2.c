/* PROXY protocol version 2 (HAProxy, doc/proxy-protocol.txt §2.2): encode for the
 * proxy's backends; parse (for tests, fuzzing and backends written in C). */
#include <string.h>

#include "base/base.h"
#include "lb/lb.h"

/* §2.2: "\r\n\r\n\0\r\nQUIT\n" */
static const uint8_t pp2_sig[LB_PP2_SIG_LEN] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                                0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

#define PP2_VERSION   0x20
#define PP2_AF_UNSPEC 0x0
#define PP2_AF_INET   0x1
#define PP2_AF_INET6  0x2
#define PP2_AF_UNIX   0x3
#define PP2_UNSPEC    0x0
#define PP2_STREAM    0x1
#define PP2_DGRAM     0x2

int lb_pp2_encode(const struct sockaddr *src, const struct sockaddr *dst, void *buf,
                  size_t cap, size_t *ret_len)
{
    struct cm_wbuf w;
    if (src == NULL || dst == NULL || src->sa_family != dst->sa_family) {
        return CM_EINVAL;
    }
    cm_wbuf_init(&w, buf, cap);
    cm_wbuf_write(&w, pp2_sig, sizeof(pp2_sig));
    cm_wbuf_u8(&w, PP2_VERSION | LB_PP2_PROXY);
    if (src->sa_family == AF_INET) {
        const struct sockaddr_in *s = (const void *)src, *d = (const void *)dst;
        cm_wbuf_u8(&w, PP2_AF_INET << 4 | PP2_STREAM);
        cm_wbuf_u16(&w, 12);
        cm_wbuf_write(&w, &s->sin_addr, 4);
        cm_wbuf_write(&w, &d->sin_addr, 4);
        cm_wbuf_write(&w, &s->sin_port, 2); /* already network order */
        cm_wbuf_write(&w, &d->sin_port, 2);
    } else if (src->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const void *)src, *d = (const void *)dst;
        cm_wbuf_u8(&w, PP2_AF_INET6 << 4 | PP2_STREAM);
        cm_wbuf_u16(&w, 36);
        cm_wbuf_write(&w, &s->sin6_addr, 16);
        cm_wbuf_write(&w, &d->sin6_addr, 16);
        cm_wbuf_write(&w, &s->sin6_port, 2);
        cm_wbuf_write(&w, &d->sin6_port, 2);
    } else {
        return CM_EINVAL;
    }
    if (w.err != 0) {
        return w.err;
    }
    *ret_len = cm_wbuf_len(&w);
    return 0;
}

int lb_pp2_parse(const void *buf, size_t len, struct lb_pp2 *ret)
{
    struct cm_wire w;
    struct lb_pp2 p;
    const uint8_t *b = buf;

    /* A prefix of the signature is "need more"; anything else is not PROXY v2. */
    size_t n = CM_MIN(len, (size_t)LB_PP2_SIG_LEN);
    if (memcmp(b, pp2_sig, n) != 0) {
        return CM_EMALFORMED;
    }
    if (len < LB_PP2_HDR_LEN) {
        return CM_ETRUNC;
    }
    memset(&p, 0, sizeof(p));
    cm_wire_init(&w, buf, len);
    cm_wire_skip(&w, LB_PP2_SIG_LEN);
    uint8_t vc = cm_wire_u8(&w);
    uint8_t fam = cm_wire_u8(&w);
    uint16_t alen = cm_wire_u16(&w);
    if ((vc & 0xf0) != PP2_VERSION || (vc & 0x0f) > LB_PP2_PROXY) {
        return CM_EMALFORMED;
    }
    p.cmd = (enum lb_pp2_cmd)(vc & 0x0f);
    p.len = LB_PP2_HDR_LEN + (size_t)alen;
    if (len < p.len) {
        return CM_ETRUNC;
    }
    /* From here on, read only inside the header: a cursor over exactly its bytes. */
    cm_wire_init(&w, b + LB_PP2_HDR_LEN, alen);

    size_t need;
    switch (fam >> 4) {
    case PP2_AF_UNSPEC:
        p.family = AF_UNSPEC;
        need = 0;
        break;
    case PP2_AF_INET:
        p.family = AF_INET;
        need = 12;
        break;
    case PP2_AF_INET6:
        p.family = AF_INET6;
        need = 36;
        break;
    case PP2_AF_UNIX:
        p.family = AF_UNIX;
        need = 216;
        break;
    default:
        return CM_EMALFORMED;
    }
    switch (fam & 0x0f) {
    case PP2_UNSPEC:
        p.socktype = 0;
        break;
    case PP2_STREAM:
        p.socktype = SOCK_STREAM;
        break;
    case PP2_DGRAM:
        p.socktype = SOCK_DGRAM;
        break;
    default:
        return CM_EMALFORMED;
    }
    /* §2.2: LOCAL must be accepted with any family; its address block is ignored. */
    if (p.cmd == LB_PP2_PROXY && alen < need) {
        return CM_EMALFORMED;
    }
    if (p.cmd == LB_PP2_LOCAL) {
        need = 0;
        p.family = AF_UNSPEC;
    }
    if (p.family == AF_INET) {
        struct sockaddr_in *s = (void *)&p.src, *d = (void *)&p.dst;
        s->sin_family = d->sin_family = AF_INET;
        cm_wire_read(&w, &s->sin_addr, 4);
        cm_wire_read(&w, &d->sin_addr, 4);
        cm_wire_read(&w, &s->sin_port, 2);
        cm_wire_read(&w, &d->sin_port, 2);
    } else if (p.family == AF_INET6) {
        struct sockaddr_in6 *s = (void *)&p.src, *d = (void *)&p.dst;
        s->sin6_family = d->sin6_family = AF_INET6;
        cm_wire_read(&w, &s->sin6_addr, 16);
        cm_wire_read(&w, &d->sin6_addr, 16);
        cm_wire_read(&w, &s->sin6_port, 2);
        cm_wire_read(&w, &d->sin6_port, 2);
    } else {
        cm_wire_skip(&w, need);
    }
    if (p.cmd == LB_PP2_LOCAL) {
        /* Nothing of a LOCAL header's block is interpreted. */
        p.tlv_off = p.len;
        p.tlv_len = 0;
    } else {
        p.tlv_off = LB_PP2_HDR_LEN + cm_wire_offset(&w);
        p.tlv_len = cm_wire_remaining(&w);
        /* TLVs: type(1) length(2) value; they must tile the rest exactly. */
        while (cm_wire_remaining(&w) > 0) {
            (void)cm_wire_u8(&w);
            uint16_t vlen = cm_wire_u16(&w);
            cm_wire_skip(&w, vlen);
            if (cm_wire_err(&w) != 0) {
                return CM_EMALFORMED;
            }
        }
    }
    if (cm_wire_err(&w) != 0) {
        return CM_EMALFORMED;
    }
    *ret = p;
    return 0;
}
