/* A task's health for the tables of `ps` and `status`, from its Marathon
 * healthCheckResults (the executor's verdict and each check's last cause). */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "commands.h"

const char *cmd_task_health(const cJSON *task, bool cause, char *buf, size_t cap)
{
    const cJSON *results = cJSON_GetObjectItemCaseSensitive(task, "healthCheckResults");
    if (cJSON_GetArraySize(results) == 0) {
        return "-";
    }
    const cJSON *r;
    cJSON_ArrayForEach(r, results)
    {
        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "alive"))) {
            const char *why = cmd_json_str(r, "lastFailureCause");
            if (cause && why != NULL) {
                snprintf(buf, cap, "unhealthy: %s", why);
            } else {
                snprintf(buf, cap, "unhealthy");
            }
            return buf;
        }
    }
    return "healthy";
}
