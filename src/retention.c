/*-------------------------------------------------------------------------
 *
 * retention.c
 *	  Retention: old events leave a stream by policy, as whole prefixes of
 *	  its shards, and each shard keeps a low watermark.
 *
 *	  A stream's owner sets a policy with set_retention(): a maximum age of
 *	  recorded_at, a maximum number of events per shard, or both, and
 *	  whether to keep what a consumer group, an async projection or a
 *	  parked event still needs (keep_unconsumed, the default).  The first
 *	  policy creates one row per shard in event_log.shard_watermarks; from
 *	  then on every reader of the stream compares the offset it reads from
 *	  with the shard's low watermark (registry.c, el_low_watermark()), with
 *	  the snapshot it read the rows with.
 *
 *	  enforce_retention() applies the policies, from cron or from the
 *	  background worker.  For each shard it walks the primary key from the
 *	  low watermark up and removes events while all of these hold: the
 *	  event is older than max_age, more than max_events newer events follow
 *	  it, and nothing the stream's consumers still need is at or after it.
 *	  It stops at the first event that fails one: what leaves is always a
 *	  prefix of the shard, even though recorded_at is not ordered by seq.
 *	  The events, the new watermark and the report row in retention_log go
 *	  in one transaction, so a crash or a cancel removes all or nothing,
 *	  and a reader sees either the old watermark with the old rows or the
 *	  new one without them.
 *
 *	  The rows are removed at the heap level, not by a DELETE statement:
 *	  no trigger, rule or row-level security policy of the stream's owner
 *	  applies, so removal cannot be steered, and the statement trigger that
 *	  refuses DELETE keeps refusing every other path.  Nothing but the
 *	  policy chooses what leaves.  The CDC plugin decodes inserts only, so
 *	  removals do not appear in the change stream as events.
 *
 *	  Removal reclaims space the way VACUUM does; segment storage, which
 *	  would give space back at once, is the next step (see
 *	  docs/design/retention.md).
 *
 * Copyright (c) 2026, event_log authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "archive.h"
#include "catalog.h"
#include "event_log.h"
#include "read.h"
#include "registry.h"
#include "retention.h"
#include "segment.h"
#include "stream.h"
#include "wake.h"

PG_FUNCTION_INFO_V1(el_set_retention);
PG_FUNCTION_INFO_V1(el_enforce_retention);
PG_FUNCTION_INFO_V1(el_low_watermark_sql);

/* Refuse a catalog older than 0.5, which has no retention tables. */
static void
el_require_retention_catalog(void)
{
	if (!OidIsValid(get_relname_relid("retention_policies", el_schema_oid())))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the event_log catalog of this database predates retention"),
				 errhint("Run ALTER EXTENSION event_log UPDATE.")));
}

/* Only the stream's owner (or a role with its privileges) sets or applies policies. */
static void
el_require_stream_owner(Oid relid, const char *action)
{
	if (!pg_class_ownercheck(relid, GetUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to %s of event stream \"%s\"",
						action, el_qualified_name(relid)),
				 errdetail("Only the stream's owner may do this.")));
}

/*
 * Refuse retention on a stream that a foreign key references: removal
 * deletes rows at the heap level, past the foreign key's triggers, and
 * would leave the referencing rows pointing at nothing.  A foreign key
 * cannot be added while the caller holds ShareUpdateExclusiveLock on the
 * stream (ALTER TABLE ... ADD FOREIGN KEY takes ShareRowExclusiveLock on
 * the referenced table), so a check under that lock holds until commit.
 * On a segmented stream a foreign key may also name one segment (its
 * owner is the stream's owner): that locks the segment, not the stream,
 * so one added after this check is caught where the segment is dropped
 * (el_segment_drop_detached()).  The caller is connected to SPI.
 */
static void
el_refuse_referenced(Oid relid)
{
	char	   *conname;
	Oid			conrelid;
	Oid			referenced;

	if (!el_referencing_key(relid, true, &conname, &conrelid, &referenced))
		return;
	if (referenced == relid)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot remove events of event stream \"%s\": foreign key \"%s\" of table \"%s\" references it",
						el_qualified_name(relid), conname, el_qualified_name(conrelid)),
				 errdetail("Retention removes events past foreign keys, which would leave the referencing rows dangling."),
				 errhint("Drop the foreign key, or keep what it needs in a table of its own.")));
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("cannot remove events of event stream \"%s\": foreign key \"%s\" of table \"%s\" references its segment \"%s\"",
					el_qualified_name(relid), conname, el_qualified_name(conrelid),
					el_qualified_name(referenced)),
			 errdetail("Retention removes whole segments, which would leave the referencing rows dangling."),
			 errhint("Drop the foreign key, or keep what it needs in a table of its own.")));
}

/*
 * Refuse retention on a stream that a publication publishes the deletes
 * of: a logical replication subscriber would apply the removal as DELETEs
 * (its apply worker fires no statement trigger), and its copy of the
 * stream would lose the events without a watermark to say so.  CREATE
 * PUBLICATION ... FOR TABLE and ALTER PUBLICATION ... ADD TABLE take
 * ShareUpdateExclusiveLock on the table, as the caller holds.  The caller
 * is connected to SPI.
 */
static void
el_refuse_published(Oid relid)
{
	Datum		values[2];

	values[0] = CStringGetTextDatum(get_namespace_name(get_rel_namespace(relid)));
	values[1] = CStringGetTextDatum(get_rel_name(relid));
	if (el_catalog_sql("SELECT p.pubname::pg_catalog.text FROM pg_catalog.pg_publication p"
					   " WHERE p.pubdelete AND EXISTS (SELECT FROM pg_catalog.pg_publication_tables t"
					   "  WHERE t.pubname OPERATOR(pg_catalog.=) p.pubname"
					   "  AND t.schemaname::pg_catalog.text OPERATOR(pg_catalog.=) $1"
					   "  AND t.tablename::pg_catalog.text OPERATOR(pg_catalog.=) $2)"
					   " ORDER BY p.pubname LIMIT 1",
					   2, (Oid[]) {TEXTOID, TEXTOID}, values, NULL,
					   EL_CAT_READ | EL_CAT_LATEST, 1) == 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot remove events of event stream \"%s\": publication \"%s\" publishes its deletes",
						el_qualified_name(relid), el_spi_text(0, 1)),
				 errdetail("A subscriber would apply the removal as DELETEs, and its copy of the stream would lose the events without a low watermark to say so."),
				 errhint("Publish only the stream's inserts: ALTER PUBLICATION %s SET (publish = 'insert').",
						 quote_identifier(el_spi_text(0, 1)))));
}

/*
 * Refuse a max_age that no enforcement could apply.  Every field must be
 * zero or positive (a mixed interval such as '1 month -29 days' compares
 * as positive, yet now() - it is in the future on some days, and every
 * event would then be old), and it must be at most EL_MAX_AGE_YEARS, so
 * that now() - max_age is always a valid timestamp: one policy that made
 * enforcement fail would stop the worker's run for every stream.
 */
#define EL_MAX_AGE_YEARS 1000

static void
el_check_max_age(Interval *age)
{
	Interval	zero = {0, 0, 0};
	Interval	most = {0, 0, EL_MAX_AGE_YEARS * MONTHS_PER_YEAR};

	if (age->month < 0 || age->day < 0 || age->time < 0 ||
		DatumGetBool(DirectFunctionCall2(interval_le, IntervalPGetDatum(age),
										 IntervalPGetDatum(&zero))))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_age must be positive"),
				 errdetail("No part of max_age (months, days, time) may be negative.")));
	if (DatumGetBool(DirectFunctionCall2(interval_gt, IntervalPGetDatum(age),
										 IntervalPGetDatum(&most))))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_age must be at most %d years", EL_MAX_AGE_YEARS),
				 errhint("For a policy by number of events only, pass max_age => NULL.")));
}

/*
 * event_log.set_retention(stream regclass, max_age interval DEFAULT NULL,
 *						   max_events bigint DEFAULT NULL,
 *						   keep_unconsumed boolean DEFAULT true) RETURNS void
 *
 * Both limits NULL: the stream has no policy any more (its watermarks
 * stay).  The first policy of a stream takes ACCESS EXCLUSIVE on it for a
 * moment: every transaction that reads it afterwards has taken its lock
 * anew, and so sees that its reads must check the watermarks.
 */
Datum
el_set_retention(PG_FUNCTION_ARGS)
{
	Oid			relid;
	int			shards;
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	Oid			types[6] = {REGCLASSOID, INTERVALOID, INT8OID, BOOLOID, NAMEOID, BOOLOID};
	NameData	who;
	bool		first;

	el_require_arg(fcinfo, 0, "stream");
	el_require_arg(fcinfo, 3, "keep_unconsumed");
	el_require_arg(fcinfo, 4, "archive");
	relid = PG_GETARG_OID(0);
	shards = el_require_stream(relid);
	el_require_retention_catalog();
	el_require_stream_owner(relid, "set the retention policy");

	if (!PG_ARGISNULL(1))
		el_check_max_age(PG_GETARG_INTERVAL_P(1));
	if (!PG_ARGISNULL(2) && PG_GETARG_INT64(2) < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_events must be at least 1"),
				 errdetail("The requested max_events was %lld.",
						   (long long) PG_GETARG_INT64(2))));

	first = !el_stream_has_watermarks(relid);
	(void) el_lock_stream(relid, first ? AccessExclusiveLock : ShareUpdateExclusiveLock);

	SPI_connect();
	if (!PG_ARGISNULL(1) || !PG_ARGISNULL(2))
	{
		el_refuse_referenced(relid);
		el_refuse_published(relid);
	}
	values[0] = ObjectIdGetDatum(relid);
	if (PG_ARGISNULL(1) && PG_ARGISNULL(2))
		el_catalog_sql("DELETE FROM event_log.retention_policies"
					   " WHERE stream OPERATOR(pg_catalog.=) $1",
					   1, types, values, NULL, 0, 0);
	else
	{
		values[1] = PG_GETARG_DATUM(1);
		nulls[1] = PG_ARGISNULL(1) ? 'n' : ' ';
		values[2] = PG_GETARG_DATUM(2);
		nulls[2] = PG_ARGISNULL(2) ? 'n' : ' ';
		values[3] = PG_GETARG_DATUM(3);
		namestrcpy(&who, GetUserNameFromId(GetUserId(), false));
		values[4] = NameGetDatum(&who);
		values[5] = PG_GETARG_DATUM(4);
		el_catalog_sql("INSERT INTO event_log.retention_policies AS p"
					   " (stream, max_age, max_events, keep_unconsumed, set_by, set_at, archive)"
					   " VALUES ($1, $2, $3, $4, $5, pg_catalog.now(), $6)"
					   " ON CONFLICT (stream) DO UPDATE SET max_age = excluded.max_age,"
					   " max_events = excluded.max_events,"
					   " keep_unconsumed = excluded.keep_unconsumed,"
					   " set_by = excluded.set_by, set_at = excluded.set_at,"
					   " archive = excluded.archive",
					   6, types, values, nulls, 0, 0);
		values[1] = Int32GetDatum(shards);
		el_catalog_sql("INSERT INTO event_log.shard_watermarks (stream, shard)"
					   " SELECT $1, s FROM pg_catalog.generate_series(0, $2 OPERATOR(pg_catalog.-) 1) s"
					   " ON CONFLICT DO NOTHING",
					   2, (Oid[]) {REGCLASSOID, INT4OID}, values, NULL, 0, 0);
		/* The database's worker applies it from now on (if preloaded). */
		el_wake_launcher_at_commit();
	}
	SPI_finish();
	CacheInvalidateRelcacheByRelid(relid);
	PG_RETURN_VOID();
}

/* Read a stream's policy; false if it has none. */
static bool
el_read_policy(Oid relid, ElPolicy *p)
{
	Datum		values[1];
	bool		isnull;
	Datum		d;

	values[0] = ObjectIdGetDatum(relid);
	if (el_catalog_sql("SELECT pg_catalog.now() OPERATOR(pg_catalog.-) max_age,"
					   " max_events, keep_unconsumed, archive"
					   " FROM event_log.retention_policies"
					   " WHERE stream OPERATOR(pg_catalog.=) $1",
					   1, (Oid[]) {REGCLASSOID}, values, NULL,
					   EL_CAT_READ | EL_CAT_LATEST, 1) == 0)
		return false;
	d = el_spi_value(0, 1, &isnull);
	p->has_age = !isnull;
	p->cutoff = isnull ? 0 : DatumGetTimestampTz(d);
	d = el_spi_value(0, 2, &isnull);
	p->has_count = !isnull;
	p->max_events = isnull ? 0 : DatumGetInt64(d);
	p->keep_unconsumed = DatumGetBool(el_spi_value(0, 3, &isnull));
	p->archive = DatumGetBool(el_spi_value(0, 4, &isnull));
	return true;
}

/*
 * The last seq of a shard whose events the stream's consumers have all
 * processed: the lowest of the consumer groups' committed offsets, the
 * async projections' checkpoints and the seq before each parked event.
 * PG_INT64_MAX when nothing holds the shard back.
 */
int64
el_consumed_through(Oid relid, int32 shard)
{
	Datum		values[2];
	bool		isnull;
	Datum		d;

	values[0] = ObjectIdGetDatum(relid);
	values[1] = Int32GetDatum(shard);
	el_catalog_sql("SELECT LEAST("
				   " (SELECT pg_catalog.min(o.committed_seq) FROM event_log.consumer_offsets o"
				   "   JOIN event_log.consumer_groups g ON g.id OPERATOR(pg_catalog.=) o.group_id"
				   "  WHERE g.stream OPERATOR(pg_catalog.=) $1 AND o.shard OPERATOR(pg_catalog.=) $2),"
				   " (SELECT pg_catalog.min(o.seq) FROM event_log.projection_offsets o"
				   "   JOIN event_log.projections p ON p.projection OPERATOR(pg_catalog.=) o.projection"
				   "  WHERE p.stream OPERATOR(pg_catalog.=) $1 AND p.mode OPERATOR(pg_catalog.=) 'async'"
				   "    AND o.shard OPERATOR(pg_catalog.=) $2),"
				   " (SELECT pg_catalog.min(d.seq) OPERATOR(pg_catalog.-) 1"
				   "   FROM event_log.projection_dead_letters d"
				   "  WHERE d.stream OPERATOR(pg_catalog.=) $1 AND d.shard OPERATOR(pg_catalog.=) $2),"
				   " (SELECT pg_catalog.min(d.seq) OPERATOR(pg_catalog.-) 1"
				   "   FROM event_log.consumer_dead_letters d"
				   "   JOIN event_log.consumer_groups g ON g.id OPERATOR(pg_catalog.=) d.group_id"
				   "  WHERE g.stream OPERATOR(pg_catalog.=) $1 AND d.shard OPERATOR(pg_catalog.=) $2))",
				   2, (Oid[]) {REGCLASSOID, INT4OID}, values, NULL,
				   EL_CAT_READ | EL_CAT_LATEST, 1);
	d = el_spi_value(0, 1, &isnull);
	return isnull ? PG_INT64_MAX : DatumGetInt64(d);
}

/*
 * Whether the key has an event after version (as snap sees it): if not, the
 * event being removed is its last, and the key retires with that version.
 * The heap tuple is fetched and checked against snap: an index entry alone
 * may be an aborted append's, or a prepared transaction's that will roll
 * back, and taking it for a later event would leave the key unretired, so
 * that its next event would start again at version 1.  Retiring a key that
 * an in-progress transaction appends to is harmless: retired_keys is read
 * only when the key has no event at all.
 */
static bool
el_key_goes_on(Relation rel, Relation kv, Snapshot snap, Datum key, int64 version)
{
	ScanKeyData keys[2];
	IndexScanDesc scan;
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	bool		found;

	ScanKeyEntryInitialize(&keys[0], 0, 1, BTEqualStrategyNumber, InvalidOid,
						   DEFAULT_COLLATION_OID, F_TEXTEQ, key);
	ScanKeyInit(&keys[1], 2, BTGreaterStrategyNumber, F_INT8GT, Int64GetDatum(version));
	scan = index_beginscan(rel, kv, snap, 2, 0);
	index_rescan(scan, keys, 2, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	return found;
}

/*
 * Remember the last version of a key whose every event is being removed,
 * so that its next event goes on from it (append.c, el_probe_version()).
 */
void
el_retire_key(Oid relid, Datum key, int64 version)
{
	Datum		values[3];

	values[0] = ObjectIdGetDatum(relid);
	values[1] = key;
	values[2] = Int64GetDatum(version);
	el_catalog_sql("INSERT INTO event_log.retired_keys AS r (stream, key, last_version)"
				   " VALUES ($1, $2, $3) ON CONFLICT (stream, key) DO UPDATE"
				   " SET last_version = GREATEST(r.last_version, excluded.last_version)",
				   3, (Oid[]) {REGCLASSOID, TEXTOID, INT8OID}, values, NULL, 0, 0);
}

/*
 * Walk the events of one shard that the policy lets go, from low on and no
 * further than limit, and remove them if remove is true.  Returns the last
 * seq walked (low - 1 if none); *newest gets the latest recorded_at walked
 * (left as it was if none).  The caller is connected to SPI.
 */
static int64
el_walk_prefix(Relation rel, Relation pk, Relation kv, Snapshot snap,
			   int32 shard, int64 low, int64 limit, const ElPolicy *p,
			   bool remove, TimestampTz *newest)
{
	ScanKeyData keys[2];
	IndexScanDesc scan;
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	int64		last = low - 1;

	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(shard));
	ScanKeyInit(&keys[1], 2, BTGreaterEqualStrategyNumber, F_INT8GE, Int64GetDatum(low));
	scan = index_beginscan(rel, pk, snap, 2, 0);
	index_rescan(scan, keys, 2, NULL, 0);
	while (last < limit && index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		int64		seq = DatumGetInt64(slot_getattr(slot, Anum_el_seq, &isnull));
		TimestampTz at;

		CHECK_FOR_INTERRUPTS();
		/* A prefix: never past a hole (there is none under commit order). */
		if (seq != last + 1)
			break;
		at = DatumGetTimestampTz(slot_getattr(slot, Anum_el_recorded_at, &isnull));
		if (p->has_age && at >= p->cutoff)
			break;
		last = seq;
		if (at > *newest)
			*newest = at;
		if (!remove)
			continue;
		{
			Datum		key = slot_getattr(slot, Anum_el_key, &isnull);
			int64		version = DatumGetInt64(slot_getattr(slot, Anum_el_version, &isnull));

			if (!el_key_goes_on(rel, kv, snap, key, version))
				el_retire_key(RelationGetRelid(rel), key, version);
		}
		simple_heap_delete(rel, &slot->tts_tid);
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	return last;
}

/*
 * Record a removal of the events low..last of a shard: its new watermark
 * and the latest recorded_at removed from it (0.6: removed_until, which
 * read_by_time() checks), and a row of retention_log.  The caller is
 * connected to SPI.
 */
void
el_record_removal(Oid relid, int32 shard, int64 low, int64 last,
				  TimestampTz newest, const NameData *who)
{
	Datum		values[5];
	bool		has_until;

	has_until = get_attnum(get_relname_relid("shard_watermarks", el_schema_oid()),
						   "removed_until") != InvalidAttrNumber;
	values[0] = ObjectIdGetDatum(relid);
	values[1] = Int32GetDatum(shard);
	values[2] = Int64GetDatum(low);
	values[3] = Int64GetDatum(last);
	values[4] = TimestampTzGetDatum(newest);
	el_catalog_sql(psprintf("UPDATE event_log.shard_watermarks"
							" SET low_seq = $4 OPERATOR(pg_catalog.+) 1,"
							" removed_events = removed_events OPERATOR(pg_catalog.+)"
							" ($4 OPERATOR(pg_catalog.-) $3 OPERATOR(pg_catalog.+) 1),"
							" removed_at = pg_catalog.now()%s"
							" WHERE stream OPERATOR(pg_catalog.=) $1 AND shard OPERATOR(pg_catalog.=) $2",
							has_until ?
							", removed_until = GREATEST(removed_until, $5)" : ""),
				   has_until ? 5 : 4,
				   (Oid[]) {REGCLASSOID, INT4OID, INT8OID, INT8OID, TIMESTAMPTZOID},
				   values, NULL, 0, 0);
	values[4] = NameGetDatum(who);
	el_catalog_sql("INSERT INTO event_log.retention_log"
				   " (stream, shard, from_seq, to_seq, events, removed_by)"
				   " VALUES ($1, $2, $3, $4, $4 OPERATOR(pg_catalog.-) $3 OPERATOR(pg_catalog.+) 1, $5)",
				   5, (Oid[]) {REGCLASSOID, INT4OID, INT8OID, INT8OID, NAMEOID},
				   values, NULL, 0, 0);
}

/*
 * Apply a stream's policy to each of its shards; an ElShardReport per
 * shard appended to *report (if not NULL), allocated in the current memory
 * context.  Returns the number of events removed.  The caller is connected
 * to SPI.
 */
static int64
el_enforce_stream(Oid relid, List **report)
{
	int64		removed = 0;
	ElPolicy	p;
	int			shards;
	Relation	rel;
	Relation	pk;
	Relation	kv;
	Snapshot	snap;
	NameData	who;

	/* One enforcement per stream at a time; appends and reads go on. */
	shards = el_lock_stream(relid, ShareUpdateExclusiveLock);
	if (!el_read_policy(relid, &p))
	{
		/*
		 * A segmented stream rolls by size, with a policy or not, and its
		 * sealed segments are summarized for a policy set later.  Segments
		 * a removal detached before the policy was taken away are dropped
		 * first, in a transaction that does nothing else (as with a policy).
		 */
		if (get_rel_relkind(relid) == RELKIND_PARTITIONED_TABLE)
		{
			if (el_segment_drop_detached(relid) > 0)
				return 0;
			el_summarize_segments(relid);
			if (el_segment_full(relid))
				(void) el_segment_roll(relid);
		}
		return 0;
	}
	el_refuse_referenced(relid);
	/* Dropping a segment publishes no DELETE (retention_segment.c). */
	if (get_rel_relkind(relid) == RELKIND_PARTITIONED_TABLE)
		return el_enforce_segmented(relid, &p, shards, report);
	el_refuse_published(relid);
	namestrcpy(&who, GetUserNameFromId(GetUserId(), false));

	rel = table_open(relid, RowExclusiveLock);
	pk = index_open(el_stream_indexes(rel)->pk, RowExclusiveLock);
	kv = index_open(el_stream_indexes(rel)->key_version, RowExclusiveLock);
	snap = RegisterSnapshot(GetLatestSnapshot());
	for (int32 shard = 0; shard < shards; shard++)
	{
		int64		low = el_low_watermark(relid, shard, snap);
		int64		limit = el_stream_shard_end(rel, shard, snap);
		int64		last;
		TimestampTz newest = DT_NOBEGIN;

		if (p.has_count)
			limit = Max(0, limit - p.max_events);
		if (p.keep_unconsumed)
			limit = Min(limit, el_consumed_through(relid, shard));
		if (limit >= low && p.archive)
		{
			/* What the walk would remove, archived first, then removed. */
			limit = el_walk_prefix(rel, pk, kv, snap, shard, low, limit, &p, false, &newest);
			if (limit >= low)
				el_archive_range(relid, shard, low, limit);
		}
		last = limit >= low ?
			el_walk_prefix(rel, pk, kv, snap, shard, low, limit, &p, true, &newest) : low - 1;
		if (last >= low)
		{
			removed += last - low + 1;
			el_record_removal(relid, shard, low, last, newest, &who);
		}
		if (report != NULL)
		{
			ElShardReport *r = palloc(sizeof(ElShardReport));

			r->shard = shard;
			r->removed = last - low + 1;
			r->low = last + 1;
			*report = lappend(*report, r);
		}
	}
	UnregisterSnapshot(snap);
	index_close(kv, NoLock);
	index_close(pk, NoLock);
	table_close(rel, NoLock);
	CommandCounterIncrement();
	return removed;
}

/* The streams that have a retention policy, in OID order. */
static List *
el_policy_streams(void)
{
	List	   *result = NIL;
	uint64		n;

	n = el_catalog_sql("SELECT stream FROM event_log.retention_policies ORDER BY stream",
					   0, NULL, NULL, NULL, EL_CAT_READ | EL_CAT_LATEST, 0);
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;

		result = lappend_oid(result, DatumGetObjectId(el_spi_value(i, 1, &isnull)));
	}
	return result;
}

typedef struct ElEnforceCall
{
	Oid			relid;
	int64		removed;
	List	  **report;
} ElEnforceCall;

static void
el_enforce_call(void *arg)
{
	ElEnforceCall *call = (ElEnforceCall *) arg;

	call->removed = el_enforce_stream(call->relid, call->report);
}

/*
 * For el_enforce_all() and enforce_retention() of every stream: apply one
 * stream's policy in a subtransaction of its own, so that a stream whose
 * enforcement fails (a foreign key that references it, a deadlock, a
 * cancelled lock wait) is reported as a WARNING and the other streams'
 * policies still apply.  Its shards' reports go to *report (if not NULL)
 * only if it succeeded.  Returns the number of events removed, or -1 on
 * failure.
 */
int64
el_enforce_one(Oid relid, List **report)
{
	List	   *shards = NIL;
	ElEnforceCall call = {relid, 0, report ? &shards : NULL};
	ErrorData  *edata = el_try_subxact(el_enforce_call, &call);

	if (edata == NULL)
	{
		if (report != NULL)
			*report = list_concat(*report, shards);
		return call.removed;
	}
	/* A cancel or a shutdown stops the run; anything else, this stream. */
	if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED ||
		edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN)
		ReThrowError(edata);
	ereport(WARNING,
			(errcode(edata->sqlerrcode),
			 errmsg("event_log: retention of event stream \"%s\" skipped: %s",
					el_qualified_name(relid), edata->message),
			 edata->detail ? errdetail_internal("%s", edata->detail) : 0,
			 edata->hint ? errhint("%s", edata->hint) : 0));
	FreeErrorData(edata);
	list_free_deep(shards);
	return -1;
}

/*
 * Apply every policy the current user may apply (all of them for the
 * worker, which runs as a superuser).  Returns the number of events
 * removed, or -1 if no stream has a policy (or the catalog is older than
 * 0.5).  The caller is connected to SPI.
 */
int64
el_enforce_all(void)
{
	List	   *streams;
	ListCell   *lc;
	int64		removed = 0;

	if (!OidIsValid(get_relname_relid("retention_policies", el_schema_oid())))
		return -1;
	streams = el_policy_streams();
	if (streams == NIL)
		return -1;
	foreach(lc, streams)
	{
		Oid			relid = lfirst_oid(lc);

		if (el_stream_shards(relid) > 0 && pg_class_ownercheck(relid, GetUserId()))
			removed += Max(0, el_enforce_one(relid, NULL));
	}
	return removed;
}

/* Put a stream's shard reports into enforce_retention()'s result. */
static void
el_put_reports(Tuplestorestate *out, TupleDesc desc, Oid relid, List *report)
{
	ListCell   *lc;

	foreach(lc, report)
	{
		ElShardReport *r = lfirst(lc);
		Datum		row[4];
		bool		nulls[4] = {false, false, false, false};

		row[0] = ObjectIdGetDatum(relid);
		row[1] = Int32GetDatum(r->shard);
		row[2] = Int64GetDatum(r->removed);
		row[3] = Int64GetDatum(r->low);
		tuplestore_putvalues(out, desc, row, nulls);
	}
}

/*
 * event_log.enforce_retention(stream regclass DEFAULT NULL)
 *		RETURNS TABLE (stream regclass, shard int, removed bigint,
 *					   low_watermark bigint)
 *
 * Apply the policy of one stream (its failure is an error), or of every
 * stream the caller owns that has one; a row per shard of each stream with
 * a policy.  Without a stream, each one runs in a subtransaction of its
 * own: a stream whose policy cannot be applied is a WARNING and one row
 * with a NULL shard, removed and low_watermark, and the others go on.
 */
Datum
el_enforce_retention(PG_FUNCTION_ARGS)
{
	Tuplestorestate *out;
	TupleDesc	desc;
	List	   *streams;
	ListCell   *lc;

	el_require_retention_catalog();

	/*
	 * Refused as a whole where no stream could be applied: otherwise every
	 * stream's subtransaction below would fail alike, and a call on a
	 * standby or in a read-only transaction would end in warnings alone.
	 */
	PreventCommandIfReadOnly("enforce_retention()");
	PreventCommandDuringRecovery("enforce_retention()");
	out = el_result_store(fcinfo, false);
	desc = ((ReturnSetInfo *) fcinfo->resultinfo)->setDesc;
	SPI_connect();
	if (!PG_ARGISNULL(0))
	{
		Oid			relid = PG_GETARG_OID(0);
		List	   *report = NIL;

		(void) el_require_stream(relid);
		el_require_stream_owner(relid, "apply the retention policy");
		(void) el_enforce_stream(relid, &report);
		el_put_reports(out, desc, relid, report);
		SPI_finish();
		return (Datum) 0;
	}
	streams = el_policy_streams();
	foreach(lc, streams)
	{
		Oid			relid = lfirst_oid(lc);
		List	   *report = NIL;

		if (el_stream_shards(relid) == 0 || !pg_class_ownercheck(relid, GetUserId()))
			continue;
		if (el_enforce_one(relid, &report) >= 0)
			el_put_reports(out, desc, relid, report);
		else
		{
			Datum		row[4] = {ObjectIdGetDatum(relid), 0, 0, 0};
			bool		nulls[4] = {false, true, true, true};

			tuplestore_putvalues(out, desc, row, nulls);
		}
		list_free_deep(report);
	}
	SPI_finish();
	return (Datum) 0;
}

/*
 * event_log.low_watermark(stream regclass, shard int) RETURNS bigint
 *
 * The first seq of the shard still in the log, for whoever may read the
 * stream.
 */
Datum
el_low_watermark_sql(PG_FUNCTION_ARGS)
{
	Oid			relid;
	int			shards;
	int32		shard;

	el_require_arg(fcinfo, 0, "stream");
	el_require_arg(fcinfo, 1, "shard");
	relid = PG_GETARG_OID(0);
	shard = PG_GETARG_INT32(1);
	shards = el_require_stream(relid);
	el_check_shard(relid, shards, shard);
	el_check_select(relid);
	PG_RETURN_INT64(el_low_watermark(relid, shard, GetActiveSnapshot()));
}

/* drop_stream(): the stream's policy, watermarks and report go with it. */
static void
el_retention_forget_stream(Oid relid, const char *qname, bool cascade)
{
	Datum		values[1];

	if (!OidIsValid(get_relname_relid("retention_policies", el_schema_oid())))
		return;
	values[0] = ObjectIdGetDatum(relid);
	SPI_connect();
	el_catalog_sql("DELETE FROM event_log.retention_policies WHERE stream OPERATOR(pg_catalog.=) $1",
				   1, (Oid[]) {REGCLASSOID}, values, NULL, 0, 0);
	el_catalog_sql("DELETE FROM event_log.shard_watermarks WHERE stream OPERATOR(pg_catalog.=) $1",
				   1, (Oid[]) {REGCLASSOID}, values, NULL, 0, 0);
	el_catalog_sql("DELETE FROM event_log.retention_log WHERE stream OPERATOR(pg_catalog.=) $1",
				   1, (Oid[]) {REGCLASSOID}, values, NULL, 0, 0);
	el_catalog_sql("DELETE FROM event_log.retired_keys WHERE stream OPERATOR(pg_catalog.=) $1",
				   1, (Oid[]) {REGCLASSOID}, values, NULL, 0, 0);
	el_catalog_sql("DELETE FROM event_log.archive WHERE stream OPERATOR(pg_catalog.=) $1",
				   1, (Oid[]) {REGCLASSOID}, values, NULL, 0, 0);
	SPI_finish();
}

void
el_retention_init(void)
{
	el_on_stream_drop(el_retention_forget_stream);
}
