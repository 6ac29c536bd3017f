/* lib/api: what a cluster of nodes adds: GET /v1/members and linearizable reads.
 *
 * Every GET route goes through a small gate: without ?consistent=true it calls
 * the handler at once (reads are served from this replica, DESIGN.md §10);
 * with it, the daemon's read barrier (ReadIndex through the leader, then this
 * replica catches up to that index) runs first. */
#include <string.h>

#include "api/api_int.h"

struct api_gate {
    struct api_gate *next;
    struct cm_api *api;
    cm_http_handler_fn fn;
};

struct api_read {
    struct cm_api *api; /* NULL once the api is freed */
    struct api_read *prev;
    struct api_read *next;
    struct api_gate *gate;
    struct cm_http_req *req;
};

static void read_unlink(struct api_read *r)
{
    if (r->api == NULL) {
        return;
    }
    if (r->prev != NULL) {
        r->prev->next = r->next;
    } else {
        r->api->reads = r->next;
    }
    if (r->next != NULL) {
        r->next->prev = r->prev;
    }
}

static void read_ready(void *arg, int status, uint64_t index, const char *msg)
{
    (void)index;
    struct api_read *r = arg;
    read_unlink(r);
    if (r->api == NULL) {
        /* The api is gone (the daemon is stopping): the handle is inert. */
        cm_http_respond_error(r->req, 503, "the node is shutting down");
    } else if (status != 0) {
        api__respond_err(r->req, status == CM_ETIMEDOUT ? CM_ETIMEDOUT : status,
                         msg != NULL ? msg : "consistent read failed");
    } else {
        r->gate->fn(r->req, r->api);
    }
    cm_free(&r);
}

static void gate(struct cm_http_req *req, void *data)
{
    struct api_gate *g = data;
    struct cm_api *api = g->api;
    if (!api__query_bool(cm_http_req_request(req), "consistent", false)) {
        g->fn(req, api);
        return;
    }
    if (api->ops.read_barrier == NULL) {
        cm_http_respond_error(req, 503,
                              "consistent reads are not available on this node");
        return;
    }
    struct api_read *r = cm_calloc(1, sizeof(*r));
    if (r == NULL) {
        api__respond_internal(req, CM_ENOMEM);
        return;
    }
    r->api = api;
    r->gate = g;
    r->req = req;
    int rv = api->ops.read_barrier(api->ops.data, read_ready, r);
    if (rv != 0) {
        cm_free(&r);
        api__respond_err(req, rv, "consistent read failed");
        return;
    }
    r->next = api->reads;
    if (r->next != NULL) {
        r->next->prev = r;
    }
    api->reads = r;
}

int api__route(struct cm_api *api, const char *method, const char *pattern, size_t limit,
               cm_http_handler_fn fn)
{
    if (method == NULL || strcmp(method, "GET") != 0) {
        return cm_http_server_route(api->srv, method, pattern, limit, fn, api);
    }
    struct api_gate *g = cm_calloc(1, sizeof(*g));
    if (g == NULL) {
        return CM_ENOMEM;
    }
    g->api = api;
    g->fn = fn;
    int rv = cm_http_server_route(api->srv, method, pattern, limit, gate, g);
    if (rv != 0) {
        cm_free(&g);
        return rv;
    }
    g->next = api->gates;
    api->gates = g;
    return 0;
}

void api__gates_free(struct cm_api *api)
{
    for (struct api_read *r = api->reads; r != NULL; r = r->next) {
        r->api = NULL;
    }
    api->reads = NULL;
    while (api->gates != NULL) {
        struct api_gate *g = api->gates;
        api->gates = g->next;
        cm_free(&g);
    }
}

/* GET /v1/members: the raft members as this node knows them. */
static void h_members(struct cm_http_req *req, void *data)
{
    struct cm_api *api = data;
    if (api->ops.members == NULL) {
        cm_http_respond_error(req, 503, "membership is not available on this node");
        return;
    }
    struct cm_buf out = {0};
    int rv = api->ops.members(api->ops.data, &out);
    api__respond_ok_json(req, rv, &out);
}

int api__routes_cluster(struct cm_api *api)
{
    return api__route(api, "GET", "/v1/members", API_BODY_LIMIT_NONE, h_members);
}
