/* Fuzz the deploy.* commands of state.db (lib/state db section, deployments):
 * the input is validated as a command; when valid it is applied to a state
 * seeded with one app and one deployment, then the rollback command of every
 * deployment is built, validated and applied. Validation returns only its
 * documented codes; apply never fails on a command that validated; a rollback
 * command always validates. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "fuzz.h"
#include "state/db.h"

static struct cm_state *st;
static uint64_t idx;
static char dir[] = "/tmp/deploy-fuzz-XXXXXX";

static void teardown(void)
{
    cm_state_close(st);
    static const char *const files[] = {"state.db", "state.db-wal", "state.db-shm"};
    for (size_t i = 0; i < CM_ARRAY_SIZE(files); i++) {
        char path[64];
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

static void must(int rv, const char *what, const struct cm_errbuf *eb)
{
    if (rv != 0) {
        fprintf(stderr, "%s: %s (%s)\n", what, cm_strerror(rv), eb->msg);
        abort();
    }
}

static void apply_text(const char *cmd, size_t len, const char *what)
{
    struct cm_errbuf eb;
    cm_errbuf_clear(&eb);
    must(cm_state_validate(st, cmd, len, &eb), what, &eb);
    must(cm_state_apply(st, ++idx, cmd, len, &eb), what, &eb);
}

static void setup(void)
{
    if (mkdtemp(dir) == NULL) {
        abort();
    }
    atexit(teardown);
    char path[64];
    snprintf(path, sizeof(path), "%s/state.db", dir);
    struct cm_errbuf eb;
    must(cm_state_open(path, &st, &eb), "open", &eb);
    static const char app[] =
        "{\"type\":\"app.put\",\"version\":\"v1\",\"app\":{\"id\":"
        "\"/web\",\"cmd\":\"sleep 1\",\"instances\":2}}";
    static const char dep[] =
        "{\"type\":\"deploy.start\",\"at\":1,\"id\":\"d1\",\"version\":\"v2\",\"apps\":"
        "[\"/web\"],\"plan\":{\"steps\":[{\"actions\":[{\"action\":"
        "\"RestartApplication\",\"app\":\"/web\",\"version\":\"v2\",\"from\":\"v1\","
        "\"fromInstances\":2}]}]},\"changes\":[{\"type\":\"app.put\",\"version\":\"v2\","
        "\"app\":{\"id\":\"/web\",\"cmd\":\"sleep 2\",\"instances\":3}}]}";
    apply_text(app, sizeof(app) - 1, "seed app");
    apply_text(dep, sizeof(dep) - 1, "seed deployment");
}

static int rollback_each(void *data, const struct cm_deploy_row *row)
{
    (void)data;
    struct cm_buf cmd = {0};
    int rv = cm_deploy_rollback_cmd(st, row->id, "rb", "v9", 99, &cmd);
    if (rv == 0) {
        apply_text(cmd.data, cmd.len, "rollback");
    } else if (rv != CM_ENOTFOUND) {
        fprintf(stderr, "rollback of %s: %s\n", row->id, cm_strerror(rv));
        abort();
    }
    cm_buf_done(&cmd);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (st == NULL) {
        setup();
    }
    struct cm_errbuf eb;
    int rv = cm_state_validate(st, data, size, &eb);
    if (rv != 0 && rv != CM_EVALIDATION && rv != CM_ETOOBIG) {
        fprintf(stderr, "unexpected validation result %s\n", cm_strerror(rv));
        abort();
    }
    if (rv == 0) {
        must(cm_state_apply(st, ++idx, data, size, &eb), "apply", &eb);
        /* Only the plans this input wrote: the rollbacks of rollbacks grow. */
        cm_state_deployments(st, NULL, true, rollback_each, NULL);
    }
    return 0;
}
