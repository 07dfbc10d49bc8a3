#include "store/schema.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
schema_check(const char *database_url, char *err, size_t errlen)
{
	const char *keys[] = { "dbname", "connect_timeout", NULL };
	const char *vals[] = { database_url, "5", NULL };
	PGconn *conn = PQconnectdbParams(keys, vals, 1);
	PGresult *res = NULL;
	long version = 0;
	int rc = -1;
	char *nl;

	if (PQstatus(conn) != CONNECTION_OK) {
		snprintf(err, errlen, "cannot connect to PostgreSQL (database_url): %s",
		    PQerrorMessage(conn));
		goto fail;
	}
	res = PQexec(conn, "SELECT coalesce(max(version), 0) FROM schema_migrations");
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
		version = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	if (version < SCHEMA_VERSION) {
		snprintf(err, errlen, "database schema is at version %ld, chatd needs %d: "
		    "run `make migrate` (or scripts/migrate.sh DATABASE_URL) first",
		    version, SCHEMA_VERSION);
		goto fail;
	}
	rc = 0;
fail:
	if (rc != 0 && (nl = strchr(err, '\n')) != NULL)
		*nl = '\0';
	PQclear(res);
	PQfinish(conn);
	return rc;
}
