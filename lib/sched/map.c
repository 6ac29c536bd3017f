/* lib/sched: hash maps and the string table. Load factor at most 1/2, so probes
 * stay short; removal shifts entries back instead of leaving tombstones, so it
 * never allocates (task removal must not fail). */
#include <string.h>

#include "sched_int.h"

static inline uint32_t slot_of(uint32_t key, uint32_t mask)
{
    return (key * 0x9E3779B1u) & mask;
}

/* True when an entry at @j whose home is @home may move back to the hole at @i. */
static inline bool may_move(uint32_t i, uint32_t j, uint32_t home)
{
    if (i <= j) {
        return home <= i || home > j;
    }
    return home <= i && home > j;
}

/* ------------------------------------------------------------------ imap */

static uint32_t *imap_slot(const struct sched__imap *m, uint32_t key)
{
    uint32_t i = slot_of(key, m->mask);
    while (m->keys[i] != key && m->keys[i] != SCHED__NONE) {
        i = (i + 1) & m->mask;
    }
    return &m->keys[i];
}

int sched__imap_reserve(struct sched__imap *m, uint32_t extra)
{
    uint64_t need = (uint64_t)m->len + extra;
    uint64_t cap = m->keys ? (uint64_t)m->mask + 1 : 0;
    if (need * 2 <= cap) {
        return 0;
    }
    uint64_t ncap = cap ? cap : 8;
    while (need * 2 > ncap) {
        ncap *= 2;
    }
    if (ncap > (1u << 31)) {
        return CM_ENOMEM;
    }
    uint32_t *keys = cm_malloc((size_t)ncap * sizeof(*keys));
    uint32_t *vals = cm_malloc((size_t)ncap * sizeof(*vals));
    if (keys == NULL || vals == NULL) {
        cm_free(&keys);
        cm_free(&vals);
        return CM_ENOMEM;
    }
    memset(keys, 0xff, (size_t)ncap * sizeof(*keys));
    struct sched__imap n = {keys, vals, (uint32_t)(ncap - 1), m->len};
    for (uint64_t i = 0; i < cap; i++) {
        if (m->keys[i] != SCHED__NONE) {
            uint32_t *k = imap_slot(&n, m->keys[i]);
            *k = m->keys[i];
            n.vals[k - n.keys] = m->vals[i];
        }
    }
    cm_free(&m->keys);
    cm_free(&m->vals);
    *m = n;
    return 0;
}

uint32_t *sched__imap_upsert(struct sched__imap *m, uint32_t key)
{
    CM_BUG_ON(m->keys == NULL || (uint64_t)(m->len + 1) * 2 > (uint64_t)m->mask + 1);
    uint32_t *k = imap_slot(m, key);
    uint32_t *v = &m->vals[k - m->keys];
    if (*k == SCHED__NONE) {
        *k = key;
        *v = 0;
        m->len++;
    }
    return v;
}

void sched__imap_remove(struct sched__imap *m, uint32_t key)
{
    if (m->len == 0) {
        return;
    }
    uint32_t *k = imap_slot(m, key);
    if (*k == SCHED__NONE) {
        return;
    }
    uint32_t i = (uint32_t)(k - m->keys);
    m->keys[i] = SCHED__NONE;
    m->len--;
    for (uint32_t j = (i + 1) & m->mask; m->keys[j] != SCHED__NONE;
         j = (j + 1) & m->mask) {
        if (may_move(i, j, slot_of(m->keys[j], m->mask))) {
            m->keys[i] = m->keys[j];
            m->vals[i] = m->vals[j];
            m->keys[j] = SCHED__NONE;
            i = j;
        }
    }
}

void sched__imap_done(struct sched__imap *m)
{
    cm_free(&m->keys);
    cm_free(&m->vals);
    m->mask = 0;
    m->len = 0;
}

/* ------------------------------------------------------------------ smap */

uint32_t sched__hash(const char *s)
{
    /* FNV-1a, then a final mix so the low bits (used for the slot) spread. */
    uint32_t h = 2166136261u;
    for (; *s; s++) {
        h ^= (uint8_t)*s;
        h *= 16777619u;
    }
    h ^= h >> 15;
    h *= 0x2c1b3c6dU;
    h ^= h >> 12;
    return h;
}

uint32_t sched__smap_find(const struct sched__smap *m, const char *s, uint32_t h,
                          sched__key_fn key, const void *ctx)
{
    if (m->len == 0) {
        return SCHED__NONE;
    }
    for (uint32_t i = h & m->mask; m->idx[i] != SCHED__NONE; i = (i + 1) & m->mask) {
        if (m->hash[i] == h && strcmp(key(ctx, m->idx[i]), s) == 0) {
            return m->idx[i];
        }
    }
    return SCHED__NONE;
}

int sched__smap_reserve(struct sched__smap *m, uint32_t extra)
{
    uint64_t need = (uint64_t)m->len + extra;
    uint64_t cap = m->idx ? (uint64_t)m->mask + 1 : 0;
    if (need * 2 <= cap) {
        return 0;
    }
    uint64_t ncap = cap ? cap : 16;
    while (need * 2 > ncap) {
        ncap *= 2;
    }
    if (ncap > (1u << 31)) {
        return CM_ENOMEM;
    }
    uint32_t *idx = cm_malloc((size_t)ncap * sizeof(*idx));
    uint32_t *hash = cm_malloc((size_t)ncap * sizeof(*hash));
    if (idx == NULL || hash == NULL) {
        cm_free(&idx);
        cm_free(&hash);
        return CM_ENOMEM;
    }
    memset(idx, 0xff, (size_t)ncap * sizeof(*idx));
    uint32_t mask = (uint32_t)(ncap - 1);
    for (uint64_t i = 0; i < cap; i++) {
        if (m->idx[i] != SCHED__NONE) {
            uint32_t j = m->hash[i] & mask;
            while (idx[j] != SCHED__NONE) {
                j = (j + 1) & mask;
            }
            idx[j] = m->idx[i];
            hash[j] = m->hash[i];
        }
    }
    cm_free(&m->idx);
    cm_free(&m->hash);
    m->idx = idx;
    m->hash = hash;
    m->mask = mask;
    return 0;
}

void sched__smap_insert(struct sched__smap *m, uint32_t h, uint32_t idx)
{
    CM_BUG_ON(m->idx == NULL || (uint64_t)(m->len + 1) * 2 > (uint64_t)m->mask + 1);
    uint32_t j = h & m->mask;
    while (m->idx[j] != SCHED__NONE) {
        j = (j + 1) & m->mask;
    }
    m->idx[j] = idx;
    m->hash[j] = h;
    m->len++;
}

void sched__smap_remove(struct sched__smap *m, uint32_t h, uint32_t idx)
{
    if (m->len == 0) {
        return;
    }
    uint32_t i = h & m->mask;
    while (m->idx[i] != idx) {
        if (m->idx[i] == SCHED__NONE) {
            return;
        }
        i = (i + 1) & m->mask;
    }
    m->idx[i] = SCHED__NONE;
    m->len--;
    for (uint32_t j = (i + 1) & m->mask; m->idx[j] != SCHED__NONE;
         j = (j + 1) & m->mask) {
        if (may_move(i, j, m->hash[j] & m->mask)) {
            m->idx[i] = m->idx[j];
            m->hash[i] = m->hash[j];
            m->idx[j] = SCHED__NONE;
            i = j;
        }
    }
}

void sched__smap_done(struct sched__smap *m)
{
    cm_free(&m->idx);
    cm_free(&m->hash);
    m->mask = 0;
    m->len = 0;
}

/* ------------------------------------------------------------------ strtab */

static const char *str_key(const void *ctx, uint32_t idx)
{
    const struct sched__strtab *t = ctx;
    return t->s[idx];
}

uint32_t sched__str_find(const struct sched__strtab *t, const char *s)
{
    uint32_t id = sched__smap_find(&t->map, s, sched__hash(s), str_key, t);
    return id == SCHED__NONE ? 0 : id;
}

int sched__str_intern(struct sched__strtab *t, const char *s, uint32_t *ret_id)
{
    uint32_t h = sched__hash(s);
    uint32_t id = sched__smap_find(&t->map, s, h, str_key, t);
    if (id != SCHED__NONE) {
        *ret_id = id;
        return 0;
    }
    if (t->n + 1 >= t->cap || t->n == 0) {
        uint32_t ncap = t->cap ? t->cap * 2 : 64;
        char **ns = cm_reallocarray(t->s, ncap, sizeof(*ns));
        if (ns == NULL) {
            return CM_ENOMEM;
        }
        t->s = ns;
        t->cap = ncap;
        if (t->n == 0) {
            t->s[0] = NULL; /* id 0: "absent" */
            t->n = 1;
        }
    }
    if (sched__smap_reserve(&t->map, 1) != 0) {
        return CM_ENOMEM;
    }
    char *copy = cm_strdup(s);
    if (copy == NULL) {
        return CM_ENOMEM;
    }
    id = t->n++;
    t->s[id] = copy;
    sched__smap_insert(&t->map, h, id);
    *ret_id = id;
    return 0;
}
