/* The leader's failure detector (DESIGN.md §6, issue 8 item 5).
 *
 * Every node heartbeats the leader once a second, outside the raft log; the
 * leader keeps, in memory only, when it last heard each node. A node silent for
 * CM_NODE_SILENCE_MS is committed `unreachable` (node.state, whose apply also
 * makes the node's live tasks `unreachable`); one heard again is committed `up`
 * (or `draining`, when it was draining before), whose apply gives its unreachable
 * tasks back (`running`; the node's agent re-reports any that ended meanwhile).
 *
 * Why "heard again" needs a real heartbeat newer than the state change: a new
 * leader knows nothing of earlier heartbeats, so it counts every node as just
 * heard (a leader change must not mark nodes down, issue 8 item 6), but that
 * assumption must not revive a node that is still gone.
 *
 * Replacement timing of unreachable tasks follows the app's unreachableStrategy
 * (Marathon's inactiveAfterSeconds / expungeAfterSeconds, compat.md §1): the
 * controller kills an inactive task in the replica when it launches its
 * replacement, so that the agent stops it should its node come back, and
 * expunges it later. Times are the leader's stamps (`at`, `updated_at`), never
 * the time of apply.
 */
#include <string.h>

#include "node/node_int.h"
#include "state/state.h"

struct heard {
    char *id;
    int64_t last;      /* last heartbeat, or when this leader first saw the node */
    bool real;         /* @last is a heartbeat, not an assumption */
    bool not_up;       /* the replica showed it neither up nor draining */
    bool was_draining; /* it was draining when last seen reachable */
};

struct cm_liveness {
    struct heard *v;
    size_t n;
};

struct cm_liveness *cm_liveness_new(void)
{
    return cm_calloc(1, sizeof(struct cm_liveness));
}

static void clear(struct cm_liveness *l)
{
    for (size_t i = 0; i < l->n; i++) {
        cm_free(&l->v[i].id);
    }
    l->n = 0;
}

void cm_liveness_free(struct cm_liveness *l)
{
    if (l == NULL) {
        return;
    }
    clear(l);
    cm_free(&l->v);
    cm_free(&l);
}

void cm_liveness_reset(struct cm_liveness *l, int64_t now_ms)
{
    (void)now_ms; /* entries are made on first sight, at that time */
    clear(l);
}

static struct heard *find(struct cm_liveness *l, const char *id)
{
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->v[i].id, id) == 0) {
            return &l->v[i];
        }
    }
    return NULL;
}

static struct heard *find_or_add(struct cm_liveness *l, const char *id, int64_t now)
{
    struct heard *h = find(l, id);
    if (h != NULL) {
        return h;
    }
    h = cm_reallocarray(l->v, l->n + 1, sizeof(*h));
    if (h == NULL) {
        return NULL;
    }
    l->v = h;
    h = &l->v[l->n];
    memset(h, 0, sizeof(*h));
    h->id = cm_strdup(id);
    if (h->id == NULL) {
        return NULL;
    }
    h->last = now;
    l->n++;
    return h;
}

bool cm_liveness_heard(struct cm_liveness *l, const char *node, int64_t now_ms)
{
    struct heard *h = find_or_add(l, node, now_ms);
    if (h == NULL) {
        return false;
    }
    if (now_ms > h->last || !h->real) {
        h->last = now_ms;
    }
    h->real = true;
    return h->not_up;
}

int64_t cm_liveness_last(const struct cm_liveness *l, const char *node)
{
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->v[i].id, node) == 0) {
            return l->v[i].real ? l->v[i].last : -1;
        }
    }
    return -1;
}

int cm_liveness_check(struct cm_liveness *l, const struct cm_liveness_node *n,
                      const char *self, int64_t now, enum cm_liveness_action *ret,
                      int64_t *next_ms)
{
    struct heard *h = find_or_add(l, n->id, now);
    if (h == NULL) {
        return CM_ENOMEM;
    }
    if (self != NULL && strcmp(n->id, self) == 0) {
        /* The leader hears itself. */
        h->last = CM_MAX(h->last, now);
        h->real = true;
    }
    bool up = strcmp(n->state, "up") == 0;
    bool draining = strcmp(n->state, "draining") == 0;
    *ret = CM_LIVENESS_NONE;
    h->not_up = !up && !draining;
    if (up || draining) {
        h->was_draining = draining;
        int64_t deadline = h->last + CM_NODE_SILENCE_MS;
        if (now >= deadline) {
            *ret = CM_LIVENESS_UNREACHABLE;
        } else if (deadline < *next_ms) {
            *next_ms = deadline;
        }
    } else if (strcmp(n->state, "unreachable") == 0) {
        /* A heartbeat sent after the node was declared unreachable, and recent. */
        if (h->real && h->last > n->updated_at && now - h->last < CM_NODE_SILENCE_MS) {
            *ret = h->was_draining ? CM_LIVENESS_DRAINING : CM_LIVENESS_UP;
        }
    }
    /* "down" is an operator's decision (or autopilot's); a node comes back from
     * it by registering again (node.up). */
    return 0;
}

const char *cm_liveness_state_name(enum cm_liveness_action act)
{
    switch (act) {
    case CM_LIVENESS_UNREACHABLE:
        return "unreachable";
    case CM_LIVENESS_UP:
        return "up";
    case CM_LIVENESS_DRAINING:
        return "draining";
    default:
        return NULL;
    }
}

/* @base + @s seconds, saturating. */
static int64_t add_s(int64_t base, int64_t s)
{
    if (s < 0) {
        s = 0;
    }
    if (s > (INT64_MAX - base) / 1000) {
        return INT64_MAX;
    }
    return base + s * 1000;
}

int64_t cm_unreachable_inactive_at(const struct cm_app *a, int64_t since)
{
    if (a != NULL && a->unreachable.disabled) {
        return INT64_MAX;
    }
    return add_s(since, a != NULL ? a->unreachable.inactive_after_s
                                  : CM_APP_DEFAULT_INACTIVE_AFTER);
}

int64_t cm_unreachable_expunge_at(const struct cm_app *a, int64_t killed_at)
{
    if (a != NULL && a->unreachable.disabled) {
        return INT64_MAX;
    }
    int64_t inactive =
        a != NULL ? a->unreachable.inactive_after_s : CM_APP_DEFAULT_INACTIVE_AFTER;
    int64_t expunge =
        a != NULL ? a->unreachable.expunge_after_s : CM_APP_DEFAULT_EXPUNGE_AFTER;
    return add_s(killed_at, expunge > inactive ? expunge - inactive : 0);
}
