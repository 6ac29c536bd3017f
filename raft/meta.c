/* raft_snapshot_meta: what a snapshot taken at an index must record. */
#include "raft/core_int.h"

int raft_snapshot_meta(const struct raft *r, raft_index index, raft_term *ret_term,
                       struct raft_config *ret_config, raft_index *ret_config_index)
{
    raft_term term;
    if (index == 0 || index < r->snap.index || index > raft__last_index(r) ||
        !raft__term_at(r, index, &term)) {
        return CM_ENOTFOUND;
    }
    struct raft_config c = {0};
    raft_index ci;
    int rv = raft__config_at(r, index, &c, &ci);
    if (rv != 0) {
        return rv;
    }
    *ret_term = term;
    *ret_config = c;
    *ret_config_index = ci;
    return 0;
}
