/* GET /v2/events: Marathon's event stream (compat.md §2.4) on every node.
 *
 * The events come from the local replica (lib/state records them while it
 * applies the log, db.h "events"), so a follower streams what the leader does,
 * in log order. The daemon hands them over after each applied batch
 * (cm_api_publish_events); each is framed once ("event: <type>\ndata: <json>\n\n")
 * and queued to every subscriber whose event_type filter takes it.
 *
 * Subscribers never block the loop: a subscriber whose unread bytes would pass
 * ops.events_max_queued is dropped (its connection closed, counted in
 * /metrics). Heartbeats (an SSE comment line) every
 * ops.events_heartbeat_ms keep proxies from closing quiet streams. A subscriber that
 * leaves is freed from a zero-delay timer, never from inside the server's close path, and
 * the others learn it by event_stream_detached, as in Marathon. Recording in the replica
 * is on only while someone listens. */
#include <ev.h>
#include <stdio.h>
#include <string.h>

#include "api/api_int.h"

#define EVENTS_MAX_SUBS        256
#define EVENTS_MAX_TYPES       32 /* event_type values per subscriber */
#define EVENTS_MAX_TYPE_LEN    64
#define EVENTS_DEFAULT_QUEUED  (8u << 20) /* the HTTP server's own default */
#define EVENTS_DEFAULT_BEAT_MS 15000
#define EVENTS_HEARTBEAT       ":\n\n" /* an SSE comment: ignored by readers */

struct api_sub {
    struct api_sub *prev;
    struct api_sub *next;
    struct api_events *evs;
    struct cm_http_req *req; /* NULL once the answer is ended */
    char peer[64];
    char **types; /* NULL: every type */
    size_t n_types;
    struct cm_buf out; /* frames taken for this subscriber in one publish */
    bool gone;         /* left or dropped: freed by the reap timer */
};

struct api_events {
    struct cm_api *api;
    struct api_sub *subs;
    unsigned n_subs;
    ev_timer beat;
    ev_timer reap;
    struct cm_buf all; /* frames for the subscribers without a filter */
    size_t max_queued;
    /* for /metrics */
    uint64_t attached;
    uint64_t dropped_slow;
    uint64_t sent;
};

/* ------------------------------------------------------------------ helpers */

static struct cm_state *evs_state(const struct api_events *e)
{
    return e->api->ops.state(e->api->ops.data);
}

static bool sub_wants(const struct api_sub *s, const char *type)
{
    if (s->types == NULL) {
        return true;
    }
    for (size_t i = 0; i < s->n_types; i++) {
        if (strcmp(s->types[i], type) == 0) {
            return true;
        }
    }
    return false;
}

/* Append one frame to @b, whole or (out of memory) not at all. */
static int frame(struct cm_buf *b, const char *type, const char *json, size_t len)
{
    size_t mark = b->len;
    int rv = cm_buf_printf(b, "event: %s\ndata: ", type);
    rv = rv ? rv : cm_buf_append(b, json, len);
    rv = rv ? rv : cm_buf_puts(b, "\n\n");
    if (rv != 0 && b->data != NULL) {
        b->len = mark;
        b->data[mark] = '\0';
    }
    return rv;
}

static void sub_gone(struct api_sub *s)
{
    if (!s->gone) {
        s->gone = true;
        struct api_events *e = s->evs;
        if (!ev_is_active(&e->reap)) {
            ev_timer_set(&e->reap, 0., 0.);
            ev_timer_start(e->api->ops.loop, &e->reap);
        }
    }
}

/* End @s's answer (its connection may be gone already). */
static void sub_end(struct api_sub *s)
{
    if (s->req != NULL) {
        cm_http_stream_end(s->req);
        s->req = NULL;
    }
}

/* Queue @len bytes to @s, or drop it when its reader is too far behind: its
 * unread bytes would pass max_queued. That bound is the memory a subscriber
 * may hold, so it also bounds the largest batch (the events of one applied
 * batch) a reader can take. */
static void sub_send(struct api_sub *s, const char *data, size_t len)
{
    struct api_events *e = s->evs;
    if (s->gone || s->req == NULL || len == 0) {
        return;
    }
    if (cm_http_req_queued(s->req) + len > e->max_queued) {
        e->dropped_slow++;
        cm_warn("api", "event stream of %s dropped: %zu bytes unread", s->peer,
                cm_http_req_queued(s->req));
        cm_http_req_abort(s->req); /* closes and ends the handle */
        s->req = NULL;
        sub_gone(s);
        return;
    }
    int rv = cm_http_stream_write(s->req, data, len);
    if (rv != 0) {
        if (rv == CM_ETOOBIG) {
            e->dropped_slow++;
        }
        sub_end(s);
        sub_gone(s);
    }
}

/* A subscription event (attached/detached) to every subscriber that wants it. */
static void broadcast_local(struct api_events *e, const char *type, const char *peer)
{
    char ts[32];
    int64_t now = e->api->ops.now_ms(e->api->ops.data);
    struct cm_buf json = {0};
    struct cm_buf b = {0};
    int rv = cm_buf_puts(&json, "{\"remoteAddress\":");
    rv = rv ? rv : api__json_str(&json, peer);
    rv = rv ? rv
            : cm_buf_printf(&json, ",\"eventType\":\"%s\",\"timestamp\":\"%s\"}", type,
                            cm_time_iso8601(now, ts));
    rv = rv ? rv : frame(&b, type, json.data, json.len);
    for (struct api_sub *s = e->subs; rv == 0 && s != NULL; s = s->next) {
        if (sub_wants(s, type)) {
            sub_send(s, b.data, b.len);
        }
    }
    cm_buf_done(&json);
    cm_buf_done(&b);
}

static void sub_free(struct api_sub *s)
{
    sub_end(s);
    for (size_t i = 0; i < s->n_types; i++) {
        cm_free(&s->types[i]);
    }
    cm_free(&s->types);
    cm_buf_done(&s->out);
    cm_free(&s);
}

static void sub_unlink(struct api_sub *s)
{
    struct api_events *e = s->evs;
    if (s->prev != NULL) {
        s->prev->next = s->next;
    } else {
        e->subs = s->next;
    }
    if (s->next != NULL) {
        s->next->prev = s->prev;
    }
    e->n_subs--;
}

/* Recording in the replica only while someone listens; heartbeats likewise. */
static void evs_update(struct api_events *e)
{
    struct cm_state *st = evs_state(e);
    if (e->n_subs == 0) {
        ev_timer_stop(e->api->ops.loop, &e->beat);
        if (cm_state_events_recording(st)) {
            (void)cm_state_events_record(st, false);
        }
    } else if (!ev_is_active(&e->beat)) {
        ev_timer_again(e->api->ops.loop, &e->beat);
    }
}

static void reap_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct api_events *e = cm_container_of(w, struct api_events, reap);
    /* Detached events may drop more subscribers: repeat until none is gone. */
    for (bool again = true; again;) {
        again = false;
        for (struct api_sub *s = e->subs, *next; s != NULL; s = next) {
            next = s->next;
            if (!s->gone) {
                continue;
            }
            char peer[sizeof(s->peer)];
            memcpy(peer, s->peer, sizeof(peer));
            sub_unlink(s);
            sub_free(s);
            broadcast_local(e, "event_stream_detached", peer);
            again = true;
            break; /* the list may have changed */
        }
    }
    ev_timer_stop(e->api->ops.loop, &e->reap);
    evs_update(e);
}

static void beat_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct api_events *e = cm_container_of(w, struct api_events, beat);
    for (struct api_sub *s = e->subs; s != NULL; s = s->next) {
        sub_send(s, EVENTS_HEARTBEAT, sizeof(EVENTS_HEARTBEAT) - 1);
    }
}

static void sub_closed(struct cm_http_req *req, void *data)
{
    (void)req;
    sub_gone(data); /* ended and freed from the reap timer */
}

/* ------------------------------------------------------------------ publish */

static void take_cb(void *data, const struct cm_state_event *ev)
{
    struct api_events *e = data;
    /* Frame once for everyone without a filter, append to the filtered ones'
     * own buffers. Out of memory, the event is lost for those buffers. */
    bool any_all = false;
    for (struct api_sub *s = e->subs; s != NULL; s = s->next) {
        if (s->gone) {
            continue;
        }
        if (s->types == NULL) {
            any_all = true;
        } else if (sub_wants(s, ev->type)) {
            (void)frame(&s->out, ev->type, ev->json, ev->len);
        }
    }
    if (any_all) {
        (void)frame(&e->all, ev->type, ev->json, ev->len);
    }
    e->sent++;
}

void cm_api_publish_events(struct cm_api *api)
{
    if (api == NULL || api->events == NULL) {
        return;
    }
    struct api_events *e = api->events;
    struct cm_state *st = evs_state(e);
    if (e->n_subs == 0) {
        return; /* not recording */
    }
    cm_state_take_events(st, take_cb, e);
    for (struct api_sub *s = e->subs; s != NULL; s = s->next) {
        if (s->types == NULL) {
            sub_send(s, e->all.data, e->all.len);
        } else {
            sub_send(s, s->out.data, s->out.len);
            cm_buf_clear(&s->out);
            if (s->out.cap > (1u << 20)) {
                cm_buf_done(&s->out);
            }
        }
    }
    cm_buf_clear(&e->all);
    if (e->all.cap > (1u << 20)) {
        cm_buf_done(&e->all); /* do not keep a burst's memory */
    }
}

/* ------------------------------------------------------------------ the route */

/* Marathon serves the stream only to clients that accept it; a client that
 * names no Accept takes anything. */
static bool accepts_sse(const struct cm_http_request *r)
{
    const char *a = cm_http_request_header(r, "accept");
    return a == NULL || strstr(a, "text/event-stream") != NULL ||
           strstr(a, "*/*") != NULL || strstr(a, "text/*") != NULL;
}

/* The event_type filter (repeatable); @s->types stays NULL without one. */
static int parse_types(const struct cm_http_request *r, struct api_sub *s, char *err,
                       size_t cap)
{
    for (size_t i = 0; i < r->nquery; i++) {
        const struct cm_http_param *p = &r->query_params[i];
        if (strcmp(p->name, "event_type") != 0 || p->value[0] == '\0') {
            continue;
        }
        if (s->n_types == EVENTS_MAX_TYPES) {
            snprintf(err, cap, "event_type: at most %d types", EVENTS_MAX_TYPES);
            return CM_EINVAL;
        }
        if (strlen(p->value) > EVENTS_MAX_TYPE_LEN) {
            snprintf(err, cap, "event_type: '%.20s...' is longer than %d characters",
                     p->value, EVENTS_MAX_TYPE_LEN);
            return CM_EINVAL;
        }
        if (s->types == NULL) {
            s->types = cm_calloc(EVENTS_MAX_TYPES, sizeof(*s->types));
            if (s->types == NULL) {
                return CM_ENOMEM;
            }
        }
        s->types[s->n_types] = cm_strdup(p->value);
        if (s->types[s->n_types] == NULL) {
            return CM_ENOMEM;
        }
        s->n_types++;
    }
    return 0;
}

static void h_events(struct cm_http_req *req, void *data)
{
    struct cm_api *api = data;
    struct api_events *e = api->events;
    const struct cm_http_request *r = cm_http_req_request(req);
    if (!accepts_sse(r)) {
        cm_http_respond_error(req, 406,
                              "the event stream is text/event-stream: send "
                              "'Accept: text/event-stream'");
        return;
    }
    if (e == NULL || api->ops.loop == NULL) {
        cm_http_respond_error(req, 503, "the event stream is not available on this node");
        return;
    }
    if (e->n_subs >= EVENTS_MAX_SUBS) {
        cm_http_respond_error(req, 503,
                              "too many event stream subscribers on this node (%d); "
                              "retry later",
                              EVENTS_MAX_SUBS);
        return;
    }
    struct api_sub *s = cm_calloc(1, sizeof(*s));
    if (s == NULL) {
        api__respond_internal(req, CM_ENOMEM);
        return;
    }
    s->evs = e;
    char err[160] = "";
    int rv = parse_types(r, s, err, sizeof(err));
    if (rv != 0) {
        sub_free(s);
        if (rv == CM_ENOMEM) {
            api__respond_internal(req, rv);
        } else {
            cm_http_respond_error(req, 400, "%s", err);
        }
        return;
    }
    /* Recording starts before the answer, so nothing applied from now on is
     * missed. */
    rv = cm_state_events_record(evs_state(e), true);
    if (rv != 0) {
        sub_free(s);
        api__respond_internal(req, rv);
        return;
    }
    cm_http_req_peer(req, s->peer, sizeof(s->peer));
    /* Intermediaries must neither cache nor buffer the stream. */
    rv = cm_http_req_add_header(req, "Cache-Control", "no-cache");
    rv = rv ? rv : cm_http_req_add_header(req, "X-Accel-Buffering", "no");
    if (rv != 0) {
        cm_http_req_abort(req);
    } else {
        rv = cm_http_stream_begin(req, 200, "text/event-stream"); /* ends it on failure */
    }
    if (rv != 0) {
        sub_free(s);
        evs_update(e);
        return;
    }
    s->req = req;
    cm_http_req_set_close_cb(req, sub_closed, s);
    s->next = e->subs;
    if (s->next != NULL) {
        s->next->prev = s;
    }
    e->subs = s;
    e->n_subs++;
    e->attached++;
    evs_update(e);
    broadcast_local(e, "event_stream_attached", s->peer);
}

/* ------------------------------------------------------------------ life cycle */

int api__routes_events(struct cm_api *api)
{
    struct api_events *e = cm_calloc(1, sizeof(*e));
    if (e == NULL) {
        return CM_ENOMEM;
    }
    e->api = api;
    e->max_queued =
        api->ops.events_max_queued ? api->ops.events_max_queued : EVENTS_DEFAULT_QUEUED;
    unsigned beat_ms = api->ops.events_heartbeat_ms ? api->ops.events_heartbeat_ms
                                                    : EVENTS_DEFAULT_BEAT_MS;
    ev_timer_init(&e->beat, beat_cb, 0., beat_ms / 1e3);
    ev_timer_init(&e->reap, reap_cb, 0., 0.);
    api->events = e;
    return cm_http_server_route(api->srv, "GET", "/v2/events", API_BODY_LIMIT_NONE,
                                h_events, api);
}

void api__events_close(struct cm_api *api)
{
    struct api_events *e = api->events;
    if (e == NULL) {
        return;
    }
    if (api->ops.loop != NULL) {
        ev_timer_stop(api->ops.loop, &e->beat);
        ev_timer_stop(api->ops.loop, &e->reap);
    }
    while (e->subs != NULL) {
        struct api_sub *s = e->subs;
        sub_unlink(s);
        sub_free(s);
    }
    cm_buf_done(&e->all);
    cm_free(&api->events);
}

int api__events_metrics(const struct cm_api *api, struct cm_buf *out)
{
    const struct api_events *e = api->events;
    if (e == NULL) {
        return 0;
    }
    return cm_buf_printf(
        out,
        "# HELP clusterctl_events_subscribers Clients of /v2/events on this node.\n"
        "# TYPE clusterctl_events_subscribers gauge\n"
        "clusterctl_events_subscribers %u\n"
        "# HELP clusterctl_events_attached_total Clients that attached to /v2/events.\n"
        "# TYPE clusterctl_events_attached_total counter\n"
        "clusterctl_events_attached_total %llu\n"
        "# HELP clusterctl_events_slow_dropped_total Clients dropped for reading too "
        "slowly.\n"
        "# TYPE clusterctl_events_slow_dropped_total counter\n"
        "clusterctl_events_slow_dropped_total %llu\n"
        "# HELP clusterctl_events_published_total Events handed to the subscribers.\n"
        "# TYPE clusterctl_events_published_total counter\n"
        "clusterctl_events_published_total %llu\n"
        "# HELP clusterctl_events_lost_total Events the replica could not keep until "
        "published.\n"
        "# TYPE clusterctl_events_lost_total counter\n"
        "clusterctl_events_lost_total %llu\n",
        e->n_subs, (unsigned long long)e->attached, (unsigned long long)e->dropped_slow,
        (unsigned long long)e->sent,
        (unsigned long long)cm_state_events_dropped(evs_state(e)));
}
