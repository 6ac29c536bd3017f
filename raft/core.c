/* raft/core.c: being written. */
#include "raft/raft.h"
