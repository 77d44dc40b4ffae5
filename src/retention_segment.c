/*
 * retention_segment.c
 *	  Retention of a segmented stream: whole segments leave, by DROP TABLE,
 *	  so the disk space comes back when the transaction commits.
 *
 *	  The policy is the same as for a plain stream (retention.c): an event
 *	  may go once it is older than max_age, more than max_events newer
 *	  events follow it in its shard, and, with keep_unconsumed, nothing the
 *	  stream's consumers still need is at or after it.  A segment goes only
 *	  when every one of its events may go, and only after every older
 *	  segment went: what leaves is still a prefix of every shard.  The
 *	  newest segment never goes; the worker starts a new one when it holds
 *	  segment_events events (segment.c), so a policy takes effect with the
 *	  granularity of a segment.
 *
 *	  The steps, in one transaction (a subtransaction of the worker's):
 *
 *	  1. Seal.  A segment older than the newest receives no new row: the
 *		 append trigger sends every row to the newest segment, and a new
 *		 segment is attached by a transaction that committed before (a
 *		 segment created in this transaction is not yet anybody's newest).
 *		 Transactions that appended to an old segment before the newest
 *		 was attached may still be running: wait for them (WaitForLockers
 *		 on the stream and on each candidate segment, which blocks nobody).
 *	  2. Walk each candidate segment by its (shard, seq) index: every event
 *		 must pass the policy and follow the shard's watermark without a
 *		 hole.  The first segment that fails stops the run.
 *	  3. Archive its events when the policy says so, retire the keys whose
 *		 every event leaves, move the watermarks and write the report.
 *	  4. Drop the segments, last, so that the ACCESS EXCLUSIVE lock DROP
 *		 TABLE takes on the stream is held only until the commit that
 *		 follows: each DROP waits for its lock at most
 *		 EL_SEGMENT_LOCK_TIMEOUT_MS and is retried, so an appender queues
 *		 behind it no longer than that.
 *
 *	  Readers: the watermarks and the DROP commit together.  A reader that
 *	  takes the stream's lock after the commit sees the new watermark in
 *	  its catalog snapshot; read.c also checks, for segmented streams, the
 *	  latest watermark, since a transaction snapshot taken before the DROP
 *	  no longer finds the dropped rows (DROP TABLE is not MVCC).
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "common/hashfn.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/datetime.h"

#include "archive.h"
#include "catalog.h"
#include "event_log.h"
#include "registry.h"
#include "retention.h"
#include "segment.h"

/* How long one DROP of a segment may wait for its lock, and how often. */
#define EL_SEGMENT_LOCK_TIMEOUT_MS	50
#define EL_SEGMENT_DROP_TRIES		40

/* What a segment holds of one shard. */
typedef struct ElSegShard
{
	int64		first;			/* 0 if none */
	int64		last;
	TimestampTz newest;			/* the latest recorded_at */
} ElSegShard;

/* A key's last version in the segment being removed. */
typedef struct ElSegKey
{
	char	   *key;			/* hash key: the key, NUL-terminated */
	int64		version;
} ElSegKey;

/* Keys are hashed by their text, kept as pointers (a key is up to 1 kB). */
static uint32
el_segkey_hash(const void *key, Size keysize)
{
	const char *str = *(char *const *) key;

	return hash_bytes((const unsigned char *) str, strlen(str));
}

static int
el_segkey_match(const void *key1, const void *key2, Size keysize)
{
	return strcmp(*(char *const *) key1, *(char *const *) key2);
}

/*
 * Walk one segment: true if every event may go, each shard's events
 * following next[shard] without a hole.  Fills span[] and the keys' last
 * versions; advances next[].
 */
static bool
el_walk_segment(Relation seg, Snapshot snap, int shards, const ElPolicy *p,
				const int64 *cut, int64 *next, ElSegShard *span, HTAB *keys)
{
	Relation	pk = index_open(el_stream_indexes(seg)->pk, AccessShareLock);
	TupleTableSlot *slot = table_slot_create(seg, NULL);
	bool		ok = true;

	for (int32 s = 0; s < shards && ok; s++)
	{
		ScanKeyData skey;
		IndexScanDesc scan;

		span[s].first = span[s].last = 0;
		span[s].newest = DT_NOBEGIN;
		ScanKeyInit(&skey, 1, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(s));
		scan = index_beginscan(seg, pk, snap, 1, 0);
		index_rescan(scan, &skey, 1, NULL, 0);
		while (index_getnext_slot(scan, ForwardScanDirection, slot))
		{
			bool		isnull;
			int64		seq = DatumGetInt64(slot_getattr(slot, Anum_el_seq, &isnull));
			char	   *key;
			ElSegKey   *entry;
			bool		found;
			int64		version;
			TimestampTz at;

			CHECK_FOR_INTERRUPTS();
			at = DatumGetTimestampTz(slot_getattr(slot, Anum_el_recorded_at, &isnull));
			if (seq != next[s] || seq > cut[s] || (p->has_age && at >= p->cutoff))
			{
				ok = false;
				break;
			}
			if (at > span[s].newest)
				span[s].newest = at;
			if (span[s].first == 0)
				span[s].first = seq;
			span[s].last = seq;
			next[s] = seq + 1;
			key = TextDatumGetCString(slot_getattr(slot, Anum_el_key, &isnull));
			version = DatumGetInt64(slot_getattr(slot, Anum_el_version, &isnull));
			entry = hash_search(keys, &key, HASH_ENTER, &found);
			if (!found)
				entry->version = version;
			else
			{
				pfree(key);
				entry->version = Max(entry->version, version);
			}
		}
		index_endscan(scan);
	}
	ExecDropSingleTupleTableSlot(slot);
	index_close(pk, AccessShareLock);
	return ok;
}

/*
 * The (key, version) indexes of the segments from..n-1, newest first, open
 * for el_key_in_segments() while a segment's keys are checked.
 */
typedef struct ElLaterSegments
{
	int			n;
	Relation   *rels;
	Relation   *kvs;
	TupleTableSlot **slots;
} ElLaterSegments;

static void
el_later_segments_open(ElLaterSegments *later, ElSegments *segs, int from)
{
	later->n = Max(segs->n - from, 0);
	later->rels = palloc(sizeof(Relation) * Max(later->n, 1));
	later->kvs = palloc(sizeof(Relation) * Max(later->n, 1));
	later->slots = palloc(sizeof(TupleTableSlot *) * Max(later->n, 1));
	for (int j = 0; j < later->n; j++)
	{
		later->rels[j] = table_open(segs->relids[segs->n - 1 - j], AccessShareLock);
		later->kvs[j] = index_open(el_stream_indexes(later->rels[j])->key_version,
								   AccessShareLock);
		later->slots[j] = table_slot_create(later->rels[j], NULL);
	}
}

static void
el_later_segments_close(ElLaterSegments *later)
{
	for (int j = 0; j < later->n; j++)
	{
		ExecDropSingleTupleTableSlot(later->slots[j]);
		index_close(later->kvs[j], AccessShareLock);
		table_close(later->rels[j], AccessShareLock);
	}
}

/* Whether a key has an event in one of the later segments (as snap sees it). */
static bool
el_key_in_segments(ElLaterSegments *later, Snapshot snap, const char *key)
{
	text	   *t = cstring_to_text(key);
	bool		found = false;

	for (int j = 0; j < later->n && !found; j++)
	{
		ScanKeyData skey;
		IndexScanDesc scan;

		ScanKeyEntryInitialize(&skey, 0, 1, BTEqualStrategyNumber, InvalidOid,
							   DEFAULT_COLLATION_OID, F_TEXTEQ, PointerGetDatum(t));
		scan = index_beginscan(later->rels[j], later->kvs[j], snap, 1, 0);
		index_rescan(scan, &skey, 1, NULL, 0);
		found = index_getnext_slot(scan, ForwardScanDirection, later->slots[j]);
		index_endscan(scan);
	}
	pfree(t);
	return found;
}

typedef struct ElDropCall
{
	Oid			stream;
	const Oid  *segments;
	int			n;
} ElDropCall;

static void
el_drop_call(void *arg)
{
	ElDropCall *call = (ElDropCall *) arg;
	int			nestlevel = NewGUCNestLevel();

	(void) set_config_option("lock_timeout", CppAsString2(EL_SEGMENT_LOCK_TIMEOUT_MS),
							 PGC_SUSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	el_segment_detach(call->stream, call->segments, call->n);
	AtEOXact_GUC(true, nestlevel);
}

/*
 * Detach segments, waiting for the lock at most EL_SEGMENT_LOCK_TIMEOUT_MS
 * a time, so that appenders never queue behind us for longer; retried.
 */
static void
el_drop_segments(Oid stream, const Oid *segments, int n)
{
	ElDropCall	call = {stream, segments, n};

	for (int attempt = 1;; attempt++)
	{
		ErrorData  *edata = el_try_subxact(el_drop_call, &call);

		if (edata == NULL)
			return;
		if (edata->sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE ||
			attempt >= EL_SEGMENT_DROP_TRIES)
			ReThrowError(edata);
		FreeErrorData(edata);
		CHECK_FOR_INTERRUPTS();
		pg_usleep(EL_SEGMENT_LOCK_TIMEOUT_MS * 1000L);
	}
}

/* Whether event_log.segments' row of a segment was written by this transaction. */
static bool
el_segment_is_ours(Oid segrelid)
{
	Datum		values[1] = {ObjectIdGetDatum(segrelid)};

	if (el_catalog_sql("SELECT xmin::pg_catalog.text::pg_catalog.int8 FROM event_log.segments"
					   " WHERE segment_table OPERATOR(pg_catalog.=) $1",
					   1, (Oid[]) {OIDOID}, values, NULL,
					   EL_CAT_READ | EL_CAT_LATEST, 1) != 1)
		return true;			/* not listed: leave it alone */
	return TransactionIdIsCurrentTransactionId((TransactionId) el_spi_int8(0, 1));
}

/*
 * Apply the policy p to a segmented stream (retention.c has locked it and
 * read p): remove the segments that may go, then start a new segment if the
 * newest is full.  An ElShardReport per shard appended to *report (if not
 * NULL).  Returns the events removed.  The caller is connected to SPI.
 */
int64
el_enforce_segmented(Oid relid, const ElPolicy *p, int shards, List **report)
{
	Relation	rel = relation_open(relid, AccessShareLock);
	ElSegments *segs = el_segments(rel);
	int64	   *cut = palloc(sizeof(int64) * shards);
	int64	   *next = palloc(sizeof(int64) * shards);
	int64	   *low = palloc(sizeof(int64) * shards);
	ElSegShard *span = palloc(sizeof(ElSegShard) * shards);
	int			ncand = 0;
	int			ngone = 0;
	int64		removed = 0;
	Snapshot	snap;
	NameData	who;

	namestrcpy(&who, GetUserNameFromId(GetUserId(), false));

	/*
	 * Segments an earlier enforcement detached are dropped first, and this
	 * enforcement does nothing else: dropping deletes their files at commit,
	 * and no lock on the stream must be held then (el_segment_detach()).
	 */
	if (el_segment_drop_detached(relid) > 0)
	{
		relation_close(rel, NoLock);
		if (report != NULL)
			for (int32 s = 0; s < shards; s++)
			{
				ElShardReport *r = palloc(sizeof(ElShardReport));

				r->shard = s;
				r->removed = 0;
				r->low = el_low_watermark(relid, s, GetLatestSnapshot());
				*report = lappend(*report, r);
			}
		return 0;
	}

	/* 1. Candidates: every segment but the newest, up to one of ours. */
	while (ncand < segs->n - 1 && !el_segment_is_ours(segs->relids[ncand + 1]))
		ncand++;
	if (ncand > 0)
	{
		List	   *tags = NIL;
		LOCKTAG    *tag = palloc(sizeof(LOCKTAG));

		SET_LOCKTAG_RELATION(*tag, MyDatabaseId, relid);
		tags = lappend(tags, tag);
		for (int i = 0; i < ncand; i++)
		{
			tag = palloc(sizeof(LOCKTAG));
			SET_LOCKTAG_RELATION(*tag, MyDatabaseId, segs->relids[i]);
			tags = lappend(tags, tag);
		}
		WaitForLockersMultiple(tags, ShareLock, false);
	}

	snap = RegisterSnapshot(GetLatestSnapshot());
	for (int32 s = 0; s < shards; s++)
	{
		low[s] = el_low_watermark(relid, s, snap);
		next[s] = low[s];
		cut[s] = PG_INT64_MAX;
		if (p->has_count)
			cut[s] = Max(0, el_stream_shard_end(rel, s, snap) - p->max_events);
		if (p->keep_unconsumed)
			cut[s] = Min(cut[s], el_consumed_through(relid, s));
	}

	/* 2 and 3, segment by segment, oldest first. */
	for (int i = 0; i < ncand; i++)
	{
		Relation	seg = table_open(segs->relids[i], AccessShareLock);
		int64	   *save = palloc(sizeof(int64) * shards);
		HASH_SEQ_STATUS status;
		ElSegKey   *entry;
		bool		ok;
		HASHCTL		ctl;
		HTAB	   *keys;
		ElLaterSegments later;
		MemoryContext keycxt = AllocSetContextCreate(CurrentMemoryContext,
													 "event_log segment keys",
													 ALLOCSET_DEFAULT_SIZES);
		MemoryContext old = MemoryContextSwitchTo(keycxt);

		memcpy(save, next, sizeof(int64) * shards);

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(char *);
		ctl.entrysize = sizeof(ElSegKey);
		ctl.hash = el_segkey_hash;
		ctl.match = el_segkey_match;
		ctl.hcxt = keycxt;
		keys = hash_create("event_log segment keys", 1024, &ctl,
						   HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
		ok = el_walk_segment(seg, snap, shards, p, cut, next, span, keys);
		MemoryContextSwitchTo(old);
		table_close(seg, NoLock);
		if (!ok)
		{
			memcpy(next, save, sizeof(int64) * shards);
			MemoryContextDelete(keycxt);
			break;
		}
		for (int32 s = 0; s < shards; s++)
		{
			if (span[s].first == 0)
				continue;
			if (p->archive)
				el_archive_range_from(relid, segs->relids[i], s, span[s].first, span[s].last);
			el_record_removal(relid, s, span[s].first, span[s].last, span[s].newest, &who);
			removed += span[s].last - span[s].first + 1;
		}
		/* Keys with no event in a later segment retire with their last version. */
		el_later_segments_open(&later, segs, i + 1);
		hash_seq_init(&status, keys);
		while ((entry = hash_seq_search(&status)) != NULL)
			if (!el_key_in_segments(&later, snap, entry->key))
				el_retire_key(relid, CStringGetTextDatum(entry->key), entry->version);
		el_later_segments_close(&later);
		MemoryContextDelete(keycxt);
		ngone++;
	}
	UnregisterSnapshot(snap);
	relation_close(rel, NoLock);

	/*
	 * A full newest segment: start the next (it takes new rows once we
	 * commit).  Before the drop: ATTACH waits for no appender, and the
	 * drop's lock is then held for nothing else.
	 */
	if (el_segment_full(relid))
		(void) el_segment_roll(relid);

	/* 4. Detach, last: the stream's lock is then held only to the commit. */
	if (ngone > 0)
		el_drop_segments(relid, segs->relids, ngone);

	if (report != NULL)
		for (int32 s = 0; s < shards; s++)
		{
			ElShardReport *r = palloc(sizeof(ElShardReport));

			r->shard = s;
			r->removed = next[s] - low[s];
			r->low = next[s];
			*report = lappend(*report, r);
		}

	return removed;
}
