/* clusterctl leader: which node leads the cluster. */
#include <stdio.h>

#include <cjson/cJSON.h>

#include "base/base.h"
#include "commands.h"

int cmd_leader(int argc, char **argv)
{
    struct cmd_client c = {
        .usage = "leader [--addr HOST:PORT] [--json]",
        .about = "Print the API address of the current leader (GET /v2/leader).",
    };
    int rv = cmd_client_parse(&c, argc, argv, NULL, 0, 0, 0);
    if (rv >= 0) {
        return rv;
    }
    char *text = NULL;
    int status = cmd_client_call(&c, "GET", "/v2/leader", NULL, &text);
    if (status < 0) {
        return CMD_EXIT_FAIL;
    }
    if (status == 404) {
        fprintf(stderr,
                "clusterctl leader: there is no leader right now (an election is under "
                "way, or too few voters are up)\n");
        cm_free(&text);
        return CMD_EXIT_FAIL;
    }
    if (status != 200) {
        cmd_client_api_error(&c, status, text);
        cm_free(&text);
        return CMD_EXIT_FAIL;
    }
    cJSON *j = cJSON_Parse(text);
    if (c.json) {
        printf("%s\n", text);
    } else {
        const char *l = cmd_json_str(j, "leader");
        printf("%s\n", l != NULL ? l : "?");
    }
    cJSON_Delete(j);
    cm_free(&text);
    return CMD_EXIT_OK;
}
