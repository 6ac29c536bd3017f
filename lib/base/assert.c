/* Assertion tiers (STYLE.md rule 23). */
#include "base.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

static cm_assert_hook_fn assert_hook;
static _Atomic unsigned long check_count;

void cm_assert_set_hook(cm_assert_hook_fn hook)
{
    assert_hook = hook;
}

void cm__assert_fail(const char *expr, const char *file, int line, const char *func)
{
    char msg[512];
    snprintf(msg, sizeof(msg), "assertion failed: %s (%s:%d %s)", expr, file, line, func);
    if (assert_hook != NULL) {
        assert_hook(msg); /* may longjmp */
    }
    cm_error("assert", "%s", msg);
    abort();
}

void cm__check_failed(const char *expr, const char *file, int line, int *warned)
{
    atomic_fetch_add(&check_count, 1);
    if (!*warned) {
        *warned = 1;
        cm_warn("check", "unexpected condition: %s (%s:%d)", expr, file, line);
    }
}

unsigned long cm_check_count(void)
{
    return atomic_load(&check_count);
}
