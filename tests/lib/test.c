/* Runner for tests/lib/test.h: registration, TAP output, failure recovery. */
#include "test.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>

#include "base/base.h"

#define TEST_MAX 1024

struct test_case {
    const char *name;
    test_fn fn;
};

static struct test_case cases[TEST_MAX];
static int ncases;
static jmp_buf test_jmp;
static int test_result; /* 0 pass, 1 fail, 2 skip */
static char skip_reason[256];

void test__register(const char *name, test_fn fn)
{
    if (ncases >= TEST_MAX) {
        fprintf(stderr, "too many tests\n");
        abort();
    }
    cases[ncases].name = name;
    cases[ncases].fn = fn;
    ncases++;
}

void test__fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("# %s:%d: ", file, line);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
    test_result = 1;
    longjmp(test_jmp, 1);
}

void test_skip(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(skip_reason, sizeof(skip_reason), fmt, ap);
    va_end(ap);
    test_result = 2;
    longjmp(test_jmp, 1);
}

void test_note(const char *text)
{
    while (*text != '\0') {
        const char *nl = strchr(text, '\n');
        size_t len = nl != NULL ? (size_t)(nl - text) : strlen(text);
        printf("# %.*s\n", (int)len, text);
        text += len + (nl != NULL ? 1 : 0);
    }
}

static void assert_hook(const char *msg)
{
    test__fail("library", 0, "%s", msg);
}

int test_alloc_walk(int (*fn)(void *arg), void *arg)
{
    for (int i = 0;; i++) {
        cm_alloc_fault_set(i, 1);
        int rv = fn(arg);
        bool fired = cm_alloc_fault_fired();
        cm_alloc_fault_reset();
        if (!fired) {
            if (rv != 0) {
                test__fail(__FILE__, __LINE__,
                           "run without injected fault failed: %d (%s)", rv,
                           cm_strerror(rv));
            }
            return i;
        }
        if (rv != CM_ENOMEM) {
            test__fail(__FILE__, __LINE__,
                       "allocation %d failed but the call returned %d (%s), not "
                       "CM_ENOMEM",
                       i, rv, cm_strerror(rv));
        }
    }
}

int main(int argc, char **argv)
{
    const char *filter = argc > 1 ? argv[1] : NULL;
    int selected = 0;
    for (int i = 0; i < ncases; i++) {
        if (filter == NULL || strstr(cases[i].name, filter) != NULL) {
            selected++;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    cm_assert_set_hook(assert_hook);
    printf("TAP version 13\n1..%d\n", selected);
    int n = 0;
    int failed = 0;
    for (int i = 0; i < ncases; i++) {
        if (filter != NULL && strstr(cases[i].name, filter) == NULL) {
            continue;
        }
        n++;
        test_result = 0;
        skip_reason[0] = '\0';
        if (setjmp(test_jmp) == 0) {
            cases[i].fn();
        }
        cm_alloc_fault_reset();
        if (test_result == 0) {
            printf("ok %d - %s\n", n, cases[i].name);
        } else if (test_result == 2) {
            printf("ok %d - %s # SKIP %s\n", n, cases[i].name, skip_reason);
        } else {
            printf("not ok %d - %s\n", n, cases[i].name);
            failed++;
        }
    }
    return failed ? 1 : 0;
}
