/* Fuzz the Marathon app model (lib/state apps section): the body goes through the
 * app, app-array and group parsers with and without the optional features. Each
 * must return one of its documented codes (never CM_ENOMEM here: nothing fails
 * allocations, so a NULL from cJSON would mean the strict scanner let through text
 * cJSON refuses). A valid app must serialise, parse back and serialise to the same
 * canonical bytes, through both the canonical and the GET form. */
#include <stdio.h>
#include <stdlib.h>

#include "fuzz.h"
#include "state/state.h"

static void check_code(int rv)
{
    if (rv != 0 && rv != CM_EMALFORMED && rv != CM_ETOOBIG && rv != CM_EVALIDATION &&
        rv != CM_EUNSUPPORTED) {
        fprintf(stderr, "unexpected parse result %d (%s)\n", rv, cm_strerror(rv));
        abort();
    }
}

static void check_report(const struct cm_app_report *rep, int rv)
{
    struct cm_buf body = {0};
    if (rv != 0 && cm_app_report_body(rep, rv, &body) != 0) {
        abort();
    }
    cm_buf_done(&body);
}

static void round_trip(const struct cm_app *app)
{
    struct cm_buf c1 = {0}, c2 = {0}, c3 = {0}, get = {0};
    struct cm_app *back = NULL, *back2 = NULL;
    struct cm_app_out_opts oo = {.version = "2026-11-22T14:00:00.123Z", .pretty = true};
    struct cm_app_parse_opts all = {.base = "/", .features = CM_APP_FEAT_ALL};
    if (cm_app_canonical(app, &c1) != 0 || cm_app_to_json(app, &oo, &get) != 0) {
        abort();
    }
    int rv = cm_app_from_canonical(c1.data, c1.len, &back);
    if (rv != 0) {
        fprintf(stderr, "canonical form does not parse back (%s):\n%s\n", cm_strerror(rv),
                c1.data);
        abort();
    }
    if (cm_app_canonical(back, &c2) != 0 || c1.len != c2.len ||
        memcmp(c1.data, c2.data, c1.len) != 0) {
        fprintf(stderr, "canonical round trip differs:\n%s\n%s\n", c1.data, c2.data);
        abort();
    }
    rv = cm_app_parse(get.data, get.len, &all, &back2, NULL);
    if (rv != 0 || cm_app_canonical(back2, &c3) != 0 || c1.len != c3.len ||
        memcmp(c1.data, c3.data, c1.len) != 0) {
        fprintf(stderr, "GET form round trip differs (%s):\n%s\n", cm_strerror(rv),
                get.data);
        abort();
    }
    if (!cm_app_equal(app, back) || !cm_app_equal(back, back2)) {
        abort();
    }
    cm_app_free(back);
    cm_app_free(back2);
    cm_buf_done(&c1);
    cm_buf_done(&c2);
    cm_buf_done(&c3);
    cm_buf_done(&get);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *json = (const char *)data;
    static const unsigned feature_sets[] = {CM_APP_FEAT_NONE, CM_APP_FEAT_ALL};
    for (size_t f = 0; f < 2; f++) {
        struct cm_app_parse_opts opts = {.base = f ? "/base/group" : "/",
                                         .features = feature_sets[f]};
        struct cm_app_report rep = {0};
        struct cm_app *app = NULL;
        int rv = cm_app_parse(json, size, &opts, &app, &rep);
        check_code(rv);
        check_report(&rep, rv);
        if (rv == 0) {
            char dns[CM_APP_MAX_ID + 1], lab[256], leg[512];
            if (cm_app_dns_name(app->id, dns, sizeof(dns)) != 0) {
                abort();
            }
            (void)cm_app_mesos_dns_names(app->id, "marathon", "mesos", lab, sizeof(lab),
                                         leg, sizeof(leg));
            round_trip(app);
        }
        cm_app_free(app);
        cm_app_report_done(&rep);

        struct cm_app_list list = {0};
        rv = cm_app_array_parse(json, size, &opts, &list, &rep);
        check_code(rv);
        check_report(&rep, rv);
        for (size_t i = 0; i < list.n; i++) {
            round_trip(list.v[i]);
        }
        cm_app_list_done(&list);
        cm_app_report_done(&rep);

        struct cm_app_group *g = NULL;
        rv = cm_app_group_parse(json, size, &opts, &g, &rep);
        check_code(rv);
        check_report(&rep, rv);
        for (size_t i = 0; rv == 0 && i < g->apps.n; i++) {
            round_trip(g->apps.v[i]);
        }
        cm_app_group_free(g);
        cm_app_report_done(&rep);
    }
    return 0;
}
