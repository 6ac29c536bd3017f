/* clusterctl deployments, promote APP, rollback APP [VERSION]
 * (docs/deployments.md), and the deployment progress `run` shows. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "base/base.h"
#include "commands.h"

int cmd_deploy_progress(const struct cJSON *dep, char *line, size_t cap)
{
    size_t len = 0;
    int w = snprintf(line, cap, "step %d/%d:", (int)cmd_json_num(dep, "currentStep", 0),
                     (int)cmd_json_num(dep, "totalSteps", 0));
    len = w > 0 ? (size_t)w : 0;
    const cJSON *a;
    cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(dep, "currentActions"))
    {
        if (len >= cap) {
            break;
        }
        const char *kind = cmd_json_str(a, "action");
        bool stop = kind != NULL && strcmp(kind, "StopApplication") == 0;
        if (stop) {
            w = snprintf(line + len, cap - len, " %s stopping, %d left;",
                         cmd_json_str(a, "app"), (int)cmd_json_num(a, "oldRemaining", 0));
        } else {
            w = snprintf(line + len, cap - len, " %s %d/%d new healthy, %d old left;",
                         cmd_json_str(a, "app"), (int)cmd_json_num(a, "newReady", 0),
                         (int)cmd_json_num(a, "instances", 0),
                         (int)cmd_json_num(a, "oldRemaining", 0));
        }
        len += w > 0 ? (size_t)w : 0;
    }
    if (len > 0 && len < cap && line[len - 1] == ';') {
        line[len - 1] = '\0';
    }
    return 0;
}

/* ------------------------------------------------------------------ deployments */

int cmd_deployments(int argc, char **argv)
{
    struct cmd_client c = {
        .usage = "deployments [--addr HOST:PORT] [--json]",
        .about = "List the deployments in progress (GET /v2/deployments).",
    };
    int rv = cmd_client_parse(&c, argc, argv, NULL, 0, 0, 0);
    if (rv >= 0) {
        return rv;
    }
    char *text = NULL;
    cJSON *j = NULL;
    rv = cmd_client_get_json(&c, "GET", "/v2/deployments", NULL, 200, &text, &j);
    if (rv != CMD_EXIT_OK) {
        return rv;
    }
    if (c.json) {
        printf("%s\n", text);
    } else {
        static const char *const head[] = {"ID", "APPS", "STEP", "ACTIONS", "VERSION"};
        struct cmd_table t = {head, CM_ARRAY_SIZE(head), NULL, 0};
        const cJSON *d;
        cJSON_ArrayForEach(d, j)
        {
            char apps[512] = "", step[32], acts[512] = "";
            const cJSON *a;
            size_t len = 0;
            cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(d, "affectedApps"))
            {
                int w = snprintf(apps + len, sizeof(apps) - len, "%s%s", len ? "," : "",
                                 cJSON_IsString(a) ? a->valuestring : "?");
                len = CM_MIN(len + (size_t)CM_MAX(w, 0), sizeof(apps) - 1);
            }
            len = 0;
            cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(d, "currentActions"))
            {
                int w =
                    snprintf(acts + len, sizeof(acts) - len, "%s%s %s", len ? "," : "",
                             cmd_json_str(a, "action"), cmd_json_str(a, "app"));
                len = CM_MIN(len + (size_t)CM_MAX(w, 0), sizeof(acts) - 1);
            }
            snprintf(step, sizeof(step), "%d/%d%s",
                     (int)cmd_json_num(d, "currentStep", 0),
                     (int)cmd_json_num(d, "totalSteps", 0),
                     cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(d, "promoted"))
                         ? " promoted"
                         : "");
            const char *cells[] = {cmd_json_str(d, "id"), apps, step, acts,
                                   cmd_json_str(d, "version")};
            if (cmd_table_add(&t, cells) != 0) {
                break;
            }
        }
        cmd_table_print(&t, stdout);
        cmd_table_done(&t);
    }
    cm_free(&text);
    cJSON_Delete(j);
    return CMD_EXIT_OK;
}

/* ------------------------------------------------------------------ promote, rollback */

static int app_post(const char *verb, const char *usage, const char *about, int argc,
                    char **argv, size_t max_pos)
{
    struct cmd_client c = {.usage = usage, .about = about};
    int rv = cmd_client_parse(&c, argc, argv, NULL, 0, 1, max_pos);
    if (rv >= 0) {
        return rv;
    }
    char path[512], suffix[32];
    snprintf(suffix, sizeof(suffix), "/%s", verb);
    if (cmd_client_app_path("/v1/apps", c.pos[0], suffix, path, sizeof(path)) != 0) {
        fprintf(stderr, "clusterctl %s: '%s' is not an app id\n", verb, c.pos[0]);
        return CMD_EXIT_USAGE;
    }
    char body[160] = "";
    if (c.n_pos > 1) {
        snprintf(body, sizeof(body), "{\"version\":\"%s\"}", c.pos[1]);
    }
    char *text = NULL;
    cJSON *j = NULL;
    rv = cmd_client_get_json(&c, "POST", path, body[0] ? body : NULL, 200, &text, &j);
    if (rv != CMD_EXIT_OK) {
        return rv;
    }
    if (c.json) {
        printf("%s\n", text);
    } else if (strcmp(verb, "promote") == 0) {
        printf("%s: canaries promoted (deployment %s)\n", c.pos[0],
               cmd_json_str(j, "deploymentId") ? cmd_json_str(j, "deploymentId") : "?");
    } else {
        printf("%s: rolling back to version %s (deployment %s)\n", c.pos[0],
               cmd_json_str(j, "version") ? cmd_json_str(j, "version") : "?",
               cmd_json_str(j, "deploymentId") ? cmd_json_str(j, "deploymentId") : "?");
    }
    cm_free(&text);
    cJSON_Delete(j);
    return CMD_EXIT_OK;
}

int cmd_promote(int argc, char **argv)
{
    return app_post("promote", "promote APP [--addr HOST:PORT] [--json]",
                    "Promote the canaries of APP's deployment: the rolling upgrade goes\n"
                    "on (POST /v1/apps/APP/promote; upgradeStrategy.canaries).",
                    argc, argv, 1);
}

int cmd_rollback(int argc, char **argv)
{
    return app_post(
        "rollback", "rollback APP [VERSION] [--addr HOST:PORT] [--json]",
        "Without VERSION: roll back APP's deployment in progress, or else go\n"
        "back to the version before the current one. With VERSION: go to\n"
        "that stored version (see GET /v2/apps/APP/versions).",
        argc, argv, 2);
}
