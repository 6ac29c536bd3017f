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

/* Whether any node in @j carries a heartbeat age (only the leader knows them). */
static bool has_ages(const cJSON *j)
{
    const cJSON *n;
    cJSON_ArrayForEach(n, cJSON_GetObjectItemCaseSensitive(j, "nodes"))
    {
        if (cJSON_GetObjectItemCaseSensitive(n, "lastHeartbeatAgeMs") != NULL) {
            return true;
        }
    }
    return false;
}

/* Ask the leader instead of @c's node, for the heartbeat ages; on any failure
 * keep what we have. */
static void from_leader(const struct cmd_client *c, char **text, cJSON **j)
{
    char *lt = NULL;
    if (cmd_client_call(c, "GET", "/v2/leader", NULL, &lt) != 200) {
        cm_free(&lt);
        return;
    }
    cJSON *l = cJSON_Parse(lt);
    const char *addr = cmd_json_str(l, "leader");
    struct cmd_client lc = *c;
    if (addr != NULL && strcmp(addr, c->addr) != 0 && strlen(addr) < sizeof(lc.addr)) {
        snprintf(lc.addr, sizeof(lc.addr), "%s", addr);
        char *t2 = NULL;
        if (cmd_client_call(&lc, "GET", "/v1/nodes", NULL, &t2) == 200) {
            cJSON *j2 = cJSON_Parse(t2);
            if (j2 != NULL) {
                cJSON_Delete(*j);
                cm_free(text);
                *j = j2;
                *text = t2;
                t2 = NULL;
            }
        }
        cm_free(&t2);
    }
    cJSON_Delete(l);
    cm_free(&lt);
}

int cmd_nodes(int argc, char **argv)
{
    struct cmd_client c = {
        .usage = "nodes [--addr HOST:PORT] [--json]",
        .about =
            "List the nodes (GET /v1/nodes): address, state (up, draining,\n"
            "unreachable, down), cpus and memory (MiB) used/total, tasks that hold\n"
            "resources there, attributes, and how long ago the leader last heard the\n"
            "node's heartbeat (asked from the leader when --addr is a follower; '-'\n"
            "when unknown).",
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
    if (!has_ages(j)) {
        from_leader(&c, &text, &j);
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
