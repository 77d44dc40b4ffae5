/*
 * projection_progress.c
 *	  Progress of builds (create_projection(), rebuild_projection()) for
 *	  other sessions to watch: event_log.build_progress, a row per shard of
 *	  each build running in this database, with events done out of events
 *	  to do, the rate and an estimate of the time left, the way
 *	  pg_stat_progress_create_index reports CREATE INDEX.
 *
 *	  A build runs in its caller's backend and transaction, so nothing it
 *	  writes to a table is visible before it ends.  PostgreSQL's progress
 *	  API (pgstat_progress_*) reports only core commands, and shared memory
 *	  of our own needs the library in shared_preload_libraries, which builds
 *	  do not.  So a build publishes its progress in a small file of its own,
 *	  pg_stat_tmp/event_log_build.<pid>, rewritten at most twice a second
 *	  (written aside and renamed over, so a reader never sees half of one),
 *	  and removed when the build ends, whether it commits, fails or is
 *	  cancelled.  The worker's overrun note (projection_async.c) uses the
 *	  same directory.  A file whose backend is gone (a crash) is passed over
 *	  by readers and replaced by the next build of a backend with that pid.
 *	  docs/design/dead_letters.md, "Build progress", has the reasoning.
 *
 *	  The position of a shard is the seq of the last event the build read
 *	  there.  Seqs are dense from 1, so that is the number of events done,
 *	  and a set-based build that falls back and reads a group again simply
 *	  reports the earlier position.  The total is the shard's last seq when
 *	  the build began; appends that commit meanwhile make done pass it, and
 *	  the total follows.
 */
#include "postgres.h"

#include <unistd.h>

#include "access/genam.h"
#include "access/table.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/procarray.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "catalog.h"
#include "event_log.h"
#include "projection.h"
#include "registry.h"

PG_FUNCTION_INFO_V1(el_build_progress);

#define EL_PROGRESS_DIR		"pg_stat_tmp"
#define EL_PROGRESS_PREFIX	"event_log_build."
#define EL_PROGRESS_EVERY	1024	/* events between looks at the clock */
#define EL_PROGRESS_MS		500		/* between writes of the file, at least */

static const char *const el_phases[] = {"replaying", "replaying the tail"};

/* The build of this backend being reported, if any. */
static struct
{
	Oid			view;
	Oid			stream;
	int			shards;
	int			phase;
	TimestampTz started;
	TimestampTz written;
	int64	   *done;			/* [shards], in TopMemoryContext */
	int64	   *total;
	uint32		calls;
}			el_progress;

static char *
el_progress_path(int pid, bool aside)
{
	return psprintf(EL_PROGRESS_DIR "/" EL_PROGRESS_PREFIX "%d%s", pid, aside ? ".tmp" : "");
}

/* Write the file: aside, then renamed over the last one. */
static void
el_progress_write(void)
{
	char	   *aside = el_progress_path(MyProcPid, true);
	char	   *path = el_progress_path(MyProcPid, false);
	FILE	   *f = AllocateFile(aside, PG_BINARY_W);

	el_progress.written = GetCurrentTimestamp();
	if (f == NULL)
		return;					/* progress is a courtesy: never fail a build */
	fprintf(f, "%u %u %u %d " INT64_FORMAT " " INT64_FORMAT " %d\n",
			MyDatabaseId, el_progress.view, el_progress.stream, el_progress.phase,
			(int64) el_progress.started, (int64) el_progress.written, el_progress.shards);
	for (int s = 0; s < el_progress.shards; s++)
		fprintf(f, "%d " INT64_FORMAT " " INT64_FORMAT "\n", s, el_progress.done[s],
				Max(el_progress.done[s], el_progress.total[s]));
	if (FreeFile(f) == 0)
		(void) rename(aside, path);
	else
		(void) unlink(aside);
	pfree(aside);
	pfree(path);
}

/*
 * A build of view begins: count each shard's events and publish.  Returns
 * whether this call reports (false for a build inside another one, which
 * a handler's function could start); pass that to el_progress_end().
 */
bool
el_progress_begin(Oid view, Oid stream, int shards)
{
	Relation	rel;
	Snapshot	snap;
	int64	   *total = palloc0(sizeof(int64) * shards);

	if (el_progress.done != NULL)
		return false;
	rel = table_open(stream, AccessShareLock);
	snap = RegisterSnapshot(GetLatestSnapshot());
	for (int s = 0; s < shards; s++)
		total[s] = el_stream_shard_end(rel, s, snap);
	UnregisterSnapshot(snap);
	table_close(rel, AccessShareLock);

	el_progress.view = view;
	el_progress.stream = stream;
	el_progress.shards = shards;
	el_progress.phase = 0;
	el_progress.calls = 0;
	el_progress.started = GetCurrentTimestamp();
	el_progress.total = MemoryContextAlloc(TopMemoryContext, sizeof(int64) * shards);
	memcpy(el_progress.total, total, sizeof(int64) * shards);
	el_progress.done = MemoryContextAllocZero(TopMemoryContext, sizeof(int64) * shards);
	el_progress_write();
	return true;
}

/* The build moves on to its next phase (an inline projection's tail). */
void
el_progress_phase(int phase)
{
	if (el_progress.done == NULL)
		return;
	el_progress.phase = Min(phase, (int) lengthof(el_phases) - 1);
	el_progress_write();
}

/* The build read shard's events up to seq; now and then, publish. */
void
el_progress_at(int32 shard, int64 seq)
{
	if (el_progress.done == NULL || shard < 0 || shard >= el_progress.shards)
		return;
	el_progress.done[shard] = seq;
	if (++el_progress.calls % EL_PROGRESS_EVERY == 0 &&
		TimestampDifferenceExceeds(el_progress.written, GetCurrentTimestamp(), EL_PROGRESS_MS))
		el_progress_write();
}

/*
 * The build ended, one way or another (called from PG_FINALLY, so also on
 * a cancel): remove the file.
 */
void
el_progress_end(bool reported)
{
	char	   *path;

	if (!reported || el_progress.done == NULL)
		return;
	path = el_progress_path(MyProcPid, false);
	(void) unlink(path);
	pfree(path);
	pfree(el_progress.done);
	pfree(el_progress.total);
	el_progress.done = el_progress.total = NULL;
}

/* Whether the caller may see a build of stream: it may read its events. */
static bool
el_may_watch(Oid stream)
{
	bool		missing = false;

	/* The stream may be dropped meanwhile: then there is nothing to see. */
	if (pg_class_aclcheck_ext(stream, GetUserId(), ACL_SELECT, &missing) != ACLCHECK_OK ||
		missing)
		return false;
	return check_enable_rls(stream, InvalidOid, true) != RLS_ENABLED;
}

/*
 * event_log.build_progress() RETURNS SETOF record: a row per shard of each
 * build running in this database whose stream the caller may read.
 */
Datum
el_build_progress(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	DIR		   *dir;
	struct dirent *de;

	InitMaterializedSRF(fcinfo, 0);
	dir = AllocateDir(EL_PROGRESS_DIR);
	while ((de = ReadDir(dir, EL_PROGRESS_DIR)) != NULL)
	{
		char	   *end;
		long		pid;
		FILE	   *f;
		unsigned int db,
					view,
					stream;
		int			phase,
					shards;
		int64		started,
					written,
					done = 0,
					total = 0;
		int64	   *sdone;
		int64	   *stotal;
		int			n = 0;

		if (strncmp(de->d_name, EL_PROGRESS_PREFIX, strlen(EL_PROGRESS_PREFIX)) != 0)
			continue;
		pid = strtol(de->d_name + strlen(EL_PROGRESS_PREFIX), &end, 10);
		if (*end != '\0' || pid <= 0 || pid > INT_MAX ||
			BackendPidGetProc((int) pid) == NULL)
			continue;			/* written aside, or its backend is gone */
		f = AllocateFile(psprintf(EL_PROGRESS_DIR "/%s", de->d_name), PG_BINARY_R);
		if (f == NULL)
			continue;			/* removed meanwhile: the build ended */
		if (fscanf(f, "%u %u %u %d " INT64_FORMAT " " INT64_FORMAT " %d",
				   &db, &view, &stream, &phase, &started, &written, &shards) != 7 ||
			db != MyDatabaseId || shards < 1 || shards > EL_MAX_SHARDS ||
			phase < 0 || phase >= (int) lengthof(el_phases) || !el_may_watch(stream))
		{
			FreeFile(f);
			continue;
		}
		sdone = palloc(sizeof(int64) * shards);
		stotal = palloc(sizeof(int64) * shards);
		for (int s = 0; s < shards; s++)
		{
			int			shard;

			if (fscanf(f, "%d " INT64_FORMAT " " INT64_FORMAT, &shard, &sdone[s], &stotal[s]) != 3 ||
				shard != s)
				break;
			done += sdone[s];
			total += stotal[s];
			n++;
		}
		FreeFile(f);
		for (int s = 0; s < n && n == shards; s++)
		{
			Datum		values[11];
			bool		nulls[11] = {0};
			double		secs = (double) (written - started) / USECS_PER_SEC;
			double		rate = secs > 0 ? done / secs : 0;

			values[0] = Int32GetDatum((int32) pid);
			values[1] = ObjectIdGetDatum(view);
			values[2] = ObjectIdGetDatum(stream);
			values[3] = CStringGetTextDatum(el_phases[phase]);
			values[4] = Int32GetDatum(s);
			values[5] = Int64GetDatum(sdone[s]);
			values[6] = Int64GetDatum(stotal[s]);
			values[7] = TimestampTzGetDatum((TimestampTz) started);
			values[8] = TimestampTzGetDatum((TimestampTz) written);
			values[9] = Float8GetDatum(rate);
			if (rate > 0)
			{
				Interval   *left = palloc0(sizeof(Interval));

				left->time = (int64) (Max(total - done, 0) / rate * USECS_PER_SEC);
				values[10] = IntervalPGetDatum(left);
			}
			else
				nulls[10] = true;
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	}
	FreeDir(dir);
	return (Datum) 0;
}
