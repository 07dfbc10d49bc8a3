#ifndef CHATD_GUARD_H
#define CHATD_GUARD_H

#include <stdint.h>

/* Limits at the door, shared by every worker of this instance (a table in
 * shared memory mapped by the parent before fork): connection attempts and
 * failed authentications per IP in fixed windows, open connections per IP
 * and per user. Answered synchronously, within the upgrade request.
 * They are per instance, not global: several instances multiply them. */

struct cfg;

int admit_init(const struct cfg *c);
/* Parent: a worker died; forget the connections it held. */
void admit_worker_died(int index);
void admit_set_self(int index);

/* 0 allowed, -1 over the limit. admit_attempt counts the attempt. */
int admit_attempt(const char *ip);
int admit_auth_blocked(const char *ip);
void admit_auth_failed(const char *ip);
/* Read-only check before accepting: 0 ok, -1 too many for the IP,
 * -2 too many for the user. */
int admit_conn_check(const char *ip, const char *tenant, const char *user);
void admit_conn_opened(const char *ip, const char *tenant, const char *user);
void admit_conn_closed(const char *ip, const char *tenant, const char *user);

#endif
