/* raft/transport.c: being written. */
#include "raft/raft.h"
