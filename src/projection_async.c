/*
 * projection_async.c
 *	  Async projections: applying each shard's events after its checkpoint
 *	  (event_log.projection_offsets), recording a handler's error on its
 *	  shard, for run_projections() and the background worker's turns.
 *
 *	  Also the worker's side of event_log.handler_timeout: a worker that a
 *	  handler forced to end leaves a note naming the projection, and the next
 *	  worker records it as the projection's error.
 */
#include "postgres.h"

#include "access/table.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"

#include "catalog.h"
#include "event_log.h"
#include "projection.h"
#include "registry.h"

PG_FUNCTION_INFO_V1(el_run_projections);

#define EL_ASYNC_BATCH			1000	/* events read per shard at a time */

static void el_record_projection_error(Oid view, const char *message);

/* The async projection being run, for el_worker_exit(). */
static Oid	el_running_view = InvalidOid;

/* Where a worker ended by the second timer names the projection. */
static char *
el_overrun_note_path(void)
{
	return psprintf("pg_stat_tmp/event_log_overrun.%u", MyDatabaseId);
}

/*
 * on_proc_exit callback of the background worker: if the second timer
 * ended it, leave the note.  No database access here, only a file.
 */
void
el_worker_exit(int code, Datum arg)
{
	FILE	   *f;

	if (!el_handler_overran() || !OidIsValid(el_running_view))
		return;
	f = fopen(el_overrun_note_path(), "w");
	if (f != NULL)
	{
		fprintf(f, "%u\n", el_running_view);
		fclose(f);
	}
}

/*
 * At a worker's start, in a transaction (SPI connected): record the
 * projection a predecessor's note names as failed on all its shards.
 */
void
el_note_overrun(void)
{
	char	   *path = el_overrun_note_path();
	FILE	   *f = fopen(path, "r");
	unsigned int view;

	if (f == NULL)
		return;
	if (fscanf(f, "%u", &view) == 1 && OidIsValid(view))
		el_record_projection_error(view,
								   psprintf("a handler ignored the cancel of event_log.handler_timeout (%d ms); the worker had to end",
											el_handler_timeout));
	fclose(f);
	(void) unlink(path);
}

/* ---------------------------------------------------------------------
 * Async projections
 * ---------------------------------------------------------------------
 */

/* Read up to max events of a shard after seq `after`, copied. */
int
el_read_batch(Relation stream, Relation pk, int32 shard, int64 after,
			  int max, HeapTuple *out)
{
	Snapshot	snap = RegisterSnapshot(GetTransactionSnapshot());
	ElStreamScan *scan = el_shard_scan(stream, snap, shard, after);
	TupleTableSlot *slot = table_slot_create(stream, NULL);
	int			n = 0;

	while (n < max && el_stream_scan_next(scan, slot))
		out[n++] = ExecCopySlotHeapTuple(slot);
	el_stream_scan_end(scan);
	ExecDropSingleTupleTableSlot(slot);
	UnregisterSnapshot(snap);
	return n;
}

typedef struct ElApplyCall
{
	ElHandlerSet *set;
	TupleDesc	desc;
	HeapTuple  *events;
	const bool *skip;			/* events not to apply (parked), or NULL */
	int			count;
	ElApplyState *outer;		/* a build's, or NULL: a live run's own */
	TimestampTz deadline;		/* stop after an event once passed; 0: never */
	int			done;			/* events applied so far */
	MemoryContext evcxt;		/* per event, reset after each */
} ElApplyCall;

static void
el_apply_events(void *arg)
{
	ElApplyCall *call = (ElApplyCall *) arg;
	MemoryContext cxt = CurrentMemoryContext;
	int			natts = call->desc->natts;
	Datum	   *values = palloc(sizeof(Datum) * natts);
	bool	   *nulls = palloc(sizeof(bool) * natts);
	ElApplyState st;

	/*
	 * The stream may have columns after the contract's (docs/streams.md):
	 * deform into arrays sized from its descriptor, of which handlers see
	 * the first EL_NATTS.
	 */
	Assert(natts >= EL_NATTS);
	if (call->outer == NULL)
	{
		el_apply_begin(call->set, &st);
		st.timed = true;
	}
	for (call->done = 0; call->done < call->count; call->done++)
	{
		if (call->deadline != 0 && call->done > 0 &&
			GetCurrentTimestamp() >= call->deadline)
			break;
		if (call->skip != NULL && call->skip[call->done])
			continue;
		MemoryContextSwitchTo(call->evcxt);
		heap_deform_tuple(call->events[call->done], call->desc, values, nulls);
		el_apply(call->outer ? call->outer : &st, values, nulls);
		MemoryContextSwitchTo(cxt);
		MemoryContextReset(call->evcxt);
	}
	if (call->outer == NULL)
		el_apply_end(&st);
}

/*
 * Apply events[0..count) in a subtransaction, or the first *applied of
 * them if the deadline (0: none) passes first (never fewer than one),
 * passing over those skip (if not NULL) marks.  A live run (outer NULL)
 * runs each handler under event_log.handler_timeout; a build passes the
 * state of its own el_apply_begin(), which an error in the subtransaction
 * leaves as it was (its abort restores the user, settings and path).
 * Returns -1 if they went through, else the index of the event that
 * failed, with its error in *error (the subtransaction rolled back).
 */
int
el_apply_batch(ElHandlerSet *set, TupleDesc desc, HeapTuple *events,
			   const bool *skip, int count, TimestampTz deadline,
			   ElApplyState *outer, int *applied, ErrorData **error)
{
	ElApplyCall call = {set, desc, events, skip, count, outer, deadline, 0, NULL};
	ErrorData  *edata;

	call.evcxt = AllocSetContextCreate(CurrentMemoryContext, "event_log event",
									   ALLOCSET_DEFAULT_SIZES);
	edata = el_in_subxact(el_apply_events, &call);
	MemoryContextDelete(call.evcxt);
	*applied = call.done;
	if (edata == NULL)
		return -1;
	*error = edata;				/* left alone when all went through */
	return call.done;
}

static int64
el_tuple_seq(HeapTuple tup, TupleDesc desc)
{
	bool		isnull;

	return DatumGetInt64(heap_getattr(tup, Anum_el_seq, desc, &isnull));
}

/*
 * Move a shard's checkpoint from `from` to `seq`.  Only the holder of the
 * projection lock moves it, so it must still be at `from`; anything else
 * would mean events applied twice, and is an error.
 */
static void
el_checkpoint(Oid view, int32 shard, int64 from, int64 seq)
{
	Oid			types[4] = {OIDOID, INT4OID, INT8OID, INT8OID};
	Datum		values[4] = {ObjectIdGetDatum(view), Int32GetDatum(shard),
	Int64GetDatum(seq), Int64GetDatum(from)};

	if (el_catalog_sql("UPDATE event_log.projection_offsets"
						" SET seq = $3, applied_at = now(),"
						" error = NULL, error_seq = NULL, error_at = NULL"
						" WHERE projection = $1 AND shard = $2 AND seq = $4",
						4, types, values, NULL, 0, 0) != 1)
		elog(ERROR, "checkpoint of shard %d of projection %u moved under a run",
			 shard, view);
}

/*
 * Record an error of a whole projection (not of one event) on every shard:
 * each waits out event_log.retry_interval from now.
 */
static void
el_record_projection_error(Oid view, const char *message)
{
	el_catalog_sql("UPDATE event_log.projection_offsets"
					" SET error = $2, error_seq = NULL, error_at = now()"
					" WHERE projection = $1",
					2, (Oid[]) {OIDOID, TEXTOID},
					(Datum[]) {ObjectIdGetDatum(view), CStringGetTextDatum(message)},
					NULL, 0, 0);
}

static void
el_record_error(ElHandlerSet *set, int32 shard, int64 seq, ErrorData *edata)
{
	Oid			types[4] = {OIDOID, INT4OID, INT8OID, TEXTOID};
	Datum		values[4] = {ObjectIdGetDatum(set->view), Int32GetDatum(shard),
	Int64GetDatum(seq), CStringGetTextDatum(edata->message)};

	el_catalog_sql("UPDATE event_log.projection_offsets"
					" SET error = $4, error_seq = $3, error_at = now()"
					" WHERE projection = $1 AND shard = $2",
					4, types, values, NULL, 0, 0);
	ereport(WARNING,
			(errcode(edata->sqlerrcode),
			 errmsg("projection \"%s\" stopped at shard %d seq " INT64_FORMAT ": %s",
					set->name, shard, seq, edata->message),
			 errhint("Fix the handler with event_log.alter_projection() (or what it depends on); the next run resumes at this event.")));
}

/*
 * Which of batch[from..to) wait behind a parked event of their key:
 * skip[i] set, and behind[i] the seq they wait behind.  Returns whether any.
 */
static bool
el_mark_parked(ElParked *pk, int32 s, TupleDesc desc, HeapTuple *batch,
			   int from, int to, bool *skip, int64 *behind)
{
	bool		any = false;

	if (pk->keys[s] == NULL)
		return false;			/* nothing parked in the shard: all false */

	for (int i = from; i < to; i++)
	{
		Datum		values[Anum_el_key];
		bool		nulls[Anum_el_key];

		values[Anum_el_shard - 1] = heap_getattr(batch[i], Anum_el_shard, desc,
												 &nulls[Anum_el_shard - 1]);
		values[Anum_el_seq - 1] = (Datum) 0;
		nulls[Anum_el_seq - 1] = true;
		values[Anum_el_key - 1] = heap_getattr(batch[i], Anum_el_key, desc,
											   &nulls[Anum_el_key - 1]);
		behind[i] = el_parked_behind(pk, values, nulls);
		skip[i] = behind[i] >= 0;
		any |= skip[i];
	}
	return any;
}

/*
 * Park the events of batch[from..to) that skip marks, and move the run's
 * position (and the shard's checkpoint, for an async run) to batch[to - 1].
 */
static void
el_settle(ElShardRun *run, HeapTuple *batch, int from, int to,
		  const bool *skip, const int64 *behind)
{
	int64		seq = el_tuple_seq(batch[to - 1], run->desc);

	for (int i = from; i < to; i++)
		if (skip[i])
		{
			el_park_event(run->parked, batch[i], run->desc, NULL, behind[i]);
			run->parked_events++;
		}
	if (run->checkpoint)
		el_checkpoint(run->set->view, run->shard, run->seq, seq);
	run->seq = seq;
}

/*
 * Apply a batch of a shard's events, read after the run's position, in
 * subtransactions of up to run->segment events, moving the position (and
 * the checkpoint) past what went through.  Events of a parked key are
 * parked too.  A failing event stops the shard there (the events before it
 * applied again without it), with the error recorded, unless the policy is
 * to park: then it is parked, its key with it, and the rest of the batch
 * goes on.  Returns false once the shard stopped; sets run->out_of_time
 * once the deadline passed.
 */
bool
el_run_shard_batch(ElShardRun *run, HeapTuple *batch, int count)
{
	ElParked   *pk = run->parked;
	TupleDesc	desc = run->desc;
	bool	   *skip = palloc0(sizeof(bool) * count);
	int64	   *behind = palloc0(sizeof(int64) * count);
	int			from = 0;
	bool		stopped = false;

	while (from < count && !run->out_of_time)
	{
		int			n = Min(run->segment, count - from);
		int			failed;
		int			applied;
		ErrorData  *edata = NULL;
		bool		any = el_mark_parked(pk, run->shard, desc, batch, from, from + n,
										 skip, behind);

		failed = el_apply_batch(run->set, desc, batch + from, any ? skip + from : NULL,
								n, run->deadline, run->outer, &applied, &edata);
		if (failed < 0)
		{
			el_settle(run, batch, from, from + applied, skip, behind);
			run->total += applied;
			run->out_of_time = applied < n;
			from += applied;
			continue;
		}

		/*
		 * Apply again what came before the failing event (which may fail in
		 * turn, and then is the failing one).
		 */
		while (failed > 0)
		{
			int			again = el_apply_batch(run->set, desc, batch + from,
											   any ? skip + from : NULL,
											   failed, 0, run->outer, &applied, &edata);

			if (again < 0)
			{
				el_settle(run, batch, from, from + failed, skip, behind);
				run->total += failed;
				break;
			}
			failed = again;
		}
		from += failed;
		if (!pk->park)
		{
			el_record_error(run->set, run->shard, el_tuple_seq(batch[from], desc), edata);
			stopped = true;
			break;
		}
		el_park_event(pk, batch[from], desc, edata, -1);
		run->parked_events++;
		run->parked_keys++;
		if (run->checkpoint)
			el_checkpoint(run->set->view, run->shard, run->seq,
						  el_tuple_seq(batch[from], desc));
		run->seq = el_tuple_seq(batch[from], desc);
		if (!run->quiet)
			ereport(WARNING,
					(errcode(edata->sqlerrcode),
					 errmsg("projection \"%s\" parked shard %d seq " INT64_FORMAT " and its key: %s",
							run->set->name, run->shard, run->seq, edata->message),
					 errhint("See event_log.dead_letters; after fixing the handler with event_log.alter_projection(), retry them with event_log.retry_dead_letters().")));
		from++;
		run->total++;
	}
	el_park_flush(pk);
	pfree(skip);
	pfree(behind);
	return !stopped;
}

/*
 * Catch one async projection up by up to max_events events, shard by shard
 * in batches, each batch and its checkpoint in one subtransaction: an event
 * is applied exactly when its checkpoint moves past it.  A failing event
 * stops its shard there, with the error recorded; the batch's earlier
 * events are applied again without it.
 */
static int64
el_run_async(Oid view, int64 max_events, TimestampTz deadline)
{
	ElHandlerSet *set;
	ElProjection *p = el_projection_load(view);
	Relation	stream;
	Relation	pk;
	TupleDesc	desc;
	int			shards;
	int64	   *seqs;
	bool	   *done;
	ElParked   *parked;
	HeapTuple  *batch = palloc(sizeof(HeapTuple) * EL_ASYNC_BATCH);
	MemoryContext batchcxt;
	volatile int64 total = 0;
	volatile bool progress = true;
	volatile bool out_of_time = false;

	/* Held against drop_stream() to the end of the run's transaction. */
	shards = el_lock_stream(p->stream, AccessShareLock);
	set = el_live_handlers(view);
	el_check_stream_read(p->stream, set->owner, set->name);
	parked = el_parked_open(view, p->stream, shards, false);
	seqs = palloc0(sizeof(int64) * shards);
	done = palloc0(sizeof(bool) * shards);
	/*
	 * A shard stopped by an error is retried once event_log.retry_interval
	 * has passed since the error was recorded (alter_projection() clears
	 * it, for an immediate retry).
	 */
	{
		/*
		 * With the latest snapshot, not the statement's: it was taken before
		 * we got the projection lock, and another run may have moved the
		 * checkpoints since.
		 */
		Oid			types[2] = {OIDOID, INT4OID};
		Datum		values[2] = {ObjectIdGetDatum(view), Int32GetDatum(el_retry_interval)};

		el_catalog_sql("SELECT shard::int8, seq,"
							   " CASE WHEN error_at > now() - $2 * interval '1 ms' THEN 1 ELSE 0 END::int8"
							   " FROM event_log.projection_offsets WHERE projection = $1",
							   2, types, values, NULL, EL_CAT_READ | EL_CAT_LATEST, 0);
	}
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		int64		shard = el_spi_int8(r, 1);

		if (shard >= 0 && shard < shards)
		{
			seqs[shard] = el_spi_int8(r, 2);
			done[shard] = el_spi_int8(r, 3) == 1;
		}
	}

	stream = table_open(p->stream, AccessShareLock);
	pk = el_stream_pk_open(stream);
	desc = RelationGetDescr(stream);
	batchcxt = AllocSetContextCreate(CurrentMemoryContext, "event_log batch",
									 ALLOCSET_DEFAULT_SIZES);
	set->refcount++;
	el_running_view = view;
	PG_TRY();
	{
		while (progress && total < max_events && !out_of_time)
		{
			progress = false;
			for (int s = 0; s < shards && total < max_events && !out_of_time; s++)
			{
				MemoryContext old;
				int			count;

				if (done[s])
					continue;
				MemoryContextReset(batchcxt);
				old = MemoryContextSwitchTo(batchcxt);
				count = el_read_batch(stream, pk, s, seqs[s],
									  (int) Min(EL_ASYNC_BATCH, max_events - total), batch);
				MemoryContextSwitchTo(old);
				if (count == 0)
				{
					done[s] = true;
					continue;
				}
				{
					ElShardRun	run = {0};

					run.set = set;
					run.parked = parked;
					run.desc = desc;
					run.shard = s;
					run.seq = seqs[s];
					run.checkpoint = true;
					run.segment = count;	/* the batch in one subtransaction */
					run.deadline = deadline;
					if (!el_run_shard_batch(&run, batch, count))
						done[s] = true;
					seqs[s] = run.seq;
					total += run.total;
					out_of_time = run.out_of_time;
				}
				progress = true;
			}
		}
	}
	PG_FINALLY();
	{
		el_running_view = InvalidOid;
		el_release_set(set);
	}
	PG_END_TRY();
	MemoryContextDelete(batchcxt);
	el_stream_pk_close(pk);
	table_close(stream, AccessShareLock);
	return total;
}

typedef struct ElRunCall
{
	Oid			view;
	int64		max_events;
	TimestampTz deadline;
	int64		n;
} ElRunCall;

static void
el_run_async_call(void *arg)
{
	ElRunCall  *call = (ElRunCall *) arg;

	call->n = el_run_async(call->view, call->max_events, call->deadline);
}

/*
 * el_run_async() in a subtransaction.  An error that escapes it is the
 * projection's, not the event's: its handlers no longer compile (a table
 * they use was dropped, say).  It is recorded on every shard, and the
 * other projections go on.  A cancel of the running statement fails the
 * whole run.
 */
static int64
el_run_async_guarded(Oid view, int64 max_events, TimestampTz deadline)
{
	ElRunCall	call = {view, max_events, deadline, 0};
	ErrorData  *edata = el_in_subxact(el_run_async_call, &call);

	if (edata == NULL)
		return call.n;
	el_record_projection_error(view, edata->message);
	ereport(WARNING,
			(errcode(edata->sqlerrcode),
			 errmsg("projection \"%s\" could not run: %s",
					el_qualified_name(view), edata->message),
			 errhint("Fix the projection with event_log.alter_projection() or what its handlers depend on.")));
	return 0;
}

/*
 * One async projection's turn in the background worker (worker.c), in a
 * transaction of its own: up to max_events events, and no further event
 * once the deadline has passed, so one slow projection cannot hold back
 * the others for long.  Skipped (returns 0) if another session holds the
 * projection or it is gone.  SPI connected.
 */
int64
el_run_projection_turn(Oid view, int64 max_events, TimestampTz deadline)
{
	ElProjection *p;

	if (!el_lock_projection(view, false))
		return 0;
	p = el_projection_load(view);
	if (p == NULL || p->inline_mode)
		return 0;
	return el_run_async_guarded(view, max_events, deadline);
}

/*
 * The projections a catalog query (sql, of one column of their oids)
 * lists that the caller owns, or may act as the owner of (SPI connected).
 */
List *
el_owned_projections(const char *sql)
{
	List	   *views = NIL;

	el_catalog_sql(sql, 0, NULL, NULL, NULL, EL_CAT_READ, 0);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		bool		isnull;
		Oid			view = DatumGetObjectId(el_spi_value(r, 1, &isnull));

		if (has_privs_of_role(GetUserId(), el_rel_owner(view)))
			views = lappend_oid(views, view);
	}
	return views;
}

/*
 * event_log.run_projections(projection text DEFAULT NULL,
 *     max_events integer DEFAULT 10000) RETURNS bigint
 *
 * Catches up the async projections the caller owns (all of them for a
 * superuser), or the one named, by up to max_events events each.  A
 * projection another session is running or rebuilding is skipped.  Returns
 * the number of events applied.
 */
Datum
el_run_projections(PG_FUNCTION_ARGS)
{
	int64		max_events;
	int64		total = 0;
	Oid			named = InvalidOid;
	List	   *views = NIL;
	ListCell   *lc;

	el_require_arg(fcinfo, 1, "max_events");
	max_events = PG_GETARG_INT32(1);
	if (max_events < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_events must be at least 1")));

	SPI_connect();
	if (!PG_ARGISNULL(0))
	{
		named = el_projection_oid(PG_GETARG_TEXT_PP(0));
		el_require_owner(named);
		views = list_make1_oid(named);
	}
	else
	{
		views = el_owned_projections("SELECT projection FROM event_log.projections"
									 " WHERE mode = 'async' ORDER BY projection");
	}

	if (OidIsValid(named))
	{
		ElProjection *p = el_projection_load(named);

		if (p != NULL && p->inline_mode)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("projection \"%s\" is inline", get_rel_name(named)),
					 errdetail("Inline projections are applied by the appending transaction.")));
	}
	foreach(lc, views)
		total += el_run_projection_turn(lfirst_oid(lc), max_events, 0);
	SPI_finish();
	PG_RETURN_INT64(total);
}
