/*-------------------------------------------------------------------------
 *
 * pgstream.c
 *	  The bridge's side of Postgres: catalog lookups and the slot's stream.
 *
 * Two connections to the same database.  One is a replication connection
 * (replication=database) that runs START_REPLICATION on the slot and then
 * carries the plugin's lines one by one (XLogData) and keepalives, and our
 * standby status updates back; the other is an ordinary connection for the
 * catalog: which streams exist and how many shards each has, whether the
 * slot is there and uses the event_log plugin, and the server's current
 * WAL position for the lag report.  The ordinary connection pins
 * search_path to nothing and qualifies every name and operator, so a
 * role's objects cannot stand in for the catalog's.
 *
 * Errors: what a human must fix (no slot, a slot of another plugin, a
 * stream that is not one) exits BR_EXIT_CONFIG; what a restart may cure
 * (the server is down, the slot is busy, the connection broke) exits
 * BR_EXIT_TEMPFAIL.
 *
 *-------------------------------------------------------------------------
 */
#include "bridge.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/time.h>
#include <time.h>

#include <libpq-fe.h>

struct BrPg
{
	PGconn	   *repl;			/* replication=database */
	PGconn	   *sql;			/* the catalog */
	char	   *copybuf;		/* the last row PQgetCopyData returned */
};

/* Seconds from the Unix epoch to PostgreSQL's (2000-01-01). */
#define BR_PG_EPOCH_OFFSET 946684800LL

static PGconn *
connect_db(const char *conninfo, bool replication)
{
	const char *keys[] = {"dbname", "replication", "fallback_application_name", NULL};
	const char *vals[] = {conninfo, "database", "event_log_kafka", NULL};
	PGconn	   *conn;

	if (!replication)
	{
		keys[1] = "fallback_application_name";
		vals[1] = "event_log_kafka";
		keys[2] = vals[2] = NULL;
	}
	conn = PQconnectdbParams(keys, vals, 1);
	if (conn == NULL || PQstatus(conn) != CONNECTION_OK)
		br_fatal(BR_EXIT_TEMPFAIL, "could not connect to the database%s: %s",
				 replication ? " for replication" : "",
				 conn ? PQerrorMessage(conn) : "out of memory");
	return conn;
}

/* Run a query on the catalog connection; exits on failure. */
static PGresult *
query(BrPg *pg, const char *sql, int nparams, const char *const *params)
{
	PGresult   *res = PQexecParams(pg->sql, sql, nparams, NULL, params, NULL, NULL, 0);

	if (PQresultStatus(res) != PGRES_TUPLES_OK && PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		if (PQstatus(pg->sql) != CONNECTION_OK)
			br_fatal(BR_EXIT_TEMPFAIL, "lost the connection to the database: %s",
					 PQerrorMessage(pg->sql));
		br_fatal(BR_EXIT_CONFIG, "query on the catalog failed: %s", PQerrorMessage(pg->sql));
	}
	return res;
}

BrPg *
br_pg_connect(const char *conninfo)
{
	BrPg	   *pg = br_malloc(sizeof(BrPg));
	PGresult   *res;

	pg->copybuf = NULL;
	pg->sql = connect_db(conninfo, false);
	res = query(pg, "SELECT pg_catalog.set_config('search_path', '', false)", 0, NULL);
	PQclear(res);
	res = query(pg, "SELECT 1 FROM pg_catalog.pg_extension "
				"WHERE extname OPERATOR(pg_catalog.=) 'event_log'", 0, NULL);
	if (PQntuples(res) != 1)
		br_fatal(BR_EXIT_CONFIG, "extension \"event_log\" is not installed in database \"%s\"",
				 PQdb(pg->sql));
	PQclear(res);

	/* Without this the replication connection fails with a FATAL; say why here. */
	res = query(pg, "SELECT rolreplication OR rolsuper FROM pg_catalog.pg_roles "
				"WHERE rolname OPERATOR(pg_catalog.=) CURRENT_USER", 0, NULL);
	if (PQntuples(res) != 1 || strcmp(PQgetvalue(res, 0, 0), "t") != 0)
	{
		const char *user = PQuser(pg->sql);
		char	   *quoted = PQescapeIdentifier(pg->sql, user, strlen(user));

		br_fatal(BR_EXIT_CONFIG, "role \"%s\" may not read replication slots\n"
				 "HINT:  Give the bridge's role the REPLICATION attribute: ALTER ROLE %s REPLICATION;",
				 user, quoted ? quoted : user);
	}
	PQclear(res);
	pg->repl = connect_db(conninfo, true);
	return pg;
}

/* The slot must exist in this database and decode with event_log. */
void
br_pg_check_slot(BrPg *pg, const char *slot)
{
	const char *params[] = {slot};
	PGresult   *res = query(pg,
							"SELECT plugin, database OPERATOR(pg_catalog.=) pg_catalog.current_database() "
							"FROM pg_catalog.pg_replication_slots "
							"WHERE slot_name OPERATOR(pg_catalog.=) $1", 1, params);

	if (PQntuples(res) == 0)
		br_fatal(BR_EXIT_CONFIG, "replication slot \"%s\" does not exist\n"
				 "HINT:  Create it with: SELECT pg_create_logical_replication_slot('%s', 'event_log'); "
				 "or start the bridge with --create-slot.", slot, slot);
	if (PQgetisnull(res, 0, 0) || strcmp(PQgetvalue(res, 0, 0), "event_log") != 0)
		br_fatal(BR_EXIT_CONFIG, "replication slot \"%s\" does not use the event_log output plugin", slot);
	if (strcmp(PQgetvalue(res, 0, 1), "t") != 0)
		br_fatal(BR_EXIT_CONFIG, "replication slot \"%s\" belongs to another database", slot);
	PQclear(res);
}

#define STREAM_COLUMNS \
	"SELECT pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.' " \
	"       OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname), " \
	"       n.nspname, c.relname, s.shards " \
	"FROM event_log.streams s " \
	"JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) s.stream::pg_catalog.oid " \
	"JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace "

static void
fill_info(PGresult *res, int row, BrStreamInfo *info)
{
	info->name = br_strdup(PQgetvalue(res, row, 0));
	info->schema = br_strdup(PQgetvalue(res, row, 1));
	info->table = br_strdup(PQgetvalue(res, row, 2));
	info->shards = atoi(PQgetvalue(res, row, 3));
}

/*
 * The streams the bridge carries: those named (each must be a stream), or
 * every stream of the database.  Returns how many, in a new array.
 */
int
br_pg_list_streams(BrPg *pg, char **names, int nnames, BrStreamInfo **streams)
{
	PGresult   *res;
	int			n;

	if (nnames == 0)
	{
		res = query(pg, STREAM_COLUMNS "ORDER BY 1", 0, NULL);
		n = PQntuples(res);
		*streams = br_malloc(sizeof(BrStreamInfo) * (n > 0 ? n : 1));
		for (int i = 0; i < n; i++)
			fill_info(res, i, &(*streams)[i]);
		PQclear(res);
		return n;
	}

	*streams = br_malloc(sizeof(BrStreamInfo) * nnames);
	for (int i = 0; i < nnames; i++)
	{
		const char *params[] = {names[i]};

		/* search_path is empty: a name without its schema finds nothing */
		res = query(pg, STREAM_COLUMNS
					"WHERE s.stream OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1)::pg_catalog.oid",
					1, params);
		if (PQntuples(res) != 1)
			br_fatal(BR_EXIT_CONFIG, "event stream \"%s\" does not exist\n"
					 "HINT:  Name streams with their schema, as in the output plugin's streams option: "
					 "public.carts, app.\"Cart Events\".", names[i]);
		fill_info(res, 0, &(*streams)[i]);
		PQclear(res);
	}
	return nnames;
}

/* A stream by the name the plugin wrote; false if it is no longer there. */
bool
br_pg_lookup_stream(BrPg *pg, const char *name, BrStreamInfo *info)
{
	const char *params[] = {name};
	PGresult   *res = query(pg, STREAM_COLUMNS
							"WHERE pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.' "
							"OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname) "
							"OPERATOR(pg_catalog.=) $1", 1, params);
	bool		found = PQntuples(res) == 1;

	if (found)
		fill_info(res, 0, info);
	PQclear(res);
	return found;
}

/* The server's current WAL position, or 0 if it cannot be read now. */
br_lsn
br_pg_current_lsn(BrPg *pg)
{
	PGresult   *res = PQexec(pg->sql, "SELECT pg_catalog.pg_current_wal_lsn()");
	br_lsn		lsn = BR_INVALID_LSN;

	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
		(void) br_parse_lsn(PQgetvalue(res, 0, 0), &lsn);
	PQclear(res);
	return lsn;
}

bool
br_parse_lsn(const char *s, br_lsn *lsn)
{
	unsigned int hi,
				lo;
	int			n = 0;

	if (sscanf(s, "%X/%X%n", &hi, &lo, &n) != 2 || s[n] != '\0')
		return false;
	*lsn = ((br_lsn) hi << 32) | lo;
	return true;
}

/*
 * s appended to buf between two quote characters, a quote inside doubled:
 * a literal ('...') or an identifier ("...") of the replication grammar.
 */
static void
append_quoted(char *buf, size_t size, const char *s, char quote)
{
	size_t		n = strlen(buf);

	if (n + 1 < size)
		buf[n++] = quote;
	for (; *s && n + 3 < size; s++)
	{
		if (*s == quote)
			buf[n++] = quote;
		buf[n++] = *s;
	}
	if (*s)
		br_fatal(BR_EXIT_USAGE, "the plugin options are too long");
	buf[n++] = quote;
	buf[n] = '\0';
}

/*
 * START_REPLICATION on the slot, from its confirmed position, with
 * include-transaction on (the ledger needs each transaction's end) and the
 * user's plugin options (name=value strings).
 */
void
br_pg_start(BrPg *pg, const char *slot, const char *streams_option,
			char **plugin_options, int noptions)
{
	size_t		size = 64 * 1024;
	char	   *cmd = br_malloc(size);
	PGresult   *res;

	snprintf(cmd, size, "START_REPLICATION SLOT ");
	append_quoted(cmd, size, slot, '"');
	strcat(cmd, " LOGICAL 0/0 (\"include-transaction\" 'on'");
	if (streams_option)
	{
		strcat(cmd, ", \"streams\" ");
		append_quoted(cmd, size, streams_option, '\'');
	}
	for (int i = 0; i < noptions; i++)
	{
		char	   *eq = strchr(plugin_options[i], '=');
		char	   *name = br_strndup(plugin_options[i], (size_t) (eq - plugin_options[i]));

		if (strlen(cmd) + strlen(plugin_options[i]) + 16 >= size)
			br_fatal(BR_EXIT_USAGE, "the plugin options are too long");
		strcat(cmd, ", ");
		append_quoted(cmd, size, name, '"');
		strcat(cmd, " ");
		append_quoted(cmd, size, eq + 1, '\'');
		free(name);
	}
	strcat(cmd, ")");
	br_debug("%s", cmd);

	res = PQexec(pg->repl, cmd);
	if (PQresultStatus(res) != PGRES_COPY_BOTH)
	{
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		/* 55006: the slot is active for another process; retry later */
		br_fatal(state == NULL || strcmp(state, "55006") == 0 ||
				 strncmp(state, "08", 2) == 0 || strncmp(state, "57", 2) == 0 ?
				 BR_EXIT_TEMPFAIL : BR_EXIT_CONFIG,
				 "could not start replication on slot \"%s\": %s",
				 slot, PQerrorMessage(pg->repl));
	}
	PQclear(res);
	free(cmd);
}

static uint64_t
get_u64(const char *p)
{
	uint64_t	v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | (unsigned char) p[i];
	return v;
}

static void
put_u64(char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--)
	{
		p[i] = (char) (v & 0xFF);
		v >>= 8;
	}
}

/*
 * The next message of the stream, if one is there.  Data stays valid until
 * the next call.
 */
BrPgResult
br_pg_read(BrPg *pg, const char **data, size_t *len, br_lsn *lsn,
		   bool *reply_requested)
{
	int			r;

	if (pg->copybuf)
	{
		PQfreemem(pg->copybuf);
		pg->copybuf = NULL;
	}
	r = PQgetCopyData(pg->repl, &pg->copybuf, 1);
	if (r == 0)
		return BR_PG_NOTHING;
	if (r == -1)
	{
		PGresult   *res = PQgetResult(pg->repl);

		br_log("the server ended the replication stream: %s",
			   PQresultStatus(res) == PGRES_COMMAND_OK ? "done" : PQerrorMessage(pg->repl));
		PQclear(res);
		return BR_PG_END;
	}
	if (r == -2)
		br_fatal(BR_EXIT_TEMPFAIL, "lost the replication connection: %s",
				 PQerrorMessage(pg->repl));

	if (pg->copybuf[0] == 'w' && r >= 25)
	{
		*lsn = get_u64(pg->copybuf + 1);
		*data = pg->copybuf + 25;
		*len = (size_t) r - 25;
		return BR_PG_DATA;
	}
	if (pg->copybuf[0] == 'k' && r >= 18)
	{
		*lsn = get_u64(pg->copybuf + 1);
		*reply_requested = pg->copybuf[17] != 0;
		return BR_PG_KEEPALIVE;
	}
	br_fatal(BR_EXIT_SOFTWARE, "unexpected message of type \"%c\" on the replication stream",
			 pg->copybuf[0]);
}

/* Wait up to timeout_ms for the replication connection to have input. */
void
br_pg_wait(BrPg *pg, int timeout_ms)
{
	int			sock = PQsocket(pg->repl);
	fd_set		fds;
	struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};

	if (sock < 0)
		br_fatal(BR_EXIT_TEMPFAIL, "lost the replication connection: invalid socket");
	FD_ZERO(&fds);
	FD_SET(sock, &fds);
	if (select(sock + 1, &fds, NULL, NULL, &tv) < 0 && errno != EINTR)
		br_fatal(BR_EXIT_SOFTWARE, "select() failed: %s", strerror(errno));
	if (!PQconsumeInput(pg->repl))
		br_fatal(BR_EXIT_TEMPFAIL, "lost the replication connection: %s",
				 PQerrorMessage(pg->repl));
}

/*
 * A standby status update: received is the last position read, confirmed
 * the one the slot may restart from (its confirmed_flush_lsn).
 */
void
br_pg_feedback(BrPg *pg, br_lsn received, br_lsn confirmed)
{
	char		msg[1 + 8 + 8 + 8 + 8 + 1];
	struct timeval tv;

	gettimeofday(&tv, NULL);
	msg[0] = 'r';
	put_u64(msg + 1, received);
	put_u64(msg + 9, confirmed);
	put_u64(msg + 17, confirmed);
	put_u64(msg + 25, (uint64_t) ((tv.tv_sec - BR_PG_EPOCH_OFFSET) * 1000000LL + tv.tv_usec));
	msg[33] = 0;
	if (PQputCopyData(pg->repl, msg, sizeof(msg)) <= 0 || PQflush(pg->repl) != 0)
		br_fatal(BR_EXIT_TEMPFAIL, "could not send feedback to the server: %s",
				 PQerrorMessage(pg->repl));
}

void
br_pg_finish(BrPg *pg)
{
	if (pg->copybuf)
		PQfreemem(pg->copybuf);
	PQfinish(pg->repl);
	PQfinish(pg->sql);
	free(pg);
}
