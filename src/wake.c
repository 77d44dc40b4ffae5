/*
 * wake.c
 *	  Wake-ups when a transaction that appended commits.
 *
 *	  The append paths note each stream a transaction appends to (a
 *	  comparison per row once the stream is noted).  At pre-commit the
 *	  transaction calls el_append_commit_hook for each such stream: consumer
 *	  groups NOTIFY the stream's channel there if the stream has a group, one
 *	  notification per transaction and stream and none at all for streams
 *	  nobody consumes by group (NOTIFY serializes the commits of all
 *	  notifying transactions of a database, see docs/design/consumers.md).
 *	  Pre-commit rather than at the append, so that PREPARE TRANSACTION,
 *	  which refuses transactions that have notified, still works; a prepared
 *	  append wakes nobody.  After the commit is visible, it sets the latch of
 *	  every backend waiting for the stream's events: a waiting poll(), the
 *	  background worker.
 *
 *	  The background workers' launcher is woken the same way, at commit,
 *	  when a transaction created an async projection.
 *
 *	  This file knows nothing of consumer groups or projections; they plug
 *	  in through the hook and el_wait_tag().
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/proc.h"
#include "storage/sinvaladt.h"
#include "utils/memutils.h"

#include "event_log.h"
#include "wake.h"

el_append_commit_hook_type el_append_commit_hook = NULL;

/* Streams this transaction appended to, in TopTransactionContext. */
static List *el_appended = NIL;
static Oid	el_noted_relid = InvalidOid;
static LocalTransactionId el_noted_lxid = InvalidLocalTransactionId;
static bool el_wake = false;	/* set at pre-commit: wake at commit */

/* Set by el_wake_launcher_at_commit(). */
static bool el_wake_launcher_pending = false;

/* Note that the current transaction appends to the stream. */
void
el_note_append(Oid relid)
{
	MemoryContext old;

	if (relid == el_noted_relid && MyProc->lxid == el_noted_lxid)
		return;
	el_noted_relid = relid;
	el_noted_lxid = MyProc->lxid;
	if (list_member_oid(el_appended, relid))
		return;
	old = MemoryContextSwitchTo(TopTransactionContext);
	el_appended = lappend_oid(el_appended, relid);
	MemoryContextSwitchTo(old);
}

/*
 * Whether this transaction appended to the stream (in any subtransaction,
 * also one rolled back): then it may see events of its own that are not
 * committed, and a rollback could remove them.
 */
bool
el_appended_here(Oid relid)
{
	return list_member_oid(el_appended, relid);
}

/*
 * The lock a backend holds while it waits for events of a stream (a waiting
 * poll(), the background worker): the advisory-type tag (database, stream
 * oid, 0, EL_WAIT_LOCKTAG_SPACE) in AccessShareLock, for the transaction or
 * until the wait ends.  An appending transaction lists the holders after
 * its commit and sets their latches.  Nobody ever acquires this lock in a
 * conflicting mode (appenders only list holders), so it never blocks
 * anyone.
 */
void
el_wait_tag(LOCKTAG *tag, Oid relid)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, relid, 0, EL_WAIT_LOCKTAG_SPACE);
}

/* Set the latch of every backend waiting for the stream's events. */
static void
el_wake_waiters(Oid relid)
{
	LOCKTAG		tag;
	VirtualTransactionId *vxids;

	el_wait_tag(&tag, relid);
	vxids = GetLockConflicts(&tag, AccessExclusiveLock, NULL);
	for (; VirtualTransactionIdIsValid(*vxids); vxids++)
	{
		PGPROC	   *proc = BackendIdGetProc(vxids->backendId);

		if (proc != NULL)
			SetLatch(&proc->procLatch);
	}
}

/*
 * Wake the launcher when the current transaction commits, so that a new
 * async projection gets its worker at once even if the launcher had backed
 * off from the database.  Nothing happens without the launcher (no
 * shared_preload_libraries) or on abort; a prepared transaction is not
 * woken for.
 */
void
el_wake_launcher_at_commit(void)
{
	el_wake_launcher_pending = true;
}

static void
el_wake_launcher(void)
{
	int			n = pgstat_fetch_stat_numbackends();

	for (int i = 1; i <= n; i++)
	{
		LocalPgBackendStatus *local = pgstat_fetch_stat_local_beentry(i);
		const char *type;

		if (local == NULL || local->backendStatus.st_backendType != B_BG_WORKER)
			continue;
		type = GetBackgroundWorkerTypeByPid(local->backendStatus.st_procpid);
		if (type != NULL && strcmp(type, EL_LAUNCHER_TYPE) == 0)
			(void) kill(local->backendStatus.st_procpid, SIGUSR2);
	}
}

static void
el_wake_xact_callback(XactEvent event, void *arg)
{
	ListCell   *lc;

	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			if (el_appended == NIL)
				break;
			el_wake = true;
			if (el_append_commit_hook != NULL)
				foreach(lc, el_appended)
					el_append_commit_hook(lfirst_oid(lc));
			break;
		case XACT_EVENT_COMMIT:
			/* Nothing here may fail: the transaction is already committed. */
			if (el_wake)
				foreach(lc, el_appended)
					el_wake_waiters(lfirst_oid(lc));
			if (el_wake_launcher_pending)
				el_wake_launcher();
			/* FALLTHROUGH */
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_COMMIT:
			el_appended = NIL;
			el_noted_relid = InvalidOid;
			el_wake = false;
			el_wake_launcher_pending = false;
			break;
		default:
			break;
	}
}

void
el_wake_init(void)
{
	RegisterXactCallback(el_wake_xact_callback, NULL);
}
