/*
 * append.c
 *	  Appending events: the BEFORE INSERT trigger that assigns shard, seq,
 *	  version, event_id and recorded_at to every new row (plain INSERT, COPY
 *	  and append() all go through it), event_log.append(), and the steps of
 *	  an append that append_events() (append_batch.c) shares (append.h).
 *
 *	  The ordering argument is in docs/design/offsets.md.  In short: the first
 *	  append of a transaction to a shard takes that shard's lock and keeps it
 *	  to the end of the transaction; seq and version are read, under the lock,
 *	  from the stream's own indexes with a snapshot that sees every committed
 *	  row whatever the transaction's isolation level.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/visibilitymap.h"
#include "access/detoast.h"
#include "catalog/pg_collation.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "common/hashfn.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/uuid.h"

#include "append.h"
#include "catalog.h"
#include "commit.h"
#include "event_log.h"
#include "immutable.h"
#include "key.h"
#include "personal.h"
#include "registry.h"
#include "schema.h"
#include "segment.h"
#include "shard_end.h"
#include "wake.h"

PG_FUNCTION_INFO_V1(el_assign_position);
PG_FUNCTION_INFO_V1(el_append);

/*
 * append() checks idempotency and the expected version itself, then inserts
 * through SPI.  It tells the trigger which row is its own so the trigger
 * neither repeats the event_id check nor loses the position it assigned.
 */
typedef struct ElPending
{
	bool		active;			/* waiting for the trigger to see our row */
	pg_uuid_t	event_id;		/* which row is ours */
	int32		shard;			/* what the trigger assigned to it */
	int64		seq;
	int64		version;
} ElPending;

/*
 * The innermost append() in progress.  A trigger on the stream may call
 * append() again while the outer one runs, so each call saves the outer
 * state and puts it back when done.
 */
static ElPending el_pending = {false};

/*
 * The row a backend last numbered in a shard, as el_last_seq() expects to
 * find it at the shard's end: the same event_id is not enough, since a row
 * of ours that ON CONFLICT DO NOTHING skipped leaves its event_id free for
 * another appender's row, which may then take the same seq.
 */
typedef struct ElEndRow
{
	const pg_uuid_t *event_id;
	const text *key;
	int64		version;
} ElEndRow;

/*
 * Whether a row with these event_id, version and key is the row `end` names.
 * A key stored out of line is read from TOAST, which takes a snapshot; at
 * pre-commit, where a shard's end is published, there may be none, and such
 * a row is not taken for the one named (its shard's next appender probes).
 */
static bool
el_is_end_row(const ElEndRow *end, Datum event_id, Datum version, Datum key)
{
	text	   *k;

	if (VARATT_IS_EXTERNAL_ONDISK(DatumGetPointer(key)) && !ActiveSnapshotSet())
		return false;
	k = DatumGetTextPP(key);

	return memcmp(DatumGetUUIDP(event_id), end->event_id, UUID_LEN) == 0 &&
		DatumGetInt64(version) == end->version &&
		VARSIZE_ANY_EXHDR(k) == VARSIZE_ANY_EXHDR(end->key) &&
		memcmp(VARDATA_ANY(k), VARDATA_ANY(end->key), VARSIZE_ANY_EXHDR(k)) == 0;
}

/*
 * Value of column `attnum` in the last row that a backward index scan with
 * `keys` returns, read with a dirty snapshot: it sees every committed row
 * and our own, whatever our transaction's snapshot, and skips rows of
 * aborted (sub)transactions.  Under the shard lock no other transaction can
 * have an uncommitted row in the range.  -1 if there is none.  The keys
 * take the index's collations (a stream's key may have a deterministic
 * collation other than the database's).
 *
 * An entry whose heap page the visibility map says is all-visible is taken
 * from the index alone, as an index-only scan takes it: every row on such a
 * page is committed and visible to everyone, so the dirty snapshot would see
 * it too.  That spares a random heap read per probe once the stream is
 * larger than the cache (docs/performance.md, "Appends as the stream
 * grows").  Entries on other pages (the newest rows, ours, a rolled-back
 * one) are checked against the heap.  Not when the caller wants to know
 * whether the last row is `end` (*end_matches), which only the heap has.
 */
static int64
el_index_last(Relation rel, Oid indexoid, ScanKey keys, int nkeys,
			  AttrNumber attnum, const ElEndRow *end, bool *end_matches)
{
	Relation	index = index_open(indexoid, AccessShareLock);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	Buffer		vmbuffer = InvalidBuffer;
	int			index_attno = 0;
	int64		result;

	for (int i = 0; i < nkeys; i++)
		keys[i].sk_collation = index->rd_indcollation[keys[i].sk_attno - 1];
	if (end == NULL)
		for (int i = 0; i < index->rd_index->indnatts; i++)
			if (index->rd_index->indkey.values[i] == attnum)
				index_attno = i + 1;

	for (;;)
	{
		SnapshotData dirty;
		IndexScanDesc scan;
		TransactionId wait_xid = InvalidTransactionId;
		ItemPointerData wait_tid;

		InitDirtySnapshot(dirty);
		scan = index_beginscan(rel, index, &dirty, nkeys, 0);
		scan->xs_want_itup = index_attno > 0;
		index_rescan(scan, keys, nkeys, NULL, 0);
		result = -1;
		for (;;)
		{
			bool		isnull;
			bool		from_index = false;
			ItemPointer tid = index_getnext_tid(scan, BackwardScanDirection);

			/*
			 * Each entry is fetched from the heap at most once: the loop ends
			 * at the first row the dirty snapshot accepts, and a rejected
			 * fetch leaves no HOT chain to go on with (xs_heap_continue).
			 */
			if (tid == NULL)
				break;
			if (scan->xs_itup != NULL &&
				VM_ALL_VISIBLE(rel, ItemPointerGetBlockNumber(tid), &vmbuffer))
			{
				result = DatumGetInt64(index_getattr(scan->xs_itup, index_attno,
													 scan->xs_itupdesc, &isnull));
				from_index = true;
			}
			if (!from_index)
			{
				if (!index_fetch_heap(scan, slot))
					continue;	/* not visible even to the dirty snapshot */

				/*
				 * Another transaction's uncommitted row in our range means it
				 * appended without holding the shard lock, which our own
				 * paths never do; numbering after it could break commit
				 * order, so wait for it to finish and look again.
				 */
				if (TransactionIdIsValid(dirty.xmin))
				{
					wait_xid = dirty.xmin;
					wait_tid = slot->tts_tid;
					break;
				}

				/*
				 * Our own speculative tuple: an INSERT ... ON CONFLICT of
				 * this transaction is still inserting it, and may yet kill
				 * it; we are running inside that insertion (a function of
				 * an index expression).  Numbering after it would leave a
				 * hole if it is killed.
				 */
				if (HeapTupleHeaderIsSpeculative(ExecFetchSlotHeapTuple(slot, false, NULL)->t_data))
					ereport(ERROR,
							(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
							 errmsg("cannot append to event stream \"%s\" while an INSERT ... ON CONFLICT is inserting into it",
									RelationGetRelationName(rel)),
							 errdetail("A function called by an index expression or index predicate of the stream appended to the stream."),
							 errhint("Append from an AFTER trigger or after the statement instead.")));
				/* Whether the last row is the one the caller expects. */
				if (end != NULL)
					*end_matches =
						el_is_end_row(end, slot_getattr(slot, Anum_el_event_id, &isnull),
									  slot_getattr(slot, Anum_el_version, &isnull),
									  slot_getattr(slot, Anum_el_key, &isnull));
				result = DatumGetInt64(slot_getattr(slot, attnum, &isnull));
			}
			break;
		}
		index_endscan(scan);
		if (!TransactionIdIsValid(wait_xid))
			break;
		XactLockTableWait(wait_xid, rel, &wait_tid, XLTW_None);
	}
	if (BufferIsValid(vmbuffer))
		ReleaseBuffer(vmbuffer);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, AccessShareLock);
	return result;
}

/*
 * The key's last version, read from the (key, version) index.  A key with
 * many events fills leaf pages of its own, whose entries the backward scan
 * would all copy; `from`, a version the key is known to have had (0 if
 * none), bounds it.  If nothing is found from there (the row that had it
 * was skipped by ON CONFLICT), the whole key is read.
 */
static int64
el_probe_version(Relation rel, Oid indexoid, text *key, int64 from)
{
	ScanKeyData skeys[2];
	int64		last = -1;

	ScanKeyEntryInitialize(&skeys[0], 0, 1, BTEqualStrategyNumber, InvalidOid,
						   DEFAULT_COLLATION_OID, F_TEXTEQ, PointerGetDatum(key));
	if (from > 0)
	{
		ScanKeyInit(&skeys[1], 2, BTGreaterEqualStrategyNumber, F_INT8GE,
					Int64GetDatum(from));
		last = el_index_last(rel, indexoid, skeys, 2, Anum_el_version,
							 NULL, NULL);
	}
	if (last < 0)
		last = el_index_last(rel, indexoid, skeys, 1, Anum_el_version,
							 NULL, NULL);
	/* A key whose every event retention removed goes on from its last. */
	if (last <= 0 && el_stream_has_watermarks(RelationGetRelid(rel)))
		last = el_retired_version(RelationGetRelid(rel), key);
	return Max(last, 0);
}

/*
 * Versions this backend assigned, per (stream, key), so that a key appended
 * to again needs no index probe: in the same transaction (a batch), and in
 * later ones as long as nobody else appended to the key's shard meanwhile.
 *
 * An entry is valid only while its shard's seq hint (below) has the
 * generation the entry was made under.  The generation moves on whenever
 * el_last_seq() finds anything but the hinted row at the shard's end: then
 * another backend appended (and may have appended to our keys), or the
 * hinted row vanished.  Within the transaction that made the hint it can
 * vanish by a row skipped by ON CONFLICT DO NOTHING or a rolled-back
 * savepoint; across transactions, by an abort or a ROLLBACK PREPARED, so
 * el_forget_positions() empties both caches when a transaction or
 * subtransaction aborts and when one is prepared.  Every key lives in one
 * shard, and the next append to a shard looks at its end before any
 * version of a key in it is used, so a stale version is never used.
 */
typedef struct ElVersionKey
{
	Oid			relid;
	uint32		keylen;
	uint64		keyhash;
} ElVersionKey;

typedef struct ElVersion
{
	ElVersionKey hkey;
	char	   *key;			/* the key's bytes, to rule out collisions */
	int64		version;
	uint64		generation;		/* of the shard's seq hint when assigned */
	LocalTransactionId cleared; /* last transaction that cleared the key's
								 * shared entry (shard_end.c) */
} ElVersion;

#define EL_VERSION_CACHE_MAX	65536

static MemoryContext el_version_cxt = NULL;
static HTAB *el_versions = NULL;

static void el_forget_positions(void);
static void el_publish_shard_ends(void);

/*
 * The seq hints (below) of the shards this transaction numbered rows in, for
 * el_publish_shard_ends().  Beyond the array's size the rest are not
 * published: their next appenders probe.
 */
#define EL_MAX_TOUCHED	64
static struct ElSeqHint *el_touched[EL_MAX_TOUCHED];
static int	el_ntouched = 0;

static void
el_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			el_publish_shard_ends();
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			el_ntouched = 0;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			el_forget_positions();
			break;
		default:
			break;
	}
}

static void
el_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		el_forget_positions();
}

/* Register the callbacks above, once, before either cache is filled. */
static void
el_positions_init(void)
{
	static bool done = false;

	if (done)
		return;
	RegisterXactCallback(el_xact_callback, NULL);
	RegisterSubXactCallback(el_subxact_callback, NULL);
	done = true;
}

static HTAB *
el_version_cache(void)
{
	el_positions_init();
	if (el_version_cxt == NULL)
		el_version_cxt = AllocSetContextCreate(TopMemoryContext,
											   "event_log version cache",
											   ALLOCSET_DEFAULT_SIZES);
	if (el_versions != NULL &&
		hash_get_num_entries(el_versions) >= EL_VERSION_CACHE_MAX)
	{
		MemoryContextReset(el_version_cxt);
		el_versions = NULL;
	}
	if (el_versions == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(ElVersionKey);
		ctl.entrysize = sizeof(ElVersion);
		ctl.hcxt = el_version_cxt;
		el_versions = hash_create("event_log versions", 1024, &ctl,
								  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	return el_versions;
}

static ElVersion *
el_version_entry(Oid relid, text *key, bool create)
{
	ElVersionKey hkey;
	ElVersion  *entry;
	bool		found;
	uint32		len = VARSIZE_ANY_EXHDR(key);

	memset(&hkey, 0, sizeof(hkey));
	hkey.relid = relid;
	hkey.keylen = len;
	hkey.keyhash = hash_bytes_extended((const unsigned char *) VARDATA_ANY(key),
									   len, 0);
	entry = hash_search(el_version_cache(), &hkey,
						create ? HASH_ENTER : HASH_FIND, &found);
	if (entry == NULL)
		return NULL;
	if (found && memcmp(entry->key, VARDATA_ANY(key), len) == 0)
		return entry;
	if (!create)
		return NULL;
	/* New, or a hash collision: (re)take the slot for this key. */
	entry->key = MemoryContextAlloc(el_version_cxt, Max(len, 1));
	memcpy(entry->key, VARDATA_ANY(key), len);
	entry->version = -1;
	entry->cleared = InvalidLocalTransactionId;
	return entry;
}

/*
 * The last seq this backend assigned in each shard.  It is only a hint:
 * el_last_seq() scans back from the shard's end down to it, which is far
 * cheaper than an unbounded backward scan (that reads every entry of the
 * shard on the last leaf page).  Within the transaction that assigned it,
 * the hinted row is the shard's end unless it vanished (skipped by INSERT
 * ... ON CONFLICT DO NOTHING, rolled back with a savepoint); in a later
 * transaction it is a lower bound, since other backends may have appended
 * since.  A probe that finds nothing falls back to the full lookup, so
 * correctness never depends on the hint.
 */
typedef struct ElSeqHintKey
{
	Oid			relid;
	int32		shard;
} ElSeqHintKey;

typedef struct ElSeqHint
{
	ElSeqHintKey key;
	LocalTransactionId lxid;	/* transaction that assigned last_seq */
	int64		last_seq;		/* 0: no hint */
	pg_uuid_t	event_id;		/* the row at last_seq: its event_id, */
	text	   *row_key;		/* key (in TopMemoryContext) */
	Size		row_key_space;	/* bytes allocated for row_key's data */
	int64		row_version;	/* and version */
	Oid			segment;		/* the segment it went to (segmented streams) */
	uint64		generation;		/* see ElVersion */
} ElSeqHint;

static HTAB *el_seq_hints = NULL;

static ElSeqHint *
el_seq_hint(Oid relid, int32 shard)
{
	ElSeqHintKey key;
	ElSeqHint  *hint;
	bool		found;

	if (el_seq_hints == NULL)
	{
		HASHCTL		ctl;

		el_positions_init();
		ctl.keysize = sizeof(ElSeqHintKey);
		ctl.entrysize = sizeof(ElSeqHint);
		el_seq_hints = hash_create("event_log seq hints", 64, &ctl,
								   HASH_ELEM | HASH_BLOBS);
	}
	memset(&key, 0, sizeof(key));
	key.relid = relid;
	key.shard = shard;
	hint = hash_search(el_seq_hints, &key, HASH_ENTER, &found);
	if (!found)
	{
		hint->lxid = InvalidLocalTransactionId;
		hint->last_seq = 0;
		hint->row_key = NULL;
		hint->row_key_space = 0;
		hint->row_version = 0;
		hint->segment = InvalidOid;
		hint->generation = 0;
	}
	return hint;
}

/*
 * Whether the row at the hint, which this transaction numbered, is in the
 * heap: a live tuple of this transaction with the hint's shard, seq,
 * event_id, key and version, on the page this backend last inserted into
 * the stream, or the segment (the relation's target block).
 *
 * Within the transaction that numbered the hinted row, the row is the
 * shard's end if it went in: the transaction has held the shard lock since,
 * and every seq it assigned in the shard after it would have moved the
 * hint.  It may not have gone in: INSERT ... ON CONFLICT DO NOTHING skips a
 * row after the trigger numbered it (its speculative tuple, if one was
 * written, is killed: its xmin is cleared).  In a batch the row was just
 * inserted, so looking at that one page, which is in shared buffers, is
 * cheaper than the index probe it spares.  Not found (a skipped row, a row
 * that user code running between the trigger and the insert, such as a
 * CHECK constraint, pushed off the target page with an insert of its own,
 * an invalidation that reset the target block): the caller probes.
 * Within our transaction only one live row can have that shard and seq (a
 * second would have failed the primary key, and every abort of a
 * subtransaction forgets the hints), but it need not be the hinted one:
 * its event_id, key and version must match too, as el_last_seq()'s probe
 * requires of the row it finds (ElEndRow).
 */
static bool
el_hinted_row_in_heap(Relation rel, int32 shard, const ElSeqHint *hint,
					  ItemPointer tid)
{
	BlockNumber blk = RelationGetTargetBlock(rel);
	TupleDesc	desc = RelationGetDescr(rel);
	ElEndRow	end = {&hint->event_id, hint->row_key, hint->row_version};
	Buffer		buf;
	Page		page;
	HeapTupleData tuple;
	bool		candidate = false;
	bool		found = false;
	bool		isnull;

	/* Only a row this transaction numbered, under the lock it still holds. */
	if (hint->lxid != MyProc->lxid || hint->last_seq <= 0)
		return false;

	/*
	 * A block this backend inserted into.  The relation can only shrink by a
	 * truncation, under an ACCESS EXCLUSIVE lock, whose invalidation resets
	 * every backend's target block before it can lock the stream again (we
	 * hold a lock on it): PostgreSQL's own heap insertion reads the target
	 * block on the same grounds, without asking the size of the relation.
	 */
	if (blk == InvalidBlockNumber)
		return false;
	buf = ReadBufferExtended(rel, MAIN_FORKNUM, blk, RBM_NORMAL, NULL);
	LockBuffer(buf, BUFFER_LOCK_SHARE);
	page = BufferGetPage(buf);
	for (OffsetNumber off = PageGetMaxOffsetNumber(page);
		 off >= FirstOffsetNumber; off--)
	{
		ItemId		lp = PageGetItemId(page, off);

		if (!ItemIdIsNormal(lp))
			continue;
		tuple.t_data = (HeapTupleHeader) PageGetItem(page, lp);
		tuple.t_len = ItemIdGetLength(lp);
		tuple.t_tableOid = RelationGetRelid(rel);
		ItemPointerSet(&tuple.t_self, blk, off);
		/* ours (not a killed speculative tuple, whose xmin is invalid) */
		if (!TransactionIdIsCurrentTransactionId(HeapTupleHeaderGetRawXmin(tuple.t_data)))
			continue;
		if (!(tuple.t_data->t_infomask & HEAP_XMAX_INVALID) &&
			TransactionIdIsValid(HeapTupleHeaderGetRawXmax(tuple.t_data)))
			continue;
		if (DatumGetInt64(heap_getattr(&tuple, Anum_el_seq, desc, &isnull)) != hint->last_seq ||
			isnull ||
			DatumGetInt32(heap_getattr(&tuple, Anum_el_shard, desc, &isnull)) != shard)
			continue;

		/*
		 * The one live row of ours with that seq, but is it the hinted row?
		 * User code running between the trigger and an outer row's insert
		 * (a CHECK constraint) can append to the shard before the outer
		 * row is written, and take the outer row's seq; if that nested row
		 * is then skipped, the outer row holds the seq the hint names.
		 * Still being inserted by an INSERT ... ON CONFLICT, which may kill
		 * it (we run inside its index insertion): not counted either.  The
		 * probe decides in both cases.
		 */
		candidate = !HeapTupleHeaderIsSpeculative(tuple.t_data);
		break;
	}

	/*
	 * Compared with the page unlocked (a key stored out of line is read from
	 * its TOAST table), the pin keeping the tuple where it is.
	 */
	LockBuffer(buf, BUFFER_LOCK_UNLOCK);
	if (candidate)
		found = el_is_end_row(&end,
							  heap_getattr(&tuple, Anum_el_event_id, desc, &isnull),
							  heap_getattr(&tuple, Anum_el_version, desc, &isnull),
							  heap_getattr(&tuple, Anum_el_key, desc, &isnull));
	if (found && tid != NULL)
		*tid = tuple.t_self;
	ReleaseBuffer(buf);
	return found;
}

/*
 * How many blocks the stream's heap has at least, without asking the file
 * system: the size smgr remembers from its last look and this backend's own
 * extensions, or 0 when it does not know.  The entries in shared memory name
 * rows by TID, and a TID past the end must not be read, but the lseek() that
 * RelationGetNumberOfBlocks() makes every time cost each append about half
 * a microsecond under the shard lock.  PostgreSQL trusts this remembered size
 * only in recovery, because other backends extend the relation without
 * telling us: here that only makes it too small, and a TID past it is
 * checked the slow way.  It can never be too large: the heap shrinks only
 * by truncation, which takes an AccessExclusiveLock that our RowExclusiveLock
 * excludes until our transaction ends, and which sends an invalidation that
 * makes every other backend close its smgr handle (and forget the size) when
 * it next takes a lock on the stream, as we did before the trigger ran.  A
 * new relfilenode (TRUNCATE, VACUUM FULL) is another handle altogether.
 */
static BlockNumber
el_known_blocks(Relation rel)
{
	BlockNumber known = RelationGetSmgr(rel)->smgr_cached_nblocks[MAIN_FORKNUM];

	return known == InvalidBlockNumber ? 0 : known;
}

/*
 * The row at `tid`, fetched with a dirty snapshot into *tuple, its buffer
 * pinned in *buf: false if no committed, live row is there (its inserter
 * aborted, retention removed it) or the relation no longer has the block.
 * A row whose inserter is still running was not numbered under the shard
 * lock; the caller's probe waits for it.
 */
static bool
el_fetch_live_row(Relation rel, ItemPointer tid, HeapTuple tuple, Buffer *buf)
{
	SnapshotData dirty;

	/* Retention and VACUUM may have removed the row and its page. */
	if (ItemPointerGetBlockNumber(tid) >= el_known_blocks(rel) &&
		ItemPointerGetBlockNumber(tid) >= RelationGetNumberOfBlocks(rel))
		return false;
	InitDirtySnapshot(dirty);
	tuple->t_self = *tid;
	if (!heap_fetch(rel, &dirty, tuple, buf, false))
		return false;
	if (TransactionIdIsValid(dirty.xmin))
	{
		ReleaseBuffer(*buf);
		return false;
	}
	return true;
}

/*
 * Whether the row that the last appender of a shard (key NULL) or of a key
 * left in shared memory is in the heap, live, and the one named: with the
 * entry's event_id, and the shard and seq, or the key and version (see
 * shard_end.c for why that makes it the shard's end, or the key's last
 * row).  For a shard, *ours: it is also the row the hint names, so nobody
 * else appended to the shard since our last append to it.
 */
static bool
el_shared_row(Relation rel, const ElShardEnd *shared, int32 shard, text *key,
			  const ElSeqHint *hint, bool *ours)
{
	TupleDesc	desc = RelationGetDescr(rel);
	HeapTupleData tuple;
	Buffer		buf;
	bool		isnull;
	bool		found;
	Datum		event_id;

	if (!el_fetch_live_row(rel, (ItemPointer) &shared->tid, &tuple, &buf))
		return false;
	event_id = heap_getattr(&tuple, Anum_el_event_id, desc, &isnull);
	if (key != NULL)
	{
		ElEndRow	row = {&shared->event_id, key, shared->seq};

		found = el_is_end_row(&row, event_id,
							  heap_getattr(&tuple, Anum_el_version, desc, &isnull),
							  heap_getattr(&tuple, Anum_el_key, desc, &isnull));
	}
	else
	{
		ElEndRow	mine = {&hint->event_id, hint->row_key, hint->row_version};

		found = DatumGetInt32(heap_getattr(&tuple, Anum_el_shard, desc, &isnull)) == shard &&
			DatumGetInt64(heap_getattr(&tuple, Anum_el_seq, desc, &isnull)) == shared->seq &&
			memcmp(DatumGetUUIDP(event_id), &shared->event_id, UUID_LEN) == 0;
		/* the version and key are read only when the seq is our own last */
		*ours = found && hint->last_seq == shared->seq &&
			el_is_end_row(&mine, event_id,
						  heap_getattr(&tuple, Anum_el_version, desc, &isnull),
						  heap_getattr(&tuple, Anum_el_key, desc, &isnull));
	}
	ReleaseBuffer(buf);
	return found;
}

/*
 * The key's current version (0 if it has no events); under the shard lock,
 * after el_last_seq() has looked at the end of the key's shard.
 */
/* Whether a cached version may be used (see ElVersion): assigned, same generation. */
static bool
el_version_current(const ElVersion *entry, const ElSeqHint *hint)
{
	return entry->version >= 0 && entry->generation == hint->generation;
}

static int64
el_last_version(Relation rel, Oid indexoid, text *key, const ElSeqHint *hint,
				ElVersion *entry)
{
	ElShardEnd	shared;
	bool		have_shared = false;

	/*
	 * Our first row of the key in this transaction: its last appender may
	 * have left the key's last row in shared memory, which is taken, and
	 * cleared, either way (shard_end.c).
	 */
	if (entry->cleared != MyProc->lxid)
	{
		have_shared = el_key_end_take(rel, key, &shared);
		entry->cleared = MyProc->lxid;
	}
	if (el_version_current(entry, hint))
		return entry->version;
	if (have_shared && el_shared_row(rel, &shared, -1, key, NULL, NULL))
		return shared.seq;

	/*
	 * Others appended to the shard since, but a version we assigned stays
	 * assigned unless our row vanished, which the probe notices.
	 */
	return el_probe_version(rel, indexoid, key, Max(entry->version, 0));
}

/*
 * The shard's last seq (0 if empty); the caller holds the shard lock.  The
 * scan runs backward from the shard's end, so only the last row is fetched
 * from the heap however many rows others appended since the hint.  With a
 * hint it is bounded below by the hinted seq: the B-tree reads a leaf
 * page's matching entries at once, and unbounded that would be every entry
 * of the shard on the last page.
 */
static int64
el_last_seq(Relation rel, Oid pk, int32 shard, ElSeqHint *hint)
{
	ScanKeyData skeys[2];
	int64		last = -1;
	bool		hinted_row = false;
	ElEndRow	end = {&hint->event_id, hint->row_key, hint->row_version};

	/*
	 * Our transaction numbered the hinted row and holds the shard lock
	 * since: if the row is in the heap, it is the shard's end.
	 */
	if (el_hinted_row_in_heap(rel, shard, hint, NULL))
		return hint->last_seq;

	/*
	 * Our first row of this transaction in the shard: the shard's last
	 * appender may have left its end in shared memory (shard_end.c), which
	 * is taken, and cleared, either way.
	 */
	if (hint->lxid != MyProc->lxid)
	{
		ElShardEnd	shared;
		bool		ours;

		if (el_shard_end_take(rel, shard, &shared) &&
			el_shared_row(rel, &shared, shard, NULL, hint, &ours))
		{
			if (!ours)
				hint->generation++;
			return shared.seq;
		}
	}

	ScanKeyInit(&skeys[0], 1, BTEqualStrategyNumber, F_INT4EQ,
				Int32GetDatum(shard));
	if (hint->last_seq > 0)
	{
		ScanKeyInit(&skeys[1], 2, BTGreaterEqualStrategyNumber, F_INT8GE,
					Int64GetDatum(hint->last_seq));
		last = el_index_last(rel, pk, skeys, 2, Anum_el_seq,
							 &end, &hinted_row);
	}

	/*
	 * Unless the hinted row is still the shard's end, somebody else appended
	 * (or our row vanished): the versions we know of this shard's keys may
	 * be stale.  The last row must be ours (same event_id, key and version):
	 * a row of ours skipped by ON CONFLICT DO NOTHING leaves its seq, and its
	 * event_id, free for the next appender, whose row would otherwise pass
	 * for ours.
	 */
	if (hint->last_seq == 0 || last != hint->last_seq || !hinted_row)
		hint->generation++;
	if (last < 0)
	{
		/* A row this transaction numbered vanished: forget what we know. */
		if (hint->lxid == MyProc->lxid)
			el_forget_positions();
		last = el_index_last(rel, pk, skeys, 1, Anum_el_seq,
							 NULL, NULL);
	}

	/*
	 * A shard that retention emptied goes on after its last removed event:
	 * seq is never renumbered.  The watermark is read after the probe, with
	 * the latest snapshot: a removal that committed before it is seen.
	 */
	if (last <= 0 && el_stream_has_watermarks(RelationGetRelid(rel)))
		last = el_low_watermark(RelationGetRelid(rel), shard, GetLatestSnapshot()) - 1;
	return Max(last, 0);
}

/* Forget every seq hint and cached version (see el_version_cache()). */
static void
el_forget_positions(void)
{
	HASH_SEQ_STATUS status;
	ElSeqHint  *hint;

	if (el_versions != NULL)
	{
		MemoryContextReset(el_version_cxt);
		el_versions = NULL;
	}
	if (el_seq_hints != NULL)
	{
		hash_seq_init(&status, el_seq_hints);
		while ((hint = hash_seq_search(&status)) != NULL)
		{
			hint->lxid = InvalidLocalTransactionId;
			hint->last_seq = 0;
		}
	}
	el_ntouched = 0;
}

/* Remember the seq just assigned, for the next append of this transaction. */
static void
el_remember_seq(ElSeqHint *hint, int64 seq, const pg_uuid_t *event_id,
				text *key, int64 version)
{
	Size		len = VARSIZE_ANY_EXHDR(key);

	if (hint->row_key == NULL || hint->row_key_space < len)
	{
		if (hint->row_key != NULL)
			pfree(hint->row_key);
		hint->row_key_space = Max(len, 32);
		hint->row_key = MemoryContextAlloc(TopMemoryContext,
										   hint->row_key_space + VARHDRSZ);
	}
	SET_VARSIZE(hint->row_key, len + VARHDRSZ);
	memcpy(VARDATA(hint->row_key), VARDATA_ANY(key), len);
	hint->row_version = version;
	if (hint->lxid != MyProc->lxid && el_ntouched < EL_MAX_TOUCHED)
		el_touched[el_ntouched++] = hint;
	hint->lxid = MyProc->lxid;
	hint->last_seq = seq;
	memcpy(&hint->event_id, event_id, UUID_LEN);
}

/*
 * At pre-commit, under the shard locks: leave in shared memory where this
 * transaction's last row of each shard of a plain stream is, for the next
 * appender (shard_end.c).  Only a row found in the heap, as the next append
 * of this transaction would have to find it to skip its probe; the entry of
 * a shard whose row is not found (skipped, or pushed off the page this
 * backend inserted into last by later rows) stays clear.
 */
static void
el_publish_shard_ends(void)
{
	int			n = el_shard_end_active() ? el_ntouched : 0;

	for (int i = 0; i < n; i++)
	{
		ElSeqHint  *hint = el_touched[i];
		Relation	rel;
		ElShardEnd	end;

		if (hint->lxid != MyProc->lxid || hint->last_seq <= 0 ||
			OidIsValid(hint->segment))
			continue;
		rel = try_relation_open(hint->key.relid, NoLock);
		if (rel == NULL)
			continue;			/* dropped by this transaction */
		if (el_hinted_row_in_heap(rel, hint->key.shard, hint, &end.tid))
		{
			memcpy(&end.event_id, &hint->event_id, UUID_LEN);
			end.seq = hint->last_seq;
			el_shard_end_publish(rel, hint->key.shard, &end);
			/* the same row is its key's last too */
			end.seq = hint->row_version;
			el_key_end_publish(rel, hint->row_key, &end);
		}
		relation_close(rel, NoLock);
	}
	el_ntouched = 0;
}

/*
 * Look up an event by event_id.  If another transaction is still inserting
 * it, wait for that transaction and look again, as a unique index would.
 */
static bool
el_find_event(Relation rel, Oid indexoid, pg_uuid_t *event_id,
			  int32 *shard, int64 *seq, int64 *version, text **key)
{
	Relation	index = index_open(indexoid, AccessShareLock);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	bool		found = false;

	for (;;)
	{
		SnapshotData dirty;
		ScanKeyData skey;
		IndexScanDesc scan;
		TransactionId wait_xid = InvalidTransactionId;
		ItemPointerData wait_tid;

		InitDirtySnapshot(dirty);
		ScanKeyInit(&skey, 1, BTEqualStrategyNumber, F_UUID_EQ,
					UUIDPGetDatum(event_id));
		scan = index_beginscan(rel, index, &dirty, 1, 0);
		index_rescan(scan, &skey, 1, NULL, 0);
		if (index_getnext_slot(scan, ForwardScanDirection, slot))
		{
			if (TransactionIdIsValid(dirty.xmin))
			{
				wait_xid = dirty.xmin;
				wait_tid = slot->tts_tid;
			}
			else
			{
				bool		isnull;

				found = true;
				*shard = DatumGetInt32(slot_getattr(slot, Anum_el_shard, &isnull));
				*seq = DatumGetInt64(slot_getattr(slot, Anum_el_seq, &isnull));
				*version = DatumGetInt64(slot_getattr(slot, Anum_el_version, &isnull));
				if (key)
					*key = DatumGetTextPCopy(slot_getattr(slot, Anum_el_key, &isnull));
			}
		}
		index_endscan(scan);
		if (!TransactionIdIsValid(wait_xid))
			break;
		XactLockTableWait(wait_xid, rel, &wait_tid, XLTW_InsertIndex);
	}
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, AccessShareLock);
	return found;
}

/*
 * A repeated event_id is idempotent only for the same key; under another
 * key it is a client bug, not a retry.
 */
void
el_check_same_key(pg_uuid_t *event_id, text *old_key, text *key)
{
	if (VARSIZE_ANY_EXHDR(old_key) != VARSIZE_ANY_EXHDR(key) ||
		memcmp(VARDATA_ANY(old_key), VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key)) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg("event_id %s is already used by an event with another key",
						DatumGetCString(DirectFunctionCall1(uuid_out,
															UUIDPGetDatum(event_id)))),
				 errdetail("Appending the same event_id again is idempotent only for the same key.")));
}
/*
 * Positions in a segmented stream (segment.c), under the shard lock.  The
 * row must go to the newest segment: a segment holds a prefix of every
 * shard, and retention may be about to drop an older one.  The relcache's
 * list of segments is brought up to date first (a roll may have committed
 * while we waited for the lock); each segment's indexes are probed newest
 * first, without the hints a plain stream keeps.
 */
static void
el_segment_check_row(Relation stream, Relation seg, ElSegments *segs, int32 segment)
{
	if (segs->n == 0 || segment != segs->numbers[segs->n - 1])
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not append to event stream \"%s\": segment %d is no longer its newest",
						el_qualified_name(RelationGetRelid(stream)), segment),
				 errdetail("A new segment was started while the event was being appended."),
				 errhint("Retry the transaction; do not give the column \"" EL_SEGMENT_COLUMN "\" a value.")));
}

static int64
el_segment_last(Relation stream, ElSegments *segs, int32 shard, text *key)
{
	int64		last = -1;

	for (int i = segs->n - 1; i >= 0 && last < 0; i--)
	{
		Relation	seg = table_open(segs->relids[i], AccessShareLock);
		const ElStreamIndexes *idx = el_stream_indexes(seg);
		ScanKeyData skey;

		if (key == NULL)
		{
			ScanKeyInit(&skey, 1, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(shard));
			last = el_index_last(seg, idx->pk, &skey, 1, Anum_el_seq,
								 NULL, NULL);
		}
		else
		{
			ScanKeyEntryInitialize(&skey, 0, 1, BTEqualStrategyNumber, InvalidOid,
								   DEFAULT_COLLATION_OID, F_TEXTEQ, PointerGetDatum(key));
			last = el_index_last(seg, idx->key_version, &skey, 1, Anum_el_version,
								 NULL, NULL);
		}
		table_close(seg, AccessShareLock);
	}
	if (last <= 0 && el_stream_has_watermarks(RelationGetRelid(stream)))
		last = key == NULL ?
			el_low_watermark(RelationGetRelid(stream), shard, GetLatestSnapshot()) - 1 :
			el_retired_version(RelationGetRelid(stream), key);
	return Max(last, 0);
}

static bool
el_segment_find_event(ElSegments *segs, pg_uuid_t *event_id, int32 *shard,
					  int64 *seq, int64 *version, text **old_key)
{
	for (int i = segs->n - 1; i >= 0; i--)
	{
		Relation	seg = table_open(segs->relids[i], AccessShareLock);
		bool		found = el_find_event(seg, el_stream_indexes(seg)->event_id,
										  event_id, shard, seq, version, old_key);

		table_close(seg, AccessShareLock);
		if (found)
			return true;
	}
	return false;
}

static int
el_trigger_shards(Trigger *trigger, Relation rel)
{
	int			shards = -1;

	if (trigger->tgnargs == 1)
		shards = pg_strtoint32(trigger->tgargs[0]);
	if (shards < 1 || shards > EL_MAX_SHARDS)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("trigger \"%s\" on \"%s\" has a bad shard count",
						trigger->tgname, RelationGetRelationName(rel))));
	return shards;
}

/*
 * Whether the row trigger fires on a segment that a restore has not
 * finished, for a row that carries its positions: then the row goes in as
 * it is.  pg_restore -j may create the stream's row trigger, which
 * PostgreSQL clones onto every segment, before it has loaded every
 * segment's rows: a trigger on a partitioned table waits for no table's
 * data (a plain stream's trigger waits for the stream's).  A segment with
 * no index at all is one a restore is still making (pg_dump puts every
 * index after the data): create_stream() and every roll create a segment
 * with its indexes, and the guards keep them, so nobody else can make
 * one (el_segment_unfinished() also wants it in our schema, where nobody
 * else creates tables: a partition of a table of anybody's own, with
 * this trigger, is refused as before).  The rows are checked when the
 * unique indexes come, as a restored plain stream's are.
 * (event_log.project() skips such rows for the same reason: the
 * projection's own rows are restored too.)
 */
static bool
el_restoring_segment(TriggerData *trigdata)
{
	Relation	rel = trigdata->tg_relation;
	TupleTableSlot *slot = trigdata->tg_trigslot;
	static const int complete[] = {Anum_el_shard, Anum_el_seq, Anum_el_key, Anum_el_version,
	Anum_el_event_id, Anum_el_recorded_at};

	if (!el_segment_unfinished(rel) ||
		!el_has_event_columns(RelationGetDescr(rel)))
		return false;
	slot_getsomeattrs(slot, EL_NATTS);
	for (int i = 0; i < (int) lengthof(complete); i++)
		if (slot->tts_isnull[complete[i] - 1])
			return false;
	return true;
}

/*
 * For el_schema_check_event(): whether a row the schema refuses carries
 * the event_id of an event already in the stream, looked up as the append
 * would (waiting for an insert in progress).  Such a row is a retry, and is
 * skipped as one would be that passed; under another key it is the error
 * (23505) a passing one gets.  Without the shard lock: a concurrent
 * appender of the same event_id that starts after the look-up finds ours
 * refused or diverted, as if it had come second.
 */
typedef struct ElKnownArg
{
	Relation	rel;			/* the stream */
	text	   *key;
	pg_uuid_t  *event_id;
} ElKnownArg;

static bool
el_known_event(void *arg)
{
	ElKnownArg *k = (ElKnownArg *) arg;
	ElAppended	existing;

	return el_append_existing(k->rel, k->key, k->event_id, &existing);
}

/*
 * event_log.assign_position(): BEFORE INSERT FOR EACH ROW on every stream.
 */
Datum
el_assign_position(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleTableSlot *slot;
	Datum	   *values;
	bool	   *isnull;
	int			shards;
	text	   *key;
	int32		shard;
	int64		seq;
	int64		version;
	pg_uuid_t  *event_id;
	bool		own_append = false;
	const ElStreamIndexes *idx;
	int			cols[7] = {Anum_el_shard, Anum_el_seq, Anum_el_version,
	Anum_el_event_id, Anum_el_recorded_at, Anum_el_metadata, Anum_el_payload};
	Datum		newvals[7];
	bool		newnulls[7] = {0};
	int			ncols = 5;
	Relation	seg = NULL;		/* the segment, on a segmented stream */
	ElSegments *segs = NULL;
	ElSeqHint  *hint = NULL;
	ElVersion  *ventry = NULL;
	ElKnownArg	known;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("event_log.assign_position() must run as a BEFORE INSERT row trigger")));

	rel = trigdata->tg_relation;

	if (el_restoring_segment(trigdata))
		return PointerGetDatum(trigdata->tg_trigtuple);

	/* On a segmented stream the trigger fires on the segment. */
	if (rel->rd_rel->relispartition)
	{
		Oid			parent = el_segment_stream(RelationGetRelid(rel));

		if (OidIsValid(parent))
		{
			seg = rel;
			rel = relation_open(parent, NoLock);
		}
	}

	/*
	 * Only on a registered stream, laid out as one: anybody may put this
	 * trigger on a table of its own (a temporary one, say), and the code
	 * below reads the row's fields as the contract's types.
	 */
	if (el_has_event_columns(RelationGetDescr(rel)) &&
		el_stream_shards(RelationGetRelid(rel)) < 1 &&
		strcmp(trigdata->tg_trigger->tgname, EL_APPEND_TRIGGER) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("\"%s\" is not a registered event stream",
						RelationGetRelationName(rel)),
				 errdetail("The table has a stream's columns and trigger, but event_log.streams has no row for it, as after restoring a dump that left out the event_log schema (pg_dump -n or -t)."),
				 errhint("Restore a dump of the whole database, which carries the registry (docs/operations.md).")));
	if (!el_has_event_columns(RelationGetDescr(rel)) ||
		el_stream_shards(RelationGetRelid(rel)) < 1)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("\"%s\" is not an event stream",
						RelationGetRelationName(rel)),
				 errhint("event_log.assign_position() runs only as the trigger event_log.create_stream() puts on a stream.")));
	shards = el_trigger_shards(trigdata->tg_trigger, rel);

	slot = trigdata->tg_trigslot;
	slot_getsomeattrs(slot, seg ? Anum_el_segment : EL_NATTS);
	values = slot->tts_values;
	isnull = slot->tts_isnull;

	/*
	 * A logical replication subscriber's apply worker runs with
	 * session_replication_role = replica as a superuser and brings complete
	 * rows from the publisher's stream: keep their positions.  The role can be
	 * granted to others (GRANT SET ON PARAMETER), so it is not enough alone.
	 */
	if (SessionReplicationRole == SESSION_REPLICATION_ROLE_REPLICA &&
		!isnull[Anum_el_shard - 1] && !isnull[Anum_el_seq - 1] &&
		!isnull[Anum_el_version - 1] && !isnull[Anum_el_event_id - 1] &&
		!isnull[Anum_el_recorded_at - 1] && !isnull[Anum_el_key - 1] &&
		superuser())
	{
		key = DatumGetTextPP(values[Anum_el_key - 1]);
		if (DatumGetInt32(values[Anum_el_shard - 1]) !=
			el_shard_for_key(VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key), shards))
			ereport(ERROR,
					(errcode(ERRCODE_CHECK_VIOLATION),
					 errmsg("replicated event for key \"%s\" is in the wrong shard of \"%s\"",
							text_to_cstring(key), el_qualified_name(RelationGetRelid(rel))),
					 errdetail("The publisher's stream has another shard count than this one.")));
		/* Keep replicated appends in commit order against local ones too. */
		el_lock_shard(RelationGetRelid(rel), DatumGetInt32(values[Anum_el_shard - 1]),
					  el_stream_grouped(RelationGetRelid(rel)));
		el_forget_positions();
		if (seg == NULL)
		{
			el_shard_end_forget(rel, DatumGetInt32(values[Anum_el_shard - 1]));
			el_key_end_forget(rel, key);
		}
		el_note_append(RelationGetRelid(rel));
		if (seg != NULL)
			relation_close(rel, NoLock);
		return PointerGetDatum(trigdata->tg_trigtuple);
	}

	/* Values the extension assigns may not come from the user. */
	if (!isnull[Anum_el_shard - 1])
		el_refuse_supplied(rel, Anum_el_shard);
	if (!isnull[Anum_el_seq - 1])
		el_refuse_supplied(rel, Anum_el_seq);
	if (!isnull[Anum_el_version - 1])
		el_refuse_supplied(rel, Anum_el_version);
	if (!isnull[Anum_el_recorded_at - 1])
		el_refuse_supplied(rel, Anum_el_recorded_at);

	if (isnull[Anum_el_key - 1])
		el_refuse_null(rel, Anum_el_key);
	if (isnull[Anum_el_type - 1])
		el_refuse_null(rel, Anum_el_type);
	if (isnull[Anum_el_payload - 1])
		el_refuse_null(rel, Anum_el_payload);
	key = DatumGetTextPP(values[Anum_el_key - 1]);
	el_check_key(key);
	el_check_type(DatumGetTextPP(values[Anum_el_type - 1]));
	el_check_document(values[Anum_el_payload - 1], "payload");
	newvals[5] = values[Anum_el_metadata - 1];
	newnulls[5] = isnull[Anum_el_metadata - 1];
	if (el_add_session_ids(&newvals[5], &newnulls[5]))
		ncols = 6;
	known.rel = rel;
	known.key = key;
	known.event_id = isnull[Anum_el_event_id - 1] ? NULL :
		DatumGetUUIDP(values[Anum_el_event_id - 1]);
	switch (el_schema_check_event(rel, values, isnull, &newvals[5], &newnulls[5],
								  !el_pending.active,
								  known.event_id != NULL && !el_pending.active ? el_known_event : NULL,
								  &known))
	{
		case EL_SCHEMA_KNOWN:
		case EL_SCHEMA_DIVERTED:
			if (seg != NULL)
				relation_close(rel, NoLock);
			return PointerGetDatum(NULL);
		case EL_SCHEMA_RECORDED:
			ncols = 6;
			break;
		case EL_SCHEMA_PASSED:
			break;
	}
	if (!newnulls[5])
		el_check_document(newvals[5], "metadata");
	/* personal fields, encrypted as the schema check has seen them plain */
	newvals[6] = values[Anum_el_payload - 1];
	if (el_personal_protect(rel, values[Anum_el_type - 1], &newvals[6]))
		ncols = 7;

	idx = seg ? NULL : el_stream_indexes(rel);

	/*
	 * What needs no lock is done before the shard lock: its holders run one
	 * at a time, so their every microsecond counts once per append.
	 */
	if (isnull[Anum_el_event_id - 1])
		event_id = el_new_uuid();
	else
		event_id = DatumGetUUIDP(values[Anum_el_event_id - 1]);
	shard = el_shard_for_key(VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key), shards);
	el_lock_shard(RelationGetRelid(rel), shard,
				  el_stream_grouped(RelationGetRelid(rel)));
	el_note_append(RelationGetRelid(rel));

	if (seg != NULL)
	{
		AcceptInvalidationMessages();
		segs = el_segments(rel);
		el_segment_check_row(rel, seg, segs, DatumGetInt32(values[Anum_el_segment - 1]));
	}

	if (!isnull[Anum_el_event_id - 1])
	{
		int32		old_shard;
		int64		old_seq,
					old_version;
		text	   *old_key;

		own_append = el_pending.active &&
			memcmp(event_id, &el_pending.event_id, UUID_LEN) == 0;

		/*
		 * An event_id that is already there makes the append idempotent: the
		 * row is skipped (append() reports the existing position).
		 */
		if (!own_append &&
			(seg != NULL ? el_segment_find_event(segs, event_id, &old_shard, &old_seq,
												 &old_version, &old_key) :
			 el_find_event(rel, idx->event_id, event_id,
						   &old_shard, &old_seq, &old_version, &old_key)))
		{
			el_check_same_key(event_id, old_key, key);
			if (seg != NULL)
				relation_close(rel, NoLock);
			return PointerGetDatum(NULL);
		}
	}

	/* Under the shard lock, the last seq and version cannot move. */
	if (seg != NULL)
	{
		/*
		 * The segments are probed without bounds, so only the shortcut
		 * within a transaction applies: the hinted row, found where this
		 * backend last inserted into the same segment, is the shard's end.
		 * Anything else is probed, and the shard's cached versions, which
		 * only this transaction's rows since then make valid, go stale.
		 */
		hint = el_seq_hint(RelationGetRelid(rel), shard);
		/* (a segment has the stream's columns at the same numbers) */
		if (hint->segment == RelationGetRelid(seg) &&
			el_hinted_row_in_heap(seg, shard, hint, NULL))
			seq = hint->last_seq + 1;
		else
		{
			seq = el_segment_last(rel, segs, shard, NULL) + 1;
			hint->generation++;
		}
		ventry = el_version_entry(RelationGetRelid(rel), key, true);
		if (el_version_current(ventry, hint))
			version = ventry->version + 1;
		else
			version = el_segment_last(rel, segs, shard, key) + 1;
	}
	else
	{
		hint = el_seq_hint(RelationGetRelid(rel), shard);
		seq = el_last_seq(rel, idx->pk, shard, hint) + 1;
		/* after el_last_seq(), which may empty the version cache */
		ventry = el_version_entry(RelationGetRelid(rel), key, true);
		version = el_last_version(rel, idx->key_version, key, hint, ventry) + 1;
	}

	newvals[0] = Int32GetDatum(shard);
	newvals[1] = Int64GetDatum(seq);
	newvals[2] = Int64GetDatum(version);
	newvals[3] = UUIDPGetDatum(event_id);
	newvals[4] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());

	el_remember_seq(hint, seq, event_id, key, version);
	hint->segment = seg != NULL ? RelationGetRelid(seg) : InvalidOid;
	ventry->version = version;
	ventry->generation = hint->generation;

	if (own_append)
	{
		el_pending.active = false;
		el_pending.shard = shard;
		el_pending.seq = seq;
		el_pending.version = version;
	}

	if (seg != NULL)
		relation_close(rel, NoLock);
	return PointerGetDatum(heap_modify_tuple_by_cols(trigdata->tg_trigtuple,
													 RelationGetDescr(seg ? seg : rel),
													 ncols, cols, newvals, newnulls));
}

/*
 * The steps of an append, shared by append() and append_events(): the
 * stream check, then under the stream and shard locks the event_id lookup,
 * the expected-version check and the insert (append() without event_id or
 * expected_version leaves the shard lock to the trigger).
 */

/* Refuse a relation that is not a stream, or a caller without INSERT. */
int
el_append_check_stream(Oid relid)
{
	int			shards = el_require_stream(relid);
	AclResult	aclresult = pg_class_aclcheck(relid, GetUserId(), ACL_INSERT);

	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_TABLE, get_rel_name(relid));
	return shards;
}

/* Refuse a negative expected_version. */
void
el_check_expected_version(int64 expected)
{
	if (expected < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("expected_version must not be negative"),
				 errhint("Use 0 for \"the key has no events yet\" and NULL for \"any version\".")));
}

/*
 * Lock the stream as INSERT would (a concurrent drop_stream() is reported
 * as 42P01), refuse it if its triggers are missing, and open it; the
 * caller closes it with NoLock.
 */
Relation
el_append_open(Oid relid, int *shards)
{
	*shards = el_lock_stream(relid, RowExclusiveLock);
	el_require_stream_guards(relid);
	return table_open(relid, NoLock);
}

/* Take the key's shard lock for the rest of the transaction. */
int32
el_append_lock_key(Relation rel, int shards, text *key)
{
	int32		shard = el_shard_for_key(VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key),
										 shards);

	el_lock_shard(RelationGetRelid(rel), shard,
				  el_stream_grouped(RelationGetRelid(rel)));
	return shard;
}

/* Take a shard's lock for the rest of the transaction. */
void
el_append_lock_shard(Relation rel, int32 shard)
{
	el_lock_shard(RelationGetRelid(rel), shard,
				  el_stream_grouped(RelationGetRelid(rel)));
}

/*
 * Under the key's shard lock: whether the stream already has an event with
 * this event_id.  If it has, for the same key, *out gets its position (and
 * duplicate = true); for another key it is an error (23505).
 */
bool
el_append_existing(Relation rel, text *key, pg_uuid_t *event_id, ElAppended *out)
{
	text	   *old_key;
	bool		found;

	if (el_is_segmented(rel))
		found = el_segment_find_event(el_segments(rel), event_id, &out->shard,
									  &out->seq, &out->version, &old_key);
	else
		found = el_find_event(rel, el_stream_indexes(rel)->event_id, event_id,
							  &out->shard, &out->seq, &out->version, &old_key);
	if (!found)
		return false;
	el_check_same_key(event_id, old_key, key);
	memcpy(&out->event_id, event_id, UUID_LEN);
	out->duplicate = true;
	return true;
}

/*
 * Under the key's shard lock the key's version cannot move until we insert.
 * It is read from the index, not the version cache: a row skipped by ON
 * CONFLICT earlier in this transaction is only noticed by the next append
 * to the shard, which is the one we are about to make.
 */
void
el_append_expect(Relation rel, text *key, int64 expected)
{
	int64		current = el_is_segmented(rel) ?
		el_segment_last(rel, el_segments(rel), 0, key) :
		el_probe_version(rel, el_stream_indexes(rel)->key_version, key, 0);

	if (current != expected)
		ereport(ERROR,
				(errcode(ERRCODE_EL_VERSION_CONFLICT),
				 errmsg("version conflict on key \"%s\" of event stream \"%s\"",
						text_to_cstring(key), el_qualified_name(RelationGetRelid(rel))),
				 errdetail("Expected version " INT64_FORMAT ", but the current version is " INT64_FORMAT ".",
						   expected, current),
				 errhint("Reload the entity's events and retry the command.")));
}

/*
 * Insert one new event through the executor, so constraints, indexes and
 * triggers run; the append trigger takes the key's shard lock if the caller
 * has not and assigns the event's position, which *out gets.  The caller
 * has looked up event_id, or made it up.
 */
void
el_append_insert(Oid relid, text *key, Datum type, Datum payload,
				 Datum metadata, bool metadata_null, pg_uuid_t *event_id,
				 ElAppended *out)
{
	Datum		args[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	int			rc;
	ElPending	outer = el_pending;
	ElPending	mine;

	args[0] = PointerGetDatum(key);
	args[1] = type;
	args[2] = payload;
	args[3] = metadata_null ? (Datum) 0 : metadata;
	if (metadata_null)
		nulls[3] = 'n';
	args[4] = UUIDPGetDatum(event_id);

	SPI_connect();
	memset(&el_pending, 0, sizeof(el_pending));
	memcpy(&el_pending.event_id, event_id, UUID_LEN);
	el_pending.active = true;
	PG_TRY();
	{
		rc = SPI_execute_plan(el_stream_plan(relid, EL_PLAN_INSERT), args,
							  nulls, false, 0);
		mine = el_pending;
	}
	PG_FINALLY();
	{
		el_pending = outer;
	}
	PG_END_TRY();
	if (rc != SPI_OK_INSERT || SPI_processed != 1 || mine.seq == 0)
		elog(ERROR, "append to \"%s\" inserted no row", get_rel_name(relid));
	SPI_finish();

	out->shard = mine.shard;
	out->seq = mine.seq;
	out->version = mine.version;
	memcpy(&out->event_id, event_id, UUID_LEN);
	out->duplicate = false;
}

/*
 * The row type append() returns, (shard, seq, version), built once per
 * backend.  get_call_result_type() builds it anew from the function's OUT
 * parameters in pg_proc on every call, and the executor gives each execution
 * of a statement a new FmgrInfo, so fn_extra would not outlive one statement:
 * that was about 2% of a single-event append (docs/design/append_cost.md).
 * It is kept for the function's OID and forgotten on any invalidation of
 * pg_proc, so a function redefined by an extension update (a new OID, or a
 * changed row for the same one) is looked up again.  The caller takes it
 * only after its insert, so that no nested append() (from a trigger) can
 * replace it while the caller holds it.
 */
static Oid	el_result_fn = InvalidOid;
static uint32 el_result_fn_hash = 0;
static TupleDesc el_result_desc = NULL;

static void
el_result_desc_forget(Datum arg, int cacheid, uint32 hashvalue)
{
	if (hashvalue == 0 || hashvalue == el_result_fn_hash)
		el_result_fn = InvalidOid;
}

static TupleDesc
el_append_result_desc(FunctionCallInfo fcinfo)
{
	static bool registered = false;
	TupleDesc	tupdesc;
	MemoryContext old;

	if (OidIsValid(el_result_fn) && el_result_fn == fcinfo->flinfo->fn_oid)
		return el_result_desc;
	if (!registered)
	{
		CacheRegisterSyscacheCallback(PROCOID, el_result_desc_forget, (Datum) 0);
		registered = true;
	}
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE ||
		tupdesc->natts != 3 ||
		TupleDescAttr(tupdesc, 0)->atttypid != INT4OID ||
		TupleDescAttr(tupdesc, 1)->atttypid != INT8OID ||
		TupleDescAttr(tupdesc, 2)->atttypid != INT8OID)
		elog(ERROR, "return type must be a row type of (integer, bigint, bigint)");
	old = MemoryContextSwitchTo(CacheMemoryContext);
	tupdesc = BlessTupleDesc(CreateTupleDescCopy(tupdesc));
	MemoryContextSwitchTo(old);
	if (el_result_desc != NULL)
		FreeTupleDesc(el_result_desc);
	el_result_desc = tupdesc;
	el_result_fn = fcinfo->flinfo->fn_oid;
	el_result_fn_hash = GetSysCacheHashValue1(PROCOID,
											  ObjectIdGetDatum(el_result_fn));
	return tupdesc;
}

/*
 * event_log.append(stream, key, type, payload, metadata, expected_version,
 *					event_id) RETURNS (shard, seq, version)
 */
Datum
el_append(PG_FUNCTION_ARGS)
{
	Oid			relid;
	int			shards;
	text	   *key;
	pg_uuid_t  *event_id;
	Relation	rel;
	TupleDesc	tupdesc;
	ElAppended	done;
	Datum		result[3];
	bool		result_null[3] = {0};

	el_require_arg(fcinfo, 0, "stream");
	el_require_arg(fcinfo, 1, "key");
	el_require_arg(fcinfo, 2, "type");
	el_require_arg(fcinfo, 3, "payload");
	relid = PG_GETARG_OID(0);
	key = PG_GETARG_TEXT_PP(1);
	if (!PG_ARGISNULL(5))
		el_check_expected_version(PG_GETARG_INT64(5));

	(void) el_append_check_stream(relid);
	el_check_key(key);
	el_check_type(PG_GETARG_TEXT_PP(2));
	el_check_document(PG_GETARG_DATUM(3), "payload");
	if (!PG_ARGISNULL(4))
		el_check_document(PG_GETARG_DATUM(4), "metadata");

	rel = el_append_open(relid, &shards);
	event_id = PG_ARGISNULL(6) ? NULL : PG_GETARG_UUID_P(6);

	/*
	 * The event_id look-up and the expected-version check need the shard
	 * lock before the insert: no other transaction may add the event or a
	 * version of the key in between.  Without either, the append trigger
	 * takes the lock when it numbers the row, as for a plain INSERT, so the
	 * lock is not held across the set-up of the INSERT that SPI runs: other
	 * appenders to the shard wait that much less (docs/design/offsets.md).
	 * Except on a stream with personal fields: the trigger creates a data
	 * subject's key before it takes the lock, and an appender that holds
	 * the lock and appends for the same subject would wait for that key
	 * while we wait for the lock.  Taken first, we wait before creating it.
	 */
	if (event_id != NULL || !PG_ARGISNULL(5) || el_personal_declared(relid))
		(void) el_append_lock_key(rel, shards, key);

	if (event_id == NULL || !el_append_existing(rel, key, event_id, &done))
	{
		if (event_id == NULL)
			event_id = el_new_uuid();
		if (!PG_ARGISNULL(5))
			el_append_expect(rel, key, PG_GETARG_INT64(5));
		table_close(rel, NoLock);
		el_append_insert(relid, key, PG_GETARG_DATUM(2), PG_GETARG_DATUM(3),
						 PG_GETARG_DATUM(4), PG_ARGISNULL(4), event_id, &done);
	}
	else
		table_close(rel, NoLock);

	tupdesc = el_append_result_desc(fcinfo);
	result[0] = Int32GetDatum(done.shard);
	result[1] = Int64GetDatum(done.seq);
	result[2] = Int64GetDatum(done.version);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, result, result_null)));
}
