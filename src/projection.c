/*
 * projection.c
 *	  Projections: read models kept from a stream.  A projection is a view
 *	  over a build table.  Its handlers are SQL statements per event type
 *	  that see the event as `e` and write to the view by its name; they run
 *	  as the projection's owner, inline (an AFTER INSERT trigger on the
 *	  stream) or async (from a checkpoint per shard).  A rebuild replays the
 *	  stream into a new build table, reached through a temporary view of the
 *	  same name, and swaps the real view over to it in the same transaction.
 *	  docs/design/projections.md has the reasoning.
 */
#include "postgres.h"

#include "access/genam.h"
#include "common/hashfn.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "executor/spi_priv.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "nodes/params.h"
#include "parser/parse_func.h"
#include "parser/parse_node.h"
#include "parser/parser.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "tcop/cmdtag.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/plancache.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timeout.h"
#include "utils/typcache.h"

#include "event_log.h"

PG_FUNCTION_INFO_V1(el_create_projection);
PG_FUNCTION_INFO_V1(el_rebuild_projection);
PG_FUNCTION_INFO_V1(el_alter_projection);
PG_FUNCTION_INFO_V1(el_drop_projection);
PG_FUNCTION_INFO_V1(el_drop_projection_oid);
PG_FUNCTION_INFO_V1(el_run_projections);
PG_FUNCTION_INFO_V1(el_project);
PG_FUNCTION_INFO_V1(el_reducer_result);

#define EL_PARAM_ROW			(EL_NATTS + 1)	/* $n of the whole event */
#define EL_ASYNC_BATCH			1000

/* Set while our own code drops a projection's relations or trigger. */
bool		el_projection_ddl = false;

/* How long an async shard stopped by an error waits before a retry, in ms. */
int			el_retry_interval = 10000;

static void el_drop(Oid view, text *name);
static void el_record_projection_error(Oid view, const char *message);

/* How long one handler may run for one event of an async run, in ms. */
int			el_handler_timeout = 5000;

/*
 * The handler timeout: our own timer (statement_timeout is armed per
 * top-level statement only, and a handler is not one), which cancels the
 * handler as a cancel request would; el_in_subxact() then makes the
 * cancel the event's error.
 *
 * A handler can catch that cancel (EXCEPTION WHEN query_canceled) and go
 * on.  In the background worker a second timer, at twice the timeout,
 * then ends the worker as pg_terminate_backend() would, which no handler
 * can catch; el_worker_exit() leaves a note naming the projection, and the
 * next worker records it as the projection's error (el_note_overrun()), so
 * the projection waits out event_log.retry_interval like any failed one
 * instead of taking the worker down at every turn.
 */
static TimeoutId el_timeout_id = MAX_TIMEOUTS;
static TimeoutId el_kill_timeout_id = MAX_TIMEOUTS;
static volatile sig_atomic_t el_timed_out = false;
static volatile sig_atomic_t el_overran = false;

/* The async projection being run, for el_worker_exit(). */
static Oid	el_running_view = InvalidOid;

static void
el_handler_timeout_fired(void)
{
	el_timed_out = true;
	InterruptPending = true;
	QueryCancelPending = true;
	SetLatch(MyLatch);
}

static void
el_handler_kill_fired(void)
{
	el_overran = true;
	InterruptPending = true;
	ProcDiePending = true;
	SetLatch(MyLatch);
}

static void
el_arm_handler_timeout(void)
{
	if (el_timeout_id == MAX_TIMEOUTS)
		el_timeout_id = RegisterTimeout(USER_TIMEOUT, el_handler_timeout_fired);
	el_timed_out = false;
	enable_timeout_after(el_timeout_id, el_handler_timeout);
	if (IsBackgroundWorker)
	{
		if (el_kill_timeout_id == MAX_TIMEOUTS)
			el_kill_timeout_id = RegisterTimeout(USER_TIMEOUT, el_handler_kill_fired);
		enable_timeout_after(el_kill_timeout_id,
							 el_handler_timeout > INT_MAX / 2 ? INT_MAX : 2 * el_handler_timeout);
	}
}

static void
el_disarm_handler_timeout(void)
{
	if (el_timeout_id != MAX_TIMEOUTS && get_timeout_active(el_timeout_id))
		disable_timeout(el_timeout_id, false);
	if (el_kill_timeout_id != MAX_TIMEOUTS && get_timeout_active(el_kill_timeout_id))
		disable_timeout(el_kill_timeout_id, false);
}

/* Where a worker ended by the second timer names the projection. */
static char *
el_overrun_note_path(void)
{
	return psprintf("pg_stat_tmp/event_log_overrun.%u", MyDatabaseId);
}

/*
 * on_proc_exit callback of the background worker: if the second timer
 * ended it, leave the note.  No database access here, only a file.
 */
void
el_worker_exit(int code, Datum arg)
{
	FILE	   *f;

	if (!el_overran || !OidIsValid(el_running_view))
		return;
	f = fopen(el_overrun_note_path(), "w");
	if (f != NULL)
	{
		fprintf(f, "%u\n", el_running_view);
		fclose(f);
	}
}

/*
 * At a worker's start, in a transaction (SPI connected): record the
 * projection a predecessor's note names as failed on all its shards.
 */
void
el_note_overrun(void)
{
	char	   *path = el_overrun_note_path();
	FILE	   *f = fopen(path, "r");
	unsigned int view;

	if (f == NULL)
		return;
	if (fscanf(f, "%u", &view) == 1 && OidIsValid(view))
		el_record_projection_error(view,
								   psprintf("a handler ignored the cancel of event_log.handler_timeout (%d ms); the worker had to end",
											el_handler_timeout));
	fclose(f);
	(void) unlink(path);
}

/* A projection's row in event_log.projections. */
typedef struct ElProjection
{
	Oid			view;
	Oid			stream;
	bool		inline_mode;
	char	   *columns;
	Jsonb	   *handlers;
	char	   *reducer;		/* NULL unless a state projection */
	Jsonb	   *initial;
	Oid			build_table;
	int32		generation;
} ElProjection;

/* One event type's handler, prepared. */
typedef struct ElHandler
{
	char	   *type;
	int			typelen;
	SPIPlanPtr	plan;
} ElHandler;

/*
 * A projection's handlers, ready to run: prepared plans, the identity and
 * search path they run under, and the parameters an event is passed in.
 */
typedef struct ElHandlerSet
{
	MemoryContext cxt;
	Oid			view;
	Oid			stream;
	bool		inline_mode;
	char	   *name;			/* qualified view name, for messages */
	Oid			owner;
	OverrideSearchPath *path;
	int			nhandlers;
	ElHandler  *handlers;
	SPIPlanPtr	any;			/* the "*" handler, if any */
	bool		keep;			/* plans saved with SPI_keepplan */
	bool		uses_row;		/* some handler uses the whole event `e` */
	TupleDesc	rowdesc;		/* event_log.event */
	Oid			argtypes[EL_PARAM_ROW];	/* of $1..$10 */
	int			refcount;		/* running now (for the live cache) */
	LocalTransactionId checked_lxid;	/* inline: the statement whose */
	TimestampTz checked_at;		/* read privileges were checked last */
	bool		orphaned;		/* replaced in the cache while running */
	/* Set-based replay for builds (batch.c): per handler, and for "*". */
	bool		batchable;
	ElBatchPlan **batch;
	ElBatchPlan *any_batch;
	const char *batch_why;		/* why not (projections.build_method) */
	bool		batch_plain;	/* INSERT ... ON CONFLICT runs as INSERT */
	char	   *batch_fallback;	/* the build went on event by event: why */
} ElHandlerSet;

/*
 * One use of a handler set, on the caller's stack: what el_apply_begin()
 * saved, and the event being applied, for the error context.  A handler
 * may append, and so run a handler of the same set, inside another one.
 */
typedef struct ElApplyState
{
	ElHandlerSet *set;
	Oid			save_user;
	int			save_sec;
	int			nestlevel;
	int32		shard;
	int64		seq;
	const char *type;
	int			typelen;
	bool		timed;			/* each handler run under handler_timeout */
} ElApplyState;

/* Live handler sets by view oid, for the inline trigger and async runs. */
typedef struct ElLiveEntry
{
	Oid			view;
	ElHandlerSet *set;
	bool		valid;
} ElLiveEntry;

static HTAB *el_live = NULL;

static Jsonb *el_state_handlers(ElProjection *p);


/* ---------------------------------------------------------------------
 * Running SQL as someone else
 * ---------------------------------------------------------------------
 */

/* The owner of a relation (the projection's owner is its view's). */
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

/*
 * Act on our catalog as its owner (users may not write it, nor read some
 * of its columns), in a restricted operation, with pg_catalog alone as the
 * path.
 * The caller pops the path and restores the user afterwards; an error's
 * abort restores both.
 */
static void
el_become_catalog_owner(Oid *save_user, int *save_sec)
{
	GetUserIdAndSecContext(save_user, save_sec);
	SetUserIdAndSecContext(el_rel_owner(el_registry_oid(false)),
						   *save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	el_push_catalog_path();
}

/*
 * Run fixed SQL on our catalog tables as their owner (the extension's
 * owner), with only pg_catalog on the search path.  Callers are our C
 * functions, after their own privilege checks; users never write to the
 * catalog directly.  Returns SPI_processed.
 */
static uint64
el_catalog_exec(const char *sql, int nargs, Oid *types, Datum *values,
				const char *nulls, int expected)
{
	Oid			save_user;
	int			save_sec;
	int			rc;

	el_become_catalog_owner(&save_user, &save_sec);
	rc = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);
	PopOverrideSearchPath();
	SetUserIdAndSecContext(save_user, save_sec);
	if (rc != expected)
		elog(ERROR, "SPI_execute_with_args failed on \"%s\": %s", sql,
			 SPI_result_code_string(rc));
	return SPI_processed;
}

/*
 * Run one utility command as `role` (our own generated DDL), with
 * pg_catalog alone as the search path, or, for the build table's CREATE
 * TABLE (whose column types a user gives, and which runs as the schema's
 * projection's owner), schema `nsp` and pg_catalog.  Never the caller's
 * path (the caller may be a superuser acting on someone else's
 * projection), and never another role's schema for a statement run as the
 * stream's owner: event triggers that fire for our DDL run under this path
 * and as `role`, and an operator in a schema on it can beat pg_catalog's
 * inexact one.  The names we generate are qualified.
 *
 * As a security-restricted operation, with settings restored afterwards,
 * as handlers run: the command may run the role's own code (CREATE TABLE
 * computes a generated column's expression), which must not act in the
 * caller's session beyond the command (queue a deferred trigger that
 * fires as the caller at commit, create temporary objects, change
 * settings).  Only the rebuild's temporary view needs `restricted` false:
 * our own text, which runs no user code.
 */
static void
el_exec_as_ext(Oid role, Oid nsp, const char *sql, bool restricted)
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

static void
el_exec_as(Oid role, Oid nsp, const char *sql)
{
	el_exec_as_ext(role, nsp, sql, true);
}

/*
 * Our own reads of the catalog resolve operators and functions in
 * pg_catalog only, whatever the caller's search_path (which a superuser's,
 * or the worker's, session may not want to trust).
 */
void
el_push_catalog_path(void)
{
	static OverrideSearchPath path = {.schemas = NIL, .addCatalog = true, .addTemp = false};

	PushOverrideSearchPath(&path);
}

/* SPI_execute_with_args() of a read-only query on our catalog, as its owner. */
static void
el_catalog_read(const char *sql, int nargs, Oid *types, Datum *values)
{
	Oid			save_user;
	int			save_sec;
	int			rc;

	el_become_catalog_owner(&save_user, &save_sec);
	rc = SPI_execute_with_args(sql, nargs, types, values, NULL, true, 0);
	PopOverrideSearchPath();
	SetUserIdAndSecContext(save_user, save_sec);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_with_args failed on \"%s\": %s", sql,
			 SPI_result_code_string(rc));
}

/*
 * el_catalog_read() with the latest snapshot instead of the statement's,
 * for catalog rows that may have changed since the statement began.  At
 * most tcount rows (0: all).
 */
static void
el_catalog_read_latest(const char *sql, int nargs, Oid *types, Datum *values,
					   long tcount)
{
	SPIPlanPtr	plan;
	Oid			save_user;
	int			save_sec;
	int			rc;

	/*
	 * The path stays pinned through the execution too: a plan whose
	 * creation path differs from the current one is analyzed anew, under
	 * the current one.
	 */
	el_become_catalog_owner(&save_user, &save_sec);
	plan = SPI_prepare(sql, nargs, types);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql,
			 SPI_result_code_string(SPI_result));
	rc = SPI_execute_snapshot(plan, values, NULL, GetLatestSnapshot(),
							  InvalidSnapshot, true, false, tcount);
	PopOverrideSearchPath();
	SetUserIdAndSecContext(save_user, save_sec);
	SPI_freeplan(plan);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_snapshot failed on \"%s\": %s", sql,
			 SPI_result_code_string(rc));
}

/* ---------------------------------------------------------------------
 * The catalog
 * ---------------------------------------------------------------------
 */

static char *
el_spi_text(int row, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc,
								  col, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

static Jsonb *
el_spi_jsonb(int row, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc,
								  col, &isnull);

	return isnull ? NULL : DatumGetJsonbPCopy(d);
}

static int64
el_spi_int8(int row, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc,
								  col, &isnull);

	return isnull ? -1 : DatumGetInt64(d);
}

/* Read a projection's row (SPI connected); NULL if there is none. */
static ElProjection *
el_projection_load(Oid view)
{
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(view)};
	ElProjection *p;
	bool		isnull;

	/*
	 * Read with the latest snapshot, as catalogs are: a REPEATABLE READ
	 * appender whose snapshot predates a projection's creation still fires
	 * its trigger and must find its row.
	 */
	el_catalog_read_latest("SELECT stream, mode, columns, handlers, reducer,"
						   " initial, build_table, generation"
						   " FROM event_log.projections WHERE projection = $1",
						   1, types, values, 1);
	if (SPI_processed == 0)
		return NULL;

	p = palloc0(sizeof(ElProjection));
	p->view = view;
	p->stream = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
											   SPI_tuptable->tupdesc, 1, &isnull));
	p->inline_mode = strcmp(el_spi_text(0, 2), "inline") == 0;
	p->columns = el_spi_text(0, 3);
	p->handlers = el_spi_jsonb(0, 4);
	p->reducer = el_spi_text(0, 5);
	p->initial = el_spi_jsonb(0, 6);
	p->build_table = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
													SPI_tuptable->tupdesc, 7, &isnull));
	p->generation = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
												SPI_tuptable->tupdesc, 8, &isnull));
	/* Handlers stored by version 0.1 lack the null check: make them anew. */
	if (p->reducer != NULL)
		p->handlers = el_state_handlers(p);
	return p;
}

/* Resolve a projection's name to its view, refusing other names. */
static Oid
el_projection_oid(text *name)
{
	RangeVar   *rv;
	Oid			view;
	Oid			types[1] = {OIDOID};
	Datum		values[1];

	rv = makeRangeVarFromNameList(el_parse_name(text_to_cstring(name), "projection"));
	view = RangeVarGetRelid(rv, NoLock, true);
	if (OidIsValid(view))
	{
		values[0] = ObjectIdGetDatum(view);
		el_catalog_read("SELECT 1 FROM event_log.projections WHERE projection = $1",
						1, types, values);
		if (SPI_processed == 1)
			return view;
	}
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("projection \"%s\" does not exist", text_to_cstring(name)),
			 errhint("Projections are listed in event_log.projections.")));
	return InvalidOid;			/* keep compiler quiet */
}

/*
 * The projection lock: rebuild, alter, drop and async runs of one projection
 * take it for the rest of their transaction, so only one of them changes the
 * projection's build table and checkpoints at a time.  It is a heavyweight
 * lock in our own key space (see event_log.h), independent of shard locks
 * and of locks on the view, which readers and appenders take; holders take
 * shard-level locks (the stream's) only after it, so no cycle forms.
 */
static bool
el_lock_projection(Oid view, bool wait)
{
	LOCKTAG		tag;
	ResourceOwner save = CurrentResourceOwner;
	LockAcquireResult res;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, view, 0, EL_PROJECTION_LOCK_SPACE);
	CurrentResourceOwner = CurTransactionResourceOwner;
	PG_TRY();
	{
		res = LockAcquire(&tag, ExclusiveLock, false, !wait);
	}
	PG_FINALLY();
	{
		CurrentResourceOwner = save;
	}
	PG_END_TRY();
	return res != LOCKACQUIRE_NOT_AVAIL;
}

/* True if relid is a projection's view or build table (SPI connected). */
bool
el_is_projection_relation(Oid relid)
{
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(relid)};

	el_catalog_read("SELECT 1 FROM event_log.projections"
					" WHERE projection = $1 OR build_table = $1",
					1, types, values);
	return SPI_processed > 0;
}

/* Number of inline projections fed by a stream (SPI connected). */
int
el_inline_projections(Oid stream)
{
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(stream)};
	bool		isnull;

	el_catalog_read("SELECT pg_catalog.count(*) FROM event_log.projections"
					" WHERE stream = $1 AND mode = 'inline'",
					1, types, values);
	return (int) DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											 SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * Names of the projections fed by a stream, comma-separated, or NULL.  With
 * the latest snapshot: drop_stream() asks after waiting for its lock, and a
 * projection created meanwhile must be seen.
 */
char *
el_projections_of_stream(Oid stream)
{
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(stream)};

	el_catalog_read_latest("SELECT pg_catalog.string_agg(projection::pg_catalog.text, ', '"
					" ORDER BY projection::pg_catalog.text)"
					" FROM event_log.projections WHERE stream = $1",
					1, types, values, 1);
	return el_spi_text(0, 1);
}

/*
 * The projection's owner must be able to read every event of the stream,
 * now: SELECT on it, and no row-level security that hides events from the
 * owner (a projection replays whole shards; it cannot apply a policy's
 * filter and still keep its checkpoints dense).  Every build, rebuild,
 * async run and inline application checks this again, since privileges
 * and policies change after creation.  The messages name no event.
 */
static void
el_check_stream_read(Oid stream, Oid owner, const char *projection)
{
	if (pg_class_aclcheck(stream, owner, ACL_SELECT) != ACLCHECK_OK ||
		pg_namespace_aclcheck(get_rel_namespace(stream), owner, ACL_USAGE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for stream %s", el_stream_name(stream)),
				 errdetail("The owner of projection \"%s\", role \"%s\", may not read the stream it is fed from.",
						   projection, GetUserNameFromId(owner, false)),
				 errhint("Grant SELECT on the stream, and USAGE on its schema, to the projection's owner, or drop the projection.")));
	if (check_enable_rls(stream, owner, true) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("projection \"%s\" cannot read stream %s: row-level security applies to its owner",
						projection, el_stream_name(stream)),
				 errdetail("A projection replays every event of its stream; a policy that hides events from its owner would leave it incomplete."),
				 errhint("Disable row-level security on the stream, or let a role that policies do not restrict (the stream's owner, or one with BYPASSRLS) own the projection.")));
}

/* ---------------------------------------------------------------------
 * Compiling handlers
 * ---------------------------------------------------------------------
 */

/*
 * Parser hook: `e.field` is the event's field, a parameter; `e` alone is the
 * whole event as event_log.event.  A table column reachable the same way
 * makes the reference ambiguous, as PL/pgSQL would say.
 */
static Node *
el_columnref_hook(ParseState *pstate, ColumnRef *cref, Node *var)
{
	ElHandlerSet *set = (ElHandlerSet *) pstate->p_ref_hook_state;
	Node	   *first = linitial(cref->fields);
	Param	   *param;
	int			paramid = 0;
	Oid			type = InvalidOid;

	if (!IsA(first, String) || strcmp(strVal(first), "e") != 0)
		return NULL;

	if (list_length(cref->fields) == 1)
	{
		paramid = EL_PARAM_ROW;
		type = set->rowdesc->tdtypeid;
		set->uses_row = true;
	}
	else if (list_length(cref->fields) == 2 && IsA(lsecond(cref->fields), String))
	{
		const char *field = strVal(lsecond(cref->fields));

		for (int i = 0; i < EL_NATTS; i++)
			if (strcmp(field, el_columns[i].name) == 0)
			{
				paramid = i + 1;
				type = el_columns[i].type;
			}
		if (paramid == 0 && var == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("event has no field \"%s\"", field),
					 errhint("An event's fields are shard, seq, key, version, type, payload, metadata, event_id and recorded_at."),
					 parser_errposition(pstate, cref->location)));
	}
	if (paramid == 0)
		return NULL;
	if (var != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_AMBIGUOUS_COLUMN),
				 errmsg("reference \"%s\" is ambiguous", NameListToString(cref->fields)),
				 errdetail("It could refer to the event or to a table column."),
				 errhint("Give the table another alias than \"e\"."),
				 parser_errposition(pstate, cref->location)));

	param = makeNode(Param);
	param->paramkind = PARAM_EXTERN;
	param->paramid = paramid;
	param->paramtype = type;
	param->paramtypmod = -1;
	param->paramcollid = get_typcollation(type);
	param->location = cref->location;
	return (Node *) param;
}

static void
el_parser_setup(ParseState *pstate, void *arg)
{
	pstate->p_post_columnref_hook = el_columnref_hook;
	pstate->p_ref_hook_state = arg;
}

/* Error context while compiling or running a handler. */
static void
el_handler_context(void *arg)
{
	ElApplyState *st = (ElApplyState *) arg;

	if (st->type == NULL)
		return;
	if (st->seq > 0)
		errcontext("projection \"%s\", handler for event type \"%.*s\", event at shard %d seq " INT64_FORMAT,
				   st->set->name, st->typelen, st->type, st->shard, st->seq);
	else
		errcontext("projection \"%s\", handler for event type \"%.*s\"",
				   st->set->name, st->typelen, st->type);
}

/*
 * The settings handlers are compiled and run under, whatever the session
 * that runs them (an appender, the background worker, a rebuild) has set:
 * the same event must give the same rows inline, async and in a rebuild.
 * These are the settings that change how SQL text parses or how values
 * read and print.  docs/projections.md lists them.
 */
static const struct
{
	const char *name;
	const char *value;
}			el_handler_settings[] =
{
	{"standard_conforming_strings", "on"},
	{"quote_all_identifiers", "off"},
	{"backslash_quote", "safe_encoding"},
	{"array_nulls", "on"},
	{"transform_null_equals", "off"},
	{"TimeZone", "UTC"},
	{"timezone_abbreviations", "Default"},
	{"DateStyle", "ISO, MDY"},
	{"IntervalStyle", "postgres"},
	{"extra_float_digits", "1"},
	{"bytea_output", "hex"},
	{"xmlbinary", "base64"},
	{"xmloption", "content"},
	{"lc_monetary", "C"},
	{"lc_numeric", "C"},
	{"lc_time", "C"},
	{"default_text_search_config", "pg_catalog.simple"},
	{"row_security", "on"},
};

/* Set the handler settings that differ, in the current GUC nest level. */
static void
el_pin_settings(void)
{
	for (int i = 0; i < (int) lengthof(el_handler_settings); i++)
	{
		const char *name = el_handler_settings[i].name;
		const char *value = el_handler_settings[i].value;
		const char *now = GetConfigOption(name, false, false);

		if (now == NULL || strcmp(now, value) != 0)
			(void) set_config_option(name, value, PGC_SUSET, PGC_S_SESSION,
									 GUC_ACTION_SAVE, true, 0, false);
	}
}

/*
 * Start running handlers: as the projection's owner, in a restricted
 * operation (no temporary objects, no SET ROLE), under fixed settings
 * (el_pin_settings()), with settings a handler changes undone at
 * el_apply_end(), and with the projection's schema (and
 * pg_catalog) as the search path.  So a handler can neither act with the
 * caller's rights nor leave anything behind for the caller (who may be a
 * superuser, or the background worker) to trip over.  A redirecting set
 * puts the session's temporary schema first, where a rebuild's temporary
 * view of the same name leads to the new build table.  After an error,
 * transaction or subtransaction abort restores all of it.
 */
static void
el_apply_begin(ElHandlerSet *set, ElApplyState *st)
{
	memset(st, 0, sizeof(ElApplyState));
	st->set = set;
	GetUserIdAndSecContext(&st->save_user, &st->save_sec);
	SetUserIdAndSecContext(set->owner, st->save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	st->nestlevel = NewGUCNestLevel();
	el_pin_settings();
	PushOverrideSearchPath(set->path);
}

static void
el_apply_end(ElApplyState *st)
{
	PopOverrideSearchPath();
	AtEOXact_GUC(false, st->nestlevel);
	SetUserIdAndSecContext(st->save_user, st->save_sec);
}

/*
 * The session-level advisory lock functions (pg_advisory_lock() and its
 * kin, pg_advisory_unlock_all() included; fmgroids.h numbers them
 * 2880-2892).  A handler calling them would take locks that outlive it in
 * the appender's or the worker's session, or release that session's own.
 * The transaction-level ones are fine.
 */
static bool
el_session_lock_function(Oid funcid, void *context)
{
	return funcid >= F_PG_ADVISORY_LOCK_INT8 && funcid <= F_PG_ADVISORY_UNLOCK_ALL;
}

static bool
el_session_lock_walker(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (check_functions_in_node(node, el_session_lock_function, context))
		return true;
	if (IsA(node, Query))
		return query_tree_walker((Query *) node, el_session_lock_walker, context, 0);
	return expression_tree_walker(node, el_session_lock_walker, context);
}

/*
 * Only plain SELECT, INSERT, UPDATE and DELETE make sense in a handler, and
 * at least one of them.  Checked on the analyzed statements: SELECT ... INTO
 * parses as a SELECT but is a CREATE TABLE AS.
 */
static void
el_check_handler_plan(SPIPlanPtr plan, const char *type)
{
	ListCell   *lc;
	int			nstmts = 0;

	foreach(lc, SPI_plan_get_plan_sources(plan))
	{
		CachedPlanSource *ps = (CachedPlanSource *) lfirst(lc);
		ListCell   *qc;

		foreach(qc, ps->query_list)
		{
			Query	   *q = lfirst_node(Query, qc);

			if (q->utilityStmt != NULL ||
				(q->commandType != CMD_SELECT && q->commandType != CMD_INSERT &&
				 q->commandType != CMD_UPDATE && q->commandType != CMD_DELETE))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("handler for event type \"%s\" contains a %s statement",
								type, GetCommandTagName(q->utilityStmt ?
														CreateCommandTag(q->utilityStmt) :
														ps->commandTag)),
						 errhint("Handlers may use SELECT, INSERT, UPDATE and DELETE.")));
			if (el_session_lock_walker((Node *) q, NULL))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("handler for event type \"%s\" takes or releases a session-level advisory lock",
								type),
						 errdetail("Such a lock would outlive the handler in the session that ran it."),
						 errhint("Use the transaction-level functions, such as pg_advisory_xact_lock().")));
			nstmts++;
		}
	}
	if (nstmts == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("handler for event type \"%s\" is empty", type),
				 errhint("A handler is one or more SQL statements; leave out event types that need none.")));
}

static Oid
el_event_type_oid(void)
{
	Oid			typid = GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
										CStringGetDatum("event"),
										ObjectIdGetDatum(el_schema_oid()));

	if (!OidIsValid(typid))
		elog(ERROR, "type event_log.event does not exist");
	return typid;
}

/*
 * Check a handlers object: {"EventType": "SQL", ...}, "*" for any type.
 */
static void
el_check_handlers(Jsonb *handlers)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			n = 0;

	if (!JB_ROOT_IS_OBJECT(handlers) || JB_ROOT_IS_SCALAR(handlers))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("handlers must be a JSON object"),
				 errhint("Map event types to SQL, as in jsonb_build_object('ItemAdded', 'INSERT INTO ...').")));
	it = JsonbIteratorInit(&handlers->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY && v.val.string.len == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("handlers must not have an empty event type")));
		if (tok == WJB_KEY && v.val.string.len > EL_MAX_TYPE_BYTES)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("event type in handlers is too long"),
					 errdetail("Event types are at most %d bytes.", EL_MAX_TYPE_BYTES)));
		if (tok == WJB_VALUE)
		{
			if (v.type != jbvString)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("each handler must be a string of SQL")));
			n++;
		}
	}
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("handlers must not be empty")));
}

/*
 * Prepare a projection's handlers (SPI connected).  keep: save the plans
 * for later transactions; otherwise they go with the SPI connection.
 */
static ElHandlerSet *
el_compile(ElProjection *p, Jsonb *handlers, bool redirect, bool keep,
		   MemoryContext parent)
{
	MemoryContext cxt = AllocSetContextCreate(parent, "event_log handlers",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	ElHandlerSet *set = palloc0(sizeof(ElHandlerSet));
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *type = NULL;
	int			n = 0;
	ErrorContextCallback errcb;
	ElApplyState st;
	Oid			nsp = get_rel_namespace(p->view);

	set->cxt = cxt;
	set->view = p->view;
	set->stream = p->stream;
	set->inline_mode = p->inline_mode;
	set->owner = el_rel_owner(p->view);
	set->keep = keep;
	set->path = palloc0(sizeof(OverrideSearchPath));
	set->path->schemas = list_make1_oid(nsp);
	set->path->addCatalog = true;
	set->path->addTemp = redirect;
	set->rowdesc = lookup_rowtype_tupdesc_copy(el_event_type_oid(), -1);
	for (int i = 0; i < EL_NATTS; i++)
		set->argtypes[i] = el_columns[i].type;
	set->argtypes[EL_PARAM_ROW - 1] = set->rowdesc->tdtypeid;
	set->handlers = palloc0(sizeof(ElHandler) * JsonContainerSize(&handlers->root));
	MemoryContextSwitchTo(old);

	el_apply_begin(set, &st);
	/* Under the pinned settings: quote_all_identifiers is one of them. */
	set->name = MemoryContextStrdup(cxt, quote_qualified_identifier(get_namespace_name(nsp),
																	get_rel_name(p->view)));
	errcb.callback = el_handler_context;
	errcb.arg = &st;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	it = JsonbIteratorInit(&handlers->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		SPIPlanPtr	plan;
		char	   *sql;

		if (tok == WJB_KEY)
		{
			type = pnstrdup(v.val.string.val, v.val.string.len);
			st.type = type;
			st.typelen = v.val.string.len;
			continue;
		}
		if (tok != WJB_VALUE)
			continue;
		sql = pnstrdup(v.val.string.val, v.val.string.len);
		plan = SPI_prepare_params(sql, el_parser_setup, set, 0);
		if (plan == NULL)
			elog(ERROR, "SPI_prepare_params failed: %s",
				 SPI_result_code_string(SPI_result));
		el_check_handler_plan(plan, type);

		/*
		 * Declare $1..$10, which the parser hook produced, so that the plan
		 * runs with SPI_execute_snapshot() (see el_apply()).
		 */
		plan->nargs = EL_PARAM_ROW;
		plan->argtypes = MemoryContextAlloc(plan->plancxt, sizeof(set->argtypes));
		memcpy(plan->argtypes, set->argtypes, sizeof(set->argtypes));
		if (keep)
			SPI_keepplan(plan);
		if (strcmp(type, "*") == 0)
			set->any = plan;
		else
		{
			set->handlers[n].type = MemoryContextStrdup(cxt, type);
			set->handlers[n].typelen = strlen(type);
			set->handlers[n].plan = plan;
			n++;
		}
	}
	error_context_stack = errcb.previous;
	el_apply_end(&st);
	set->nhandlers = n;
	return set;
}

static void
el_free_set(ElHandlerSet *set)
{
	if (set->keep)
	{
		for (int i = 0; i < set->nhandlers; i++)
			SPI_freeplan(set->handlers[i].plan);
		if (set->any)
			SPI_freeplan(set->any);
	}
	MemoryContextDelete(set->cxt);
}

/* ---------------------------------------------------------------------
 * Applying events
 * ---------------------------------------------------------------------
 */

/* The handler index of an event's type: -1 for "*", -2 for none. */
static int
el_handler_index(ElHandlerSet *set, text *type)
{
	const char *t = VARDATA_ANY(type);
	int			len = VARSIZE_ANY_EXHDR(type);

	for (int i = 0; i < set->nhandlers; i++)
		if (set->handlers[i].typelen == len &&
			memcmp(set->handlers[i].type, t, len) == 0)
			return i;
	return set->any ? -1 : -2;
}

/* The plan of an event type's handler: its own, else "*", else NULL. */
static SPIPlanPtr
el_find_handler(ElHandlerSet *set, text *type)
{
	int			h = el_handler_index(set, type);

	return h >= 0 ? set->handlers[h].plan : set->any;
}

/*
 * Apply one event (the stream's first EL_NATTS columns) between
 * el_apply_begin() and el_apply_end().  Returns false if no handler wants
 * the event's type.  Allocates in the current memory context, which
 * callers that loop reset per event.
 *
 * Under REPEATABLE READ or SERIALIZABLE the handler's statements read with
 * a fresh snapshot, as foreign-key checks do: the transaction's snapshot
 * may predate projection rows that earlier appends (or a rebuild)
 * committed, and a handler that cannot see the row it should update would
 * silently miss the event.  Concurrent changes to the same row still raise
 * serialization failures at those levels.
 */
static bool
el_apply(ElApplyState *st, Datum *values, bool *nulls)
{
	ElHandlerSet *set = st->set;
	text	   *type = DatumGetTextPP(values[Anum_el_type - 1]);
	SPIPlanPtr	plan = el_find_handler(set, type);
	ErrorContextCallback errcb;
	Datum		args[EL_PARAM_ROW];
	char		argnulls[EL_PARAM_ROW];
	int			rc;

	if (plan == NULL)
		return false;

	for (int i = 0; i < EL_NATTS; i++)
	{
		args[i] = values[i];
		argnulls[i] = nulls[i] ? 'n' : ' ';
	}
	args[EL_PARAM_ROW - 1] = (Datum) 0;
	argnulls[EL_PARAM_ROW - 1] = 'n';
	if (set->uses_row)
	{
		args[EL_PARAM_ROW - 1] = HeapTupleGetDatum(heap_form_tuple(set->rowdesc,
																   values, nulls));
		argnulls[EL_PARAM_ROW - 1] = ' ';
	}

	st->shard = DatumGetInt32(values[Anum_el_shard - 1]);
	st->seq = DatumGetInt64(values[Anum_el_seq - 1]);
	st->type = VARDATA_ANY(type);
	st->typelen = VARSIZE_ANY_EXHDR(type);
	errcb.callback = el_handler_context;
	errcb.arg = st;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	if (st->timed && el_handler_timeout > 0)
		el_arm_handler_timeout();
	rc = SPI_execute_snapshot(plan, args, argnulls,
							  IsolationUsesXactSnapshot() ? GetLatestSnapshot() : InvalidSnapshot,
							  InvalidSnapshot, false, true, 0);
	if (st->timed && el_handler_timeout > 0)
		el_disarm_handler_timeout();
	if (rc < 0)
		elog(ERROR, "SPI_execute_snapshot failed: %s", SPI_result_code_string(rc));
	/* A SELECT's rows would pile up until SPI_finish(). */
	SPI_freetuptable(SPI_tuptable);

	error_context_stack = errcb.previous;
	return true;
}

static void
el_live_invalidate(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	ElLiveEntry *entry;

	hash_seq_init(&status, el_live);
	while ((entry = hash_seq_search(&status)) != NULL)
		if (relid == InvalidOid || entry->view == relid)
			entry->valid = false;
}

/*
 * The handlers of a live projection, compiled once per backend and kept
 * until the view's relcache entry is invalidated: a rebuild, an
 * alter_projection() or a change of owner all do that.  SPI connected.
 */
static ElHandlerSet *
el_live_handlers(Oid view)
{
	ElLiveEntry *entry;
	bool		found;

	if (el_live == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(ElLiveEntry);
		el_live = hash_create("event_log projections", 16, &ctl,
							  HASH_ELEM | HASH_BLOBS);
		CacheRegisterRelcacheCallback(el_live_invalidate, (Datum) 0);
	}
	entry = hash_search(el_live, &view, HASH_ENTER, &found);
	if (!found)
	{
		entry->set = NULL;
		entry->valid = false;
	}
	if (!entry->valid)
	{
		ElHandlerSet *old = entry->set;
		ElProjection *p = el_projection_load(view);

		entry->set = NULL;
		if (old != NULL)
		{
			if (old->refcount == 0)
				el_free_set(old);
			else
				old->orphaned = true;
		}
		if (p == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("projection with view oid %u does not exist", view)));
		entry->set = el_compile(p, p->handlers, false, true, CacheMemoryContext);
		entry->valid = true;
	}
	return entry->set;
}

static void
el_release_set(ElHandlerSet *set)
{
	if (--set->refcount == 0 && set->orphaned)
		el_free_set(set);
}

/*
 * An inline handler failed in a transaction of a role that does not act as
 * the projection's owner.  Its error may show the owner's data that the
 * appender may not read (a constraint's "Failing row contains (...)", a
 * value of another key's row in a message): the appender gets the SQLSTATE
 * and which projection and event type failed; the server log gets the
 * whole error.  Called in PG_CATCH; does not return.
 */
static void
el_rethrow_for_appender(ElHandlerSet *set, ElApplyState *st, MemoryContext cxt)
{
	ErrorData  *edata;
	const char *type = st->type ? st->type : "";
	int			typelen = st->type ? st->typelen : 0;

	MemoryContextSwitchTo(cxt);
	edata = CopyErrorData();
	FlushErrorState();
	ereport(LOG,
			(errcode(edata->sqlerrcode),
			 errmsg("inline projection \"%s\" failed on an event of type \"%.*s\": %s",
					set->name, typelen, type, edata->message),
			 edata->detail ? errdetail_internal("%s", edata->detail) : 0,
			 edata->context ? errcontext("%s", edata->context) : 0));
	ereport(ERROR,
			(errcode(edata->sqlerrcode),
			 errmsg("handler of inline projection \"%s\" failed on an event of type \"%.*s\"",
					set->name, typelen, type),
			 errdetail("The handler's error is shown only to roles that act as the projection's owner; the server log has it."),
			 errhint("The projection's owner can fix it with event_log.alter_projection(); the stream's owner can drop the projection with event_log.drop_projection().")));
}

static void
el_refuse_project_trigger(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
			 errmsg("event_log.project() runs only as the trigger event_log.create_projection() puts on a projection's stream")));
}

/*
 * event_log.project(): AFTER INSERT FOR EACH ROW on a stream, one per inline
 * projection, enabled ALWAYS.  It runs the projection's handler for the new
 * event in the appending transaction.
 */
Datum
el_project(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleTableSlot *slot;
	ElHandlerSet *set;
	Oid			view;
	Oid			appender;
	MemoryContext cxt;
	char		tgname[NAMEDATALEN];

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) ||
		trigdata->tg_trigger->tgnargs != 1)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("event_log.project() must run as an AFTER INSERT row trigger created by event_log.create_projection()")));
	view = atooid(trigdata->tg_trigger->tgargs[0]);
	appender = GetUserId();
	cxt = CurrentMemoryContext;

	/*
	 * Only as the trigger create_projection() put on the projection's
	 * stream, checked before the row is read: anybody may attach this
	 * function to a table of its own and name any projection, to feed it
	 * made-up events, or rows of other types read as the contract's.  The
	 * stream itself keeps the contract's layout (the DDL guard).
	 */
	SPI_connect();
	set = el_live_handlers(view);
	snprintf(tgname, sizeof(tgname), EL_PROJECTION_TRIGGER "%u", view);
	if (RelationGetRelid(trigdata->tg_relation) != set->stream || !set->inline_mode ||
		strcmp(trigdata->tg_trigger->tgname, tgname) != 0)
		el_refuse_project_trigger();
	slot = trigdata->tg_trigslot;
	slot_getsomeattrs(slot, EL_NATTS);
	if (el_find_handler(set, DatumGetTextPP(slot->tts_values[Anum_el_type - 1])))
	{
		ElApplyState st;

		/*
		 * Checked once per statement and projection, as the executor checks
		 * a statement's permissions once: a multi-row INSERT or COPY does
		 * not pay for it per row.
		 */
		if (set->checked_lxid != MyProc->lxid ||
			set->checked_at != GetCurrentStatementStartTimestamp())
		{
			el_check_stream_read(RelationGetRelid(trigdata->tg_relation), set->owner,
								 set->name);
			set->checked_lxid = MyProc->lxid;
			set->checked_at = GetCurrentStatementStartTimestamp();
		}
		set->refcount++;
		PG_TRY();
		{
			el_apply_begin(set, &st);
			el_apply(&st, slot->tts_values, slot->tts_isnull);
			el_apply_end(&st);
		}
		PG_CATCH();
		{
			el_release_set(set);
			if (!has_privs_of_role(appender, set->owner))
				el_rethrow_for_appender(set, &st, cxt);
			PG_RE_THROW();
		}
		PG_END_TRY();
		el_release_set(set);
	}
	SPI_finish();
	return PointerGetDatum(NULL);
}

/* An index scan over one shard's events with seq > after, in seq order. */
static IndexScanDesc
el_shard_scan(Relation stream, Relation pk, Snapshot snap, int32 shard,
			  int64 after)
{
	ScanKeyData keys[2];
	IndexScanDesc scan;

	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(shard));
	ScanKeyInit(&keys[1], 2, BTGreaterStrategyNumber, F_INT8GT, Int64GetDatum(after));
	scan = index_beginscan(stream, pk, snap, 2, 0);
	index_rescan(scan, keys, 2, NULL, 0);
	return scan;
}

/*
 * Apply one shard's events with seq > after, in seq order, read with a new
 * snapshot: under the commit-order guarantee the events it sees are a
 * prefix of the shard, so nothing is skipped.  Between el_apply_begin() and
 * el_apply_end().  *last gets the last seq read; returns events applied.
 */
static int64
el_replay_shard(ElApplyState *st, Relation stream, Relation pk, int32 shard,
				int64 after, int64 *last)
{
	Snapshot	snap = RegisterSnapshot(GetTransactionSnapshot());
	IndexScanDesc scan = el_shard_scan(stream, pk, snap, shard, after);
	TupleTableSlot *slot = table_slot_create(stream, NULL);
	MemoryContext evcxt = AllocSetContextCreate(CurrentMemoryContext,
												"event_log event",
												ALLOCSET_DEFAULT_SIZES);
	int64		n = 0;

	*last = after;
	while (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		MemoryContext old = MemoryContextSwitchTo(evcxt);

		slot_getsomeattrs(slot, EL_NATTS);
		*last = DatumGetInt64(slot->tts_values[Anum_el_seq - 1]);
		if (el_apply(st, slot->tts_values, slot->tts_isnull))
			n++;
		MemoryContextSwitchTo(old);
		MemoryContextReset(evcxt);
		CHECK_FOR_INTERRUPTS();
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	MemoryContextDelete(evcxt);
	UnregisterSnapshot(snap);
	return n;
}

/*
 * Whether an error is a cancel of the running statement that the session
 * was asked for, which no handler can raise: it comes from
 * ProcessInterrupts(), and is not the lock timeout a handler can set.
 */
static bool
el_interrupted(ErrorData *edata)
{
	return edata->funcname != NULL &&
		strcmp(edata->funcname, "ProcessInterrupts") == 0 &&
		edata->sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE;
}

/*
 * Run fn(arg) in a subtransaction.  Returns NULL if it went through.  If it
 * failed, rolls the subtransaction back and returns the error, unless it
 * is a cancel of the session's statement (el_interrupted()), which is
 * rethrown after the rollback.  Abort restores the user, settings and search path
 * el_apply_begin() set inside.
 */
static ErrorData *
el_in_subxact(void (*fn) (void *), void *arg)
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
		el_disarm_handler_timeout();
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		/* Our timer's cancel: the handler took too long for this event. */
		if (el_timed_out && edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
		{
			edata->sqlerrcode = ERRCODE_EL_HANDLER_TIMEOUT;
			edata->message = psprintf("handler ran longer than event_log.handler_timeout (%d ms)",
									  el_handler_timeout);
			edata->detail = NULL;
			edata->funcname = NULL; /* not a cancel of the session's statement */
		}
		el_timed_out = false;

		/*
		 * A cancel (of the caller's statement: pg_cancel_backend(), Ctrl-C)
		 * ends the run.  Any other error raised while the handler ran is its
		 * event's, whatever its SQLSTATE: a handler can raise a
		 * serialization failure, an internal error or a lock timeout on
		 * purpose (RAISE, a function PostgreSQL fails in, SET lock_timeout),
		 * and an error that ended the run would let one projection stop
		 * every other of the database, at every turn of the worker.  A
		 * genuine deadlock or serialization failure then stops the shard
		 * until event_log.retry_interval has passed, which is a retry.
		 */
		if (el_interrupted(edata))
			ReThrowError(edata);
	}
	PG_END_TRY();
	return edata;
}

/*
 * Set-based replay for builds: whether every handler of the set qualifies
 * (batch.c), and their batch forms.  In the set's memory.
 */
static void
el_prepare_batches(ElHandlerSet *set)
{
	MemoryContext old = MemoryContextSwitchTo(set->cxt);
	Oid			table = InvalidOid;
	AttrNumber	keycol = 0;
	const char *why = NULL;

	set->batchable = false;
	set->batch = palloc0(sizeof(ElBatchPlan *) * Max(set->nhandlers, 1));
	for (int i = 0; i < set->nhandlers && why == NULL; i++)
		set->batch[i] = el_batch_prepare(set->handlers[i].plan, &table, &keycol, &why);
	if (set->any && why == NULL)
		set->any_batch = el_batch_prepare(set->any, &table, &keycol, &why);
	if (why == NULL && OidIsValid(table))
		why = el_batch_table_ok(table, keycol);
	else if (why == NULL)
		why = "no handler writes";
	MemoryContextSwitchTo(old);
	set->batch_why = why;
	set->batchable = (why == NULL);
	set->batch_plain = true;
	set->batch_fallback = NULL;
}

/*
 * Set-based replay reads the stream in chunks of events, each shard's in
 * seq order.  It sorts each chunk by key (a key's events stay in seq
 * order) and cuts it into ranges of neighbouring keys.  Within a range, the
 * first events of every key form one batch, their second events the next,
 * and so on: each batch has distinct keys, in key order, and each key's
 * events are applied in seq order.  Statements for different keys touch
 * disjoint rows, so the result is that of applying the chunk in seq order.
 * A range's rows sit together in the table's key index, so its batches keep
 * finding the pages they need already in the CPU's caches, where batches
 * spread over all keys would miss on nearly every probe.
 *
 * A chunk's events are copied, tuple by tuple, into one arena; their fields
 * point into the copies.  The arena and arrays are allocated once per
 * build.
 */
#define EL_CHUNK_EVENTS	65536	/* events per chunk, at most */
#define EL_CHUNK_ARENA	(12 * 1024 * 1024)	/* bytes of their tuples, at most */
#define EL_RANGE_KEYS	512		/* keys per range */
#define EL_SHARD_RUN	256		/* events read from a shard in a row */
#define EL_BATCH_MIN	64		/* smaller batches go event by event */
#define EL_BATCH_KEEP	(1024 * 1024)	/* memory kept from batch to batch */

/*
 * An event's place in the sorted chunk.  Chunks are sorted by the keys'
 * bytes: the key index's order under the C collation (and C.UTF-8), close
 * to it under others, and cheap; any order that keeps a key's events
 * together and in seq order is correct.
 */
typedef struct ElSortItem
{
	uint64		prefix;			/* the key's first 8 bytes, big-endian */
	const char *key;			/* its bytes */
	int32		len;
	int32		event;			/* index in the chunk: seq order */
} ElSortItem;

static inline int
el_sort_item_cmp(const ElSortItem *a, const ElSortItem *b)
{
	int			c;

	if (a->prefix != b->prefix)
		return a->prefix < b->prefix ? -1 : 1;
	c = memcmp(a->key, b->key, Min(a->len, b->len));
	if (c == 0)
		c = (a->len > b->len) - (a->len < b->len);
	return c != 0 ? c : (a->event > b->event) - (a->event < b->event);
}

#define ST_SORT el_sort_items
#define ST_ELEMENT_TYPE ElSortItem
#define ST_COMPARE(a, b) el_sort_item_cmp(a, b)
#define ST_SCOPE static
#define ST_DEFINE
#include "lib/sort_template.h"

typedef struct ElBatch
{
	MemoryContext cxt;			/* everything below, for the build */
	MemoryContext chunkcxt;		/* per chunk: fields that are not in a copy */
	MemoryContext stepcxt;		/* per batch */
	int			n;				/* events in the chunk */
	ElBatchEvent *events;		/* [EL_CHUNK_EVENTS], in seq order */
	char	   *arena;			/* [EL_CHUNK_ARENA]: their tuples */
	Size		used;			/* of the arena */
	ElSortItem *sorted;			/* the chunk's events by key, then seq */
	int		   *rank;			/* of each sorted[i]: its n-th event of the key */
	ElBatchEvent **batch;		/* the batch being applied, in key order */
	int			nbatch;
	/* Working arrays of el_apply_ranks(), of sorted positions. */
	int		   *positions;		/* 0, 1, 2, ... */
	int		   *byrank;
	int		   *rankstart;		/* [EL_CHUNK_EVENTS + 2] */
	int		   *deferred;
	int			ndeferred;
	bool		tuples_ok;		/* the stream's tuples fit the batch relation */
} ElBatch;

static ElBatch *
el_batch_create(void)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "event_log build",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	ElBatch    *b = palloc0(sizeof(ElBatch));

	b->cxt = cxt;
	b->chunkcxt = AllocSetContextCreate(cxt, "event_log chunk", ALLOCSET_DEFAULT_SIZES);
	/* Keeps its block across resets: mapping it anew costs page faults. */
	b->stepcxt = AllocSetContextCreate(cxt, "event_log batch", EL_BATCH_KEEP,
									   ALLOCSET_DEFAULT_INITSIZE, EL_BATCH_KEEP);
	b->events = palloc(sizeof(ElBatchEvent) * EL_CHUNK_EVENTS);
	b->arena = palloc(EL_CHUNK_ARENA);
	b->sorted = palloc(sizeof(ElSortItem) * EL_CHUNK_EVENTS);
	b->rank = palloc(sizeof(int) * EL_CHUNK_EVENTS);
	b->batch = palloc(sizeof(ElBatchEvent *) * EL_CHUNK_EVENTS);
	b->positions = palloc(sizeof(int) * EL_CHUNK_EVENTS);
	for (int i = 0; i < EL_CHUNK_EVENTS; i++)
		b->positions[i] = i;
	b->byrank = palloc(sizeof(int) * EL_CHUNK_EVENTS);
	b->rankstart = palloc(sizeof(int) * (EL_CHUNK_EVENTS + 2));
	b->deferred = palloc(sizeof(int) * EL_CHUNK_EVENTS);
	MemoryContextSwitchTo(old);
	return b;
}

/* Run one handler's statements over its events of the batch. */
static void
el_batch_step(ElHandlerSet *set, ElBatch *b, int h)
{
	ElBatchPlan *bp = h < 0 ? set->any_batch : set->batch[h];
	ElBatchEvent **events = palloc(sizeof(ElBatchEvent *) * b->nbatch);
	int			count = 0;

	for (int i = 0; i < b->nbatch; i++)
		if (b->batch[i]->handler == h)
			events[count++] = b->batch[i];
	if (count > 0)
		el_batch_run(bp, count, events, set->batch_plain);
}

/*
 * Apply the batch: each handler once over its events.  A small batch (a
 * stream with few keys, or a key with many events) would pay more for
 * executor start-up than it saves: it goes event by event.
 */
static void
el_batch_apply(ElApplyState *st, ElBatch *b)
{
	ElHandlerSet *set = st->set;
	MemoryContext old = MemoryContextSwitchTo(b->stepcxt);

	if (b->nbatch >= EL_BATCH_MIN)
	{
		for (int h = 0; h < set->nhandlers; h++)
			el_batch_step(set, b, h);
		if (set->any)
			el_batch_step(set, b, -1);
	}
	else
		for (int i = 0; i < b->nbatch; i++)
		{
			el_apply(st, b->batch[i]->values, b->batch[i]->nulls);
			MemoryContextReset(b->stepcxt);
		}
	MemoryContextSwitchTo(old);
	MemoryContextReset(b->stepcxt);
	b->nbatch = 0;
}

/*
 * Apply the events at sorted positions pos[0..n) (in key order), rank by
 * rank, each rank's as a batch (in key order).  With defer, a rank above
 * the first with fewer than EL_BATCH_MIN events is not applied: it and the
 * ranks above it go to b->deferred instead.  Linear in n and ranks.
 */
static void
el_apply_ranks(ElApplyState *st, ElBatch *b, const int *pos, int n, int ranks, bool defer)
{
	int		   *start = b->rankstart;	/* [ranks + 2] */

	memset(start, 0, sizeof(int) * (ranks + 2));
	for (int i = 0; i < n; i++)
		start[b->rank[pos[i]] + 1]++;
	for (int r = 1; r <= ranks; r++)
		start[r + 1] += start[r];
	/* byrank: the positions by rank, in key order within a rank. */
	for (int i = 0; i < n; i++)
		b->byrank[start[b->rank[pos[i]]]++] = pos[i];
	/* start[r] is now the end of rank r's events, and start[r - 1] its start. */
	for (int r = 1; r <= ranks; r++)
	{
		int			first = start[r - 1];
		int			end = start[r];

		if (defer && r > 1 && end - first < EL_BATCH_MIN)
		{
			memcpy(b->deferred + b->ndeferred, b->byrank + first,
				   sizeof(int) * (n - first));
			b->ndeferred += n - first;
			return;
		}
		for (int i = first; i < end; i++)
			b->batch[b->nbatch++] = &b->events[b->sorted[b->byrank[i]].event];
		el_batch_apply(st, b);
		CHECK_FOR_INTERRUPTS();
	}
}

static void el_chunk_apply(ElApplyState *st, ElBatch *b);

/* Apply the chunk's events: sorted by key, by ranges of keys and ranks. */
static void
el_chunk_flush(ElApplyState *st, ElBatch *b)
{
	if (b->n == 0)
		return;
	for (int i = 0; i < b->n; i++)
	{
		/* el_chunk_add() made the key plain. */
		text	   *key = (text *) DatumGetPointer(b->events[i].values[Anum_el_key - 1]);
		ElSortItem *item = &b->sorted[i];
		uint64		prefix = 0;

		item->key = VARDATA_ANY(key);
		item->len = VARSIZE_ANY_EXHDR(key);
		item->event = i;
		for (int j = 0; j < 8; j++)
			prefix = (prefix << 8) | (j < item->len ? (unsigned char) item->key[j] : 0);
		item->prefix = prefix;
	}
	el_sort_items(b->sorted, b->n);

	for (int i = 0; i < b->n; i++)
		b->rank[i] = (i > 0 && b->sorted[i].len == b->sorted[i - 1].len &&
					  memcmp(b->sorted[i].key, b->sorted[i - 1].key, b->sorted[i].len) == 0)
			? b->rank[i - 1] + 1 : 1;

	el_chunk_apply(st, b);
	b->n = 0;
	b->used = 0;
	MemoryContextReset(b->chunkcxt);
}

/*
 * Apply the sorted chunk: ranges, each rank by rank.  A rank with fewer than
 * EL_BATCH_MIN events (keys with more events than most in the range) is put
 * off, with the range's higher ranks, until all ranges are done: then the
 * put-off events of all ranges go rank by rank, as fuller batches.  Keys
 * never span ranges, so each key's events stay in order.
 */
static void
el_chunk_apply(ElApplyState *st, ElBatch *b)
{
	int			lo = 0;

	b->ndeferred = 0;
	while (lo < b->n)
	{
		int			hi = lo;
		int			nkeys = 0;
		int			ranks = 0;

		/* The next range: up to EL_RANGE_KEYS keys, whole. */
		while (hi < b->n && (b->rank[hi] > 1 || nkeys < EL_RANGE_KEYS))
		{
			nkeys += (b->rank[hi] == 1);
			ranks = Max(ranks, b->rank[hi]);
			hi++;
		}
		el_apply_ranks(st, b, b->positions + lo, hi - lo, ranks, true);
		lo = hi;
	}
	if (b->ndeferred > 0)
	{
		int			ranks = 0;

		for (int i = 0; i < b->ndeferred; i++)
			ranks = Max(ranks, b->rank[b->deferred[i]]);
		/* Without defer it does not write b->deferred, its input here. */
		el_apply_ranks(st, b, b->deferred, b->ndeferred, ranks, false);
	}
}

/*
 * Copy the slot's event into the chunk: its tuple into the arena, its
 * fields pointing into the copy.  False if the chunk has no room for it.
 */
static bool
el_chunk_add(ElBatch *b, TupleTableSlot *slot, int handler)
{
	HeapTuple	tuple = ExecFetchSlotHeapTuple(slot, false, NULL);
	char	   *from = (char *) tuple->t_data;
	Size		len = tuple->t_len;
	ElBatchEvent *ev;
	char	   *copy;

	if (b->n == EL_CHUNK_EVENTS || b->used + MAXALIGN(len) > EL_CHUNK_ARENA)
		return false;
	copy = b->arena + b->used;
	memcpy(copy, from, len);
	b->used += MAXALIGN(len);

	ev = &b->events[b->n++];
	ev->handler = handler;
	/* The batch relation has the stream's columns: its tuple can go as is. */
	ev->tuple = (b->tuples_ok &&
				 HeapTupleHeaderGetNatts((HeapTupleHeader) copy) == EL_NATTS)
		? (HeapTupleHeader) copy : NULL;
	ev->len = len;
	for (int f = 0; f < EL_NATTS; f++)
	{
		Datum		v = slot->tts_values[f];

		ev->nulls[f] = slot->tts_isnull[f];
		ev->values[f] = v;
		if (!ev->nulls[f] && !TupleDescAttr(slot->tts_tupleDescriptor, f)->attbyval)
		{
			char	   *p = DatumGetPointer(v);

			/* Fields point into the tuple; anything else gets a copy. */
			if (p >= from && p < from + len)
				ev->values[f] = PointerGetDatum(copy + (p - from));
			else
			{
				Form_pg_attribute att = TupleDescAttr(slot->tts_tupleDescriptor, f);
				MemoryContext old = MemoryContextSwitchTo(b->chunkcxt);

				ev->values[f] = datumCopy(v, false, att->attlen);
				MemoryContextSwitchTo(old);
			}
		}
	}

	/*
	 * The sort reads the key's bytes: a compressed or toasted key, rare as
	 * it is (keys are short), is expanded.
	 */
	if (VARATT_IS_EXTENDED(DatumGetPointer(ev->values[Anum_el_key - 1])) &&
		!VARATT_IS_SHORT(DatumGetPointer(ev->values[Anum_el_key - 1])))
	{
		MemoryContext old = MemoryContextSwitchTo(b->chunkcxt);

		ev->values[Anum_el_key - 1] =
			PointerGetDatum(PG_DETOAST_DATUM_PACKED(ev->values[Anum_el_key - 1]));
		MemoryContextSwitchTo(old);
	}
	return true;
}

/*
 * Set-based replay of groups of chunks, each group in one subtransaction
 * (see el_replay_batched()).  A group reads every shard's events with
 * seq > last[shard], with the build's one snapshot (of which each shard's
 * events are a prefix), into chunks and applies them, until it has applied
 * `chunks` chunks or read the whole stream.  A chunk takes runs of events
 * from each shard in turn, each shard's in seq order; keys never span
 * shards, so each key's events stay in seq order.
 */
typedef struct ElGroupCall
{
	ElApplyState *st;
	ElBatch    *b;
	Relation	stream;
	Relation	pk;
	Snapshot	snap;
	int			shards;
	int64	   *last;			/* in: where to start; out: where it stopped */
	int			chunks;			/* how many chunks to apply */
	int64		n;				/* out: events applied */
	bool		done;			/* out: the stream was read to its end */
} ElGroupCall;

static void
el_replay_group(void *arg)
{
	ElGroupCall *g = (ElGroupCall *) arg;
	ElBatch    *b = g->b;
	IndexScanDesc *scans = palloc(sizeof(IndexScanDesc) * g->shards);
	TupleTableSlot *slot = table_slot_create(g->stream, NULL);
	int			live = g->shards;
	int			flushed = 0;

	/* Anew, if a first try failed half-way. */
	b->n = 0;
	b->used = 0;
	b->nbatch = 0;
	MemoryContextReset(b->chunkcxt);
	MemoryContextReset(b->stepcxt);
	g->n = 0;
	g->done = false;
	for (int s = 0; s < g->shards; s++)
		scans[s] = el_shard_scan(g->stream, g->pk, g->snap, s, g->last[s]);
	while (live > 0 && flushed < g->chunks)
	{
		for (int s = 0; s < g->shards && flushed < g->chunks; s++)
		{
			/*
			 * The shard's next EL_SHARD_RUN events that a handler takes, if
			 * any: a run, so that its scan stays on a heap page for the
			 * shard's events there, instead of switching pages (and
			 * checking each for pruning) on every event.
			 */
			int			run = 0;

			while (scans[s] != NULL && run < EL_SHARD_RUN)
			{
				int64		seq;
				int			h;

				if (!index_getnext_slot(scans[s], ForwardScanDirection, slot))
				{
					index_endscan(scans[s]);
					scans[s] = NULL;
					live--;
					break;
				}
				slot_getsomeattrs(slot, EL_NATTS);
				seq = DatumGetInt64(slot->tts_values[Anum_el_seq - 1]);
				h = el_handler_index(g->st->set,
									 DatumGetTextPP(slot->tts_values[Anum_el_type - 1]));
				if (h != -2)
				{
					if (!el_chunk_add(b, slot, h))
					{
						if (b->n == 0)
							elog(ERROR, "event of %u bytes does not fit a build chunk",
								 ExecFetchSlotHeapTuple(slot, false, NULL)->t_len);
						el_chunk_flush(g->st, b);
						/* At the group's end this event starts the next. */
						if (++flushed == g->chunks)
							break;
						(void) el_chunk_add(b, slot, h);
					}
					g->n++;
				}
				g->last[s] = seq;
				/* Events no handler takes count too, for the interrupt check. */
				run++;
			}
			CHECK_FOR_INTERRUPTS();
		}
	}
	if (live == 0)
	{
		el_chunk_flush(g->st, b);
		g->done = true;
	}
	for (int s = 0; s < g->shards; s++)
		if (scans[s] != NULL)
			index_endscan(scans[s]);
	ExecDropSingleTupleTableSlot(slot);
	pfree(scans);
}

/*
 * el_replay_shard() for a set whose handlers run set-based, over all shards
 * at once, from last[shard]; fills last[shard] and returns the events
 * applied.
 *
 * The replay runs in groups of chunks, each group in one subtransaction:
 * one chunk, then two, four, and so on, so a replay of c chunks takes about
 * log2(c) subtransactions.  Not one per batch or per chunk: rows changed by
 * several subtransactions of one transaction get multixacts, which make
 * every later visibility check of their versions slow, and a transaction
 * with more than 64 subtransactions overflows its backend's cache of them,
 * which slows visibility checks in every other session until it ends.
 *
 * If a group fails with an error a handler can raise, it is rolled back and
 * the rest of the stream, from the group's start, is replayed event by
 * event, shard by shard: that raises the error an event-by-event build
 * raises, for the same event, with the event named; or, if the error was
 * the set-based form's own, finishes the build event by event (and says so
 * in build_method).  While plain INSERTs stand in for INSERT ... ON
 * CONFLICT (el_batch_run()), a unique violation is no handler's error: the
 * group is run again with the ON CONFLICT clauses, and so is the rest of
 * the build.
 */
static int64
el_replay_batched(ElApplyState *st, ElBatch *b, Relation stream, Relation pk,
				  int shards, int64 *last)
{
	ElGroupCall g;
	int64	   *start = palloc(sizeof(int64) * shards);
	TupleDesc	desc = RelationGetDescr(stream);
	int64		n = 0;

	/* Stream tuples go to the batch relation as they are if laid out alike. */
	b->tuples_ok = (desc->natts == EL_NATTS);
	for (int i = 0; i < desc->natts && b->tuples_ok; i++)
		b->tuples_ok = !TupleDescAttr(desc, i)->attisdropped &&
			TupleDescAttr(desc, i)->atttypid == el_columns[i].type;

	memset(&g, 0, sizeof(g));
	g.st = st;
	g.b = b;
	g.stream = stream;
	g.pk = pk;
	g.snap = RegisterSnapshot(GetTransactionSnapshot());
	g.shards = shards;
	g.last = last;
	g.chunks = 1;
	while (!g.done)
	{
		ErrorData  *edata;

		memcpy(start, last, sizeof(int64) * shards);
		edata = el_in_subxact(el_replay_group, &g);
		if (edata != NULL && edata->sqlerrcode == ERRCODE_UNIQUE_VIOLATION &&
			st->set->batch_plain)
		{
			elog(DEBUG1, "event_log: a plain INSERT conflicts, running ON CONFLICT from now on");
			st->set->batch_plain = false;
			FreeErrorData(edata);
			memcpy(last, start, sizeof(int64) * shards);
			edata = el_in_subxact(el_replay_group, &g);
		}
		if (edata != NULL)
		{
			elog(DEBUG1, "event_log: set-based replay failed (%s), going on event by event",
				 edata->message);
			st->set->batch_fallback = psprintf("set-based, then event by event: %s",
											   edata->message);
			FreeErrorData(edata);
			memcpy(last, start, sizeof(int64) * shards);
			for (int s = 0; s < shards; s++)
				n += el_replay_shard(st, stream, pk, s, last[s], &last[s]);
			break;
		}
		n += g.n;
		if (g.chunks < INT_MAX / 2)
			g.chunks *= 2;
	}
	UnregisterSnapshot(g.snap);
	pfree(start);
	return n;
}

/* ---------------------------------------------------------------------
 * Creating and rebuilding
 * ---------------------------------------------------------------------
 */

/*
 * event_log.reducer_result(state jsonb) RETURNS jsonb
 *
 * What a state projection's handler stores: the reducer's result, which
 * must not be NULL.  A reducer without an ELSE branch returns NULL for the
 * events it does not handle, and storing that would silently start the
 * key over from `initial` at its next event.
 */
Datum
el_reducer_result(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("reducer returned null"),
				 errdetail("A reducer returns the key's new state; null would discard the state so far."),
				 errhint("Return the state unchanged for events the reducer does not handle, as in CASE ... ELSE state END.")));
	PG_RETURN_DATUM(PG_GETARG_DATUM(0));
}

/* The handler a state projection's reducer becomes. */
static char *
el_reducer_handler(const char *relname, const char *reducer, Jsonb *initial)
{
	const char *rel = quote_identifier(relname);
	char	   *init = quote_literal_cstr(JsonbToCString(NULL, &initial->root,
														 VARSIZE(initial)));
	Oid			argtype = JSONBOID;
	char	   *sql;
	List	   *parsed;

	/* An expression, not a way to end the statement and start others. */
	if (list_length(raw_parser(psprintf("SELECT (%s)", reducer), RAW_PARSE_DEFAULT)) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("reducer must be a single SQL expression")));

	/*
	 * The null check is a function of version 0.2; under 0.1's catalog
	 * (the library updated, ALTER EXTENSION not yet run) go without it.
	 */
	if (OidIsValid(LookupFuncName(list_make2(makeString("event_log"),
											 makeString("reducer_result")),
								  1, &argtype, true)))
		reducer = psprintf("event_log.reducer_result((%s))", reducer);
	sql = psprintf("INSERT INTO %s AS el_s (key, version, state)"
				   " SELECT e.key, e.version, (%s)"
				   " FROM (SELECT COALESCE("
				   "(SELECT el_p.state FROM %s el_p WHERE el_p.key OPERATOR(pg_catalog.=) e.key),"
				   " %s::pg_catalog.jsonb) AS state) AS el_prev"
				   " ON CONFLICT (key) DO UPDATE"
				   " SET version = EXCLUDED.version, state = EXCLUDED.state",
				   rel, reducer, rel, init);
	parsed = raw_parser(sql, RAW_PARSE_DEFAULT);
	if (list_length(parsed) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("reducer must be a single SQL expression")));
	return sql;
}

#define EL_STATE_COLUMNS "key pg_catalog.text PRIMARY KEY, version pg_catalog.int8 NOT NULL, state pg_catalog.jsonb"

/* The CREATE TABLE for a build table, refusing column lists that are not. */
static char *
el_create_table_sql(const char *qbuild, const char *columns)
{
	char	   *sql = psprintf("CREATE TABLE %s (%s)", qbuild, columns);
	List	   *parsed = raw_parser(sql, RAW_PARSE_DEFAULT);

	if (list_length(parsed) != 1 ||
		!IsA(((RawStmt *) linitial(parsed))->stmt, CreateStmt))
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("columns must be a list of column definitions"),
				 errhint("Write what goes between the parentheses of CREATE TABLE, as in 'cart text, sku text, qty int, PRIMARY KEY (cart, sku)'.")));
	return sql;
}

/* name$generation, the build table's name; refused if too long. */
static char *
el_build_name(const char *relname, int32 generation)
{
	char	   *name = psprintf("%s$%d", relname, generation);

	if (strlen(name) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("projection name \"%s\" is too long", relname),
				 errdetail("The name of its build table, \"%s\", would be %d bytes or longer.",
						   name, NAMEDATALEN)));
	return name;
}

static void
el_check_mode(const char *mode)
{
	if (strcmp(mode, "inline") != 0 && strcmp(mode, "async") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid projection mode \"%s\"", mode),
				 errhint("Use 'inline' (in the appending transaction) or 'async' (after commit, from a checkpoint).")));
}

/*
 * Inline projections must see every event, so the tail of a build is read
 * with a snapshot taken after the stream is locked.  Under REPEATABLE READ
 * the transaction's snapshot would hide it.
 */
static void
el_require_read_committed(const char *what)
{
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s of an inline projection must run in READ COMMITTED", what),
				 errdetail("Events committed after the transaction's snapshot would be missed."),
				 errhint("Run it in a READ COMMITTED transaction.")));
}

/*
 * Replay the whole stream through `set` (which must write to the new build
 * table).  For an inline projection the tail is replayed after locking the
 * stream against appends (SHARE ROW EXCLUSIVE, held to commit: it waits for
 * appending transactions to finish, and new appends wait for us).  Fills
 * last[shard]; returns the events applied.
 */
static int64
el_replay_all(ElHandlerSet *set, Oid streamid, int shards, int64 *last)
{
	Relation	stream = table_open(streamid, AccessShareLock);
	Relation	pk = index_open(el_stream_indexes(stream)->pk, AccessShareLock);
	int64		n = 0;
	ElApplyState st;
	ElBatch    *b = set->batchable ? el_batch_create() : NULL;

	el_apply_begin(set, &st);
	if (b != NULL)
		n = el_replay_batched(&st, b, stream, pk, shards, last);
	else
		for (int s = 0; s < shards; s++)
			n += el_replay_shard(&st, stream, pk, s, last[s], &last[s]);
	el_apply_end(&st);
	if (b != NULL)
		MemoryContextDelete(b->cxt);
	index_close(pk, AccessShareLock);
	table_close(stream, AccessShareLock);
	return n;
}

/* Record in the catalog how the build replayed: projections.build_method. */
static void
el_set_build_method(ElHandlerSet *set, Oid view)
{
	Oid			types[2] = {OIDOID, TEXTOID};
	Datum		values[2];

	values[0] = ObjectIdGetDatum(view);
	values[1] = CStringGetTextDatum(!set->batchable ?
									psprintf("event by event: %s", set->batch_why) :
									set->batch_fallback ? set->batch_fallback : "set-based");
	el_catalog_exec("UPDATE event_log.projections SET build_method = $2"
					" WHERE projection = $1", 2, types, values, NULL, SPI_OK_UPDATE);
}

static int64
el_build(ElHandlerSet *set, ElProjection *p, int64 *last, bool create)
{
	int			shards = el_lock_stream(p->stream, AccessShareLock);
	int64		n;

	el_check_stream_read(p->stream, set->owner, set->name);
	el_prepare_batches(set);
	n = el_replay_all(set, p->stream, shards, last);
	if (!p->inline_mode)
	{
		el_set_build_method(set, p->view);
		return n;
	}

	if (create)
	{
		Oid			view = p->view;
		char	   *qstream = el_stream_name(p->stream);

		/*
		 * CREATE TRIGGER takes SHARE ROW EXCLUSIVE on the stream.  The DDL
		 * guard lets the trigger be, between its creation and its ENABLE
		 * ALWAYS, which only the stream's owner may set.
		 */
		el_projection_ddl = true;
		PG_TRY();
		{
			el_exec_as(GetUserId(), InvalidOid,
					   psprintf("CREATE TRIGGER " EL_PROJECTION_TRIGGER "%u"
								" AFTER INSERT ON %s FOR EACH ROW"
								" EXECUTE FUNCTION event_log.project('%u')",
								view, qstream, view));
			el_exec_as(el_rel_owner(p->stream), InvalidOid,
					   psprintf("ALTER TABLE %s ENABLE ALWAYS TRIGGER " EL_PROJECTION_TRIGGER "%u",
								qstream, view));
		}
		PG_FINALLY();
		{
			el_projection_ddl = false;
		}
		PG_END_TRY();
	}
	else
		LockRelationOid(p->stream, ShareRowExclusiveLock);

	n += el_replay_all(set, p->stream, shards, last);
	el_set_build_method(set, p->view);
	return n;
}

/* Set each shard's checkpoint of an async projection, clearing errors. */
static void
el_set_checkpoints(Oid view, int shards, int64 *last)
{
	for (int s = 0; s < shards; s++)
	{
		Oid			types[3] = {OIDOID, INT4OID, INT8OID};
		Datum		values[3] = {ObjectIdGetDatum(view), Int32GetDatum(s),
		Int64GetDatum(last[s])};

		el_catalog_exec("INSERT INTO event_log.projection_offsets AS o"
						" (projection, shard, seq, applied_at)"
						" VALUES ($1, $2, $3, now())"
						" ON CONFLICT (projection, shard) DO UPDATE"
						" SET seq = EXCLUDED.seq, applied_at = EXCLUDED.applied_at,"
						" error = NULL, error_seq = NULL, error_at = NULL",
						3, types, values, NULL, SPI_OK_INSERT);
	}
}

/*
 * event_log.create_projection(name text, stream regclass, columns text,
 *     handlers jsonb, mode text, reducer text, initial jsonb)
 * RETURNS regclass
 *
 * Either columns and handlers, or a reducer (a state projection with
 * columns key, version, state).  Builds the projection from the stream's
 * history and returns its view.
 */
Datum
el_create_projection(PG_FUNCTION_ARGS)
{
	char	   *name;
	Oid			stream;
	char	   *mode;
	RangeVar   *rv;
	Oid			nsp;
	char	   *nspname;
	char	   *qview;
	char	   *qbuild;
	AclResult	aclresult;
	ElProjection p = {0};
	ElHandlerSet *set;
	int64	   *last;
	int64		n;
	int			shards;

	el_require_arg(fcinfo, 0, "name");
	el_require_arg(fcinfo, 1, "stream");
	el_require_arg(fcinfo, 4, "mode");
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	stream = PG_GETARG_OID(1);
	mode = text_to_cstring(PG_GETARG_TEXT_PP(4));

	/*
	 * Hold the stream until commit: drop_stream() waits for us and then
	 * finds the projection, or we wait for it and find no stream.
	 */
	LockRelationOid(stream, AccessShareLock);
	if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(stream)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("the stream of projection \"%s\" was dropped", name)));
	shards = el_require_stream(stream);
	el_check_mode(mode);

	p.stream = stream;
	p.inline_mode = strcmp(mode, "inline") == 0;
	if (!p.inline_mode)
		el_wake_launcher_at_commit();
	p.generation = 1;
	if (!PG_ARGISNULL(5))
	{
		if (!PG_ARGISNULL(2) || !PG_ARGISNULL(3))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("a projection has either a reducer or columns and handlers, not both")));
		el_require_arg(fcinfo, 6, "initial");
		p.reducer = text_to_cstring(PG_GETARG_TEXT_PP(5));
		p.initial = PG_GETARG_JSONB_P(6);
		p.columns = EL_STATE_COLUMNS;
	}
	else
	{
		if (PG_ARGISNULL(2) || PG_ARGISNULL(3))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("a projection needs columns and handlers, or a reducer"),
					 errhint("Give columns => 'col type, ...' and handlers => jsonb_build_object('EventType', 'SQL', ...).")));
		p.columns = text_to_cstring(PG_GETARG_TEXT_PP(2));
		p.handlers = PG_GETARG_JSONB_P(3);
		el_check_handlers(p.handlers);
	}

	rv = makeRangeVarFromNameList(el_parse_name(name, "projection"));
	nsp = RangeVarGetCreationNamespace(rv);
	if (isAnyTempNamespace(nsp) || rv->relpersistence == RELPERSISTENCE_TEMP)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("projections cannot be temporary")));
	if (nsp == el_schema_oid())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot create a projection in schema \"event_log\""),
				 errhint("Create projections in a schema of your own.")));
	aclresult = pg_namespace_aclcheck(nsp, GetUserId(), ACL_CREATE);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_SCHEMA, get_namespace_name(nsp));
	aclresult = pg_class_aclcheck(stream, GetUserId(), ACL_SELECT);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_TABLE, get_rel_name(stream));
	if (p.inline_mode && pg_class_aclcheck(stream, GetUserId(), ACL_TRIGGER) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to create an inline projection of stream \"%s\"",
						el_stream_name(stream)),
				 errdetail("Inline projections run in every appending transaction."),
				 errhint("The stream's owner can grant the TRIGGER privilege, or create an async projection.")));
	if (p.inline_mode)
		el_require_read_committed("creation");

	nspname = get_namespace_name(nsp);
	qview = quote_qualified_identifier(nspname, rv->relname);
	qbuild = quote_qualified_identifier(nspname, el_build_name(rv->relname, 1));
	if (OidIsValid(get_relname_relid(rv->relname, nsp)))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_TABLE),
				 errmsg("relation \"%s\" already exists", qview)));
	SPI_connect();
	el_exec_as(GetUserId(), nsp, el_create_table_sql(qbuild, p.columns));
	el_exec_as(GetUserId(), InvalidOid, psprintf("CREATE VIEW %s AS SELECT * FROM %s", qview, qbuild));
	p.view = get_relname_relid(rv->relname, nsp);
	p.build_table = get_relname_relid(el_build_name(rv->relname, 1), nsp);
	if (p.reducer)
		p.handlers = el_state_handlers(&p);

	{
		Oid			types[9] = {OIDOID, OIDOID, TEXTOID, TEXTOID, JSONBOID, TEXTOID,
		JSONBOID, OIDOID, INT4OID};
		Datum		values[9];
		char		nulls[9] = "         ";

		values[0] = ObjectIdGetDatum(p.view);
		values[1] = ObjectIdGetDatum(stream);
		values[2] = CStringGetTextDatum(mode);
		values[3] = CStringGetTextDatum(p.columns);
		values[4] = JsonbPGetDatum(p.handlers);
		values[5] = p.reducer ? CStringGetTextDatum(p.reducer) : (Datum) 0;
		values[6] = p.reducer ? JsonbPGetDatum(p.initial) : (Datum) 0;
		values[7] = ObjectIdGetDatum(p.build_table);
		values[8] = Int32GetDatum(1);
		if (!p.reducer)
			nulls[5] = nulls[6] = 'n';
		el_catalog_exec("INSERT INTO event_log.projections (projection, stream, mode,"
						" columns, handlers, reducer, initial, build_table, generation, events)"
						" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0)",
						9, types, values, nulls, SPI_OK_INSERT);
	}
	el_lock_projection(p.view, true);

	set = el_compile(&p, p.handlers, false, false, CurrentMemoryContext);
	last = palloc0(sizeof(int64) * shards);
	n = el_build(set, &p, last, true);
	if (!p.inline_mode)
		el_set_checkpoints(p.view, shards, last);
	{
		Oid			types[2] = {OIDOID, INT8OID};
		Datum		values[2] = {ObjectIdGetDatum(p.view), Int64GetDatum(n)};

		el_catalog_exec("UPDATE event_log.projections SET events = $2 WHERE projection = $1",
						2, types, values, NULL, SPI_OK_UPDATE);
	}
	SPI_finish();
	PG_RETURN_OID(p.view);
}

/*
 * Take a projection's lock and read its row: it may have been dropped by
 * the transaction we waited for.
 */
static ElProjection *
el_lock_and_load(Oid view, text *name)
{
	ElProjection *p;

	el_lock_projection(view, true);
	p = el_projection_load(view);
	if (p == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("projection \"%s\" was dropped", text_to_cstring(name))));
	return p;
}

/* Only the view's owner (or a superuser) manages a projection. */
static void
el_require_owner(Oid view)
{
	if (!pg_class_ownercheck(view, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, OBJECT_VIEW, get_rel_name(view));
}

/* New handlers, reducer or initial state for an existing projection. */
static void
el_new_logic(ElProjection *p, FunctionCallInfo fcinfo, int handlers_arg,
			 int reducer_arg, int initial_arg)
{
	if (p->reducer == NULL)
	{
		if (!PG_ARGISNULL(reducer_arg) || !PG_ARGISNULL(initial_arg))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("projection \"%s\" has handlers, not a reducer",
							get_rel_name(p->view))));
		if (!PG_ARGISNULL(handlers_arg))
		{
			p->handlers = PG_GETARG_JSONB_P(handlers_arg);
			el_check_handlers(p->handlers);
		}
	}
	else
	{
		if (!PG_ARGISNULL(handlers_arg))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("projection \"%s\" has a reducer, not handlers",
							get_rel_name(p->view))));
		if (!PG_ARGISNULL(reducer_arg))
			p->reducer = text_to_cstring(PG_GETARG_TEXT_PP(reducer_arg));
		if (!PG_ARGISNULL(initial_arg))
			p->initial = PG_GETARG_JSONB_P(initial_arg);
	}
}

/* The handlers object of a state projection, from its reducer. */
static Jsonb *
el_state_handlers(ElProjection *p)
{
	JsonbParseState *state = NULL;
	JsonbValue	k,
				v;

	k.type = jbvString;
	k.val.string.val = "*";
	k.val.string.len = 1;
	v.type = jbvString;
	v.val.string.val = el_reducer_handler(get_rel_name(p->view), p->reducer, p->initial);
	v.val.string.len = strlen(v.val.string.val);
	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	pushJsonbValue(&state, WJB_KEY, &k);
	pushJsonbValue(&state, WJB_VALUE, &v);
	return JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL));
}

/* Write a projection's logic and build state back to the catalog. */
static void
el_update_projection(ElProjection *p, int64 events, bool rebuilt)
{
	Oid			types[7] = {OIDOID, TEXTOID, JSONBOID, TEXTOID, JSONBOID, OIDOID, INT4OID};
	Datum		values[7];
	char		nulls[7] = "       ";

	values[0] = ObjectIdGetDatum(p->view);
	values[1] = CStringGetTextDatum(p->columns);
	values[2] = JsonbPGetDatum(p->handlers);
	values[3] = p->reducer ? CStringGetTextDatum(p->reducer) : (Datum) 0;
	values[4] = p->reducer ? JsonbPGetDatum(p->initial) : (Datum) 0;
	values[5] = ObjectIdGetDatum(p->build_table);
	values[6] = Int32GetDatum(p->generation);
	if (!p->reducer)
		nulls[3] = nulls[4] = 'n';
	el_catalog_exec("UPDATE event_log.projections SET columns = $2, handlers = $3,"
					" reducer = $4, initial = $5, build_table = $6, generation = $7"
					" WHERE projection = $1",
					7, types, values, nulls, SPI_OK_UPDATE);
	if (rebuilt)
	{
		types[1] = INT8OID;
		values[1] = Int64GetDatum(events);
		el_catalog_exec("UPDATE event_log.projections SET events = $2, rebuilt_at = now()"
						" WHERE projection = $1",
						2, types, values, NULL, SPI_OK_UPDATE);
	}
	/* Every backend recompiles the handlers at its next use. */
	CacheInvalidateRelcacheByRelid(p->view);
}

/*
 * event_log.rebuild_projection(name text, columns text, handlers jsonb,
 *     reducer text, initial jsonb) RETURNS bigint
 *
 * Replays the stream into a new build table (with new logic, if given)
 * while readers keep the old one, then swaps the view over to it, all in
 * the caller's transaction.  Returns the number of events replayed.
 */
Datum
el_rebuild_projection(PG_FUNCTION_ARGS)
{
	Oid			view;
	ElProjection *p;
	ElHandlerSet *set;
	char	   *relname;
	char	   *nspname;
	char	   *newname;
	char	   *qbuild;
	char	   *qold;
	Oid			owner;
	int			shards;
	int64	   *last;
	int64		n;

	el_require_arg(fcinfo, 0, "name");
	SPI_connect();
	view = el_projection_oid(PG_GETARG_TEXT_PP(0));
	el_require_owner(view);

	/* Waits for a running async batch or another rebuild of it. */
	p = el_lock_and_load(view, PG_GETARG_TEXT_PP(0));
	if (p->inline_mode)
		el_require_read_committed("a rebuild");
	if (!PG_ARGISNULL(1))
	{
		if (p->reducer)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("the columns of a state projection are fixed")));
		p->columns = text_to_cstring(PG_GETARG_TEXT_PP(1));
	}
	el_new_logic(p, fcinfo, 2, 3, 4);
	if (p->reducer)
		p->handlers = el_state_handlers(p);

	owner = el_rel_owner(view);
	relname = get_rel_name(view);
	nspname = get_namespace_name(get_rel_namespace(view));
	qold = quote_qualified_identifier(get_namespace_name(get_rel_namespace(p->build_table)),
									  get_rel_name(p->build_table));
	p->generation++;
	newname = el_build_name(relname, p->generation);
	qbuild = quote_qualified_identifier(nspname, newname);

	/*
	 * The new table, and a temporary view of the projection's name over it:
	 * the handlers, run with the temporary schema first, write there.
	 */
	el_exec_as(owner, get_rel_namespace(view), el_create_table_sql(qbuild, p->columns));
	el_exec_as_ext(owner, InvalidOid, psprintf("CREATE TEMPORARY VIEW %s AS SELECT * FROM %s",
							   quote_identifier(relname), qbuild), false);
	set = el_compile(p, p->handlers, true, false, CurrentMemoryContext);

	shards = el_stream_shards(p->stream);
	last = palloc0(sizeof(int64) * shards);
	n = el_build(set, p, last, false);

	/* The swap: readers wait for our commit, then see the new table. */
	el_exec_as_ext(owner, InvalidOid,
				   psprintf("DROP VIEW pg_temp.%s", quote_identifier(relname)), false);
	PG_TRY();
	{
		el_exec_as(owner, InvalidOid, psprintf("CREATE OR REPLACE VIEW %s AS SELECT * FROM %s",
								   quote_qualified_identifier(nspname, relname), qbuild));
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(CurTransactionContext);
		edata = CopyErrorData();
		FlushErrorState();
		ereport(ERROR,
				(errcode(edata->sqlerrcode),
				 errmsg("cannot swap in the rebuilt projection \"%s\": %s",
						relname, edata->message),
				 errhint("A rebuild may add columns at the end; to change or drop columns, create a new projection.")));
	}
	PG_END_TRY();
	p->build_table = get_relname_relid(newname, get_rel_namespace(view));
	el_update_projection(p, n, true);
	if (!p->inline_mode)
		el_set_checkpoints(view, shards, last);

	el_projection_ddl = true;
	PG_TRY();
	{
		el_exec_as(owner, InvalidOid, psprintf("DROP TABLE %s", qold));
	}
	PG_FINALLY();
	{
		el_projection_ddl = false;
	}
	PG_END_TRY();
	SPI_finish();
	PG_RETURN_INT64(n);
}

/*
 * event_log.alter_projection(name text, handlers jsonb, reducer text,
 *     initial jsonb) RETURNS void
 *
 * New logic for events from now on, without a rebuild: for fixing a handler
 * an async projection stopped at.  rebuild_projection() applies new logic
 * to history too.
 */
Datum
el_alter_projection(PG_FUNCTION_ARGS)
{
	Oid			view;
	ElProjection *p;

	el_require_arg(fcinfo, 0, "name");
	SPI_connect();
	view = el_projection_oid(PG_GETARG_TEXT_PP(0));
	el_require_owner(view);
	p = el_lock_and_load(view, PG_GETARG_TEXT_PP(0));
	el_new_logic(p, fcinfo, 1, 2, 3);
	if (p->reducer)
		p->handlers = el_state_handlers(p);
	/* Compile to report mistakes now rather than at the next event. */
	(void) el_compile(p, p->handlers, false, false, CurrentMemoryContext);
	el_update_projection(p, 0, false);
	/*
	 * Stopped shards retry at the next run; wake the background worker at
	 * commit, as an append to the stream would.
	 */
	el_consumer_note_append(p->stream);
	el_catalog_exec("UPDATE event_log.projection_offsets"
					" SET error = NULL, error_seq = NULL, error_at = NULL"
					" WHERE projection = $1 AND error IS NOT NULL",
					1, (Oid[]) {OIDOID}, (Datum[]) {ObjectIdGetDatum(view)},
					NULL, SPI_OK_UPDATE);
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * event_log.drop_projection(name text) RETURNS void
 *
 * The projection's owner may drop it, and so may the owner of its stream:
 * an inline projection runs in every append, and one whose handler always
 * fails would otherwise hold the stream hostage (DROP TABLE ... CASCADE
 * drops other roles' views on a table the same way).  The view and build
 * table are dropped as their owner.
 */
Datum
el_drop_projection(PG_FUNCTION_ARGS)
{
	el_require_arg(fcinfo, 0, "name");
	SPI_connect();
	el_drop(el_projection_oid(PG_GETARG_TEXT_PP(0)), PG_GETARG_TEXT_PP(0));
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * event_log.drop_projection(projection regclass) RETURNS void
 *
 * The same, by the view's oid (event_log.projections lists them): a stream's
 * owner may not be allowed to look up names in the schema of a projection
 * of its stream, and must still be able to drop it.
 */
Datum
el_drop_projection_oid(PG_FUNCTION_ARGS)
{
	Oid			view;

	el_require_arg(fcinfo, 0, "projection");
	view = PG_GETARG_OID(0);
	SPI_connect();
	if (el_projection_load(view) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("relation with OID %u is not a projection", view),
				 errhint("Projections are listed in event_log.projections.")));
	el_drop(view, cstring_to_text(get_rel_name(view)));
	SPI_finish();
	PG_RETURN_VOID();
}

/* A projection's view and build table, to drop as their owner. */
typedef struct ElDropCall
{
	Oid			owner;
	const char *view;
	const char *table;
} ElDropCall;

static void
el_drop_relations(void *arg)
{
	ElDropCall *drop = (ElDropCall *) arg;

	el_exec_as(drop->owner, InvalidOid, psprintf("DROP VIEW %s", drop->view));
	el_exec_as(drop->owner, InvalidOid, psprintf("DROP TABLE %s", drop->table));
}

/* Drop a projection: its catalog row, trigger, view and build table. */
static void
el_drop(Oid view, text *name)
{
	Oid			owner;
	ElProjection *p;
	Oid			types[1] = {OIDOID};
	Datum		values[1];
	Oid			buildnsp;
	bool		by_stream_owner = !pg_class_ownercheck(view, GetUserId());
	ElDropCall	drop;

	if (by_stream_owner)
	{
		p = el_projection_load(view);
		if (p == NULL || !pg_class_ownercheck(p->stream, GetUserId()))
			aclcheck_error(ACLCHECK_NOT_OWNER, OBJECT_VIEW, get_rel_name(view));
	}
	owner = el_rel_owner(view);
	p = el_lock_and_load(view, name);
	values[0] = ObjectIdGetDatum(view);
	el_catalog_exec("DELETE FROM event_log.projections WHERE projection = $1",
					1, types, values, NULL, SPI_OK_DELETE);

	/* Each by its own schema: the view may have been moved (SET SCHEMA). */
	buildnsp = get_rel_namespace(p->build_table);

	/*
	 * The projection's owner drops it as DROP VIEW would, refusing if other
	 * objects depend on it.  The stream's owner frees its stream whatever
	 * depends on the projection: the trigger goes; the view and build table
	 * go too unless other objects (another role's, maybe, that the stream's
	 * owner has no say over) depend on them, in which case they stay as
	 * plain relations of their owner, no longer maintained.  So one
	 * dependent view cannot keep a failing inline projection in place, and
	 * the stream's owner destroys nothing beyond the projection.
	 */
	el_projection_ddl = true;
	PG_TRY();
	{
		/* Only the stream's owner may drop a trigger on it. */
		if (p->inline_mode)
			el_exec_as(el_rel_owner(p->stream), InvalidOid,
					   psprintf("DROP TRIGGER " EL_PROJECTION_TRIGGER "%u ON %s",
								view, el_stream_name(p->stream)));
		drop.owner = owner;
		drop.view = quote_qualified_identifier(get_namespace_name(get_rel_namespace(view)),
											   get_rel_name(view));
		drop.table = quote_qualified_identifier(get_namespace_name(buildnsp),
												get_rel_name(p->build_table));
		if (!by_stream_owner)
			el_drop_relations(&drop);
		else
		{
			/*
			 * Whatever keeps them (dependents, or their owner taking away
			 * its own USAGE on their schema, or giving the view and the
			 * table to different roles), the trigger and the catalog row
			 * still go: only a cancel stops the drop.
			 */
			ErrorData  *edata = el_in_subxact(el_drop_relations, &drop);

			if (edata != NULL)
				ereport(NOTICE,
						(errmsg("view %s and table %s stay, no longer a projection: %s",
								drop.view, drop.table, edata->message),
						 errhint("Their owner can drop them.")));
		}
	}
	PG_FINALLY();
	{
		el_projection_ddl = false;
	}
	PG_END_TRY();
}

/* ---------------------------------------------------------------------
 * Async projections
 * ---------------------------------------------------------------------
 */

/* Read up to max events of a shard after seq `after`, copied. */
static int
el_read_batch(Relation stream, Relation pk, int32 shard, int64 after,
			  int max, HeapTuple *out)
{
	Snapshot	snap = RegisterSnapshot(GetTransactionSnapshot());
	IndexScanDesc scan = el_shard_scan(stream, pk, snap, shard, after);
	TupleTableSlot *slot = table_slot_create(stream, NULL);
	int			n = 0;

	while (n < max && index_getnext_slot(scan, ForwardScanDirection, slot))
		out[n++] = ExecCopySlotHeapTuple(slot);
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	UnregisterSnapshot(snap);
	return n;
}

typedef struct ElApplyCall
{
	ElHandlerSet *set;
	TupleDesc	desc;
	HeapTuple  *events;
	int			count;
	TimestampTz deadline;		/* stop after an event once passed; 0: never */
	int			done;			/* events applied so far */
	MemoryContext evcxt;		/* per event, reset after each */
} ElApplyCall;

static void
el_apply_events(void *arg)
{
	ElApplyCall *call = (ElApplyCall *) arg;
	MemoryContext cxt = CurrentMemoryContext;
	int			natts = call->desc->natts;
	Datum	   *values = palloc(sizeof(Datum) * natts);
	bool	   *nulls = palloc(sizeof(bool) * natts);
	ElApplyState st;

	/*
	 * The stream may have columns after the contract's (docs/streams.md):
	 * deform into arrays sized from its descriptor, of which handlers see
	 * the first EL_NATTS.
	 */
	Assert(natts >= EL_NATTS);
	el_apply_begin(call->set, &st);
	st.timed = true;
	for (call->done = 0; call->done < call->count; call->done++)
	{
		if (call->deadline != 0 && call->done > 0 &&
			GetCurrentTimestamp() >= call->deadline)
			break;
		MemoryContextSwitchTo(call->evcxt);
		heap_deform_tuple(call->events[call->done], call->desc, values, nulls);
		el_apply(&st, values, nulls);
		MemoryContextSwitchTo(cxt);
		MemoryContextReset(call->evcxt);
	}
	el_apply_end(&st);
}

/*
 * Apply events[0..count) in a subtransaction, or the first *applied of
 * them if the deadline (0: none) passes first (never fewer than one).
 * Returns -1 if they went through, else the index of the event that
 * failed, with its error in *error (the subtransaction rolled back).
 */
static int
el_apply_batch(ElHandlerSet *set, TupleDesc desc, HeapTuple *events, int count,
			   TimestampTz deadline, int *applied, ErrorData **error)
{
	ElApplyCall call = {set, desc, events, count, deadline, 0, NULL};
	ErrorData  *edata;

	call.evcxt = AllocSetContextCreate(CurrentMemoryContext, "event_log event",
									   ALLOCSET_DEFAULT_SIZES);
	edata = el_in_subxact(el_apply_events, &call);
	MemoryContextDelete(call.evcxt);
	*applied = call.done;
	if (edata == NULL)
		return -1;
	*error = edata;				/* left alone when all went through */
	return call.done;
}

static int64
el_tuple_seq(HeapTuple tup, TupleDesc desc)
{
	bool		isnull;

	return DatumGetInt64(heap_getattr(tup, Anum_el_seq, desc, &isnull));
}

/*
 * Move a shard's checkpoint from `from` to `seq`.  Only the holder of the
 * projection lock moves it, so it must still be at `from`; anything else
 * would mean events applied twice, and is an error.
 */
static void
el_checkpoint(Oid view, int32 shard, int64 from, int64 seq)
{
	Oid			types[4] = {OIDOID, INT4OID, INT8OID, INT8OID};
	Datum		values[4] = {ObjectIdGetDatum(view), Int32GetDatum(shard),
	Int64GetDatum(seq), Int64GetDatum(from)};

	if (el_catalog_exec("UPDATE event_log.projection_offsets"
						" SET seq = $3, applied_at = now(),"
						" error = NULL, error_seq = NULL, error_at = NULL"
						" WHERE projection = $1 AND shard = $2 AND seq = $4",
						4, types, values, NULL, SPI_OK_UPDATE) != 1)
		elog(ERROR, "checkpoint of shard %d of projection %u moved under a run",
			 shard, view);
}

/*
 * Record an error of a whole projection (not of one event) on every shard:
 * each waits out event_log.retry_interval from now.
 */
static void
el_record_projection_error(Oid view, const char *message)
{
	el_catalog_exec("UPDATE event_log.projection_offsets"
					" SET error = $2, error_seq = NULL, error_at = now()"
					" WHERE projection = $1",
					2, (Oid[]) {OIDOID, TEXTOID},
					(Datum[]) {ObjectIdGetDatum(view), CStringGetTextDatum(message)},
					NULL, SPI_OK_UPDATE);
}

static void
el_record_error(ElHandlerSet *set, int32 shard, int64 seq, ErrorData *edata)
{
	Oid			types[4] = {OIDOID, INT4OID, INT8OID, TEXTOID};
	Datum		values[4] = {ObjectIdGetDatum(set->view), Int32GetDatum(shard),
	Int64GetDatum(seq), CStringGetTextDatum(edata->message)};

	el_catalog_exec("UPDATE event_log.projection_offsets"
					" SET error = $4, error_seq = $3, error_at = now()"
					" WHERE projection = $1 AND shard = $2",
					4, types, values, NULL, SPI_OK_UPDATE);
	ereport(WARNING,
			(errcode(edata->sqlerrcode),
			 errmsg("projection \"%s\" stopped at shard %d seq " INT64_FORMAT ": %s",
					set->name, shard, seq, edata->message),
			 errhint("Fix the handler with event_log.alter_projection() (or what it depends on); the next run resumes at this event.")));
}

/*
 * Catch one async projection up by up to max_events events, shard by shard
 * in batches, each batch and its checkpoint in one subtransaction: an event
 * is applied exactly when its checkpoint moves past it.  A failing event
 * stops its shard there, with the error recorded; the batch's earlier
 * events are applied again without it.
 */
static int64
el_run_async(Oid view, int64 max_events, TimestampTz deadline)
{
	ElHandlerSet *set;
	ElProjection *p = el_projection_load(view);
	Relation	stream;
	Relation	pk;
	TupleDesc	desc;
	int			shards;
	int64	   *seqs;
	bool	   *done;
	HeapTuple  *batch = palloc(sizeof(HeapTuple) * EL_ASYNC_BATCH);
	MemoryContext batchcxt;
	volatile int64 total = 0;
	volatile bool progress = true;
	volatile bool out_of_time = false;

	/* Held against drop_stream() to the end of the run's transaction. */
	shards = el_lock_stream(p->stream, AccessShareLock);
	set = el_live_handlers(view);
	el_check_stream_read(p->stream, set->owner, set->name);
	seqs = palloc0(sizeof(int64) * shards);
	done = palloc0(sizeof(bool) * shards);
	/*
	 * A shard stopped by an error is retried once event_log.retry_interval
	 * has passed since the error was recorded (alter_projection() clears
	 * it, for an immediate retry).
	 */
	{
		/*
		 * With the latest snapshot, not the statement's: it was taken before
		 * we got the projection lock, and another run may have moved the
		 * checkpoints since.
		 */
		Oid			types[2] = {OIDOID, INT4OID};
		Datum		values[2] = {ObjectIdGetDatum(view), Int32GetDatum(el_retry_interval)};

		el_catalog_read_latest("SELECT shard::int8, seq,"
							   " CASE WHEN error_at > now() - $2 * interval '1 ms' THEN 1 ELSE 0 END::int8"
							   " FROM event_log.projection_offsets WHERE projection = $1",
							   2, types, values, 0);
	}
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		int64		shard = el_spi_int8(r, 1);

		if (shard >= 0 && shard < shards)
		{
			seqs[shard] = el_spi_int8(r, 2);
			done[shard] = el_spi_int8(r, 3) == 1;
		}
	}

	stream = table_open(p->stream, AccessShareLock);
	pk = index_open(el_stream_indexes(stream)->pk, AccessShareLock);
	desc = RelationGetDescr(stream);
	batchcxt = AllocSetContextCreate(CurrentMemoryContext, "event_log batch",
									 ALLOCSET_DEFAULT_SIZES);
	set->refcount++;
	el_running_view = view;
	PG_TRY();
	{
		while (progress && total < max_events && !out_of_time)
		{
			progress = false;
			for (int s = 0; s < shards && total < max_events && !out_of_time; s++)
			{
				MemoryContext old;
				int			count;
				int			failed;
				int			applied;
				ErrorData  *edata = NULL;

				if (done[s])
					continue;
				MemoryContextReset(batchcxt);
				old = MemoryContextSwitchTo(batchcxt);
				count = el_read_batch(stream, pk, s, seqs[s],
									  (int) Min(EL_ASYNC_BATCH, max_events - total), batch);
				MemoryContextSwitchTo(old);
				if (count == 0)
				{
					done[s] = true;
					continue;
				}
				failed = el_apply_batch(set, desc, batch, count, deadline, &applied, &edata);
				if (failed < 0)
				{
					el_checkpoint(view, s, seqs[s], el_tuple_seq(batch[applied - 1], desc));
					seqs[s] = el_tuple_seq(batch[applied - 1], desc);
					total += applied;
					progress = true;
					out_of_time = applied < count;
					continue;
				}

				/*
				 * Stop the shard at the failing event; apply again what came
				 * before it (which may fail in turn, and then stops earlier).
				 */
				while (failed > 0)
				{
					int			again = el_apply_batch(set, desc, batch, failed, 0,
													   &applied, &edata);

					if (again < 0)
					{
						el_checkpoint(view, s, seqs[s], el_tuple_seq(batch[failed - 1], desc));
						seqs[s] = el_tuple_seq(batch[failed - 1], desc);
						total += failed;
						break;
					}
					failed = again;
				}
				el_record_error(set, s, el_tuple_seq(batch[failed], desc), edata);
				done[s] = true;
			}
		}
	}
	PG_FINALLY();
	{
		el_running_view = InvalidOid;
		el_release_set(set);
	}
	PG_END_TRY();
	MemoryContextDelete(batchcxt);
	index_close(pk, AccessShareLock);
	table_close(stream, AccessShareLock);
	return total;
}

typedef struct ElRunCall
{
	Oid			view;
	int64		max_events;
	TimestampTz deadline;
	int64		n;
} ElRunCall;

static void
el_run_async_call(void *arg)
{
	ElRunCall  *call = (ElRunCall *) arg;

	call->n = el_run_async(call->view, call->max_events, call->deadline);
}

/*
 * el_run_async() in a subtransaction.  An error that escapes it is the
 * projection's, not the event's: its handlers no longer compile (a table
 * they use was dropped, say).  It is recorded on every shard, and the
 * other projections go on.  A cancel of the running statement fails the
 * whole run.
 */
static int64
el_run_async_guarded(Oid view, int64 max_events, TimestampTz deadline)
{
	ElRunCall	call = {view, max_events, deadline, 0};
	ErrorData  *edata = el_in_subxact(el_run_async_call, &call);

	if (edata == NULL)
		return call.n;
	el_record_projection_error(view, edata->message);
	ereport(WARNING,
			(errcode(edata->sqlerrcode),
			 errmsg("projection \"%s\" could not run: %s",
					el_stream_name(view), edata->message),
			 errhint("Fix the projection with event_log.alter_projection() or what its handlers depend on.")));
	return 0;
}

/*
 * One async projection's turn in the background worker (worker.c), in a
 * transaction of its own: up to max_events events, and no further event
 * once the deadline has passed, so one slow projection cannot hold back
 * the others for long.  Skipped (returns 0) if another session holds the
 * projection or it is gone.  SPI connected.
 */
int64
el_run_projection_turn(Oid view, int64 max_events, TimestampTz deadline)
{
	ElProjection *p;

	if (!el_lock_projection(view, false))
		return 0;
	p = el_projection_load(view);
	if (p == NULL || p->inline_mode)
		return 0;
	return el_run_async_guarded(view, max_events, deadline);
}

/*
 * event_log.run_projections(projection text DEFAULT NULL,
 *     max_events integer DEFAULT 10000) RETURNS bigint
 *
 * Catches up the async projections the caller owns (all of them for a
 * superuser), or the one named, by up to max_events events each.  A
 * projection another session is running or rebuilding is skipped.  Returns
 * the number of events applied.
 */
Datum
el_run_projections(PG_FUNCTION_ARGS)
{
	int64		max_events;
	int64		total = 0;
	Oid			named = InvalidOid;
	List	   *views = NIL;
	ListCell   *lc;

	el_require_arg(fcinfo, 1, "max_events");
	max_events = PG_GETARG_INT32(1);
	if (max_events < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_events must be at least 1")));

	SPI_connect();
	if (!PG_ARGISNULL(0))
	{
		named = el_projection_oid(PG_GETARG_TEXT_PP(0));
		el_require_owner(named);
		views = list_make1_oid(named);
	}
	else
	{
		el_catalog_read("SELECT projection FROM event_log.projections"
						" WHERE mode = 'async' ORDER BY projection", 0, NULL, NULL);
		for (uint64 r = 0; r < SPI_processed; r++)
		{
			bool		isnull;
			Oid			view = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[r],
															  SPI_tuptable->tupdesc, 1, &isnull));

			if (has_privs_of_role(GetUserId(), el_rel_owner(view)))
				views = lappend_oid(views, view);
		}
	}

	if (OidIsValid(named))
	{
		ElProjection *p = el_projection_load(named);

		if (p != NULL && p->inline_mode)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("projection \"%s\" is inline", get_rel_name(named)),
					 errdetail("Inline projections are applied by the appending transaction.")));
	}
	foreach(lc, views)
		total += el_run_projection_turn(lfirst_oid(lc), max_events, 0);
	SPI_finish();
	PG_RETURN_INT64(total);
}
