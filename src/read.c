/*
 * read.c
 *	  event_log.read() (a shard by offset), event_log.replay() (one key's
 *	  history), event_log.read_event() (one event by event_id),
 *	  event_log.read_by_time() (a range of recorded_at),
 *	  event_log.read_all() (every shard, merged, by one position token),
 *	  and the shard reads consumer groups use.  All run a kept plan
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
#include "utils/memutils.h"
#include "utils/lsyscache.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "archive.h"
#include "catalog.h"
#include "commit.h"
#include "event_log.h"
#include "key.h"
#include "personal.h"
#include "read.h"
#include "registry.h"
#include "schema.h"

PG_FUNCTION_INFO_V1(el_read);
PG_FUNCTION_INFO_V1(el_replay);
PG_FUNCTION_INFO_V1(el_read_event);
PG_FUNCTION_INFO_V1(el_read_by_time);
PG_FUNCTION_INFO_V1(el_read_all);

/*
 * The parameters of one of the stream's plans, as constants of the types
 * the plan declares (el_stream_plan()), from values[].
 */
ParamListInfo
el_plan_params(SPIPlanPtr plan, const Datum *values)
{
	int			nargs = SPI_getargcount(plan);
	ParamListInfo params = makeParamList(nargs);

	for (int i = 0; i < nargs; i++)
	{
		params->params[i].value = values[i];
		params->params[i].isnull = false;
		params->params[i].pflags = PARAM_FLAG_CONST;
		params->params[i].ptype = SPI_getargtypeid(plan, i);
	}
	return params;
}

/*
 * Run one of the stream's plans with the given parameters into dest (or, if
 * dest is NULL, into SPI_tuptable, at most tcount rows).  The caller is
 * connected to SPI.  Returns the number of rows.
 */
uint64
el_exec_plan(Oid relid, ElPlanKind kind, const Datum *values,
			 DestReceiver *dest, long tcount)
{
	SPIPlanPtr	plan = el_stream_plan(relid, kind);
	SPIExecuteOptions options;
	DestReceiver *upcast = NULL;
	int			rc;

	/* Events handed out go through the upcasters if the session asks. */
	if (dest != NULL && el_upcast_reads)
		dest = upcast = el_upcast_dest(relid, dest);

	memset(&options, 0, sizeof(options));
	options.params = el_plan_params(plan, values);
	options.read_only = true;
	/* personal fields as the caller may see them (personal.c) */
	options.dest = el_personal_reveal_dest(relid, dest);
	options.tcount = tcount;
	rc = SPI_execute_plan_extended(plan, &options);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_plan_extended failed: %s",
			 SPI_result_code_string(rc));
	if (upcast != NULL)
		upcast->rDestroy(upcast);

	/*
	 * A grouped stream's events can be visible before they are durable:
	 * events leave only once they are (commit.c).
	 */
	if (SPI_processed > 0 && el_stream_grouped(relid))
		(void) el_wait_durable();
	return SPI_processed;
}

/*
 * Whether the user may SELECT the stream's events: SELECT on the table, or
 * on each of the nine columns read, which is enough for the query too.
 */
bool
el_can_select(Oid relid)
{
	Oid			user = GetUserId();

	if (pg_class_aclcheck(relid, user, ACL_SELECT) == ACLCHECK_OK)
		return true;
	for (AttrNumber attnum = 1; attnum <= EL_NATTS; attnum++)
		if (pg_attribute_aclcheck(relid, attnum, user, ACL_SELECT) != ACLCHECK_OK)
			return false;
	return true;
}

/*
 * Refuse to read a stream the user may not SELECT from, now: callers check
 * on every call, never once for a session.  The query that then reads runs
 * as the user, so the executor checks again and applies row-level security.
 * Checked here too so the error does not cite our internal query.
 */
void
el_check_select(Oid relid)
{
	if (!el_can_select(relid))
		aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_TABLE, get_rel_name(relid));
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

/*
 * Run one of the stream's read plans into the SRF's tuplestore (store, or
 * a new one if NULL).
 */
static void
el_run_plan_into(FunctionCallInfo fcinfo, Oid relid, ElPlanKind kind,
				 const Datum *values, Tuplestorestate *store)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	DestReceiver *dest;

	el_check_select(relid);
	/* With row_security off, refuse here rather than in our query's context. */
	(void) check_enable_rls(relid, InvalidOid, false);
	(void) el_lock_stream(relid, AccessShareLock);

	dest = CreateDestReceiver(DestTuplestore);
	SetTuplestoreDestReceiverParams(dest, store ? store : el_result_store(fcinfo, true),
									rsinfo->econtext->ecxt_per_query_memory,
									false, NULL, NULL);

	SPI_connect();
	(void) el_exec_plan(relid, kind, values, dest, 0);
	SPI_finish();
	dest->rDestroy(dest);
}

static void
el_run_plan(FunctionCallInfo fcinfo, Oid relid, ElPlanKind kind,
			const Datum *values)
{
	el_run_plan_into(fcinfo, relid, kind, values, NULL);
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
	Datum		values[3];

	values[0] = Int32GetDatum(shard);
	values[1] = Int64GetDatum(after_seq);
	values[2] = Int64GetDatum(max_count);
	return el_exec_plan(relid, EL_PLAN_READ, values, dest, 0);
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
el_one_type(ElPlanKind *kind, Datum *value)
{
	ArrayType  *arr = DatumGetArrayTypeP(*value);
	Datum	   *items;
	int			n;

	if (ArrayGetNItems(ARR_NDIM(arr), ARR_DIMS(arr)) != 1)
		return;
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &items, NULL, &n);
	*kind = EL_PLAN_READ_TYPE;
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
	Datum		values[4];
	ElPlanKind	kind = EL_PLAN_READ_TYPES;

	if (types == (Datum) 0)
		return el_read_shard(relid, shard, after_seq, max_count, dest);
	values[0] = Int32GetDatum(shard);
	values[1] = Int64GetDatum(after_seq);
	values[2] = Int64GetDatum(max_count);
	values[3] = types;
	el_one_type(&kind, &values[3]);
	return el_exec_plan(relid, kind, values, dest, 0);
}

/*
 * How many events of the given types (el_types_arg()) follow after_seq in a
 * shard, as the caller sees them (consumer_lag).  The caller is connected to
 * SPI and has checked SELECT.
 */
int64
el_count_shard_types(Oid relid, int32 shard, int64 after_seq, Datum types)
{
	Datum		values[3];
	bool		isnull;

	values[0] = Int32GetDatum(shard);
	values[1] = Int64GetDatum(after_seq);
	values[2] = types;
	(void) el_exec_plan(relid, EL_PLAN_COUNT_TYPES, values, NULL, 1);
	return DatumGetInt64(el_spi_value(0, 1, &isnull));
}

/*
 * The last seq of a shard the active snapshot sees (0 if it is empty).  The
 * caller is connected to SPI and has checked SELECT.
 */
int64
el_shard_end(Oid relid, int32 shard)
{
	Datum		values[1];
	bool		isnull;

	values[0] = Int32GetDatum(shard);
	if (el_exec_plan(relid, EL_PLAN_LAST, values, NULL, 1) == 0)
		return 0;
	return DatumGetInt64(el_spi_value(0, 1, &isnull));
}

/*
 * Raise the error a read below a shard's low watermark gets: the events
 * from after + 1 on were asked for, and those before low are gone.
 */
void
el_below_watermark(Oid relid, int32 shard, int64 after, int64 low)
{
	ereport(ERROR,
			(errcode(ERRCODE_EL_OUT_OF_RANGE),
			 errmsg("seq %lld of shard %d of event stream \"%s\" is below the shard's low watermark %lld",
					(long long) (after + 1), shard, el_qualified_name(relid),
					(long long) low),
			 errdetail("Events before seq %lld were removed by the stream's retention policy.",
					   (long long) low),
			 errhint("The shard's events still in the log follow seq %lld (event_log.low_watermark() - 1).",
					 (long long) (low - 1))));
}

/*
 * Refuse a read of a shard after seq after if events it would return were
 * removed.  snap is the snapshot the rows were (or will be) read with.
 */
void
el_check_watermark(Oid relid, int32 shard, int64 after, Snapshot snap)
{
	int64		low = el_low_watermark(relid, shard, snap);

	/* after + 1 could overflow: low is at least 1. */
	if (after < low - 1)
		el_below_watermark(relid, shard, after, low);
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

/* Refuse a negative count or offset argument. */
static void
el_check_not_negative(int64 value, const char *name)
{
	if (value < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be negative", name)));
}

/*
 * The arguments read() and read_archive() share, (stream, shard,
 * after_seq, max_count), checked.  Returns the stream's shard count.
 */
int
el_shard_read_args(FunctionCallInfo fcinfo, Oid *relid, int32 *shard,
				   int64 *after_seq, int32 *max_count)
{
	int			shards;

	el_require_arg(fcinfo, 0, "stream");
	el_require_arg(fcinfo, 1, "shard");
	el_require_arg(fcinfo, 2, "after_seq");
	el_require_arg(fcinfo, 3, "max_count");
	*relid = PG_GETARG_OID(0);
	*shard = PG_GETARG_INT32(1);
	*after_seq = PG_GETARG_INT64(2);
	*max_count = PG_GETARG_INT32(3);
	shards = el_require_stream(*relid);
	el_check_shard(*relid, shards, *shard);
	el_check_not_negative(*after_seq, "after_seq");
	el_check_not_negative(*max_count, "max_count");
	return shards;
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
	int32		shard;
	int64		after_seq;
	int32		max_count;
	Datum		values[4];

	(void) el_shard_read_args(fcinfo, &relid, &shard, &after_seq, &max_count);

	values[0] = Int32GetDatum(shard);
	values[1] = Int64GetDatum(after_seq);
	values[2] = Int64GetDatum((int64) max_count);
	values[3] = el_types_arg(fcinfo, 4);
	if (values[3] == (Datum) 0)
		el_run_plan(fcinfo, relid, EL_PLAN_READ, values);
	else
	{
		ElPlanKind	kind = EL_PLAN_READ_TYPES;

		el_one_type(&kind, &values[3]);
		el_run_plan(fcinfo, relid, kind, values);
	}
	/* After the rows, with their snapshot: never a silent jump. */
	el_check_watermark(relid, shard, after_seq, GetActiveSnapshot());
	return (Datum) 0;
}

/*
 * replay() of a key in a shard that retention removed events from (low,
 * its watermark, above 1).  The key's events with a version after
 * after_version that left the log come from the archive when it holds the
 * whole shard below the watermark (archive.c), then the rest from the log,
 * into the SRF's result.  Otherwise a replay that would miss versions is
 * EL040, never a partial history as if it were whole.  The key's first
 * event still in the log is looked up as the caller sees it, with the
 * read's snapshot.
 */
static void
el_replay_retained(FunctionCallInfo fcinfo, Oid relid, int32 shard, int64 low,
				   text *key, int64 after_version, const Datum *values)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		probe[2];
	int64		first = 0;
	bool		isnull;
	bool		covers;
	Tuplestorestate *store;

	el_check_select(relid);
	(void) el_lock_stream(relid, AccessShareLock);
	probe[0] = PointerGetDatum(key);
	probe[1] = Int64GetDatum(0);
	SPI_connect();
	if (el_exec_plan(relid, EL_PLAN_REPLAY, probe, NULL, 1) == 1)
		first = DatumGetInt64(el_spi_value(0, Anum_el_version, &isnull));
	covers = (first == 0 || first - 1 > after_version) &&
		el_archive_covers(relid, shard, low);
	SPI_finish();

	if (!covers)
	{
		/*
		 * gone: the key's last version the caller cannot have, the one
		 * before its first event still in the log, or the last version of
		 * a key whose every event was removed (retired: none is left).
		 */
		int64		gone = first > 0 ? first - 1 : el_retired_version(relid, key);

		if (gone > after_version)
			ereport(ERROR,
					(errcode(ERRCODE_EL_OUT_OF_RANGE),
					 errmsg("events of key \"%s\" up to version %lld were removed from event stream \"%s\"",
							text_to_cstring(key), (long long) gone, el_qualified_name(relid)),
					 errdetail("Shard %d's low watermark is %lld: its earlier events were removed by the stream's retention policy, and its archive does not hold them all.",
							   shard, (long long) low),
					 errhint("Replay from after_version => %lld, or import the shard's archive.",
							 (long long) gone)));
		el_run_plan(fcinfo, relid, EL_PLAN_REPLAY, values);
		return;
	}
	store = el_result_store(fcinfo, true);
	SPI_connect();
	(void) el_archive_replay_key(relid, shard, key, after_version, first, low,
								 store, rsinfo->setDesc);
	SPI_finish();
	el_run_plan_into(fcinfo, relid, EL_PLAN_REPLAY, values, store);
}

/*
 * event_log.replay(stream regclass, key text, after_version bigint DEFAULT 0)
 *		RETURNS SETOF event_log.event
 */
Datum
el_replay(PG_FUNCTION_ARGS)
{
	Oid			relid;
	int			shards;
	int64		after_version;
	Datum		values[2];

	el_require_arg(fcinfo, 0, "stream");
	el_require_arg(fcinfo, 1, "key");
	el_require_arg(fcinfo, 2, "after_version");
	relid = PG_GETARG_OID(0);
	after_version = PG_GETARG_INT64(2);

	shards = el_require_stream(relid);
	el_check_key(PG_GETARG_TEXT_PP(1));
	if (after_version < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("after_version must not be negative")));

	values[0] = PG_GETARG_DATUM(1);
	values[1] = Int64GetDatum(after_version);
	if (el_stream_has_watermarks(relid))
	{
		text	   *key = PG_GETARG_TEXT_PP(1);
		int32		shard = el_shard_for_key(VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key), shards);
		int64		low = el_low_watermark(relid, shard, GetActiveSnapshot());

		if (low > 1)
		{
			el_replay_retained(fcinfo, relid, shard, low, key, after_version, values);
			return (Datum) 0;
		}
	}
	el_run_plan(fcinfo, relid, EL_PLAN_REPLAY, values);
	return (Datum) 0;
}

/*
 * read_event() of an event the log does not hold, in a stream that
 * retention removed events from: where the archive holds every removed
 * event, the event comes from it (as read_archive() reads it: not for a
 * caller to whom row-level security applies); otherwise no answer is
 * honest, since the event may have been removed, and that is EL040.  The
 * archive is read with the snapshot the log was: both see a removal, or
 * neither does.
 */
static void
el_read_event_removed(FunctionCallInfo fcinfo, Oid relid, Datum id,
					  Tuplestorestate *store)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	bool		removed;
	int64		low;
	int32		shard;

	SPI_connect();
	shard = el_archive_uncovered(relid, GetActiveSnapshot(), &removed, &low);
	if (shard >= 0)
		ereport(ERROR,
				(errcode(ERRCODE_EL_OUT_OF_RANGE),
				 errmsg("event %s is not in event stream \"%s\", and it may have been removed by retention",
						DatumGetCString(DirectFunctionCall1(uuid_out, id)),
						el_qualified_name(relid)),
				 errdetail("Shard %d's low watermark is %lld: its earlier events were removed by the stream's retention policy, and its archive does not hold them all.",
						   shard, (long long) low),
				 errhint("Import the shard's archive with event_log.import_archive() to look removed events up.")));
	if (!removed)
	{
		SPI_finish();
		return;
	}
	(void) el_archive_read_event(relid, id, store, rsinfo->setDesc);
	SPI_finish();
}

/*
 * event_log.read_event(stream regclass, event_id uuid)
 *		RETURNS SETOF event_log.event
 *
 * The event with this event_id, or no row: also when row-level security
 * hides it from the caller.  In a stream that retention removed events
 * from, an event the log does not hold is looked for in the archive, and
 * if the archive does not hold every removed event, that is EL040: no row
 * would claim that the event never existed.
 */
Datum
el_read_event(PG_FUNCTION_ARGS)
{
	Oid			relid;
	Datum		values[1];
	Tuplestorestate *store;

	el_require_arg(fcinfo, 0, "stream");
	el_require_arg(fcinfo, 1, "event_id");
	relid = PG_GETARG_OID(0);
	(void) el_require_stream(relid);
	values[0] = PG_GETARG_DATUM(1);
	store = el_result_store(fcinfo, true);
	el_run_plan_into(fcinfo, relid, EL_PLAN_BY_ID, values, store);
	if (tuplestore_tuple_count(store) == 0 && el_stream_has_watermarks(relid))
		el_read_event_removed(fcinfo, relid, values[0], store);
	return (Datum) 0;
}

/*
 * read_by_time() of a stream that retention removed events from: whether a
 * removed event could fall in a range from since on.  recorded_at is not
 * ordered by seq, so the oldest event left in a shard cannot tell; each
 * removal keeps the latest recorded_at it removed
 * (shard_watermarks.removed_until, 0.6; on an older catalog the time of the
 * last removal, a bound too).  Every shard where one could must have all
 * its removed events in the archive, which then answers for them (true is
 * returned); otherwise the read is EL040 rather than what is left of the
 * range.  false: no removed event can be in the range.  Read with the
 * active snapshot, the one the rows are read with: a removal is seen in
 * both or in neither.  The caller is connected to SPI and has checked that
 * the stream has watermarks and that the user may read it.
 */
static bool
el_check_time_removed(Oid relid, TimestampTz since)
{
	Datum		values[2];
	bool		has_until;
	uint64		n;
	int32	   *shards;
	int64	   *lows;
	Datum	   *untils;
	bool	   *nulls;

	has_until = get_attnum(get_relname_relid("shard_watermarks", el_schema_oid()),
						   "removed_until") != InvalidAttrNumber;
	values[0] = ObjectIdGetDatum(relid);
	values[1] = TimestampTzGetDatum(since);
	n = el_catalog_sql(psprintf("SELECT shard, low_seq, until FROM"
								" (SELECT shard, low_seq, %s AS until FROM event_log.shard_watermarks"
								"  WHERE stream OPERATOR(pg_catalog.=) $1"
								"  AND low_seq OPERATOR(pg_catalog.>) 1) w"
								" WHERE until IS NULL OR until OPERATOR(pg_catalog.>=) $2"
								" ORDER BY shard",
								has_until ? "COALESCE(removed_until, removed_at)" : "removed_at"),
					   2, (Oid[]) {REGCLASSOID, TIMESTAMPTZOID}, values, NULL,
					   EL_CAT_READ, 0);
	if (n == 0)
		return false;
	shards = palloc(sizeof(int32) * n);
	lows = palloc(sizeof(int64) * n);
	untils = palloc(sizeof(Datum) * n);
	nulls = palloc(sizeof(bool) * n);
	for (uint64 i = 0; i < n; i++)
	{
		shards[i] = DatumGetInt32(el_spi_value(i, 1, &nulls[i]));
		lows[i] = el_spi_int8(i, 2);
		untils[i] = el_spi_value(i, 3, &nulls[i]);
	}
	for (uint64 i = 0; i < n; i++)
		if (!el_archive_covers(relid, shards[i], lows[i]))
			ereport(ERROR,
					(errcode(ERRCODE_EL_OUT_OF_RANGE),
					 errmsg("events of event stream \"%s\" recorded from %s on may have been removed",
							el_qualified_name(relid), timestamptz_to_str(since)),
					 nulls[i] ?
					 errdetail("Shard %d's low watermark is %lld: its earlier events were removed by the stream's retention policy, and its archive does not hold them all.",
							   shards[i], (long long) lows[i]) :
					 errdetail("Shard %d's low watermark is %lld: its earlier events, recorded up to %s, were removed by the stream's retention policy, and its archive does not hold them all.",
							   shards[i], (long long) lows[i],
							   timestamptz_to_str(DatumGetTimestampTz(untils[i]))),
					 errhint("Read from a since later than the removed events, or import the shard's archive with event_log.import_archive().")));
	return true;
}

/* Compare two events of read_by_time()'s result by (recorded_at, shard, seq). */
static int
el_time_order(TupleTableSlot *a, TupleTableSlot *b)
{
	bool		isnull;
	TimestampTz ta = DatumGetTimestampTz(slot_getattr(a, Anum_el_recorded_at, &isnull));
	TimestampTz tb = DatumGetTimestampTz(slot_getattr(b, Anum_el_recorded_at, &isnull));
	int32		sa = DatumGetInt32(slot_getattr(a, Anum_el_shard, &isnull));
	int32		sb = DatumGetInt32(slot_getattr(b, Anum_el_shard, &isnull));
	int64		qa = DatumGetInt64(slot_getattr(a, Anum_el_seq, &isnull));
	int64		qb = DatumGetInt64(slot_getattr(b, Anum_el_seq, &isnull));

	if (ta != tb)
		return ta < tb ? -1 : 1;
	if (sa != sb)
		return sa < sb ? -1 : 1;
	return (qa > qb) - (qa < qb);
}

/*
 * read_by_time() of a range that removed events may fall in, with the
 * archive holding them all: up to max_count events of the log (as read()
 * returns them) and up to max_count archived ones (as read_archive()
 * returns them: not for a caller to whom row-level security applies),
 * each in (recorded_at, shard, seq) order, merged into the result and cut
 * at max_count.  The page's resume position works across both.  values are
 * the log plan's parameters.
 */
static void
el_read_by_time_merged(FunctionCallInfo fcinfo, Oid relid, const Datum *values)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Tuplestorestate *store = el_result_store(fcinfo, true);
	TupleDesc	desc = rsinfo->setDesc;
	Tuplestorestate *logged = tuplestore_begin_heap(false, false, work_mem);
	Tuplestorestate *archived = tuplestore_begin_heap(false, false, work_mem);
	TupleTableSlot *a = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
	TupleTableSlot *b = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
	int64		max_count = DatumGetInt64(values[4]);
	bool		has_a;
	bool		has_b;

	el_check_archive_reader(relid);
	el_run_plan_into(fcinfo, relid, EL_PLAN_TIME, values, logged);
	SPI_connect();
	(void) el_archive_read_time(relid, values[0], values[1], DatumGetInt32(values[2]),
								DatumGetInt64(values[3]), max_count, archived, desc);
	SPI_finish();

	has_a = tuplestore_gettupleslot(logged, true, false, a);
	has_b = tuplestore_gettupleslot(archived, true, false, b);
	for (int64 i = 0; i < max_count && (has_a || has_b); i++)
	{
		if (has_a && (!has_b || el_time_order(a, b) <= 0))
		{
			tuplestore_puttupleslot(store, a);
			has_a = tuplestore_gettupleslot(logged, true, false, a);
		}
		else
		{
			tuplestore_puttupleslot(store, b);
			has_b = tuplestore_gettupleslot(archived, true, false, b);
		}
	}
	ExecDropSingleTupleTableSlot(a);
	ExecDropSingleTupleTableSlot(b);
	tuplestore_end(logged);
	tuplestore_end(archived);
}

/*
 * event_log.read_by_time(stream regclass, since timestamptz,
 *						  until timestamptz DEFAULT 'infinity',
 *						  max_count int DEFAULT 1000,
 *						  after_shard int DEFAULT NULL,
 *						  after_seq bigint DEFAULT NULL)
 *		RETURNS SETOF event_log.event
 *
 * The events with since <= recorded_at < until, in (recorded_at, shard, seq)
 * order, at most max_count of them; after_shard and after_seq, given
 * together, resume after the event (since, after_shard, after_seq) of an
 * earlier page.  recorded_at is not ordered by seq within a shard, so this
 * is a range query on recorded_at, which the stream's BRIN index serves
 * (docs/design/reads.md), not a search over seq.
 */
Datum
el_read_by_time(PG_FUNCTION_ARGS)
{
	Oid			relid;
	int			shards;
	TimestampTz since;
	TimestampTz until;
	int32		max_count;
	int32		after_shard = -1;
	int64		after_seq = 0;
	Datum		values[5];

	el_require_arg(fcinfo, 0, "stream");
	el_require_arg(fcinfo, 1, "since");
	el_require_arg(fcinfo, 2, "until");
	el_require_arg(fcinfo, 3, "max_count");
	relid = PG_GETARG_OID(0);
	since = PG_GETARG_TIMESTAMPTZ(1);
	until = PG_GETARG_TIMESTAMPTZ(2);
	max_count = PG_GETARG_INT32(3);

	shards = el_require_stream(relid);
	if (since > until)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("since must not be later than until"),
				 errdetail("The range is since <= recorded_at < until.")));
	el_check_not_negative(max_count, "max_count");
	if (PG_ARGISNULL(4) != PG_ARGISNULL(5))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("after_shard and after_seq must be given together"),
				 errhint("Pass the shard and seq of the last event of the previous page, "
						 "and its recorded_at as since.")));
	if (!PG_ARGISNULL(4))
	{
		after_shard = PG_GETARG_INT32(4);
		after_seq = PG_GETARG_INT64(5);
		el_check_shard(relid, shards, after_shard);
		el_check_not_negative(after_seq, "after_seq");
	}

	values[0] = TimestampTzGetDatum(since);
	values[1] = TimestampTzGetDatum(until);
	values[2] = Int32GetDatum(after_shard);
	values[3] = Int64GetDatum(after_seq);
	values[4] = Int64GetDatum((int64) max_count);
	if (el_stream_has_watermarks(relid))
	{
		/* A caller who may not read the stream learns nothing of it. */
		bool		merge;

		el_check_select(relid);
		SPI_connect();
		merge = el_check_time_removed(relid, since);
		SPI_finish();
		if (merge)
		{
			el_read_by_time_merged(fcinfo, relid, values);
			return (Datum) 0;
		}
	}
	el_run_plan(fcinfo, relid, EL_PLAN_TIME, values);
	return (Datum) 0;
}

/*
 * read_all(): one shard's part of the merge.  A cursor on the shard's read
 * plan (seq order, after the token's seq), fetched a chunk at a time; the
 * head is rows->vals[next].  key is the merge key of the head: the largest
 * recorded_at of this shard's rows up to and including the head, so that
 * the keys of a shard never decrease and merging by them keeps each shard
 * in seq order (recorded_at alone is not ordered by seq).
 */
typedef struct ElShardCursor
{
	Portal		portal;
	SPITupleTable *rows;
	uint64		next;
	bool		more;			/* the last fetch was full: more may follow */
	bool		has_key;
	TimestampTz key;
} ElShardCursor;

/* Move a shard's cursor to its next row; false when the shard is done. */
static bool
el_cursor_advance(ElShardCursor *cur, long chunk)
{
	bool		isnull;
	TimestampTz at;

	if (cur->rows == NULL || ++cur->next >= cur->rows->numvals)
	{
		if (cur->rows != NULL)
		{
			SPI_freetuptable(cur->rows);
			cur->rows = NULL;
		}
		if (!cur->more)
			return false;
		SPI_cursor_fetch(cur->portal, true, chunk);
		cur->rows = SPI_tuptable;
		cur->next = 0;
		cur->more = (SPI_processed == (uint64) chunk);
		if (SPI_processed == 0)
		{
			SPI_freetuptable(cur->rows);
			cur->rows = NULL;
			return false;
		}
	}
	at = DatumGetTimestampTz(SPI_getbinval(cur->rows->vals[cur->next],
										   cur->rows->tupdesc,
										   Anum_el_recorded_at, &isnull));
	if (!cur->has_key || at > cur->key)
		cur->key = at;
	cur->has_key = true;
	return true;
}

/*
 * The position token read_all() takes: NULL or empty for the start of every
 * shard, else one seq per shard, element i for shard i - 1.  Fills after[].
 */
static void
el_parse_token(Oid relid, int shards, ArrayType *token, int64 *after)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	memset(after, 0, sizeof(int64) * shards);
	if (token == NULL || ARR_NDIM(token) == 0)
		return;
	if (ARR_NDIM(token) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("position token must be a one-dimensional array")));
	deconstruct_array(token, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
					  &elems, &nulls, &n);
	if (n != shards)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("position token has %d elements, but event stream \"%s\" has %d shards",
						n, el_qualified_name(relid), shards),
				 errhint("Pass the position of a row read_all() returned for this stream, or NULL to start at the beginning.")));
	for (int i = 0; i < n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("position token must not contain nulls")));
		after[i] = DatumGetInt64(elems[i]);
		if (after[i] < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("position token must not contain negative seqs"),
					 errdetail("Element %d (shard %d) is " INT64_FORMAT ".",
							   i + 1, i, after[i])));
	}
}

/*
 * event_log.read_all(stream regclass, after bigint[] DEFAULT NULL,
 *					  max_count int DEFAULT 1000)
 *		RETURNS TABLE (shard, seq, ..., recorded_at, position bigint[])
 *
 * Up to max_count events of every shard after the token's seqs, each shard
 * in seq order, the shards merged by recorded_at (as made monotonic per
 * shard, see ElShardCursor), ties by shard.  Each row's position is the
 * token that resumes right after it: the token given, with the seq of every
 * shard's last row returned so far.  Since each shard is read in seq order
 * from the token's seq on, and a shard's visible seqs are always 1 .. N
 * (docs/design/offsets.md), resuming from any row's position never skips an
 * event.  The reads run as the caller, as read() does.
 */
Datum
el_read_all(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			relid;
	int			shards;
	int32		max_count;
	int64	   *after;
	Datum	   *token;
	ElShardCursor *cursors;
	Tuplestorestate *store;
	MemoryContext row_cxt;
	long		chunk;
	SPIPlanPtr	plan;
	bool		upcast = el_upcast_reads;
	ElUpcastMemo memo;
	ElReveal   *reveal;

	el_require_arg(fcinfo, 0, "stream");
	el_require_arg(fcinfo, 2, "max_count");
	relid = PG_GETARG_OID(0);
	max_count = PG_GETARG_INT32(2);

	shards = el_require_stream(relid);
	after = palloc(sizeof(int64) * shards);
	el_parse_token(relid, shards, PG_ARGISNULL(1) ? NULL : PG_GETARG_ARRAYTYPE_P(1),
				   after);
	el_check_not_negative(max_count, "max_count");
	el_upcast_memo_init(&memo);

	el_check_select(relid);
	(void) check_enable_rls(relid, InvalidOid, false);
	(void) el_lock_stream(relid, AccessShareLock);
	store = el_result_store(fcinfo, true);
	if (max_count == 0)
		return (Datum) 0;

	token = palloc(sizeof(Datum) * shards);
	for (int i = 0; i < shards; i++)
		token[i] = Int64GetDatum(after[i]);
	cursors = palloc0(sizeof(ElShardCursor) * shards);
	/* Each shard may give every row; most give their share. */
	chunk = Min(max_count, Max(16, max_count / shards + 1));
	row_cxt = AllocSetContextCreate(CurrentMemoryContext, "event_log read_all row",
									ALLOCSET_SMALL_SIZES);
	reveal = el_personal_reveal_begin(relid);

	SPI_connect();
	plan = el_stream_plan(relid, EL_PLAN_READ);
	for (int i = 0; i < shards; i++)
	{
		Datum		values[3];

		values[0] = Int32GetDatum(i);
		values[1] = Int64GetDatum(after[i]);
		values[2] = Int64GetDatum((int64) max_count);
		cursors[i].portal = SPI_cursor_open_with_paramlist(NULL, plan,
														   el_plan_params(plan, values), true);
		cursors[i].more = true;
		if (!el_cursor_advance(&cursors[i], chunk))
		{
			SPI_cursor_close(cursors[i].portal);
			cursors[i].portal = NULL;
		}
		/* The cursors read with the active snapshot; so does the check. */
		el_check_watermark(relid, i, after[i], GetActiveSnapshot());
	}

	for (int32 sent = 0; sent < max_count; sent++)
	{
		int			best = -1;
		ElShardCursor *cur;
		Datum		values[EL_NATTS + 1];
		bool		nulls[EL_NATTS + 1];
		MemoryContext old;

		for (int i = 0; i < shards; i++)
			if (cursors[i].portal != NULL &&
				(best < 0 || cursors[i].key < cursors[best].key))
				best = i;
		if (best < 0)
			break;
		cur = &cursors[best];

		old = MemoryContextSwitchTo(row_cxt);
		heap_deform_tuple(cur->rows->vals[cur->next], cur->rows->tupdesc, values, nulls);
		token[best] = values[Anum_el_seq - 1];
		if (!nulls[Anum_el_payload - 1])
			values[Anum_el_payload - 1] = el_personal_reveal(reveal,
															 values[Anum_el_payload - 1]);
		if (upcast)
			(void) el_upcast_event(&memo, relid, values, nulls);
		values[EL_NATTS] = PointerGetDatum(construct_array(token, shards, INT8OID, 8,
														   FLOAT8PASSBYVAL,
														   TYPALIGN_DOUBLE));
		nulls[EL_NATTS] = false;
		tuplestore_putvalues(store, rsinfo->setDesc, values, nulls);
		MemoryContextSwitchTo(old);
		MemoryContextReset(row_cxt);

		if (!el_cursor_advance(cur, chunk))
		{
			SPI_cursor_close(cur->portal);
			cur->portal = NULL;
		}
	}
	for (int i = 0; i < shards; i++)
		if (cursors[i].portal != NULL)
			SPI_cursor_close(cursors[i].portal);
	SPI_finish();
	MemoryContextDelete(row_cxt);
	/* As el_exec_plan() does for the other readers. */
	if (tuplestore_tuple_count(store) > 0 && el_stream_grouped(relid))
		(void) el_wait_durable();
	return (Datum) 0;
}
