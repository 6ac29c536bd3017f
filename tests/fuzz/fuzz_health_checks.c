/* Fuzz what reads the health check results the executor stores with a task
 * (state/db.h `checks`, and a task row's `ports`): the API's healthCheckResults and
 * readinessCheckResults, and the executor's port selection. Input: one selector
 * byte, then the text (NUL-terminated copy, as it comes out of SQLite). Oracles:
 * the API's output is always valid JSON, whatever the stored text; a selected port
 * is 1-65535, and a failure says why. */
#include <cjson/cJSON.h>
#include <stdlib.h>

#include "agent/agent.h"
#include "api/api_int.h"
#include "base/base.h"
#include "fuzz.h"
#include "state/state.h"

static const char app_json[] =
    "{\"id\":\"/w\",\"cmd\":\"sleep 1\",\"portDefinitions\":[{\"port\":0,\"name\":\"a\"},"
    "{\"port\":0,\"name\":\"b\"}],\"healthChecks\":[{\"protocol\":\"TCP\",\"portIndex\":"
    "1},"
    "{\"protocol\":\"HTTP\",\"portName\":\"a\"}],\"readinessChecks\":[{\"portName\":"
    "\"b\"}]}";

static void check_json(const struct cm_buf *b, bool wrap)
{
    char *text = wrap ? cm_asprintf("[%s]", b->data ? b->data : "")
                      : cm_strdup(b->data ? b->data : "");
    if (text == NULL) {
        return;
    }
    cJSON *j = cJSON_Parse(text);
    if (j == NULL) {
        abort(); /* the API wrote invalid JSON */
    }
    cJSON_Delete(j);
    cm_free(&text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    char *text = cm_strndup((const char *)data + 1, size - 1);
    if (text == NULL) {
        return 0;
    }
    if (data[0] & 1) {
        struct cm_app *app = NULL;
        struct cm_app_parse_opts o = {.features = CM_APP_FEAT_ALL};
        if (cm_app_parse(app_json, strlen(app_json), &o, &app, NULL) == 0) {
            char why[128];
            for (size_t i = 0; i < app->n_health_checks; i++) {
                why[0] = '\0';
                int p =
                    cm_agent_hc_port(app, &app->health_checks[i], text, why, sizeof(why));
                if ((p < 0 && why[0] == '\0') || p == 0 || p > 65535) {
                    abort();
                }
            }
            why[0] = '\0';
            int p =
                cm_agent_rc_port(app, &app->readiness_checks[0], text, why, sizeof(why));
            if ((p < 0 && why[0] == '\0') || p == 0 || p > 65535) {
                abort();
            }
            cm_app_free(app);
        }
    } else {
        struct api_task t = {
            .id = (char *)"w.1",
            .app = (char *)"/w",
            .health = (char *)((data[0] & 2) ? "unhealthy" : "healthy"),
            .checks = text,
            .state = CM_TASK_RUNNING,
        };
        struct api_tasks ts = {.v = &t, .n = 1, .cap = 1};
        struct cm_buf b = {0};
        if (api__health_results(&t, &b) == 0) {
            check_json(&b, true);
        }
        cm_buf_done(&b);
        if (api__readiness_results(&ts, 0, 1, &b) == 0) {
            check_json(&b, false);
        }
        cm_buf_done(&b);
    }
    cm_free(&text);
    return 0;
}
