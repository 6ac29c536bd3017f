/* clusterctl drain NODE / undrain NODE. */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/base.h"
#include "commands.h"

static int drain(int argc, char **argv, bool on)
{
    struct cmd_client c = {
        .usage = on ? "drain NODE [--addr HOST:PORT] [--json]"
                    : "undrain NODE [--addr HOST:PORT] [--json]",
        .about = on ? "Drain a node (POST /v1/nodes/NODE/drain): nothing new is placed\n"
                      "there; each of its tasks gets a replacement on another node, and\n"
                      "is stopped once the replacement runs (healthy, when the app has\n"
                      "health checks), within the app's upgradeStrategy. `clusterctl\n"
                      "nodes` shows the node's task count going to 0."
                    : "Make a drained node schedulable again (POST\n"
                      "/v1/nodes/NODE/undrain). Tasks already moved stay where they are.",
    };
    int rv = cmd_client_parse(&c, argc, argv, NULL, 0, 1, 1);
    if (rv >= 0) {
        return rv;
    }
    char seg[512], path[640];
    cmd_client_escape(c.pos[0], seg, sizeof(seg));
    snprintf(path, sizeof(path), "/v1/nodes/%s/%s", seg, on ? "drain" : "undrain");
    char *text = NULL;
    cJSON *j = NULL;
    rv = cmd_client_get_json(&c, "POST", path, NULL, 200, &text, &j);
    if (rv != CMD_EXIT_OK) {
        return rv;
    }
    if (c.json) {
        printf("%s\n", text);
    } else {
        const char *st = cmd_json_str(j, "state");
        printf("node %s: %s\n", c.pos[0], st != NULL ? st : "?");
    }
    cm_free(&text);
    cJSON_Delete(j);
    return CMD_EXIT_OK;
}

int cmd_drain(int argc, char **argv)
{
    return drain(argc, argv, true);
}

int cmd_undrain(int argc, char **argv)
{
    return drain(argc, argv, false);
}
