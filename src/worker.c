/*
 * worker.c
 *	  The background worker that keeps async projections caught up.  With
 *	  event_log in shared_preload_libraries, a launcher starts one worker
 *	  per database that has the extension; each calls run_projections() and
 *	  sleeps on its latch, which appending transactions set when they commit.
 */
#include "postgres.h"

#include "access/heapam.h"
#include "catalog/pg_database.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"

#include "catalog.h"
#include "event_log.h"
#include "projection.h"
#include "registry.h"
#include "retention.h"
#include "wake.h"
#include "worker.h"

PGDLLEXPORT void el_launcher_main(Datum arg);
PGDLLEXPORT void el_worker_main(Datum arg);

/*
 * How long the launcher waits before starting a database's worker again
 * after it stopped.  A worker that stopped soon after it started found
 * nothing to do (no extension, no async projection) or failed at once: the
 * wait doubles each time, up to EL_LAUNCHER_MAX_BACKOFF_MS, so databases
 * without async projections cost a process start every five minutes, not
 * every ten seconds.  create_projection() of an async projection wakes the
 * launcher when it commits (el_wake_launcher_at_commit()), which starts
 * every database's worker at once.
 */
#define EL_LAUNCHER_NAPTIME_MS		10000
#define EL_LAUNCHER_MAX_BACKOFF_MS	(5 * 60 * 1000)
#define EL_WORKER_SHORT_LIFE_MS		5000
#define EL_MAX_DATABASES			64

static volatile sig_atomic_t el_launcher_woken = false;

static void
el_fill_worker(BackgroundWorker *w, const char *function, const char *name)
{
	memset(w, 0, sizeof(BackgroundWorker));
	w->bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w->bgw_start_time = BgWorkerStart_RecoveryFinished;
	snprintf(w->bgw_library_name, BGW_MAXLEN, "event_log");
	snprintf(w->bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(w->bgw_name, BGW_MAXLEN, "%s", name);
	snprintf(w->bgw_type, BGW_MAXLEN, "%s", name);
}

/* Called from _PG_init() when loaded by shared_preload_libraries. */
void
el_register_launcher(void)
{
	BackgroundWorker w;

	el_fill_worker(&w, "el_launcher_main", EL_LAUNCHER_TYPE);
	w.bgw_restart_time = 10;
	RegisterBackgroundWorker(&w);
}

/* ---------------------------------------------------------------------
 * The launcher
 * ---------------------------------------------------------------------
 */

typedef struct ElDatabase
{
	Oid			dboid;
	BackgroundWorkerHandle *handle;
	TimestampTz next_start;		/* do not start a worker before this */
	TimestampTz started_at;		/* of the last worker */
	int			backoff_ms;		/* the wait after a short-lived worker */
	bool		rewake;			/* woken while its worker ran: restart it */
	bool		complained;		/* logged that no worker slot was free */
} ElDatabase;

static ElDatabase el_databases[EL_MAX_DATABASES];
static int	el_ndatabases = 0;

static ElDatabase *
el_database(Oid dboid)
{
	for (int i = 0; i < el_ndatabases; i++)
		if (el_databases[i].dboid == dboid)
			return &el_databases[i];
	if (el_ndatabases == EL_MAX_DATABASES)
		return NULL;
	el_databases[el_ndatabases].dboid = dboid;
	el_databases[el_ndatabases].handle = NULL;
	el_databases[el_ndatabases].next_start = 0;
	el_databases[el_ndatabases].started_at = 0;
	el_databases[el_ndatabases].backoff_ms = EL_LAUNCHER_NAPTIME_MS;
	el_databases[el_ndatabases].rewake = false;
	el_databases[el_ndatabases].complained = false;
	return &el_databases[el_ndatabases++];
}

/*
 * Start a worker for every database that accepts connections and has none
 * running.  A worker for a database without the extension, or without
 * async projections, exits at once; the database is looked at again after
 * the launcher's naptime.
 */
static void
el_launch_workers(bool woken)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	List	   *dbs = NIL;
	ListCell   *lc;
	TimestampTz now = GetCurrentTimestamp();
	MemoryContext cxt = CurrentMemoryContext;	/* outlives the transaction */

	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (db->datallowconn && !db->datistemplate)
		{
			MemoryContext old = MemoryContextSwitchTo(cxt);

			dbs = lappend_oid(dbs, db->oid);
			MemoryContextSwitchTo(old);
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();

	/* Forget databases that are gone (and whose worker has stopped). */
	{
		int			keep = 0;

		for (int i = 0; i < el_ndatabases; i++)
		{
			ElDatabase *d = &el_databases[i];
			pid_t		pid;
			bool		running = d->handle != NULL &&
				GetBackgroundWorkerPid(d->handle, &pid) != BGWH_STOPPED;

			if (running || list_member_oid(dbs, d->dboid))
				el_databases[keep++] = *d;
			else if (d->handle != NULL)
				pfree(d->handle);
		}
		el_ndatabases = keep;
	}

	foreach(lc, dbs)
	{
		ElDatabase *d = el_database(lfirst_oid(lc));
		BackgroundWorker w;
		pid_t		pid;

		if (d == NULL)
			break;
		if (d->handle != NULL &&
			GetBackgroundWorkerPid(d->handle, &pid) != BGWH_STOPPED)
		{
			/*
			 * A worker that looked before the commit that woke us may be
			 * about to exit for want of work: start another when it does.
			 */
			if (woken)
				d->rewake = true;
			continue;
		}
		if (d->handle != NULL)
		{
			pfree(d->handle);
			d->handle = NULL;
			if (TimestampDifferenceExceeds(d->started_at, now, EL_WORKER_SHORT_LIFE_MS))
				d->backoff_ms = EL_LAUNCHER_NAPTIME_MS;
			else
				d->backoff_ms = Min(d->backoff_ms * 2, EL_LAUNCHER_MAX_BACKOFF_MS);
			d->next_start = TimestampTzPlusMilliseconds(now, d->backoff_ms);
		}
		if (woken || d->rewake)
		{
			d->next_start = 0;
			d->backoff_ms = EL_LAUNCHER_NAPTIME_MS;
			d->rewake = false;
		}
		if (now < d->next_start)
			continue;

		el_fill_worker(&w, "el_worker_main", "event_log worker");
		w.bgw_restart_time = BGW_NEVER_RESTART;
		w.bgw_main_arg = ObjectIdGetDatum(d->dboid);
		w.bgw_notify_pid = MyProcPid;
		if (RegisterDynamicBackgroundWorker(&w, &d->handle))
		{
			d->complained = false;
			d->started_at = now;
		}
		else
		{
			d->handle = NULL;
			if (!d->complained)
				ereport(LOG,
						(errmsg("event_log launcher could not start a worker for database %u",
								d->dboid),
						 errhint("Raise max_worker_processes.")));
			d->complained = true;
		}
	}
	list_free(dbs);
}

/* SIGUSR2: a backend committed a new async projection. */
static void
el_launcher_sigusr2(SIGNAL_ARGS)
{
	int			save_errno = errno;

	el_launcher_woken = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

void
el_launcher_main(Datum arg)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	pqsignal(SIGUSR2, el_launcher_sigusr2);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (el_launcher_woken)
		{
			el_launcher_woken = false;
			el_launch_workers(true);
		}
		else
			el_launch_workers(false);

		/* A worker stopping sets our latch too (bgw_notify_pid). */
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 EL_LAUNCHER_NAPTIME_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/* ---------------------------------------------------------------------
 * A database's worker
 * ---------------------------------------------------------------------
 */

/* The oids a catalog query returns in its first column (SPI connected). */
static List *
el_catalog_oids(const char *sql)
{
	List	   *oids = NIL;

	(void) el_exec_as_caller(sql, 0, NULL, NULL, true, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		oids = lappend_oid(oids,
						   DatumGetObjectId(el_spi_value(i, 1, &isnull)));
	}
	return oids;
}

/* The streams async projections follow. */
static List *
el_followed_streams(void)
{
	return el_catalog_oids("SELECT DISTINCT stream FROM event_log.projections"
						   " WHERE mode = 'async'");
}

/*
 * Sleep until an append to a followed stream commits, or the naptime ends.
 *
 * In a transaction, take the wait lock of every followed stream (as a
 * waiting poll() does, wake.c): a transaction that appends to one of
 * them and commits after that sets our latch.  Then look whether anything
 * is waiting already: that sees every commit from before the locks.  Only
 * if nothing is, sleep, still in the transaction (an appender finds the
 * lock holders through their transaction) but without a snapshot, so the
 * sleep holds back no vacuum.  A shard stopped by an error is waiting too,
 * once event_log.retry_interval has passed; the sleep is no longer than
 * that while one is stopped.
 */
static void
el_wait_for_appends(void)
{
	MemoryContext cxt;
	ResourceOwner owner;
	List	   *streams;
	ListCell   *lc;
	bool		pending;
	bool		stopped;
	bool		isnull;
	long		timeout = el_worker_naptime;

	StartTransactionCommand();
	el_push_catalog_path();
	cxt = CurrentMemoryContext;
	owner = CurrentResourceOwner;

	/*
	 * The looks run in subtransactions that are rolled back, to release
	 * the locks on the tables they read: while we sleep, we must hold
	 * nothing that DDL on a stream or on our catalog would queue behind.
	 */
	BeginInternalSubTransaction(NULL);
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_connect();
	streams = el_followed_streams();
	MemoryContextSwitchTo(cxt);
	streams = list_copy(streams);
	SPI_finish();
	PopActiveSnapshot();
	RollbackAndReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;

	foreach(lc, streams)
	{
		LOCKTAG		tag;

		el_wait_tag(&tag, lfirst_oid(lc));
		(void) LockAcquire(&tag, AccessShareLock, false, false);
	}

	BeginInternalSubTransaction(NULL);
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_connect();
	(void) el_exec_as_caller("SELECT count(*) FILTER (WHERE lag_events > 0"
							 "   AND (error_at IS NULL OR error_at <= now() - $1 * interval '1 ms')) > 0,"
							 " count(*) FILTER (WHERE error IS NOT NULL) > 0"
							 " FROM event_log.projection_lag",
							 1, (Oid[]) {INT4OID}, (Datum[]) {Int32GetDatum(el_retry_interval)},
							 true, 1);
	pending = DatumGetBool(el_spi_value(0, 1, &isnull));
	stopped = DatumGetBool(el_spi_value(0, 2, &isnull));
	SPI_finish();
	PopActiveSnapshot();
	RollbackAndReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	PopOverrideSearchPath();

	if (stopped)
		timeout = Min(timeout, Max(el_retry_interval, 10));
	if (!pending)
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout, PG_WAIT_EXTENSION);
	CommitTransactionCommand();
}

/*
 * How long one async projection may run per round before the next gets
 * its turn, in ms.  With event_log.handler_timeout it bounds how far one
 * slow projection holds back the others.
 */
#define EL_WORKER_SLICE_MS	1000

/* The async projections of this database, in a fixed order. */
static List *
el_async_projections(void)
{
	return el_catalog_oids("SELECT projection FROM event_log.projections"
						   " WHERE mode = 'async' ORDER BY projection");
}

/*
 * How long the worker's retention of one stream may wait for a lock, in
 * ms.  A removal waits for the transactions that still append to the
 * stream before it detaches segments; a session left idle in a
 * transaction after an append (an INSERT-only role can do it) would
 * otherwise hold the worker, and every other stream's retention and
 * every async projection of the database with it.  On a timeout the
 * stream is skipped with a WARNING and tried again the next interval.
 */
#define EL_WORKER_LOCK_TIMEOUT_MS	2000

/*
 * Apply the retention policies (retention.c) once per
 * event_log.retention_interval, each stream's in a transaction of its own:
 * removing a segment holds an ACCESS EXCLUSIVE lock on the stream until
 * the commit (retention_segment.c), which must come right after, not after
 * the other streams' turns.  An error is reported and does not stop the
 * worker's projections or the other streams; the next interval tries
 * again.  Returns whether the database has policies (as last seen), which
 * keeps the worker running even without projections.
 */
static bool
el_worker_retention(void)
{
	static TimestampTz next_run = 0;
	static bool has_policies = true;
	MemoryContext cxt = CurrentMemoryContext;
	TimestampTz now = GetCurrentTimestamp();
	List	   *streams = NIL;
	ListCell   *lc;
	int64		removed = 0;

	if (el_retention_interval <= 0)
		return false;
	if (now < next_run)
		return has_policies;
	next_run = TimestampTzPlusMilliseconds(now, el_retention_interval);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	pgstat_report_activity(STATE_RUNNING, "event_log: applying retention policies");
	PushActiveSnapshot(GetTransactionSnapshot());
	el_push_catalog_path();
	SPI_connect();
	if (OidIsValid(get_relname_relid("retention_policies", el_schema_oid())))
	{
		List	   *found = el_catalog_oids(el_segments_catalog() ?
											"SELECT stream FROM event_log.retention_policies"
											" UNION SELECT stream FROM event_log.segmented_streams"
											" ORDER BY 1" :
											"SELECT stream FROM event_log.retention_policies"
											" ORDER BY stream");
		MemoryContext old = MemoryContextSwitchTo(cxt);

		streams = list_copy(found);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	PopOverrideSearchPath();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
	has_policies = streams != NIL;

	foreach(lc, streams)
	{
		Oid			relid = lfirst_oid(lc);

		/*
		 * A segmented stream's removed segments are detached by one
		 * enforcement and dropped by the next, in a transaction of its own
		 * (their files go at its commit, with no lock on the stream held):
		 * a second pass follows any pass that removed events.
		 */
		for (volatile int pass = 0; pass < 2; pass++)
		{
			volatile int64 done = 0;

			CHECK_FOR_INTERRUPTS();
			SetCurrentStatementStartTimestamp();
			StartTransactionCommand();
			PG_TRY();
			{
				PushActiveSnapshot(GetTransactionSnapshot());
				el_push_catalog_path();
				SPI_connect();
				(void) set_config_option("lock_timeout",
										 CppAsString2(EL_WORKER_LOCK_TIMEOUT_MS),
										 PGC_SUSET, PGC_S_SESSION, GUC_ACTION_LOCAL,
										 true, 0, false);
				if (el_stream_shards(relid) > 0 &&
					(pass == 0 || get_rel_relkind(relid) == RELKIND_PARTITIONED_TABLE))
					done = Max(0, el_enforce_one(relid, NULL));
				SPI_finish();
				PopOverrideSearchPath();
				PopActiveSnapshot();
				CommitTransactionCommand();
			}
			PG_CATCH();
			{
				MemoryContextSwitchTo(cxt);
				EmitErrorReport();
				FlushErrorState();
				AbortCurrentTransaction();
			}
			PG_END_TRY();
			MemoryContextSwitchTo(cxt);
			removed += done;
			if (done == 0)
				break;
		}
	}
	list_free(streams);
	if (removed > 0)
		elog(LOG, "event_log: retention removed " INT64_FORMAT " events", removed);
	pgstat_report_activity(STATE_IDLE, NULL);
	return has_policies;
}

/*
 * One round: each async projection in a transaction of its own, for up to
 * event_log.worker_batch_size events or EL_WORKER_SLICE_MS.  Its own
 * transaction, so that a projection that has had its turn is free for a
 * manual run_projections() or a rebuild while the others run, and its
 * work is committed whatever the next one does.  Returns the events
 * applied, or -1 if there is nothing to do here (no extension, or no
 * async projection).
 */
static int64
el_worker_round(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	List	   *views;
	ListCell   *lc;
	int64		applied = 0;
	bool		has_policies;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (!OidIsValid(get_extension_oid("event_log", true)))
	{
		PopActiveSnapshot();
		CommitTransactionCommand();
		return -1;
	}
	el_push_catalog_path();
	SPI_connect();
	views = el_async_projections();
	MemoryContextSwitchTo(cxt);
	views = list_copy(views);
	SPI_finish();
	PopOverrideSearchPath();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
	has_policies = el_worker_retention();
	if (views == NIL && !has_policies)
		return -1;

	foreach(lc, views)
	{
		Oid			view = lfirst_oid(lc);

		CHECK_FOR_INTERRUPTS();
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		pgstat_report_activity(STATE_RUNNING, "event_log: running an async projection");
		PushActiveSnapshot(GetTransactionSnapshot());
		el_push_catalog_path();
		SPI_connect();
		applied += el_run_projection_turn(view, el_worker_batch_size,
										  TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
																	  EL_WORKER_SLICE_MS));
		SPI_finish();
		PopOverrideSearchPath();
		PopActiveSnapshot();
		CommitTransactionCommand();
		MemoryContextSwitchTo(cxt);
	}
	list_free(views);
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return applied;
}

void
el_worker_main(Datum arg)
{
	Oid			dboid = DatumGetObjectId(arg);

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);

	/*
	 * Nothing we run resolves names through a schema a user could create
	 * objects in (our SQL also pins pg_catalog; handlers run under their
	 * projection's own path).
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);

	/*
	 * One worker per database: a launcher that restarted does not know the
	 * workers its predecessor started.  The lock is the session's, so it
	 * goes with the process.
	 */
	StartTransactionCommand();
	{
		LOCKTAG		tag;

		SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, 0, 0, EL_WORKER_LOCKTAG_SPACE);
		if (LockAcquire(&tag, ExclusiveLock, true, true) == LOCKACQUIRE_NOT_AVAIL)
		{
			CommitTransactionCommand();
			proc_exit(0);
		}
	}
	CommitTransactionCommand();

	/*
	 * A predecessor ended by a handler that ignored its cancel left a note:
	 * record it, and leave one ourselves if it happens again.
	 */
	on_proc_exit(el_worker_exit, (Datum) 0);
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (OidIsValid(get_extension_oid("event_log", true)))
	{
		SPI_connect();
		el_note_overrun();
		SPI_finish();
	}
	PopActiveSnapshot();
	CommitTransactionCommand();

	for (;;)
	{
		int64		applied;

		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		/*
		 * Errors a handler raises are recorded by run_projections() and do
		 * not reach us; anything else ends the worker (with exit code 1),
		 * and the launcher starts a new one after its naptime.
		 */
		applied = el_worker_round();
		if (applied < 0)
			proc_exit(0);		/* nothing to do here, for now */
		if (applied > 0)
			continue;			/* more may be waiting */
		el_wait_for_appends();
	}
}
