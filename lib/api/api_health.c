/* Health and readiness results in Marathon's shapes (compat.md §1.7, §1.8),
 * from the `checks` column the executor writes with each transition
 * (state/db.h): a task's healthCheckResults and an app's readinessCheckResults.
 * The stored object was validated as a JSON object on its way into the log, so
 * one that does not parse means cJSON ran out of memory; a field of the wrong type
 * is skipped, never trusted. */
#include <cjson/cJSON.h>
#include <string.h>

#include "api/api_int.h"

static int64_t ms_of(const cJSON *o, const char *name)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsNumber(f) ? (int64_t)f->valuedouble : 0;
}

static int time_field(struct cm_buf *out, const char *name, const cJSON *o)
{
    int rv = cm_buf_printf(out, ",\"%s\":", name);
    return rv ? rv : api__json_time(out, ms_of(o, name));
}

static int str_or_null(struct cm_buf *out, const cJSON *f)
{
    return cJSON_IsString(f) ? api__json_str(out, f->valuestring)
                             : cm_buf_puts(out, "null");
}

/* One element per health check; without details, the verdict alone. */
int api__health_results(const struct api_task *t, struct cm_buf *out)
{
    cJSON *checks = t->checks != NULL ? cJSON_Parse(t->checks) : NULL;
    if (t->checks != NULL && checks == NULL && t->checks[0] == '{') {
        /* The log only takes valid objects: this is cJSON out of memory. */
        return CM_ENOMEM;
    }
    const cJSON *hs = cJSON_GetObjectItemCaseSensitive(checks, "health");
    int rv = 0;
    if (!cJSON_IsArray(hs) || cJSON_GetArraySize(hs) == 0) {
        cJSON_Delete(checks);
        if (t->health == NULL) {
            return 0;
        }
        rv = cm_buf_printf(out, "{\"alive\":%s,\"instanceId\":",
                           strcmp(t->health, "healthy") == 0 ? "true" : "false");
        rv = rv ? rv : api__json_str(out, t->id);
        rv = rv ? rv : cm_buf_puts(out, ",\"taskId\":");
        rv = rv ? rv : api__json_str(out, t->id);
        return rv ? rv : cm_buf_puts(out, "}");
    }
    bool first = true;
    const cJSON *e;
    cJSON_ArrayForEach(e, hs)
    {
        if (rv != 0) {
            break;
        }
        const cJSON *alive = cJSON_GetObjectItemCaseSensitive(e, "alive");
        if (!cJSON_IsBool(alive)) {
            continue; /* no result yet: Marathon lists none either */
        }
        const cJSON *cf = cJSON_GetObjectItemCaseSensitive(e, "consecutiveFailures");
        rv = cm_buf_printf(out, "%s{\"alive\":%s,\"consecutiveFailures\":%lld",
                           first ? "" : ",", cJSON_IsTrue(alive) ? "true" : "false",
                           cJSON_IsNumber(cf) ? (long long)cf->valuedouble : 0LL);
        first = false;
        rv = rv ? rv : time_field(out, "firstSuccess", e);
        rv = rv ? rv : time_field(out, "lastSuccess", e);
        rv = rv ? rv : time_field(out, "lastFailure", e);
        rv = rv ? rv : cm_buf_puts(out, ",\"lastFailureCause\":");
        rv = rv ? rv
                : str_or_null(out,
                              cJSON_GetObjectItemCaseSensitive(e, "lastFailureCause"));
        rv = rv ? rv : cm_buf_puts(out, ",\"instanceId\":");
        rv = rv ? rv : api__json_str(out, t->id);
        rv = rv ? rv : cm_buf_puts(out, ",\"taskId\":");
        rv = rv ? rv : api__json_str(out, t->id);
        rv = rv ? rv : cm_buf_puts(out, "}");
    }
    cJSON_Delete(checks);
    return rv;
}

/* Marathon's ReadinessCheckResult per live task of [begin, end) with results:
 * {name, taskId, ready, lastResponse?: {status, contentType, body}}. */
int api__readiness_results(const struct api_tasks *t, size_t begin, size_t end,
                           struct cm_buf *out)
{
    int rv = cm_buf_puts(out, "[");
    bool first = true;
    for (size_t i = begin; rv == 0 && i < end; i++) {
        const struct api_task *k = &t->v[i];
        if (!api__task_listed(k) || k->checks == NULL) {
            continue;
        }
        cJSON *checks = cJSON_Parse(k->checks);
        if (checks == NULL && k->checks[0] == '{') {
            return CM_ENOMEM; /* as in api__health_results */
        }
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(checks, "readiness"))
        {
            if (rv != 0) {
                break;
            }
            rv = cm_buf_puts(out, first ? "{\"name\":" : ",{\"name\":");
            first = false;
            rv = rv ? rv : str_or_null(out, cJSON_GetObjectItemCaseSensitive(e, "name"));
            rv = rv ? rv : cm_buf_puts(out, ",\"taskId\":");
            rv = rv ? rv : api__json_str(out, k->id);
            rv = rv ? rv
                    : cm_buf_printf(
                          out, ",\"ready\":%s",
                          cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "ready"))
                              ? "true"
                              : "false");
            const cJSON *lr = cJSON_GetObjectItemCaseSensitive(e, "lastResponse");
            if (rv == 0 && cJSON_IsObject(lr)) {
                rv = cm_buf_printf(out, ",\"lastResponse\":{\"status\":%lld",
                                   (long long)ms_of(lr, "status"));
                rv = rv ? rv : cm_buf_puts(out, ",\"contentType\":");
                rv = rv ? rv
                        : str_or_null(
                              out, cJSON_GetObjectItemCaseSensitive(lr, "contentType"));
                rv = rv ? rv : cm_buf_puts(out, ",\"body\":");
                rv = rv ? rv
                        : str_or_null(out, cJSON_GetObjectItemCaseSensitive(lr, "body"));
                rv = rv ? rv : cm_buf_puts(out, "}");
            }
            rv = rv ? rv : cm_buf_puts(out, "}");
        }
        cJSON_Delete(checks);
    }
    return rv ? rv : cm_buf_puts(out, "]");
}
