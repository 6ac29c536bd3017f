/* The agent's pure parts: the local record (task.json), /proc/<pid>/stat, the
 * rotation decision, cgroup and sandbox names. No I/O. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "agent/agent.h"
#include "state/db.h"
#include "state/state.h"

#define RECORD_VERSION 1

static const char *const phase_names[] = {
    [CM_AGENT_PHASE_NEW] = "new",         [CM_AGENT_PHASE_LAUNCHING] = "launching",
    [CM_AGENT_PHASE_RUNNING] = "running", [CM_AGENT_PHASE_STOPPING] = "stopping",
    [CM_AGENT_PHASE_KILLING] = "killing", [CM_AGENT_PHASE_EXITED] = "exited",
    [CM_AGENT_PHASE_DONE] = "done",
};

const char *cm_agent_phase_name(enum cm_agent_phase p)
{
    return (unsigned)p < CM_ARRAY_SIZE(phase_names) ? phase_names[p] : NULL;
}

/* ------------------------------------------------------------------ record */

int cm_agent_record_format(const struct cm_agent_record *r, struct cm_buf *out)
{
    cm_state_json_init();
    int rv = CM_ENOMEM;
    cJSON *o = cJSON_CreateObject();
    if (o == NULL) {
        return CM_ENOMEM;
    }
    /* Numbers that may exceed 2^53 (start time, counters) are written as strings
     * so they survive JSON's doubles. */
    char u[32];
    bool ok =
        cJSON_AddNumberToObject(o, "v", RECORD_VERSION) != NULL &&
        cJSON_AddStringToObject(o, "id", r->id) != NULL &&
        cJSON_AddStringToObject(o, "phase", cm_agent_phase_name(r->phase)) != NULL &&
        cJSON_AddNumberToObject(o, "pid", (double)r->pid) != NULL;
    snprintf(u, sizeof(u), "%llu", (unsigned long long)r->start_time);
    ok = ok && cJSON_AddStringToObject(o, "start_time", u) != NULL &&
         cJSON_AddStringToObject(o, "cgroup", r->cgroup) != NULL &&
         cJSON_AddNumberToObject(o, "launched_at", (double)r->launched_at) != NULL &&
         cJSON_AddNumberToObject(o, "mem_mib", r->mem_mib) != NULL &&
         cJSON_AddNumberToObject(o, "grace_s", r->grace_s) != NULL;
    snprintf(u, sizeof(u), "%llu", (unsigned long long)r->oom_base);
    ok = ok && cJSON_AddStringToObject(o, "oom_base", u) != NULL;
    snprintf(u, sizeof(u), "%llu", (unsigned long long)r->log_base[0]);
    ok = ok && cJSON_AddStringToObject(o, "stdout_base", u) != NULL;
    snprintf(u, sizeof(u), "%llu", (unsigned long long)r->log_base[1]);
    ok = ok && cJSON_AddStringToObject(o, "stderr_base", u) != NULL;
    if (ok && r->phase == CM_AGENT_PHASE_EXITED) {
        const char *st = cm_task_state_name((enum cm_task_state)r->final_state);
        ok = st != NULL && cJSON_AddStringToObject(o, "state", st) != NULL &&
             cJSON_AddNumberToObject(o, "exit", r->exit_code) != NULL &&
             cJSON_AddStringToObject(o, "reason", r->reason) != NULL;
    }
    char *text = ok ? cJSON_PrintUnformatted(o) : NULL;
    if (text != NULL && cm_buf_puts(out, text) == 0 && cm_buf_puts(out, "\n") == 0) {
        rv = 0;
    }
    cJSON_free(text);
    cJSON_Delete(o);
    return rv;
}

static bool get_u64(const cJSON *o, const char *key, uint64_t *ret)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsString(v)) {
        return false;
    }
    const char *s = v->valuestring;
    if (*s == '\0' || strlen(s) > 20) {
        return false;
    }
    uint64_t x = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') {
            return false;
        }
        uint64_t d = (uint64_t)(*s - '0');
        if (x > (UINT64_MAX - d) / 10) {
            return false;
        }
        x = x * 10 + d;
    }
    *ret = x;
    return true;
}

static bool get_int(const cJSON *o, const char *key, double min, double max, double *ret)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || v->valuedouble < min || v->valuedouble > max ||
        v->valuedouble != floor(v->valuedouble)) {
        return false;
    }
    *ret = v->valuedouble;
    return true;
}

static bool get_str(const cJSON *o, const char *key, char *out, size_t cap)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= cap) {
        return false;
    }
    memcpy(out, v->valuestring, strlen(v->valuestring) + 1);
    return true;
}

int cm_agent_record_parse(const char *text, size_t len, struct cm_agent_record *ret)
{
    cm_state_json_init();
    cJSON *o = cJSON_ParseWithLength(text, len);
    if (o == NULL) {
        /* cJSON does not tell OOM from bad syntax; a record is small, so treat a
         * failed parse as corruption (the caller reports the task lost). */
        return CM_ECORRUPT;
    }
    struct cm_agent_record r;
    memset(&r, 0, sizeof(r));
    r.exit_code = -1;
    double v, pid, launched, grace;
    char phase[16];
    bool ok = cJSON_IsObject(o) && get_int(o, "v", 1, 1, &v) &&
              get_str(o, "id", r.id, sizeof(r.id)) && r.id[0] != '\0' &&
              get_str(o, "phase", phase, sizeof(phase)) &&
              get_int(o, "pid", 0, 4194304, &pid) &&
              get_u64(o, "start_time", &r.start_time) &&
              get_str(o, "cgroup", r.cgroup, sizeof(r.cgroup)) &&
              get_int(o, "launched_at", 0, 9007199254740991.0, &launched) &&
              get_int(o, "grace_s", 0, 2147483647.0, &grace) &&
              get_u64(o, "oom_base", &r.oom_base) &&
              get_u64(o, "stdout_base", &r.log_base[0]) &&
              get_u64(o, "stderr_base", &r.log_base[1]);
    const cJSON *mem = cJSON_GetObjectItemCaseSensitive(o, "mem_mib");
    ok = ok && cJSON_IsNumber(mem) && mem->valuedouble >= 0 && isfinite(mem->valuedouble);
    if (ok) {
        r.pid = (int64_t)pid;
        r.launched_at = (int64_t)launched;
        r.grace_s = (int32_t)grace;
        r.mem_mib = mem->valuedouble;
        if (strcmp(phase, "launching") == 0) {
            r.phase = CM_AGENT_PHASE_LAUNCHING;
        } else if (strcmp(phase, "running") == 0) {
            r.phase = CM_AGENT_PHASE_RUNNING;
            ok = r.pid > 0;
        } else if (strcmp(phase, "exited") == 0) {
            r.phase = CM_AGENT_PHASE_EXITED;
            char st[32];
            double ex;
            enum cm_task_state ts = CM_TASK_FAILED;
            ok = get_str(o, "state", st, sizeof(st)) &&
                 cm_task_state_parse(st, &ts) == 0 && cm_task_state_terminal(ts) &&
                 get_int(o, "exit", -1, 65535, &ex) &&
                 get_str(o, "reason", r.reason, sizeof(r.reason));
            r.final_state = (int)ts;
            r.exit_code = ok ? (int)ex : -1;
        } else {
            ok = false;
        }
    }
    cJSON_Delete(o);
    if (!ok) {
        return CM_ECORRUPT;
    }
    *ret = r;
    return 0;
}

/* ------------------------------------------------------------------ /proc */

int cm_agent_parse_proc_start(const char *text, size_t len, uint64_t *ret)
{
    /* "pid (comm) state ppid ...": comm may hold ") (" itself, so fields start
     * after the last ')'. starttime is field 22: the 20th after comm. */
    size_t i = len;
    while (i > 0 && text[i - 1] != ')') {
        i--;
    }
    if (i == 0) {
        return CM_EMALFORMED;
    }
    unsigned field = 2;
    while (i < len) {
        while (i < len && text[i] == ' ') {
            i++;
        }
        if (i >= len || text[i] == '\n') {
            break;
        }
        field++;
        size_t start = i;
        while (i < len && text[i] != ' ' && text[i] != '\n') {
            i++;
        }
        if (field == 22) {
            uint64_t v = 0;
            if (i == start || i - start > 20) {
                return CM_EMALFORMED;
            }
            for (size_t k = start; k < i; k++) {
                if (text[k] < '0' || text[k] > '9') {
                    return CM_EMALFORMED;
                }
                uint64_t d = (uint64_t)(text[k] - '0');
                if (v > (UINT64_MAX - d) / 10) {
                    return CM_EMALFORMED;
                }
                v = v * 10 + d;
            }
            *ret = v;
            return 0;
        }
    }
    return CM_EMALFORMED;
}

/* ------------------------------------------------------------------ names */

unsigned cm_agent_log_rotation(uint64_t size, uint64_t max_bytes, unsigned keep,
                               unsigned existing)
{
    if (max_bytes == 0 || size <= max_bytes || keep == 0) {
        return 0;
    }
    return CM_MIN(existing, keep - 1) + 1;
}

void cm_agent_cgroup_name(const char *id, char *out, size_t cap)
{
    /* FNV-1a, 64 bits: enough to keep cut or mapped ids apart. */
    uint64_t h = 0xcbf29ce484222325u;
    for (const char *p = id; *p; p++) {
        h ^= (uint8_t)*p;
        h *= 0x100000001b3u;
    }
    const size_t prefix = 5, suffix = 17; /* "task-", "-<16 hex>" */
    size_t room = cap > prefix + suffix + 1 ? cap - prefix - suffix - 1 : 0;
    room = CM_MIN(room, (size_t)200);
    size_t k = 0;
    memcpy(out, "task-", prefix);
    k = prefix;
    bool changed = false;
    size_t i = 0;
    for (; id[i] != '\0' && i < room; i++) {
        char c = id[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
        out[k++] = ok ? c : '_';
        changed |= !ok;
    }
    changed |= id[i] != '\0';
    if (changed) {
        snprintf(out + k, cap - k, "-%016llx", (unsigned long long)h);
    } else {
        out[k] = '\0';
    }
}

bool cm_agent_id_ok(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > 255 || strcmp(id, ".") == 0 || strcmp(id, "..") == 0) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (id[i] == '/' || (unsigned char)id[i] < 0x20 || id[i] == 0x7f) {
            return false;
        }
    }
    return true;
}
