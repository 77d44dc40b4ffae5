/*
 * read.c
 *	  event_log.read() (a shard by offset), event_log.replay() (one key's
 *	  history), event_log.read_event() (one event by event_id), and the
 *	  shard reads consumer groups use.  All run a kept plan
 *	  through SPI as the caller, so the caller's current privileges and
 *	  row-level security apply on every call (the plan cache plans again when
 *	  the user or the policies change), and stream the rows straight into the
 *	  caller's tuplestore.  No C scan reads a stream on a reader's behalf.
 */
#include "postgres.h"

#include "executor/tstoreReceiver.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rls.h"

#include "catalog.h"
#include "event_log.h"
#include "key.h"
#include "read.h"
#include "registry.h"

PG_FUNCTION_INFO_V1(el_read);
PG_FUNCTION_INFO_V1(el_replay);
PG_FUNCTION_INFO_V1(el_read_event);

/*
 * Run one of the stream's plans with the given parameters into dest (or, if
 * dest is NULL, into SPI_tuptable, at most tcount rows).  The caller is
 * connected to SPI.  Returns the number of rows.
 */
static uint64
el_exec_plan(Oid relid, ElPlanKind kind, int nargs, const Oid *types,
			 const Datum *values, DestReceiver *dest, long tcount)
{
	ParamListInfo params = makeParamList(nargs);
	SPIExecuteOptions options;
	int			rc;

	for (int i = 0; i < nargs; i++)
	{
		params->params[i].value = values[i];
		params->params[i].isnull = false;
		params->params[i].pflags = PARAM_FLAG_CONST;
		params->params[i].ptype = types[i];
	}
	memset(&options, 0, sizeof(options));
	options.params = params;
	options.read_only = true;
	options.dest = dest;
	options.tcount = tcount;
	rc = SPI_execute_plan_extended(el_stream_plan(relid, kind), &options);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_plan_extended failed: %s",
			 SPI_result_code_string(rc));
	return SPI_processed;
}

/*
 * Refuse to read a stream the user may not SELECT from, now: callers check
 * on every call, never once for a session.  The query that then reads runs
 * as the user, so the executor checks again and applies row-level security.
 * Checked here too so the error does not cite our internal query.  SELECT
 * granted on each of the nine columns read is enough, as for the query.
 */
void
el_check_select(Oid relid)
{
	Oid			user = GetUserId();
	AclResult	aclresult = pg_class_aclcheck(relid, user, ACL_SELECT);

	if (aclresult == ACLCHECK_OK)
		return;
	for (AttrNumber attnum = 1; attnum <= EL_NATTS; attnum++)
		if (pg_attribute_aclcheck(relid, attnum, user, ACL_SELECT) != ACLCHECK_OK)
			aclcheck_error(aclresult, OBJECT_TABLE, get_rel_name(relid));
}

/*
 * Result rows of read(), replay() and poll().
 *
 * A set-returning function hands its rows to the executor in a tuplestore,
 * which PostgreSQL's own helper (InitMaterializedSRF) keeps in the query's
 * memory.  A batch of a thousand events fills a few hundred kilobytes there,
 * in blocks big enough that glibc maps them freshly for every query and
 * unmaps them after it: the page faults that follow cost as much as reading
 * the events (see docs/design/consumers.md, "Where poll's time goes").
 *
 * So the tuplestores live in a pool of this backend instead, whose first
 * block (EL_ROWS_POOL_KEEP bytes) is kept across queries.  The pool is reset
 * only when no tuplestore in it can be in use: each one counts as live until
 * the memory of the query that called the function goes away, which happens
 * after the executor is done with it, whether the query ended or failed.
 * Resetting then also frees the rows of a tuplestore a failed query never
 * ended.
 */
#define EL_ROWS_POOL_KEEP	(1024 * 1024)

static MemoryContext el_rows_pool = NULL;
static int	el_rows_live = 0;

static void
el_rows_release(void *arg)
{
	Assert(el_rows_live > 0);
	if (--el_rows_live == 0)
		MemoryContextReset(el_rows_pool);
}

/*
 * Set a set-returning function up to return a tuplestore from the pool, with
 * the tuple descriptor the caller expects (or the function's own result
 * type if expected_desc is false).  Returns the tuplestore.
 */
Tuplestorestate *
el_result_store(FunctionCallInfo fcinfo, bool expected_desc)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MemoryContext query_cxt;
	MemoryContext old;
	MemoryContextCallback *release;
	TupleDesc	desc;
	Tuplestorestate *store;

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("set-valued function called in context that cannot accept a set")));
	if (!(rsinfo->allowedModes & SFRM_Materialize) ||
		(expected_desc && rsinfo->expectedDesc == NULL))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("materialize mode required, but it is not allowed in this context")));

	query_cxt = rsinfo->econtext->ecxt_per_query_memory;
	old = MemoryContextSwitchTo(query_cxt);
	if (expected_desc)
		desc = CreateTupleDescCopy(rsinfo->expectedDesc);
	else if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	release = palloc(sizeof(MemoryContextCallback));
	MemoryContextSwitchTo(old);

	if (el_rows_pool == NULL)
		el_rows_pool = AllocSetContextCreate(TopMemoryContext,
											 "event_log result rows",
											 EL_ROWS_POOL_KEEP,
											 ALLOCSET_DEFAULT_INITSIZE,
											 ALLOCSET_DEFAULT_MAXSIZE);

	/* Count the store as live before it exists, so it is never missed. */
	release->func = el_rows_release;
	release->arg = NULL;
	MemoryContextRegisterResetCallback(query_cxt, release);
	el_rows_live++;

	old = MemoryContextSwitchTo(el_rows_pool);
	store = tuplestore_begin_heap((rsinfo->allowedModes & SFRM_Materialize_Random) != 0,
								  false, work_mem);
	MemoryContextSwitchTo(old);

	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setResult = store;
	rsinfo->setDesc = desc;
	return store;
}

/* Run one of the stream's read plans into the SRF's tuplestore. */
static void
el_run_plan(FunctionCallInfo fcinfo, Oid relid, ElPlanKind kind,
			int nargs, const Oid *types, const Datum *values)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	DestReceiver *dest;

	el_check_select(relid);
	/* With row_security off, refuse here rather than in our query's context. */
	(void) check_enable_rls(relid, InvalidOid, false);
	(void) el_lock_stream(relid, AccessShareLock);

	dest = CreateDestReceiver(DestTuplestore);
	SetTuplestoreDestReceiverParams(dest, el_result_store(fcinfo, true),
									rsinfo->econtext->ecxt_per_query_memory,
									false, NULL, NULL);

	SPI_connect();
	(void) el_exec_plan(relid, kind, nargs, types, values, dest, 0);
	SPI_finish();
	dest->rDestroy(dest);
}

/*
 * Up to max_count events of a shard after after_seq, in seq order, sent to
 * dest, with the active snapshot and the caller's privileges (checked by the
 * caller).  The caller is connected to SPI.  Returns how many were sent.
 */
uint64
el_read_shard(Oid relid, int32 shard, int64 after_seq, int64 max_count,
			  DestReceiver *dest)
{
	Oid			types[3] = {INT4OID, INT8OID, INT8OID};
	Datum		values[3];

	values[0] = Int32GetDatum(shard);
	values[1] = Int64GetDatum(after_seq);
	values[2] = Int64GetDatum(max_count);
	return el_exec_plan(relid, EL_PLAN_READ, 3, types, values, dest, 0);
}

/*
 * The optional "types" argument of read() and poll(): NULL (or an argument
 * the function's SQL declaration does not have yet, before ALTER EXTENSION
 * UPDATE) means every type, returned as (Datum) 0.  Otherwise the distinct
 * types, as a text[], matched exactly as the CDC plugin's "types" option
 * matches them (byte for byte, case-sensitive).  An empty list, a NULL
 * element and more than EL_MAX_TYPES types are refused.
 */
Datum
el_types_arg(FunctionCallInfo fcinfo, int argno)
{
	ArrayType  *arr;
	Datum	   *items;
	bool	   *nulls;
	int			n,
				kept = 0;

	if (PG_NARGS() <= argno || PG_ARGISNULL(argno))
		return (Datum) 0;
	arr = PG_GETARG_ARRAYTYPE_P(argno);
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("types must be a one-dimensional array")));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &items, &nulls, &n);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("types must not be empty"),
				 errhint("Pass NULL (the default) for events of every type.")));
	if (n > EL_MAX_TYPES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many event types: %d", n),
				 errdetail("A filter names at most %d types.", EL_MAX_TYPES)));
	for (int i = 0; i < n; i++)
	{
		bool		seen = false;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("types must not contain null")));
		for (int j = 0; j < kept && !seen; j++)
			seen = VARSIZE_ANY(items[j]) == VARSIZE_ANY(items[i]) &&
				memcmp(VARDATA_ANY(items[j]), VARDATA_ANY(items[i]),
					   VARSIZE_ANY_EXHDR(items[i])) == 0;
		if (!seen)
			items[kept++] = items[i];
	}
	return PointerGetDatum(construct_array(items, kept, TEXTOID, -1, false,
										   TYPALIGN_INT));
}

/*
 * A filter of one type (the common case) runs a plain range scan, without
 * the merge of one scan per type that several types need: that merge costs
 * as much again as reading the events (docs/design/type_filters.md).
 */
static void
el_one_type(ElPlanKind *kind, Oid *argtype, Datum *value)
{
	ArrayType  *arr = DatumGetArrayTypeP(*value);
	Datum	   *items;
	int			n;

	if (ArrayGetNItems(ARR_NDIM(arr), ARR_DIMS(arr)) != 1)
		return;
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &items, NULL, &n);
	*kind = EL_PLAN_READ_TYPE;
	*argtype = TEXTOID;
	*value = items[0];
}

/*
 * el_read_shard() for the events of some types only (types from
 * el_types_arg(); (Datum) 0 for all).
 */
uint64
el_read_shard_types(Oid relid, int32 shard, int64 after_seq, int64 max_count,
					Datum types, DestReceiver *dest)
{
	Oid			argtypes[4] = {INT4OID, INT8OID, INT8OID, TEXTARRAYOID};
	Datum		values[4];
	ElPlanKind	kind = EL_PLAN_READ_TYPES;

	if (types == (Datum) 0)
		return el_read_shard(relid, shard, after_seq, max_count, dest);
	values[0] = Int32GetDatum(shard);
	values[1] = Int64GetDatum(after_seq);
	values[2] = Int64GetDatum(max_count);
	values[3] = types;
	el_one_type(&kind, &argtypes[3], &values[3]);
	return el_exec_plan(relid, kind, 4, argtypes, values, dest, 0);
}

/*
 * The last seq of a shard the active snapshot sees (0 if it is empty).  The
 * caller is connected to SPI and has checked SELECT.
 */
int64
el_shard_end(Oid relid, int32 shard)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1];
	bool		isnull;

	values[0] = Int32GetDatum(shard);
	if (el_exec_plan(relid, EL_PLAN_LAST, 1, types, values, NULL, 1) == 0)
		return 0;
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
									   SPI_tuptable->tupdesc, 1, &isnull));
}

/* Refuse a shard number outside 0 .. shards-1. */
void
el_check_shard(Oid relid, int shards, int32 shard)
{
	if (shard < 0 || shard >= shards)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("shard %d does not exist in event stream \"%s\"",
						shard, el_qualified_name(relid)),
				 errdetail_plural("The stream has %d shard, numbered 0 to %d.",
								  "The stream has %d shards, numbered 0 to %d.",
								  shards, shards, shards - 1)));
}

/*
 * event_log.read(stream regclass, shard int, after_seq bigint DEFAULT 0,
 *				  max_count int DEFAULT 1000, types text[] DEFAULT NULL)
 *		RETURNS SETOF event_log.event
 *
 * types (0.3): only events of these types.  A 0.1 or 0.2 catalog declares
 * no such argument; then every type is read.
 */
Datum
el_read(PG_FUNCTION_ARGS)
{
	Oid			relid;
	int			shards;
	int32		shard;
	int64		after_seq;
	int32		max_count;
	Oid			types[4] = {INT4OID, INT8OID, INT8OID, TEXTARRAYOID};
	Datum		values[4];

	el_require_arg(fcinfo, 0, "stream");
	el_require_arg(fcinfo, 1, "shard");
	el_require_arg(fcinfo, 2, "after_seq");
	el_require_arg(fcinfo, 3, "max_count");
	relid = PG_GETARG_OID(0);
	shard = PG_GETARG_INT32(1);
	after_seq = PG_GETARG_INT64(2);
	max_count = PG_GETARG_INT32(3);

	shards = el_require_stream(relid);
	el_check_shard(relid, shards, shard);
	if (after_seq < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("after_seq must not be negative")));
	if (max_count < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_count must not be negative")));

	values[0] = Int32GetDatum(shard);
	values[1] = Int64GetDatum(after_seq);
	values[2] = Int64GetDatum((int64) max_count);
	values[3] = el_types_arg(fcinfo, 4);
	if (values[3] == (Datum) 0)
		el_run_plan(fcinfo, relid, EL_PLAN_READ, 3, types, values);
	else
	{
		ElPlanKind	kind = EL_PLAN_READ_TYPES;

		el_one_type(&kind, &types[3], &values[3]);
		el_run_plan(fcinfo, relid, kind, 4, types, values);
	}
	return (Datum) 0;
}

/*
 * event_log.replay(stream regclass, key text, after_version bigint DEFAULT 0)
 *		RETURNS SETOF event_log.event
 */
Datum
el_replay(PG_FUNCTION_ARGS)
{
	Oid			relid;
	int64		after_version;
	Oid			types[2] = {TEXTOID, INT8OID};
	Datum		values[2];

	el_require_arg(fcinfo, 0, "stream");
	el_require_arg(fcinfo, 1, "key");
	el_require_arg(fcinfo, 2, "after_version");
	relid = PG_GETARG_OID(0);
	after_version = PG_GETARG_INT64(2);

	(void) el_require_stream(relid);
	el_check_key(PG_GETARG_TEXT_PP(1));
	if (after_version < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("after_version must not be negative")));

	values[0] = PG_GETARG_DATUM(1);
	values[1] = Int64GetDatum(after_version);
	el_run_plan(fcinfo, relid, EL_PLAN_REPLAY, 2, types, values);
	return (Datum) 0;
}

/*
 * event_log.read_event(stream regclass, event_id uuid)
 *		RETURNS SETOF event_log.event
 *
 * The event with this event_id, or no row: also when row-level security
 * hides it from the caller.
 */
Datum
el_read_event(PG_FUNCTION_ARGS)
{
	Oid			types[1] = {UUIDOID};
	Datum		values[1];

	el_require_arg(fcinfo, 0, "stream");
	el_require_arg(fcinfo, 1, "event_id");
	(void) el_require_stream(PG_GETARG_OID(0));
	values[0] = PG_GETARG_DATUM(1);
	el_run_plan(fcinfo, PG_GETARG_OID(0), EL_PLAN_BY_ID, 1, types, values);
	return (Datum) 0;
}
