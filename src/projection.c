/*
 * projection.c
 *	  Projections: read models kept from a stream.  This file holds their
 *	  catalog rows (event_log.projections) and the SQL functions that create,
 *	  rebuild, alter and drop them.
 *
 *	  A projection is a view over a build table.  Its handlers are SQL
 *	  statements per event type that see the event as `e` and write to the
 *	  view by its name; they run as the projection's owner, inline (an AFTER
 *	  INSERT trigger on the stream) or async (from a checkpoint per shard).
 *	  A rebuild replays the stream into a new build table, reached through a
 *	  temporary view of the same name, and swaps the real view over to it in
 *	  the same transaction.  docs/design/projections.md has the reasoning.
 *
 *	  The other files of the subsystem, by phase (projection.h names what
 *	  each exports):
 *	  - projection_handler.c: compiling handlers and applying one event;
 *	  - projection_inline.c: the handler cache and the inline trigger;
 *	  - projection_build.c: replaying a whole stream for a build, event by
 *		event or set-based (projection_setplan.c);
 *	  - projection_async.c: async runs from per-shard checkpoints, for
 *		run_projections() and the background worker.
 */
#include "postgres.h"

#include "common/keywords.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "parser/parse_func.h"
#include "parser/scanner.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rls.h"
#include "utils/syscache.h"

#include "catalog.h"
#include "event_log.h"
#include "immutable.h"
#include "projection.h"
#include "registry.h"
#include "stream.h"
#include "wake.h"

PG_FUNCTION_INFO_V1(el_create_projection);
PG_FUNCTION_INFO_V1(el_rebuild_projection);
PG_FUNCTION_INFO_V1(el_alter_projection);
PG_FUNCTION_INFO_V1(el_drop_projection);
PG_FUNCTION_INFO_V1(el_drop_projection_oid);
PG_FUNCTION_INFO_V1(el_reducer_result);

static void el_drop(Oid view, text *name, bool by_stream_owner);

static Jsonb *el_state_handlers(ElProjection *p);

/* ---------------------------------------------------------------------
 * The catalog
 * ---------------------------------------------------------------------
 */

/* Read a projection's row (SPI connected); NULL if there is none. */
ElProjection *
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
	el_catalog_sql("SELECT stream, mode, columns, handlers, reducer,"
						   " initial, build_table, generation"
						   " FROM event_log.projections WHERE projection = $1",
						   1, types, values, NULL, EL_CAT_READ | EL_CAT_LATEST, 1);
	if (SPI_processed == 0)
		return NULL;

	p = palloc0(sizeof(ElProjection));
	p->view = view;
	p->stream = DatumGetObjectId(el_spi_value(0, 1, &isnull));
	p->inline_mode = strcmp(el_spi_text(0, 2), "inline") == 0;
	p->columns = el_spi_text(0, 3);
	p->handlers = el_spi_jsonb(0, 4);
	p->reducer = el_spi_text(0, 5);
	p->initial = el_spi_jsonb(0, 6);
	p->build_table = DatumGetObjectId(el_spi_value(0, 7, &isnull));
	p->generation = DatumGetInt32(el_spi_value(0, 8, &isnull));
	/* Handlers stored by version 0.1 lack the null check: make them anew. */
	if (p->reducer != NULL)
		p->handlers = el_state_handlers(p);
	p->upcast = el_projection_upcast(view);
	return p;
}

/* Resolve a projection's name to its view, refusing other names. */
Oid
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
		el_catalog_sql("SELECT 1 FROM event_log.projections WHERE projection = $1",
						1, types, values, NULL, EL_CAT_READ, 0);
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
bool
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
static bool
el_is_projection_relation(Oid relid)
{
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(relid)};

	el_catalog_sql("SELECT 1 FROM event_log.projections"
					" WHERE projection = $1 OR build_table = $1",
					1, types, values, NULL, EL_CAT_READ, 0);
	return SPI_processed > 0;
}

/* Number of inline projections fed by a stream (SPI connected). */
static int
el_inline_projections(Oid stream)
{
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(stream)};
	bool		isnull;

	el_catalog_sql("SELECT pg_catalog.count(*) FROM event_log.projections"
					" WHERE stream = $1 AND mode = 'inline'",
					1, types, values, NULL, EL_CAT_READ, 0);
	return (int) DatumGetInt64(el_spi_value(0, 1, &isnull));
}

/*
 * Names of the projections fed by a stream, comma-separated, or NULL.  With
 * the latest snapshot: drop_stream() asks after waiting for its lock, and a
 * projection created meanwhile must be seen.
 */
static char *
el_projections_of_stream(Oid stream)
{
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(stream)};

	el_catalog_sql("SELECT pg_catalog.string_agg(projection::pg_catalog.text, ', '"
					" ORDER BY projection::pg_catalog.text)"
					" FROM event_log.projections WHERE stream = $1",
					1, types, values, NULL, EL_CAT_READ | EL_CAT_LATEST, 1);
	return el_spi_text(0, 1);
}

/*
 * drop_stream() of a stream: refused while projections are fed by it; with
 * cascade, they are dropped first, as the stream's owner's drop_projection()
 * drops them (the caller owns the stream: drop_stream() checked).
 */
static void
el_stream_drop(Oid relid, const char *qname, bool cascade)
{
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(relid)};
	Oid		   *views;
	uint64		nviews;

	if (!cascade)
	{
		char	   *projections = el_projections_of_stream(relid);

		if (projections != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
					 errmsg("cannot drop event stream %s because projections depend on it", qname),
					 errdetail("Projections fed by it: %s.", projections),
					 errhint("Drop them first with event_log.drop_projection(), or drop them with the stream: event_log.drop_stream(..., cascade => true).")));
		return;
	}

	/*
	 * With the latest snapshot, as el_projections_of_stream(): a projection
	 * created while we waited for the stream's lock is there now.  The list
	 * is copied, since each drop runs statements of its own.
	 */
	el_catalog_sql("SELECT projection FROM event_log.projections WHERE stream = $1"
				   " ORDER BY projection::pg_catalog.text",
				   1, types, values, NULL, EL_CAT_READ | EL_CAT_LATEST, 0);
	nviews = SPI_processed;
	views = palloc(sizeof(Oid) * (nviews + 1));
	for (uint64 r = 0; r < nviews; r++)
	{
		bool		isnull;

		views[r] = DatumGetObjectId(el_spi_value(r, 1, &isnull));
	}
	for (uint64 r = 0; r < nviews; r++)
	{
		/*
		 * One dropped by its owner while we waited for its lock is gone.
		 * We take the projection lock after the stream's, unlike a rebuild
		 * or an async run, which take the stream's after it: one of them
		 * between its two locks when we come is a deadlock, which the
		 * deadlock detector ends by failing one of the two.
		 */
		el_lock_projection(views[r], true);
		if (el_projection_load(views[r]) == NULL)
			continue;
		el_drop(views[r], cstring_to_text(get_rel_name(views[r])), true);
	}
}

/*
 * At load time: tell the guards what projections own (their relations, the
 * stream's inline triggers), and drop_stream() to ask first (or, with
 * cascade, to let them drop its projections).
 */
void
el_projection_init(void)
{
	el_guard_owned_relation_hook = el_is_projection_relation;
	el_guard_stream_triggers_hook = el_inline_projections;
	el_projection_inline_init();
	el_on_stream_drop(el_stream_drop);
}

/*
 * The projection's owner must be able to read every event of the stream,
 * now: SELECT on it, and no row-level security that hides events from the
 * owner (a projection replays whole shards; it cannot apply a policy's
 * filter and still keep its checkpoints dense).  Every build, rebuild,
 * async run and inline application checks this again, since privileges
 * and policies change after creation.  The messages name no event.
 */
void
el_check_stream_read(Oid stream, Oid owner, const char *projection)
{
	if (pg_class_aclcheck(stream, owner, ACL_SELECT) != ACLCHECK_OK ||
		pg_namespace_aclcheck(get_rel_namespace(stream), owner, ACL_USAGE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for stream %s", el_qualified_name(stream)),
				 errdetail("The owner of projection \"%s\", role \"%s\", may not read the stream it is fed from.",
						   projection, GetUserNameFromId(owner, false)),
				 errhint("Grant SELECT on the stream, and USAGE on its schema, to the projection's owner, or drop the projection.")));
	if (check_enable_rls(stream, owner, true) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("projection \"%s\" cannot read stream %s: row-level security applies to its owner",
						projection, el_qualified_name(stream)),
				 errdetail("A projection replays every event of its stream; a policy that hides events from its owner would leave it incomplete."),
				 errhint("Disable row-level security on the stream, or let a role that policies do not restrict (the stream's owner, or one with BYPASSRLS) own the projection.")));
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

/* Whether SQL text holds no token at all: only blanks and comments. */
static bool
el_sql_is_blank(const char *sql)
{
	core_yy_extra_type extra;
	core_yyscan_t scanner;
	core_YYSTYPE yylval;
	YYLTYPE		yylloc;
	int			token;

	scanner = scanner_init(sql, &extra, &ScanKeywords, ScanKeywordTokens);
	token = core_yylex(&yylval, &yylloc, scanner);
	scanner_finish(scanner);
	return token == 0;
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
	int			nest;

	/*
	 * Checked under the settings the handler is compiled under
	 * (projection_handler.c), whatever the session's: with
	 * standard_conforming_strings off, '\' would end a string the handler
	 * reads on past, and the text checked would not be the text run.  An
	 * error undoes the settings with the transaction.
	 */
	nest = NewGUCNestLevel();
	(void) set_config_option("standard_conforming_strings", "on", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("backslash_quote", "safe_encoding", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);

	/*
	 * An expression, not a way to end the statement and start others; and
	 * not nothing (blanks, comments), which the parser would report as a
	 * syntax error in SQL the caller never wrote.  The newline ends a
	 * trailing "--" comment before our own text goes on.
	 */
	if (el_sql_is_blank(reducer) ||
		list_length(raw_parser(psprintf("SELECT (%s\n)", reducer), RAW_PARSE_DEFAULT)) != 1)
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
		reducer = psprintf("event_log.reducer_result((%s\n))", reducer);
	else
		reducer = psprintf("%s\n", reducer);
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
	AtEOXact_GUC(true, nest);
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
		!IsA(((RawStmt *) linitial(parsed))->stmt, CreateStmt) ||
		((CreateStmt *) ((RawStmt *) linitial(parsed))->stmt)->tableElts == NIL)
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
 * event_log.create_projection(name text, stream regclass, columns text,
 *     handlers jsonb, mode text, reducer text, initial jsonb,
 *     on_error text, on_build_error text)
 * RETURNS regclass
 *
 * Either columns and handlers, or a reducer (a state projection with
 * columns key, version, state).  Builds the projection from the stream's
 * history and returns its view.  The error policies (from 0.4; a 0.3
 * catalog declares seven arguments) are set before the build.
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
	const char *on_error;
	const char *on_build_error;

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
	/* From 0.4 on: the error policies (projection_deadletter.c). */
	on_error = el_error_policy_arg(fcinfo, 7, "on_error");
	on_build_error = el_error_policy_arg(fcinfo, 8, "on_build_error");

	p.stream = stream;
	p.inline_mode = strcmp(mode, "inline") == 0;
	el_check_error_policy(name, p.inline_mode, on_error, on_build_error);
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
						el_qualified_name(stream)),
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
	el_exec_as(GetUserId(), nsp, el_create_table_sql(qbuild, p.columns), true);
	el_exec_as(GetUserId(), InvalidOid, psprintf("CREATE VIEW %s AS SELECT * FROM %s", qview, qbuild), true);
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
		el_catalog_sql("INSERT INTO event_log.projections (projection, stream, mode,"
						" columns, handlers, reducer, initial, build_table, generation, events)"
						" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0)",
						9, types, values, nulls, 0, 0);
	}
	if (on_error != NULL || on_build_error != NULL)
		el_set_error_policies(p.view, on_error, on_build_error);
	p.upcast = el_projection_record_upcast(p.view);
	el_lock_projection(p.view, true);

	set = el_compile(&p, p.handlers, false, false, CurrentMemoryContext);
	last = palloc0(sizeof(int64) * shards);
	n = el_build(set, &p, last, true);
	if (!p.inline_mode)
		el_set_checkpoints(p.view, shards, last);
	{
		Oid			types[2] = {OIDOID, INT8OID};
		Datum		values[2] = {ObjectIdGetDatum(p.view), Int64GetDatum(n)};

		el_catalog_sql("UPDATE event_log.projections SET events = $2 WHERE projection = $1",
						2, types, values, NULL, 0, 0);
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
void
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
	el_catalog_sql("UPDATE event_log.projections SET columns = $2, handlers = $3,"
					" reducer = $4, initial = $5, build_table = $6, generation = $7"
					" WHERE projection = $1",
					7, types, values, nulls, 0, 0);
	if (rebuilt)
	{
		types[1] = INT8OID;
		values[1] = Int64GetDatum(events);
		el_catalog_sql("UPDATE event_log.projections SET events = $2, rebuilt_at = now()"
						" WHERE projection = $1",
						2, types, values, NULL, 0, 0);
	}
	/* Every backend recompiles the handlers at its next use. */
	CacheInvalidateRelcacheByRelid(p->view);
}

/* Drop a projection's build table that our own code replaced. */
static void
el_drop_projection_table(Oid owner, Oid table, const char *qname)
{
	el_guard_allow(table, EL_GUARD_PROJECTION_DDL);
	PG_TRY();
	{
		el_exec_as(owner, InvalidOid, psprintf("DROP TABLE %s", qname), true);
	}
	PG_FINALLY();
	{
		el_guard_disallow(table);
	}
	PG_END_TRY();
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
	Oid			old_table;
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
	old_table = p->build_table;
	qold = quote_qualified_identifier(get_namespace_name(get_rel_namespace(p->build_table)),
									  get_rel_name(p->build_table));
	p->generation++;
	newname = el_build_name(relname, p->generation);
	qbuild = quote_qualified_identifier(nspname, newname);

	/*
	 * The new table, and a temporary view of the projection's name over it:
	 * the handlers, run with the temporary schema first, write there.
	 */
	el_exec_as(owner, get_rel_namespace(view), el_create_table_sql(qbuild, p->columns), true);
	el_exec_as(owner, InvalidOid, psprintf("CREATE TEMPORARY VIEW %s AS SELECT * FROM %s",
							   quote_identifier(relname), qbuild), false);
	set = el_compile(p, p->handlers, true, false, CurrentMemoryContext);

	shards = el_stream_shards(p->stream);
	last = palloc0(sizeof(int64) * shards);
	/* The replay applies the parked events anew, or parks them again. */
	el_dead_letters_forget(view, true);
	n = el_build(set, p, last, false);

	/* The swap: readers wait for our commit, then see the new table. */
	el_exec_as(owner, InvalidOid,
				   psprintf("DROP VIEW pg_temp.%s", quote_identifier(relname)), false);
	PG_TRY();
	{
		el_exec_as(owner, InvalidOid, psprintf("CREATE OR REPLACE VIEW %s AS SELECT * FROM %s",
								   quote_qualified_identifier(nspname, relname), qbuild), true);
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

	el_drop_projection_table(owner, old_table, qold);
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
	el_note_append(p->stream);
	el_catalog_sql("UPDATE event_log.projection_offsets"
					" SET error = NULL, error_seq = NULL, error_at = NULL"
					" WHERE projection = $1 AND error IS NOT NULL",
					1, (Oid[]) {OIDOID}, (Datum[]) {ObjectIdGetDatum(view)},
					NULL, 0, 0);
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
	Oid			view;

	el_require_arg(fcinfo, 0, "name");
	SPI_connect();
	view = el_projection_oid(PG_GETARG_TEXT_PP(0));
	el_drop(view, PG_GETARG_TEXT_PP(0), !pg_class_ownercheck(view, GetUserId()));
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
	el_drop(view, cstring_to_text(get_rel_name(view)), !pg_class_ownercheck(view, GetUserId()));
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

	el_exec_as(drop->owner, InvalidOid, psprintf("DROP VIEW %s", drop->view), true);
	el_exec_as(drop->owner, InvalidOid, psprintf("DROP TABLE %s", drop->table), true);
}

/*
 * Drop a projection: its catalog row, trigger, view and build table.
 * by_stream_owner: dropped as the owner of its stream (who must be the
 * caller), not as the projection's owner; drop_projection() by a role that
 * does not own the projection, and drop_stream(..., cascade => true) of its
 * stream, whoever owns the projection.
 */
static void
el_drop(Oid view, text *name, bool by_stream_owner)
{
	Oid			owner;
	ElProjection *p;
	Oid			types[1] = {OIDOID};
	Datum		values[1];
	Oid			buildnsp;
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
	/* Its checkpoints too: projection_offsets has no foreign key from 0.3 on. */
	el_catalog_sql("WITH o AS (DELETE FROM event_log.projection_offsets WHERE projection = $1)"
				   " DELETE FROM event_log.projections WHERE projection = $1",
				   1, types, values, NULL, 0, 0);
	el_dead_letters_forget(view, false);

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
	PG_TRY();
	{
		el_guard_allow(p->stream, EL_GUARD_PROJECTION_DDL);
		el_guard_allow(view, EL_GUARD_PROJECTION_DDL);
		el_guard_allow(p->build_table, EL_GUARD_PROJECTION_DDL);
		/* Only the stream's owner may drop a trigger on it. */
		if (p->inline_mode)
			el_exec_as(el_rel_owner(p->stream), InvalidOid,
					   psprintf("DROP TRIGGER %s ON %s",
								quote_identifier(el_inline_trigger_name(p->stream, view)),
								el_qualified_name(p->stream)), true);
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
		el_guard_disallow(p->build_table);
		el_guard_disallow(view);
		el_guard_disallow(p->stream);
	}
	PG_END_TRY();
}
