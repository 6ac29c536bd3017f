/* clusterctl logs APP|TASK [-f] [--stderr]: a task's output (for an app: its
 * most recent task), read from the node that runs it. */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/base.h"
#include "commands.h"
#include "net/http.h"

/* The most recently staged task of the app at @path, or its last failed one. */
static int pick_task(const struct cmd_client *c, const char *path, char *out, size_t cap)
{
    cJSON *j = NULL;
    int rv = cmd_client_get_json(c, "GET", path, NULL, 200, NULL, &j);
    if (rv != CMD_EXIT_OK) {
        return rv;
    }
    const cJSON *app = cJSON_GetObjectItemCaseSensitive(j, "app");
    const char *best = NULL, *best_at = NULL;
    const cJSON *k;
    cJSON_ArrayForEach(k, cJSON_GetObjectItemCaseSensitive(app, "tasks"))
    {
        const char *at = cmd_json_str(k, "stagedAt");
        if (best == NULL || (at != NULL && best_at != NULL && strcmp(at, best_at) > 0)) {
            best = cmd_json_str(k, "id");
            best_at = at;
        }
    }
    if (best == NULL) {
        best = cmd_json_str(cJSON_GetObjectItemCaseSensitive(app, "lastTaskFailure"),
                            "taskId");
    }
    if (best == NULL) {
        fprintf(stderr, "clusterctl logs: %s has no task to show the logs of yet\n",
                cmd_json_str(app, "id"));
        cJSON_Delete(j);
        return CMD_EXIT_FAIL;
    }
    snprintf(out, cap, "%s", best);
    cJSON_Delete(j);
    return CMD_EXIT_OK;
}

static bool print_data(void *user, const char *data, size_t len)
{
    (void)user;
    fwrite(data, 1, len, stdout);
    fflush(stdout);
    return true;
}

int cmd_logs(int argc, char **argv)
{
    bool follow = false, err_stream = false;
    const char *tail = NULL;
    const struct cmd_opt opts[] = {
        {"--follow", 'f', NULL, "keep printing output as the task writes it", &follow,
         NULL},
        {"--stderr", 0, NULL, "the task's stderr instead of its stdout", &err_stream,
         NULL},
        {"--tail", 0, "BYTES", " start this many bytes before the end", NULL, &tail},
    };
    struct cmd_client c = {
        .usage = "logs APP|TASK [-f] [--stderr] [--tail BYTES] [--addr HOST:PORT]",
        .about =
            "Print a task's output (GET /v1/tasks/TASK/logs). For an app, its most\n"
            "recent task. Ask the agent of the node that runs the task.",
    };
    int rv = cmd_client_parse(&c, argc, argv, opts, CM_ARRAY_SIZE(opts), 1, 1);
    if (rv >= 0) {
        return rv;
    }
    int64_t tail_n = 0;
    if (tail != NULL && cm_parse_i64(tail, 0, INT64_MAX / 2, &tail_n) != 0) {
        fprintf(stderr, "clusterctl logs: --tail needs a number of bytes, not '%s'\n",
                tail);
        return CMD_EXIT_USAGE;
    }
    /* An app id if such an app exists, else a task id. */
    char task[512];
    snprintf(task, sizeof(task), "%s", c.pos[0]);
    char path[2048];
    if (cmd_client_app_path("/v2/apps", c.pos[0], NULL, path, sizeof(path)) == 0) {
        char *body = NULL;
        int status = cmd_client_call(&c, "GET", path, NULL, &body);
        cm_free(&body);
        if (status < 0) {
            return CMD_EXIT_FAIL;
        }
        if (status == 200) {
            rv = pick_task(&c, path, task, sizeof(task));
            if (rv != CMD_EXIT_OK) {
                return rv;
            }
        }
    }
    char esc[1536];
    cmd_client_escape(task, esc, sizeof(esc));
    snprintf(path, sizeof(path), "/v1/tasks/%s/logs?stream=%s&offset=%lld%s", esc,
             err_stream ? "stderr" : "stdout", tail != NULL ? -(long long)tail_n : 0LL,
             follow ? "&follow=1" : "");
    if (!follow) {
        char *body = NULL;
        int status = cmd_client_call(&c, "GET", path, NULL, &body);
        if (status < 0) {
            return CMD_EXIT_FAIL;
        }
        if (status != 200) {
            cmd_client_api_error(&c, status, body);
            cm_free(&body);
            return CMD_EXIT_FAIL;
        }
        fputs(body != NULL ? body : "", stdout);
        cm_free(&body);
        return CMD_EXIT_OK;
    }
    rv = cmd_client_stream(&c, path, NULL, 0, print_data, NULL);
    return rv == CMD_STREAM_ENDED ? CMD_EXIT_OK : rv;
}
