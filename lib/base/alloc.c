/* Allocation wrappers with fault injection (STYLE.md rule 12). */
#include "base.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fault {
    int armed;
    int delay;  /* successful allocations left before failing */
    int repeat; /* failures left; < 0 means forever */
    bool fired;
    unsigned long count;
    unsigned long failures; /* allocations that returned NULL, real or injected */
};

static _Thread_local struct fault fault;

void cm_alloc_fault_set(int delay, int repeat)
{
    fault.armed = 1;
    fault.delay = delay;
    fault.repeat = repeat;
    fault.fired = false;
    fault.count = 0;
}

void cm_alloc_fault_reset(void)
{
    unsigned long failures = fault.failures;
    memset(&fault, 0, sizeof(fault));
    fault.failures = failures;
}

unsigned long cm_alloc_failures(void)
{
    return fault.failures;
}

static void *counted(void *p)
{
    if (p == NULL) {
        fault.failures++;
    }
    return p;
}

unsigned long cm_alloc_count(void)
{
    return fault.count;
}

bool cm_alloc_fault_fired(void)
{
    return fault.fired;
}

/* True when this allocation must fail. */
static bool fault_tick(void)
{
    fault.count++;
    if (!fault.armed) {
        return false;
    }
    if (fault.delay > 0) {
        fault.delay--;
        return false;
    }
    if (fault.repeat == 0) {
        return false;
    }
    if (fault.repeat > 0) {
        fault.repeat--;
    }
    fault.fired = true;
    fault.failures++;
    return true;
}

void *cm_malloc(size_t size)
{
    if (fault_tick()) {
        return NULL;
    }
    return counted(malloc(size != 0 ? size : 1));
}

void *cm_calloc(size_t nmemb, size_t size)
{
    if (fault_tick()) {
        return NULL;
    }
    if (nmemb == 0 || size == 0) {
        nmemb = 1;
        size = 1;
    }
    return counted(calloc(nmemb, size));
}

void *cm_realloc(void *ptr, size_t size)
{
    if (fault_tick()) {
        return NULL;
    }
    return counted(realloc(ptr, size != 0 ? size : 1));
}

void *cm_reallocarray(void *ptr, size_t nmemb, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(nmemb, size, &total)) {
        fault.failures++;
        return NULL;
    }
    return cm_realloc(ptr, total);
}

void *cm_memdup(const void *p, size_t n)
{
    void *q = cm_malloc(n);
    if (q != NULL && n > 0) {
        memcpy(q, p, n);
    }
    return q;
}

char *cm_strndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *q = cm_malloc(len + 1);
    if (q == NULL) {
        return NULL;
    }
    memcpy(q, s, len);
    q[len] = '\0';
    return q;
}

char *cm_strdup(const char *s)
{
    return cm_memdup(s, strlen(s) + 1);
}

char *cm_asprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return NULL;
    }
    char *s = cm_malloc((size_t)n + 1);
    if (s == NULL) {
        return NULL;
    }
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

void cm_free_raw(void *ptr)
{
    free(ptr);
}
