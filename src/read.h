/*
 * read.h
 *	  Reading a stream as the caller (read.c): one shard after a seq, the
 *	  end of a shard, and the checks and result set-up the readers share.
 */
#ifndef EL_READ_H
#define EL_READ_H

#include "postgres.h"

#include "fmgr.h"
#include "nodes/params.h"
#include "tcop/dest.h"
#include "utils/snapshot.h"
#include "utils/tuplestore.h"

#include "registry.h"

extern ParamListInfo el_plan_params(SPIPlanPtr plan, const Datum *values);
extern uint64 el_exec_plan(Oid relid, ElPlanKind kind, const Datum *values,
						   DestReceiver *dest, long tcount);
extern uint64 el_read_shard(Oid relid, int32 shard, int64 after_seq,
							int64 max_count, DestReceiver *dest);
/* The most event types one read() or poll() filters by. */
#define EL_MAX_TYPES		1000

extern Datum el_types_arg(FunctionCallInfo fcinfo, int argno);
extern uint64 el_read_shard_types(Oid relid, int32 shard, int64 after_seq,
								  int64 max_count, Datum types,
								  DestReceiver *dest);
extern int64 el_count_shard_types(Oid relid, int32 shard, int64 after_seq,
								  Datum types);
extern int64 el_shard_end(Oid relid, int32 shard);
extern void el_check_shard(Oid relid, int shards, int32 shard);
extern int	el_shard_read_args(FunctionCallInfo fcinfo, Oid *relid, int32 *shard,
							   int64 *after_seq, int32 *max_count);
extern void el_check_watermark(Oid relid, int32 shard, int64 after,
							   Snapshot snap);
extern void el_below_watermark(Oid relid, int32 shard, int64 after,
							   int64 low) pg_attribute_noreturn();
extern bool el_can_select(Oid relid);
extern void el_check_select(Oid relid);
extern Tuplestorestate *el_result_store(FunctionCallInfo fcinfo,
										bool expected_desc);

#endif							/* EL_READ_H */
