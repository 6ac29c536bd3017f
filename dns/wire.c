/* DNS wire format: names, the message reader, query validation and the writer.
 *
 * Every byte of a message is read through a cm_wire cursor (STYLE.md rule 13);
 * writing goes through the bounded dns_writer, which compresses names with a
 * small table of suffixes already in the message. */
#include <arpa/inet.h>
#include <string.h>

#include "dns/dns_int.h"

/* ======================================================================= names */

int dns_name_read(struct cm_wire *w, struct dns_name *ret)
{
    if (cm_wire_err(w) != 0) {
        return cm_wire_err(w);
    }
    const uint8_t *msg = w->start;
    size_t mlen = (size_t)(w->end - w->start);
    size_t pos = cm_wire_offset(w);
    size_t seg = pos; /* start of the label sequence being read */
    size_t after = 0; /* where the name ends in place */
    bool jumped = false;
    size_t out = 0;
    int err = 0;

    for (;;) {
        if (pos >= mlen) {
            err = CM_ETRUNC;
            break;
        }
        uint8_t c = msg[pos];
        if ((c & 0xc0) == 0xc0) {
            if (pos + 1 >= mlen) {
                err = CM_ETRUNC;
                break;
            }
            size_t target = ((size_t)(c & 0x3f) << 8) | msg[pos + 1];
            if (!jumped) {
                after = pos + 2;
                jumped = true;
            }
            /* RFC 1035 §4.1.4 allows any earlier occurrence; requiring every
             * jump to land before the current sequence makes loops impossible
             * and forward pointers an error (as Knot does). */
            if (target >= seg || target < DNS_HEADER_LEN) {
                err = CM_EMALFORMED;
                break;
            }
            pos = seg = target;
            continue;
        }
        if ((c & 0xc0) != 0) {
            err = CM_EMALFORMED; /* 0x40 extended, 0x80 reserved (RFC 6891 §5) */
            break;
        }
        if (out + 1 + c > DNS_NAME_MAX) {
            err = CM_ETOOBIG;
            break;
        }
        if (pos + 1 + c > mlen) {
            err = CM_ETRUNC;
            break;
        }
        memcpy(ret->data + out, msg + pos, 1 + (size_t)c);
        out += 1 + (size_t)c;
        pos += 1 + (size_t)c;
        if (c == 0) {
            break;
        }
    }
    if (err != 0) {
        cm_wire_fail(w, err);
        ret->len = 0;
        return err;
    }
    ret->len = out;
    cm_wire_seek(w, jumped ? after : pos);
    return 0;
}

int dns_name_from_str(const char *s, struct dns_name *ret)
{
    size_t out = 0;
    size_t n = strlen(s);
    if (n == 1 && s[0] == '.') {
        n = 0;
    }
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && s[j] != '.') {
            j++;
        }
        size_t l = j - i;
        if (l == 0) {
            return CM_EINVAL;
        }
        if (l > DNS_LABEL_MAX) {
            return CM_ETOOBIG;
        }
        if (out + 1 + l + 1 > DNS_NAME_MAX) {
            return CM_ETOOBIG;
        }
        ret->data[out++] = (uint8_t)l;
        memcpy(ret->data + out, s + i, l);
        out += l;
        i = j + 1; /* a trailing dot ends the loop */
    }
    ret->data[out++] = 0;
    ret->len = out;
    return 0;
}

/* Check that @name is a sequence of labels ending at its length. */
static bool name_valid(const struct dns_name *name)
{
    size_t i = 0;
    if (name->len == 0 || name->len > DNS_NAME_MAX) {
        return false;
    }
    while (i < name->len) {
        uint8_t c = name->data[i];
        if (c > DNS_LABEL_MAX) {
            return false;
        }
        if (c == 0) {
            return i + 1 == name->len;
        }
        i += 1 + (size_t)c;
    }
    return false;
}

int dns_name_to_str(const struct dns_name *name, char *out, size_t cap)
{
    if (!name_valid(name)) {
        return CM_EINVAL;
    }
    size_t o = 0;
    bool full = false;
#define PUT(ch)                  \
    do {                         \
        if (o + 1 < cap) {       \
            out[o] = (char)(ch); \
        } else {                 \
            full = true;         \
        }                        \
        o++;                     \
    } while (0)
    size_t i = 0;
    if (name->data[0] == 0) {
        PUT('.');
    }
    while (name->data[i] != 0) {
        uint8_t l = name->data[i];
        for (size_t k = 1; k <= l; k++) {
            uint8_t c = name->data[i + k];
            if (c == '.' || c == '\\') {
                PUT('\\');
                PUT(c);
            } else if (c <= 0x20 || c >= 0x7f) {
                PUT('\\');
                PUT('0' + c / 100);
                PUT('0' + (c / 10) % 10);
                PUT('0' + c % 10);
            } else {
                PUT(c);
            }
        }
        PUT('.');
        i += 1 + (size_t)l;
    }
#undef PUT
    if (cap > 0) {
        out[o < cap ? o : cap - 1] = '\0';
    }
    if (full || o >= cap) {
        return CM_EMSGSIZE;
    }
    return (int)o;
}

bool dns_name_equal(const struct dns_name *a, const struct dns_name *b)
{
    if (a->len != b->len) {
        return false;
    }
    /* Length bytes are below 'A' (at most 63), so lower-casing them is harmless. */
    for (size_t i = 0; i < a->len; i++) {
        if (dns__lower(a->data[i]) != dns__lower(b->data[i])) {
            return false;
        }
    }
    return true;
}

void dns_name_lower(struct dns_name *name)
{
    for (size_t i = 0; i < name->len; i++) {
        name->data[i] = dns__lower(name->data[i]);
    }
}

unsigned dns_name_labels(const struct dns_name *name)
{
    unsigned n = 0;
    size_t i = 0;
    while (i < name->len && name->data[i] != 0) {
        n++;
        i += 1 + (size_t)name->data[i];
    }
    return n;
}

bool dns_name_in_zone(const struct dns_name *name, const struct dns_name *zone)
{
    if (name->len < zone->len) {
        return false;
    }
    size_t skip = name->len - zone->len;
    /* The suffix must start on a label boundary. */
    size_t i = 0;
    while (i < skip) {
        i += 1 + (size_t)name->data[i];
    }
    if (i != skip) {
        return false;
    }
    for (size_t k = 0; k < zone->len; k++) {
        if (dns__lower(name->data[skip + k]) != dns__lower(zone->data[k])) {
            return false;
        }
    }
    return true;
}

/* ======================================================================= reader */

int dns_reader_init(struct dns_reader *r, const uint8_t *msg, size_t len)
{
    memset(r, 0, sizeof(*r));
    struct cm_wire w;
    cm_wire_init(&w, msg, len);
    r->header.id = cm_wire_u16(&w);
    r->header.flags = cm_wire_u16(&w);
    r->header.qdcount = cm_wire_u16(&w);
    r->header.ancount = cm_wire_u16(&w);
    r->header.nscount = cm_wire_u16(&w);
    r->header.arcount = cm_wire_u16(&w);
    if (cm_wire_err(&w) != 0) {
        return CM_ETRUNC;
    }
    r->msg = msg;
    r->len = len;
    r->pos = DNS_HEADER_LEN;
    r->section = DNS_SECTION_QUESTION;
    r->left = r->header.qdcount;
    return 0;
}

/* A sticky failure: pos beyond len marks it. */
static int reader_fail(struct dns_reader *r, int err)
{
    r->pos = r->len + 1;
    r->left = 0;
    r->section = DNS_SECTION_ADDITIONAL;
    return err;
}

static bool reader_failed(const struct dns_reader *r)
{
    return r->pos > r->len;
}

int dns_reader_question(struct dns_reader *r, struct dns_question *ret_q)
{
    if (reader_failed(r)) {
        return CM_EMALFORMED;
    }
    if (r->section != DNS_SECTION_QUESTION || r->left == 0) {
        return CM_ENOENT;
    }
    struct cm_wire w;
    cm_wire_init(&w, r->msg, r->len);
    cm_wire_seek(&w, r->pos);
    int rv = dns_name_read(&w, &ret_q->name);
    if (rv != 0) {
        return reader_fail(r, rv);
    }
    ret_q->qtype = cm_wire_u16(&w);
    ret_q->qclass = cm_wire_u16(&w);
    if (cm_wire_err(&w) != 0) {
        return reader_fail(r, cm_wire_err(&w));
    }
    r->pos = cm_wire_offset(&w);
    r->left--;
    return 0;
}

/* Decode the rdata of the known types; the cursor spans the whole message and
 * sits at the rdata. Names inside may be compressed. */
static int rdata_decode(struct cm_wire *w, struct dns_rr *rr)
{
    size_t end = cm_wire_offset(w) + rr->rdlength;
    switch (rr->type) {
    case DNS_TYPE_A:
        cm_wire_read(w, rr->data.a, 4);
        break;
    case DNS_TYPE_AAAA:
        cm_wire_read(w, rr->data.aaaa, 16);
        break;
    case DNS_TYPE_NS:
        dns_name_read(w, &rr->data.ns);
        break;
    case DNS_TYPE_SRV:
        rr->data.srv.priority = cm_wire_u16(w);
        rr->data.srv.weight = cm_wire_u16(w);
        rr->data.srv.port = cm_wire_u16(w);
        dns_name_read(w, &rr->data.srv.target);
        break;
    case DNS_TYPE_SOA:
        dns_name_read(w, &rr->data.soa.mname);
        dns_name_read(w, &rr->data.soa.rname);
        rr->data.soa.serial = cm_wire_u32(w);
        rr->data.soa.refresh = cm_wire_u32(w);
        rr->data.soa.retry = cm_wire_u32(w);
        rr->data.soa.expire = cm_wire_u32(w);
        rr->data.soa.minimum = cm_wire_u32(w);
        break;
    case DNS_TYPE_OPT:
        rr->data.opt.udp_size = rr->rclass;
        rr->data.opt.ext_rcode = (uint8_t)(rr->ttl >> 24);
        rr->data.opt.version = (uint8_t)(rr->ttl >> 16);
        rr->data.opt.flags = (uint16_t)rr->ttl;
        /* Options are {code, length, data} (RFC 6891 §6.1.2). */
        while (cm_wire_err(w) == 0 && cm_wire_offset(w) < end) {
            (void)cm_wire_u16(w);
            cm_wire_skip(w, cm_wire_u16(w));
        }
        break;
    default:
        cm_wire_skip(w, rr->rdlength);
        break;
    }
    if (cm_wire_err(w) != 0) {
        return cm_wire_err(w) == CM_ETOOBIG ? CM_ETOOBIG : CM_EMALFORMED;
    }
    /* The decoded fields must fill the rdata exactly. */
    if (cm_wire_offset(w) != end) {
        return CM_EMALFORMED;
    }
    return 0;
}

int dns_reader_rr(struct dns_reader *r, struct dns_rr *ret_rr,
                  enum dns_section *ret_section)
{
    if (reader_failed(r)) {
        return CM_EMALFORMED;
    }
    struct dns_question q;
    while (r->section == DNS_SECTION_QUESTION && r->left > 0) {
        int rv = dns_reader_question(r, &q);
        if (rv != 0) {
            return rv;
        }
    }
    while (r->left == 0) {
        if (r->section == DNS_SECTION_ADDITIONAL) {
            return CM_ENOENT;
        }
        r->section++;
        r->left = r->section == DNS_SECTION_ANSWER      ? r->header.ancount
                  : r->section == DNS_SECTION_AUTHORITY ? r->header.nscount
                                                        : r->header.arcount;
    }
    struct cm_wire w;
    cm_wire_init(&w, r->msg, r->len);
    cm_wire_seek(&w, r->pos);
    int rv = dns_name_read(&w, &ret_rr->owner);
    if (rv != 0) {
        return reader_fail(r, rv);
    }
    ret_rr->type = cm_wire_u16(&w);
    ret_rr->rclass = cm_wire_u16(&w);
    ret_rr->ttl = cm_wire_u32(&w);
    ret_rr->rdlength = cm_wire_u16(&w);
    size_t rdoff = cm_wire_offset(&w);
    ret_rr->rdata = cm_wire_take(&w, ret_rr->rdlength);
    if (cm_wire_err(&w) != 0) {
        return reader_fail(r, CM_ETRUNC);
    }
    struct cm_wire rd;
    cm_wire_init(&rd, r->msg, r->len);
    cm_wire_seek(&rd, rdoff);
    rv = rdata_decode(&rd, ret_rr);
    if (rv != 0) {
        return reader_fail(r, rv);
    }
    r->pos = cm_wire_offset(&w);
    r->left--;
    if (ret_section != NULL) {
        *ret_section = r->section;
    }
    return 0;
}

int dns_reader_finish(const struct dns_reader *r)
{
    if (reader_failed(r)) {
        return CM_EMALFORMED;
    }
    unsigned rest = r->left;
    if (r->section < DNS_SECTION_ANSWER) {
        rest += r->header.ancount;
    }
    if (r->section < DNS_SECTION_AUTHORITY) {
        rest += r->header.nscount;
    }
    if (r->section < DNS_SECTION_ADDITIONAL) {
        rest += r->header.arcount;
    }
    if (rest > 0) {
        return CM_EINVAL;
    }
    return r->pos == r->len ? 0 : CM_EMALFORMED;
}

int dns_message_check(const uint8_t *msg, size_t len)
{
    struct dns_reader r;
    int rv = dns_reader_init(&r, msg, len);
    if (rv != 0) {
        return rv;
    }
    struct dns_question q;
    while ((rv = dns_reader_question(&r, &q)) == 0) {
    }
    if (rv != CM_ENOENT) {
        return rv;
    }
    struct dns_rr rr;
    while ((rv = dns_reader_rr(&r, &rr, NULL)) == 0) {
    }
    if (rv != CM_ENOENT) {
        return rv;
    }
    return dns_reader_finish(&r);
}

int dns_query_parse(const uint8_t *msg, size_t len, struct dns_query *ret_q)
{
    struct dns_reader r;
    if (dns_reader_init(&r, msg, len) != 0) {
        return CM_ETRUNC;
    }
    ret_q->header = r.header;
    ret_q->has_question = false;
    ret_q->has_edns = false;
    ret_q->rcode = DNS_RCODE_FORMERR;
    const struct dns_header *h = &r.header;

    if ((h->flags & DNS_FLAG_QR) != 0) {
        return CM_EPROTO;
    }
    if (DNS_OPCODE_OF(h->flags) != DNS_OPCODE_QUERY) {
        /* Other opcodes give sections other meanings: do not read on. */
        ret_q->rcode = DNS_RCODE_NOTIMP;
        return CM_EPROTO;
    }
    if (h->qdcount != 1) {
        return CM_EPROTO;
    }
    if (dns_reader_question(&r, &ret_q->question) != 0) {
        return CM_EPROTO;
    }
    if (ret_q->question.qtype == DNS_TYPE_OPT) {
        return CM_EPROTO; /* a meta type that only lives in the additional section */
    }
    ret_q->has_question = true;
    if (h->ancount != 0 || h->nscount != 0) {
        return CM_EPROTO;
    }
    struct dns_rr rr;
    int rv;
    while ((rv = dns_reader_rr(&r, &rr, NULL)) == 0) {
        if (rr.type != DNS_TYPE_OPT) {
            continue; /* e.g. TSIG: not supported, but well-formed */
        }
        /* RFC 6891 §6.1.1: one OPT, owned by the root. */
        if (ret_q->has_edns || rr.owner.len != 1) {
            ret_q->has_edns = false;
            return CM_EPROTO;
        }
        ret_q->edns = rr.data.opt;
        ret_q->has_edns = true;
    }
    if (rv != CM_ENOENT || dns_reader_finish(&r) != 0) {
        return CM_EPROTO;
    }
    if (ret_q->has_edns && ret_q->edns.version > 0) {
        ret_q->rcode = DNS_RCODE_BADVERS; /* RFC 6891 §6.1.3 */
        return CM_EPROTO;
    }
    ret_q->rcode = DNS_RCODE_NOERROR;
    return 0;
}

/* ======================================================================= writer */

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

void dns_writer_init(struct dns_writer *w, uint8_t *buf, size_t cap,
                     const struct dns_header *h)
{
    memset(w->counts, 0, sizeof(w->counts));
    w->buf = buf;
    w->cap = cap > DNS_TCP_MAX ? DNS_TCP_MAX : cap;
    w->limit = w->cap;
    w->section = DNS_SECTION_QUESTION;
    w->ncompress = 0;
    w->len = 0;
    if (w->cap < DNS_HEADER_LEN) {
        w->cap = w->limit = 0; /* nothing fits */
        return;
    }
    put16(buf, h->id);
    put16(buf + 2, h->flags);
    memset(buf + 4, 0, 8);
    w->len = DNS_HEADER_LEN;
}

void dns_writer_set_limit(struct dns_writer *w, size_t limit)
{
    w->limit = limit < w->cap ? limit : w->cap;
}

void dns_writer_set_flags(struct dns_writer *w, uint16_t flags)
{
    if (w->len >= DNS_HEADER_LEN) {
        put16(w->buf + 2, (uint16_t)(((w->buf[2] << 8) | w->buf[3]) | flags));
    }
}

void dns_writer_mark(const struct dns_writer *w, struct dns_writer_mark *ret_m)
{
    ret_m->len = w->len;
    memcpy(ret_m->counts, w->counts, sizeof(ret_m->counts));
    ret_m->section = w->section;
    ret_m->ncompress = w->ncompress;
}

void dns_writer_rollback(struct dns_writer *w, const struct dns_writer_mark *m)
{
    w->len = m->len;
    memcpy(w->counts, m->counts, sizeof(w->counts));
    w->section = m->section;
    w->ncompress = m->ncompress;
}

size_t dns_writer_finish(struct dns_writer *w)
{
    if (w->len < DNS_HEADER_LEN) {
        return 0;
    }
    for (int i = 0; i < 4; i++) {
        put16(w->buf + 4 + 2 * i, w->counts[i]);
    }
    return w->len;
}

/* Is the name at @off of the message (following our own, always backward,
 * pointers) byte for byte the wire name @s of @slen bytes? */
static bool name_at_equal(const uint8_t *buf, size_t off, const uint8_t *s, size_t slen)
{
    size_t i = 0;
    for (;;) {
        uint8_t c = buf[off];
        if ((c & 0xc0) == 0xc0) {
            off = ((size_t)(c & 0x3f) << 8) | buf[off + 1];
            continue;
        }
        if (i >= slen || s[i] != c) {
            return false;
        }
        if (c == 0) {
            return i + 1 == slen;
        }
        if (i + 1 + c > slen || memcmp(buf + off + 1, s + i + 1, c) != 0) {
            return false;
        }
        i += 1 + (size_t)c;
        off += 1 + (size_t)c;
    }
}

/* Write @name at *pos (not beyond the limit), compressed against remembered
 * suffixes when @compress; remember its own suffixes either way. Returns false
 * when it does not fit. */
static bool put_name(struct dns_writer *w, size_t *pos, const uint8_t *name, size_t len,
                     bool compress)
{
    size_t p = *pos;
    size_t i = 0; /* start of the suffix being considered */
    size_t ptr = 0;
    bool found = false;
    while (name[i] != 0) {
        if (compress) {
            size_t slen = len - i;
            for (unsigned k = 0; k < w->ncompress; k++) {
                if (w->compress[k].len == slen &&
                    name_at_equal(w->buf, w->compress[k].off, name + i, slen)) {
                    ptr = w->compress[k].off;
                    found = true;
                    break;
                }
            }
            if (found) {
                break;
            }
        }
        i += 1 + (size_t)name[i];
    }
    /* Labels 0..i go literally, then a pointer or the root label. */
    size_t need = i + (found ? 2 : 1);
    if (p + need > w->limit) {
        return false;
    }
    memcpy(w->buf + p, name, i);
    size_t j = 0;
    while (j < i) {
        if (p + j < 0x4000 && w->ncompress < DNS_COMPRESS_MAX) {
            w->compress[w->ncompress].off = (uint16_t)(p + j);
            w->compress[w->ncompress].len = (uint16_t)(len - j);
            w->ncompress++;
        }
        j += 1 + (size_t)name[j];
    }
    if (found) {
        put16(w->buf + p + i, (uint16_t)(0xc000u | ptr));
    } else {
        w->buf[p + i] = 0;
    }
    *pos = p + need;
    return true;
}

int dns_writer_question(struct dns_writer *w, const struct dns_question *q)
{
    if (w->section != DNS_SECTION_QUESTION || w->len < DNS_HEADER_LEN) {
        return w->len < DNS_HEADER_LEN ? CM_EMSGSIZE : CM_EINVAL;
    }
    size_t p = w->len;
    unsigned nc = w->ncompress;
    if (!put_name(w, &p, q->name.data, q->name.len, true) || p + 4 > w->limit) {
        w->ncompress = nc;
        return CM_EMSGSIZE;
    }
    put16(w->buf + p, q->qtype);
    put16(w->buf + p + 2, q->qclass);
    w->len = p + 4;
    w->counts[DNS_SECTION_QUESTION]++;
    return 0;
}

int dns__writer_put(struct dns_writer *w, enum dns_section section, const uint8_t *owner,
                    size_t owner_len, uint16_t owner_off, uint16_t type, uint16_t rclass,
                    uint32_t ttl, const struct dns__rdata *rd)
{
    if ((int)section < w->section || section == DNS_SECTION_QUESTION) {
        return CM_EINVAL;
    }
    if (w->len < DNS_HEADER_LEN || w->counts[section] == UINT16_MAX) {
        return CM_EMSGSIZE;
    }
    size_t p = w->len;
    unsigned nc = w->ncompress;
    if (owner != NULL) {
        if (!put_name(w, &p, owner, owner_len, true)) {
            goto full;
        }
    } else {
        if (p + 2 > w->limit) {
            goto full;
        }
        put16(w->buf + p, (uint16_t)(0xc000u | owner_off));
        p += 2;
    }
    if (p + 10 + rd->prelen > w->limit) {
        goto full;
    }
    put16(w->buf + p, type);
    put16(w->buf + p + 2, rclass);
    put32(w->buf + p + 4, ttl);
    size_t rdstart = p + 10;
    p = rdstart;
    if (rd->prelen > 0) {
        memcpy(w->buf + p, rd->pre, rd->prelen);
        p += rd->prelen;
    }
    if (rd->n1 != NULL && !put_name(w, &p, rd->n1, rd->n1len, rd->compress)) {
        goto full;
    }
    if (rd->n2 != NULL && !put_name(w, &p, rd->n2, rd->n2len, rd->compress)) {
        goto full;
    }
    if (p + rd->postlen > w->limit || p - rdstart + rd->postlen > UINT16_MAX) {
        goto full;
    }
    if (rd->postlen > 0) {
        memcpy(w->buf + p, rd->post, rd->postlen);
        p += rd->postlen;
    }
    put16(w->buf + rdstart - 2, (uint16_t)(p - rdstart));
    w->len = p;
    w->section = (int)section;
    w->counts[section]++;
    return 0;
full:
    w->ncompress = nc;
    return CM_EMSGSIZE;
}

int dns_writer_rr(struct dns_writer *w, enum dns_section section, const struct dns_rr *rr)
{
    struct dns__rdata rd = {0};
    uint8_t fixed[20];
    uint16_t rclass = rr->rclass;
    uint32_t ttl = rr->ttl;
    if (!name_valid(&rr->owner)) {
        return CM_EINVAL;
    }
    switch (rr->type) {
    case DNS_TYPE_A:
        rd.pre = rr->data.a;
        rd.prelen = 4;
        break;
    case DNS_TYPE_AAAA:
        rd.pre = rr->data.aaaa;
        rd.prelen = 16;
        break;
    case DNS_TYPE_NS:
        if (!name_valid(&rr->data.ns)) {
            return CM_EINVAL;
        }
        rd.n1 = rr->data.ns.data;
        rd.n1len = rr->data.ns.len;
        rd.compress = true;
        break;
    case DNS_TYPE_SRV:
        if (!name_valid(&rr->data.srv.target)) {
            return CM_EINVAL;
        }
        put16(fixed, rr->data.srv.priority);
        put16(fixed + 2, rr->data.srv.weight);
        put16(fixed + 4, rr->data.srv.port);
        rd.pre = fixed;
        rd.prelen = 6;
        rd.n1 = rr->data.srv.target.data;
        rd.n1len = rr->data.srv.target.len;
        break;
    case DNS_TYPE_SOA:
        if (!name_valid(&rr->data.soa.mname) || !name_valid(&rr->data.soa.rname)) {
            return CM_EINVAL;
        }
        rd.n1 = rr->data.soa.mname.data;
        rd.n1len = rr->data.soa.mname.len;
        rd.n2 = rr->data.soa.rname.data;
        rd.n2len = rr->data.soa.rname.len;
        rd.compress = true;
        put32(fixed, rr->data.soa.serial);
        put32(fixed + 4, rr->data.soa.refresh);
        put32(fixed + 8, rr->data.soa.retry);
        put32(fixed + 12, rr->data.soa.expire);
        put32(fixed + 16, rr->data.soa.minimum);
        rd.post = fixed;
        rd.postlen = 20;
        break;
    case DNS_TYPE_OPT:
        rclass = rr->data.opt.udp_size;
        ttl = ((uint32_t)rr->data.opt.ext_rcode << 24) |
              ((uint32_t)rr->data.opt.version << 16) | rr->data.opt.flags;
        break;
    default:
        if (rr->rdlength > 0 && rr->rdata == NULL) {
            return CM_EINVAL;
        }
        rd.pre = rr->rdata;
        rd.prelen = rr->rdlength;
        break;
    }
    return dns__writer_put(w, section, rr->owner.data, rr->owner.len, 0, rr->type, rclass,
                           ttl, &rd);
}

int dns_writer_opt(struct dns_writer *w, const struct dns_edns *edns)
{
    static const uint8_t root = 0;
    struct dns__rdata rd = {0};
    uint32_t ttl =
        ((uint32_t)edns->ext_rcode << 24) | ((uint32_t)edns->version << 16) | edns->flags;
    return dns__writer_put(w, DNS_SECTION_ADDITIONAL, &root, 1, 0, DNS_TYPE_OPT,
                           edns->udp_size, ttl, &rd);
}

/* ======================================================================= misc */

int dns_addr_parse(const char *s, struct dns_addr *ret)
{
    memset(ret, 0, sizeof(*ret));
    if (inet_pton(AF_INET, s, ret->bytes) == 1) {
        ret->family = DNS_AF_INET4;
        return 0;
    }
    if (inet_pton(AF_INET6, s, ret->bytes) == 1) {
        ret->family = DNS_AF_INET6;
        return 0;
    }
    return CM_EINVAL;
}
