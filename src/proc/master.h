#ifndef CHATD_MASTER_H
#define CHATD_MASTER_H

#include "proc/config.h"

/* The parent process: checks the schema and the port, forks the workers,
 * restarts one that dies, and on SIGTERM/SIGINT drains them all and exits.
 * Returns the process exit code. */
int master_run(const struct cfg *cfg);

#endif
