/* raft/codec.c: being written. */
#include "raft/raft.h"
