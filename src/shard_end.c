/*-------------------------------------------------------------------------
 *
 * shard_end.c
 *	  The end of each shard in shared memory, for the next appender.
 *
 *	  Every append looks for the end of its shard under the shard lock: the
 *	  last seq, from a backward probe of the (shard, seq) index with a dirty
 *	  snapshot.  Within one transaction the trigger skips the probe when it
 *	  finds its own previous row (append.c); across transactions it cannot
 *	  know, without asking the index, whether somebody else appended since.
 *	  For a single-event transaction that probe (a B-tree descent, the scan's
 *	  set-up and a heap fetch) was about 5% of the backend's time.
 *
 *	  With event_log in shared_preload_libraries, a small table in shared
 *	  memory keeps, per shard, where its last row is: seq, heap TID and
 *	  event_id.  The rules that make an entry trustworthy:
 *
 *	  - Only a holder of the shard lock reads or writes a shard's entry.
 *	  - The first time a transaction numbers a row in a shard it clears the
 *		entry (el_shard_end_take() reads and clears at once), so from then
 *		on until it ends the entry says nothing.
 *	  - At pre-commit, still under the lock, the transaction publishes its
 *		own last row of the shard, and only after finding that row in the
 *		heap: a row numbered and then skipped (ON CONFLICT DO NOTHING) or
 *		taken back (a savepoint) is not published.  A transaction that
 *		prepares, aborts, or numbered rows it cannot find publishes
 *		nothing, and the entry stays clear.
 *	  - The next holder trusts an entry only once it has fetched the row at
 *		the TID with a dirty snapshot and found it live, with the entry's
 *		shard, seq and event_id: the publisher may still have failed after
 *		its pre-commit (its row is then dead), retention may have removed
 *		the row, the relation may have been rewritten or dropped and its
 *		OID reused.  Anything else, and it probes as before.
 *
 *	  So a trusted entry names a committed row that was the shard's end when
 *	  its transaction committed, and nobody numbered a row in the shard
 *	  since.  Rows inserted with their positions already set (a logical
 *	  replication subscriber's apply) clear the entry too.
 *
 *	  The table is direct-mapped: a shard's entry has one slot, chosen by a
 *	  hash of (database, relation, relfilenode, shard), and another shard
 *	  hashing to the same slot replaces it.  A replaced or missing entry
 *	  costs a probe, nothing else.  Each slot has its own spinlock.  The
 *	  table starts empty at server start and after a crash; a standby never
 *	  fills it (nobody appends there), so a promoted standby starts empty
 *	  too.
 *
 * Copyright (c) 2026, event_log authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/guc.h"

#include "shard_end.h"

/* Slots of the table: a few per stream shard of a busy database. */
#define EL_SHARD_END_SLOTS	4096

typedef struct ElShardEndKey
{
	Oid			dbid;
	Oid			relid;
	Oid			relnode;
	int32		shard;
} ElShardEndKey;

typedef struct ElShardEndSlot
{
	slock_t		mutex;
	bool		valid;
	ElShardEndKey key;
	ElShardEnd	end;
} ElShardEndSlot;

static ElShardEndSlot *el_shard_ends = NULL;
static bool el_shard_end_cache = true;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static Size
el_shard_end_size(void)
{
	return mul_size(EL_SHARD_END_SLOTS, sizeof(ElShardEndSlot));
}

static void
el_shard_end_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(el_shard_end_size());
}

static void
el_shard_end_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	el_shard_ends = ShmemInitStruct("event_log shard ends",
									el_shard_end_size(), &found);
	if (!found)
		for (int i = 0; i < EL_SHARD_END_SLOTS; i++)
		{
			SpinLockInit(&el_shard_ends[i].mutex);
			el_shard_ends[i].valid = false;
		}
	LWLockRelease(AddinShmemInitLock);
}

void
el_shard_end_init(void)
{
	DefineCustomBoolVariable("event_log.shard_end_cache",
							 "Takes a shard's end from shared memory instead of probing its index, where the last appender left it.",
							 "Needs event_log in shared_preload_libraries.  Off, appends probe the index; they keep the shared entries up to date either way.",
							 &el_shard_end_cache,
							 true,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = el_shard_end_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = el_shard_end_shmem_startup;
}

/* The slot of a shard's entry, and the key it has there. */
static ElShardEndSlot *
el_shard_end_slot(Relation rel, int32 shard, ElShardEndKey *key)
{
	memset(key, 0, sizeof(*key));
	key->dbid = MyDatabaseId;
	key->relid = RelationGetRelid(rel);
	key->relnode = rel->rd_node.relNode;
	key->shard = shard;
	return &el_shard_ends[hash_bytes((const unsigned char *) key, sizeof(*key)) %
						  EL_SHARD_END_SLOTS];
}

static bool
el_shard_end_clear(Relation rel, int32 shard, ElShardEnd *end)
{
	ElShardEndKey key;
	ElShardEndSlot *slot;
	bool		found;

	if (el_shard_ends == NULL)
		return false;
	slot = el_shard_end_slot(rel, shard, &key);
	SpinLockAcquire(&slot->mutex);
	found = slot->valid && memcmp(&slot->key, &key, sizeof(key)) == 0;
	if (found)
	{
		if (end != NULL)
			*end = slot->end;
		slot->valid = false;
	}
	SpinLockRelease(&slot->mutex);
	return found;
}

bool
el_shard_end_take(Relation rel, int32 shard, ElShardEnd *end)
{
	/* cleared even when not used: the entry must never outlive a numbering */
	return el_shard_end_clear(rel, shard, end) && el_shard_end_cache;
}

void
el_shard_end_forget(Relation rel, int32 shard)
{
	el_shard_end_clear(rel, shard, NULL);
}

void
el_shard_end_publish(Relation rel, int32 shard, const ElShardEnd *end)
{
	ElShardEndKey key;
	ElShardEndSlot *slot;

	if (el_shard_ends == NULL || !el_shard_end_cache)
		return;
	slot = el_shard_end_slot(rel, shard, &key);
	SpinLockAcquire(&slot->mutex);
	slot->key = key;
	slot->end = *end;
	slot->valid = true;
	SpinLockRelease(&slot->mutex);
}
