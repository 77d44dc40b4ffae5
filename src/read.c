/*
 * read.c
 *	  event_log.read() (a shard by offset) and event_log.replay() (one key's
 *	  history), and the shard reads consumer groups use.  All run a kept plan
 *	  through SPI, so the caller's privileges and row-level security apply,
 *	  and stream the rows straight into the caller's tuplestore.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tstoreReceiver.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/params.h"
#include "utils/acl.h"
#include "utils/lsyscache.h"

#include "event_log.h"

PG_FUNCTION_INFO_V1(el_read);
PG_FUNCTION_INFO_V1(el_replay);

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

/* Refuse to read a stream the user may not SELECT from. */
void
el_check_select(Oid relid)
{
	AclResult	aclresult = pg_class_aclcheck(relid, GetUserId(), ACL_SELECT);

	/* Checked here too so the error does not cite our internal query. */
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_TABLE, get_rel_name(relid));
}

/* Run one of the stream's read plans into the SRF's tuplestore. */
static void
el_run_plan(FunctionCallInfo fcinfo, Oid relid, ElPlanKind kind,
			int nargs, const Oid *types, const Datum *values)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	DestReceiver *dest;

	el_check_select(relid);

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	dest = CreateDestReceiver(DestTuplestore);
	SetTuplestoreDestReceiverParams(dest, rsinfo->setResult,
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
						shard, el_stream_name(relid)),
				 errdetail("The stream has %d shard%s, numbered 0 to %d.",
						   shards, shards == 1 ? "" : "s", shards - 1)));
}

/*
 * event_log.read(stream regclass, shard int, after_seq bigint DEFAULT 0,
 *				  max_count int DEFAULT 1000) RETURNS SETOF event_log.event
 */
Datum
el_read(PG_FUNCTION_ARGS)
{
	Oid			relid;
	int			shards;
	int32		shard;
	int64		after_seq;
	int32		max_count;
	Oid			types[3] = {INT4OID, INT8OID, INT8OID};
	Datum		values[3];

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
	el_run_plan(fcinfo, relid, EL_PLAN_READ, 3, types, values);
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
