#ifndef CHATD_WORKER_H
#define CHATD_WORKER_H

#include "proc/config.h"

/* A worker process: its own libuv loop carrying chatd's HTTP and WebSocket (on its own
 * SO_REUSEPORT listening socket), hiredis and libpq. Returns the process
 * exit code after a drain. */
int worker_run(const struct cfg *cfg, int index);

/* Opens the listening socket every worker shares by SO_REUSEPORT. -1 with
 * errno on failure. */
int worker_listen_socket(const struct cfg *cfg);

#endif
