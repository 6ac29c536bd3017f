/* GET /v1/vips: the VIPs this node programs (docs/vips.md, "Operating VIPs"):
 * per VIP its address, mode, apps, backends with why a task is not one, and the
 * proxy's connection metrics. The node's own programming, not the replica's
 * consensus, so every node answers for itself (no forwarding). */
#include "api/api_int.h"

static void h_vips(struct cm_http_req *req, void *data)
{
    struct cm_api *api = data;
    if (api->ops.vips == NULL) {
        cm_http_respond_error(req, 503, "VIPs are not available on this node");
        return;
    }
    struct cm_buf out = {0};
    int rv = api->ops.vips(api->ops.data, &out);
    api__respond_ok_json(req, rv, &out);
}

int api__routes_vips(struct cm_api *api)
{
    return api__route(api, "GET", "/v1/vips", API_BODY_LIMIT_NONE, h_vips);
}
