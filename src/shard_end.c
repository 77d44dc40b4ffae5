/*-------------------------------------------------------------------------
 *
 * shard_end.c
 *	  The end of each shard, and each key's last row, in shared memory, for
 *	  the next appender.
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
 *	  A second table does the same for keys: the row a transaction publishes
 *	  as its shard's end is also its key's last row, so its version is the
 *	  key's last.  A transaction clears a key's entry the first time it
 *	  numbers a row of the key, and the next appender of the key trusts it
 *	  after fetching the row and finding it live, with the key, version
 *	  and event_id.  A key's entry is read and written only under its
 *	  shard's lock, like the shard's.  On a shard that several backends
 *	  append to, a backend's own cache of versions (append.c) is stale after
 *	  every foreign append; this spares the (key, version) probe there.
 *
 *	  The tables are direct-mapped: a shard's entry has one slot, chosen by a
 *	  hash of (database, relation, relfilenode, shard), and another shard
 *	  hashing to the same slot replaces it; a key's, by a hash of the
 *	  relation and the key, whose bytes the fetched row confirms.  A
 *	  replaced or missing entry costs a probe, nothing else.  Each slot has
 *	  its own spinlock.  The tables start empty at server start and after a
 *	  crash; a standby never fills them (nobody appends there), so a
 *	  promoted standby starts empty too.  Without preloading there are no
 *	  tables, and every function here returns at once.
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

/*
 * Slots of the tables: a few per stream shard of a busy database, and one
 * per recently appended key.
 */
#define EL_SHARD_END_SLOTS	4096
#define EL_KEY_END_SLOTS	32768

/* Whose entry a slot holds: a shard's, or a key's (shard -1). */
typedef struct ElEndKey
{
	Oid			dbid;
	Oid			relid;
	Oid			relnode;
	int32		shard;
	uint32		keylen;
	uint64		keyhash;
} ElEndKey;

typedef struct ElEndSlot
{
	slock_t		mutex;
	bool		valid;
	ElEndKey	key;
	ElShardEnd	end;
} ElEndSlot;

typedef struct ElEndTable
{
	ElEndSlot  *slots;
	int			nslots;
} ElEndTable;

static ElEndTable el_shard_ends = {NULL, EL_SHARD_END_SLOTS};
static ElEndTable el_key_ends = {NULL, EL_KEY_END_SLOTS};
static bool el_shard_end_cache = true;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static Size
el_end_table_size(const ElEndTable *table)
{
	return mul_size(table->nslots, sizeof(ElEndSlot));
}

static void
el_shard_end_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(add_size(el_end_table_size(&el_shard_ends),
									el_end_table_size(&el_key_ends)));
}

static void
el_end_table_attach(ElEndTable *table, const char *name)
{
	bool		found;

	table->slots = ShmemInitStruct(name, el_end_table_size(table), &found);
	if (!found)
		for (int i = 0; i < table->nslots; i++)
		{
			SpinLockInit(&table->slots[i].mutex);
			table->slots[i].valid = false;
		}
}

static void
el_shard_end_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	el_end_table_attach(&el_shard_ends, "event_log shard ends");
	el_end_table_attach(&el_key_ends, "event_log key ends");
	LWLockRelease(AddinShmemInitLock);
}

void
el_shard_end_init(void)
{
	DefineCustomBoolVariable("event_log.shard_end_cache",
							 "Takes the end of a shard, and a key's last version, from shared memory instead of probing the indexes, where the last appender left them.",
							 "Needs event_log in shared_preload_libraries.  Off, appends probe the indexes; they keep the shared entries up to date either way.",
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

bool
el_shard_end_active(void)
{
	return el_shard_ends.slots != NULL && el_shard_end_cache;
}

/* The slot of a shard's entry (key NULL) or a key's, and whose it is. */
static ElEndSlot *
el_end_slot(const ElEndTable *table, Relation rel, int32 shard,
			const text *key, ElEndKey *k)
{
	memset(k, 0, sizeof(*k));
	k->dbid = MyDatabaseId;
	k->relid = RelationGetRelid(rel);
	k->relnode = rel->rd_node.relNode;
	k->shard = shard;
	if (key != NULL)
	{
		k->keylen = VARSIZE_ANY_EXHDR(key);
		k->keyhash = hash_bytes_extended((const unsigned char *) VARDATA_ANY(key),
										 k->keylen, 0);
	}
	return &table->slots[hash_bytes((const unsigned char *) k, sizeof(*k)) %
						 table->nslots];
}

/* Read (into *end, unless NULL) and clear an entry; whether there was one. */
static bool
el_end_clear(const ElEndTable *table, Relation rel, int32 shard,
			 const text *key, ElShardEnd *end)
{
	ElEndKey	k;
	ElEndSlot  *slot;
	bool		found;

	if (table->slots == NULL)
		return false;
	slot = el_end_slot(table, rel, shard, key, &k);
	SpinLockAcquire(&slot->mutex);
	found = slot->valid && memcmp(&slot->key, &k, sizeof(k)) == 0;
	if (found)
	{
		if (end != NULL)
			*end = slot->end;
		slot->valid = false;
	}
	SpinLockRelease(&slot->mutex);
	return found;
}

/* Only called when el_shard_end_active(). */
static void
el_end_publish(const ElEndTable *table, Relation rel, int32 shard,
			   const text *key, const ElShardEnd *end)
{
	ElEndKey	k;
	ElEndSlot  *slot = el_end_slot(table, rel, shard, key, &k);

	SpinLockAcquire(&slot->mutex);
	slot->key = k;
	slot->end = *end;
	slot->valid = true;
	SpinLockRelease(&slot->mutex);
}

/* Cleared even when not used: an entry must never outlive a numbering. */
bool
el_shard_end_take(Relation rel, int32 shard, ElShardEnd *end)
{
	return el_end_clear(&el_shard_ends, rel, shard, NULL, end) && el_shard_end_cache;
}

void
el_shard_end_forget(Relation rel, int32 shard)
{
	el_end_clear(&el_shard_ends, rel, shard, NULL, NULL);
}

void
el_shard_end_publish(Relation rel, int32 shard, const ElShardEnd *end)
{
	el_end_publish(&el_shard_ends, rel, shard, NULL, end);
}

bool
el_key_end_take(Relation rel, const text *key, ElShardEnd *end)
{
	return el_end_clear(&el_key_ends, rel, -1, key, end) && el_shard_end_cache;
}

void
el_key_end_forget(Relation rel, const text *key)
{
	el_end_clear(&el_key_ends, rel, -1, key, NULL);
}

void
el_key_end_publish(Relation rel, const text *key, const ElShardEnd *end)
{
	el_end_publish(&el_key_ends, rel, -1, key, end);
}
