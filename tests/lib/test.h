/* A small test framework of our own (see README, "Developer notes").
 *
 * Each test executable links tests/lib/test.c, which provides main(): it runs every
 * TEST() in the executable (or those whose name contains argv[1]) and prints TAP, so
 * `meson test` reports each case. A failed ASSERT_* prints the file, line and both
 * values and ends that test only. CM_ASSERT failures in library code inside a test are
 * reported as test failures too. */
#ifndef CM_TEST_H
#define CM_TEST_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef void (*test_fn)(void);

void test__register(const char *name, test_fn fn);
_Noreturn void test__fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Mark the running test skipped (with a reason) and end it. */
_Noreturn void test_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define TEST(name)                                                 \
    static void test_##name(void);                                 \
    __attribute__((constructor)) static void test_reg_##name(void) \
    {                                                              \
        test__register(#name, test_##name);                        \
    }                                                              \
    static void test_##name(void)

#define ASSERT_TRUE(c)                                          \
    do {                                                        \
        if (!(c))                                               \
            test__fail(__FILE__, __LINE__, "expected: %s", #c); \
    } while (0)
#define ASSERT_FALSE(c) ASSERT_TRUE(!(c))

#define ASSERT_INT_EQ(a, b)                                                           \
    do {                                                                              \
        long long a_ = (long long)(a), b_ = (long long)(b);                           \
        if (a_ != b_)                                                                 \
            test__fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, a_, b_); \
    } while (0)

#define ASSERT_UINT_EQ(a, b)                                                          \
    do {                                                                              \
        unsigned long long a_ = (unsigned long long)(a);                              \
        unsigned long long b_ = (unsigned long long)(b);                              \
        if (a_ != b_)                                                                 \
            test__fail(__FILE__, __LINE__, "%s == %s: %llu != %llu", #a, #b, a_, b_); \
    } while (0)

#define ASSERT_INT_OP(a, op, b)                                                       \
    do {                                                                              \
        long long a_ = (long long)(a), b_ = (long long)(b);                           \
        if (!(a_ op b_))                                                              \
            test__fail(__FILE__, __LINE__, "%s %s %s: %lld vs %lld", #a, #op, #b, a_, \
                       b_);                                                           \
    } while (0)

/* rv must equal the cm_err @code; prints both names on failure. */
#define ASSERT_ERR(rv, code)                                                         \
    do {                                                                             \
        int r_ = (rv), c_ = (code);                                                  \
        if (r_ != c_)                                                                \
            test__fail(__FILE__, __LINE__, "%s: got %d (%s), want %d (%s)", #rv, r_, \
                       cm_strerror(r_), c_, cm_strerror(c_));                        \
    } while (0)
#define ASSERT_OK(rv) ASSERT_ERR(rv, 0)

#define ASSERT_STR_EQ(a, b)                                                      \
    do {                                                                         \
        const char *a_ = (a), *b_ = (b);                                         \
        if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0)                     \
            test__fail(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"", #a, #b, \
                       a_ ? a_ : "(null)", b_ ? b_ : "(null)");                  \
    } while (0)

#define ASSERT_MEM_EQ(a, b, n)                                                           \
    do {                                                                                 \
        if (memcmp((a), (b), (n)) != 0)                                                  \
            test__fail(__FILE__, __LINE__, "%s == %s (%zu bytes)", #a, #b, (size_t)(n)); \
    } while (0)

#define ASSERT_NULL(p)     ASSERT_TRUE((p) == NULL)
#define ASSERT_NOT_NULL(p) ASSERT_TRUE((p) != NULL)

/* Print @text as TAP comment lines ("# " before every line). */
void test_note(const char *text);

/* Walk an injected allocation failure over every allocation @fn makes: for
 * i = 0, 1, ... run @fn with the i-th allocation failing, until a run finishes
 * without reaching the fault. @fn returns 0 on success or a negative cm_err; when
 * the fault fired it must fail with CM_ENOMEM (and leave no leak; ASan checks).
 * Returns the number of failure points walked. */
int test_alloc_walk(int (*fn)(void *arg), void *arg);

#endif
