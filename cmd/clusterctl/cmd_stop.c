/* clusterctl stop APP. */
#include <stdio.h>

#include <cjson/cJSON.h>

#include "base/base.h"
#include "commands.h"

int cmd_stop(int argc, char **argv)
{
    struct cmd_client c = {
        .usage = "stop APP [--addr HOST:PORT] [--json]",
        .about = "Stop APP: remove it and kill its tasks (DELETE /v2/apps/APP).",
    };
    int rv = cmd_client_parse(&c, argc, argv, NULL, 0, 1, 1);
    if (rv >= 0) {
        return rv;
    }
    char path[512];
    if (cmd_client_app_path("/v2/apps", c.pos[0], NULL, path, sizeof(path)) != 0) {
        fprintf(stderr, "clusterctl stop: '%s' is not an app id\n", c.pos[0]);
        return CMD_EXIT_USAGE;
    }
    char *text = NULL;
    cJSON *j = NULL;
    rv = cmd_client_get_json(&c, "DELETE", path, NULL, 200, &text, &j);
    if (rv != CMD_EXIT_OK) {
        return rv;
    }
    if (c.json) {
        printf("%s\n", text);
    } else {
        printf("%s: stopping (version %s, deployment %s)\n", c.pos[0],
               cmd_json_str(j, "version") ? cmd_json_str(j, "version") : "?",
               cmd_json_str(j, "deploymentId") ? cmd_json_str(j, "deploymentId") : "?");
    }
    cm_free(&text);
    cJSON_Delete(j);
    return CMD_EXIT_OK;
}
