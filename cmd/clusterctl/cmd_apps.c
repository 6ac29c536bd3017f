/* clusterctl apps: the apps and how many of their instances run. */
#include <stdio.h>

#include <cjson/cJSON.h>

#include "base/base.h"
#include "commands.h"

int cmd_apps(int argc, char **argv)
{
    struct cmd_client c = {
        .usage = "apps [--addr HOST:PORT] [--json]",
        .about =
            "List the apps (GET /v2/apps): their instances, how many run, their\n"
            "resources and version.",
    };
    int rv = cmd_client_parse(&c, argc, argv, NULL, 0, 0, 0);
    if (rv >= 0) {
        return rv;
    }
    char *text = NULL;
    cJSON *j = NULL;
    rv = cmd_client_get_json(&c, "GET", "/v2/apps", NULL, 200, &text, &j);
    if (rv != CMD_EXIT_OK) {
        return rv;
    }
    if (c.json) {
        printf("%s\n", text);
    } else {
        static const char *const head[] = {"ID",   "INSTANCES", "RUNNING",
                                           "CPUS", "MEM",       "VERSION"};
        struct cmd_table t = {head, CM_ARRAY_SIZE(head), NULL, 0};
        const cJSON *a;
        cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(j, "apps"))
        {
            char inst[32], run[32], cpus[32], mem[32];
            snprintf(inst, sizeof(inst), "%.0f", cmd_json_num(a, "instances", 0));
            snprintf(run, sizeof(run), "%.0f", cmd_json_num(a, "tasksRunning", 0));
            snprintf(cpus, sizeof(cpus), "%g", cmd_json_num(a, "cpus", 0));
            snprintf(mem, sizeof(mem), "%g", cmd_json_num(a, "mem", 0));
            const char *cells[] = {cmd_json_str(a, "id"),     inst, run, cpus, mem,
                                   cmd_json_str(a, "version")};
            cmd_table_add(&t, cells);
        }
        cmd_table_print(&t, stdout);
        cmd_table_done(&t);
    }
    cm_free(&text);
    cJSON_Delete(j);
    return CMD_EXIT_OK;
}
