/* raft/config.c: being written. */
#include "raft/raft.h"
