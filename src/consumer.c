/*
 * consumer.c
 *	  Consumer groups, the SQL functions: poll() with an optional wait for
 *	  new events, commit_offset(), committed_offset(), reset_offsets(),
 *	  drop_group(), channel() and shard_status().
 *
 *	  The decisions behind the subsystem are in docs/design/consumers.md.
 *	  Its other files: consumer_group.c (the group catalog, read and written
 *	  through kept plans as the catalog's owner, the way PostgreSQL's
 *	  foreign-key triggers act as the table's owner) and consumer_member.c
 *	  (members, their liveness locks, leases and the shards each holds).
 *	  The stream itself is always read as the caller.
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "commands/async.h"
#include "executor/tstoreReceiver.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/wait_event.h"

#include "archive.h"
#include "catalog.h"
#include "consumer.h"
#include "event_log.h"
#include "read.h"
#include "registry.h"
#include "stream.h"
#include "wake.h"

/*
 * From libpq/libpq.h, which we cannot include: it includes libpq-be.h, which
 * needs GSSAPI headers (libkrb5-dev) that nothing else here needs.  The
 * backend's wait set for its client connection, and where pq_init() puts
 * the socket in it (PostgreSQL 14 to 17 alike).
 */
#if PG_VERSION_NUM < 140000 || PG_VERSION_NUM >= 180000
#error "check FeBeWaitSet in libpq/libpq.h for this PostgreSQL version"
#endif
extern PGDLLIMPORT WaitEventSet *FeBeWaitSet;
#define EL_FEBE_SOCKET_POS	0	/* FeBeWaitSetSocketPos */
#define EL_FEBE_NEVENTS		3	/* FeBeWaitSetNEvents */

PG_FUNCTION_INFO_V1(el_poll);
PG_FUNCTION_INFO_V1(el_commit_offset);
PG_FUNCTION_INFO_V1(el_commit_polled);
PG_FUNCTION_INFO_V1(el_committed_offset);
PG_FUNCTION_INFO_V1(el_reset_offsets);
PG_FUNCTION_INFO_V1(el_drop_group);
PG_FUNCTION_INFO_V1(el_channel);
PG_FUNCTION_INFO_V1(el_shard_status);

/* ----------------------------------------------------------------
 * poll()
 * ----------------------------------------------------------------
 */

/*
 * What this session's last poll() returned, per shard: the events after
 * from[i] up to to[i] of shard[i], and the nacked events it delivered
 * again (rshard[i], rseq[i], consumer_deadletter.c), for a
 * poll(auto_commit => true) of the same group, stream and member to
 * commit.
 */
static struct
{
	int32		group_id;		/* 0: nothing remembered */
	Oid			relid;
	char		member[EL_MAX_NAME_BYTES + 1];
	bool		committed;		/* what it reads is committed */
	bool		in_xact;		/* its transaction has not ended yet */
	SubTransactionId subid;		/* the subtransaction it ran in */
	int			n;
	int32	   *shard;
	int64	   *from;
	int64	   *to;
	int			nretried;
	int			maxretried;
	int32	   *rshard;
	int64	   *rseq;
}			el_last_poll;

/*
 * Start remembering a poll of g by me (forgetting the previous one).
 * committed tells whether what the poll reads is known to be committed (see
 * el_poll).
 */
static void
el_last_poll_begin(ElGroup *g, const char *me, bool committed)
{
	el_last_poll.committed = committed;
	el_last_poll.in_xact = true;
	el_last_poll.subid = GetCurrentSubTransactionId();
	el_last_poll.group_id = 0;
	el_last_poll.n = 0;
	el_last_poll.nretried = 0;
	if (el_last_poll.shard != NULL)
	{
		pfree(el_last_poll.shard);
		pfree(el_last_poll.from);
		pfree(el_last_poll.to);
	}
	el_last_poll.shard = MemoryContextAlloc(TopMemoryContext, sizeof(int32) * g->shards);
	el_last_poll.from = MemoryContextAlloc(TopMemoryContext, sizeof(int64) * g->shards);
	el_last_poll.to = MemoryContextAlloc(TopMemoryContext, sizeof(int64) * g->shards);
	el_last_poll.relid = g->relid;
	strlcpy(el_last_poll.member, me, sizeof(el_last_poll.member));
	el_last_poll.group_id = g->id;
}

/*
 * Remember that a poll returned the events of shard after from up to to.
 * Not when the poll's transaction may have appended: it could roll its own
 * events back, and they must not be committed.
 */
static void
el_last_poll_add(Oid relid, int32 shard, int64 from, int64 to)
{
	int			i;

	if (el_last_poll.group_id == 0 || !el_last_poll.committed)
		return;
	el_shard_saw(relid, shard, to);

	/*
	 * One entry per shard: the arrays hold g->shards.  A shard read in
	 * several rounds of one look continues where it was.  A later look of a
	 * waiting poll reads the shard again from its committed offset (an
	 * earlier look that returned nothing may still have skipped events of
	 * other types): what the later look read replaces it.
	 */
	for (i = 0; i < el_last_poll.n; i++)
		if (el_last_poll.shard[i] == shard)
		{
			if (el_last_poll.to[i] != from)
				el_last_poll.from[i] = from;
			el_last_poll.to[i] = to;
			return;
		}
	el_last_poll.shard[i] = shard;
	el_last_poll.from[i] = from;
	el_last_poll.to[i] = to;
	el_last_poll.n++;
}

/*
 * Remember that the poll delivered the nacked event (shard, seq) again: a
 * commit of what it returned removes it from the group's dead letters.
 */
void
el_last_poll_redelivered(int32 shard, int64 seq)
{
	if (el_last_poll.group_id == 0)
		return;
	if (el_last_poll.nretried == el_last_poll.maxretried)
	{
		int			max = Max(16, el_last_poll.maxretried * 2);

		el_last_poll.rshard = el_last_poll.rshard == NULL ?
			MemoryContextAlloc(TopMemoryContext, sizeof(int32) * max) :
			repalloc(el_last_poll.rshard, sizeof(int32) * max);
		el_last_poll.rseq = el_last_poll.rseq == NULL ?
			MemoryContextAlloc(TopMemoryContext, sizeof(int64) * max) :
			repalloc(el_last_poll.rseq, sizeof(int64) * max);
		el_last_poll.maxretried = max;
	}
	el_last_poll.rshard[el_last_poll.nretried] = shard;
	el_last_poll.rseq[el_last_poll.nretried] = seq;
	el_last_poll.nretried++;
}

/*
 * commit_offset(shard, seq) by the member whose last poll in this session
 * delivered nacked events of the shard again: those at or below seq are
 * committed with it (el_ack_redelivered()).  Returns how many were.
 */
static uint64
el_commit_redelivered(ElGroup *g, const char *me, int32 shard, int64 seq)
{
	int32	   *shards;
	int64	   *seqs;
	int			n = 0;

	if (el_last_poll.group_id != g->id || el_last_poll.relid != g->relid ||
		strcmp(el_last_poll.member, me) != 0 || el_last_poll.nretried == 0)
		return 0;
	shards = palloc(sizeof(int32) * el_last_poll.nretried);
	seqs = palloc(sizeof(int64) * el_last_poll.nretried);
	for (int i = 0; i < el_last_poll.nretried; i++)
		if (el_last_poll.rshard[i] == shard && el_last_poll.rseq[i] <= seq)
		{
			shards[n] = shard;
			seqs[n++] = el_last_poll.rseq[i];
			el_last_poll.rseq[i] = -1;	/* done: a seq is never negative */
		}
	return el_ack_redelivered(g, shards, seqs, n);
}

/*
 * poll(auto_commit => true): commit what the previous poll of this session
 * returned for the same group, stream and member, as if the consumer had
 * called commit_offset() for each shard's last event.  A shard is moved only
 * if its offset is still where that poll read it from and the shard is
 * still leased to me; otherwise someone moved it meanwhile (a commit, a
 * reset, a member that took the shard over), and their word stands: the
 * events are delivered again if need be, which at least once allows.
 */
static uint64
el_auto_commit(ElGroup *g, const char *me)
{
	Datum		values[5];

	if (el_last_poll.group_id != g->id || el_last_poll.relid != g->relid ||
		strcmp(el_last_poll.member, me) != 0)
		return 0;
	/* The nacked events it delivered again (consumer_deadletter.c). */
	(void) el_ack_redelivered(g, el_last_poll.rshard, el_last_poll.rseq,
							  el_last_poll.nretried);
	el_last_poll.nretried = 0;
	if (el_last_poll.n == 0)
	{
		el_last_poll.group_id = 0;
		return 0;
	}
	values[0] = Int32GetDatum(g->id);
	values[1] = el_int4_array(el_last_poll.shard, el_last_poll.n);
	values[2] = el_int8_array(el_last_poll.from, el_last_poll.n);
	values[3] = el_int8_array(el_last_poll.to, el_last_poll.n);
	values[4] = CStringGetTextDatum(me);
	el_last_poll.group_id = 0;
	return el_query(Q_OFFSETS_AUTO, values, NULL, 0);
}

/*
 * A receiver in front of the poll's tuplestore that notes the seq of the
 * last row passed on.  Offsets are dense, but what a role sees of a shard
 * need not be: row-level security may hide some events, so where a read
 * stopped is the last seq it returned, not where it started plus the count.
 */
typedef struct ElSeqDest
{
	DestReceiver pub;
	DestReceiver *inner;
	int64		last;
} ElSeqDest;

static bool
el_seq_receive(TupleTableSlot *slot, DestReceiver *self)
{
	ElSeqDest  *d = (ElSeqDest *) self;
	bool		isnull;

	/* The read plans return the event's columns: seq is the second. */
	d->last = DatumGetInt64(slot_getattr(slot, 2, &isnull));
	return d->inner->receiveSlot(slot, d->inner);
}

static void
el_seq_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
	ElSeqDest  *d = (ElSeqDest *) self;

	d->inner->rStartup(d->inner, operation, typeinfo);
}

static void
el_seq_shutdown(DestReceiver *self)
{
	ElSeqDest  *d = (ElSeqDest *) self;

	d->inner->rShutdown(d->inner);
}

static void
el_seq_destroy(DestReceiver *self)
{
}

/*
 * One look: settle my shards, then read up to max_count events after their
 * committed offsets into dest, with a new snapshot (in READ COMMITTED; the
 * transaction's in REPEATABLE READ and SERIALIZABLE).
 *
 * Fairness: each pass gives every shard that still has events an equal
 * share of what is left of max_count, starting from a shard that rotates
 * from call to call, until max_count is reached or every shard is drained.
 * Within a shard events come in seq order.  Each read goes on after the
 * last seq the previous one returned (see ElSeqDest).
 */
static uint64
el_poll_once(ElGroup *g, const char *me, int max_count, Datum types,
			 DestReceiver *dest)
{
	ElSeqDest	seqdest = {{el_seq_receive, el_seq_startup, el_seq_shutdown,
	el_seq_destroy, DestTuplestore}, dest, 0};
	static uint32 rotation = 0;
	int32	   *shards = palloc(sizeof(int32) * g->shards);
	int64	   *after = palloc(sizeof(int64) * g->shards);
	bool	   *active = palloc(sizeof(bool) * g->shards);
	int64	   *archive_low = palloc(sizeof(int64) * g->shards);	/* 0: the log */
	int			nheld,
				nactive,
				start;
	int64		left = max_count;
	uint64		total = 0;

	nheld = el_settle_shards(g, me, shards, after);
	if (nheld < 0)
	{
		/* The group is gone: open (create) it again, once. */
		el_group_reopen(g);
		nheld = el_settle_shards(g, me, shards, after);
	}
	if (nheld <= 0)
		return 0;

	PushActiveSnapshot(GetTransactionSnapshot());
	/* Offsets below a low watermark, by the group's policy (retention). */
	el_poll_check_watermarks(g, shards, after, nheld, archive_low);
	/* Events nacked and then retried come first (consumer_deadletter.c). */
	total = el_redeliver_nacked(g, shards, nheld, &left, dest);
	nactive = nheld;
	for (int i = 0; i < nheld; i++)
		active[i] = true;
	start = rotation++ % nheld;
	while (left > 0 && nactive > 0)
	{
		int64		share = Max(1, left / nactive);

		for (int k = 0; k < nheld && left > 0; k++)
		{
			int			i = (start + k) % nheld;
			int64		ask = Min(share, left);
			uint64		got;

			if (!active[i])
				continue;
			seqdest.last = after[i];
			if (archive_low[i] > 0)
			{
				int64		looked;

				/* The archive up to the watermark, then the log (retention). */
				got = el_archive_read_shard(g->relid, shards[i], after[i], ask,
											archive_low[i], types,
											(DestReceiver *) &seqdest, &looked);
				seqdest.last = Max(seqdest.last, looked);
				if (seqdest.last > after[i])
					el_last_poll_add(g->relid, shards[i], after[i], seqdest.last);
				after[i] = seqdest.last;
				left -= got;
				total += got;
				if (after[i] >= archive_low[i] - 1)
					archive_low[i] = 0;
				else if ((int64) got < ask)
				{
					active[i] = false;
					nactive--;
				}
				continue;
			}
			got = el_read_shard_types(g->relid, shards[i], after[i], ask,
									  types, (DestReceiver *) &seqdest);

			/*
			 * A read filtered by type that found fewer than it asked for
			 * went through the end of the shard: the events of other types
			 * up to that end are skipped, and an auto-commit (or
			 * commit_polled()) moves the offset past them.
			 */
			if (types != (Datum) 0 && (int64) got < ask)
				seqdest.last = Max(seqdest.last, el_shard_end(g->relid, shards[i]));
			if (seqdest.last > after[i])
				el_last_poll_add(g->relid, shards[i], after[i], seqdest.last);
			after[i] = seqdest.last;
			left -= got;
			total += got;
			if ((int64) got < ask)
			{
				active[i] = false;
				nactive--;
			}
		}
	}
	PopActiveSnapshot();
	return total;
}

/*
 * Sleep until the latch is set or timeout_ms have passed, for a waiting
 * poll().  Also wakes when the client's connection is closed (a consumer
 * killed or gone while it waits): the session then ends at once, as
 * PostgreSQL's client_connection_check_interval would end it, so that its
 * member lock, and with it its shards, go now and not when the wait (up to
 * an hour) is over.  Returns false if the wait should end anyway (the
 * client is gone but interrupts are held off).
 *
 * A client that vanished without closing its connection (a machine that
 * lost power, a network cut) is not noticed here; TCP keepalives
 * (tcp_keepalives_idle) and the lease timeout cover it.
 */
static bool
el_wait(long timeout_ms)
{
	WaitEvent	events[EL_FEBE_NEVENTS];
	int			n;

	/* No client connection (a background worker, single-user mode). */
	if (whereToSendOutput != DestRemote || MyProcPort == NULL || FeBeWaitSet == NULL)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout_ms, PG_WAIT_EXTENSION);
		return true;
	}

	/*
	 * The backend's own wait set: its socket, its latch and postmaster
	 * death.  Every user of the set sets the socket's events it waits for,
	 * as pq_check_connection() does, so we need not restore them.
	 */
	ModifyWaitEvent(FeBeWaitSet, EL_FEBE_SOCKET_POS, WL_SOCKET_CLOSED, NULL);
	n = WaitEventSetWait(FeBeWaitSet, timeout_ms, events, lengthof(events),
						 PG_WAIT_EXTENSION);
	for (int i = 0; i < n; i++)
	{
		if (events[i].events & WL_POSTMASTER_DEATH)
			ereport(FATAL,
					(errcode(ERRCODE_ADMIN_SHUTDOWN),
					 errmsg("terminating connection due to unexpected postmaster exit")));
		if (events[i].events & WL_SOCKET_CLOSED)
		{
			/* What ProcessInterrupts() does with a lost connection. */
			ClientConnectionLost = true;
			InterruptPending = true;
			CHECK_FOR_INTERRUPTS();
			return false;
		}
	}
	return true;
}

/* Milliseconds in an interval, or -1 if it is out of our range. */
static int64
el_interval_ms(Interval *iv)
{
	int64		usecs;

	if (iv->month != 0 || iv->day < 0 || iv->day > 1 || iv->time < 0 ||
		iv->time > (int64) EL_MAX_WAIT_MS * 1000)
		return -1;
	usecs = iv->day * USECS_PER_DAY + iv->time;
	if (usecs > (int64) EL_MAX_WAIT_MS * 1000)
		return -1;
	return (usecs + 999) / 1000;
}

/*
 * event_log.poll(group_name text, stream regclass, max_count int DEFAULT 100,
 *				  member text DEFAULT NULL, wait interval DEFAULT NULL,
 *				  auto_commit boolean DEFAULT false, types text[] DEFAULT NULL)
 *		RETURNS SETOF event_log.event
 *
 * types (0.3; absent from a 0.1 or 0.2 catalog's declaration): only events
 * of these types are returned; the others are skipped, and what the poll
 * remembers for auto-commit and commit_polled() goes past them.  The first
 * types polled become the group's, which later polls must keep
 * (el_group_types()); a 0.1 or 0.2 catalog does not keep them.
 *
 * With auto_commit, the events the previous poll of this session returned
 * (same group, stream and member) are committed first (el_auto_commit).
 * The rows it updates stay locked until the transaction ends, through a
 * wait too: other sessions' commits and resets of those shards wait for it.
 */
Datum
el_poll(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int32		max_count;
	char	   *me;
	int64		wait_ms = 0;
	bool		auto_commit;
	Datum		types;
	bool		reads_committed;
	ElGroup		g;
	DestReceiver *dest;
	LOCKTAG		wait_tag;
	TimestampTz deadline = 0;
	MemoryContext attempt_cxt;

	el_require_arg(fcinfo, 0, "group_name");
	el_require_arg(fcinfo, 1, "stream");
	el_require_arg(fcinfo, 2, "max_count");
	max_count = PG_GETARG_INT32(2);
	if (max_count < 1 || max_count > EL_MAX_POLL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_count must be between 1 and %d", EL_MAX_POLL),
				 errdetail("The requested max_count was %d.", max_count)));
	me = el_member_arg(fcinfo, 3);
	el_require_arg(fcinfo, 5, "auto_commit");
	auto_commit = PG_GETARG_BOOL(5);
	types = el_types_arg(fcinfo, 6);
	if (!PG_ARGISNULL(4))
	{
		wait_ms = el_interval_ms(PG_GETARG_INTERVAL_P(4));
		if (wait_ms < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("wait must be between 0 and 1 hour")));
		if (wait_ms > 0 && IsolationUsesXactSnapshot())
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("poll() cannot wait in a REPEATABLE READ or SERIALIZABLE transaction"),
					 errdetail("The transaction's snapshot would never show new events."),
					 errhint("Poll with wait in READ COMMITTED, or poll without wait.")));
	}

	/* What the poll reads is committed unless we appended to the stream. */
	reads_committed = !el_appended_here(PG_GETARG_OID(1));
	el_group_begin(&g, fcinfo, true);
	types = el_group_types(&g, types);	/* the group's, from 0.3 on */
	if (auto_commit)
		(void) el_auto_commit(&g, me);
	el_last_poll_begin(&g, me, reads_committed);

	dest = CreateDestReceiver(DestTuplestore);
	SetTuplestoreDestReceiverParams(dest, el_result_store(fcinfo, true),
									rsinfo->econtext->ecxt_per_query_memory,
									false, NULL, NULL);
	attempt_cxt = AllocSetContextCreate(CurrentMemoryContext,
										"event_log poll attempt",
										ALLOCSET_SMALL_SIZES);

	/*
	 * Take the wait lock before the first look: an append that commits after
	 * it is held wakes us, and one that committed before is visible to the
	 * look.  Resetting the latch before each look closes the gap between a
	 * look and the wait.
	 */
	if (wait_ms > 0)
	{
		el_wait_tag(&wait_tag, g.relid);
		(void) LockAcquire(&wait_tag, AccessShareLock, false, false);
		deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), wait_ms);
	}
	for (;;)
	{
		MemoryContext old = MemoryContextSwitchTo(attempt_cxt);
		uint64		got;
		long		left;

		if (wait_ms > 0)
			ResetLatch(MyLatch);
		got = el_poll_once(&g, me, max_count, types, dest);
		MemoryContextSwitchTo(old);
		MemoryContextReset(attempt_cxt);
		if (got > 0 || wait_ms == 0)
			break;
		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		if (left <= 0)
			break;

		/*
		 * Wake up at least every third of the lease to renew it and to take
		 * over shards freed meanwhile.
		 */
		if (!el_wait(Min(left, Max(el_lease_timeout / 3, 10))))
			break;
		CHECK_FOR_INTERRUPTS();
	}
	if (wait_ms > 0)
		LockRelease(&wait_tag, AccessShareLock, false);

	dest->rDestroy(dest);		/* it lives in SPI's memory */
	SPI_finish();
	return (Datum) 0;
}

/* ----------------------------------------------------------------
 * Offsets
 * ----------------------------------------------------------------
 */

/*
 * Lock a shard's row of the group (waiting for other transactions).  If
 * the group is gone (dropped since this backend looked it up, or by a
 * transaction that committed while we waited for the row): with create, it
 * is opened again by name, and created if need be, as the first use of a
 * group creates it; without, returns false.
 */
static bool
el_lock_offset(ElGroup *g, int32 shard, ElLease *lease, bool create)
{
	Datum		values[2];

	values[0] = Int32GetDatum(g->id);
	values[1] = Int32GetDatum(shard);
	if (el_query(Q_OFFSET_LOCK, values, NULL, 1) != 1)
	{
		if (!create)
			return false;
		el_group_reopen(g);
		values[0] = Int32GetDatum(g->id);
		if (el_query(Q_OFFSET_LOCK, values, NULL, 1) != 1)
			elog(ERROR, "consumer group %d has no row for shard %d", g->id, shard);
	}
	el_result_lease(0, lease);
	SPI_freetuptable(SPI_tuptable);
	return true;
}

static void
el_set_offset(ElGroup *g, int32 shard, int64 seq)
{
	Datum		values[3];

	values[0] = Int32GetDatum(g->id);
	values[1] = Int32GetDatum(shard);
	values[2] = Int64GetDatum(seq);
	el_query(Q_OFFSET_SET, values, NULL, 0);
}

/*
 * Refuse an offset beyond what the shard holds.  committed: the transaction
 * has not appended to the stream (el_appended_here()), so the end it sees
 * is committed and can be remembered.
 */
static void
el_check_within(ElGroup *g, int32 shard, int64 seq, bool committed)
{
	int64		end;

	if (seq <= el_shard_seen_end(g->relid, shard))
		return;
	end = el_shard_end(g->relid, shard);
	if (committed)
		el_shard_saw(g->relid, shard, end);
	if (seq > end)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("offset " INT64_FORMAT " is beyond the end of shard %d of event stream \"%s\"",
						seq, shard, el_qualified_name(g->relid)),
				 errdetail("The shard's last event has seq " INT64_FORMAT ".", end),
				 errhint("Commit the seq of the last event you processed.")));
}

/*
 * event_log.commit_offset(group_name text, stream regclass, shard int,
 *						   seq bigint, member text DEFAULT NULL)
 *
 * The row lock (FOR UPDATE, waiting) serializes commits of one shard: a
 * second committer re-reads the offset the first committed.  It is the only
 * row this locks, so commits cannot deadlock with each other; poll() never
 * waits for it (SKIP LOCKED).
 */
Datum
el_commit_offset(PG_FUNCTION_ARGS)
{
	bool		committed;
	ElGroup		g;
	ElLease		lease;
	int32		shard;
	int64		seq;
	char	   *me;
	uint64		redelivered;
	int32		lock_id;

	el_require_arg(fcinfo, 0, "group_name");
	el_require_arg(fcinfo, 1, "stream");
	el_require_arg(fcinfo, 2, "shard");
	el_require_arg(fcinfo, 3, "seq");
	shard = PG_GETARG_INT32(2);
	seq = PG_GETARG_INT64(3);
	me = el_member_arg(fcinfo, 4);
	el_check_shard(PG_GETARG_OID(1), el_require_stream(PG_GETARG_OID(1)), shard);
	if (seq < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("seq must not be negative")));

	committed = !el_appended_here(PG_GETARG_OID(1));
	el_group_begin(&g, fcinfo, true);
	/* Nacked events my last poll delivered again, up to seq, are done. */
	redelivered = el_commit_redelivered(&g, me, shard, seq);

	/*
	 * The common case in one statement: the shard is leased to me, and
	 * this session is still member `me` (the member's row names the lock
	 * this session holds: no other session took the name over), the
	 * offset moves forwards and stays within what this backend has seen
	 * of the shard.  The UPDATE waits for the row's lock and rechecks its
	 * conditions on the newest version, as the FOR UPDATE below would;
	 * anything else (another holder, no holder, another session as `me`,
	 * the same or a lower offset, an offset not seen yet, a stale group id)
	 * takes the full path, where el_check_lease() refuses what it must.
	 */
	if (seq <= el_shard_seen_end(g.relid, shard) && el_member_held_here(g.id, me, &lock_id))
	{
		Datum		values[5];

		values[0] = Int32GetDatum(g.id);
		values[1] = Int32GetDatum(shard);
		values[2] = Int64GetDatum(seq);
		values[3] = CStringGetTextDatum(me);
		values[4] = Int32GetDatum(lock_id);
		if (el_query(Q_OFFSET_ADVANCE, values, NULL, 0) == 1)
		{
			SPI_finish();
			PG_RETURN_VOID();
		}
	}

	(void) el_lock_offset(&g, shard, &lease, true);
	el_check_lease(&g, &lease, me);
	/* A seq below the offset commits only the events delivered again. */
	if (seq < lease.committed_seq && redelivered == 0)
		ereport(ERROR,
				(errcode(ERRCODE_EL_OFFSET_BACKWARDS),
				 errmsg("cannot move the offset of consumer group \"%s\" backwards",
						text_to_cstring(g.name)),
				 errdetail("Shard %d of event stream \"%s\" is committed up to seq " INT64_FORMAT "; the new offset was " INT64_FORMAT ".",
						   shard, el_qualified_name(g.relid), lease.committed_seq, seq),
				 errhint("To process events again, use event_log.reset_offsets().")));
	if (seq > lease.committed_seq)
	{
		el_check_within(&g, shard, seq, committed);
		el_set_offset(&g, shard, seq);
	}
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * event_log.commit_polled(group_name text, stream regclass,
 *						   member text DEFAULT NULL) RETURNS integer
 *
 * Kafka's commitSync() after poll(): commits what the last poll() of this
 * session returned, if that poll was of the same group, stream and member,
 * exactly as the next poll(auto_commit => true) would have (el_auto_commit:
 * a shard moves only if nobody else moved it meanwhile and it is still
 * leased to me).  Then forgets that poll, so a second call commits nothing.
 * Returns the number of shards whose offsets it moved.  For consumers that
 * auto-commit and stop cleanly: without it, their last batch is delivered
 * again.
 */
Datum
el_commit_polled(PG_FUNCTION_ARGS)
{
	ElGroup		g;
	char	   *me;
	uint64		moved;

	el_require_arg(fcinfo, 0, "group_name");
	el_require_arg(fcinfo, 1, "stream");
	me = el_member_arg(fcinfo, 2);
	(void) el_require_stream(PG_GETARG_OID(1));

	/*
	 * The checks of commit_offset(): SELECT on the stream (the stream's
	 * owner gets no exemption here, unlike drop_group()) and the group's
	 * ownership.  It does not create a group: there is nothing to commit in
	 * a group that does not exist.
	 */
	el_check_select(PG_GETARG_OID(1));
	el_group_begin(&g, fcinfo, false);
	if (g.id == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("consumer group \"%s\" of event stream \"%s\" does not exist",
						text_to_cstring(PG_GETARG_TEXT_PP(0)),
						el_qualified_name(PG_GETARG_OID(1))),
				 errhint("A group is created by its first poll().")));
	el_group_check_owner(&g);
	el_check_member_here(&g, me);
	moved = el_auto_commit(&g, me);
	SPI_finish();
	PG_RETURN_INT32((int32) moved);
}

/*
 * event_log.committed_offset(group_name text, stream regclass, shard int)
 *		RETURNS bigint: 0 when nothing was committed (or no such group).
 */
Datum
el_committed_offset(PG_FUNCTION_ARGS)
{
	Oid			relid;
	int32		shard;
	Datum		values[3];
	int64		result = 0;
	bool		isnull;

	el_require_arg(fcinfo, 0, "group_name");
	el_require_arg(fcinfo, 1, "stream");
	el_require_arg(fcinfo, 2, "shard");
	relid = PG_GETARG_OID(1);
	shard = PG_GETARG_INT32(2);
	el_check_name(PG_GETARG_TEXT_PP(0), "group name");
	el_check_shard(relid, el_require_stream(relid), shard);
	/* An offset tells how far the stream goes: for its readers only. */
	el_check_select(relid);

	values[0] = ObjectIdGetDatum(relid);
	values[1] = PG_GETARG_DATUM(0);
	values[2] = Int32GetDatum(shard);
	SPI_connect();
	if (el_query(Q_OFFSET_GET, values, NULL, 1) == 1)
		result = DatumGetInt64(el_spi_value(0, 1, &isnull));
	SPI_finish();
	PG_RETURN_INT64(result);
}

/*
 * Per shard, the offset after which every event was recorded at or after t:
 * one before the first such event, or the end of the shard if there is
 * none.  recorded_at is not ordered by seq (it is the appending
 * transaction's start), so "the last event before t" would skip events.
 * Read as the caller (privileges and row-level security apply), with the
 * operators spelled out and the path pinned like the catalog statements'.
 */
static int64
el_offset_at_time(Oid relid, int32 shard, Datum t)
{
	char	   *name = el_qualified_name(relid);
	char	   *sql = psprintf("SELECT COALESCE(pg_catalog.min(seq) OPERATOR(pg_catalog.-) 1,"
							   " (SELECT pg_catalog.max(seq) FROM %s WHERE shard OPERATOR(pg_catalog.=) $1), 0)"
							   " FROM %s WHERE shard OPERATOR(pg_catalog.=) $1"
							   " AND recorded_at OPERATOR(pg_catalog.>=) $2",
							   name, name);
	Oid			types[2] = {INT4OID, TIMESTAMPTZOID};
	Datum		values[2];
	bool		isnull;

	values[0] = Int32GetDatum(shard);
	values[1] = t;
	el_push_catalog_path();
	(void) el_exec_as_caller(sql, 2, types, values, true, 1);
	PopOverrideSearchPath();
	return DatumGetInt64(el_spi_value(0, 1, &isnull));
}

/*
 * event_log.reset_offsets(group_name, stream, to_position text, to_seq
 *		bigint, to_time timestamptz, only_shard int)
 *		RETURNS TABLE (shard int, old_seq bigint, new_seq bigint)
 *
 * Exactly one target: to_position 'start' or 'end', to_seq, or to_time.
 * Every new offset is computed and every lease checked before anything is
 * written.  Rows are locked in shard order (waiting), like commit_offset()
 * locks its one row, so two resets cannot deadlock.
 */
Datum
el_reset_offsets(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ElGroup		g;
	int			targets = 0;
	char	   *position = NULL;
	int32		first,
				last;
	int64	   *new_seq;
	ElLease    *old;
	char	   *me = el_session_member();
	bool		committed;

	el_require_arg(fcinfo, 0, "group_name");
	el_require_arg(fcinfo, 1, "stream");
	committed = !el_appended_here(PG_GETARG_OID(1));
	for (int i = 2; i <= 4; i++)
		targets += PG_ARGISNULL(i) ? 0 : 1;
	if (targets != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("reset_offsets() needs exactly one of to_position, to_seq and to_time"),
				 errhint("For example: event_log.reset_offsets('mailer', 'shop.cart_events', to_position => 'start').")));
	if (!PG_ARGISNULL(2))
	{
		position = text_to_cstring(PG_GETARG_TEXT_PP(2));
		if (strcmp(position, "start") != 0 && strcmp(position, "end") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid to_position \"%s\"", position),
					 errhint("Use 'start' or 'end'.")));
	}
	if (!PG_ARGISNULL(3) && PG_GETARG_INT64(3) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("to_seq must not be negative")));
	if (!PG_ARGISNULL(4) && TIMESTAMP_NOT_FINITE(PG_GETARG_TIMESTAMPTZ(4)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("to_time must be finite")));

	el_check_name(PG_GETARG_TEXT_PP(0), "group name");
	first = 0;
	last = el_require_stream(PG_GETARG_OID(1)) - 1;
	if (!PG_ARGISNULL(5))
	{
		first = last = PG_GETARG_INT32(5);
		el_check_shard(PG_GETARG_OID(1), el_require_stream(PG_GETARG_OID(1)), first);
	}

	el_group_begin(&g, fcinfo, true);
	new_seq = palloc(sizeof(int64) * g.shards);
	old = palloc(sizeof(ElLease) * g.shards);
	for (int32 s = first; s <= last; s++)
	{
		/* The start is the shard's low watermark (retention). */
		int64		low = el_low_watermark(g.relid, s, GetActiveSnapshot());

		if (position && strcmp(position, "start") == 0)
			new_seq[s] = low - 1;
		else if (position)
			new_seq[s] = el_shard_end(g.relid, s);
		else if (!PG_ARGISNULL(3))
		{
			new_seq[s] = PG_GETARG_INT64(3);
			el_check_within(&g, s, new_seq[s], committed);
			if (new_seq[s] < low - 1)
				el_below_watermark(g.relid, s, new_seq[s], low);
		}
		else
			new_seq[s] = el_offset_at_time(g.relid, s, PG_GETARG_DATUM(4));
	}
	for (int32 s = first; s <= last; s++)
	{
		(void) el_lock_offset(&g, s, &old[s], true);
		el_check_lease(&g, &old[s], me);
	}

	InitMaterializedSRF(fcinfo, 0);
	for (int32 s = first; s <= last; s++)
	{
		Datum		values[3];
		bool		nulls[3] = {0};

		if (new_seq[s] != old[s].committed_seq)
			el_set_offset(&g, s, new_seq[s]);
		values[0] = Int32GetDatum(s);
		values[1] = Int64GetDatum(old[s].committed_seq);
		values[2] = Int64GetDatum(new_seq[s]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	SPI_finish();
	return (Datum) 0;
}

/*
 * event_log.drop_group(group_name text, stream regclass) RETURNS boolean
 *
 * Removes the group, its offsets and members; false if there was none.
 * Refused while another live member holds one of its shards.
 */
Datum
el_drop_group(PG_FUNCTION_ARGS)
{
	ElGroup		g;
	ElLease		lease;
	Datum		values[1];
	char	   *me = el_session_member();

	el_require_arg(fcinfo, 0, "group_name");
	el_require_arg(fcinfo, 1, "stream");
	el_group_begin(&g, fcinfo, false);
	if (g.id == 0)
	{
		SPI_finish();
		PG_RETURN_BOOL(false);
	}
	for (int32 s = 0; s < g.shards; s++)
	{
		if (!el_lock_offset(&g, s, &lease, false))
		{
			/* Dropped meanwhile, by a transaction that has committed. */
			SPI_finish();
			PG_RETURN_BOOL(false);
		}
		el_check_lease(&g, &lease, me);
	}
	values[0] = Int32GetDatum(g.id);
	el_forget_nacks(g.id, InvalidOid);
	el_query(Q_GROUP_DROP, values, NULL, 0);
	el_group_forget();
	CacheInvalidateRelcacheByRelid(g.relid);
	SPI_finish();
	PG_RETURN_BOOL(true);
}

/* ----------------------------------------------------------------
 * Visibility
 * ----------------------------------------------------------------
 */

static char *
el_channel_name(Oid relid)
{
	return psprintf("event_log_%u", relid);
}

/* event_log.channel(stream regclass) RETURNS text */
Datum
el_channel(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);

	(void) el_require_stream(relid);
	PG_RETURN_TEXT_P(cstring_to_text(el_channel_name(relid)));
}

/*
 * event_log.shard_status(stream, shard, after_seq [, types text[]],
 *		OUT log_end bigint, OUT next_recorded_at timestamptz
 *		[, OUT lag_events bigint])
 *
 * The form with types (0.3, consumer_lag) counts in lag_events, and looks
 * for next_recorded_at among, only the events of those types (every type
 * when NULL).  NULLs when the caller may not read the whole stream (no
 * SELECT on it, no USAGE on its schema, without which the reads below
 * would fail, or row-level security that hides rows from it: the counts
 * would be of events it cannot see, and would give away the offsets the
 * views hide), so that consumer_lag lists every group to everybody without
 * failing on one.
 */
Datum
el_shard_status(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	int32		shard = PG_GETARG_INT32(1);
	int64		after_seq = PG_GETARG_INT64(2);
	TupleDesc	tupdesc;
	Datum		values[3] = {0};
	bool		nulls[3] = {true, true, true};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (!PG_ARGISNULL(0) && !PG_ARGISNULL(1) && !PG_ARGISNULL(2) &&
		el_stream_shards(relid) > shard && shard >= 0 && after_seq >= 0 &&
		pg_class_aclcheck(relid, GetUserId(), ACL_SELECT) == ACLCHECK_OK &&
		pg_namespace_aclcheck(get_rel_namespace(relid), GetUserId(), ACL_USAGE) == ACLCHECK_OK &&
		check_enable_rls(relid, InvalidOid, true) != RLS_ENABLED)
	{
		Datum		types = el_types_arg(fcinfo, 3);
		int64		end;

		SPI_connect();
		end = el_shard_end(relid, shard);
		values[0] = Int64GetDatum(end);
		nulls[0] = false;
		if (el_read_shard_types(relid, shard, after_seq, 1, types, NULL) == 1)
			values[1] = el_spi_value(0, Anum_el_recorded_at, &nulls[1]);
		values[2] = Int64GetDatum(types == (Datum) 0 ? end - after_seq :
								  el_count_shard_types(relid, shard, after_seq, types));
		nulls[2] = false;
		SPI_finish();
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* ----------------------------------------------------------------
 * Transaction ends
 * ----------------------------------------------------------------
 */

/*
 * After an abort: the remembered group may have been created by the aborted
 * transaction, so it is looked up again.  The last poll is forgotten only if
 * it ran in what aborted (the transaction, or the subtransaction subid or
 * one inside it): the statement may have failed after the poll read its
 * events and before they reached the consumer.  An abort elsewhere (a
 * consumer's savepoint around one event's processing, say) leaves it.
 */
static void
el_forget_on_abort(SubTransactionId subid)
{
	el_group_forget();
	if (el_last_poll.in_xact &&
		(subid == InvalidSubTransactionId || el_last_poll.subid >= subid))
	{
		el_last_poll.group_id = 0;
		el_last_poll.in_xact = false;
	}
}

static void
el_consumer_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			el_forget_on_abort(InvalidSubTransactionId);
			/* FALLTHROUGH */
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_COMMIT:
			el_last_poll.in_xact = false;
			break;
		default:
			break;
	}
}

static void
el_consumer_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
							 SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		el_forget_on_abort(mySubid);
}

/*
 * At pre-commit of a transaction that appended to the stream: NOTIFY the
 * stream's channel if it has a consumer group (see wake.c).
 */
static void
el_notify_consumers(Oid relid)
{
	if (el_stream_has_consumers(relid))
		Async_Notify(el_channel_name(relid), "");
}

void
el_consumer_init(void)
{
	RegisterXactCallback(el_consumer_xact_callback, NULL);
	RegisterSubXactCallback(el_consumer_subxact_callback, NULL);
	el_append_commit_hook = el_notify_consumers;
	el_consumer_cache_init();
	el_on_stream_drop(el_consumer_forget_stream);
}
