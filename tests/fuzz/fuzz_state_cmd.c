/* Fuzz the state machine's command parser (validation, then apply) with untrusted
 * JSON, including the vips commands: validation must name a field or accept, and
 * apply of an accepted command must succeed. One in-memory state.db per process
 * (SQLite ":memory:"), so inputs see the effects of earlier ones. */
#include <stdlib.h>

#include "base/base.h"
#include "fuzz.h"
#include "state/db.h"

static struct cm_state *state;
static uint64_t next_index;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cm_errbuf eb = {0};
    if (state == NULL) {
        if (cm_state_open(":memory:", &state, &eb) != 0) {
            abort();
        }
        next_index = 1;
    }
    int rv = cm_state_validate(state, data, size, &eb);
    if (rv != 0) {
        if (eb.msg[0] == '\0' || memchr(eb.msg, '\0', sizeof(eb.msg)) == NULL) {
            abort();
        }
        return 0;
    }
    if (cm_state_apply(state, next_index++, data, size, &eb) != 0) {
        abort();
    }
    return 0;
}
