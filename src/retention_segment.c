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
 *	  A sealed segment (one that is no longer the newest, and that every
 *	  transaction that appended to it has left) never changes again.  The
 *	  first enforcement after it sealed, the worker's soon after the roll,
 *	  reads it once, sequentially, and writes its summary: per shard, how
 *	  many events, the first and last seq and the latest recorded_at
 *	  (event_log.segment_summaries, 0.7).  That is the only read of a
 *	  segment's rows; a removal works from the summaries and reads, of the
 *	  segments it removes, only their (key, version) indexes (Kafka keeps
 *	  a segment's largest timestamp in its time index, written as the
 *	  segment fills, for the same reason).
 *
 *	  The steps of a removal, in one transaction (a subtransaction of the
 *	  worker's):
 *
 *	  1. Seal and summarize.  A segment older than the newest receives no
 *		 new row: the append trigger sends every row to the newest segment,
 *		 and a new segment is attached by a transaction that committed
 *		 before (a segment created in this transaction is not yet anybody's
 *		 newest).  Transactions that appended to an old segment before the
 *		 newest was attached may still be running: wait for them
 *		 (WaitForLockers on the stream and on each candidate segment, which
 *		 blocks nobody), and summarize the segments that have no summary.
 *		 Only then: a summarized segment was sealed when it was read, and
 *		 the stream's appenders in flight matter only to step 4.
 *	  2. Check each candidate's summary, oldest first: every event must
 *		 pass the policy (its last seq within the count's cut, its latest
 *		 recorded_at before the age's cutoff) and each shard's events must
 *		 follow the shard's watermark without a hole (the first seq is the
 *		 watermark, the count is last - first + 1).  The first segment that
 *		 fails stops the run.
 *	  3. Archive its events when the policy says so (which reads them),
 *		 move the watermarks and write the report, and retire the keys
 *		 whose every event leaves: a walk of the segment's (key, version)
 *		 index, index-only once the segment is vacuumed, with one probe of
 *		 the later segments' indexes per distinct key.
 *	  4. Detach the segments, last, so that the lock DETACH takes on the
 *		 stream is held only until the commit that follows: each waits for
 *		 its lock at most EL_SEGMENT_LOCK_TIMEOUT_MS and is retried, so an
 *		 appender queues behind it no longer than that.  The next
 *		 enforcement drops the detached tables, in a transaction that holds
 *		 no lock on the stream (their files are deleted at its commit).
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
#include "access/tableam.h"
#include "access/visibilitymap.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/memutils.h"
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

/* How long one DETACH of segments may wait for its lock, and how often. */
#define EL_SEGMENT_LOCK_TIMEOUT_MS	50
#define EL_SEGMENT_DETACH_TRIES		40

/* What a segment holds of one shard: a row of event_log.segment_summaries. */
typedef struct ElSegShard
{
	int64		events;
	int64		first;			/* 0 if none */
	int64		last;
	TimestampTz newest;			/* the latest recorded_at */
} ElSegShard;

/* Whether the catalog has event_log.segment_summaries (0.7). */
static bool
el_summaries_catalog(void)
{
	return OidIsValid(get_relname_relid("segment_summaries", el_schema_oid()));
}

/*
 * Whether this transaction may write summaries.  Not one that reads
 * through a transaction snapshot (REPEATABLE READ, SERIALIZABLE): the
 * foreign key check of a summary row looks for its segment's row with
 * that snapshot, which does not see a segment rolled after it was taken,
 * and a summary written meanwhile by another enforcement would collide
 * with ours.  Such an enforcement reads the segments it needs instead;
 * the next one in READ COMMITTED (the worker's) summarizes them.
 */
static bool
el_summaries_writable(void)
{
	return el_summaries_catalog() && !IsolationUsesXactSnapshot();
}

/*
 * Read a sealed segment once, sequentially: per shard, how many events,
 * the first and last seq and the latest recorded_at.  The events of a
 * shard need not come in seq order; the removal checks that they have no
 * hole (the count is last - first + 1).
 */
static void
el_scan_segment(Relation seg, Snapshot snap, int shards, ElSegShard *span)
{
	TableScanDesc scan = table_beginscan(seg, snap, 0, NULL);
	TupleTableSlot *slot = table_slot_create(seg, NULL);

	for (int32 s = 0; s < shards; s++)
	{
		span[s].events = span[s].first = span[s].last = 0;
		span[s].newest = DT_NOBEGIN;
	}
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		int32		shard = DatumGetInt32(slot_getattr(slot, Anum_el_shard, &isnull));
		int64		seq;
		TimestampTz at;
		ElSegShard *sp;

		CHECK_FOR_INTERRUPTS();
		if (shard < 0 || shard >= shards)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("segment \"%s\" holds an event of shard %d, which its stream does not have",
							el_qualified_name(RelationGetRelid(seg)), shard)));
		seq = DatumGetInt64(slot_getattr(slot, Anum_el_seq, &isnull));
		at = DatumGetTimestampTz(slot_getattr(slot, Anum_el_recorded_at, &isnull));
		sp = &span[shard];
		if (sp->events == 0 || seq < sp->first)
			sp->first = seq;
		if (sp->events == 0 || seq > sp->last)
			sp->last = seq;
		if (at > sp->newest)
			sp->newest = at;
		sp->events++;
	}
	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
}

/* A segment's summary from the catalog: false unless it has every shard's row. */
static bool
el_summary_load(Oid relid, int32 segno, int shards, ElSegShard *span)
{
	Datum		values[2] = {ObjectIdGetDatum(relid), Int32GetDatum(segno)};
	uint64		n;

	if (!el_summaries_catalog())
		return false;
	n = el_catalog_sql("SELECT shard, events, first_seq, last_seq, newest_recorded_at"
					   " FROM event_log.segment_summaries"
					   " WHERE stream OPERATOR(pg_catalog.=) $1"
					   " AND segment OPERATOR(pg_catalog.=) $2"
					   " AND shard OPERATOR(pg_catalog.<) $3",
					   3, (Oid[]) {OIDOID, INT4OID, INT4OID},
					   (Datum[]) {values[0], values[1], Int32GetDatum(shards)}, NULL,
					   EL_CAT_READ | EL_CAT_LATEST, 0);
	if (n != (uint64) shards)
		return false;
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;
		int32		s = DatumGetInt32(el_spi_value(i, 1, &isnull));

		span[s].events = el_spi_int8(i, 2);
		span[s].first = span[s].last = 0;
		span[s].newest = DT_NOBEGIN;
		if (span[s].events > 0)
		{
			span[s].first = el_spi_int8(i, 3);
			span[s].last = el_spi_int8(i, 4);
			span[s].newest = DatumGetTimestampTz(el_spi_value(i, 5, &isnull));
		}
	}
	return true;
}

/*
 * Whether a summary agrees with the ends of the segment's (shard, seq)
 * index, two probes per shard.  A sealed segment does not change, so it
 * always does; but a summary written while a restore had created the
 * segment and not yet loaded its rows, or after a superuser wrote to it
 * with triggers off, must not let a removal drop events it does not know
 * of (and leave the watermarks behind them).
 */
static bool
el_summary_matches(Relation seg, Snapshot snap, int shards, const ElSegShard *span)
{
	for (int32 s = 0; s < shards; s++)
	{
		int64		first = el_table_shard_edge(seg, s, snap, ForwardScanDirection);
		int64		last = first > 0 ?
			el_table_shard_edge(seg, s, snap, BackwardScanDirection) : 0;

		if (first != span[s].first || last != span[s].last)
			return false;
	}
	return true;
}

/* Whether a segment holds no event at all, as its summary says. */
static bool
el_segment_looks_empty(const ElSegShard *span, int shards)
{
	for (int32 s = 0; s < shards; s++)
		if (span[s].events > 0)
			return false;
	return true;
}

/*
 * Whether a sealed segment without a single event may go: only if the
 * later segments prove it never held one, each shard's next event in them
 * being the one after the watermark (next[]), and some shard having one.
 * An empty segment is normal after two rolls in a row; but a segment whose
 * rows a restore has not loaded yet looks empty too (pg_restore -j loads
 * tables in any order, and the worker may run meanwhile), and removing it
 * would take those rows with it, behind the watermarks.
 */
static bool
el_empty_segment_may_go(const ElSegments *segs, int from, Snapshot snap,
						int shards, const int64 *next)
{
	bool		some = false;

	for (int32 s = 0; s < shards; s++)
	{
		int64		first = el_segments_shard_edge(segs, from, s, snap,
												   ForwardScanDirection);

		if (first != 0 && first != next[s])
			return false;
		some |= first != 0;
	}
	return some;
}

/* Write a segment's summary (replacing a partial one). */
static void
el_summary_store(Oid relid, int32 segno, int shards, const ElSegShard *span)
{
	Datum		values[7];
	char		nulls[7];

	values[0] = ObjectIdGetDatum(relid);
	values[1] = Int32GetDatum(segno);
	el_catalog_sql("DELETE FROM event_log.segment_summaries"
				   " WHERE stream OPERATOR(pg_catalog.=) $1"
				   " AND segment OPERATOR(pg_catalog.=) $2",
				   2, (Oid[]) {OIDOID, INT4OID}, values, NULL, 0, 0);
	for (int32 s = 0; s < shards; s++)
	{
		bool		some = span[s].events > 0;

		values[2] = Int32GetDatum(s);
		values[3] = Int64GetDatum(span[s].events);
		values[4] = Int64GetDatum(span[s].first);
		values[5] = Int64GetDatum(span[s].last);
		values[6] = TimestampTzGetDatum(span[s].newest);
		memset(nulls, some ? ' ' : 'n', sizeof(nulls));
		memset(nulls, ' ', 4);
		el_catalog_sql("INSERT INTO event_log.segment_summaries"
					   " (stream, segment, shard, events, first_seq, last_seq, newest_recorded_at)"
					   " VALUES ($1, $2, $3, $4, $5, $6, $7)",
					   7, (Oid[]) {OIDOID, INT4OID, INT4OID, INT8OID, INT8OID, INT8OID,
					   TIMESTAMPTZOID}, values, nulls, 0, 0);
	}
}

/*
 * Whether event_log.segments' row of a segment was written by this
 * transaction (a segment this transaction rolled to is nobody's newest
 * yet: its predecessor is not sealed).
 */
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
 * How many of a stream's oldest segments are sealed: every segment but the
 * newest, up to one whose successor this transaction created.
 */
static int
el_sealed_segments(const ElSegments *segs)
{
	int			n = 0;

	while (n < segs->n - 1 && !el_segment_is_ours(segs->relids[n + 1]))
		n++;
	return n;
}

/*
 * Wait for every transaction that may still append to the segments
 * relids[0..n-1] (and to the stream, unless relid is InvalidOid): a segment
 * older than the newest receives no new row (the append trigger refuses
 * it), but a transaction that appended before the newest was attached may
 * still be running.  Such a transaction holds the segment's lock: routing
 * a row locks its segment before the trigger checks, under the shard lock,
 * that the segment is still the newest.  The stream's lockers matter only
 * to a removal (its DETACH waits for them anyway).  WaitForLockers blocks
 * nobody.
 */
static void
el_seal(Oid relid, const Oid *relids, int n)
{
	List	   *tags = NIL;
	LOCKTAG    *tag;

	if (n <= 0)
		return;
	if (OidIsValid(relid))
	{
		tag = palloc(sizeof(LOCKTAG));
		SET_LOCKTAG_RELATION(*tag, MyDatabaseId, relid);
		tags = lappend(tags, tag);
	}
	for (int i = 0; i < n; i++)
	{
		tag = palloc(sizeof(LOCKTAG));
		SET_LOCKTAG_RELATION(*tag, MyDatabaseId, relids[i]);
		tags = lappend(tags, tag);
	}
	WaitForLockersMultiple(tags, ShareLock, false);
}

/*
 * Whether a transaction other than ours holds a lock on a relation that
 * ShareLock conflicts with (an appender's).
 */
static bool
el_has_writers(Oid relid)
{
	LOCKTAG		tag;
	VirtualTransactionId *holders;

	SET_LOCKTAG_RELATION(tag, MyDatabaseId, relid);
	holders = GetLockConflicts(&tag, ShareLock, NULL);
	return VirtualTransactionIdIsValid(holders[0]);
}

/*
 * The summaries of a stream's sealed segments 0..nsealed-1, into
 * spans[i * shards ...]; have[i] says whether segment i's is there.  Read
 * from the catalog; one that is missing is written now, from one
 * sequential scan, once in a segment's life, if this transaction may
 * write summaries.  With wait, first wait for the transactions that may
 * still append to those segments; without, leave a segment that has any
 * for a later call (the worker, for a stream with no removal to make,
 * must not hang on a session left idle in a transaction that appended
 * before the roll).  The caller holds the stream's enforcement lock (no
 * roll meanwhile) and is connected to SPI.
 */
static void
el_load_summaries(Oid relid, const ElSegments *segs, int nsealed, int shards,
				  bool wait, ElSegShard *spans, bool *have)
{
	int			ntodo = 0;
	int		   *todo = palloc(sizeof(int) * Max(nsealed, 1));
	Oid		   *todo_rels = palloc(sizeof(Oid) * Max(nsealed, 1));
	bool		writable = el_summaries_writable();
	Snapshot	snap;

	for (int i = 0; i < nsealed; i++)
	{
		have[i] = el_summary_load(relid, segs->numbers[i], shards, &spans[i * shards]);
		if (!have[i] && writable && (wait || !el_has_writers(segs->relids[i])))
		{
			todo[ntodo] = i;
			todo_rels[ntodo++] = segs->relids[i];
		}
	}
	if (ntodo == 0)
		return;

	/*
	 * Without wait, not the stream's lockers either: an appender to the
	 * newest segment, or one idle in a transaction, would hold us up.
	 */
	el_seal(wait ? relid : InvalidOid, todo_rels, ntodo);
	snap = RegisterSnapshot(GetLatestSnapshot());
	for (int k = 0; k < ntodo; k++)
	{
		int			i = todo[k];
		Relation	seg = table_open(segs->relids[i], AccessShareLock);

		el_scan_segment(seg, snap, shards, &spans[i * shards]);
		table_close(seg, NoLock);
		el_summary_store(relid, segs->numbers[i], shards, &spans[i * shards]);
		have[i] = true;
	}
	UnregisterSnapshot(snap);
	CommandCounterIncrement();
}

/*
 * Summarize the sealed segments of a segmented stream that have no
 * summary yet, without waiting for their appenders (el_load_summaries()).
 * Without the 0.7 catalog, or in a transaction that may not write them,
 * nothing (a removal then reads its segments).
 */
void
el_summarize_segments(Oid relid)
{
	int			shards = el_stream_shards(relid);
	Relation	rel;
	ElSegments *segs;
	int			nsealed;

	if (!el_summaries_writable() || shards < 1)
		return;
	rel = relation_open(relid, AccessShareLock);
	segs = el_segments(rel);
	nsealed = el_sealed_segments(segs);
	el_load_summaries(relid, segs, nsealed, shards, false,
					  palloc(sizeof(ElSegShard) * shards * Max(nsealed, 1)),
					  palloc(sizeof(bool) * Max(nsealed, 1)));
	relation_close(rel, NoLock);
}

/*
 * The (key, version) indexes of the segments from..n-1, newest first, open
 * for el_key_in_segments() while a segment's keys are checked, each with
 * one index scan that every probe restarts.
 */
typedef struct ElLaterSegments
{
	int			n;
	Relation   *rels;
	Relation   *kvs;
	IndexScanDesc *scans;
	TupleTableSlot **slots;
} ElLaterSegments;

static void
el_later_segments_open(ElLaterSegments *later, ElSegments *segs, int from,
					   Snapshot snap)
{
	later->n = Max(segs->n - from, 0);
	later->rels = palloc(sizeof(Relation) * Max(later->n, 1));
	later->kvs = palloc(sizeof(Relation) * Max(later->n, 1));
	later->scans = palloc(sizeof(IndexScanDesc) * Max(later->n, 1));
	later->slots = palloc(sizeof(TupleTableSlot *) * Max(later->n, 1));
	for (int j = 0; j < later->n; j++)
	{
		later->rels[j] = table_open(segs->relids[segs->n - 1 - j], AccessShareLock);
		later->kvs[j] = index_open(el_stream_indexes(later->rels[j])->key_version,
								   AccessShareLock);
		later->scans[j] = index_beginscan(later->rels[j], later->kvs[j], snap, 1, 0);
		later->slots[j] = table_slot_create(later->rels[j], NULL);
	}
}

static void
el_later_segments_close(ElLaterSegments *later)
{
	for (int j = 0; j < later->n; j++)
	{
		index_endscan(later->scans[j]);
		ExecDropSingleTupleTableSlot(later->slots[j]);
		index_close(later->kvs[j], AccessShareLock);
		table_close(later->rels[j], AccessShareLock);
	}
}

/* Whether a key has an event in one of the later segments. */
static bool
el_key_in_segments(ElLaterSegments *later, Datum key)
{
	bool		found = false;

	for (int j = 0; j < later->n && !found; j++)
	{
		ScanKeyData skey;

		ScanKeyEntryInitialize(&skey, 0, 1, BTEqualStrategyNumber, InvalidOid,
							   DEFAULT_COLLATION_OID, F_TEXTEQ, key);
		index_rescan(later->scans[j], &skey, 1, NULL, 0);
		found = index_getnext_slot(later->scans[j], ForwardScanDirection, later->slots[j]);
	}
	return found;
}

/*
 * Retire the keys of a segment that leaves and have no event in a later
 * segment, each with its last version: a walk of the segment's (key,
 * version) index, which holds each key's versions together and in order.
 * Index-only where the visibility map says a page is all visible (a
 * sealed segment is, once vacuumed), else the row is fetched to check it.
 */
static void
el_retire_segment_keys(Oid relid, Relation seg, Snapshot snap, ElLaterSegments *later)
{
	Relation	kv = index_open(el_stream_indexes(seg)->key_version, AccessShareLock);
	IndexScanDesc scan = index_beginscan(seg, kv, snap, 0, 0);
	TupleTableSlot *slot = table_slot_create(seg, NULL);
	Buffer		vmbuf = InvalidBuffer;
	MemoryContext keycxt = AllocSetContextCreate(CurrentMemoryContext,
												 "event_log segment key",
												 ALLOCSET_SMALL_SIZES);
	MemoryContext old;
	text	   *prev = NULL;
	int64		prev_version = 0;
	ItemPointer tid;

	scan->xs_want_itup = true;
	index_rescan(scan, NULL, 0, NULL, 0);
	for (;;)
	{
		bool		isnull;
		Datum		key;
		int64		version;

		CHECK_FOR_INTERRUPTS();
		tid = index_getnext_tid(scan, ForwardScanDirection);
		if (tid != NULL &&
			!VM_ALL_VISIBLE(seg, ItemPointerGetBlockNumber(tid), &vmbuf) &&
			!index_fetch_heap(scan, slot))
			continue;			/* not visible: an aborted append */
		if (tid != NULL)
		{
			key = index_getattr(scan->xs_itup, 1, scan->xs_itupdesc, &isnull);
			version = DatumGetInt64(index_getattr(scan->xs_itup, 2, scan->xs_itupdesc, &isnull));
			if (prev != NULL && DatumGetBool(DirectFunctionCall2Coll(texteq,
																	 DEFAULT_COLLATION_OID,
																	 PointerGetDatum(prev),
																	 key)))
			{
				prev_version = Max(prev_version, version);
				continue;
			}
		}
		/* prev's versions are all seen: retire it unless it lives on */
		if (prev != NULL)
		{
			if (!el_key_in_segments(later, PointerGetDatum(prev)))
				el_retire_key(relid, PointerGetDatum(prev), prev_version);
			MemoryContextReset(keycxt);
			prev = NULL;
		}
		if (tid == NULL)
			break;
		old = MemoryContextSwitchTo(keycxt);
		prev = DatumGetTextPCopy(key);
		MemoryContextSwitchTo(old);
		prev_version = version;
	}
	if (BufferIsValid(vmbuf))
		ReleaseBuffer(vmbuf);
	MemoryContextDelete(keycxt);
	ExecDropSingleTupleTableSlot(slot);
	index_endscan(scan);
	index_close(kv, AccessShareLock);
}

typedef struct ElDetachCall
{
	Oid			stream;
	const Oid  *segments;
	int			n;
} ElDetachCall;

static void
el_detach_call(void *arg)
{
	ElDetachCall *call = (ElDetachCall *) arg;
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
el_detach_segments(Oid stream, const Oid *segments, int n)
{
	ElDetachCall call = {stream, segments, n};

	for (int attempt = 1;; attempt++)
	{
		ErrorData  *edata = el_try_subxact(el_detach_call, &call);

		if (edata == NULL)
			return;
		if (edata->sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE ||
			attempt >= EL_SEGMENT_DETACH_TRIES)
			ReThrowError(edata);
		FreeErrorData(edata);
		CHECK_FOR_INTERRUPTS();
		pg_usleep(EL_SEGMENT_LOCK_TIMEOUT_MS * 1000L);
	}
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
	ElSegShard *spans;
	bool	   *have;
	int			ncand;
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

	/*
	 * 1. Candidates: the sealed segments.  Their summaries (written by an
	 * earlier enforcement, or now, once the transactions that appended to
	 * them finished) say what each holds.  Nothing more to wait for before
	 * the checks: an enforcement whose policy keeps every segment must not
	 * hang on a session idle in a transaction that appended to the newest.
	 * Without summaries (a 0.6 catalog, a transaction snapshot) the
	 * segments are read below: wait for their appenders first.
	 */
	ncand = el_sealed_segments(segs);
	spans = palloc(sizeof(ElSegShard) * shards * Max(ncand, 1));
	have = palloc(sizeof(bool) * Max(ncand, 1));
	el_load_summaries(relid, segs, ncand, shards, true, spans, have);
	if (!el_summaries_writable())
		el_seal(relid, segs->relids, ncand);

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
		ElSegShard *span = &spans[i * shards];
		bool		ok = true;
		ElLaterSegments later;

		if (!have[i] || !el_summary_matches(seg, snap, shards, span))
		{
			/*
			 * No summary table (a 0.6 catalog), none written (a transaction
			 * snapshot), or a summary the segment's index ends contradict:
			 * read the segment now.
			 */
			el_scan_segment(seg, snap, shards, span);
			if (el_summaries_writable())
				el_summary_store(relid, segs->numbers[i], shards, span);
		}

		/*
		 * 2. Every event may go, and each shard's follow its watermark
		 * without a hole: the first seq is the watermark, as many events as
		 * seqs up to the last, the last within the cut, the latest
		 * recorded_at older than the cutoff.
		 */
		for (int32 s = 0; s < shards && ok; s++)
			if (span[s].events > 0)
				ok = span[s].first == next[s] &&
					span[s].last - span[s].first + 1 == span[s].events &&
					span[s].last <= cut[s] &&
					(!p->has_age || span[s].newest < p->cutoff);
		if (ok && el_segment_looks_empty(span, shards))
			ok = el_empty_segment_may_go(segs, i + 1, snap, shards, next);
		if (!ok)
		{
			table_close(seg, NoLock);
			break;
		}

		/* 3. Archive, move the watermarks, retire the keys. */
		for (int32 s = 0; s < shards; s++)
		{
			if (span[s].events == 0)
				continue;
			if (p->archive)
				el_archive_range_from(relid, segs->relids[i], s, span[s].first, span[s].last);
			el_record_removal(relid, s, span[s].first, span[s].last, span[s].newest, &who);
			removed += span[s].events;
			next[s] = span[s].last + 1;
		}
		el_later_segments_open(&later, segs, i + 1, snap);
		el_retire_segment_keys(relid, seg, snap, &later);
		el_later_segments_close(&later);
		table_close(seg, NoLock);
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

	/*
	 * 4. Detach, last: the stream's lock is then held only to the commit.
	 * The appenders in flight finish first (DETACH would wait for them).
	 */
	if (ngone > 0)
	{
		el_seal(relid, segs->relids, ngone);
		el_detach_segments(relid, segs->relids, ngone);
	}

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
