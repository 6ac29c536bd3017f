/* raft/config.c: membership configurations and their wire encoding.
 *
 * Encoding (version 1, integers big-endian):
 *   u8 version | u32 count | count * (u64 id | u8 role | u16 addr_len | addr)
 * The address is stored without its terminator; addr_len < RAFT_ADDRESS_MAX. */
#include "raft/raft.h"

#include <string.h>

#include "base/base.h"
#include "raft/core_int.h"

#define RAFT_CONFIG_VERSION 1
/* Bytes of one server record without the address. */
#define RAFT_CONFIG_SERVER_MIN (8 + 1 + 2)

static bool role_valid(unsigned role)
{
    return role == RAFT_VOTER || role == RAFT_LEARNER;
}

int raft_config_add(struct raft_config *c, raft_id id, const char *address,
                    enum raft_member_role role)
{
    if (id == 0 || !role_valid(role) || address == NULL) {
        return CM_EINVAL;
    }
    size_t len = strlen(address);
    if (len >= RAFT_ADDRESS_MAX) {
        return CM_EINVAL;
    }
    for (unsigned i = 0; i < c->n; i++) {
        if (c->servers[i].id == id) {
            return CM_EEXIST;
        }
        /* Empty addresses (servers known only by id, as in tests) never clash. */
        if (len > 0 && strcmp(c->servers[i].address, address) == 0) {
            return CM_EEXIST;
        }
    }
    struct raft_server *servers =
        cm_reallocarray(c->servers, (size_t)c->n + 1, sizeof *servers);
    if (servers == NULL) {
        return CM_ENOMEM;
    }
    c->servers = servers;
    struct raft_server *s = &servers[c->n];
    memset(s, 0, sizeof *s);
    s->id = id;
    s->role = (uint8_t)role;
    memcpy(s->address, address, len + 1);
    c->n++;
    return 0;
}

int raft_config_remove(struct raft_config *c, raft_id id)
{
    for (unsigned i = 0; i < c->n; i++) {
        if (c->servers[i].id == id) {
            memmove(&c->servers[i], &c->servers[i + 1],
                    (c->n - i - 1) * sizeof *c->servers);
            c->n--;
            if (c->n == 0) {
                cm_free(&c->servers);
            }
            return 0;
        }
    }
    return CM_ENOTFOUND;
}

const struct raft_server *raft_config_get(const struct raft_config *c, raft_id id)
{
    for (unsigned i = 0; i < c->n; i++) {
        if (c->servers[i].id == id) {
            return &c->servers[i];
        }
    }
    return NULL;
}

unsigned raft_config_voter_count(const struct raft_config *c)
{
    unsigned n = 0;
    for (unsigned i = 0; i < c->n; i++) {
        if (c->servers[i].role == RAFT_VOTER) {
            n++;
        }
    }
    return n;
}

int raft_config_copy(const struct raft_config *src, struct raft_config *ret)
{
    struct raft_server *servers = NULL;
    if (src->n > 0) {
        servers = cm_memdup(src->servers, src->n * sizeof *servers);
        if (servers == NULL) {
            return CM_ENOMEM;
        }
    }
    ret->n = src->n;
    ret->servers = servers;
    return 0;
}

void raft_config_close(struct raft_config *c)
{
    cm_free(&c->servers);
    c->n = 0;
}

static size_t config_encoded_size(const struct raft_config *c)
{
    size_t n = 1 + 4;
    for (unsigned i = 0; i < c->n; i++) {
        n += RAFT_CONFIG_SERVER_MIN + strnlen(c->servers[i].address, RAFT_ADDRESS_MAX);
    }
    return n;
}

int raft_config_encode(const struct raft_config *c, struct raft_buffer *ret)
{
    size_t size = config_encoded_size(c);
    void *data = cm_malloc(size);
    if (data == NULL) {
        return CM_ENOMEM;
    }
    struct cm_wbuf b;
    cm_wbuf_init(&b, data, size);
    cm_wbuf_u8(&b, RAFT_CONFIG_VERSION);
    cm_wbuf_u32(&b, c->n);
    for (unsigned i = 0; i < c->n; i++) {
        const struct raft_server *s = &c->servers[i];
        size_t len = strnlen(s->address, RAFT_ADDRESS_MAX - 1);
        cm_wbuf_u64(&b, s->id);
        cm_wbuf_u8(&b, s->role);
        cm_wbuf_u16(&b, (uint16_t)len);
        cm_wbuf_write(&b, s->address, len);
    }
    CM_BUG_ON(b.err != 0 || cm_wbuf_len(&b) != size);
    ret->base = data;
    ret->len = size;
    return 0;
}

int raft_config_decode(const void *data, size_t len, struct raft_config *ret)
{
    struct cm_wire w;
    cm_wire_init(&w, data, len);
    uint8_t version = cm_wire_u8(&w);
    uint32_t count = cm_wire_u32(&w);
    if (cm_wire_err(&w) != 0) {
        return CM_ETRUNC;
    }
    if (version != RAFT_CONFIG_VERSION) {
        return CM_EMALFORMED;
    }
    /* Bound the allocation by what the input can possibly hold (STYLE.md 13). */
    if (count > cm_wire_remaining(&w) / RAFT_CONFIG_SERVER_MIN) {
        return CM_ETRUNC;
    }
    struct raft_config c = {0, NULL};
    if (count > 0) {
        c.servers = cm_calloc(count, sizeof *c.servers);
        if (c.servers == NULL) {
            return CM_ENOMEM;
        }
    }
    int rv = 0;
    for (uint32_t i = 0; i < count; i++) {
        struct raft_server *s = &c.servers[i];
        s->id = cm_wire_u64(&w);
        s->role = cm_wire_u8(&w);
        uint16_t alen = cm_wire_u16(&w);
        if (cm_wire_err(&w) != 0) {
            rv = CM_ETRUNC;
            goto err;
        }
        if (alen >= RAFT_ADDRESS_MAX) {
            rv = CM_ETOOBIG;
            goto err;
        }
        cm_wire_read(&w, s->address, alen);
        if (cm_wire_err(&w) != 0) {
            rv = CM_ETRUNC;
            goto err;
        }
        s->address[alen] = '\0';
        if (s->id == 0 || !role_valid(s->role) || memchr(s->address, '\0', alen)) {
            rv = CM_EMALFORMED;
            goto err;
        }
        for (uint32_t j = 0; j < i; j++) {
            if (c.servers[j].id == s->id) {
                rv = CM_EMALFORMED;
                goto err;
            }
        }
        c.n++;
    }
    if (cm_wire_remaining(&w) != 0) {
        rv = CM_EMALFORMED;
        goto err;
    }
    *ret = c;
    return 0;

err:
    cm_free(&c.servers);
    CM_ASSERT(rv == CM_ETRUNC || rv == CM_ETOOBIG || rv == CM_EMALFORMED);
    return rv;
}

uint8_t raft__config_role_in(const void *data, size_t len, raft_id id)
{
    struct cm_wire w;
    cm_wire_init(&w, data, len);
    if (cm_wire_u8(&w) != RAFT_CONFIG_VERSION) {
        return 0;
    }
    uint32_t count = cm_wire_u32(&w);
    for (uint32_t i = 0; i < count && cm_wire_err(&w) == 0; i++) {
        raft_id sid = cm_wire_u64(&w);
        uint8_t role = cm_wire_u8(&w);
        uint16_t alen = cm_wire_u16(&w);
        cm_wire_skip(&w, alen);
        if (cm_wire_err(&w) == 0 && sid == id) {
            return role;
        }
    }
    return 0;
}

int raft_bootstrap_entry(const struct raft_config *c, struct raft_entry *ret)
{
    struct raft_buffer buf;
    int rv = raft_config_encode(c, &buf);
    if (rv != 0) {
        return rv;
    }
    ret->term = 1;
    ret->type = RAFT_CHANGE;
    ret->buf = buf;
    return 0;
}
