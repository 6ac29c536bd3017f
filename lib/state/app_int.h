/* lib/state internals of the app model: shared by app*.c only, never installed. */
#ifndef CM_STATE_APP_INT_H
#define CM_STATE_APP_INT_H

#include <cjson/cJSON.h>

#include "state/state.h"

/* ---- report (app_json.c) */

/* Append an issue. Returns 0 or CM_ENOMEM. @rep may be NULL (then only counted by
 * the caller's own flags). Past CM_APP_MAX_ISSUES the issue is counted in
 * rep->dropped. */
int app__issue(struct cm_app_report *rep, enum cm_app_issue_kind kind, const char *path,
               const char *fmt, ...) CM_PRINTF(4, 5);

/* ---- JSON text (app_json.c) */

/* Check @json (@len bytes) is one strict RFC 8259 JSON value within the
 * CM_APP_MAX_* limits. On failure, adds a SYNTAX issue at "/" to @rep.
 * @ret_start: set to the offset after an optional UTF-8 BOM.
 * Errors: CM_ETOOBIG, CM_EMALFORMED, CM_ENOMEM (recording the issue). */
int app__json_scan(const char *json, size_t len, size_t *ret_start,
                   struct cm_app_report *rep);

/* Scan, then parse with cJSON (through cm_malloc), then refuse duplicate keys.
 * *ret_root is set on success only; free with cJSON_Delete.
 * Errors: CM_ETOOBIG, CM_EMALFORMED, CM_ENOMEM. */
int app__json_parse(const char *json, size_t len, cJSON **ret_root,
                    struct cm_app_report *rep);

/* A JSON writer appending to a cm_buf with a sticky error. Keys are written in
 * the order given; numbers use the shortest text that reads back to the same
 * double, so the output is deterministic. */
struct app_jw {
    struct cm_buf *out;
    int err;
    int depth;
    bool pretty;
    bool first[CM_APP_MAX_DEPTH + 2];
    bool after_key;
};

void app__jw_init(struct app_jw *w, struct cm_buf *out, bool pretty);
void app__jw_obj_open(struct app_jw *w);
void app__jw_obj_close(struct app_jw *w);
void app__jw_arr_open(struct app_jw *w);
void app__jw_arr_close(struct app_jw *w);
void app__jw_key(struct app_jw *w, const char *key);
void app__jw_str(struct app_jw *w, const char *s);
void app__jw_num(struct app_jw *w, double d);
void app__jw_int(struct app_jw *w, int64_t v);
void app__jw_bool(struct app_jw *w, bool b);
void app__jw_null(struct app_jw *w);

/* ---- parsing (app.c) */

/* Parse one app object (already a cJSON object) with issue paths prefixed by
 * @path_prefix ("" for a body that is the app itself). */
int app__parse_obj(const cJSON *obj, const char *path_prefix,
                   const struct cm_app_parse_opts *opts, struct cm_app **ret_app,
                   struct cm_app_report *rep);

/* ---- validation (app_validate.c) */

/* Validate a normalised app; adds INVALID issues. Returns the number added, or
 * CM_ENOMEM. */
int app__validate(const struct cm_app *app, const char *pfx, struct cm_app_report *rep);

/* Check features against @features; adds UNSUPPORTED issues. Returns the number
 * added, or CM_ENOMEM. */
int app__check_features(const struct cm_app *app, unsigned features, const char *pfx,
                        struct cm_app_report *rep);

/* ---- names (app_path.c) */

/* True when @seg (of @len bytes) matches Marathon's segment pattern (without the
 * "." and ".." alternatives). */
bool app__segment_ok(const char *seg, size_t len);

/* cm_app_path_normalize with the reason: returns NULL when valid, else the
 * message; *ret_code is 0, CM_EINVAL or CM_ETOOBIG. */
const char *app__path_norm(const char *id, const char *base, char *out, size_t cap,
                           int *ret_code);

/* ---- serialisation (app_out.c) */

int app__write(const struct cm_app *app, const struct cm_app_out_opts *opts,
               bool canonical, struct cm_buf *out);

#endif
