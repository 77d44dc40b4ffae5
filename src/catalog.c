/*
 * catalog.c
 *	  Where our catalog lives, and how our C code runs SQL.
 *
 *	  There are three ways, each written once here:
 *
 *	  - el_catalog_sql(): a statement on our catalog tables (the registry,
 *		projections, consumer groups and their offsets), run as the
 *		catalog's owner.  Users have no privileges on most of the catalog;
 *		the SQL functions that call this check what they allow first, the
 *		way PostgreSQL's foreign-key triggers act as the table's owner.
 *	  - el_exec_as(): a utility command we generate (CREATE TABLE, DROP
 *		VIEW, ...) run as a given role: a projection's or a stream's owner.
 *	  - el_exec_as_caller(): a statement run as the calling user, under the
 *		caller's own search_path.
 *
 *	  The catalog's owner is the owner of event_log.streams, that is the role
 *	  that created the extension: every catalog table is created by the
 *	  same script.
 *
 *	  Nothing of the caller's may run as another role.  Statements run as
 *	  the catalog's owner or as a role we switch to are prepared and executed
 *	  with pg_catalog as the whole search_path (a plan whose search_path
 *	  differs from the current one is analyzed again under the current one,
 *	  so pinning the path only while preparing would not be enough), in a
 *	  security-restricted operation, and name every table, operator and
 *	  function schema-qualified besides.  sql/hostile_*.sql shadow those
 *	  names from a schema first on the caller's path.
 *
 *	  If a statement fails, transaction (or subtransaction) abort restores
 *	  the user, the security context, the settings and the search path.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/varlena.h"

#include "catalog.h"
#include "event_log.h"

/* ----------------------------------------------------------------
 * Where the catalog is
 * ----------------------------------------------------------------
 */

Oid
el_schema_oid(void)
{
	return get_namespace_oid("event_log", false);
}

/* OID of event_log.streams; InvalidOid if missing_ok and it is not there. */
Oid
el_registry_oid(bool missing_ok)
{
	Oid			nsp = get_namespace_oid("event_log", missing_ok);
	Oid			relid = InvalidOid;

	if (OidIsValid(nsp))
		relid = get_relname_relid("streams", nsp);
	if (!OidIsValid(relid) && !missing_ok)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("event_log.streams does not exist"),
				 errhint("Is the event_log extension installed in this database?")));
	return relid;
}

/* OID of the catalog table event_log.<name>, which must exist. */
Oid
el_catalog_relid(const char *name)
{
	Oid			relid = get_relname_relid(name, el_schema_oid());

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("event_log.%s does not exist", name),
				 errhint("Is the event_log extension installed in this database?")));
	return relid;
}

/* The owner of a relation (a projection's owner is its view's). */
Oid
el_rel_owner(Oid relid)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/* The catalog's owner: the owner of event_log.streams. */
Oid
el_catalog_owner(void)
{
	return el_rel_owner(el_registry_oid(false));
}

/*
 * Resolve operators, functions and types in pg_catalog only, whatever the
 * session's search_path (which a superuser's, or the worker's, session may
 * not want to trust).
 */
void
el_push_catalog_path(void)
{
	static OverrideSearchPath path = {.schemas = NIL, .addCatalog = true, .addTemp = false};

	PushOverrideSearchPath(&path);
}

/* ----------------------------------------------------------------
 * Statements on the catalog, as its owner
 * ----------------------------------------------------------------
 */

/*
 * Kept plans of catalog statements, by their text.  The catalog's tables
 * are small and looked up by key: the generic plan is prepared once per
 * backend and never planned again (the plan cache still analyzes it anew
 * after an invalidation, under the pinned path).
 */
typedef struct ElKeptPlan
{
	const char *sql;			/* hash key: the text, ours */
	SPIPlanPtr	plan;
} ElKeptPlan;

static HTAB *el_kept_plans = NULL;

static uint32
el_sql_hash(const void *key, Size keysize)
{
	const char *sql = *(const char *const *) key;

	return hash_bytes((const unsigned char *) sql, strlen(sql));
}

static int
el_sql_match(const void *key1, const void *key2, Size keysize)
{
	return strcmp(*(const char *const *) key1, *(const char *const *) key2);
}

static SPIPlanPtr
el_kept_plan(const char *sql, int nargs, const Oid *types)
{
	ElKeptPlan *entry;
	SPIPlanPtr	plan;
	bool		found;

	if (el_kept_plans == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(const char *);
		ctl.entrysize = sizeof(ElKeptPlan);
		ctl.hash = el_sql_hash;
		ctl.match = el_sql_match;
		el_kept_plans = hash_create("event_log catalog plans", 64, &ctl,
									HASH_ELEM | HASH_FUNCTION | HASH_COMPARE);
	}
	entry = hash_search(el_kept_plans, &sql, HASH_FIND, NULL);
	if (entry != NULL)
		return entry->plan;

	plan = SPI_prepare_cursor(sql, nargs, (Oid *) types, CURSOR_OPT_GENERIC_PLAN);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql,
			 SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	entry = hash_search(el_kept_plans, &sql, HASH_ENTER, &found);
	entry->sql = MemoryContextStrdup(TopMemoryContext, sql);
	entry->plan = plan;
	return plan;
}

static uint64 el_run_as(Oid role, const char *sql, int nargs, const Oid *types,
						Datum *values, const char *nulls, int flags, long tcount,
						bool user_code);

/*
 * Run one statement on our catalog as the catalog's owner; the caller is
 * connected to SPI and has made its own privilege checks.  The statement is
 * our own fixed text, with everything in it schema-qualified.  flags:
 * EL_CAT_READ for a read-only statement, EL_CAT_LATEST to read with the
 * latest snapshot (catalog rows that may have changed since the caller's
 * statement began, as catalog lookups do).  At most tcount rows (0: all).
 * Returns SPI_processed; the rows are in SPI_tuptable.
 */
uint64
el_catalog_sql(const char *sql, int nargs, const Oid *types, Datum *values,
			   const char *nulls, int flags, long tcount)
{
	return el_run_as(el_catalog_owner(), sql, nargs, types, values, nulls,
					 flags, tcount, false);
}

/*
 * The same, as another role: a statement whose text a role owns (an
 * upcaster's expression, written by the stream's owner), run as that role
 * in a security-restricted operation with pg_catalog as the whole path, so
 * that nothing of the caller's session resolves in it.  Kept plans by text,
 * as above.  Settings it changes (set_config() in its code) are undone.
 */
uint64
el_query_as(Oid role, const char *sql, int nargs, const Oid *types,
			Datum *values, const char *nulls, int flags, long tcount)
{
	return el_run_as(role, sql, nargs, types, values, nulls, flags, tcount, true);
}

static uint64
el_run_as(Oid role, const char *sql, int nargs, const Oid *types,
		  Datum *values, const char *nulls, int flags, long tcount,
		  bool user_code)
{
	bool		read_only = (flags & EL_CAT_READ) != 0;
	SPIPlanPtr	plan;
	Oid			save_user;
	int			save_sec;
	int			nestlevel = 0;
	int			rc;

	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(role,
						   save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	if (user_code)
		nestlevel = NewGUCNestLevel();
	el_push_catalog_path();
	plan = el_kept_plan(sql, nargs, types);
	if (flags & EL_CAT_LATEST)
		rc = SPI_execute_snapshot(plan, values, nulls, GetLatestSnapshot(),
								  InvalidSnapshot, read_only, false, tcount);
	else
		rc = SPI_execute_plan(plan, values, nulls, read_only, tcount);
	PopOverrideSearchPath();
	if (user_code)
		AtEOXact_GUC(false, nestlevel);
	SetUserIdAndSecContext(save_user, save_sec);
	if (rc < 0)
		elog(ERROR, "SPI_execute_plan failed on \"%s\": %s", sql,
			 SPI_result_code_string(rc));
	return SPI_processed;
}

/* ----------------------------------------------------------------
 * Commands as a given role, and as the caller
 * ----------------------------------------------------------------
 */

/*
 * Run one utility command as `role` (our own generated DDL), with
 * pg_catalog alone as the search path, or, for the build table's CREATE
 * TABLE (whose column types a user gives, and which runs as the
 * projection's owner), schema `nsp` and pg_catalog.  Never the caller's
 * path (the caller may be a superuser acting on someone else's
 * projection), and never another role's schema for a statement run as the
 * stream's owner: event triggers that fire for our DDL run under this path
 * and as `role`, and an operator in a schema on it can beat pg_catalog's
 * inexact one.  The names we generate are qualified.
 *
 * `restricted`: as a security-restricted operation, with settings restored
 * afterwards, as handlers run.  The command may run the role's own code
 * (CREATE TABLE computes a generated column's expression), which must not
 * act in the caller's session beyond the command (queue a deferred trigger
 * that fires as the caller at commit, create temporary objects, change
 * settings).  Only a rebuild's temporary view is not restricted: our own
 * text, which runs no user code.
 */
void
el_exec_as(Oid role, Oid nsp, const char *sql, bool restricted)
{
	OverrideSearchPath path = {.schemas = OidIsValid(nsp) ? list_make1_oid(nsp) : NIL,
	.addCatalog = true, .addTemp = false};
	Oid			save_user;
	int			save_sec;
	int			nestlevel;
	int			rc;

	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(role, save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   (restricted ? SECURITY_RESTRICTED_OPERATION : 0));
	nestlevel = NewGUCNestLevel();
	PushOverrideSearchPath(&path);
	rc = SPI_execute(sql, false, 0);
	PopOverrideSearchPath();
	AtEOXact_GUC(false, nestlevel);
	SetUserIdAndSecContext(save_user, save_sec);
	if (rc != SPI_OK_UTILITY)
		elog(ERROR, "SPI_execute failed on \"%s\": %s", sql,
			 SPI_result_code_string(rc));
}

/*
 * Run one statement as the calling user, under the session's search_path
 * (callers that must not depend on it pin pg_catalog around the call and
 * qualify what the text names), with the arguments as $1..$nargs, at most
 * tcount rows (0: all).  Returns SPI_processed.
 */
uint64
el_exec_as_caller(const char *sql, int nargs, Oid *types, Datum *values,
				  bool read_only, long tcount)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, values, NULL,
										   read_only, tcount);

	if (rc < 0)
		elog(ERROR, "SPI_execute failed on \"%s\": %s", sql,
			 SPI_result_code_string(rc));
	return SPI_processed;
}

/* ----------------------------------------------------------------
 * Names
 * ----------------------------------------------------------------
 */

/* Schema-qualified, quoted name of a relation, for messages and SQL. */
char *
el_qualified_name(Oid relid)
{
	char	   *relname = get_rel_name(relid);
	char	   *nspname;

	if (relname == NULL)
		return psprintf("%u", relid);
	nspname = get_namespace_name(get_rel_namespace(relid));
	return quote_qualified_identifier(nspname, relname);
}

/*
 * Split a possibly qualified name the way the SQL parser would, refusing
 * (instead of silently truncating) any part of NAMEDATALEN bytes or more.
 */
List *
el_parse_name(const char *name, const char *what)
{
	const char *p = name;
	char	   *copy;
	List	   *names;
	List	   *result = NIL;
	ListCell   *lc;

	/* First pass: measure each part before SplitIdentifierString truncates. */
	for (;;)
	{
		int			len = 0;

		while (isspace((unsigned char) *p))
			p++;
		if (*p == '"')
		{
			for (p++; *p; p++)
			{
				if (*p == '"')
				{
					if (p[1] != '"')
					{
						p++;
						break;
					}
					p++;
				}
				len++;
			}
		}
		else
		{
			while (*p && *p != '.' && !isspace((unsigned char) *p))
			{
				len++;
				p++;
			}
		}
		if (len >= NAMEDATALEN)
			ereport(ERROR,
					(errcode(ERRCODE_NAME_TOO_LONG),
					 errmsg("%s name \"%s\" is too long", what, name),
					 errdetail("Each part of a name must be shorter than %d bytes.",
							   NAMEDATALEN)));
		while (isspace((unsigned char) *p))
			p++;
		if (*p != '.')
			break;
		p++;
	}

	copy = pstrdup(name);
	if (!SplitIdentifierString(copy, '.', &names) || names == NIL ||
		list_length(names) > 3)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("invalid %s name \"%s\"", what, name),
				 errhint("Give a table name, optionally schema-qualified, such as \"shop.carts\".")));
	foreach(lc, names)
	{
		char	   *part = (char *) lfirst(lc);

		if (part[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_NAME),
					 errmsg("invalid %s name \"%s\"", what, name),
					 errdetail("Names must not be empty.")));
		result = lappend(result, makeString(part));
	}
	return result;
}

/* ----------------------------------------------------------------
 * Results
 * ----------------------------------------------------------------
 */

Datum
el_spi_value(uint64 row, int col, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col,
						 isnull);
}

bool
el_referencing_key(Oid relid, bool partitions, char **conname, Oid *conrelid,
				   Oid *confrelid)
{
	Datum		values[1] = {ObjectIdGetDatum(relid)};
	bool		isnull;

	/* pg_partition_tree() lists nothing for a table that is not partitioned */
	if (el_catalog_sql(partitions ?
					   "SELECT conname::pg_catalog.text, conrelid, confrelid"
					   " FROM pg_catalog.pg_constraint"
					   " WHERE (confrelid OPERATOR(pg_catalog.=) $1"
					   " OR confrelid OPERATOR(pg_catalog.=) ANY (ARRAY("
					   "SELECT relid FROM pg_catalog.pg_partition_tree($1::pg_catalog.regclass))))"
					   " AND contype OPERATOR(pg_catalog.=) 'f' ORDER BY oid LIMIT 1" :
					   "SELECT conname::pg_catalog.text, conrelid, confrelid"
					   " FROM pg_catalog.pg_constraint"
					   " WHERE confrelid OPERATOR(pg_catalog.=) $1"
					   " AND contype OPERATOR(pg_catalog.=) 'f' ORDER BY oid LIMIT 1",
					   1, (Oid[]) {OIDOID}, values, NULL,
					   EL_CAT_READ | EL_CAT_LATEST, 1) != 1)
		return false;
	*conname = el_spi_text(0, 1);
	*conrelid = DatumGetObjectId(el_spi_value(0, 2, &isnull));
	*confrelid = DatumGetObjectId(el_spi_value(0, 3, &isnull));
	return true;
}

char *
el_spi_text(uint64 row, int col)
{
	bool		isnull;
	Datum		d = el_spi_value(row, col, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

Jsonb *
el_spi_jsonb(uint64 row, int col)
{
	bool		isnull;
	Datum		d = el_spi_value(row, col, &isnull);

	return isnull ? NULL : DatumGetJsonbPCopy(d);
}

int64
el_spi_int8(uint64 row, int col)
{
	bool		isnull;
	Datum		d = el_spi_value(row, col, &isnull);

	return isnull ? -1 : DatumGetInt64(d);
}

/*
 * Run fn(arg) in a subtransaction of its own.  NULL if it succeeded (what
 * it did is kept); else its error, copied, with the subtransaction rolled
 * back and the memory context and resource owner as they were before: the
 * caller decides whether to raise it again (ReThrowError()) or report it.
 * SPI connections made inside are closed by the rollback; the caller's
 * stays usable.
 */
ErrorData *
el_try_subxact(void (*fn) (void *arg), void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_END_TRY();
	return edata;
}
