/*
 * registry.h
 *	  The stream registry and the per-backend stream cache (registry.c):
 *	  which tables are streams, their shard counts, their unique indexes,
 *	  the shard and stream locks, and the plans run against a stream.
 */
#ifndef EL_REGISTRY_H
#define EL_REGISTRY_H

#include "postgres.h"

#include "executor/spi.h"
#include "storage/lockdefs.h"
#include "utils/hsearch.h"
#include "utils/relcache.h"
#include "utils/snapshot.h"

typedef struct ElStreamIndexes
{
	Oid			pk;				/* unique (shard, seq) */
	Oid			event_id;		/* unique (event_id) */
	Oid			key_version;	/* unique (key, version) */
} ElStreamIndexes;

extern void el_stream_cache_init(void);
extern void el_cache_invalidate(HTAB *cache, Oid relid, Size valid_offset);

/* Reading the registry; -1 shards when relid is not a stream. */
extern int	el_registry_shards(Oid relid);
extern int	el_stream_shards(Oid relid);
extern bool el_stream_grouped(Oid relid);
extern bool el_stream_has_watermarks(Oid relid);
extern int64 el_retired_version(Oid relid, text *key);
extern int64 el_low_watermark(Oid relid, int32 shard, Snapshot snap);
extern int	el_require_stream(Oid relid);
extern int	el_lock_stream(Oid relid, LOCKMODE lockmode);
extern List *el_registry_streams(void);

/* Writing it (create_stream(), drop_stream()). */
extern void el_registry_insert(Oid relid, int shards);
extern void el_registry_delete(Oid relid);
extern bool el_registry_set_commit_mode(Oid relid, const char *mode);

extern bool el_find_stream_indexes(Relation rel, ElStreamIndexes *out);
extern const ElStreamIndexes *el_stream_indexes(Relation rel);
extern const char *el_stream_missing_trigger(Oid relid);

typedef enum ElPlanKind
{
	EL_PLAN_INSERT,				/* append(): INSERT (key, type, payload, ...) */
	EL_PLAN_READ,				/* read(): one shard after a seq */
	EL_PLAN_REPLAY,				/* replay(): one key after a version */
	EL_PLAN_LAST,				/* the last seq of one shard */
	EL_PLAN_BY_ID,				/* read_event(): one event by event_id */
	EL_PLAN_READ_TYPE,			/* read(types): one shard after a seq, one type */
	EL_PLAN_READ_TYPES,			/* read(types): one shard after a seq, some types */
	EL_PLAN_COUNT_TYPES,		/* consumer_lag: events of some types after a seq */
	EL_PLAN_TIME,				/* read_by_time(): a range of recorded_at */
	EL_PLAN_CONVERSATION,		/* conversation(): one correlation_id */
	EL_NUM_PLANS
} ElPlanKind;

extern SPIPlanPtr el_stream_plan(Oid relid, ElPlanKind kind);

#endif							/* EL_REGISTRY_H */
