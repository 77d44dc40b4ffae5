/*
 * projection_handler.c
 *	  Handlers: compiling a projection's SQL statements into plans that see
 *	  the event as `e`, and applying one event through them as the
 *	  projection's owner.
 *
 *	  A handler runs as the projection's owner, in a security-restricted
 *	  operation, with the search_path and the settings pinned
 *	  (el_apply_begin()), and under event_log.handler_timeout in async runs.
 *	  el_in_subxact() runs a step in a subtransaction and turns a handler's
 *	  error into data for its caller, except a cancel of the session's
 *	  statement.
 */
#include "postgres.h"

#include "executor/spi_priv.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "storage/proc.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timeout.h"
#include "utils/typcache.h"

#include "catalog.h"
#include "event_log.h"
#include "projection.h"
#include "schema.h"

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

/* Whether the second timer fired: the worker is ending (el_worker_exit()). */
bool
el_handler_overran(void)
{
	return el_overran;
}

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
	/* The ids an append takes from the session: none, inline as async. */
	{"event_log.correlation_id", ""},
	{"event_log.causation_id", ""},
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
void
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

void
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
void
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
 * Declare the parameters $1..$nargs of a plan made by SPI_prepare_params(),
 * whose parser hook resolved them, so that SPI_execute_snapshot() can pass
 * their values (see el_apply()).
 *
 * This is the one place that writes SPI's private plan struct.  SPI has no
 * API for it: a plan prepared with a parser hook can only run through
 * SPI_execute_plan_with_paramlist(), which takes no snapshot, while the
 * handlers must run with a fresh snapshot under REPEATABLE READ.  What is
 * missing is an SPI_execute_snapshot() that takes a ParamListInfo (or an
 * SPI_prepare_extended() that takes both a parser hook and argument types).
 */
static void
el_declare_params(SPIPlanPtr plan, int nargs, const Oid *argtypes)
{
	plan->nargs = nargs;
	plan->argtypes = MemoryContextAlloc(plan->plancxt, sizeof(Oid) * nargs);
	memcpy(plan->argtypes, argtypes, sizeof(Oid) * nargs);
}

/*
 * Prepare a projection's handlers (SPI connected).  keep: save the plans
 * for later transactions; otherwise they go with the SPI connection.
 */
ElHandlerSet *
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
	set->upcast = p->upcast;
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

		el_declare_params(plan, EL_PARAM_ROW, set->argtypes);
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

void
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
int
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
SPIPlanPtr
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
bool
el_apply(ElApplyState *st, Datum *values, bool *nulls)
{
	ElHandlerSet *set = st->set;
	text	   *type = DatumGetTextPP(values[Anum_el_type - 1]);
	SPIPlanPtr	plan = el_find_handler(set, type);
	ErrorContextCallback errcb;
	Datum		args[EL_PARAM_ROW];
	char		argnulls[EL_PARAM_ROW];
	Datum		upcast_values[EL_NATTS];
	bool		upcast_nulls[EL_NATTS];
	int			rc;

	if (plan == NULL)
		return false;

	/* The handler sees the newest shape, in a copy: values may be a slot's. */
	if (set->upcast)
	{
		memcpy(upcast_values, values, sizeof(upcast_values));
		memcpy(upcast_nulls, nulls, sizeof(upcast_nulls));
		if (el_upcast_event(NULL, set->stream, upcast_values, upcast_nulls))
		{
			values = upcast_values;
			nulls = upcast_nulls;
		}
	}

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
ErrorData *
el_in_subxact(void (*fn) (void *), void *arg)
{
	return el_in_subxact_ext(fn, arg, true);
}

/*
 * el_in_subxact(), but with keep false the subtransaction is rolled back
 * even when fn went through: for a trial whose effects must not stay (a
 * build's screening, projection_build.c, runs handlers' expressions whose
 * functions only claim to be immutable).
 */
ErrorData *
el_in_subxact_ext(void (*fn) (void *), void *arg, bool keep)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		fn(arg);
		if (keep)
			ReleaseCurrentSubTransaction();
		else
			RollbackAndReleaseCurrentSubTransaction();
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
