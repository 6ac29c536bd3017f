/* state.db: the replicated tables, command validation and deterministic apply. */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "state/db.h"
#include "state/events_int.h"
#include "state/state.h"

#define CMD_MAX_BYTES  (4u * 1024 * 1024)
#define SCHEMA_VERSION 1

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS nodes("
    "  id TEXT PRIMARY KEY, address TEXT NOT NULL, attrs TEXT NOT NULL,"
    "  resources TEXT NOT NULL, state TEXT NOT NULL, updated INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS apps("
    "  id TEXT PRIMARY KEY, version TEXT NOT NULL, instances INTEGER NOT NULL,"
    "  spec TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS app_versions("
    "  id TEXT NOT NULL, version TEXT NOT NULL, spec TEXT NOT NULL,"
    "  PRIMARY KEY(id, version));"
    "CREATE TABLE IF NOT EXISTS tasks("
    "  id TEXT PRIMARY KEY, app TEXT NOT NULL, version TEXT NOT NULL,"
    "  node TEXT NOT NULL, host TEXT NOT NULL, ports TEXT NOT NULL,"
    "  state INTEGER NOT NULL, health TEXT, reason TEXT, exit_status INTEGER,"
    "  staged INTEGER NOT NULL, started INTEGER, updated INTEGER NOT NULL,"
    "  ready INTEGER NOT NULL DEFAULT 0, checks TEXT);"
    "CREATE INDEX IF NOT EXISTS tasks_app ON tasks(app);"
    "CREATE INDEX IF NOT EXISTS tasks_node ON tasks(node);"
    "CREATE TABLE IF NOT EXISTS vips("
    "  name TEXT PRIMARY KEY, address TEXT NOT NULL UNIQUE);"
    /* Deployments (docs/deployments.md): the plan lives here so that a new
     * leader resumes it. status: running, success, failed, cancelled. */
    "CREATE TABLE IF NOT EXISTS deployments("
    "  id TEXT PRIMARY KEY, version TEXT NOT NULL, apps TEXT NOT NULL,"
    "  plan TEXT NOT NULL, step INTEGER NOT NULL, status TEXT NOT NULL,"
    "  promoted INTEGER NOT NULL DEFAULT 0, reason TEXT, rollback_of TEXT,"
    "  rollback INTEGER NOT NULL DEFAULT 0,"
    "  started INTEGER NOT NULL, step_started INTEGER NOT NULL,"
    "  updated INTEGER NOT NULL);";

enum stmt_id {
    ST_BEGIN = 0,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_SET_APPLIED,
    ST_APP_PUT,
    ST_APP_VERSION_PUT,
    ST_APP_DELETE,
    ST_APP_VERSIONS_DELETE,
    ST_APP_KILL_TASKS,
    ST_APP_EXISTS,
    ST_TASK_INSERT,
    ST_TASK_STATE,
    ST_TASK_STATUS,
    ST_TASK_KILL,
    ST_TASK_EXPUNGE,
    ST_NODE_UP,
    ST_NODE_STATE,
    ST_NODE_LOST_TASKS,
    ST_NODE_UNREACHABLE_TASKS,
    ST_NODE_RECOVER_TASKS,
    ST_VIP_PUT,
    ST_VIP_DELETE,
    ST_VIP_BY_ADDRESS,
    ST_NODE_EXISTS,
    ST__COUNT,
};

static const char *const stmt_sql[ST__COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_SET_APPLIED] =
        "INSERT OR REPLACE INTO meta(key, value) VALUES('applied_index', ?)",
    [ST_APP_PUT] =
        "INSERT OR REPLACE INTO apps(id, version, instances, spec) "
        "VALUES(?, ?, ?, ?)",
    [ST_APP_VERSION_PUT] =
        "INSERT OR REPLACE INTO app_versions(id, version, spec) "
        "VALUES(?, ?, ?)",
    [ST_APP_DELETE] = "DELETE FROM apps WHERE id = ?",
    [ST_APP_VERSIONS_DELETE] = "DELETE FROM app_versions WHERE id = ?",
    [ST_APP_KILL_TASKS] =
        "UPDATE tasks SET state = ?2, updated = ?3 WHERE app = ?1 "
        "AND state IN (0, 1, 2, 8)",
    [ST_APP_EXISTS] = "SELECT 1 FROM apps WHERE id = ?",
    [ST_TASK_INSERT] =
        "INSERT OR IGNORE INTO tasks(id, app, version, node, host, ports, "
        "state, staged, updated) VALUES(?, ?, ?, ?, ?, ?, 0, ?, ?)",
    [ST_TASK_STATE] = "SELECT state FROM tasks WHERE id = ?",
    /* health, ready and checks change only when the command carries them
     * (?7, ?8, ?9 non-NULL): a health transition is its own report. */
    [ST_TASK_STATUS] =
        "UPDATE tasks SET state = ?2, health = CASE WHEN ?7 IS NULL THEN health "
        "ELSE ?3 END, reason = ?4, exit_status = ?5, ready = COALESCE(?8, ready), "
        "checks = COALESCE(?9, checks), started = CASE WHEN ?2 = 2 AND started IS "
        "NULL THEN ?6 ELSE started END, updated = ?6 WHERE id = ?1",
    [ST_TASK_KILL] =
        "UPDATE tasks SET state = 3, updated = ?2 WHERE id = ?1 AND "
        "state IN (0, 1, 2, 8)",
    /* Terminal tasks, and those killed or unreachable on a node that is gone
     * (the leader expunges them after expungeAfterSeconds). */
    [ST_TASK_EXPUNGE] =
        "DELETE FROM tasks WHERE id = ?1 AND (state IN (4, 5, 6, 7) OR "
        "(state IN (3, 8) AND node IN (SELECT id FROM nodes WHERE state IN "
        "('unreachable', 'down'))))",
    /* Registering again keeps a drain (only undrain ends it). */
    [ST_NODE_UP] =
        "INSERT INTO nodes(id, address, attrs, resources, state, updated) "
        "VALUES(?1, ?2, ?3, ?4, 'up', ?5) ON CONFLICT(id) DO UPDATE SET "
        "address = ?2, attrs = ?3, resources = ?4, state = CASE WHEN "
        "nodes.state = 'draining' THEN 'draining' ELSE 'up' END, updated = ?5",
    [ST_NODE_STATE] = "UPDATE nodes SET state = ?2, updated = ?3 WHERE id = ?1",
    [ST_NODE_LOST_TASKS] =
        "UPDATE tasks SET state = 7, updated = ?2 WHERE node = ?1 "
        "AND state IN (0, 1, 2, 3, 8)",
    [ST_NODE_UNREACHABLE_TASKS] =
        "UPDATE tasks SET state = 8, updated = ?2 WHERE "
        "node = ?1 AND state IN (0, 1, 2)",
    [ST_NODE_RECOVER_TASKS] =
        "UPDATE tasks SET state = 2, started = COALESCE(started, ?2), "
        "updated = ?2 WHERE node = ?1 AND state = 8",
    [ST_NODE_EXISTS] = "SELECT 1 FROM nodes WHERE id = ?",
    [ST_VIP_PUT] = "INSERT OR REPLACE INTO vips(name, address) VALUES(?, ?)",
    [ST_VIP_DELETE] = "DELETE FROM vips WHERE name = ?",
    [ST_VIP_BY_ADDRESS] = "SELECT name FROM vips WHERE address = ?",
};

struct cm_state {
    sqlite3 *db;
    char *path;
    sqlite3_stmt *stmt[ST__COUNT];
    uint64_t applied;
    unsigned changes;
    struct state_events *events; /* events.c; NULL until recording starts */
    sqlite3_stmt *task_st;       /* cm_state_task's query, kept prepared */
};

static const char *const task_state_names[CM__TASK_STATE_COUNT] = {
    "staging",  "starting", "running", "killing",     "killed",
    "finished", "failed",   "lost",    "unreachable",
};

const char *cm_task_state_name(enum cm_task_state st)
{
    return (unsigned)st < CM__TASK_STATE_COUNT ? task_state_names[st] : NULL;
}

int cm_task_state_parse(const char *s, enum cm_task_state *ret)
{
    for (unsigned i = 0; i < CM__TASK_STATE_COUNT; i++) {
        if (strcmp(s, task_state_names[i]) == 0) {
            *ret = (enum cm_task_state)i;
            return 0;
        }
    }
    return CM_EINVAL;
}

bool cm_task_state_terminal(enum cm_task_state st)
{
    return st == CM_TASK_KILLED || st == CM_TASK_FINISHED || st == CM_TASK_FAILED ||
           st == CM_TASK_LOST;
}

static int db_err(struct cm_state *s, struct cm_errbuf *eb, const char *what)
{
    int rc = sqlite3_extended_errcode(s->db);
    int code = (rc & 0xff) == SQLITE_NOMEM ? CM_ENOMEM
               : (rc & 0xff) == SQLITE_CORRUPT || (rc & 0xff) == SQLITE_NOTADB
                   ? CM_ECORRUPT
                   : CM_EIO;
    return cm_err_setf(eb, code, "%s `%s`: %s", what, s->path, sqlite3_errmsg(s->db));
}

static int exec_sql(struct cm_state *s, const char *sql, struct cm_errbuf *eb)
{
    if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK) {
        return db_err(s, eb, "state db");
    }
    return 0;
}

static int load_applied(struct cm_state *s, struct cm_errbuf *eb)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "SELECT value FROM meta WHERE key = 'applied_index'",
                           -1, &st, NULL) != SQLITE_OK) {
        return db_err(s, eb, "read applied index from");
    }
    int rv = 0;
    s->applied = 0;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        if (sqlite3_column_type(st, 0) != SQLITE_INTEGER ||
            sqlite3_column_int64(st, 0) < 0) {
            rv =
                cm_err_setf(eb, CM_ECORRUPT, "state db `%s`: bad applied_index", s->path);
        } else {
            s->applied = (uint64_t)sqlite3_column_int64(st, 0);
        }
    } else if (rc != SQLITE_DONE) {
        rv = db_err(s, eb, "read applied index from");
    }
    sqlite3_finalize(st);
    return rv;
}

/* Columns added after a state.db was first created (health checks: ready,
 * checks). ALTER TABLE is idempotent here: a column that exists is left alone. */
static int migrate(struct cm_state *s, struct cm_errbuf *eb)
{
    static const char *const cols[][2] = {
        {"ready", "ALTER TABLE tasks ADD COLUMN ready INTEGER NOT NULL DEFAULT 0"},
        {"checks", "ALTER TABLE tasks ADD COLUMN checks TEXT"},
    };
    for (size_t i = 0; i < CM_ARRAY_SIZE(cols); i++) {
        char sql[64];
        snprintf(sql, sizeof(sql), "SELECT %s FROM tasks LIMIT 0", cols[i][0]);
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
        sqlite3_finalize(st);
        if (rc != SQLITE_OK) {
            int rv = exec_sql(s, cols[i][1], eb);
            if (rv != 0) {
                return rv;
            }
        }
    }
    return 0;
}

static int prepare_all(struct cm_state *s, struct cm_errbuf *eb)
{
    int rv = migrate(s, eb);
    if (rv != 0) {
        return rv;
    }
    for (int i = 0; i < ST__COUNT; i++) {
        if (sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                               &s->stmt[i], NULL) != SQLITE_OK) {
            return db_err(s, eb, "prepare statements for");
        }
    }
    return 0;
}

static void finalize_all(struct cm_state *s)
{
    for (int i = 0; i < ST__COUNT; i++) {
        sqlite3_finalize(s->stmt[i]);
        s->stmt[i] = NULL;
    }
    sqlite3_finalize(s->task_st);
    s->task_st = NULL;
}

int cm_state_open(const char *path, struct cm_state **ret, struct cm_errbuf *eb)
{
    int rv;
    struct cm_state *s = cm_calloc(1, sizeof(*s));
    if (s == NULL) {
        return cm_err_setf(eb, CM_ENOMEM, "state db: out of memory");
    }
    s->path = cm_strdup(path);
    if (s->path == NULL) {
        rv = cm_err_setf(eb, CM_ENOMEM, "state db: out of memory");
        goto err_after_alloc;
    }
    if (sqlite3_open_v2(path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        rv = s->db != NULL ? db_err(s, eb, "open state db")
                           : cm_err_setf(eb, CM_ENOMEM, "open state db `%s`", path);
        goto err_after_open;
    }
    sqlite3_busy_timeout(s->db, 1000);
    sqlite3_extended_result_codes(s->db, 1);
    rv = exec_sql(s,
                  "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                  "PRAGMA foreign_keys=OFF;",
                  eb);
    if (rv == 0) {
        rv = exec_sql(s, schema_sql, eb);
    }
    if (rv == 0) {
        char sql[96];
        snprintf(sql, sizeof(sql),
                 "INSERT OR IGNORE INTO meta(key, value) VALUES('schema', %d)",
                 SCHEMA_VERSION);
        rv = exec_sql(s, sql, eb);
    }
    if (rv == 0) {
        rv = load_applied(s, eb);
    }
    if (rv == 0) {
        rv = prepare_all(s, eb);
    }
    if (rv != 0) {
        goto err_after_open;
    }
    *ret = s;
    return 0;

err_after_open:
    finalize_all(s);
    sqlite3_close(s->db);
    cm_free(&s->path);
err_after_alloc:
    cm_free(&s);
    return rv;
}

void cm_state_close(struct cm_state *s)
{
    if (s == NULL) {
        return;
    }
    events__free(s->events);
    finalize_all(s);
    sqlite3_close(s->db);
    cm_free(&s->path);
    cm_free(&s);
}

uint64_t cm_state_applied_index(struct cm_state *s)
{
    return s->applied;
}

unsigned cm_state_take_changes(struct cm_state *s)
{
    unsigned c = s->changes;
    s->changes = 0;
    return c;
}

/* ---------------------------------------------------------------- validation */

/* Field access with error paths: "task.assign: tasks[2].node: must be a string". */
struct vctx {
    struct cm_errbuf *eb;
    const char *type;
    int err;
};

static const cJSON *field(struct vctx *v, const cJSON *obj, const char *path,
                          const char *name, bool required)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (f == NULL && required && v->err == 0) {
        v->err =
            cm_err_setf(v->eb, CM_EVALIDATION, "%s: %s%s: missing", v->type, path, name);
    }
    return f;
}

static const char *want_str(struct vctx *v, const cJSON *obj, const char *path,
                            const char *name, bool required, size_t max)
{
    const cJSON *f = field(v, obj, path, name, required);
    if (f == NULL || v->err != 0) {
        return NULL;
    }
    if (!cJSON_IsString(f) || (required && f->valuestring[0] == '\0') ||
        strlen(f->valuestring) > max) {
        v->err = cm_err_setf(v->eb, CM_EVALIDATION,
                             "%s: %s%s: must be a non-empty string of at most %zu bytes",
                             v->type, path, name, max);
        return NULL;
    }
    return f->valuestring;
}

static bool want_int(struct vctx *v, const cJSON *obj, const char *path, const char *name,
                     bool required, int64_t min, int64_t max, int64_t *ret)
{
    const cJSON *f = field(v, obj, path, name, required);
    if (f == NULL || v->err != 0) {
        return false;
    }
    double d = cJSON_IsNumber(f) ? f->valuedouble : NAN;
    if (!isfinite(d) || d != floor(d) || d < (double)min || d > (double)max) {
        v->err = cm_err_setf(v->eb, CM_EVALIDATION,
                             "%s: %s%s: must be an integer in [%lld, %lld]", v->type,
                             path, name, (long long)min, (long long)max);
        return false;
    }
    *ret = (int64_t)d;
    return true;
}

static const cJSON *want_kind(struct vctx *v, const cJSON *obj, const char *path,
                              const char *name, bool required, int kind)
{
    const cJSON *f = field(v, obj, path, name, required);
    if (f == NULL || v->err != 0) {
        return NULL;
    }
    if ((f->type & 0xff) != kind) {
        v->err = cm_err_setf(v->eb, CM_EVALIDATION, "%s: %s%s: must be %s", v->type, path,
                             name, kind == cJSON_Array ? "an array" : "an object");
        return NULL;
    }
    return f;
}

#define MAX_ID     512
#define MAX_BATCH  10000
#define MAX_CHECKS 16384 /* task.status checks: health and readiness results */

static int64_t task_state_of(struct cm_state *s, const char *id)
{
    sqlite3_stmt *st = s->stmt[ST_TASK_STATE];
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int64_t state = -1;
    if (sqlite3_step(st) == SQLITE_ROW) {
        state = sqlite3_column_int64(st, 0);
    }
    sqlite3_reset(st);
    return state;
}

static bool app_exists(struct cm_state *s, const char *id)
{
    sqlite3_stmt *st = s->stmt[ST_APP_EXISTS];
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    bool found = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_reset(st);
    return found;
}

static bool node_exists(struct cm_state *s, const char *id)
{
    sqlite3_stmt *st = s->stmt[ST_NODE_EXISTS];
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    bool found = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_reset(st);
    return found;
}
static int validate_deploy(struct cm_state *s, const cJSON *cmd, const char *type,
                           struct cm_errbuf *eb);

/* The name of the named VIP holding @address, copied into @out; false when none. */
static bool vip_holder(struct cm_state *s, const char *address, char *out, size_t cap)
{
    sqlite3_stmt *st = s->stmt[ST_VIP_BY_ADDRESS];
    sqlite3_bind_text(st, 1, address, -1, SQLITE_STATIC);
    bool found = sqlite3_step(st) == SQLITE_ROW;
    if (found) {
        snprintf(out, cap, "%s", (const char *)sqlite3_column_text(st, 0));
    }
    sqlite3_reset(st);
    return found;
}

static const char *str_of_obj(const cJSON *obj, const char *name)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsString(f) ? f->valuestring : NULL;
}

static bool is_ipv4(const char *s)
{
    struct in_addr a;
    return inet_pton(AF_INET, s, &a) == 1;
}

/* A named VIP's name as the state stores it: what the label gives without its
 * leading '/', 1..255 printable bytes without spaces (lb_port_label_parse's rule). */
static bool vip_name_ok(const char *n)
{
    size_t len = strlen(n);
    if (len == 0 || len > 255 || n[0] == '/') {
        return false;
    }
    for (const char *p = n; *p != '\0'; p++) {
        if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f) {
            return false;
        }
    }
    return true;
}

/* An address VIP label of an app must not take an address the leader gave a named
 * VIP (DESIGN.md §9): "app.put: app.portDefinitions[0].labels.VIP_0: ...". */
static int check_vip_labels(struct cm_state *s, const cJSON *labels, const char *path,
                            bool legacy, struct cm_errbuf *eb)
{
    const cJSON *l;
    cJSON_ArrayForEach(l, labels)
    {
        if (!cJSON_IsString(l) || l->string == NULL) {
            continue;
        }
        const char *value = l->valuestring;
        if (legacy) {
            if (strncasecmp(l->string, "vip_PORT", 8) != 0) {
                continue;
            }
            const char *sep = strstr(value, "://");
            value = sep != NULL ? sep + 3 : value;
        } else if (!cm_app_is_vip_label(l->string)) {
            continue;
        }
        char host[256], holder[256];
        uint16_t port;
        bool is_ip = false;
        if (cm_app_vip_parse(value, host, sizeof(host), &port, &is_ip) != 0 || !is_ip ||
            !is_ipv4(host) || !vip_holder(s, host, holder, sizeof(holder))) {
            continue;
        }
        return cm_err_setf(eb, CM_EVALIDATION,
                           "app.put: %slabels.%s: address %s is the address of the named "
                           "VIP '/%s'; pick another address or use the name",
                           path, l->string, host, holder);
    }
    return 0;
}

static int check_app_vips(struct cm_state *s, const cJSON *app, struct cm_errbuf *eb)
{
    int rv = check_vip_labels(s, cJSON_GetObjectItemCaseSensitive(app, "labels"), "app.",
                              true, eb);
    const char *arrays[] = {"portDefinitions", "portMappings"};
    const cJSON *parents[] = {app, cJSON_GetObjectItemCaseSensitive(app, "container")};
    for (size_t k = 0; rv == 0 && k < 2; k++) {
        const cJSON *ports = cJSON_GetObjectItemCaseSensitive(parents[k], arrays[k]);
        const cJSON *p;
        int i = 0;
        cJSON_ArrayForEach(p, ports)
        {
            char path[80];
            snprintf(path, sizeof(path), "app.%s%s[%d].", k == 1 ? "container." : "",
                     arrays[k], i++);
            rv = check_vip_labels(s, cJSON_GetObjectItemCaseSensitive(p, "labels"), path,
                                  false, eb);
            if (rv != 0) {
                break;
            }
        }
    }
    return rv;
}

/* Validate @cmd; with @s NULL only the shape is checked (what apply relies on). */
static int validate(struct cm_state *s, const cJSON *cmd, struct cm_errbuf *eb)
{
    struct vctx v = {eb, "command", 0};
    if (!cJSON_IsObject(cmd)) {
        return cm_err_setf(eb, CM_EVALIDATION, "command: must be a JSON object");
    }
    const char *type = want_str(&v, cmd, "", "type", true, 32);
    if (type == NULL) {
        return v.err;
    }
    v.type = type;
    int64_t at;
    if (strcmp(type, "app.put") == 0) {
        const cJSON *app = want_kind(&v, cmd, "", "app", true, cJSON_Object);
        want_str(&v, cmd, "", "version", true, 64);
        const char *id =
            app != NULL ? want_str(&v, app, "app.", "id", true, MAX_ID) : NULL;
        if (id != NULL && id[0] != '/') {
            return cm_err_setf(eb, CM_EVALIDATION, "app.put: app.id: must be absolute");
        }
        int64_t inst;
        if (app != NULL && cJSON_GetObjectItemCaseSensitive(app, "instances") != NULL) {
            want_int(&v, app, "app.", "instances", false, 0, 1000000, &inst);
        }
        if (v.err == 0 && app != NULL && s != NULL) {
            return check_app_vips(s, app, eb);
        }
    } else if (strcmp(type, "app.delete") == 0) {
        const char *id = want_str(&v, cmd, "", "id", true, MAX_ID);
        if (id != NULL && s != NULL && !app_exists(s, id)) {
            return cm_err_setf(eb, CM_EVALIDATION,
                               "app.delete: id: app '%s' does not exist", id);
        }
    } else if (strcmp(type, "task.assign") == 0) {
        want_int(&v, cmd, "", "at", true, 0, INT64_MAX / 2, &at);
        const cJSON *tasks = want_kind(&v, cmd, "", "tasks", true, cJSON_Array);
        if (tasks != NULL &&
            (cJSON_GetArraySize(tasks) == 0 || cJSON_GetArraySize(tasks) > MAX_BATCH)) {
            return cm_err_setf(eb, CM_EVALIDATION,
                               "task.assign: tasks: must hold 1 to %d tasks", MAX_BATCH);
        }
        int i = 0;
        const cJSON *t;
        cJSON_ArrayForEach(t, tasks)
        {
            char path[32];
            snprintf(path, sizeof(path), "tasks[%d].", i++);
            if (!cJSON_IsObject(t)) {
                return cm_err_setf(eb, CM_EVALIDATION,
                                   "task.assign: %s: must be an object", path);
            }
            const char *tid = want_str(&v, t, path, "id", true, MAX_ID);
            const char *app = want_str(&v, t, path, "app", true, MAX_ID);
            want_str(&v, t, path, "version", true, 64);
            want_str(&v, t, path, "node", true, 128);
            want_str(&v, t, path, "host", true, 128);
            const cJSON *ports = want_kind(&v, t, path, "ports", true, cJSON_Array);
            const cJSON *p;
            cJSON_ArrayForEach(p, ports)
            {
                if (!cJSON_IsNumber(p) || p->valuedouble < 0 || p->valuedouble > 65535 ||
                    p->valuedouble != floor(p->valuedouble)) {
                    return cm_err_setf(eb, CM_EVALIDATION,
                                       "task.assign: %sports: must hold ports 0-65535",
                                       path);
                }
            }
            if (v.err != 0) {
                return v.err;
            }
            if (s != NULL && task_state_of(s, tid) >= 0) {
                return cm_err_setf(eb, CM_EVALIDATION,
                                   "task.assign: %sid: task '%s' already exists", path,
                                   tid);
            }
            if (s != NULL && !app_exists(s, app)) {
                return cm_err_setf(eb, CM_EVALIDATION,
                                   "task.assign: %sapp: app '%s' does not exist", path,
                                   app);
            }
        }
    } else if (strcmp(type, "task.status") == 0) {
        want_int(&v, cmd, "", "at", true, 0, INT64_MAX / 2, &at);
        const char *tid = want_str(&v, cmd, "", "id", true, MAX_ID);
        const char *state = want_str(&v, cmd, "", "state", true, 32);
        enum cm_task_state st;
        if (state != NULL && cm_task_state_parse(state, &st) != 0) {
            return cm_err_setf(eb, CM_EVALIDATION,
                               "task.status: state: unknown state '%s'", state);
        }
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(cmd, "health");
        if (h != NULL && !cJSON_IsNull(h) &&
            !(cJSON_IsString(h) && (strcmp(h->valuestring, "healthy") == 0 ||
                                    strcmp(h->valuestring, "unhealthy") == 0))) {
            return cm_err_setf(eb, CM_EVALIDATION,
                               "task.status: health: must be \"healthy\", \"unhealthy\" "
                               "or null");
        }
        int64_t ex;
        if (cJSON_GetObjectItemCaseSensitive(cmd, "exit") != NULL) {
            want_int(&v, cmd, "", "exit", false, 0, 65535, &ex);
        }
        want_str(&v, cmd, "", "reason", false, 256);
        const cJSON *ready = cJSON_GetObjectItemCaseSensitive(cmd, "ready");
        if (v.err == 0 && ready != NULL && !cJSON_IsBool(ready)) {
            return cm_err_setf(eb, CM_EVALIDATION,
                               "task.status: ready: must be a boolean");
        }
        const cJSON *checks = want_kind(&v, cmd, "", "checks", false, cJSON_Object);
        if (v.err == 0 && checks != NULL) {
            char *text = cJSON_PrintUnformatted(checks);
            size_t n = text != NULL ? strlen(text) : 0;
            cJSON_free(text);
            if (text == NULL) {
                return cm_err_setf(eb, CM_ENOMEM, "task.status: out of memory");
            }
            if (n > MAX_CHECKS) {
                return cm_err_setf(eb, CM_EVALIDATION,
                                   "task.status: checks: more than %d bytes", MAX_CHECKS);
            }
        }
        if (v.err == 0 && s != NULL && task_state_of(s, tid) < 0) {
            return cm_err_setf(eb, CM_EVALIDATION, "task.status: id: unknown task '%s'",
                               tid);
        }
    } else if (strcmp(type, "task.kill") == 0 || strcmp(type, "task.expunge") == 0) {
        if (strcmp(type, "task.kill") == 0) {
            want_int(&v, cmd, "", "at", true, 0, INT64_MAX / 2, &at);
        }
        const cJSON *ids = want_kind(&v, cmd, "", "ids", true, cJSON_Array);
        const cJSON *id;
        int i = 0;
        cJSON_ArrayForEach(id, ids)
        {
            if (i >= MAX_BATCH) {
                return cm_err_setf(eb, CM_EVALIDATION, "%s: ids: more than %d ids", type,
                                   MAX_BATCH);
            }
            if (!cJSON_IsString(id) || strlen(id->valuestring) > MAX_ID) {
                return cm_err_setf(eb, CM_EVALIDATION, "%s: ids[%d]: must be a task id",
                                   type, i);
            }
            i++;
        }
    } else if (strcmp(type, "node.up") == 0) {
        want_int(&v, cmd, "", "at", true, 0, INT64_MAX / 2, &at);
        const cJSON *node = want_kind(&v, cmd, "", "node", true, cJSON_Object);
        if (node != NULL) {
            want_str(&v, node, "node.", "id", true, 128);
            want_str(&v, node, "node.", "address", true, 128);
            want_kind(&v, node, "node.", "attrs", true, cJSON_Object);
            want_kind(&v, node, "node.", "resources", true, cJSON_Object);
        }
    } else if (strcmp(type, "node.state") == 0) {
        want_int(&v, cmd, "", "at", true, 0, INT64_MAX / 2, &at);
        const char *id = want_str(&v, cmd, "", "id", true, 128);
        const char *state = want_str(&v, cmd, "", "state", true, 32);
        if (state != NULL && strcmp(state, "up") != 0 &&
            strcmp(state, "unreachable") != 0 && strcmp(state, "down") != 0 &&
            strcmp(state, "draining") != 0) {
            return cm_err_setf(eb, CM_EVALIDATION,
                               "node.state: state: must be up, unreachable, down or "
                               "draining");
        }
        if (id != NULL && s != NULL && !node_exists(s, id)) {
            return cm_err_setf(eb, CM_EVALIDATION, "node.state: id: unknown node '%s'",
                               id);
        }
    } else if (strncmp(type, "deploy.", 7) == 0) {
        return validate_deploy(s, cmd, type, eb);
    } else if (strcmp(type, "vip.put") == 0) {
        const cJSON *vips = want_kind(&v, cmd, "", "vips", true, cJSON_Array);
        if (vips != NULL &&
            (cJSON_GetArraySize(vips) == 0 || cJSON_GetArraySize(vips) > MAX_BATCH)) {
            return cm_err_setf(eb, CM_EVALIDATION,
                               "vip.put: vips: must hold 1 to %d VIPs", MAX_BATCH);
        }
        int i = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, vips)
        {
            char path[32];
            snprintf(path, sizeof(path), "vips[%d].", i++);
            if (!cJSON_IsObject(e)) {
                return cm_err_setf(eb, CM_EVALIDATION, "vip.put: %s: must be an object",
                                   path);
            }
            const char *name = want_str(&v, e, path, "name", true, 255);
            const char *addr = want_str(&v, e, path, "address", true, 15);
            if (v.err != 0) {
                return v.err;
            }
            if (!vip_name_ok(name)) {
                return cm_err_setf(eb, CM_EVALIDATION,
                                   "vip.put: %sname: '%s' is not a VIP name (printable, "
                                   "no spaces, no leading '/')",
                                   path, name);
            }
            if (!is_ipv4(addr)) {
                return cm_err_setf(eb, CM_EVALIDATION,
                                   "vip.put: %saddress: '%s' is not an IPv4 address",
                                   path, addr);
            }
            /* One address per name, one name per address: in the batch and in
             * the state (an address is freed by vip.delete first). */
            const cJSON *o;
            int j = 0;
            cJSON_ArrayForEach(o, vips)
            {
                if (o == e) {
                    break;
                }
                j++;
                const char *on = str_of_obj(o, "name"), *oa = str_of_obj(o, "address");
                if ((on != NULL && strcmp(on, name) == 0) ||
                    (oa != NULL && strcmp(oa, addr) == 0)) {
                    return cm_err_setf(
                        eb, CM_EVALIDATION, "vip.put: %s: same %s as vips[%d]", path,
                        on != NULL && strcmp(on, name) == 0 ? "name" : "address", j - 1);
                }
            }
            char holder[256];
            if (s != NULL && vip_holder(s, addr, holder, sizeof(holder)) &&
                strcmp(holder, name) != 0) {
                return cm_err_setf(eb, CM_EVALIDATION,
                                   "vip.put: %saddress: %s already belongs to VIP '%s'",
                                   path, addr, holder);
            }
        }
    } else if (strcmp(type, "vip.delete") == 0) {
        const cJSON *names = want_kind(&v, cmd, "", "names", true, cJSON_Array);
        if (names != NULL &&
            (cJSON_GetArraySize(names) == 0 || cJSON_GetArraySize(names) > MAX_BATCH)) {
            return cm_err_setf(eb, CM_EVALIDATION,
                               "vip.delete: names: must hold 1 to %d names", MAX_BATCH);
        }
        const cJSON *n;
        int i = 0;
        cJSON_ArrayForEach(n, names)
        {
            if (!cJSON_IsString(n) || !vip_name_ok(n->valuestring)) {
                return cm_err_setf(eb, CM_EVALIDATION,
                                   "vip.delete: names[%d]: must be a VIP name", i);
            }
            i++;
        }
    } else {
        return cm_err_setf(eb, CM_EVALIDATION, "command: type: unknown type '%s'", type);
    }
    return v.err;
}

static cJSON *parse_cmd(const void *cmd, size_t len, struct cm_errbuf *eb, int *rv)
{
    if (len > CMD_MAX_BYTES) {
        *rv = cm_err_setf(eb, CM_ETOOBIG, "command: %zu bytes is over the %u byte limit",
                          len, CMD_MAX_BYTES);
        return NULL;
    }
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(cmd, len, &end, 0);
    if (j == NULL) {
        *rv = cm_err_setf(eb, CM_EVALIDATION, "command: not valid JSON");
        return NULL;
    }
    *rv = 0;
    return j;
}

int cm_state_validate(struct cm_state *s, const void *cmd, size_t len,
                      struct cm_errbuf *eb)
{
    int rv;
    cJSON *j = parse_cmd(cmd, len, eb, &rv);
    if (j == NULL) {
        return rv;
    }
    rv = validate(s, j, eb);
    cJSON_Delete(j);
    return rv;
}

/* ---------------------------------------------------------------- apply */

static int step_done(struct cm_state *s, sqlite3_stmt *st, struct cm_errbuf *eb)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        return db_err(s, eb, "write state db");
    }
    return 0;
}

static const char *str_of(const cJSON *obj, const char *name)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsString(f) ? f->valuestring : NULL;
}

static int64_t int_of(const cJSON *obj, const char *name, int64_t dflt)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsNumber(f) ? (int64_t)f->valuedouble : dflt;
}

static int bind_json(sqlite3_stmt *st, int col, const cJSON *j)
{
    char *text = cJSON_PrintUnformatted(j);
    if (text == NULL) {
        return CM_ENOMEM;
    }
    sqlite3_bind_text(st, col, text, -1, SQLITE_TRANSIENT);
    cJSON_free(text);
    return 0;
}

static int apply_app_put(struct cm_state *s, const cJSON *cmd, struct cm_errbuf *eb)
{
    const cJSON *app = cJSON_GetObjectItemCaseSensitive(cmd, "app");
    const char *id = str_of(app, "id");
    const char *version = str_of(cmd, "version");
    sqlite3_stmt *st = s->stmt[ST_APP_PUT];
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, version, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, int_of(app, "instances", 1));
    int rv = bind_json(st, 4, app);
    if (rv == 0) {
        rv = step_done(s, st, eb);
    } else {
        sqlite3_reset(st);
        cm_err_setf(eb, rv, "app.put: out of memory");
    }
    if (rv != 0) {
        return rv;
    }
    st = s->stmt[ST_APP_VERSION_PUT];
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, version, -1, SQLITE_STATIC);
    rv = bind_json(st, 3, app);
    if (rv != 0) {
        sqlite3_reset(st);
        return cm_err_setf(eb, rv, "app.put: out of memory");
    }
    s->changes |= CM_STATE_CHANGED_APPS;
    return step_done(s, st, eb);
}

static int apply_app_delete(struct cm_state *s, const cJSON *cmd, int64_t at,
                            struct cm_errbuf *eb)
{
    const char *id = str_of(cmd, "id");
    sqlite3_stmt *st = s->stmt[ST_APP_DELETE];
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rv = step_done(s, st, eb);
    if (rv == 0) {
        st = s->stmt[ST_APP_VERSIONS_DELETE];
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        rv = step_done(s, st, eb);
    }
    if (rv == 0) {
        st = s->stmt[ST_APP_KILL_TASKS];
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, CM_TASK_KILLING);
        sqlite3_bind_int64(st, 3, at);
        rv = step_done(s, st, eb);
    }
    s->changes |= CM_STATE_CHANGED_APPS | CM_STATE_CHANGED_TASKS;
    return rv;
}

static int apply_task_assign(struct cm_state *s, const cJSON *cmd, int64_t at,
                             struct cm_errbuf *eb)
{
    const cJSON *t;
    cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(cmd, "tasks"))
    {
        sqlite3_stmt *st = s->stmt[ST_TASK_INSERT];
        sqlite3_bind_text(st, 1, str_of(t, "id"), -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, str_of(t, "app"), -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, str_of(t, "version"), -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, str_of(t, "node"), -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, str_of(t, "host"), -1, SQLITE_STATIC);
        int rv = bind_json(st, 6, cJSON_GetObjectItemCaseSensitive(t, "ports"));
        if (rv != 0) {
            sqlite3_reset(st);
            return cm_err_setf(eb, rv, "task.assign: out of memory");
        }
        sqlite3_bind_int64(st, 7, at);
        sqlite3_bind_int64(st, 8, at);
        rv = step_done(s, st, eb);
        if (rv != 0) {
            return rv;
        }
    }
    s->changes |= CM_STATE_CHANGED_TASKS;
    return 0;
}

static int apply_task_status(struct cm_state *s, const cJSON *cmd, int64_t at,
                             struct cm_errbuf *eb)
{
    const char *id = str_of(cmd, "id");
    enum cm_task_state next;
    cm_task_state_parse(str_of(cmd, "state"), &next);
    int64_t cur = task_state_of(s, id);
    /* Terminal states are final: a late report (e.g. "running" after "killed")
     * changes nothing. Unknown tasks likewise. */
    if (cur < 0 || cm_task_state_terminal((enum cm_task_state)cur)) {
        return 0;
    }
    /* A task being killed only ends: a report sent before the kill was
     * committed (say "running") must not revive it. */
    if (cur == CM_TASK_KILLING && !cm_task_state_terminal(next)) {
        return 0;
    }
    sqlite3_stmt *st = s->stmt[ST_TASK_STATUS];
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, (int)next);
    const char *health = str_of(cmd, "health");
    if (health != NULL) {
        sqlite3_bind_text(st, 3, health, -1, SQLITE_STATIC);
    } else {
        sqlite3_bind_null(st, 3);
    }
    const char *reason = str_of(cmd, "reason");
    if (reason != NULL) {
        sqlite3_bind_text(st, 4, reason, -1, SQLITE_STATIC);
    } else {
        sqlite3_bind_null(st, 4);
    }
    if (cJSON_GetObjectItemCaseSensitive(cmd, "exit") != NULL) {
        sqlite3_bind_int64(st, 5, int_of(cmd, "exit", 0));
    } else {
        sqlite3_bind_null(st, 5);
    }
    sqlite3_bind_int64(st, 6, at);
    if (cJSON_GetObjectItemCaseSensitive(cmd, "health") != NULL) {
        sqlite3_bind_int(st, 7, 1);
    }
    const cJSON *ready = cJSON_GetObjectItemCaseSensitive(cmd, "ready");
    if (cJSON_IsBool(ready)) {
        sqlite3_bind_int(st, 8, cJSON_IsTrue(ready));
    }
    const cJSON *checks = cJSON_GetObjectItemCaseSensitive(cmd, "checks");
    if (checks != NULL && bind_json(st, 9, checks) != 0) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        return cm_err_setf(eb, CM_ENOMEM, "task.status: out of memory");
    }
    s->changes |= CM_STATE_CHANGED_TASKS;
    return step_done(s, st, eb);
}

static int apply_ids(struct cm_state *s, const cJSON *cmd, enum stmt_id which, int64_t at,
                     struct cm_errbuf *eb)
{
    const cJSON *id;
    cJSON_ArrayForEach(id, cJSON_GetObjectItemCaseSensitive(cmd, "ids"))
    {
        sqlite3_stmt *st = s->stmt[which];
        sqlite3_bind_text(st, 1, id->valuestring, -1, SQLITE_STATIC);
        if (which == ST_TASK_KILL) {
            sqlite3_bind_int64(st, 2, at);
        }
        int rv = step_done(s, st, eb);
        if (rv != 0) {
            return rv;
        }
    }
    s->changes |= CM_STATE_CHANGED_TASKS;
    return 0;
}

static int apply_node_up(struct cm_state *s, const cJSON *cmd, int64_t at,
                         struct cm_errbuf *eb)
{
    const cJSON *node = cJSON_GetObjectItemCaseSensitive(cmd, "node");
    const char *id = str_of(node, "id");
    sqlite3_stmt *st = s->stmt[ST_NODE_UP];
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, str_of(node, "address"), -1, SQLITE_STATIC);
    int rv = bind_json(st, 3, cJSON_GetObjectItemCaseSensitive(node, "attrs"));
    if (rv == 0) {
        rv = bind_json(st, 4, cJSON_GetObjectItemCaseSensitive(node, "resources"));
    }
    if (rv != 0) {
        sqlite3_reset(st);
        return cm_err_setf(eb, rv, "node.up: out of memory");
    }
    sqlite3_bind_int64(st, 5, at);
    rv = step_done(s, st, eb);
    if (rv == 0) {
        /* A node that is back has its unreachable tasks running again (they kept
         * running there); the leader decides later which to kill. */
        st = s->stmt[ST_NODE_RECOVER_TASKS];
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, at);
        rv = step_done(s, st, eb);
    }
    s->changes |= CM_STATE_CHANGED_NODES | CM_STATE_CHANGED_TASKS;
    return rv;
}

static int apply_node_state(struct cm_state *s, const cJSON *cmd, int64_t at,
                            struct cm_errbuf *eb)
{
    const char *id = str_of(cmd, "id");
    const char *state = str_of(cmd, "state");
    sqlite3_stmt *st = s->stmt[ST_NODE_STATE];
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, state, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, at);
    int rv = step_done(s, st, eb);
    enum stmt_id follow = strcmp(state, "down") == 0          ? ST_NODE_LOST_TASKS
                          : strcmp(state, "unreachable") == 0 ? ST_NODE_UNREACHABLE_TASKS
                          : strcmp(state, "up") == 0 || strcmp(state, "draining") == 0
                              ? ST_NODE_RECOVER_TASKS
                              : ST__COUNT;
    if (rv == 0 && follow != ST__COUNT) {
        st = s->stmt[follow];
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, at);
        rv = step_done(s, st, eb);
    }
    s->changes |= CM_STATE_CHANGED_NODES | CM_STATE_CHANGED_TASKS;
    return rv;
}

static int apply_deploy(struct cm_state *s, const cJSON *cmd, const char *type,
                        int64_t at, struct cm_errbuf *eb);
static int apply_vips(struct cm_state *s, const cJSON *cmd, bool put,
                      struct cm_errbuf *eb)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(cmd, put ? "vips" : "names"))
    {
        sqlite3_stmt *st = s->stmt[put ? ST_VIP_PUT : ST_VIP_DELETE];
        if (put) {
            /* A name moving to a new address frees its old one (REPLACE on the
             * primary key); validation refused addresses held by other names. */
            sqlite3_bind_text(st, 1, str_of(e, "name"), -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, str_of(e, "address"), -1, SQLITE_STATIC);
        } else {
            sqlite3_bind_text(st, 1, e->valuestring, -1, SQLITE_STATIC);
        }
        int rv = step_done(s, st, eb);
        if (rv != 0) {
            return rv;
        }
    }
    s->changes |= CM_STATE_CHANGED_VIPS;
    return 0;
}

static int apply_cmd(struct cm_state *s, const cJSON *cmd, struct cm_errbuf *eb)
{
    const char *type = str_of(cmd, "type");
    int64_t at = int_of(cmd, "at", 0);
    if (strcmp(type, "app.put") == 0) {
        return apply_app_put(s, cmd, eb);
    } else if (strcmp(type, "app.delete") == 0) {
        return apply_app_delete(s, cmd, at, eb);
    } else if (strcmp(type, "task.assign") == 0) {
        return apply_task_assign(s, cmd, at, eb);
    } else if (strcmp(type, "task.status") == 0) {
        return apply_task_status(s, cmd, at, eb);
    } else if (strcmp(type, "task.kill") == 0) {
        return apply_ids(s, cmd, ST_TASK_KILL, at, eb);
    } else if (strcmp(type, "task.expunge") == 0) {
        return apply_ids(s, cmd, ST_TASK_EXPUNGE, at, eb);
    } else if (strcmp(type, "node.up") == 0) {
        return apply_node_up(s, cmd, at, eb);
    } else if (strcmp(type, "node.state") == 0) {
        return apply_node_state(s, cmd, at, eb);
    } else if (strncmp(type, "deploy.", 7) == 0) {
        return apply_deploy(s, cmd, type, at, eb);
    } else if (strcmp(type, "vip.put") == 0) {
        return apply_vips(s, cmd, true, eb);
    } else if (strcmp(type, "vip.delete") == 0) {
        return apply_vips(s, cmd, false, eb);
    }
    return 0; /* validate() knows every type; unreachable */
}

static int set_applied(struct cm_state *s, uint64_t index, struct cm_errbuf *eb)
{
    sqlite3_stmt *st = s->stmt[ST_SET_APPLIED];
    sqlite3_bind_int64(st, 1, (sqlite3_int64)index);
    return step_done(s, st, eb);
}

static int apply_in_tx(struct cm_state *s, uint64_t index, const cJSON *cmd,
                       struct cm_errbuf *eb)
{
    if (index <= s->applied) {
        return 0; /* already applied (replay after a restart) */
    }
    int rv = step_done(s, s->stmt[ST_BEGIN], eb);
    if (rv != 0) {
        return rv;
    }
    if (cmd != NULL) {
        events__before(s->events, s, cmd);
        rv = apply_cmd(s, cmd, eb);
    }
    if (rv == 0) {
        rv = set_applied(s, index, eb);
    }
    if (rv == 0) {
        rv = step_done(s, s->stmt[ST_COMMIT], eb);
    }
    if (rv != 0) {
        sqlite3_step(s->stmt[ST_ROLLBACK]);
        sqlite3_reset(s->stmt[ST_ROLLBACK]);
        events__abort(s->events);
        return rv;
    }
    s->applied = index;
    if (cmd != NULL) {
        events__after(s->events, s, cmd, index);
    }
    return 0;
}

int cm_state_apply(struct cm_state *s, uint64_t index, const void *cmd, size_t len,
                   struct cm_errbuf *eb)
{
    int rv;
    struct cm_errbuf ignored;
    cm_state_json_init(); /* cJSON allocates through cm_malloc */
    /* cJSON answers NULL both for bad JSON and when memory ran out; only the
     * first may be skipped (identically on every node). Out of memory must stop
     * this node instead, or its replica would silently diverge. */
    unsigned long failures = cm_alloc_failures();
    cJSON *j = parse_cmd(cmd, len, &ignored, &rv);
    if (j != NULL) {
        int vrv = validate(NULL, j, &ignored);
        if (vrv != 0) {
            /* Cannot happen when proposers validate; every node skips it alike. */
            rv = vrv;
            cJSON_Delete(j);
            j = NULL;
        }
    }
    if (j == NULL && cm_alloc_failures() != failures) {
        rv = CM_ENOMEM;
    }
    if (j == NULL && rv == CM_ENOMEM) {
        return cm_err_setf(eb, rv, "apply %llu: out of memory",
                           (unsigned long long)index);
    }
    rv = apply_in_tx(s, index, j, eb);
    cJSON_Delete(j);
    return rv;
}

int cm_state_apply_noop(struct cm_state *s, uint64_t index, struct cm_errbuf *eb)
{
    return apply_in_tx(s, index, NULL, eb);
}

struct state_events **state__events(struct cm_state *s)
{
    return &s->events;
}

const struct state_events *state__events_const(const struct cm_state *s)
{
    return s->events;
}

/* ---------------------------------------------------------------- snapshots */

static int copy_db(sqlite3 *dst, sqlite3 *src, struct cm_errbuf *eb, const char *what,
                   const char *path)
{
    sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
    if (b == NULL) {
        return cm_err_setf(eb, CM_EIO, "%s `%s`: %s", what, path, sqlite3_errmsg(dst));
    }
    int rc = sqlite3_backup_step(b, -1);
    sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE) {
        return cm_err_setf(eb, (rc & 0xff) == SQLITE_NOMEM ? CM_ENOMEM : CM_EIO,
                           "%s `%s`: %s", what, path, sqlite3_errstr(rc));
    }
    return 0;
}

int cm_state_snapshot(struct cm_state *s, const char *path, struct cm_errbuf *eb)
{
    sqlite3 *out = NULL;
    if (sqlite3_open_v2(path, &out, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        int rv = cm_err_setf(eb, CM_EIO, "create snapshot `%s`: %s", path,
                             out != NULL ? sqlite3_errmsg(out) : "out of memory");
        sqlite3_close(out);
        return rv;
    }
    int rv = copy_db(out, s->db, eb, "write snapshot", path);
    if (rv == 0 &&
        sqlite3_exec(out, "PRAGMA journal_mode=DELETE", NULL, NULL, NULL) != SQLITE_OK) {
        rv = cm_err_setf(eb, CM_EIO, "snapshot `%s`: %s", path, sqlite3_errmsg(out));
    }
    sqlite3_close(out);
    if (rv == 0) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fsync(fd) != 0) {
            rv = cm_err_sys(eb, cm_errno(), "fsync snapshot `%s`", path);
        }
        if (fd >= 0) {
            close(fd);
        }
    }
    return rv;
}

int cm_state_restore(struct cm_state *s, const char *path, struct cm_errbuf *eb)
{
    sqlite3 *in = NULL;
    if (sqlite3_open_v2(path, &in, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        int rv = cm_err_setf(eb, CM_EIO, "open snapshot `%s`: %s", path,
                             in != NULL ? sqlite3_errmsg(in) : "out of memory");
        sqlite3_close(in);
        return rv;
    }
    /* Check it is one of ours before replacing anything. */
    sqlite3_stmt *st = NULL;
    int rv = 0;
    if (sqlite3_prepare_v2(in, "SELECT value FROM meta WHERE key = 'schema'", -1, &st,
                           NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW || sqlite3_column_int(st, 0) != SCHEMA_VERSION) {
        rv = cm_err_setf(eb, CM_ECORRUPT, "snapshot `%s` is not a state.db of schema %d",
                         path, SCHEMA_VERSION);
    }
    sqlite3_finalize(st);
    if (rv == 0) {
        finalize_all(s); /* the backup needs no open statements on the target */
        rv = copy_db(s->db, in, eb, "restore snapshot", path);
        if (rv == 0) {
            rv = exec_sql(s, schema_sql, eb); /* tables added since the snapshot */
        }
        int rv2 = prepare_all(s, rv == 0 ? eb : NULL);
        if (rv == 0) {
            rv = rv2;
        }
        if (rv == 0) {
            rv = load_applied(s, eb);
        }
    }
    sqlite3_close(in);
    s->changes |= CM_STATE_CHANGED_APPS | CM_STATE_CHANGED_TASKS |
                  CM_STATE_CHANGED_NODES | CM_STATE_CHANGED_VIPS;
    return rv;
}

/* ---------------------------------------------------------------- queries */

static const char *col_text(sqlite3_stmt *st, int i)
{
    return (const char *)sqlite3_column_text(st, i);
}

/* Run the prepared @st with @a, @b bound, one @row call per row; @st is left
 * reset. */
static int run_stmt(sqlite3_stmt *st, const char *a, const char *b,
                    int (*row)(sqlite3_stmt *, void *fn, void *data), void *fn,
                    void *data, bool want_one)
{
    if (a != NULL) {
        sqlite3_bind_text(st, 1, a, -1, SQLITE_STATIC);
    }
    if (b != NULL) {
        sqlite3_bind_text(st, 2, b, -1, SQLITE_STATIC);
    }
    int rv = 0, rc, rows = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        rows++;
        rv = row(st, fn, data);
        if (rv != 0) {
            break;
        }
    }
    if (rv == 0 && rc != SQLITE_DONE) {
        rv = (rc & 0xff) == SQLITE_NOMEM ? CM_ENOMEM : CM_EIO;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rv == 0 && want_one && rows == 0) {
        rv = CM_ENOTFOUND;
    }
    return rv;
}

static int run_query(struct cm_state *s, const char *sql, const char *a, const char *b,
                     int (*row)(sqlite3_stmt *, void *fn, void *data), void *fn,
                     void *data, bool want_one)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
        return CM_EIO;
    }
    int rv = run_stmt(st, a, b, row, fn, data, want_one);
    sqlite3_finalize(st);
    return rv;
}

static int app_row(sqlite3_stmt *st, void *fn, void *data)
{
    struct cm_app_row r = {col_text(st, 0), col_text(st, 1), sqlite3_column_int64(st, 2),
                           col_text(st, 3)};
    return ((cm_app_fn)fn)(data, &r);
}

int cm_state_apps(struct cm_state *s, const char *id, cm_app_fn fn, void *data)
{
    if (id != NULL) {
        return run_query(s, "SELECT id, version, instances, spec FROM apps WHERE id = ?",
                         id, NULL, app_row, (void *)fn, data, true);
    }
    return run_query(s, "SELECT id, version, instances, spec FROM apps ORDER BY id", NULL,
                     NULL, app_row, (void *)fn, data, false);
}

int cm_state_app_versions(struct cm_state *s, const char *id, cm_app_fn fn, void *data)
{
    return run_query(
        s,
        "SELECT id, version, 0, spec FROM app_versions WHERE id = ? ORDER BY "
        "version",
        id, NULL, app_row, (void *)fn, data, false);
}

static int task_row(sqlite3_stmt *st, void *fn, void *data)
{
    struct cm_task_row r = {
        .id = col_text(st, 0),
        .app = col_text(st, 1),
        .version = col_text(st, 2),
        .node = col_text(st, 3),
        .host = col_text(st, 4),
        .ports = col_text(st, 5),
        .state = (enum cm_task_state)sqlite3_column_int(st, 6),
        .health = col_text(st, 7),
        .reason = col_text(st, 8),
        .exit_status =
            sqlite3_column_type(st, 9) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 9),
        .staged_at = sqlite3_column_int64(st, 10),
        .started_at = sqlite3_column_int64(st, 11),
        .updated_at = sqlite3_column_int64(st, 12),
        .ready = sqlite3_column_int(st, 13) != 0,
        .checks = col_text(st, 14),
    };
    return ((cm_task_fn)fn)(data, &r);
}

#define TASK_COLS                                                                      \
    "SELECT id, app, version, node, host, ports, state, health, reason, exit_status, " \
    "staged, started, updated, ready, checks FROM tasks "

int cm_state_tasks(struct cm_state *s, const char *app, const char *node, cm_task_fn fn,
                   void *data)
{
    if (app != NULL && node != NULL) {
        return run_query(s, TASK_COLS "WHERE app = ?1 AND node = ?2 ORDER BY id", app,
                         node, task_row, (void *)fn, data, false);
    }
    if (app != NULL) {
        return run_query(s, TASK_COLS "WHERE app = ? ORDER BY id", app, NULL, task_row,
                         (void *)fn, data, false);
    }
    if (node != NULL) {
        return run_query(s, TASK_COLS "WHERE node = ? ORDER BY id", node, NULL, task_row,
                         (void *)fn, data, false);
    }
    return run_query(s, TASK_COLS "ORDER BY id", NULL, NULL, task_row, (void *)fn, data,
                     false);
}

int cm_state_task(struct cm_state *s, const char *id, cm_task_fn fn, void *data)
{
    /* Hot: the event bus reads every task a command touches, before and after.
     * The statement stays prepared; a call from inside a callback of another
     * (the statement is busy) prepares its own. */
    if (s->task_st == NULL &&
        sqlite3_prepare_v3(s->db, TASK_COLS "WHERE id = ?", -1, SQLITE_PREPARE_PERSISTENT,
                           &s->task_st, NULL) != SQLITE_OK) {
        s->task_st = NULL;
    }
    if (s->task_st == NULL || sqlite3_stmt_busy(s->task_st)) {
        return run_query(s, TASK_COLS "WHERE id = ?", id, NULL, task_row, (void *)fn,
                         data, true);
    }
    return run_stmt(s->task_st, id, NULL, task_row, (void *)fn, data, true);
}

static int node_row(sqlite3_stmt *st, void *fn, void *data)
{
    struct cm_node_row r = {col_text(st, 0), col_text(st, 1),
                            col_text(st, 2), col_text(st, 3),
                            col_text(st, 4), sqlite3_column_int64(st, 5)};
    return ((cm_node_fn)fn)(data, &r);
}

int cm_state_nodes(struct cm_state *s, cm_node_fn fn, void *data)
{
    return run_query(s,
                     "SELECT id, address, attrs, resources, state, updated FROM nodes "
                     "ORDER BY id",
                     NULL, NULL, node_row, (void *)fn, data, false);
}

/* ---------------------------------------------------------------- deployments */

#define MAX_DEPLOY_ID 64

static int validate_deploy(struct cm_state *s, const cJSON *cmd, const char *type,
                           struct cm_errbuf *eb)
{
    struct vctx v = {eb, type, 0};
    int64_t at, step;
    want_int(&v, cmd, "", "at", true, 0, INT64_MAX / 2, &at);
    want_str(&v, cmd, "", "id", true, MAX_DEPLOY_ID);
    if (strcmp(type, "deploy.start") == 0) {
        want_str(&v, cmd, "", "version", true, 64);
        want_str(&v, cmd, "", "rollbackOf", false, MAX_DEPLOY_ID);
        const cJSON *rbf = cJSON_GetObjectItemCaseSensitive(cmd, "rollback");
        if (rbf != NULL && !cJSON_IsBool(rbf)) {
            return cm_err_setf(eb, CM_EVALIDATION,
                               "deploy.start: rollback: must be a bool");
        }
        const cJSON *plan = want_kind(&v, cmd, "", "plan", true, cJSON_Object);
        const cJSON *steps =
            plan != NULL ? want_kind(&v, plan, "plan.", "steps", true, cJSON_Array)
                         : NULL;
        int si = 0;
        const cJSON *st;
        cJSON_ArrayForEach(st, steps)
        {
            char path[48];
            snprintf(path, sizeof(path), "plan.steps[%d].", si++);
            const cJSON *acts =
                cJSON_IsObject(st) ? want_kind(&v, st, path, "actions", true, cJSON_Array)
                                   : NULL;
            if (v.err != 0) {
                return v.err;
            }
            const cJSON *act;
            cJSON_ArrayForEach(act, acts)
            {
                const cJSON *k = cJSON_GetObjectItemCaseSensitive(act, "action");
                const cJSON *ap = cJSON_GetObjectItemCaseSensitive(act, "app");
                const cJSON *ver = cJSON_GetObjectItemCaseSensitive(act, "version");
                bool stop =
                    cJSON_IsString(k) && strcmp(k->valuestring, "StopApplication") == 0;
                if (!cJSON_IsString(k) || !cJSON_IsString(ap) ||
                    (!stop && !cJSON_IsString(ver))) {
                    return cm_err_setf(eb, CM_EVALIDATION,
                                       "deploy.start: %sactions: each needs action, app "
                                       "and (but for a stop) version",
                                       path);
                }
            }
            if (acts == NULL) {
                return cm_err_setf(eb, CM_EVALIDATION,
                                   "deploy.start: %s: must be an object with actions",
                                   path);
            }
        }
        const cJSON *apps = want_kind(&v, cmd, "", "apps", true, cJSON_Array);
        const cJSON *a;
        cJSON_ArrayForEach(a, apps)
        {
            if (!cJSON_IsString(a) || strlen(a->valuestring) > MAX_ID) {
                return cm_err_setf(eb, CM_EVALIDATION,
                                   "deploy.start: apps: must hold app ids");
            }
        }
        const cJSON *changes = want_kind(&v, cmd, "", "changes", true, cJSON_Array);
        if (v.err != 0) {
            return v.err;
        }
        if (cJSON_GetArraySize(changes) > MAX_BATCH) {
            return cm_err_setf(eb, CM_EVALIDATION,
                               "deploy.start: changes: more than %d changes", MAX_BATCH);
        }
        int i = 0;
        const cJSON *c;
        cJSON_ArrayForEach(c, changes)
        {
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(c, "type");
            if (!cJSON_IsString(t) || (strcmp(t->valuestring, "app.put") != 0 &&
                                       strcmp(t->valuestring, "app.delete") != 0 &&
                                       strcmp(t->valuestring, "task.kill") != 0)) {
                return cm_err_setf(eb, CM_EVALIDATION,
                                   "deploy.start: changes[%d].type: must be app.put, "
                                   "app.delete or task.kill",
                                   i);
            }
            int rv = validate(s, c, eb);
            if (rv != 0) {
                return rv;
            }
            i++;
        }
    } else if (strcmp(type, "deploy.step") == 0) {
        want_int(&v, cmd, "", "step", true, 0, 100000, &step);
    } else if (strcmp(type, "deploy.failed") == 0) {
        want_str(&v, cmd, "", "reason", true, 512);
        want_str(&v, cmd, "", "rollback", false, MAX_DEPLOY_ID);
    } else if (strcmp(type, "deploy.promote") != 0 && strcmp(type, "deploy.done") != 0 &&
               strcmp(type, "deploy.cancel") != 0) {
        return cm_err_setf(eb, CM_EVALIDATION, "command: type: unknown type '%s'", type);
    }
    return v.err;
}

static int exec_bound(struct cm_state *s, const char *sql, const char *t1, const char *t2,
                      const char *t3, int64_t i4, int64_t i5, struct cm_errbuf *eb)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
        return db_err(s, eb, "prepare deployment statement for");
    }
    const char *t[3] = {t1, t2, t3};
    for (int i = 0; i < 3; i++) {
        if (t[i] != NULL) {
            sqlite3_bind_text(st, i + 1, t[i], -1, SQLITE_STATIC);
        }
    }
    sqlite3_bind_int64(st, 4, i4);
    sqlite3_bind_int64(st, 5, i5);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        return db_err(s, eb, "write deployment to");
    }
    return 0;
}

/* Finished deployments stay an hour (for `clusterctl run` and the API). */
#define DEPLOY_KEEP_MS (60 * 60 * 1000)

static int apply_deploy_start(struct cm_state *s, const cJSON *cmd, int64_t at,
                              struct cm_errbuf *eb)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(cmd, "changes"))
    {
        int rv = apply_cmd(s, c, eb);
        if (rv != 0) {
            return rv;
        }
    }
    char *apps = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(cmd, "apps"));
    char *plan = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(cmd, "plan"));
    if (apps == NULL || plan == NULL) {
        cJSON_free(apps);
        cJSON_free(plan);
        return cm_err_setf(eb, CM_ENOMEM, "deploy.start: out of memory");
    }
    /* A rollback fails the deployment it undoes (unless it failed already). */
    int rv = exec_bound(s,
                        "UPDATE deployments SET status = 'failed', reason = 'rolled "
                        "back by ' || ?3, updated = ?4 WHERE id = ?2 AND status = "
                        "'running'",
                        NULL, str_of(cmd, "rollbackOf"), str_of(cmd, "id"), at, 0, eb);
    /* One deployment per app (compat.md §1.10): a newer one replaces the rest. */
    rv = rv ? rv
            : exec_bound(
                  s,
                  "UPDATE deployments SET status = 'cancelled', reason = 'replaced by ' "
                  "|| ?3, "
                  "updated = ?4 WHERE status = 'running' AND EXISTS (SELECT 1 FROM "
                  "json_each(deployments.apps) AS d, json_each(?1) AS n WHERE d.value = "
                  "n.value)",
                  apps, NULL, str_of(cmd, "id"), at, 0, eb);
    rv = rv ? rv
            : exec_bound(s,
                         "DELETE FROM deployments WHERE status != 'running' AND "
                         "updated < ?4",
                         NULL, NULL, NULL, at - DEPLOY_KEEP_MS, 0, eb);
    sqlite3_stmt *st = NULL;
    if (rv == 0 && sqlite3_prepare_v2(
                       s->db,
                       "INSERT OR REPLACE INTO deployments(id, version, apps, plan, "
                       "step, status, rollback_of, rollback, started, step_started, "
                       "updated) VALUES(?1, ?2, ?3, ?4, 0, 'running', ?5, ?7, ?6, ?6, "
                       "?6)",
                       -1, &st, NULL) != SQLITE_OK) {
        rv = db_err(s, eb, "prepare deployment statement for");
    }
    if (rv == 0) {
        sqlite3_bind_text(st, 1, str_of(cmd, "id"), -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, str_of(cmd, "version"), -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, apps, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, plan, -1, SQLITE_STATIC);
        const char *rb = str_of(cmd, "rollbackOf");
        if (rb != NULL) {
            sqlite3_bind_text(st, 5, rb, -1, SQLITE_STATIC);
        }
        sqlite3_bind_int64(st, 6, at);
        /* A rollback (of a deployment, or to a version): no canary phase. */
        sqlite3_bind_int(st, 7,
                         rb != NULL || cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(
                                           cmd, "rollback")));
        int rc = sqlite3_step(st);
        if (rc != SQLITE_DONE) {
            rv = db_err(s, eb, "write deployment to");
        }
    }
    sqlite3_finalize(st);
    cJSON_free(apps);
    cJSON_free(plan);
    return rv;
}

static int apply_deploy(struct cm_state *s, const cJSON *cmd, const char *type,
                        int64_t at, struct cm_errbuf *eb)
{
    const char *id = str_of(cmd, "id");
    int rv = 0;
    s->changes |= CM_STATE_CHANGED_DEPLOYMENTS;
    if (strcmp(type, "deploy.start") == 0) {
        rv = apply_deploy_start(s, cmd, at, eb);
    } else if (strcmp(type, "deploy.step") == 0) {
        rv = exec_bound(s,
                        "UPDATE deployments SET step = ?5, step_started = ?4, "
                        "updated = ?4 WHERE id = ?1 AND status = 'running'",
                        id, NULL, NULL, at, int_of(cmd, "step", 0), eb);
    } else if (strcmp(type, "deploy.promote") == 0) {
        rv = exec_bound(s,
                        "UPDATE deployments SET promoted = 1, updated = ?4 WHERE id = "
                        "?1 AND status = 'running'",
                        id, NULL, NULL, at, 0, eb);
    } else if (strcmp(type, "deploy.done") == 0) {
        rv = exec_bound(s,
                        "UPDATE deployments SET status = 'success', updated = ?4 WHERE "
                        "id = ?1 AND status = 'running'",
                        id, NULL, NULL, at, 0, eb);
    } else if (strcmp(type, "deploy.failed") == 0) {
        rv = exec_bound(s,
                        "UPDATE deployments SET status = 'failed', reason = ?2 || "
                        "COALESCE('; rolled back by ' || ?3, ''), updated = ?4 WHERE id "
                        "= ?1 AND status = 'running'",
                        id, str_of(cmd, "reason"), str_of(cmd, "rollback"), at, 0, eb);
    } else if (strcmp(type, "deploy.cancel") == 0) {
        rv = exec_bound(s,
                        "UPDATE deployments SET status = 'cancelled', reason = "
                        "'stopped', updated = ?4 WHERE id = ?1 AND status = 'running'",
                        id, NULL, NULL, at, 0, eb);
    }
    return rv;
}

static int deploy_row(sqlite3_stmt *st, void *fn, void *data)
{
    struct cm_deploy_row r = {
        .id = col_text(st, 0),
        .version = col_text(st, 1),
        .apps = col_text(st, 2),
        .plan = col_text(st, 3),
        .step = sqlite3_column_int64(st, 4),
        .status = col_text(st, 5),
        .promoted = sqlite3_column_int(st, 6) != 0,
        .reason = col_text(st, 7),
        .rollback_of = col_text(st, 8),
        .rollback = sqlite3_column_int(st, 12) != 0,
        .started_at = sqlite3_column_int64(st, 9),
        .step_started_at = sqlite3_column_int64(st, 10),
        .updated_at = sqlite3_column_int64(st, 11),
    };
    return ((cm_deploy_fn)fn)(data, &r);
}

#define DEPLOY_COLS                                                                 \
    "SELECT id, version, apps, plan, step, status, promoted, reason, rollback_of, " \
    "started, step_started, updated, rollback FROM deployments "

int cm_state_deployments(struct cm_state *s, const char *id, bool running_only,
                         cm_deploy_fn fn, void *data)
{
    if (id != NULL) {
        return run_query(s, DEPLOY_COLS "WHERE id = ?", id, NULL, deploy_row, (void *)fn,
                         data, true);
    }
    return run_query(s,
                     running_only ? DEPLOY_COLS
                         "WHERE status = 'running' ORDER BY started, id"
                                  : DEPLOY_COLS "ORDER BY started, id",
                     NULL, NULL, deploy_row, (void *)fn, data, false);
}

static int vip_row(sqlite3_stmt *st, void *fn, void *data)
{
    struct cm_vip_row r = {col_text(st, 0), col_text(st, 1)};
    return ((cm_vip_fn)fn)(data, &r);
}

int cm_state_vips(struct cm_state *s, cm_vip_fn fn, void *data)
{
    return run_query(s, "SELECT name, address FROM vips ORDER BY name", NULL, NULL,
                     vip_row, (void *)fn, data, false);
}
