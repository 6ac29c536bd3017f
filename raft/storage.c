/* raft/storage.c: being written. */
#include "raft/raft.h"
