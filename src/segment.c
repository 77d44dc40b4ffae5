/*
 * segment.c
 *	  Segmented streams: a stream stored in segments, so that retention
 *	  gives disk space back by dropping tables instead of deleting rows.
 *
 *	  A segmented stream (create_stream(..., segment_events => n)) is a
 *	  table partitioned by list on a tenth column, segment, whose default
 *	  is event_log.current_segment(<stream>): the newest segment.  The
 *	  default is evaluated before the row is routed, so a new row goes to
 *	  the newest segment, and the append trigger (append.c) refuses, under
 *	  the shard lock, a row routed to any other: a segment therefore holds
 *	  a prefix of every shard, and reading the segments oldest first reads
 *	  each shard in seq order.
 *
 *	  Each segment is a table the extension creates in its own schema,
 *	  named after the stream's oid and the segment's number, owned by the
 *	  stream's owner (whose code, an index expression, then runs as that
 *	  owner and nobody else), with the stream's unique indexes and the
 *	  statement trigger refusing changes; the row triggers are the
 *	  stream's, cloned by PostgreSQL.  A new segment is created empty and
 *	  attached with ATTACH PARTITION, which takes only SHARE UPDATE
 *	  EXCLUSIVE on the stream: appends go on meanwhile.  event_log.segments
 *	  lists them; the DDL guards (immutable.c) refuse any other partition,
 *	  and ATTACH or DETACH by anyone but us.
 *
 *	  Removing a segment (retention.c) is DROP TABLE, which takes ACCESS
 *	  EXCLUSIVE on the stream for an instant; the caller sets a short
 *	  lock_timeout so appenders never queue behind it for long.  Before it
 *	  reads a segment to archive or drop it, retention waits until no
 *	  transaction that could still be adding to it is running
 *	  (el_segment_seal()).
 *
 *	  Code that reads a stream through SQL needs nothing of this: the
 *	  planner reads the partitions.  Code that scans the stream's (shard,
 *	  seq) index itself goes through el_stream_scan_*(), which visits the
 *	  segments in order; the append trigger probes them newest first.
 *	  Design: docs/design/segments.md.
 */
#include "postgres.h"

#include "access/attmap.h"
#include "access/genam.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/partition.h"
#include "catalog/pg_inherits.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "parser/parsetree.h"
#include "executor/tuptable.h"
#include "access/tupconvert.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "partitioning/partdesc.h"
#include "partitioning/partbounds.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "access/xact.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "catalog/pg_type.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "catalog.h"
#include "event_log.h"
#include "immutable.h"
#include "registry.h"
#include "segment.h"

PG_FUNCTION_INFO_V1(el_current_segment);
PG_FUNCTION_INFO_V1(el_roll_segment);

/* Whether the catalog has segments (0.6 on). */
bool
el_segments_catalog(void)
{
	return OidIsValid(get_relname_relid("segments", el_schema_oid()));
}

/* Whether a stream (an open relation) is stored in segments. */
bool
el_is_segmented(Relation rel)
{
	return rel->rd_rel->relkind == RELKIND_PARTITIONED_TABLE;
}

/*
 * The stream a segment belongs to, or InvalidOid when relid is not a
 * partition of a registered stream.
 */
Oid
el_segment_stream(Oid relid)
{
	Oid			parent;

	if (!get_rel_relispartition(relid))
		return InvalidOid;
	parent = get_partition_parent(relid, true);
	if (!OidIsValid(parent) || el_stream_shards(parent) < 1)
		return InvalidOid;
	return parent;
}

/*
 * A segmented stream's segments, oldest first, from its partition
 * descriptor (kept by the relcache; ATTACH and DROP invalidate it).  In the
 * caller's memory context.
 */
ElSegments *
el_segments(Relation stream)
{
	PartitionDesc pd = RelationGetPartitionDesc(stream, true);
	PartitionBoundInfo bi = pd->boundinfo;
	ElSegments *segs = palloc(sizeof(ElSegments));
	int			n = 0;

	segs->relids = palloc(sizeof(Oid) * Max(pd->nparts, 1));
	segs->numbers = palloc(sizeof(int32) * Max(pd->nparts, 1));
	/* A list bound's values are sorted; each segment has one. */
	for (int i = 0; bi != NULL && i < bi->ndatums; i++)
	{
		int			p = bi->indexes[i];

		if (p < 0 || p >= pd->nparts || n >= pd->nparts)
			continue;
		segs->relids[n] = pd->oids[p];
		segs->numbers[n] = DatumGetInt32(bi->datums[i][0]);
		n++;
	}
	segs->n = n;
	return segs;
}

/* The target size of a stream's segments, in events; 0 if not segmented. */
int64
el_segment_events(Oid stream)
{
	Datum		values[1] = {ObjectIdGetDatum(stream)};

	if (!el_segments_catalog())
		return 0;
	if (el_catalog_sql("SELECT segment_events FROM event_log.segmented_streams"
					   " WHERE stream OPERATOR(pg_catalog.=) $1",
					   1, (Oid[]) {OIDOID}, values, NULL, EL_CAT_READ, 1) != 1)
		return 0;
	return el_spi_int8(0, 1);
}

/*
 * event_log.current_segment(stream regclass) RETURNS integer
 *
 * The default of a segmented stream's segment column: its newest segment.
 * Evaluated for every row before the row is routed.
 *
 * It must name a segment the statement's executor can route to.  The
 * executor takes the stream's list of partitions when it starts; a segment
 * attached by a transaction that commits later is not in it, though the
 * relcache learns of it as soon as this backend processes the invalidation
 * (at its next lock acquisition: a trigger opening a table, a function in
 * the statement).  So an INSERT's answer is read from the executor's own
 * list, when the executor starts (el_segment_executor_start()), and kept
 * until it ends.  COPY has no executor hook: its answer is the first
 * row's, kept for the rest of the statement.  Either way a row whose
 * answer is older than the newest segment is refused by the append trigger
 * as a serialization failure, to be retried; never a row that cannot be
 * routed (but see docs/design/segments.md for the one COPY race left).
 */
typedef struct ElCurrentSegment
{
	Oid			relid;
	LocalTransactionId lxid;
	TimestampTz stmt;
	int32		segment;
} ElCurrentSegment;

#define EL_CURRENT_SEGMENT_SLOTS	8

/* INSERT executors running on segmented streams, innermost last. */
typedef struct ElRouting
{
	QueryDesc  *query;
	Oid			relid;
	int32		segment;
	int			nest_level;
} ElRouting;

#define EL_MAX_ROUTING	32
static ElRouting el_routing[EL_MAX_ROUTING];
static int	el_nrouting = 0;
static ExecutorStart_hook_type el_prev_executor_start = NULL;
static ExecutorEnd_hook_type el_prev_executor_end = NULL;

/* The newest segment in a partition descriptor; 0 if it has none. */
static int32
el_newest_in(PartitionDesc pd)
{
	PartitionBoundInfo bi = pd->boundinfo;

	if (bi == NULL || bi->ndatums == 0)
		return 0;
	return DatumGetInt32(bi->datums[bi->ndatums - 1][0]);
}

static void
el_segment_executor_start(QueryDesc *query, int eflags)
{
	ListCell   *lc;

	if (el_prev_executor_start)
		el_prev_executor_start(query, eflags);
	else
		standard_ExecutorStart(query, eflags);

	if (query->operation != CMD_INSERT || query->estate == NULL ||
		query->estate->es_partition_directory == NULL)
		return;
	foreach(lc, query->plannedstmt->resultRelations)
	{
		RangeTblEntry *rte = rt_fetch(lfirst_int(lc), query->plannedstmt->rtable);
		Relation	rel;

		if (rte->rtekind != RTE_RELATION || rte->relkind != RELKIND_PARTITIONED_TABLE ||
			el_stream_shards(rte->relid) < 1 || el_nrouting >= EL_MAX_ROUTING)
			continue;
		/* The executor holds the stream's lock. */
		rel = relation_open(rte->relid, NoLock);
		el_routing[el_nrouting].query = query;
		el_routing[el_nrouting].relid = rte->relid;
		el_routing[el_nrouting].segment =
			el_newest_in(PartitionDirectoryLookup(query->estate->es_partition_directory, rel));
		el_routing[el_nrouting].nest_level = GetCurrentTransactionNestLevel();
		el_nrouting++;
		relation_close(rel, NoLock);
	}
}

static void
el_segment_executor_end(QueryDesc *query)
{
	while (el_nrouting > 0 && el_routing[el_nrouting - 1].query == query)
		el_nrouting--;
	if (el_prev_executor_end)
		el_prev_executor_end(query);
	else
		standard_ExecutorEnd(query);
}

/* Executors that failed never reach ExecutorEnd: forget theirs. */
static void
el_segment_xact_callback(XactEvent event, void *arg)
{
	el_nrouting = 0;
}

static void
el_segment_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
							SubTransactionId parentSubid, void *arg)
{
	if (event != SUBXACT_EVENT_ABORT_SUB)
		return;
	while (el_nrouting > 0 &&
		   el_routing[el_nrouting - 1].nest_level >= GetCurrentTransactionNestLevel())
		el_nrouting--;
}

void
el_segment_init(void)
{
	el_prev_executor_start = ExecutorStart_hook;
	ExecutorStart_hook = el_segment_executor_start;
	el_prev_executor_end = ExecutorEnd_hook;
	ExecutorEnd_hook = el_segment_executor_end;
	RegisterXactCallback(el_segment_xact_callback, NULL);
	RegisterSubXactCallback(el_segment_subxact_callback, NULL);
}

Datum
el_current_segment(PG_FUNCTION_ARGS)
{
	static ElCurrentSegment kept[EL_CURRENT_SEGMENT_SLOTS];
	static int	next_slot = 0;
	Oid			relid = PG_GETARG_OID(0);
	TimestampTz stmt = GetCurrentStatementStartTimestamp();
	bool		locked = CheckRelationOidLockedByMe(relid, RowExclusiveLock, true);
	Relation	rel;
	ElSegments *segs;
	int32		current;

	/* The INSERT executor this row is evaluated in, innermost first. */
	for (int i = el_nrouting - 1; i >= 0; i--)
		if (el_routing[i].relid == relid && el_routing[i].segment > 0)
			PG_RETURN_INT32(el_routing[i].segment);
	if (locked)
		for (int i = 0; i < EL_CURRENT_SEGMENT_SLOTS; i++)
			if (kept[i].relid == relid && kept[i].lxid == MyProc->lxid &&
				kept[i].stmt == stmt)
				PG_RETURN_INT32(kept[i].segment);

	/* Under the INSERT's own lock: no new lock, so no invalidation now. */
	rel = relation_open(relid, locked ? NoLock : AccessShareLock);
	if (!el_is_segmented(rel) || el_stream_shards(relid) < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" is not a segmented event stream",
						RelationGetRelationName(rel))));
	segs = el_segments(rel);
	if (segs->n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("event stream \"%s\" has no segment",
						el_qualified_name(relid)),
				 errhint("If a restore stopped before its pre-data section had finished, run that section again (docs/operations.md).")));
	current = segs->numbers[segs->n - 1];
	relation_close(rel, NoLock);
	if (locked)
	{
		kept[next_slot].relid = relid;
		kept[next_slot].lxid = MyProc->lxid;
		kept[next_slot].stmt = stmt;
		kept[next_slot].segment = current;
		next_slot = (next_slot + 1) % EL_CURRENT_SEGMENT_SLOTS;
	}
	PG_RETURN_INT32(current);
}

/* Run one of our statements on a segment as the extension's owner. */
static void
el_segment_ddl(Oid stream, const char *sql)
{
	el_guard_allow(stream, EL_GUARD_SEGMENT_DDL);
	PG_TRY();
	{
		el_exec_as(el_catalog_owner(), InvalidOid, sql, false);
	}
	PG_FINALLY();
	{
		el_guard_disallow(stream);
	}
	PG_END_TRY();
}

/*
 * Whether a table is a segment that a restore is still making: a
 * partition in our schema with no index at all (pg_dump puts every index
 * after the data; create_stream() and every roll create a segment with
 * its indexes before attaching it, and the guards keep them).  Our schema,
 * where nobody else may create a table, so that a partition of anybody's
 * own partitioned table never passes for one: event_log.assign_position()
 * and event_log.project() put on such a table must refuse it as before.
 * Neither the registry nor event_log.segments can tell: a parallel
 * restore may load them after the segment's rows.
 */
bool
el_segment_unfinished(Relation rel)
{
	return rel->rd_rel->relispartition && !rel->rd_rel->relhasindex &&
		rel->rd_rel->relnamespace == el_schema_oid();
}

/*
 * Create segment `number` of a stream and attach it.  The table is created
 * by the extension's owner in our schema, given the stream's indexes, CHECK
 * constraints and generation expressions (which ATTACH requires a
 * partition to have) and guard, then
 * handed to the stream's owner, who attaches it (ATTACH needs
 * the owner of both; index expressions of the stream's own indexes, built
 * on the new segment, run as that owner).
 */
static void
el_segment_create(Oid stream, int32 number)
{
	char	   *qstream = el_qualified_name(stream);
	Oid			owner = el_rel_owner(stream);
	char		name[NAMEDATALEN];
	char	   *qname;
	StringInfoData sql;
	Oid			segrelid;
	Datum		values[3];

	/* Unique: the stream's oid, a number that never comes back. */
	snprintf(name, sizeof(name), "segment_%u_%d", stream, number);
	for (int k = 1; OidIsValid(get_relname_relid(name, el_schema_oid())); k++)
		snprintf(name, sizeof(name), "segment_%u_%d_%d", stream, number, k);
	qname = quote_qualified_identifier("event_log", name);

	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "CREATE TABLE %s (LIKE %s INCLUDING CONSTRAINTS INCLUDING GENERATED);"
					 "ALTER TABLE %s ALTER COLUMN " EL_SEGMENT_COLUMN " SET DEFAULT %d;"
					 "ALTER TABLE %s ADD PRIMARY KEY (shard, seq),"
					 " ADD UNIQUE (event_id), ADD UNIQUE (key, version);"
					 "CREATE TRIGGER " EL_IMMUTABLE_TRIGGER
					 " BEFORE UPDATE OR DELETE OR TRUNCATE ON %s"
					 " FOR EACH STATEMENT EXECUTE FUNCTION event_log.refuse_change();"
					 "ALTER TABLE %s ENABLE ALWAYS TRIGGER " EL_IMMUTABLE_TRIGGER ";"
					 "ALTER TABLE %s OWNER TO %s",
					 qname, qstream, qname, number, qname, qname, qname,
					 qname, quote_identifier(GetUserNameFromId(owner, false)));
	el_segment_ddl(stream, sql.data);

	segrelid = get_relname_relid(name, el_schema_oid());
	resetStringInfo(&sql);
	appendStringInfo(&sql, "ALTER TABLE %s ATTACH PARTITION %s FOR VALUES IN (%d)",
					 qstream, qname, number);
	el_guard_allow(stream, EL_GUARD_SEGMENT_DDL);
	PG_TRY();
	{
		el_exec_as(owner, InvalidOid, sql.data, true);
	}
	PG_FINALLY();
	{
		el_guard_disallow(stream);
	}
	PG_END_TRY();

	values[0] = ObjectIdGetDatum(stream);
	values[1] = Int32GetDatum(number);
	values[2] = ObjectIdGetDatum(segrelid);
	el_catalog_sql("INSERT INTO event_log.segments (stream, segment, segment_table)"
				   " VALUES ($1, $2, $3)",
				   3, (Oid[]) {OIDOID, INT4OID, OIDOID}, values, NULL, 0, 0);
	CommandCounterIncrement();

	/*
	 * ATTACH built the stream's indexes on the segment as its owner, whose
	 * index expressions may have run DDL while the guards let ours pass.
	 */
	el_guard_check_stream(stream);
}

/* The first segment of a new segmented stream. */
void
el_segment_first(Oid stream)
{
	el_segment_create(stream, 1);
}

/*
 * Start a new segment: the newest plus one.  Appends go on while it is
 * attached; once this transaction commits, new rows go to it.
 */
int32
el_segment_roll(Oid stream)
{
	Relation	rel = relation_open(stream, ShareUpdateExclusiveLock);
	ElSegments *segs = el_segments(rel);
	int32		next;

	if (segs->n == 0)
		elog(ERROR, "segmented stream %s has no segment", el_qualified_name(stream));
	if (segs->numbers[segs->n - 1] >= PG_INT32_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("event stream \"%s\" has used every segment number",
						el_qualified_name(stream))));
	next = segs->numbers[segs->n - 1] + 1;
	relation_close(rel, NoLock);
	el_segment_create(stream, next);
	return next;
}

/*
 * Whether the newest segment holds segment_events events or more: the sum
 * over its shards of last minus first seq, from the index ends.
 */
bool
el_segment_full(Oid stream)
{
	int64		target = el_segment_events(stream);
	Relation	rel;
	ElSegments *segs;
	Relation	seg;
	int64		events = 0;
	int			shards = el_stream_shards(stream);
	Snapshot	snap;

	if (target <= 0)
		return false;
	rel = relation_open(stream, AccessShareLock);
	segs = el_segments(rel);
	if (segs->n == 0)
	{
		relation_close(rel, AccessShareLock);
		return false;
	}
	seg = table_open(segs->relids[segs->n - 1], AccessShareLock);
	snap = RegisterSnapshot(GetLatestSnapshot());
	for (int s = 0; s < shards && events < target; s++)
	{
		int64		first = el_table_shard_edge(seg, s, snap, ForwardScanDirection);

		if (first > 0)
			events += el_table_shard_edge(seg, s, snap, BackwardScanDirection) - first + 1;
	}
	UnregisterSnapshot(snap);
	table_close(seg, AccessShareLock);
	relation_close(rel, AccessShareLock);
	return events >= target;
}

/*
 * Detach segments from their stream (retention, once their events are
 * archived or past the policy): they leave the stream at commit.  DETACH
 * takes ACCESS EXCLUSIVE on the stream, held to commit, so the caller keeps
 * what follows short; the tables themselves are dropped later, by
 * el_segment_drop_detached() in a transaction that does not lock the
 * stream, because PostgreSQL deletes a dropped table's files at commit,
 * before it releases the locks, which for a large segment takes long.
 */
void
el_segment_detach(Oid stream, const Oid *segrelids, int n)
{
	StringInfoData sql;
	char	   *qstream = el_qualified_name(stream);

	if (n <= 0)
		return;
	initStringInfo(&sql);
	for (int i = 0; i < n; i++)
		appendStringInfo(&sql, "ALTER TABLE %s DETACH PARTITION %s;",
						 qstream, el_qualified_name(segrelids[i]));
	el_segment_ddl(stream, sql.data);
	for (int i = 0; i < n; i++)
	{
		Datum		values[1] = {ObjectIdGetDatum(segrelids[i])};

		el_catalog_sql("UPDATE event_log.segments SET detached_at = pg_catalog.now()"
					   " WHERE segment_table OPERATOR(pg_catalog.=) $1",
					   1, (Oid[]) {OIDOID}, values, NULL, 0, 0);
	}
	CommandCounterIncrement();
}

/*
 * Drop the segments retention detached from a stream: their files go at
 * commit.  Returns how many.  The stream is not locked beyond what the
 * caller holds: a detached segment is a table of its own.
 */
int
el_segment_drop_detached(Oid stream)
{
	Datum		values[1] = {ObjectIdGetDatum(stream)};
	uint64		n;
	StringInfoData sql;
	Oid		   *relids;

	if (!el_segments_catalog())
		return 0;
	n = el_catalog_sql("SELECT segment_table FROM event_log.segments"
					   " WHERE stream OPERATOR(pg_catalog.=) $1 AND detached_at IS NOT NULL"
					   " ORDER BY segment",
					   1, (Oid[]) {OIDOID}, values, NULL, EL_CAT_READ | EL_CAT_LATEST, 0);
	if (n == 0)
		return 0;
	relids = palloc(sizeof(Oid) * n);
	initStringInfo(&sql);
	appendStringInfoString(&sql, "DROP TABLE ");
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;

		relids[i] = DatumGetObjectId(el_spi_value(i, 1, &isnull));
		appendStringInfo(&sql, "%s%s", i > 0 ? ", " : "", el_qualified_name(relids[i]));
	}

	/*
	 * A segment is ours, but PostgreSQL lets any role make objects that
	 * depend on it (a view or a SQL-standard function naming it needs no
	 * privilege on it), and with such a dependent a plain DROP would fail
	 * at every enforcement: whoever made one would stop retention for
	 * good.  So what depends on a detached segment goes with it (CASCADE
	 * reports each).  Except a foreign key: retention refuses a stream one
	 * references (el_refuse_referenced()), and one added to a segment since
	 * is refused here rather than dropped.  The segments are locked as the
	 * DROP would lock them before they are checked: a foreign key being
	 * added (its transaction locks the segment) has committed by then, and
	 * none can be added until we commit.
	 */
	for (uint64 i = 0; i < n; i++)
		LockRelationOid(relids[i], AccessExclusiveLock);
	for (uint64 i = 0; i < n; i++)
	{
		char	   *conname;
		Oid			conrelid;
		Oid			referenced;

		if (!el_referencing_key(relids[i], false, &conname, &conrelid, &referenced))
			continue;
		/* drop_stream() calls this after dropping the stream itself */
		if (get_rel_name(stream) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("cannot drop segment \"%s\" of the event stream being dropped: foreign key \"%s\" of table \"%s\" references it",
							el_qualified_name(relids[i]), conname, el_qualified_name(conrelid)),
					 errdetail("Retention had detached the segment: its events were no longer in the stream."),
					 errhint("Drop the foreign key, then drop the stream again.")));
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot drop segment \"%s\" of event stream \"%s\": foreign key \"%s\" of table \"%s\" references it",
						el_qualified_name(relids[i]), el_qualified_name(stream),
						conname, el_qualified_name(conrelid)),
				 errdetail("Retention has detached the segment: its events are no longer in the stream."),
				 errhint("Drop the foreign key; the next enforcement drops the segment.")));
	}
	appendStringInfoString(&sql, " CASCADE");
	el_segment_ddl(stream, sql.data);
	for (uint64 i = 0; i < n; i++)
	{
		values[0] = ObjectIdGetDatum(relids[i]);
		el_catalog_sql("DELETE FROM event_log.segments"
					   " WHERE segment_table OPERATOR(pg_catalog.=) $1",
					   1, (Oid[]) {OIDOID}, values, NULL, 0, 0);
	}
	CommandCounterIncrement();
	return (int) n;
}

/*
 * event_log.roll_segment(stream regclass) RETURNS integer
 *
 * Start a new segment now; for the stream's owner.  Returns its number.
 */
Datum
el_roll_segment(PG_FUNCTION_ARGS)
{
	Oid			stream = PG_GETARG_OID(0);
	Relation	rel;
	int32		next;

	if (el_stream_shards(stream) < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" is not an event stream", el_qualified_name(stream))));
	if (!pg_class_ownercheck(stream, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, OBJECT_TABLE, get_rel_name(stream));
	rel = relation_open(stream, ShareUpdateExclusiveLock);
	if (!el_is_segmented(rel))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("event stream \"%s\" is not stored in segments",
						el_qualified_name(stream)),
				 errhint("Create the stream with event_log.create_stream(..., segment_events => n).")));
	relation_close(rel, NoLock);
	SPI_connect();
	next = el_segment_roll(stream);
	SPI_finish();
	PG_RETURN_INT32(next);
}

/*
 * Scans of the (shard, seq) index: one index scan on a plain stream, one
 * per segment, oldest first, on a segmented stream.
 */
struct ElStreamScan
{
	Snapshot	snap;
	ScanKeyData keys[2];
	int			nkeys;
	int			nsegs;
	Oid		   *relids;			/* NULL for a plain stream */
	int			next;			/* the next segment to open */
	Relation	rel;			/* the stream, or the open segment */
	Relation	index;
	IndexScanDesc scan;
	bool		own_rel;
	TupleDesc	desc;			/* the stream's row type */
	TupleTableSlot *segslot;	/* the open segment's rows */
	AttrMap    *map;			/* from its row type to the stream's */
};

static void
el_stream_scan_open(ElStreamScan *s, Relation rel)
{
	s->rel = rel;
	s->index = index_open(el_stream_indexes(rel)->pk, AccessShareLock);
	s->scan = index_beginscan(rel, s->index, s->snap, s->nkeys, 0);
	index_rescan(s->scan, s->keys, s->nkeys, NULL, 0);
}

static void
el_stream_scan_close(ElStreamScan *s)
{
	if (s->scan == NULL)
		return;
	index_endscan(s->scan);
	index_close(s->index, AccessShareLock);
	if (s->own_rel)
	{
		ExecDropSingleTupleTableSlot(s->segslot);
		if (s->map)
			free_attrmap(s->map);
		s->segslot = NULL;
		s->map = NULL;
		table_close(s->rel, AccessShareLock);
	}
	s->scan = NULL;
}

ElStreamScan *
el_stream_scan_begin(Relation stream, Snapshot snap, ScanKey keys, int nkeys)
{
	ElStreamScan *s = palloc0(sizeof(ElStreamScan));

	Assert(nkeys <= 2);
	s->snap = snap;
	s->nkeys = nkeys;
	memcpy(s->keys, keys, sizeof(ScanKeyData) * nkeys);
	s->desc = RelationGetDescr(stream);
	if (el_is_segmented(stream))
	{
		ElSegments *segs = el_segments(stream);

		s->nsegs = segs->n;
		s->relids = segs->relids;
	}
	else
		el_stream_scan_open(s, stream);
	return s;
}

/*
 * The next row in (shard, seq) order into slot, made for the stream
 * (table_slot_create()).  A segment's rows are read into a slot of its own
 * and copied, converted if the segment's columns are laid out otherwise
 * (columns the owner added after dropping one).
 */
bool
el_stream_scan_next(ElStreamScan *s, TupleTableSlot *slot)
{
	for (;;)
	{
		if (s->scan != NULL && s->segslot == NULL)
			return index_getnext_slot(s->scan, ForwardScanDirection, slot);
		if (s->scan != NULL &&
			index_getnext_slot(s->scan, ForwardScanDirection, s->segslot))
		{
			if (s->map)
				execute_attr_map_slot(s->map, s->segslot, slot);
			else
				ExecCopySlot(slot, s->segslot);
			return true;
		}
		if (s->relids == NULL || s->next >= s->nsegs)
			return false;
		el_stream_scan_close(s);
		s->own_rel = true;
		el_stream_scan_open(s, table_open(s->relids[s->next++], AccessShareLock));
		s->segslot = table_slot_create(s->rel, NULL);
		s->map = build_attrmap_by_name_if_req(RelationGetDescr(s->rel), s->desc);
	}
}

void
el_stream_scan_end(ElStreamScan *s)
{
	el_stream_scan_close(s);
	pfree(s);
}

Relation
el_stream_pk_open(Relation stream)
{
	if (el_is_segmented(stream))
		return NULL;
	return index_open(el_stream_indexes(stream)->pk, AccessShareLock);
}

void
el_stream_pk_close(Relation pk)
{
	if (pk != NULL)
		index_close(pk, AccessShareLock);
}

/*
 * The first (Forward) or last (Backward) seq of a shard in one table with
 * the stream's indexes, as snap sees it; 0 if it has none.
 */
int64
el_table_shard_edge(Relation rel, int32 shard, Snapshot snap, ScanDirection dir)
{
	Relation	pk = index_open(el_stream_indexes(rel)->pk, AccessShareLock);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	ScanKeyData key;
	IndexScanDesc scan;
	int64		edge = 0;

	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(shard));
	scan = index_beginscan(rel, pk, snap, 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	if (index_getnext_slot(scan, dir, slot))
	{
		bool		isnull;

		edge = DatumGetInt64(slot_getattr(slot, Anum_el_seq, &isnull));
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(pk, AccessShareLock);
	return edge;
}

/*
 * The first (Forward) or last (Backward) seq of a shard in the segments
 * from..n-1, as snap sees it; 0 if none of them has one.  Each segment
 * holds a prefix of every shard, so the segments are probed oldest first
 * for the first seq and newest first for the last, up to one that has it.
 */
int64
el_segments_shard_edge(const ElSegments *segs, int from, int32 shard,
					   Snapshot snap, ScanDirection dir)
{
	int64		edge = 0;

	for (int k = from; k < segs->n && edge == 0; k++)
	{
		int			i = ScanDirectionIsForward(dir) ? k : segs->n - 1 - (k - from);
		Relation	seg = table_open(segs->relids[i], AccessShareLock);

		edge = el_table_shard_edge(seg, shard, snap, dir);
		table_close(seg, AccessShareLock);
	}
	return edge;
}

int64
el_stream_shard_end(Relation stream, int32 shard, Snapshot snap)
{
	if (!el_is_segmented(stream))
		return el_table_shard_edge(stream, shard, snap, BackwardScanDirection);
	return el_segments_shard_edge(el_segments(stream), 0, shard, snap,
								  BackwardScanDirection);
}
