/* clusterctl scale APP N: set an app's instances (PUT /v2/apps/APP). */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/base.h"
#include "commands.h"
#include "state/state.h"

int cmd_scale(int argc, char **argv)
{
    struct cmd_client c = {
        .usage = "scale APP N [--force] [--addr HOST:PORT] [--json]",
        .about =
            "Ask for N instances of APP (0 suspends it). Running tasks are kept;\n"
            "the leader starts or stops the difference.",
    };
    bool force = false;
    const struct cmd_opt opts[] = {
        {"--force", 'f', NULL, "replace a deployment of APP in progress", &force, NULL},
    };
    int rv = cmd_client_parse(&c, argc, argv, opts, CM_ARRAY_SIZE(opts), 2, 2);
    if (rv >= 0) {
        return rv;
    }
    int64_t n;
    if (cm_parse_i64(c.pos[1], 0, CM_APP_MAX_INSTANCES, &n) != 0) {
        fprintf(stderr,
                "clusterctl scale: N must be a whole number from 0 to %d, not '%s'\n",
                CM_APP_MAX_INSTANCES, c.pos[1]);
        return CMD_EXIT_USAGE;
    }
    char path[512];
    if (cmd_client_app_path("/v2/apps", c.pos[0], force ? "?force=true" : NULL, path,
                            sizeof(path)) != 0) {
        fprintf(stderr, "clusterctl scale: '%s' is not an app id\n", c.pos[0]);
        return CMD_EXIT_USAGE;
    }
    /* PATCH: scaling an app that does not exist must not create it. */
    char body[64];
    snprintf(body, sizeof(body), "{\"instances\":%lld}", (long long)n);
    char *text = NULL;
    cJSON *j = NULL;
    rv = cmd_client_get_json(&c, "PATCH", path, body, 200, &text, &j);
    if (rv != CMD_EXIT_OK) {
        return rv;
    }
    if (c.json) {
        printf("%s\n", text);
    } else {
        printf("%.*s: scaled to %lld (deployment %s)\n", (int)strcspn(path + 8, "?"),
               path + 8, (long long)n,
               cmd_json_str(j, "deploymentId") ? cmd_json_str(j, "deploymentId") : "?");
    }
    cm_free(&text);
    cJSON_Delete(j);
    return CMD_EXIT_OK;
}
