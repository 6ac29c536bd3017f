/* clusterctl members: the raft members (voters and learners) of the cluster. */
#include <stdio.h>

#include <cjson/cJSON.h>

#include "base/base.h"
#include "commands.h"

int cmd_members(int argc, char **argv)
{
    struct cmd_client c = {
        .usage = "members [--addr HOST:PORT] [--json]",
        .about =
            "List the raft members (GET /v1/members): their id, name, address, role\n"
            "(voter or learner), which one leads, how far each has replicated the\n"
            "log (known on the leader) and how long ago each last sent a heartbeat.",
    };
    int rv = cmd_client_parse(&c, argc, argv, NULL, 0, 0, 0);
    if (rv >= 0) {
        return rv;
    }
    char *text = NULL;
    cJSON *j = NULL;
    rv = cmd_client_get_json(&c, "GET", "/v1/members", NULL, 200, &text, &j);
    if (rv != CMD_EXIT_OK) {
        return rv;
    }
    if (c.json) {
        printf("%s\n", text);
    } else {
        static const char *const head[] = {"ID",     "NAME",  "ADDRESS",  "ROLE",
                                           "LEADER", "MATCH", "HEARTBEAT"};
        struct cmd_table t = {head, CM_ARRAY_SIZE(head), NULL, 0};
        const cJSON *m;
        cJSON_ArrayForEach(m, j)
        {
            char match[32] = "-", age[32] = "-";
            const cJSON *mi = cJSON_GetObjectItemCaseSensitive(m, "match_index");
            const cJSON *hb = cJSON_GetObjectItemCaseSensitive(m, "heartbeat_age_ms");
            if (cJSON_IsNumber(mi)) {
                snprintf(match, sizeof(match), "%.0f", mi->valuedouble);
            }
            if (cJSON_IsNumber(hb)) {
                snprintf(age, sizeof(age), "%.1fs ago", hb->valuedouble / 1000.0);
            }
            const char *name = cmd_json_str(m, "name");
            const char *cells[] = {
                cmd_json_str(m, "id"),
                name != NULL && name[0] != '\0' ? name : "?",
                cmd_json_str(m, "address"),
                cmd_json_str(m, "role"),
                cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "leader")) ? "*" : "",
                match,
                age,
            };
            cmd_table_add(&t, cells);
        }
        cmd_table_print(&t, stdout);
        cmd_table_done(&t);
    }
    cm_free(&text);
    cJSON_Delete(j);
    return CMD_EXIT_OK;
}
