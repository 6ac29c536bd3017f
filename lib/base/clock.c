/* Injectable clocks. */
#include "base.h"

#include <stdio.h>
#include <time.h>

static uint64_t system_mono_ns(struct cm_clock *c)
{
    (void)c;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int64_t system_real_ns(struct cm_clock *c)
{
    (void)c;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static struct cm_clock system_clock = {system_mono_ns, system_real_ns};

struct cm_clock *cm_clock_system(void)
{
    return &system_clock;
}

static uint64_t manual_mono_ns(struct cm_clock *c)
{
    return cm_container_of(c, struct cm_clock_manual, clock)->mono;
}

static int64_t manual_real_ns(struct cm_clock *c)
{
    return cm_container_of(c, struct cm_clock_manual, clock)->real;
}

void cm_clock_manual_init(struct cm_clock_manual *m, uint64_t mono_ns, int64_t real_ns)
{
    m->clock.mono_ns = manual_mono_ns;
    m->clock.real_ns = manual_real_ns;
    m->mono = mono_ns;
    m->real = real_ns;
}

void cm_clock_manual_advance(struct cm_clock_manual *m, uint64_t ns)
{
    m->mono += ns;
    m->real += (int64_t)ns;
}

void cm_clock_manual_set_real(struct cm_clock_manual *m, int64_t real_ns)
{
    m->real = real_ns;
}

char *cm_time_iso8601(int64_t real_ms, char out[32])
{
    int64_t ms = real_ms % 1000;
    time_t secs = (time_t)(real_ms / 1000);
    if (ms < 0) {
        ms += 1000;
        secs -= 1;
    }
    struct tm tm;
    if (gmtime_r(&secs, &tm) == NULL) {
        snprintf(out, 32, "invalid-time");
        return out;
    }
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03dZ", (int)ms);
    return out;
}
