/*
 * projection_build.c
 *	  Builds: replaying a whole stream into a projection's new build table,
 *	  for create_projection() and rebuild_projection().
 *
 *	  Event by event, or set-based when every handler qualifies
 *	  (projection_setplan.c): events are read in chunks, sorted by key and
 *	  applied in ranks of distinct keys, in groups of chunks under one
 *	  subtransaction each.  A failed group is replayed event by event, which
 *	  gives the same error for the same event.  docs/design/projections.md,
 *	  "Set-based rebuilds", has the reasoning.
 *
 *	  Under the 'park' build policy a set-based build screens each chunk
 *	  for events that will fail and holds them, with their keys' later
 *	  events, out of the batches, to apply them event by event and park
 *	  what fails (el_chunk_hold()); docs/design/dead_letters.md, "Set-based
 *	  builds: screen, hold out, then park".
 */
#include "postgres.h"

#include "access/table.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"

#include "archive.h"
#include "catalog.h"
#include "event_log.h"
#include "immutable.h"
#include "projection.h"
#include "read.h"
#include "registry.h"

#define EL_ARCHIVE_REPLAY_CHUNK	1000	/* archived events fetched at a time */

/* An index scan over one shard's events with seq > after, in seq order. */
ElStreamScan *
el_shard_scan(Relation stream, Snapshot snap, int32 shard, int64 after)
{
	ScanKeyData keys[2];

	/* Builds and async runs never skip events retention removed. */
	el_check_watermark(RelationGetRelid(stream), shard, after, snap);
	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(shard));
	ScanKeyInit(&keys[1], 2, BTGreaterStrategyNumber, F_INT8GT, Int64GetDatum(after));
	return el_stream_scan_begin(stream, snap, keys, 2);
}

/*
 * Apply one shard's events with seq > after, in seq order, read with a new
 * snapshot: under the commit-order guarantee the events it sees are a
 * prefix of the shard, so nothing is skipped.  Between el_apply_begin() and
 * el_apply_end().  *last gets the last seq read; returns the events read
 * (replayed), whether or not a handler took them.
 */
static int64
el_replay_shard(ElApplyState *st, Relation stream, Relation pk, int32 shard,
				int64 after, int64 *last)
{
	Snapshot	snap = RegisterSnapshot(GetTransactionSnapshot());
	ElStreamScan *scan = el_shard_scan(stream, snap, shard, after);
	TupleTableSlot *slot = table_slot_create(stream, NULL);
	MemoryContext evcxt = AllocSetContextCreate(CurrentMemoryContext,
												"event_log event",
												ALLOCSET_DEFAULT_SIZES);
	int64		n = 0;

	*last = after;
	while (el_stream_scan_next(scan, slot))
	{
		MemoryContext old = MemoryContextSwitchTo(evcxt);

		slot_getsomeattrs(slot, EL_NATTS);
		*last = DatumGetInt64(slot->tts_values[Anum_el_seq - 1]);
		(void) el_apply(st, slot->tts_values, slot->tts_isnull);
		el_progress_at(shard, *last);
		n++;
		MemoryContextSwitchTo(old);
		MemoryContextReset(evcxt);
		CHECK_FOR_INTERRUPTS();
	}
	el_stream_scan_end(scan);
	ExecDropSingleTupleTableSlot(slot);
	MemoryContextDelete(evcxt);
	UnregisterSnapshot(snap);
	return n;
}

/*
 * Set-based replay for builds: whether every handler of the set qualifies
 * (projection_setplan.c), and their batch forms.  In the set's memory.
 */
static void
el_prepare_setplans(ElHandlerSet *set)
{
	MemoryContext old = MemoryContextSwitchTo(set->cxt);
	Oid			table = InvalidOid;
	AttrNumber	keycol = 0;
	const char *why = NULL;

	set->setbased = false;
	set->setplans = palloc0(sizeof(ElSetPlan *) * Max(set->nhandlers, 1));
	for (int i = 0; i < set->nhandlers && why == NULL; i++)
		set->setplans[i] = el_setplan_prepare(set->handlers[i].plan, &table, &keycol, &why);
	if (set->any && why == NULL)
		set->any_setplan = el_setplan_prepare(set->any, &table, &keycol, &why);
	if (why == NULL && OidIsValid(table))
		why = el_setplan_table_ok(table, keycol);
	else if (why == NULL)
		why = "no handler writes";
	/* Batches pass stored payloads to the statement: upcasting is per event. */
	if (why == NULL && set->upcast)
		why = "the projection upcasts events";
	MemoryContextSwitchTo(old);
	set->setbased_why = why;
	set->setbased = (why == NULL);
	set->setbased_plain = true;
	set->setbased_fallback = NULL;
}

/*
 * Under the 'park' build policy (async projections only): replay one
 * shard's events with seq > after, each small segment of them in a
 * subtransaction, parking an event a handler fails on and every later
 * event of its key (projection_deadletter.c).  A failure costs applying
 * its segment's earlier events again, so segments are short.  *last gets
 * the last seq read; returns the events read.
 */
#define EL_PARK_SEGMENT	16		/* events per subtransaction */
#define EL_PARK_READ	1024	/* events read at a time */

static int64
el_replay_shard_parking(ElApplyState *st, ElParked *parked, Relation stream,
						Relation pk, int32 shard, int64 after, int64 *last)
{
	HeapTuple  *batch = palloc(sizeof(HeapTuple) * EL_PARK_READ);
	MemoryContext batchcxt = AllocSetContextCreate(CurrentMemoryContext,
												   "event_log batch",
												   ALLOCSET_DEFAULT_SIZES);
	ElShardRun	run = {0};

	run.set = st->set;
	run.outer = st;
	run.parked = parked;
	run.desc = RelationGetDescr(stream);
	run.shard = shard;
	run.seq = after;
	run.quiet = true;
	run.segment = EL_PARK_SEGMENT;
	for (;;)
	{
		MemoryContext old = MemoryContextSwitchTo(batchcxt);
		int			count = el_read_batch(stream, pk, shard, run.seq, EL_PARK_READ, batch);

		MemoryContextSwitchTo(old);
		if (count == 0)
			break;
		(void) el_run_shard_batch(&run, batch, count);
		el_progress_at(shard, run.seq);
		MemoryContextReset(batchcxt);
		CHECK_FOR_INTERRUPTS();
	}
	MemoryContextDelete(batchcxt);
	pfree(batch);
	parked->build_events += run.parked_events;
	parked->build_keys += run.parked_keys;
	*last = run.seq;
	return run.total;
}

/* One shard, event by event: parking under the 'park' policy, or not. */
static int64
el_replay_one_shard(ElApplyState *st, ElParked *parked, Relation stream,
					Relation pk, int32 shard, int64 after, int64 *last)
{
	if (parked != NULL)
		return el_replay_shard_parking(st, parked, stream, pk, shard, after, last);
	return el_replay_shard(st, stream, pk, shard, after, last);
}

/*
 * Set-based replay reads the stream in chunks of events, each shard's in
 * seq order.  It sorts each chunk by key (a key's events stay in seq
 * order) and cuts it into ranges of neighbouring keys.  Within a range, the
 * first events of every key form one batch, their second events the next,
 * and so on: each batch has distinct keys, in key order, and each key's
 * events are applied in seq order.  Statements for different keys touch
 * disjoint rows, so the result is that of applying the chunk in seq order.
 * A range's rows sit together in the table's key index, so its batches keep
 * finding the pages they need already in the CPU's caches, where batches
 * spread over all keys would miss on nearly every probe.
 *
 * A chunk's events are copied, tuple by tuple, into one arena; their fields
 * point into the copies.  The arena and arrays are allocated once per
 * build.
 */
#define EL_CHUNK_EVENTS	65536	/* events per chunk, at most */
#define EL_CHUNK_ARENA	(12 * 1024 * 1024)	/* bytes of their tuples, at most */
#define EL_RANGE_KEYS	512		/* keys per range */
#define EL_SHARD_RUN	256		/* events read from a shard in a row */
#define EL_BATCH_MIN	64		/* smaller batches go event by event */
#define EL_BATCH_KEEP	(1024 * 1024)	/* memory kept from batch to batch */

/*
 * An event's place in the sorted chunk.  Chunks are sorted by the keys'
 * bytes: the key index's order under the C collation (and C.UTF-8), close
 * to it under others, and cheap; any order that keeps a key's events
 * together and in seq order is correct.
 */
typedef struct ElSortItem
{
	uint64		prefix;			/* the key's first 8 bytes, big-endian */
	const char *key;			/* its bytes */
	int32		len;
	int32		event;			/* index in the chunk: seq order */
} ElSortItem;

static inline int
el_sort_item_cmp(const ElSortItem *a, const ElSortItem *b)
{
	int			c;

	if (a->prefix != b->prefix)
		return a->prefix < b->prefix ? -1 : 1;
	c = memcmp(a->key, b->key, Min(a->len, b->len));
	if (c == 0)
		c = (a->len > b->len) - (a->len < b->len);
	return c != 0 ? c : (a->event > b->event) - (a->event < b->event);
}

#define ST_SORT el_sort_items
#define ST_ELEMENT_TYPE ElSortItem
#define ST_COMPARE(a, b) el_sort_item_cmp(a, b)
#define ST_SCOPE static
#define ST_DEFINE
#include "lib/sort_template.h"

typedef struct ElSetReplay
{
	MemoryContext cxt;			/* everything below, for the build */
	MemoryContext chunkcxt;		/* per chunk: fields that are not in a copy */
	MemoryContext stepcxt;		/* per batch */
	int			n;				/* events in the chunk */
	ElSetEvent *events;		/* [EL_CHUNK_EVENTS], in seq order */
	char	   *arena;			/* [EL_CHUNK_ARENA]: their tuples */
	Size		used;			/* of the arena */
	ElSortItem *sorted;			/* the chunk's events by key, then seq */
	int		   *rank;			/* of each sorted[i]: its n-th event of the key */
	ElSetEvent **batch;		/* the batch being applied, in key order */
	int			nbatch;
	/* Working arrays of el_apply_ranks(), of sorted positions. */
	int		   *positions;		/* 0, 1, 2, ... */
	int		   *byrank;
	int		   *rankstart;		/* [EL_CHUNK_EVENTS + 2] */
	int		   *deferred;
	int			ndeferred;
	bool		tuples_ok;		/* the stream's tuples fit the batch relation */
	int			nsorted;		/* of sorted[]: those the batches apply */
	/* Under the 'park' build policy (el_chunk_hold()); else parked NULL. */
	ElParked   *parked;
	TupleDesc	desc;			/* the stream's */
	bool	   *held;			/* [EL_CHUNK_EVENTS], by event: held out */
	MemoryContext screencxt;	/* per screening subtransaction */
} ElSetReplay;

static ElSetReplay *
el_set_replay_create(void)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "event_log build",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	ElSetReplay    *b = palloc0(sizeof(ElSetReplay));

	b->cxt = cxt;
	b->chunkcxt = AllocSetContextCreate(cxt, "event_log chunk", ALLOCSET_DEFAULT_SIZES);
	/* Keeps its block across resets: mapping it anew costs page faults. */
	b->stepcxt = AllocSetContextCreate(cxt, "event_log batch", EL_BATCH_KEEP,
									   ALLOCSET_DEFAULT_INITSIZE, EL_BATCH_KEEP);
	b->events = palloc(sizeof(ElSetEvent) * EL_CHUNK_EVENTS);
	b->arena = palloc(EL_CHUNK_ARENA);
	b->sorted = palloc(sizeof(ElSortItem) * EL_CHUNK_EVENTS);
	b->rank = palloc(sizeof(int) * EL_CHUNK_EVENTS);
	b->batch = palloc(sizeof(ElSetEvent *) * EL_CHUNK_EVENTS);
	b->positions = palloc(sizeof(int) * EL_CHUNK_EVENTS);
	for (int i = 0; i < EL_CHUNK_EVENTS; i++)
		b->positions[i] = i;
	b->byrank = palloc(sizeof(int) * EL_CHUNK_EVENTS);
	b->rankstart = palloc(sizeof(int) * (EL_CHUNK_EVENTS + 2));
	b->deferred = palloc(sizeof(int) * EL_CHUNK_EVENTS);
	b->held = palloc0(sizeof(bool) * EL_CHUNK_EVENTS);
	b->screencxt = AllocSetContextCreate(cxt, "event_log screen", ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(old);
	return b;
}

/* Run one handler's statements over its events of the batch. */
static void
el_set_step(ElHandlerSet *set, ElSetReplay *b, int h)
{
	ElSetPlan *bp = h < 0 ? set->any_setplan : set->setplans[h];
	ElSetEvent **events = palloc(sizeof(ElSetEvent *) * b->nbatch);
	int			count = 0;

	for (int i = 0; i < b->nbatch; i++)
		if (b->batch[i]->handler == h)
			events[count++] = b->batch[i];
	if (count > 0)
		el_setplan_run(bp, count, events, set->setbased_plain);
}

/*
 * Apply the batch: each handler once over its events.  A small batch (a
 * stream with few keys, or a key with many events) would pay more for
 * executor start-up than it saves: it goes event by event.
 */
static void
el_set_apply(ElApplyState *st, ElSetReplay *b)
{
	ElHandlerSet *set = st->set;
	MemoryContext old = MemoryContextSwitchTo(b->stepcxt);

	if (b->nbatch >= EL_BATCH_MIN)
	{
		for (int h = 0; h < set->nhandlers; h++)
			el_set_step(set, b, h);
		if (set->any)
			el_set_step(set, b, -1);
	}
	else
		for (int i = 0; i < b->nbatch; i++)
		{
			el_apply(st, b->batch[i]->values, b->batch[i]->nulls);
			MemoryContextReset(b->stepcxt);
		}
	MemoryContextSwitchTo(old);
	MemoryContextReset(b->stepcxt);
	b->nbatch = 0;
}

/*
 * Apply the events at sorted positions pos[0..n) (in key order), rank by
 * rank, each rank's as a batch (in key order).  With defer, a rank above
 * the first with fewer than EL_BATCH_MIN events is not applied: it and the
 * ranks above it go to b->deferred instead.  Linear in n and ranks.
 */
static void
el_apply_ranks(ElApplyState *st, ElSetReplay *b, const int *pos, int n, int ranks, bool defer)
{
	int		   *start = b->rankstart;	/* [ranks + 2] */

	memset(start, 0, sizeof(int) * (ranks + 2));
	for (int i = 0; i < n; i++)
		start[b->rank[pos[i]] + 1]++;
	for (int r = 1; r <= ranks; r++)
		start[r + 1] += start[r];
	/* byrank: the positions by rank, in key order within a rank. */
	for (int i = 0; i < n; i++)
		b->byrank[start[b->rank[pos[i]]]++] = pos[i];
	/* start[r] is now the end of rank r's events, and start[r - 1] its start. */
	for (int r = 1; r <= ranks; r++)
	{
		int			first = start[r - 1];
		int			end = start[r];

		if (defer && r > 1 && end - first < EL_BATCH_MIN)
		{
			memcpy(b->deferred + b->ndeferred, b->byrank + first,
				   sizeof(int) * (n - first));
			b->ndeferred += n - first;
			return;
		}
		for (int i = first; i < end; i++)
			b->batch[b->nbatch++] = &b->events[b->sorted[b->byrank[i]].event];
		el_set_apply(st, b);
		CHECK_FOR_INTERRUPTS();
	}
}

static void el_chunk_apply(ElApplyState *st, ElSetReplay *b);
static void el_chunk_hold(ElApplyState *st, ElSetReplay *b);
static void el_chunk_apply_held(ElApplyState *st, ElSetReplay *b);

/* Apply the chunk's events: sorted by key, by ranges of keys and ranks. */
static void
el_chunk_flush(ElApplyState *st, ElSetReplay *b)
{
	if (b->n == 0)
		return;
	for (int i = 0; i < b->n; i++)
	{
		/* el_chunk_add() made the key plain. */
		text	   *key = (text *) DatumGetPointer(b->events[i].values[Anum_el_key - 1]);
		ElSortItem *item = &b->sorted[i];
		uint64		prefix = 0;

		item->key = VARDATA_ANY(key);
		item->len = VARSIZE_ANY_EXHDR(key);
		item->event = i;
		for (int j = 0; j < 8; j++)
			prefix = (prefix << 8) | (j < item->len ? (unsigned char) item->key[j] : 0);
		item->prefix = prefix;
	}
	el_sort_items(b->sorted, b->n);

	for (int i = 0; i < b->n; i++)
		b->rank[i] = (i > 0 && b->sorted[i].len == b->sorted[i - 1].len &&
					  memcmp(b->sorted[i].key, b->sorted[i - 1].key, b->sorted[i].len) == 0)
			? b->rank[i - 1] + 1 : 1;

	b->nsorted = b->n;
	if (b->parked != NULL)
		el_chunk_hold(st, b);
	el_chunk_apply(st, b);
	if (b->parked != NULL)
		el_chunk_apply_held(st, b);
	b->n = 0;
	b->used = 0;
	MemoryContextReset(b->chunkcxt);
}

/*
 * Apply the sorted chunk: ranges, each rank by rank.  A rank with fewer than
 * EL_BATCH_MIN events (keys with more events than most in the range) is put
 * off, with the range's higher ranks, until all ranges are done: then the
 * put-off events of all ranges go rank by rank, as fuller batches.  Keys
 * never span ranges, so each key's events stay in order.
 */
static void
el_chunk_apply(ElApplyState *st, ElSetReplay *b)
{
	int			lo = 0;

	b->ndeferred = 0;
	while (lo < b->nsorted)
	{
		int			hi = lo;
		int			nkeys = 0;
		int			ranks = 0;

		/* The next range: up to EL_RANGE_KEYS keys, whole. */
		while (hi < b->nsorted && (b->rank[hi] > 1 || nkeys < EL_RANGE_KEYS))
		{
			nkeys += (b->rank[hi] == 1);
			ranks = Max(ranks, b->rank[hi]);
			hi++;
		}
		el_apply_ranks(st, b, b->positions + lo, hi - lo, ranks, true);
		lo = hi;
	}
	if (b->ndeferred > 0)
	{
		int			ranks = 0;

		for (int i = 0; i < b->ndeferred; i++)
			ranks = Max(ranks, b->rank[b->deferred[i]]);
		/* Without defer it does not write b->deferred, its input here. */
		el_apply_ranks(st, b, b->deferred, b->ndeferred, ranks, false);
	}
}

/*
 * Under the 'park' build policy, a chunk's poison events must not reach its
 * batches: one would fail its batch and the group of chunks with it.
 * Before the batches run, el_chunk_hold() holds out of them, for each key,
 * its first event that screening (el_setplan_screen()) finds will fail, or
 * that a key parked earlier in the build waits behind, and every later
 * event of the key in the chunk.  The batches apply the rest; then
 * el_chunk_apply_held() applies the held events as a build that parks goes
 * event by event (el_run_shard_batch()), shard by shard in seq order: an
 * event that fails is parked, and its key's later events behind it; one
 * that screening flagged for nothing is just applied.  A held key's events
 * come after its events the batches applied, and keys never meet, so the
 * result is the event-by-event build's.  docs/design/dead_letters.md, "The
 * cost of finding the bad event".
 */
typedef struct ElScreenCall
{
	ElApplyState *st;
	ElSetReplay *b;
	int			next;			/* in, out: the event to screen next */
} ElScreenCall;

/* Screen the chunk's events from call->next on, stopping at an error. */
static void
el_screen_events(void *arg)
{
	ElScreenCall *call = (ElScreenCall *) arg;
	ElSetReplay *b = call->b;
	ElHandlerSet *set = call->st->set;
	int			slots = set->nhandlers + 1; /* the last: "*" */
	ElSetScreen **screens;
	bool	   *made;
	MemoryContext old = MemoryContextSwitchTo(b->screencxt);

	screens = palloc0(sizeof(ElSetScreen *) * slots);
	made = palloc0(sizeof(bool) * slots);
	for (; call->next < b->n; call->next++)
	{
		ElSetEvent *ev = &b->events[call->next];
		int			h = ev->handler < 0 ? slots - 1 : ev->handler;

		if (b->held[call->next])
			continue;
		if (!made[h])
		{
			screens[h] = el_setplan_screen(ev->handler < 0 ? set->any_setplan :
										   set->setplans[h]);
			made[h] = true;
		}
		if (screens[h] != NULL)
			el_setplan_screen_event(screens[h], ev);
		if ((call->next & 1023) == 0)
			CHECK_FOR_INTERRUPTS();
	}
	for (int h = 0; h < slots; h++)
		el_setplan_screen_end(screens[h]);
	MemoryContextSwitchTo(old);
}

static void
el_chunk_hold(ElApplyState *st, ElSetReplay *b)
{
	ElScreenCall call = {st, b, 0};
	ErrorData  *edata;
	bool		any_parked = false;
	bool		holding = false;
	int			kept = 0;

	for (int s = 0; s < b->parked->shards && !any_parked; s++)
		any_parked = b->parked->keys[s] != NULL;
	for (int i = 0; i < b->n; i++)
		b->held[i] = any_parked &&
			el_parked_behind(b->parked, b->events[i].values, b->events[i].nulls) >= 0;

	/*
	 * One subtransaction, and one more after each event that fails; each
	 * rolled back, whatever happens: screening computes, it changes nothing.
	 */
	while ((edata = el_in_subxact_ext(el_screen_events, &call, false)) != NULL)
	{
		FreeErrorData(edata);
		MemoryContextReset(b->screencxt);
		b->held[call.next++] = true;
	}
	MemoryContextReset(b->screencxt);

	/* A key's held event and the key's later ones leave the sorted chunk. */
	for (int i = 0; i < b->n; i++)
	{
		if (b->rank[i] == 1)
			holding = false;
		holding |= b->held[b->sorted[i].event];
		b->held[b->sorted[i].event] = holding;
		if (holding)
			continue;
		b->sorted[kept] = b->sorted[i];
		b->rank[kept] = b->rank[i];	/* a key keeps the first of its ranks */
		kept++;
	}
	b->nsorted = kept;
}

/* Compare held events by shard, then seq (for qsort). */
static int
el_held_cmp(const void *a, const void *b)
{
	const ElSetEvent *x = *(ElSetEvent *const *) a;
	const ElSetEvent *y = *(ElSetEvent *const *) b;
	int32		xs = DatumGetInt32(x->values[Anum_el_shard - 1]);
	int32		ys = DatumGetInt32(y->values[Anum_el_shard - 1]);
	int64		xq = DatumGetInt64(x->values[Anum_el_seq - 1]);
	int64		yq = DatumGetInt64(y->values[Anum_el_seq - 1]);

	if (xs != ys)
		return xs < ys ? -1 : 1;
	return (xq > yq) - (xq < yq);
}

static void
el_chunk_apply_held(ElApplyState *st, ElSetReplay *b)
{
	ElSetEvent **held = palloc(sizeof(ElSetEvent *) * Max(b->n, 1));
	HeapTupleData *tuples;
	HeapTuple  *batch;
	int			n = 0;

	for (int i = 0; i < b->n; i++)
		if (b->held[i])
			held[n++] = &b->events[i];
	if (n == 0)
	{
		pfree(held);
		return;
	}
	qsort(held, n, sizeof(ElSetEvent *), el_held_cmp);
	tuples = palloc(sizeof(HeapTupleData) * n);
	batch = palloc(sizeof(HeapTuple) * n);
	for (int i = 0; i < n; i++)
	{
		tuples[i].t_len = held[i]->len;
		ItemPointerSetInvalid(&tuples[i].t_self);
		tuples[i].t_tableOid = InvalidOid;
		tuples[i].t_data = held[i]->stored;
		batch[i] = &tuples[i];
	}
	for (int from = 0; from < n;)
	{
		int32		shard = DatumGetInt32(held[from]->values[Anum_el_shard - 1]);
		int			to = from;
		ElShardRun	run = {0};

		while (to < n && DatumGetInt32(held[to]->values[Anum_el_shard - 1]) == shard)
			to++;
		run.set = st->set;
		run.outer = st;
		run.parked = b->parked;
		run.desc = b->desc;
		run.shard = shard;
		run.quiet = true;
		run.segment = EL_PARK_SEGMENT;
		(void) el_run_shard_batch(&run, batch + from, to - from);
		b->parked->build_events += run.parked_events;
		b->parked->build_keys += run.parked_keys;
		from = to;
	}
	pfree(tuples);
	pfree(batch);
	pfree(held);
}

/*
 * Copy the slot's event into the chunk: its tuple into the arena, its
 * fields pointing into the copy.  False if the chunk has no room for it.
 */
static bool
el_chunk_add(ElSetReplay *b, TupleTableSlot *slot, int handler)
{
	HeapTuple	tuple = ExecFetchSlotHeapTuple(slot, false, NULL);
	char	   *from = (char *) tuple->t_data;
	Size		len = tuple->t_len;
	ElSetEvent *ev;
	char	   *copy;

	if (b->n == EL_CHUNK_EVENTS || b->used + MAXALIGN(len) > EL_CHUNK_ARENA)
		return false;
	copy = b->arena + b->used;
	memcpy(copy, from, len);
	b->used += MAXALIGN(len);

	ev = &b->events[b->n++];
	ev->handler = handler;
	ev->stored = (HeapTupleHeader) copy;
	/* The batch relation has the stream's columns: its tuple can go as is. */
	ev->tuple = (b->tuples_ok &&
				 HeapTupleHeaderGetNatts((HeapTupleHeader) copy) == EL_NATTS)
		? (HeapTupleHeader) copy : NULL;
	ev->len = len;
	for (int f = 0; f < EL_NATTS; f++)
	{
		Datum		v = slot->tts_values[f];

		ev->nulls[f] = slot->tts_isnull[f];
		ev->values[f] = v;
		if (!ev->nulls[f] && !TupleDescAttr(slot->tts_tupleDescriptor, f)->attbyval)
		{
			char	   *p = DatumGetPointer(v);

			/* Fields point into the tuple; anything else gets a copy. */
			if (p >= from && p < from + len)
				ev->values[f] = PointerGetDatum(copy + (p - from));
			else
			{
				Form_pg_attribute att = TupleDescAttr(slot->tts_tupleDescriptor, f);
				MemoryContext old = MemoryContextSwitchTo(b->chunkcxt);

				ev->values[f] = datumCopy(v, false, att->attlen);
				MemoryContextSwitchTo(old);
			}
		}
	}

	/*
	 * The sort reads the key's bytes: a compressed or toasted key, rare as
	 * it is (keys are short), is expanded.
	 */
	if (VARATT_IS_EXTENDED(DatumGetPointer(ev->values[Anum_el_key - 1])) &&
		!VARATT_IS_SHORT(DatumGetPointer(ev->values[Anum_el_key - 1])))
	{
		MemoryContext old = MemoryContextSwitchTo(b->chunkcxt);

		ev->values[Anum_el_key - 1] =
			PointerGetDatum(PG_DETOAST_DATUM_PACKED(ev->values[Anum_el_key - 1]));
		MemoryContextSwitchTo(old);
	}
	return true;
}

/*
 * Set-based replay of groups of chunks, each group in one subtransaction
 * (see el_replay_setbased()).  A group reads every shard's events with
 * seq > last[shard], with the build's one snapshot (of which each shard's
 * events are a prefix), into chunks and applies them, until it has applied
 * `chunks` chunks or read the whole stream.  A chunk takes runs of events
 * from each shard in turn, each shard's in seq order; keys never span
 * shards, so each key's events stay in seq order.
 */
typedef struct ElGroupCall
{
	ElApplyState *st;
	ElSetReplay    *b;
	Relation	stream;
	Relation	pk;
	Snapshot	snap;
	int			shards;
	int64	   *last;			/* in: where to start; out: where it stopped */
	int			chunks;			/* how many chunks to apply */
	int64		n;				/* out: events replayed (read) */
	bool		done;			/* out: the stream was read to its end */
} ElGroupCall;

static void
el_replay_group(void *arg)
{
	ElGroupCall *g = (ElGroupCall *) arg;
	ElSetReplay    *b = g->b;
	ElStreamScan **scans = palloc(sizeof(ElStreamScan *) * g->shards);
	TupleTableSlot *slot = table_slot_create(g->stream, NULL);
	int			live = g->shards;
	int			flushed = 0;

	/* Anew, if a first try failed half-way. */
	b->n = 0;
	b->used = 0;
	b->nbatch = 0;
	MemoryContextReset(b->chunkcxt);
	MemoryContextReset(b->stepcxt);
	g->n = 0;
	g->done = false;
	for (int s = 0; s < g->shards; s++)
		scans[s] = el_shard_scan(g->stream, g->snap, s, g->last[s]);
	while (live > 0 && flushed < g->chunks)
	{
		for (int s = 0; s < g->shards && flushed < g->chunks; s++)
		{
			/*
			 * The shard's next EL_SHARD_RUN events that a handler takes, if
			 * any: a run, so that its scan stays on a heap page for the
			 * shard's events there, instead of switching pages (and
			 * checking each for pruning) on every event.
			 */
			int			run = 0;

			while (scans[s] != NULL && run < EL_SHARD_RUN)
			{
				int64		seq;
				int			h;

				if (!el_stream_scan_next(scans[s], slot))
				{
					el_stream_scan_end(scans[s]);
					scans[s] = NULL;
					live--;
					break;
				}
				slot_getsomeattrs(slot, EL_NATTS);
				seq = DatumGetInt64(slot->tts_values[Anum_el_seq - 1]);
				h = el_handler_index(g->st->set,
									 DatumGetTextPP(slot->tts_values[Anum_el_type - 1]));
				if (h != -2)
				{
					if (!el_chunk_add(b, slot, h))
					{
						if (b->n == 0)
							elog(ERROR, "event of %u bytes does not fit a build chunk",
								 ExecFetchSlotHeapTuple(slot, false, NULL)->t_len);
						el_chunk_flush(g->st, b);
						/* At the group's end this event starts the next. */
						if (++flushed == g->chunks)
							break;
						(void) el_chunk_add(b, slot, h);
					}
				}
				g->last[s] = seq;
				el_progress_at(s, seq);
				g->n++;
				/* Events no handler takes count too, for the interrupt check. */
				run++;
			}
			CHECK_FOR_INTERRUPTS();
		}
	}
	if (live == 0)
	{
		el_chunk_flush(g->st, b);
		g->done = true;
	}
	for (int s = 0; s < g->shards; s++)
		if (scans[s] != NULL)
			el_stream_scan_end(scans[s]);
	ExecDropSingleTupleTableSlot(slot);
	pfree(scans);
}

/*
 * el_replay_shard() for a set whose handlers run set-based, over all shards
 * at once, from last[shard]; fills last[shard] and returns the events
 * replayed.
 *
 * The replay runs in groups of chunks, each group in one subtransaction:
 * one chunk, then two, four, and so on, so a replay of c chunks takes about
 * log2(c) subtransactions.  Not one per batch or per chunk: rows changed by
 * several subtransactions of one transaction get multixacts, which make
 * every later visibility check of their versions slow, and a transaction
 * with more than 64 subtransactions overflows its backend's cache of them,
 * which slows visibility checks in every other session until it ends.
 *
 * If a group fails with an error a handler can raise, it is rolled back and
 * the rest of the stream, from the group's start, is replayed event by
 * event, shard by shard: that raises the error an event-by-event build
 * raises, for the same event, with the event named; or, if the error was
 * the set-based form's own, finishes the build event by event (and says so
 * in build_method).  While plain INSERTs stand in for INSERT ... ON
 * CONFLICT (el_setplan_run()), a unique violation is no handler's error: the
 * group is run again with the ON CONFLICT clauses, and so is the rest of
 * the build.
 */
static int64
el_replay_setbased(ElApplyState *st, ElSetReplay *b, Relation stream, Relation pk,
				  int shards, int64 *last, ElParked *parked)
{
	ElGroupCall g;
	int64	   *start = palloc(sizeof(int64) * shards);
	TupleDesc	desc = RelationGetDescr(stream);
	int64		n = 0;

	/* Stream tuples go to the batch relation as they are if laid out alike. */
	b->tuples_ok = (desc->natts == EL_NATTS);
	for (int i = 0; i < desc->natts && b->tuples_ok; i++)
		b->tuples_ok = !TupleDescAttr(desc, i)->attisdropped &&
			TupleDescAttr(desc, i)->atttypid == el_columns[i].type;

	memset(&g, 0, sizeof(g));
	g.st = st;
	g.b = b;
	g.stream = stream;
	g.pk = pk;
	g.snap = RegisterSnapshot(GetTransactionSnapshot());
	g.shards = shards;
	g.last = last;
	g.chunks = 1;
	b->parked = parked;
	b->desc = desc;
	while (!g.done)
	{
		ErrorData  *edata;

		memcpy(start, last, sizeof(int64) * shards);
		if (parked != NULL)
			el_parked_mark(parked);
		edata = el_in_subxact(el_replay_group, &g);
		if (edata != NULL && edata->sqlerrcode == ERRCODE_UNIQUE_VIOLATION &&
			st->set->setbased_plain)
		{
			elog(DEBUG1, "event_log: a plain INSERT conflicts, running ON CONFLICT from now on");
			st->set->setbased_plain = false;
			FreeErrorData(edata);
			memcpy(last, start, sizeof(int64) * shards);
			if (parked != NULL)
				el_parked_undo(parked);
			edata = el_in_subxact(el_replay_group, &g);
		}
		if (edata != NULL)
		{
			elog(DEBUG1, "event_log: set-based replay failed (%s), going on event by event",
				 edata->message);
			st->set->setbased_fallback = psprintf("set-based, then event by event: %s",
											   edata->message);
			FreeErrorData(edata);
			memcpy(last, start, sizeof(int64) * shards);
			if (parked != NULL)
				el_parked_undo(parked);
			b->parked = NULL;
			for (int s = 0; s < shards; s++)
				n += el_replay_one_shard(st, parked, stream, pk, s, last[s], &last[s]);
			break;
		}
		n += g.n;
		if (g.chunks < INT_MAX / 2)
			g.chunks *= 2;
	}
	if (parked != NULL)
		parked->marked = false;
	UnregisterSnapshot(g.snap);
	pfree(start);
	return n;
}

/*
 * Apply the archived events of a shard after *last up to through (the seq
 * before its low watermark), in seq order (archive.c): history that
 * retention moved out of the log stays reprocessable.  Event by event, or,
 * under the 'park' build policy (parked not NULL), each fetch as one batch
 * of el_run_shard_batch(), which parks an event a handler fails on and its
 * key's later events, as the log's events are parked.  An event the
 * archive lacks is EL040.  Returns the events replayed (parked ones
 * included).  The caller is connected to SPI.
 */
static int64
el_replay_archive(ElApplyState *st, ElParked *parked, Oid streamid, int32 shard,
				  int64 *last, int64 through)
{
	MemoryContext evcxt = AllocSetContextCreate(CurrentMemoryContext,
												"event_log archived event",
												ALLOCSET_DEFAULT_SIZES);
	HeapTuple  *batch = palloc(sizeof(HeapTuple) * EL_ARCHIVE_REPLAY_CHUNK);
	int64		n = 0;

	while (*last < through)
	{
		uint64		got = el_archive_fetch(streamid, shard, *last,
										   Min(EL_ARCHIVE_REPLAY_CHUNK, through - *last));
		SPITupleTable *rows = SPI_tuptable;

		if (got == 0)
			break;
		/* Every seq after *last, in order: the archive never skips. */
		for (uint64 i = 0; i < got; i++)
		{
			bool		isnull;
			Datum		seq = SPI_getbinval(rows->vals[i], rows->tupdesc, Anum_el_seq, &isnull);

			if (isnull || DatumGetInt64(seq) != *last + 1 + (int64) i)
				el_archive_missing(streamid, shard, *last + 1 + (int64) i);
			batch[i] = rows->vals[i];
		}
		if (parked != NULL)
		{
			ElShardRun	run = {0};

			run.set = st->set;
			run.outer = st;
			run.parked = parked;
			run.desc = rows->tupdesc;
			run.shard = shard;
			run.seq = *last;
			run.quiet = true;
			run.segment = EL_PARK_SEGMENT;
			(void) el_run_shard_batch(&run, batch, (int) got);
			parked->build_events += run.parked_events;
			parked->build_keys += run.parked_keys;
			*last = run.seq;
			n += run.total;
			el_progress_at(shard, *last);
			CHECK_FOR_INTERRUPTS();
		}
		else
			for (uint64 i = 0; i < got; i++)
			{
				MemoryContext old = MemoryContextSwitchTo(evcxt);
				Datum		values[EL_NATTS];
				bool		nulls[EL_NATTS];

				heap_deform_tuple(batch[i], rows->tupdesc, values, nulls);
				(void) el_apply(st, values, nulls);
				*last += 1;
				el_progress_at(shard, *last);
				n++;
				MemoryContextSwitchTo(old);
				MemoryContextReset(evcxt);
				CHECK_FOR_INTERRUPTS();
			}
		SPI_freetuptable(rows);
	}
	MemoryContextDelete(evcxt);
	pfree(batch);
	if (*last < through)
		el_archive_missing(streamid, shard, *last + 1);
	return n;
}

/*
 * Replay the whole stream through `set` (which must write to the new build
 * table).  For an inline projection the tail is replayed after locking the
 * stream against appends (SHARE ROW EXCLUSIVE, held to commit: it waits for
 * appending transactions to finish, and new appends wait for us).  Fills
 * last[shard]; returns the events replayed.
 */
static int64
el_replay_all(ElHandlerSet *set, Oid streamid, int shards, int64 *last,
			  ElParked *parked)
{
	Relation	stream = table_open(streamid, AccessShareLock);
	Relation	pk = el_stream_pk_open(stream);
	int64		n = 0;
	ElApplyState st;
	ElSetReplay    *b = set->setbased ? el_set_replay_create() : NULL;

	el_apply_begin(set, &st);
	/* History that retention moved to the archive first (retention.md). */
	if (el_stream_has_watermarks(streamid))
		for (int s = 0; s < shards; s++)
		{
			int64		low = el_low_watermark(streamid, s, GetTransactionSnapshot());

			/* Else the log's scan refuses to start below the watermark. */
			if (last[s] < low - 1 && el_archive_covers(streamid, s, low))
				n += el_replay_archive(&st, parked, streamid, s, &last[s], low - 1);
		}
	if (b != NULL)
		n += el_replay_setbased(&st, b, stream, pk, shards, last, parked);
	else
		for (int s = 0; s < shards; s++)
			n += el_replay_one_shard(&st, parked, stream, pk, s, last[s], &last[s]);
	el_apply_end(&st);
	if (b != NULL)
		MemoryContextDelete(b->cxt);
	el_stream_pk_close(pk);
	table_close(stream, AccessShareLock);
	return n;
}

/* Record in the catalog how the build replayed: projections.build_method. */
static void
el_set_build_method(ElHandlerSet *set, Oid view)
{
	Oid			types[2] = {OIDOID, TEXTOID};
	Datum		values[2];

	values[0] = ObjectIdGetDatum(view);
	values[1] = CStringGetTextDatum(!set->setbased ?
									psprintf("event by event: %s", set->setbased_why) :
									set->setbased_fallback ? set->setbased_fallback : "set-based");
	el_catalog_sql("UPDATE event_log.projections SET build_method = $2"
					" WHERE projection = $1", 2, types, values, NULL, 0, 0);
}

/*
 * Create an inline projection's trigger on its stream.  CREATE TRIGGER
 * takes SHARE ROW EXCLUSIVE on the stream.  The DDL guard lets the trigger
 * be, between its creation and its ENABLE ALWAYS, which only the stream's
 * owner may set.
 */
static void
el_create_inline_trigger(Oid stream, Oid view)
{
	char	   *qstream = el_qualified_name(stream);

	el_guard_allow(stream, EL_GUARD_PROJECTION_DDL);
	PG_TRY();
	{
		el_exec_as(GetUserId(), InvalidOid,
				   psprintf("CREATE TRIGGER " EL_PROJECTION_TRIGGER "%u"
							" AFTER INSERT ON %s FOR EACH ROW"
							" EXECUTE FUNCTION event_log.project('%u')",
							view, qstream, view), true);
		el_exec_as(el_rel_owner(stream), InvalidOid,
				   psprintf("ALTER TABLE %s ENABLE ALWAYS TRIGGER " EL_PROJECTION_TRIGGER "%u",
							qstream, view), true);
	}
	PG_FINALLY();
	{
		el_guard_disallow(stream);
	}
	PG_END_TRY();
}

/*
 * Build a projection: replay the stream into the set's build table (for an
 * inline projection, the tail again once appends are held off, after its
 * trigger exists).  Fills last[shard]; returns the events replayed: every
 * event read from the stream, whether a handler took it or not (the
 * contract's "number of events replayed"; each event counts once, the
 * inline tail included).
 */
int64
el_build(ElHandlerSet *set, ElProjection *p, int64 *last, bool create)
{
	int			shards = el_lock_stream(p->stream, AccessShareLock);
	volatile int64 n = 0;
	ElParked   *parked = NULL;
	volatile bool reported = false;

	el_check_stream_read(p->stream, set->owner, set->name);
	el_prepare_setplans(set);
	/* Only async projections park (set_error_policy() refuses the others). */
	if (!p->inline_mode)
	{
		parked = el_parked_open(p->view, p->stream, shards, true);
		if (!parked->park)
			parked = NULL;
	}
	/* Watched from other sessions (projection_progress.c) until it ends. */
	PG_TRY();
	{
		reported = el_progress_begin(p->view, p->stream, shards);
		n = el_replay_all(set, p->stream, shards, last, parked);
		if (p->inline_mode)
		{
			if (create)
				el_create_inline_trigger(p->stream, p->view);
			else
				LockRelationOid(p->stream, ShareRowExclusiveLock);
			el_progress_phase(1);
			n += el_replay_all(set, p->stream, shards, last, NULL);
		}
	}
	PG_FINALLY();
	{
		el_progress_end(reported);
	}
	PG_END_TRY();
	el_set_build_method(set, p->view);
	if (parked != NULL && parked->build_events > 0)
		ereport(WARNING,
				(errmsg("projection \"%s\" parked " INT64_FORMAT " events of " INT64_FORMAT " keys in its build",
						set->name, parked->build_events, parked->build_keys),
				 errdetail("A handler failed on an event of each key; the key's later events wait behind it."),
				 errhint("See event_log.dead_letters; after fixing the handler with event_log.alter_projection(), retry them with event_log.retry_dead_letters().")));
	return n;
}

/* Set each shard's checkpoint of an async projection, clearing errors. */
void
el_set_checkpoints(Oid view, int shards, int64 *last)
{
	for (int s = 0; s < shards; s++)
	{
		Oid			types[3] = {OIDOID, INT4OID, INT8OID};
		Datum		values[3] = {ObjectIdGetDatum(view), Int32GetDatum(s),
		Int64GetDatum(last[s])};

		el_catalog_sql("INSERT INTO event_log.projection_offsets AS o"
						" (projection, shard, seq, applied_at)"
						" VALUES ($1, $2, $3, now())"
						" ON CONFLICT (projection, shard) DO UPDATE"
						" SET seq = EXCLUDED.seq, applied_at = EXCLUDED.applied_at,"
						" error = NULL, error_seq = NULL, error_at = NULL",
						3, types, values, NULL, 0, 0);
	}
}
