/* lib/api: healthCheckResults and readinessCheckResults in Marathon's shapes from
 * the check results the executor stores with a task's health transitions. */
#include "api/api_int.h"
#include "state/state.h"
#include "test.h"

static const char checks[] =
    "{\"health\":[{\"alive\":false,\"consecutiveFailures\":2,\"firstSuccess\":"
    "1763827200000,\"lastSuccess\":1763827201000,\"lastFailure\":1763827203500,"
    "\"lastFailureCause\":\"HTTP 500 on /health\"},{\"alive\":null,"
    "\"consecutiveFailures\":0,\"firstSuccess\":0,\"lastSuccess\":0,\"lastFailure\":0,"
    "\"lastFailureCause\":null}],\"readiness\":[{\"name\":\"warmup\",\"ready\":true,"
    "\"lastResponse\":{\"status\":302,\"contentType\":\"text/plain\",\"body\":"
    "\"ready \\\"now\\\"\\n\"}}]}";

static struct api_task task(const char *health, const char *c)
{
    struct api_task t = {
        .id = (char *)"web.1",
        .app = (char *)"/web",
        .health = (char *)health,
        .checks = (char *)c,
        .state = CM_TASK_RUNNING,
    };
    return t;
}

TEST(health_results_from_stored_checks)
{
    cm_state_json_init();
    struct api_task t = task("unhealthy", checks);
    struct cm_buf b = {0};
    ASSERT_OK(api__health_results(&t, &b));
    /* The check without a result yet is left out, as Marathon does. */
    ASSERT_STR_EQ(b.data,
                  "{\"alive\":false,\"consecutiveFailures\":2,"
                  "\"firstSuccess\":\"2025-11-22T16:00:00.000Z\","
                  "\"lastSuccess\":\"2025-11-22T16:00:01.000Z\","
                  "\"lastFailure\":\"2025-11-22T16:00:03.500Z\","
                  "\"lastFailureCause\":\"HTTP 500 on /health\","
                  "\"instanceId\":\"web.1\",\"taskId\":\"web.1\"}");
    cm_buf_done(&b);
}

TEST(health_results_without_details_show_the_verdict)
{
    cm_state_json_init();
    struct api_task t = task("healthy", NULL);
    struct cm_buf b = {0};
    ASSERT_OK(api__health_results(&t, &b));
    ASSERT_STR_EQ(b.data,
                  "{\"alive\":true,\"instanceId\":\"web.1\",\"taskId\":\"web.1\"}");
    cm_buf_done(&b);
    t = task(NULL, NULL);
    ASSERT_OK(api__health_results(&t, &b));
    ASSERT_NULL(b.data);
    /* Fields of the wrong type are skipped, never trusted. */
    t = task(NULL,
             "{\"health\":[{\"alive\":true,\"consecutiveFailures\":\"x\","
             "\"lastFailureCause\":7}]}");
    ASSERT_OK(api__health_results(&t, &b));
    ASSERT_STR_EQ(b.data,
                  "{\"alive\":true,\"consecutiveFailures\":0,\"firstSuccess\":null,"
                  "\"lastSuccess\":null,\"lastFailure\":null,"
                  "\"lastFailureCause\":null,\"instanceId\":\"web.1\","
                  "\"taskId\":\"web.1\"}");
    cm_buf_done(&b);
}

TEST(readiness_results_of_live_tasks)
{
    cm_state_json_init();
    struct api_task v[3] = {task(NULL, checks), task(NULL, checks), task(NULL, NULL)};
    v[1].id = (char *)"web.2";
    v[1].state = CM_TASK_FAILED; /* not listed */
    struct api_tasks ts = {.v = v, .n = 3, .cap = 3};
    struct cm_buf b = {0};
    ASSERT_OK(api__readiness_results(&ts, 0, 3, &b));
    ASSERT_STR_EQ(b.data,
                  "[{\"name\":\"warmup\",\"taskId\":\"web.1\",\"ready\":true,"
                  "\"lastResponse\":{\"status\":302,\"contentType\":\"text/plain\","
                  "\"body\":\"ready \\\"now\\\"\\n\"}}]");
    cm_buf_done(&b);
    ASSERT_OK(api__readiness_results(&ts, 2, 3, &b));
    ASSERT_STR_EQ(b.data, "[]");
    cm_buf_done(&b);
}

static int render_once(void *arg)
{
    (void)arg;
    struct api_task t = task("unhealthy", checks);
    struct api_tasks ts = {.v = &t, .n = 1, .cap = 1};
    struct cm_buf b = {0};
    int rv = api__health_results(&t, &b);
    if (rv == 0) {
        rv = api__readiness_results(&ts, 0, 1, &b);
    }
    cm_buf_done(&b);
    return rv;
}

TEST(results_oom_walk)
{
    cm_state_json_init();
    ASSERT_INT_OP(test_alloc_walk(render_once, NULL), >, 10);
}
