/* clusterctl status APP: the app, its tasks, and why instances wait. */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/base.h"
#include "commands.h"

/* The /v2/queue entry of @id, detached from @queue (NULL when not queued). */
static cJSON *queue_item(cJSON *queue, const char *id)
{
    cJSON *items = cJSON_GetObjectItemCaseSensitive(queue, "queue");
    int i = 0;
    cJSON *q;
    cJSON_ArrayForEach(q, items)
    {
        const char *qid = cmd_json_str(cJSON_GetObjectItemCaseSensitive(q, "app"), "id");
        if (qid != NULL && strcmp(qid, id) == 0) {
            return cJSON_DetachItemFromArray(items, i);
        }
        i++;
    }
    return NULL;
}

int cmd_status(int argc, char **argv)
{
    struct cmd_client c = {
        .usage = "status APP [--addr HOST:PORT] [--json]",
        .about =
            "Show APP (GET /v2/apps/APP), its tasks, and, when fewer instances run\n"
            "than it asks for, why they wait (GET /v2/queue).",
    };
    int rv = cmd_client_parse(&c, argc, argv, NULL, 0, 1, 1);
    if (rv >= 0) {
        return rv;
    }
    char path[512];
    if (cmd_client_app_path("/v2/apps", c.pos[0], NULL, path, sizeof(path)) != 0) {
        fprintf(stderr, "clusterctl status: '%s' is not an app id\n", c.pos[0]);
        return CMD_EXIT_USAGE;
    }
    cJSON *j = NULL, *queue = NULL;
    rv = cmd_client_get_json(&c, "GET", path, NULL, 200, NULL, &j);
    if (rv != CMD_EXIT_OK) {
        return rv;
    }
    const cJSON *app = cJSON_GetObjectItemCaseSensitive(j, "app");
    const char *id = cmd_json_str(app, "id");
    double want = cmd_json_num(app, "instances", 0);
    double running = cmd_json_num(app, "tasksRunning", 0);
    cJSON *item = NULL;
    if (running < want && id != NULL) {
        rv = cmd_client_get_json(&c, "GET", "/v2/queue", NULL, 200, NULL, &queue);
        if (rv != CMD_EXIT_OK) {
            cJSON_Delete(j);
            return rv;
        }
        item = queue_item(queue, id);
    }
    if (c.json) {
        cJSON *out = cJSON_CreateObject();
        cJSON_AddItemReferenceToObject(out, "app", (cJSON *)app);
        cJSON_AddItemToObject(out, "queue", item != NULL ? item : cJSON_CreateNull());
        item = NULL;
        char *text = cJSON_PrintUnformatted(out);
        printf("%s\n", text != NULL ? text : "{}");
        cJSON_free(text);
        cJSON_Delete(out);
    } else {
        printf("app:        %s\nversion:    %s\n", id != NULL ? id : "?",
               cmd_json_str(app, "version") ? cmd_json_str(app, "version") : "?");
        const char *cmd = cmd_json_str(app, "cmd");
        if (cmd != NULL) {
            printf("cmd:        %s\n", cmd);
        }
        printf(
            "instances:  %.0f wanted, %.0f running, %.0f staged, %.0f healthy, %.0f "
            "unhealthy\n",
            want, running, cmd_json_num(app, "tasksStaged", 0),
            cmd_json_num(app, "tasksHealthy", 0), cmd_json_num(app, "tasksUnhealthy", 0));
        printf("resources:  cpus %g, mem %g MiB, disk %g MiB\n",
               cmd_json_num(app, "cpus", 0), cmd_json_num(app, "mem", 0),
               cmd_json_num(app, "disk", 0));
        const cJSON *fail = cJSON_GetObjectItemCaseSensitive(app, "lastTaskFailure");
        if (fail != NULL) {
            printf(
                "last failure: %s: %s (%s, %s)\n", cmd_json_str(fail, "taskId"),
                cmd_json_str(fail, "message"),
                cmd_task_state(cmd_json_str(fail, "state")),
                cmd_json_str(fail, "timestamp") ? cmd_json_str(fail, "timestamp") : "?");
        }
        if (running < want) {
            printf("waiting:    %.0f of %.0f instances are not running\n", want - running,
                   want);
            const cJSON *delay = cJSON_GetObjectItemCaseSensitive(item, "delay");
            double left = cmd_json_num(delay, "timeLeftSeconds", 0);
            if (left > 0) {
                printf(
                    "  launch delay: %.0f s more (backoff after failed tasks; see "
                    "`clusterctl logs %s`)\n",
                    left, id);
            } else if (cmd_json_num(app, "tasksStaged", 0) > 0) {
                printf("  tasks are starting\n");
            } else if (cJSON_IsString(cJSON_GetObjectItemCaseSensitive(item, "reason"))) {
                printf("  not placed: %s\n", cmd_json_str(item, "reason"));
            } else {
                printf(
                    "  not placed yet (ask the leader's API for the scheduler's "
                    "reasons: --addr $(clusterctl leader))\n");
            }
        }
        static const char *const head[] = {"TASK",  "STATE",   "HEALTH", "HOST",
                                           "PORTS", "STARTED", "VERSION"};
        struct cmd_table t = {head, CM_ARRAY_SIZE(head), NULL, 0};
        const cJSON *k;
        cJSON_ArrayForEach(k, cJSON_GetObjectItemCaseSensitive(app, "tasks"))
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
                                   state,
                                   cmd_task_health(k, true, health, sizeof(health)),
                                   cmd_json_str(k, "host"),
                                   ports[0] ? ports : "-",
                                   cmd_json_str(k, "startedAt"),
                                   cmd_json_str(k, "version")};
            cmd_table_add(&t, cells);
        }
        if (t.nrows > 0) {
            printf("\n");
            cmd_table_print(&t, stdout);
        }
        cmd_table_done(&t);
    }
    cJSON_Delete(item);
    cJSON_Delete(queue);
    cJSON_Delete(j);
    return CMD_EXIT_OK;
}
