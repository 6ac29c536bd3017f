/* clusterctl nodes: the cluster's nodes, their state, resources and tasks. */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/base.h"
#include "commands.h"

/* "k=v,k2=v2" of a JSON object of attributes, or "-". */
static void attrs_text(const cJSON *attrs, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    const cJSON *a;
    cJSON_ArrayForEach(a, attrs)
    {
        if (n >= cap) {
            break;
        }
        if (cJSON_IsString(a)) {
            n += (size_t)snprintf(out + n, cap - n, "%s%s=%s", n ? "," : "", a->string,
                                  a->valuestring);
        } else if (cJSON_IsNumber(a)) {
            n += (size_t)snprintf(out + n, cap - n, "%s%s=%g", n ? "," : "", a->string,
                                  a->valuedouble);
        }
    }
    if (out[0] == '\0') {
        snprintf(out, cap, "-");
    }
}

int cmd_nodes(int argc, char **argv)
{
    struct cmd_client c = {
        .usage = "nodes [--addr HOST:PORT] [--json]",
        .about =
            "List the nodes (GET /v1/nodes): address, state (up, draining,\n"
            "unreachable, down), cpus and memory (MiB) used/total, tasks that hold\n"
            "resources there, attributes, and how long ago the leader last heard the\n"
            "node's heartbeat (known when --addr is the leader; '-' otherwise).",
    };
    int rv = cmd_client_parse(&c, argc, argv, NULL, 0, 0, 0);
    if (rv >= 0) {
        return rv;
    }
    char *text = NULL;
    cJSON *j = NULL;
    rv = cmd_client_get_json(&c, "GET", "/v1/nodes", NULL, 200, &text, &j);
    if (rv != CMD_EXIT_OK) {
        return rv;
    }
    if (c.json) {
        printf("%s\n", text);
    } else {
        static const char *const head[] = {"NODE", "ADDRESS", "STATE",      "CPUS",
                                           "MEM",  "TASKS",   "ATTRIBUTES", "HEARTBEAT"};
        struct cmd_table t = {head, CM_ARRAY_SIZE(head), NULL, 0};
        const cJSON *n;
        cJSON_ArrayForEach(n, cJSON_GetObjectItemCaseSensitive(j, "nodes"))
        {
            const cJSON *res = cJSON_GetObjectItemCaseSensitive(n, "resources");
            const cJSON *used = cJSON_GetObjectItemCaseSensitive(n, "used");
            char cpus[64], mem[64], tasks[32], attrs[512], beat[32];
            snprintf(cpus, sizeof(cpus), "%g/%g", cmd_json_num(used, "cpus", 0),
                     cmd_json_num(res, "cpus", 0));
            snprintf(mem, sizeof(mem), "%.0f/%.0f", cmd_json_num(used, "mem", 0),
                     cmd_json_num(res, "mem", 0));
            snprintf(tasks, sizeof(tasks), "%.0f", cmd_json_num(n, "tasks", 0));
            attrs_text(cJSON_GetObjectItemCaseSensitive(n, "attributes"), attrs,
                       sizeof(attrs));
            double age = cmd_json_num(n, "lastHeartbeatAgeMs", -1);
            if (age >= 0) {
                snprintf(beat, sizeof(beat), "%.1fs ago", age / 1000.0);
            } else {
                snprintf(beat, sizeof(beat), "-");
            }
            const char *cells[] = {cmd_json_str(n, "id"),
                                   cmd_json_str(n, "address"),
                                   cmd_json_str(n, "state"),
                                   cpus,
                                   mem,
                                   tasks,
                                   attrs,
                                   beat};
            cmd_table_add(&t, cells);
        }
        cmd_table_print(&t, stdout);
        cmd_table_done(&t);
    }
    cm_free(&text);
    cJSON_Delete(j);
    return CMD_EXIT_OK;
}
