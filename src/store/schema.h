#ifndef CHATD_SCHEMA_H
#define CHATD_SCHEMA_H

#include <stddef.h>

/* The newest migration in sql/ this binary was written against. */
#define SCHEMA_VERSION 7

/* Blocking check, run by the parent before any worker starts: PostgreSQL
 * answers and its schema is not behind. On failure err says what to do. */
int schema_check(const char *database_url, char *err, size_t errlen);

#endif
