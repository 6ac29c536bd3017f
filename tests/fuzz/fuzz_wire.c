/* Fuzz the read cursor: interpret the input as a little program of reads against
 * itself, so every read width, seek and take is driven by untrusted bytes. The
 * cursor must never read outside the buffer (ASan checks) and its invariants must
 * hold after every step. */
#include <stdlib.h>

#include "base/base.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cm_wire w;
    struct cm_wire prog;
    /* Copy so ASan catches reads one past the end of the exact-size buffer. */
    uint8_t *copy = malloc(size ? size : 1);
    if (copy == NULL) {
        return 0;
    }
    memcpy(copy, data, size);
    cm_wire_init(&w, copy, size);
    cm_wire_init(&prog, data, size);
    uint8_t sink[64];
    unsigned steps = 0;
    while (cm_wire_remaining(&prog) > 0 && steps++ < 4096) {
        uint8_t op = cm_wire_u8(&prog);
        size_t before = cm_wire_offset(&w);
        int err_before = cm_wire_err(&w);
        switch (op % 9) {
        case 0:
            (void)cm_wire_u8(&w);
            break;
        case 1:
            (void)cm_wire_u16(&w);
            break;
        case 2:
            (void)cm_wire_u32(&w);
            break;
        case 3:
            (void)cm_wire_u64(&w);
            break;
        case 4:
            cm_wire_read(&w, sink, cm_wire_u8(&prog) % sizeof(sink));
            break;
        case 5: {
            size_t n = cm_wire_u16(&prog);
            const uint8_t *p = cm_wire_take(&w, n);
            if (p != NULL && n > 0) {
                sink[0] = p[n - 1]; /* touch the last byte taken */
            }
            break;
        }
        case 6:
            cm_wire_skip(&w, cm_wire_u16(&prog));
            break;
        case 7:
            cm_wire_seek(&w, cm_wire_u16(&prog));
            break;
        case 8:
            (void)cm_wire_peek_u8(&w);
            break;
        }
        if (cm_wire_offset(&w) > size) {
            abort();
        }
        if (err_before != 0 &&
            (cm_wire_err(&w) != err_before || cm_wire_offset(&w) != before)) {
            abort(); /* errors are sticky and stop the cursor */
        }
        if (cm_wire_err(&w) != 0 && cm_wire_remaining(&w) != 0) {
            abort();
        }
    }
    free(copy);
    return 0;
}
