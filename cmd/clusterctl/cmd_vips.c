/* clusterctl vips: the VIPs one node programs, their backends and connection
 * counts (GET /v1/vips, docs/vips.md "Operating VIPs"). */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/base.h"
#include "commands.h"

/* A number field as text, or "-" when it is null or absent (nat mode). */
static const char *num_text(const cJSON *obj, const char *key, char *buf, size_t cap)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v)) {
        return "-";
    }
    snprintf(buf, cap, "%.0f", v->valuedouble);
    return buf;
}

static void vips_table(const cJSON *j)
{
    static const char *const head[] = {"NAME",     "ADDRESS", "PORT",  "PROTO",  "MODE",
                                       "BACKENDS", "ACTIVE",  "TOTAL", "FAILED", "NOTE"};
    struct cmd_table t = {head, CM_ARRAY_SIZE(head), NULL, 0};
    const cJSON *v;
    cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(j, "vips"))
    {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(v, "metrics");
        const cJSON *bes = cJSON_GetObjectItemCaseSensitive(v, "backends");
        char port[16], backends[48], active[32], total[32], failed[32], note[96];
        snprintf(port, sizeof(port), "%.0f", cmd_json_num(v, "port", 0));
        /* eligible / listed (backends and the declaring apps' other live tasks) */
        snprintf(backends, sizeof(backends), "%.0f/%d",
                 cmd_json_num(v, "eligibleBackends", 0), cJSON_GetArraySize(bes));
        const char *err = cmd_json_str(v, "listenError");
        const char *mode = cmd_json_str(v, "mode");
        if (err != NULL) {
            snprintf(note, sizeof(note), "cannot listen: %s", err);
        } else if (mode != NULL && strcmp(mode, "none") == 0) {
            snprintf(note, sizeof(note), "not served: the proxy is TCP only");
        } else if (cmd_json_num(v, "eligibleBackends", 0) == 0) {
            snprintf(note, sizeof(note), "no eligible backend: connections refused");
        } else {
            snprintf(note, sizeof(note), "-");
        }
        const char *cells[] = {
            cmd_json_str(v, "name"),
            cmd_json_str(v, "address"),
            port,
            cmd_json_str(v, "protocol"),
            mode,
            backends,
            num_text(m, "active", active, sizeof(active)),
            num_text(m, "total", total, sizeof(total)),
            num_text(m, "failed", failed, sizeof(failed)),
            note,
        };
        cmd_table_add(&t, cells);
    }
    cmd_table_print(&t, stdout);
    cmd_table_done(&t);
}

/* One row per backend or task of each VIP. */
static void backends_table(const cJSON *j)
{
    static const char *const head[] = {"VIP", "TASK", "BACKEND", "ELIGIBLE", "ACTIVE"};
    struct cmd_table t = {head, CM_ARRAY_SIZE(head), NULL, 0};
    const cJSON *v;
    cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(j, "vips"))
    {
        char vip[300];
        const char *name = cmd_json_str(v, "name");
        snprintf(vip, sizeof(vip), "%s%s:%.0f", name != NULL ? "/" : "",
                 name != NULL ? name : cmd_json_str(v, "address"),
                 cmd_json_num(v, "port", 0));
        const cJSON *b;
        cJSON_ArrayForEach(b, cJSON_GetObjectItemCaseSensitive(v, "backends"))
        {
            char ep[96], eligible[64], active[32];
            const char *host = cmd_json_str(b, "host");
            snprintf(ep, sizeof(ep), "%s:%.0f", host != NULL ? host : "?",
                     cmd_json_num(b, "port", 0));
            const char *why = cmd_json_str(b, "reason");
            snprintf(eligible, sizeof(eligible), "%s%s",
                     why == NULL ? "yes" : "no: ", why != NULL ? why : "");
            const char *cells[] = {
                vip, cmd_json_str(b, "taskId"), ep, eligible,
                num_text(b, "activeConnections", active, sizeof(active))};
            cmd_table_add(&t, cells);
        }
    }
    cmd_table_print(&t, stdout);
    cmd_table_done(&t);
}

int cmd_vips(int argc, char **argv)
{
    bool backends = false;
    const struct cmd_opt opts[] = {
        {"--backends", 'b', NULL, "list every VIP's backends and the tasks that are not",
         &backends, NULL},
    };
    struct cmd_client c = {
        .usage = "vips [-b] [--addr HOST:PORT] [--json]",
        .about =
            "List the VIPs the node at --addr programs (GET /v1/vips): name, address,\n"
            "port, protocol, mode (nat: kernel DNAT; proxy: the userspace proxy),\n"
            "backends (eligible / listed: the backends and the declaring apps' other\n"
            "live tasks), and in proxy mode the connections open now, accepted and\n"
            "failed since the agent started ('-' in nat mode: conntrack has them).\n"
            "NOTE says when the node cannot listen on the VIP's port or no backend is\n"
            "eligible. Each node answers for itself; the same counters are on\n"
            "/metrics as clusterctl_vip_*.",
    };
    int rv = cmd_client_parse(&c, argc, argv, opts, CM_ARRAY_SIZE(opts), 0, 0);
    if (rv >= 0) {
        return rv;
    }
    char *text = NULL;
    cJSON *j = NULL;
    rv = cmd_client_get_json(&c, "GET", "/v1/vips", NULL, 200, &text, &j);
    if (rv != CMD_EXIT_OK) {
        return rv;
    }
    if (c.json) {
        printf("%s\n", text);
    } else if (backends) {
        backends_table(j);
    } else {
        vips_table(j);
    }
    cm_free(&text);
    cJSON_Delete(j);
    return CMD_EXIT_OK;
}
