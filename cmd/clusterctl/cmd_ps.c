/* clusterctl ps [APP]: the tasks, of every app or of one. */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/base.h"
#include "commands.h"

int cmd_ps(int argc, char **argv)
{
    struct cmd_client c = {
        .usage = "ps [APP] [--addr HOST:PORT] [--json]",
        .about =
            "List the tasks that are not over (GET /v2/tasks, or GET\n"
            "/v2/apps/APP/tasks): their state, health, host, ports and start time.",
    };
    int rv = cmd_client_parse(&c, argc, argv, NULL, 0, 0, 1);
    if (rv >= 0) {
        return rv;
    }
    char path[512] = "/v2/tasks";
    if (c.n_pos == 1 &&
        cmd_client_app_path("/v2/apps", c.pos[0], "/tasks", path, sizeof(path)) != 0) {
        fprintf(stderr, "clusterctl ps: '%s' is not an app id\n", c.pos[0]);
        return CMD_EXIT_USAGE;
    }
    char *text = NULL;
    cJSON *j = NULL;
    rv = cmd_client_get_json(&c, "GET", path, NULL, 200, &text, &j);
    if (rv != CMD_EXIT_OK) {
        return rv;
    }
    if (c.json) {
        printf("%s\n", text);
    } else {
        static const char *const head[] = {"TASK", "APP",   "STATE",  "HEALTH",
                                           "HOST", "PORTS", "STARTED"};
        struct cmd_table t = {head, CM_ARRAY_SIZE(head), NULL, 0};
        const cJSON *k;
        cJSON_ArrayForEach(k, cJSON_GetObjectItemCaseSensitive(j, "tasks"))
        {
            char ports[128] = "";
            const cJSON *p;
            cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(k, "ports"))
            {
                size_t n = strlen(ports);
                snprintf(ports + n, sizeof(ports) - n, "%s%.0f", n ? "," : "",
                         cJSON_IsNumber(p) ? p->valuedouble : 0);
            }
            char state[32];
            snprintf(state, sizeof(state), "%s",
                     cmd_task_state(cmd_json_str(k, "state")));
            char health[256];
            const char *cells[] = {cmd_json_str(k, "id"),
                                   cmd_json_str(k, "appId"),
                                   state,
                                   cmd_task_health(k, false, health, sizeof(health)),
                                   cmd_json_str(k, "host"),
                                   ports[0] ? ports : "-",
                                   cmd_json_str(k, "startedAt")};
            cmd_table_add(&t, cells);
        }
        cmd_table_print(&t, stdout);
        cmd_table_done(&t);
    }
    cm_free(&text);
    cJSON_Delete(j);
    return CMD_EXIT_OK;
}
