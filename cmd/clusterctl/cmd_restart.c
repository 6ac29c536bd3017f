/* clusterctl restart APP. */
#include <stdio.h>

#include <cjson/cJSON.h>

#include "base/base.h"
#include "commands.h"

int cmd_restart(int argc, char **argv)
{
    struct cmd_client c = {
        .usage = "restart APP [--force] [--addr HOST:PORT] [--json]",
        .about =
            "Restart every task of APP: a new version of the same spec, replaced\n"
            "as its upgradeStrategy allows (POST /v2/apps/APP/restart).",
    };
    bool force = false;
    const struct cmd_opt opts[] = {
        {"--force", 'f', NULL, "replace a deployment of APP in progress", &force, NULL},
    };
    int rv = cmd_client_parse(&c, argc, argv, opts, CM_ARRAY_SIZE(opts), 1, 1);
    if (rv >= 0) {
        return rv;
    }
    char path[512];
    if (cmd_client_app_path("/v2/apps", c.pos[0],
                            force ? "/restart?force=true" : "/restart", path,
                            sizeof(path)) != 0) {
        fprintf(stderr, "clusterctl restart: '%s' is not an app id\n", c.pos[0]);
        return CMD_EXIT_USAGE;
    }
    char *text = NULL;
    cJSON *j = NULL;
    rv = cmd_client_get_json(&c, "POST", path, NULL, 200, &text, &j);
    if (rv != CMD_EXIT_OK) {
        return rv;
    }
    if (c.json) {
        printf("%s\n", text);
    } else {
        printf("%s: restarting (version %s, deployment %s)\n", c.pos[0],
               cmd_json_str(j, "version") ? cmd_json_str(j, "version") : "?",
               cmd_json_str(j, "deploymentId") ? cmd_json_str(j, "deploymentId") : "?");
    }
    cm_free(&text);
    cJSON_Delete(j);
    return CMD_EXIT_OK;
}
