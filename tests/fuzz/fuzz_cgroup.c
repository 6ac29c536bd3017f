/* Fuzz the isolation/ parsers of kernel text (STYLE.md rule 20): the first byte
 * picks the parser, the rest is the file's content. The parsers take (pointer,
 * length) and must never read past it (the replay copies each input to an
 * exact-size buffer, so ASan sees any overrun) and must keep their invariants. */
#include <stdlib.h>

#include "base/base.h"
#include "fuzz.h"
#include "isolation/isolation.h"

static void check_str(struct iso_str s, const uint8_t *data, size_t size)
{
    if (s.len > 0 &&
        ((const uint8_t *)s.ptr < data || (const uint8_t *)s.ptr + s.len > data + size)) {
        abort(); /* a slice must lie inside the input */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    uint8_t which = data[0];
    const char *t = (const char *)data + 1;
    size_t len = size - 1;
    uint64_t v;
    int rv = 0;
    switch (which % 12) {
    case 0: {
        struct iso_proc_cgroup_line l;
        rv = iso_parse_proc_cgroup_line(t, len, &l);
        if (rv == 0) {
            check_str(l.controllers, data, size);
            check_str(l.path, data, size);
            if (l.path.len == 0 || l.path.ptr[0] != '/') {
                abort();
            }
        }
        break;
    }
    case 1: {
        struct iso_str p;
        rv = iso_proc_cgroup_find(t, len, (which & 0x80) ? "memory" : NULL, &p);
        if (rv == 0) {
            check_str(p, data, size);
        }
        break;
    }
    case 2: {
        struct iso_mountinfo_line mi;
        rv = iso_parse_mountinfo_line(t, len, &mi);
        if (rv == 0 &&
            (mi.mount_point[0] != '/' ||
             strnlen(mi.mount_point, ISO_MOUNT_PATH_MAX) >= ISO_MOUNT_PATH_MAX)) {
            abort();
        }
        break;
    }
    case 3: {
        struct iso_cg_layout l;
        rv = iso_parse_cg_layout(t, len, &l);
        if (rv == 0 && (unsigned)l.mode > ISO_CG_MODE_UNIFIED) {
            abort();
        }
        break;
    }
    case 4: {
        struct iso_cpu_max m;
        rv = iso_parse_cpu_max(t, len, &m);
        if (rv == 0 && m.period_us == 0) {
            abort();
        }
        break;
    }
    case 5:
        rv = iso_parse_limit(t, len, &v);
        break;
    case 6:
        rv = iso_parse_u64(t, len, &v);
        if (rv == 0 && v == ISO_UNLIMITED && len < 20) {
            abort(); /* only a 20-digit number can reach UINT64_MAX */
        }
        break;
    case 7: {
        struct iso_mem_events ev;
        rv = iso_parse_mem_events(t, len, &ev);
        break;
    }
    case 8: {
        struct iso_cpu_stat cs;
        rv = iso_parse_cpu_stat(t, len, &cs);
        break;
    }
    case 9: {
        struct iso_mem_stat ms;
        rv = iso_parse_mem_stat(t, len, &ms);
        break;
    }
    case 10: {
        struct iso_oom_control oc;
        rv = iso_parse_oom_control(t, len, &oc);
        break;
    }
    case 11:
        rv = iso_parse_keyed(t, len, "oom_kill", &v);
        break;
    }
    if (rv > 0) {
        abort(); /* errors are negative cm_err codes */
    }
    return 0;
}
