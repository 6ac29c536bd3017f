/* lib/state apps: the JSON layer. Strict syntax, the hard limits, wrong types,
 * NaN-like numbers, duplicate keys, and Marathon's 400 body. */
#include <fnmatch.h>
#include <stdlib.h>

#include "state/state.h"
#include "test.h"

/* Parse and expect @code with an issue @path: @msg (a glob when it has a '*'). */
static void expect(const char *json, size_t len, int code, const char *path,
                   const char *msg)
{
    struct cm_app_report rep = {0};
    struct cm_app *app = NULL;
    int rv = cm_app_parse(json, len, NULL, &app, &rep);
    if (rv != code) {
        for (size_t i = 0; i < rep.n; i++) {
            printf("#   [%d] %s: %s\n", rep.v[i].kind, rep.v[i].path, rep.v[i].msg);
        }
        test__fail(__FILE__, __LINE__, "got %s, want %s for %.60s", cm_strerror(rv),
                   cm_strerror(code), json);
    }
    if (path != NULL) {
        bool glob = strchr(msg, '*') != NULL;
        bool found = false;
        for (size_t i = 0; i < rep.n && !found; i++) {
            found = strcmp(rep.v[i].path, path) == 0 &&
                    (glob ? fnmatch(msg, rep.v[i].msg, FNM_NOESCAPE) == 0
                          : strcmp(rep.v[i].msg, msg) == 0);
        }
        if (!found) {
            for (size_t i = 0; i < rep.n; i++) {
                printf("#   [%d] %s: %s\n", rep.v[i].kind, rep.v[i].path, rep.v[i].msg);
            }
            test__fail(__FILE__, __LINE__, "no issue %s: %s", path, msg);
        }
    }
    cm_app_free(app);
    cm_app_report_done(&rep);
}

#define EXPECT(json, code, path, msg) expect(json, strlen(json), code, path, msg)

TEST(json_syntax_errors)
{
    EXPECT("", CM_EMALFORMED, "/", "Invalid JSON at offset 0: unexpected end of input");
    EXPECT("{", CM_EMALFORMED, "/", "Invalid JSON at offset 1: expected a string key");
    EXPECT("{\"id\":\"a\",}", CM_EMALFORMED, "/", "Invalid JSON at offset 10:*");
    EXPECT("{\"id\":\"a\"} x", CM_EMALFORMED, "/",
           "Invalid JSON at offset 11: trailing characters after the JSON value");
    EXPECT("{'id':'a'}", CM_EMALFORMED, "/",
           "Invalid JSON at offset 1: expected a string key");
    EXPECT("{\"id\":tru}", CM_EMALFORMED, "/", "Invalid JSON*");
    EXPECT("{\"id\":\"a\nb\"}", CM_EMALFORMED, "/",
           "Invalid JSON at offset 8: control character in string");
    EXPECT("{\"id\":\"\\x\"}", CM_EMALFORMED, "/",
           "Invalid JSON*invalid escape in string");
    EXPECT("{\"a\":01}", CM_EMALFORMED, "/", "Invalid JSON*");
    EXPECT("{\"a\":1.}", CM_EMALFORMED, "/", "Invalid JSON*invalid number");
    EXPECT("{\"a\":-}", CM_EMALFORMED, "/", "Invalid JSON*invalid number");
    EXPECT("{\"a\":+1}", CM_EMALFORMED, "/", "Invalid JSON*unexpected character");
    EXPECT("{\"a\":1}\x01", CM_EMALFORMED, "/", "Invalid JSON*trailing characters*");
    /* A NUL byte inside the length is not the end. */
    expect("{\"id\":\"a\"}\0", 11, CM_EMALFORMED, "/", "Invalid JSON*trailing*");
}

TEST(json_nan_and_infinity_rejected)
{
    EXPECT("{\"id\":\"a\",\"cmd\":\"sleep 1\",\"cpus\":NaN}", CM_EMALFORMED, "/",
           "Invalid JSON*unexpected character");
    EXPECT("{\"id\":\"a\",\"cmd\":\"sleep 1\",\"cpus\":Infinity}", CM_EMALFORMED, "/",
           "Invalid JSON*");
    EXPECT("{\"id\":\"a\",\"cmd\":\"sleep 1\",\"cpus\":-Infinity}", CM_EMALFORMED, "/",
           "Invalid JSON*invalid number");
    /* Overflows to infinity in a double: a type error at its path. */
    EXPECT("{\"id\":\"a\",\"cmd\":\"sleep 1\",\"cpus\":1e999}", CM_EMALFORMED, "/cpus",
           "error.expected.jsnumber");
    EXPECT("{\"id\":\"a\",\"cmd\":\"sleep 1\",\"instances\":1e10}", CM_EMALFORMED,
           "/instances", "error.expected.int");
    EXPECT("{\"id\":\"a\",\"cmd\":\"sleep 1\",\"instances\":2.5}", CM_EMALFORMED,
           "/instances", "error.expected.int");
    /* 2.0 is an integer. */
    EXPECT("{\"id\":\"a\",\"cmd\":\"sleep 1\",\"instances\":2.0}", 0, NULL, NULL);
    EXPECT(
        "{\"id\":\"a\",\"cmd\":\"sleep "
        "1\",\"unreachableStrategy\":{\"inactiveAfterSeconds\":"
        "1e17}}",
        CM_EMALFORMED, "/unreachableStrategy/inactiveAfterSeconds",
        "error.expected.long");
    /* cJSON would cut a number at 63 characters; the scanner refuses it first. */
    char buf[256];
    snprintf(buf, sizeof(buf), "{\"id\":\"a\",\"cmd\":\"sleep 1\",\"mem\":1%064d}", 0);
    EXPECT(buf, CM_EMALFORMED, "/", "Invalid JSON*number longer than 63 characters");
}

TEST(json_duplicate_keys_rejected)
{
    EXPECT("{\"id\":\"a\",\"cmd\":\"sleep 1\",\"cmd\":\"sleep 2\"}", CM_EMALFORMED,
           "/cmd", "duplicate key \"cmd\"");
    EXPECT(
        "{\"id\":\"a\",\"cmd\":\"sleep "
        "1\",\"labels\":{\"x\":\"1\",\"y\":\"2\",\"x\":\"3\"}}",
        CM_EMALFORMED, "/labels/x", "duplicate key \"x\"");
    EXPECT(
        "{\"id\":\"a\",\"cmd\":\"sleep 1\",\"healthChecks\":[{},{\"path\":\"/\",\"path\":"
        "\"/x\"}]}",
        CM_EMALFORMED, "/healthChecks(1)/path", "duplicate key \"path\"");
    /* Also inside fields that are otherwise ignored. */
    EXPECT("{\"id\":\"a\",\"cmd\":\"sleep 1\",\"tasks\":[{\"k\":1,\"k\":2}]}",
           CM_EMALFORMED, "/tasks(0)/k", "duplicate key \"k\"");
}

TEST(json_limits)
{
    /* Body size: one byte over is CM_ETOOBIG, before any scanning. */
    size_t big = CM_APP_MAX_BODY + 1;
    char *body = malloc(big);
    ASSERT_NOT_NULL(body);
    memset(body, ' ', big);
    expect(body, big, CM_ETOOBIG, "/",
           "request body of 1048577 bytes exceeds the limit*");
    ASSERT_INT_EQ(cm_app_http_status(CM_ETOOBIG), 413);
    struct cm_buf out = {0};
    ASSERT_OK(cm_app_report_body(NULL, CM_ETOOBIG, &out));
    ASSERT_STR_EQ(out.data,
                  "{\"message\":\"Request body too large (limit 1048576 bytes)\"}");
    cm_buf_done(&out);

    /* Just under the limit is fine: 15 labels of 60000 bytes. */
    size_t n = 0;
    n += (size_t)sprintf(body + n, "{\"id\":\"a\",\"cmd\":\"sleep 1\",\"labels\":{");
    for (int i = 0; i < 15; i++) {
        n += (size_t)sprintf(body + n, "%s\"k%d\":\"", i ? "," : "", i);
        memset(body + n, 'v', 60000);
        n += 60000;
        body[n++] = '"';
    }
    n += (size_t)sprintf(body + n, "}}");
    ASSERT_INT_OP(n, <=, CM_APP_MAX_BODY);
    expect(body, n, 0, NULL, NULL);

    /* One string over 64 KiB. */
    n = (size_t)sprintf(body, "{\"id\":\"a\",\"cmd\":\"");
    memset(body + n, 'x', CM_APP_MAX_STRING + 1);
    n += CM_APP_MAX_STRING + 1;
    n += (size_t)sprintf(body + n, "\"}");
    expect(body, n, CM_EMALFORMED, "/", "Invalid JSON*string longer than the limit");

    /* Arrays: 1024 elements pass, 1025 do not. */
    for (int count = 1024; count <= 1025; count++) {
        n = (size_t)sprintf(body, "{\"id\":\"a\",\"cmd\":\"sleep 1\",\"args\":[]");
        n = (size_t)sprintf(body, "{\"id\":\"a\",\"cmd\":\"sleep 1\",\"x\":[");
        for (int i = 0; i < count; i++) {
            n += (size_t)sprintf(body + n, "%s0", i ? "," : "");
        }
        n += (size_t)sprintf(body + n, "]}");
        expect(body, n, count == 1024 ? 0 : CM_EMALFORMED, count == 1024 ? NULL : "/",
               "Invalid JSON*more array elements than the limit");
    }
    free(body);
}

TEST(json_depth_limit)
{
    char buf[512];
    /* The root object is level 1; 31 nested arrays make 32 levels: allowed. */
    for (int levels = 31; levels <= 32; levels++) {
        size_t n = (size_t)sprintf(buf, "{\"id\":\"a\",\"cmd\":\"sleep 1\",\"x\":");
        for (int i = 0; i < levels; i++) {
            buf[n++] = '[';
        }
        for (int i = 0; i < levels; i++) {
            buf[n++] = ']';
        }
        buf[n++] = '}';
        expect(buf, n, levels == 31 ? 0 : CM_EMALFORMED, levels == 31 ? NULL : "/",
               "Invalid JSON*nesting deeper than the limit");
    }
    /* Very deep input is refused without recursing into it. */
    size_t deep = 100000;
    char *d = malloc(deep);
    ASSERT_NOT_NULL(d);
    memset(d, '[', deep);
    expect(d, deep, CM_EMALFORMED, "/", "Invalid JSON at offset 32: nesting deeper*");
    free(d);
}

TEST(json_strings_unicode)
{
    /* A BOM is skipped; escapes and surrogate pairs decode to UTF-8. */
    const char *j =
        "\xef\xbb\xbf{\"id\":\"a\",\"cmd\":\"echo \\u00e9 \\ud83d\\ude00 \\\"q\\\" "
        "\\/\",\"labels\":{\"k\":\"\\u001f\\t\"}}";
    struct cm_app *a = NULL;
    ASSERT_OK(cm_app_parse(j, strlen(j), NULL, &a, NULL));
    ASSERT_STR_EQ(a->cmd, "echo \xc3\xa9 \xf0\x9f\x98\x80 \"q\" /");
    ASSERT_STR_EQ(a->labels.v[0].value, "\x1f\t");
    struct cm_buf out = {0};
    ASSERT_OK(cm_app_canonical(a, &out));
    ASSERT_NOT_NULL(
        strstr(out.data, "\"cmd\":\"echo \xc3\xa9 \xf0\x9f\x98\x80 \\\"q\\\" /\""));
    ASSERT_NOT_NULL(strstr(out.data, "\"k\":\"\\u001f\\t\""));
    cm_buf_done(&out);
    cm_app_free(a);

    EXPECT("{\"id\":\"a\",\"cmd\":\"\\u0000x\"}", CM_EMALFORMED, "/",
           "Invalid JSON*\\u0000 in string is not supported");
    EXPECT("{\"id\":\"a\",\"cmd\":\"\\udc00\"}", CM_EMALFORMED, "/",
           "Invalid JSON*lone low surrogate*");
    EXPECT("{\"id\":\"a\",\"cmd\":\"\\ud800x\"}", CM_EMALFORMED, "/",
           "Invalid JSON*unpaired surrogate*");
    EXPECT("{\"id\":\"a\",\"cmd\":\"\\u12\"}", CM_EMALFORMED, "/",
           "Invalid JSON*\\u escape");
    EXPECT("{\"id\":\"a\",\"cmd\":\"\xc3\x28\"}", CM_EMALFORMED, "/",
           "Invalid JSON*invalid UTF-8");
    EXPECT("{\"id\":\"a\",\"cmd\":\"\xc0\xaf\"}", CM_EMALFORMED, "/",
           "Invalid JSON*invalid UTF-8");
    EXPECT("{\"id\":\"a\",\"cmd\":\"\xed\xa0\x80\"}", CM_EMALFORMED, "/",
           "Invalid JSON*invalid UTF-8");
    EXPECT("{\"id\":\"a\",\"cmd\":\"\xe2\x82\"}", CM_EMALFORMED, "/",
           "Invalid JSON*invalid UTF-8");
}

TEST(json_wrong_types_collected)
{
    const char *j =
        "{\"id\":5,\"cmd\":[\"x\"],\"instances\":\"1\",\"cpus\":\"1\",\"labels\":{"
        "\"a\":1},\"env\":{\"A\":true},\"healthChecks\":{},\"requirePorts\":\"yes\","
        "\"args\":[1],\"container\":{\"type\":\"FOO\"},\"unreachableStrategy\":5,"
        "\"portDefinitions\":[{\"port\":\"80\"}],\"upgradeStrategy\":[]}";
    static const char *const want[][2] = {
        {"/id", "error.expected.jsstring"},
        {"/cmd", "error.expected.jsstring"},
        {"/instances", "error.expected.jsnumber"},
        {"/cpus", "error.expected.jsnumber"},
        {"/labels/a", "error.expected.jsstring"},
        {"/env/A", "error.expected.jsstring"},
        {"/healthChecks", "error.expected.jsarray"},
        {"/requirePorts", "error.expected.jsboolean"},
        {"/args(0)", "error.expected.jsstring"},
        {"/container/type", "error.unknown.enum.literal"},
        {"/unreachableStrategy", "error.expected.jsobject"},
        {"/portDefinitions(0)/port", "error.expected.jsnumber"},
        {"/upgradeStrategy", "error.expected.jsobject"},
    };
    struct cm_app_report rep = {0};
    struct cm_app *a = NULL;
    ASSERT_ERR(cm_app_parse(j, strlen(j), NULL, &a, &rep), CM_EMALFORMED);
    ASSERT_UINT_EQ(cm_app_report_count(&rep, CM_APP_ISSUE_SYNTAX), CM_ARRAY_SIZE(want));
    for (size_t i = 0; i < CM_ARRAY_SIZE(want); i++) {
        bool found = false;
        for (size_t k = 0; k < rep.n && !found; k++) {
            found = strcmp(rep.v[k].path, want[i][0]) == 0 &&
                    strcmp(rep.v[k].msg, want[i][1]) == 0;
        }
        if (!found) {
            test__fail(__FILE__, __LINE__, "missing %s: %s", want[i][0], want[i][1]);
        }
    }
    cm_app_report_done(&rep);

    /* Marathon's 400 body. */
    j = "{\"id\":123,\"cmd\":\"sleep 1\"}";
    ASSERT_ERR(cm_app_parse(j, strlen(j), NULL, &a, &rep), CM_EMALFORMED);
    struct cm_buf out = {0};
    ASSERT_OK(cm_app_report_body(&rep, CM_EMALFORMED, &out));
    ASSERT_STR_EQ(out.data,
                  "{\"message\":\"Invalid JSON\",\"details\":[{\"path\":\"/id\","
                  "\"errors\":[\"error.expected.jsstring\"]}]}");
    ASSERT_INT_EQ(cm_app_http_status(CM_EMALFORMED), 400);
    cm_buf_done(&out);
    cm_app_report_done(&rep);
}

TEST(json_root_must_be_object)
{
    EXPECT("[]", CM_EMALFORMED, "/", "error.expected.jsobject");
    EXPECT("\"x\"", CM_EMALFORMED, "/", "error.expected.jsobject");
    EXPECT("null", CM_EMALFORMED, "/", "error.expected.jsobject");
}

TEST(json_null_means_absent)
{
    const char *j =
        "{\"id\":\"a\",\"cmd\":\"sleep 1\",\"portDefinitions\":null,\"env\":null,"
        "\"container\":null,\"healthChecks\":null,\"cpus\":null,\"user\":null}";
    struct cm_app *a = NULL;
    ASSERT_OK(cm_app_parse(j, strlen(j), NULL, &a, NULL));
    ASSERT_UINT_EQ(a->n_port_defs, 1); /* the default, not "no ports" */
    ASSERT_TRUE(a->cpus == 1.0);
    ASSERT_NULL(a->user);
    ASSERT_INT_EQ(a->container.type, CM_APP_CONTAINER_NONE);
    cm_app_free(a);
}

TEST(json_unknown_fields_are_warnings)
{
    const char *j =
        "{\"id\":\"a\",\"cmd\":\"sleep 1\",\"storeUrls\":[\"x\"],\"fooBar\":{\"x\":1},"
        "\"container\":{\"type\":\"MESOS\",\"docker\":null,\"bogus\":1},"
        "\"tasksRunning\":3}";
    struct cm_app_report rep = {0};
    struct cm_app *a = NULL;
    ASSERT_OK(cm_app_parse(j, strlen(j), NULL, &a, &rep));
    ASSERT_UINT_EQ(rep.n, 4);
    ASSERT_UINT_EQ(cm_app_report_count(&rep, CM_APP_ISSUE_WARNING), 4);
    ASSERT_STR_EQ(rep.v[0].path, "/storeUrls");
    ASSERT_STR_EQ(rep.v[0].msg, "output-only or obsolete field ignored");
    ASSERT_STR_EQ(rep.v[1].path, "/fooBar");
    ASSERT_STR_EQ(rep.v[1].msg, "unknown field ignored");
    ASSERT_STR_EQ(rep.v[3].path, "/container/bogus");
    cm_app_report_done(&rep);
    cm_app_free(a);
}

TEST(json_report_caps_issues)
{
    /* 300 bad labels make 300 type errors; the report keeps 128 and counts the rest. */
    char *buf = malloc(16384);
    ASSERT_NOT_NULL(buf);
    size_t n = (size_t)sprintf(buf, "{\"id\":\"a\",\"cmd\":\"sleep 1\",\"labels\":{");
    for (int i = 0; i < 300; i++) {
        n += (size_t)sprintf(buf + n, "%s\"k%d\":%d", i ? "," : "", i, i);
    }
    n += (size_t)sprintf(buf + n, "}}");
    struct cm_app_report rep = {0};
    struct cm_app *a = NULL;
    ASSERT_ERR(cm_app_parse(buf, n, NULL, &a, &rep), CM_EMALFORMED);
    ASSERT_UINT_EQ(rep.n, CM_APP_MAX_ISSUES);
    ASSERT_UINT_EQ(rep.dropped, 300 - CM_APP_MAX_ISSUES);
    cm_app_report_done(&rep);
    /* Without a report the result is the same. */
    ASSERT_ERR(cm_app_parse(buf, n, NULL, &a, NULL), CM_EMALFORMED);
    free(buf);
}

TEST(json_numbers_written_shortest)
{
    const char *j =
        "{\"id\":\"a\",\"cmd\":\"sleep "
        "1\",\"cpus\":0.1,\"mem\":1e3,\"disk\":0.30000000000000004,"
        "\"backoffFactor\":1.0000000000000002}";
    struct cm_app *a = NULL;
    ASSERT_OK(cm_app_parse(j, strlen(j), NULL, &a, NULL));
    struct cm_buf out = {0};
    ASSERT_OK(cm_app_canonical(a, &out));
    ASSERT_NOT_NULL(strstr(out.data, "\"cpus\":0.1,"));
    ASSERT_NOT_NULL(strstr(out.data, "\"mem\":1000,"));
    ASSERT_NOT_NULL(strstr(out.data, "\"disk\":0.30000000000000004,"));
    ASSERT_NOT_NULL(strstr(out.data, "\"backoffFactor\":1.0000000000000002,"));
    cm_buf_done(&out);
    cm_app_free(a);
}

static int walk_report(void *arg)
{
    const char *j = arg;
    struct cm_app_report rep = {0};
    struct cm_app *a = NULL;
    struct cm_buf out = {0};
    int rv = cm_app_parse(j, strlen(j), NULL, &a, &rep);
    if (rv == CM_EMALFORMED) {
        rv = cm_app_report_body(&rep, rv, &out);
    }
    cm_buf_done(&out);
    cm_app_report_done(&rep);
    cm_app_free(a);
    return rv;
}

TEST(json_oom_walk_over_syntax_and_type_errors)
{
    ASSERT_INT_OP(test_alloc_walk(walk_report, (void *)"{\"id\":1,\"cmd\":2,\"x\":[}"), >,
                  0);
    ASSERT_INT_OP(
        test_alloc_walk(walk_report, (void *)"{\"id\":1,\"cmd\":2,\"labels\":{\"a\":1},"
                                             "\"dup\":1,\"dup\":2}"),
        >, 5);
    ASSERT_INT_OP(
        test_alloc_walk(walk_report, (void *)"{\"id\":1,\"cmd\":2,\"env\":{\"a\":1},"
                                             "\"constraints\":[1,[2]]}"),
        >, 5);
}
