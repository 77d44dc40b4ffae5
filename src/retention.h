/*-------------------------------------------------------------------------
 *
 * retention.h
 *	  Retention policies and their enforcement (retention.c).  The check
 *	  readers make against a shard's low watermark is in read.c
 *	  (el_check_watermark()), the lookup in registry.c (el_low_watermark()).
 *
 *-------------------------------------------------------------------------
 */
#ifndef EL_RETENTION_H
#define EL_RETENTION_H

#include "postgres.h"

#include "access/tupdesc.h"
#include "utils/timestamp.h"
#include "nodes/pg_list.h"

extern int64 el_enforce_all(void);
extern int64 el_enforce_one(Oid relid, List **report);
extern void el_retention_init(void);

/* Shared by retention.c and retention_segment.c. */

/* A stream's policy, as retention_policies holds it. */
typedef struct ElPolicy
{
	bool		has_age;
	TimestampTz cutoff;			/* events recorded before it are old */
	bool		has_count;
	int64		max_events;
	bool		keep_unconsumed;
	bool		archive;		/* copy what leaves into the archive */
} ElPolicy;

/* What enforcement did to one shard: a row of enforce_retention(). */
typedef struct ElShardReport
{
	int32		shard;
	int64		removed;
	int64		low;			/* the new low watermark */
} ElShardReport;

extern int64 el_consumed_through(Oid relid, int32 shard);
extern void el_retire_key(Oid relid, Datum key, int64 version);
extern void el_record_removal(Oid relid, int32 shard, int64 low, int64 last,
							  TimestampTz newest, const NameData *who);
extern void el_summarize_segments(Oid relid);
extern int64 el_enforce_segmented(Oid relid, const ElPolicy *p, int shards,
								  List **report);

#endif							/* EL_RETENTION_H */
