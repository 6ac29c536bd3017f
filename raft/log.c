/* raft/log.c: the core's in-memory copy of the log (Raft §5.3). A plain array
 * with an index offset, so that update->entries and update->apply can point at
 * contiguous runs of it. */
#include <string.h>

#include "raft/core_int.h"

raft_index raft__log_last(const struct raft__log *l)
{
    return l->offset + l->n;
}

struct raft_entry *raft__log_get(const struct raft__log *l, raft_index index)
{
    if (index <= l->offset || index > l->offset + l->n) {
        return NULL;
    }
    return &l->entries[index - l->offset - 1];
}

int raft__log_reserve(struct raft__log *l, unsigned n)
{
    if (l->n + n <= l->cap) {
        return 0;
    }
    unsigned cap = l->cap < 16 ? 16 : l->cap;
    while (cap < l->n + n) {
        cap *= 2;
    }
    struct raft_entry *e = cm_reallocarray(l->entries, cap, sizeof *e);
    if (e == NULL) {
        return CM_ENOMEM;
    }
    l->entries = e;
    l->cap = cap;
    return 0;
}

void raft__log_push(struct raft__log *l, const struct raft_entry *e)
{
    CM_BUG_ON(l->n >= l->cap);
    l->entries[l->n++] = *e;
}

static void entry_release(struct raft_entry *e)
{
    cm_free(&e->buf.base);
    e->buf.len = 0;
}

void raft__log_truncate(struct raft__log *l, raft_index index)
{
    while (l->n > 0 && l->offset + l->n >= index) {
        entry_release(&l->entries[--l->n]);
    }
}

void raft__log_compact(struct raft__log *l, raft_index index)
{
    if (index <= l->offset) {
        return;
    }
    unsigned k = (unsigned)CM_MIN(index - l->offset, (raft_index)l->n);
    for (unsigned i = 0; i < k; i++) {
        entry_release(&l->entries[i]);
    }
    memmove(l->entries, l->entries + k, (l->n - k) * sizeof *l->entries);
    l->n -= k;
    l->offset = index > l->offset + k ? index : l->offset + k;
}

void raft__log_reset(struct raft__log *l, raft_index index)
{
    raft__log_truncate(l, 0);
    l->offset = index;
}

void raft__log_close(struct raft__log *l)
{
    raft__log_truncate(l, 0);
    cm_free(&l->entries);
    l->cap = 0;
    l->offset = 0;
}

int raft__entry_copy(const struct raft_entry *src, struct raft_entry *dst)
{
    dst->term = src->term;
    dst->type = src->type;
    dst->buf.len = src->buf.len;
    dst->buf.base = NULL;
    if (src->buf.len > 0) {
        dst->buf.base = cm_memdup(src->buf.base, src->buf.len);
        if (dst->buf.base == NULL) {
            return CM_ENOMEM;
        }
    }
    return 0;
}
