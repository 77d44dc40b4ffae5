/*
 * shard_end.h
 *	  The end of each shard, and each key's last row, shared between backends
 *	  when event_log is in shared_preload_libraries: the last appender of a
 *	  shard leaves where its last row is, so that the next one need not
 *	  probe the indexes for them.
 *	  The design is in docs/design/offsets.md, "The shard's end in shared
 *	  memory".
 */
#ifndef EL_SHARD_END_H
#define EL_SHARD_END_H

#include "postgres.h"

#include "storage/itemptr.h"
#include "utils/rel.h"
#include "utils/uuid.h"

/*
 * Where a shard's (or a key's) last row is, as its last appender left it:
 * its seq (or version), TID and event_id.
 */
typedef struct ElShardEnd
{
	int64		seq;			/* the version, for a key */
	ItemPointerData tid;
	pg_uuid_t	event_id;
} ElShardEnd;

/* GUC and shared memory set-up, from _PG_init(). */
extern void el_shard_end_init(void);

/* Whether entries are published: preloaded, and the setting on. */
extern bool el_shard_end_active(void);

/*
 * The caller holds the shard lock and is about to number its first row of
 * this transaction in the shard: the shard's end as the last appender left
 * it, if it left one (and event_log.shard_end_cache is on).  The entry is
 * cleared either way, until the caller publishes its own at pre-commit.
 */
extern bool el_shard_end_take(Relation rel, int32 shard, ElShardEnd *end);

/* Clear the entry (rows were inserted without being numbered here). */
extern void el_shard_end_forget(Relation rel, int32 shard);

/*
 * At pre-commit, under the shard lock, when el_shard_end_active(): our last
 * row of the shard is there.
 */
extern void el_shard_end_publish(Relation rel, int32 shard, const ElShardEnd *end);

/*
 * The same for a key's last row (its version instead of a seq), under the
 * lock of the key's shard.
 */
extern bool el_key_end_take(Relation rel, const text *key, ElShardEnd *end);
extern void el_key_end_forget(Relation rel, const text *key);
extern void el_key_end_publish(Relation rel, const text *key, const ElShardEnd *end);

#endif							/* EL_SHARD_END_H */
