/* Bounds-checked cursors over untrusted bytes (STYLE.md rule 13). */
#include "base.h"

#include <string.h>

void cm_wire_init(struct cm_wire *w, const void *data, size_t len)
{
    w->start = data;
    w->pos = data;
    w->end = (data != NULL) ? w->start + len : w->start;
    w->err = 0;
}

void cm_wire_fail(struct cm_wire *w, int err)
{
    if (w->err == 0) {
        w->err = err != 0 ? err : CM_EMALFORMED;
    }
}

/* Reserve @n bytes for reading: a pointer to them, or NULL with err set. */
static const uint8_t *wire_need(struct cm_wire *w, size_t n)
{
    if (w->err != 0) {
        return NULL;
    }
    if ((size_t)(w->end - w->pos) < n) {
        w->err = CM_ETRUNC;
        return NULL;
    }
    const uint8_t *p = w->pos;
    w->pos += n;
    return p;
}

uint8_t cm_wire_u8(struct cm_wire *w)
{
    const uint8_t *p = wire_need(w, 1);
    return p != NULL ? p[0] : 0;
}

uint16_t cm_wire_u16(struct cm_wire *w)
{
    const uint8_t *p = wire_need(w, 2);
    return p != NULL ? (uint16_t)(((uint32_t)p[0] << 8 | p[1]) & 0xffffu) : 0;
}

uint32_t cm_wire_u32(struct cm_wire *w)
{
    const uint8_t *p = wire_need(w, 4);
    if (p == NULL) {
        return 0;
    }
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) |
           (uint32_t)p[3];
}

uint64_t cm_wire_u64(struct cm_wire *w)
{
    uint64_t hi = cm_wire_u32(w);
    uint64_t lo = cm_wire_u32(w);
    return w->err != 0 ? 0 : (hi << 32) | lo;
}

void cm_wire_read(struct cm_wire *w, void *dst, size_t n)
{
    const uint8_t *p = wire_need(w, n);
    if (p != NULL) {
        memcpy(dst, p, n);
    } else if (n > 0) {
        memset(dst, 0, n);
    }
}

const uint8_t *cm_wire_take(struct cm_wire *w, size_t n)
{
    return wire_need(w, n);
}

void cm_wire_skip(struct cm_wire *w, size_t n)
{
    (void)wire_need(w, n);
}

void cm_wire_seek(struct cm_wire *w, size_t offset)
{
    if (w->err != 0) {
        return;
    }
    if (offset > (size_t)(w->end - w->start)) {
        w->err = CM_EINVAL;
        return;
    }
    w->pos = w->start + offset;
}

uint8_t cm_wire_peek_u8(struct cm_wire *w)
{
    if (w->err != 0) {
        return 0;
    }
    if (w->pos >= w->end) {
        w->err = CM_ETRUNC;
        return 0;
    }
    return w->pos[0];
}

void cm_wbuf_init(struct cm_wbuf *b, void *buf, size_t cap)
{
    b->start = buf;
    b->pos = buf;
    b->end = (buf != NULL) ? b->start + cap : b->start;
    b->err = 0;
}

static uint8_t *wbuf_need(struct cm_wbuf *b, size_t n)
{
    if (b->err != 0) {
        return NULL;
    }
    if ((size_t)(b->end - b->pos) < n) {
        b->err = CM_EMSGSIZE;
        return NULL;
    }
    uint8_t *p = b->pos;
    b->pos += n;
    return p;
}

void cm_wbuf_u8(struct cm_wbuf *b, uint8_t v)
{
    uint8_t *p = wbuf_need(b, 1);
    if (p != NULL) {
        p[0] = v;
    }
}

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

void cm_wbuf_u16(struct cm_wbuf *b, uint16_t v)
{
    uint8_t *p = wbuf_need(b, 2);
    if (p != NULL) {
        put16(p, v);
    }
}

void cm_wbuf_u32(struct cm_wbuf *b, uint32_t v)
{
    uint8_t *p = wbuf_need(b, 4);
    if (p != NULL) {
        put32(p, v);
    }
}

void cm_wbuf_u64(struct cm_wbuf *b, uint64_t v)
{
    uint8_t *p = wbuf_need(b, 8);
    if (p != NULL) {
        put32(p, (uint32_t)(v >> 32));
        put32(p + 4, (uint32_t)v);
    }
}

void cm_wbuf_write(struct cm_wbuf *b, const void *src, size_t n)
{
    uint8_t *p = wbuf_need(b, n);
    if (p != NULL && n > 0) {
        memcpy(p, src, n);
    }
}

void cm_wbuf_put_u16_at(struct cm_wbuf *b, size_t offset, uint16_t v)
{
    if (b->err == 0 && offset + 2 <= cm_wbuf_len(b)) {
        put16(b->start + offset, v);
    } else if (b->err == 0) {
        b->err = CM_EINVAL;
    }
}

void cm_wbuf_put_u32_at(struct cm_wbuf *b, size_t offset, uint32_t v)
{
    if (b->err == 0 && offset + 4 <= cm_wbuf_len(b)) {
        put32(b->start + offset, v);
    } else if (b->err == 0) {
        b->err = CM_EINVAL;
    }
}
