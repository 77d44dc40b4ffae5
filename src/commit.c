/*
 * commit.c
 *	  Shard locks, and how the commits of a shard's appenders are ordered.
 *
 *	  Every append takes its shard's lock (el_lock_shard()) before it reads
 *	  the end of the shard; the lock is what makes seq follow commit order
 *	  (docs/design/offsets.md).  How long it is held is the stream's commit
 *	  mode, a column of event_log.streams:
 *
 *	  serial (the default)
 *		The lock is a transaction lock: PostgreSQL releases it after the
 *		holder's commit record is flushed and its commit is visible.  A
 *		reader sees an event only once it is durable, and the shard's
 *		transactions flush one after another.
 *
 *	  grouped
 *		The lock is released as soon as the holder's commit is visible, which
 *		can be before its commit record reaches disk, and the holder then
 *		waits for the flush itself.  The next appender of the shard numbers
 *		after the visible rows as before, so seq still follows commit order
 *		and visibility (every snapshot still sees a prefix of each shard), and
 *		the commit records are still in seq order in the WAL: what survives a
 *		crash, what a standby replays and what logical decoding sends are all
 *		prefixes.  What changes is durability of what is seen: the appenders
 *		of a shard now share WAL flushes, and a plain SELECT on the primary
 *		may see an event up to one flush before it is on disk.  The readers
 *		of this extension (read(), poll(), ...) call el_wait_durable() before
 *		they hand events out, and raw-SQL readers can call
 *		event_log.wait_durable().
 *
 *	  PostgreSQL has no hook between writing the commit record and flushing
 *	  it.  A grouped transaction therefore commits asynchronously (its
 *	  pre-commit callback lowers synchronous_commit for the commit alone), the
 *	  commit callback, which runs after the commit is visible and before the
 *	  lock manager releases anything, releases the shard locks, and then
 *	  flushes the commit record and waits for synchronous standbys exactly as
 *	  the synchronous commit would have.  The client hears of the commit only
 *	  after that, so the transaction's own durability is what it asked for.
 *	  A transaction that also took a serial stream's shard lock, or more
 *	  grouped ones than we remember, commits synchronously as a serial one.
 *
 *	  In both modes a waiter retries for event_log.shard_lock_spin before it
 *	  sleeps in the lock's queue (el_acquire_shard_lock()): the wake-up of a
 *	  sleeping waiter, not the holder's work, was what limited a busy shard.
 */
#include "postgres.h"

#include <sched.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "access/xlogrecovery.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "portability/instr_time.h"
#include "replication/syncrep.h"
#include "storage/lmgr.h"
#include "utils/pg_lsn.h"
#include "utils/resowner.h"

#include "commit.h"
#include "event_log.h"

PG_FUNCTION_INFO_V1(el_wait_durable_sql);

/* Shard locks of grouped streams this transaction took, to release early. */
#define EL_MAX_GROUPED	64
static LOCKTAG el_grouped[EL_MAX_GROUPED];
static int	el_ngrouped = 0;
static bool el_grouped_overflow = false;

/*
 * Whether this transaction took a serial stream's shard lock: its commit must
 * then stay synchronous, since the readers of a serial stream hand out what
 * they see without waiting for it to be durable.
 */
static bool el_serial_taken = false;

/* synchronous_commit as the transaction had it, while we lowered it. */
static int	el_saved_sync_commit = -1;

static void el_commit_xact_callback(XactEvent event, void *arg);

static void
el_commit_init(void)
{
	static bool done = false;

	if (done)
		return;
	RegisterXactCallback(el_commit_xact_callback, NULL);
	done = true;
}

static void
el_shard_locktag(LOCKTAG *tag, Oid relid, int32 shard)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, relid, (uint32) shard,
						 EL_LOCKTAG_SPACE);
}

/*
 * Acquire a shard lock, retrying for a moment before joining its wait queue.
 *
 * A shard's appenders hold its lock for a short time each (one statement and
 * a commit), one after another.  When the next one sleeps in the lock's wait
 * queue, every hand-over costs a wake-up: the releaser grants the lock to the
 * sleeper, which then has to be scheduled before it can run, and the shard
 * stays idle meanwhile.  With more appenders than cores that delay is longer
 * than the holder's own work, and it alone kept a shard under a third of a
 * bare INSERT's rate (docs/design/offsets.md, "Waiting for a shard").  A
 * waiter that keeps retrying instead, yielding the processor between tries,
 * is running when the lock comes free and takes it at once.
 *
 * The retrying is bounded by event_log.shard_lock_spin: a holder that is
 * slow, or idle in its transaction, costs its waiters that much processor
 * time and then they sleep in the queue as before, where the deadlock
 * detector, lock_timeout, pg_locks and log_lock_waits see them.  A retry
 * never passes a queued sleeper: the lock manager refuses a conditional
 * request that conflicts with a waiting one, so the queue keeps its order.
 * Interrupts are served between tries.
 *
 * A try takes the lock manager's partition lock, which the holder needs
 * too, to release the shard lock; tried at every yield, several waiters kept
 * it busy enough to slow the hand-over they were waiting for.  So a waiter
 * yields EL_SHARD_LOCK_YIELDS times between tries.
 */
#define EL_SHARD_LOCK_YIELDS	3

static void
el_acquire_shard_lock(const LOCKTAG *tag)
{
	instr_time	start;
	instr_time	now;

	if (LockAcquire(tag, ExclusiveLock, false, true) != LOCKACQUIRE_NOT_AVAIL)
		return;
	INSTR_TIME_SET_CURRENT(start);
	while (el_shard_lock_spin > 0)
	{
		CHECK_FOR_INTERRUPTS();
		for (int i = 0; i < EL_SHARD_LOCK_YIELDS; i++)
			(void) sched_yield();
		if (LockAcquire(tag, ExclusiveLock, false, true) != LOCKACQUIRE_NOT_AVAIL)
			return;
		INSTR_TIME_SET_CURRENT(now);
		INSTR_TIME_SUBTRACT(now, start);
		if (INSTR_TIME_GET_MICROSEC(now) >= (uint64) el_shard_lock_spin)
			break;
	}
	(void) LockAcquire(tag, ExclusiveLock, false, false);
}

/*
 * Take the shard's lock, for the rest of the transaction (serial) or until
 * its commit is visible (grouped).
 *
 * Whoever holds it is the only transaction that can append to the shard.
 * Locks on different shards never conflict.  A transaction that appends to
 * several shards takes their locks in the order it first touches them; two
 * such transactions touching the same shards in opposite orders deadlock,
 * and the deadlock detector aborts one.  Re-acquiring a lock already held is
 * a local hash lookup.
 */
void
el_lock_shard(Oid relid, int32 shard, bool grouped)
{
	LOCKTAG		tag;
	ResourceOwner save = CurrentResourceOwner;

	el_shard_locktag(&tag, relid, shard);
	el_commit_init();
	if (!grouped)
		el_serial_taken = true;

	/*
	 * A grouped lock already held stays with the (sub)transaction that took
	 * it, which outlives the current one: one count to release at commit.
	 */
	if (grouped && LockHeldByMe(&tag, ExclusiveLock))
		return;

	/*
	 * The lock must live exactly as long as the rows it covers, which belong
	 * to the current (sub)transaction.  When the append runs inside a cursor,
	 * CurrentResourceOwner is the portal's, and a later failed FETCH under a
	 * savepoint would release the lock while our rows survive.
	 */
	CurrentResourceOwner = CurTransactionResourceOwner;
	PG_TRY();
	{
		el_acquire_shard_lock(&tag);
	}
	PG_FINALLY();
	{
		CurrentResourceOwner = save;
	}
	PG_END_TRY();

	if (grouped)
	{
		/*
		 * A lock freed by a savepoint rollback and taken again is already in
		 * the array: a loop of exception blocks must not fill it.  Past the
		 * array, the locks are released at the end of the transaction as
		 * serial ones are: slower, never wrong.
		 */
		for (int i = 0; i < el_ngrouped; i++)
			if (memcmp(&el_grouped[i], &tag, sizeof(LOCKTAG)) == 0)
				return;
		if (el_ngrouped < EL_MAX_GROUPED)
			el_grouped[el_ngrouped++] = tag;
		else
			el_grouped_overflow = true;
	}
}

/* Whether we still hold any grouped shard lock (a savepoint may have freed them). */
static bool
el_holding_grouped(void)
{
	for (int i = 0; i < el_ngrouped; i++)
		if (LockHeldByMe(&el_grouped[i], ExclusiveLock))
			return true;
	return false;
}

static void
el_forget_grouped(void)
{
	el_ngrouped = 0;
	el_grouped_overflow = false;
	el_serial_taken = false;
	if (el_saved_sync_commit >= 0)
		synchronous_commit = el_saved_sync_commit;
	el_saved_sync_commit = -1;
}

static void
el_commit_xact_callback(XactEvent event, void *arg)
{
	XLogRecPtr	commit_end;
	int			sync_commit;

	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:

			/*
			 * Commit without waiting for the flush: the commit callback
			 * flushes once the shard locks are released.  A transaction that
			 * overflowed the array keeps some locks to the end, and one that
			 * appended to a serial stream must not show those events before
			 * they are durable (even if a savepoint rollback took them back:
			 * slower, never wrong), so their commits stay synchronous.
			 */
			if (el_ngrouped > 0 && !el_grouped_overflow && !el_serial_taken &&
				synchronous_commit > SYNCHRONOUS_COMMIT_OFF &&
				TransactionIdIsValid(GetTopTransactionIdIfAny()) &&
				el_holding_grouped())
			{
				el_saved_sync_commit = synchronous_commit;
				synchronous_commit = SYNCHRONOUS_COMMIT_OFF;
			}
			break;

		case XACT_EVENT_COMMIT:
			if (el_ngrouped == 0)
			{
				el_forget_grouped();
				break;
			}
			sync_commit = el_saved_sync_commit;
			commit_end = XactLastCommitEnd;
			{
				ResourceOwner save = CurrentResourceOwner;

				/* Our commit is visible: the next appender may number after it. */
				CurrentResourceOwner = TopTransactionResourceOwner;
				for (int i = 0; i < el_ngrouped; i++)
					while (LockHeldByMe(&el_grouped[i], ExclusiveLock))
						if (!LockRelease(&el_grouped[i], ExclusiveLock, false))
							break;	/* held by another owner: left to the end */
				CurrentResourceOwner = save;
			}
			el_forget_grouped();

			/*
			 * What RecordTransactionCommit() would have done for a
			 * synchronous commit: flush, then wait for synchronous standbys
			 * (which reads synchronous_commit, restored above).
			 */
			if (sync_commit > SYNCHRONOUS_COMMIT_OFF)
			{
				XLogFlush(commit_end);
				SyncRepWaitForLSN(commit_end, true);
			}
			break;

		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* The lock manager releases (or transfers) the locks. */
			el_forget_grouped();
			break;

		default:
			break;
	}
}

/*
 * The end of the WAL inserted so far, as a position XLogFlush() can reach:
 * right after a page header nothing has been written yet, so the end is the
 * end of the previous page.
 */
static XLogRecPtr
el_insert_end(void)
{
	XLogRecPtr	lsn = GetXLogInsertRecPtr();
	uint64		in_seg = XLogSegmentOffset(lsn, wal_segment_size);

	if (in_seg == SizeOfXLogLongPHD)
		return lsn - SizeOfXLogLongPHD;
	if (lsn % XLOG_BLCKSZ == SizeOfXLogShortPHD)
		return lsn - SizeOfXLogShortPHD;
	return lsn;
}

/*
 * Make everything visible to us now durable: the commit record of every
 * transaction we can see was inserted before we looked, so flushing to the
 * current end of the WAL covers them.  Cheap when it is already flushed.
 * On a standby nothing is to be done: it replays only WAL the primary has
 * flushed.
 */
XLogRecPtr
el_wait_durable(void)
{
	XLogRecPtr	lsn;

	if (RecoveryInProgress())
		return GetXLogReplayRecPtr(NULL);
	lsn = el_insert_end();
	XLogFlush(lsn);
	return lsn;
}

/*
 * event_log.wait_durable() returns pg_lsn: for raw-SQL readers of a grouped
 * stream, after their SELECT.
 */
Datum
el_wait_durable_sql(PG_FUNCTION_ARGS)
{
	PG_RETURN_LSN(el_wait_durable());
}
