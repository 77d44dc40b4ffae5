/*
 * stream.c
 *	  Creating and dropping streams: create_stream() and drop_stream().
 *
 *	  A stream is a table the calling role creates and owns, with the
 *	  contract's columns, unique indexes, two triggers (append.c assigns
 *	  positions, immutable.c refuses changes) and the default of its shard
 *	  column (append.c: appends refused while the triggers are missing),
 *	  registered in the registry (registry.c).  The subsystems built on streams (projections, consumer
 *	  groups) learn of a drop through el_on_stream_drop() callbacks, which
 *	  may refuse it or forget what they keep about the stream.
 */
#include "postgres.h"

#include <ctype.h>

#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "catalog/pg_type.h"
#include "utils/lsyscache.h"

#include "catalog.h"
#include "event_log.h"
#include "immutable.h"
#include "personal.h"
#include "registry.h"
#include "schema.h"
#include "segment.h"
#include "stream.h"
#include "wake.h"

PG_FUNCTION_INFO_V1(el_create_stream);
PG_FUNCTION_INFO_V1(el_drop_stream);
PG_FUNCTION_INFO_V1(el_drop_stream_cascade);
PG_FUNCTION_INFO_V1(el_alter_stream);

/* event_log.dropped_streams columns */
#define Natts_dropped		5

/* Called by drop_stream(), in the order they were registered. */
#define EL_MAX_DROP_CALLBACKS	4
static el_stream_drop_callback el_drop_callbacks[EL_MAX_DROP_CALLBACKS];
static int	el_ndrop_callbacks = 0;

/*
 * Register a function drop_stream() calls once it holds the stream's lock,
 * before anything is removed, connected to SPI.  It may refuse the drop by
 * raising an error, or forget what it keeps about the stream (with cascade,
 * drop what it built on it): that goes with the transaction if the drop
 * fails later.  At load time only.
 */
void
el_on_stream_drop(el_stream_drop_callback callback)
{
	if (el_ndrop_callbacks >= EL_MAX_DROP_CALLBACKS)
		elog(ERROR, "too many drop_stream() callbacks");
	el_drop_callbacks[el_ndrop_callbacks++] = callback;
}

static void
el_record_drop(const char *name, int shards, int64 events)
{
	Oid			relid = get_relname_relid("dropped_streams", el_schema_oid());
	Relation	rel = table_open(relid, RowExclusiveLock);
	Datum		values[Natts_dropped];
	bool		nulls[Natts_dropped] = {0};
	NameData	who;

	namestrcpy(&who, GetUserNameFromId(GetUserId(), false));
	values[0] = CStringGetTextDatum(name);
	values[1] = Int32GetDatum(shards);
	values[2] = Int64GetDatum(events);
	values[3] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	values[4] = NameGetDatum(&who);
	CatalogTupleInsert(rel, heap_form_tuple(RelationGetDescr(rel), values, nulls));
	table_close(rel, NoLock);
}

/*
 * event_log.create_stream(stream text, shards int DEFAULT 1) RETURNS regclass
 *
 * The table is created by the calling role (so it needs CREATE on the schema
 * and owns the result, and can GRANT it); only the registry row is written
 * with the extension's rights.
 */
Datum
el_create_stream(PG_FUNCTION_ARGS)
{
	char	   *name;
	int32		shards;
	RangeVar   *rv;
	Oid			nspid;
	char	   *qname;
	Oid			relid;
	AclResult	aclresult;
	StringInfoData sql;
	int64		segment_events = 0;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("stream name must not be null")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("shard count must not be null")));

	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	shards = PG_GETARG_INT32(1);
	/* segment_events: from a 0.6 catalog on (docs/retention.md) */
	if (PG_NARGS() > 2 && !PG_ARGISNULL(2))
	{
		segment_events = PG_GETARG_INT64(2);
		if (segment_events < 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("segment_events must be positive"),
					 errdetail("The requested segment size was " INT64_FORMAT " events.",
							   segment_events)));
	}
	if (shards < 1 || shards > EL_MAX_SHARDS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("shard count must be between 1 and %d", EL_MAX_SHARDS),
				 errdetail("The requested shard count was %d.", shards)));

	rv = makeRangeVarFromNameList(el_parse_name(name, "stream"));
	nspid = RangeVarGetCreationNamespace(rv);
	if (isAnyTempNamespace(nspid) || rv->relpersistence == RELPERSISTENCE_TEMP)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("event streams cannot be temporary tables")));
	if (nspid == el_schema_oid())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot create a stream in schema \"event_log\""),
				 errhint("Create streams in a schema of your own.")));

	/* Check what CREATE TABLE would, so errors read well and cite no SQL. */
	aclresult = pg_namespace_aclcheck(nspid, GetUserId(), ACL_CREATE);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_SCHEMA, get_namespace_name(nspid));
	if (OidIsValid(get_relname_relid(rv->relname, nspid)))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_TABLE),
				 errmsg("relation \"%s\" already exists",
						quote_qualified_identifier(get_namespace_name(nspid), rv->relname)),
				 errhint("Existing streams are listed in event_log.streams.")));

	qname = quote_qualified_identifier(get_namespace_name(nspid), rv->relname);

	/*
	 * Every type and function is schema-qualified so the caller's search_path
	 * cannot substitute its own.
	 */
	initStringInfo(&sql);
	appendStringInfo(&sql, "CREATE TABLE %s (", qname);

	/*
	 * The shard column's default refuses appends with a clear error while
	 * the triggers are missing, as after an interrupted restore.  A default
	 * is analysed once the table exists, so it can name the table itself.
	 * Not on a catalog not yet updated to 0.3, which lacks the function.
	 */
	if (OidIsValid(el_require_guards_oid()))
		appendStringInfo(&sql,
						 " shard pg_catalog.int4 NOT NULL"
						 " DEFAULT event_log.require_guards(%s::pg_catalog.regclass),",
						 quote_literal_cstr(qname));
	else
		appendStringInfoString(&sql, " shard pg_catalog.int4 NOT NULL,");
	appendStringInfoString(&sql,
						   " seq pg_catalog.int8 NOT NULL,"
						   " key pg_catalog.text NOT NULL,"
						   " version pg_catalog.int8 NOT NULL,"
						   " type pg_catalog.text NOT NULL,"
						   " payload pg_catalog.jsonb NOT NULL,"
						   " metadata pg_catalog.jsonb,"
						   " event_id pg_catalog.uuid NOT NULL,"
						   " recorded_at pg_catalog.timestamptz NOT NULL");
	if (segment_events > 0)

		/*
		 * Segmented: routed by the tenth column's default to the newest
		 * segment; each segment has the unique indexes (segment.c).
		 */
		appendStringInfo(&sql,
						 ", " EL_SEGMENT_COLUMN " pg_catalog.int4 NOT NULL"
						 " DEFAULT event_log.current_segment(%s::pg_catalog.regclass))"
						 " PARTITION BY LIST (" EL_SEGMENT_COLUMN ")",
						 quote_literal_cstr(qname));
	else
		appendStringInfoString(&sql,
							   ", PRIMARY KEY (shard, seq),"
							   " UNIQUE (event_id),"
							   " UNIQUE (key, version))");

	SPI_connect();
	(void) el_exec_as_caller(sql.data, 0, NULL, NULL, false, 0);

	resetStringInfo(&sql);
	appendStringInfo(&sql,
					 "CREATE TRIGGER " EL_APPEND_TRIGGER " BEFORE INSERT ON %s"
					 " FOR EACH ROW EXECUTE FUNCTION event_log.assign_position('%d')",
					 qname, shards);
	(void) el_exec_as_caller(sql.data, 0, NULL, NULL, false, 0);

	resetStringInfo(&sql);
	appendStringInfo(&sql,
					 "CREATE TRIGGER " EL_IMMUTABLE_TRIGGER
					 " BEFORE UPDATE OR DELETE OR TRUNCATE ON %s"
					 " FOR EACH STATEMENT EXECUTE FUNCTION event_log.refuse_change()",
					 qname);
	(void) el_exec_as_caller(sql.data, 0, NULL, NULL, false, 0);

	/*
	 * Reads by time (read_by_time()): recorded_at is nearly in the order
	 * rows are stored, which a BRIN index serves at a small fraction of a
	 * btree's cost per append (docs/design/reads.md).  Small ranges so a
	 * range read rechecks few rows; autosummarize so VACUUM need not.
	 */
	resetStringInfo(&sql);
	appendStringInfo(&sql,
					 "CREATE INDEX ON %s USING brin (recorded_at)"
					 " WITH (pages_per_range = " CppAsString2(EL_TIME_PAGES_PER_RANGE)
					 ", autosummarize = on)", qname);
	(void) el_exec_as_caller(sql.data, 0, NULL, NULL, false, 0);

	/* ALWAYS: fire under session_replication_role = replica too. */
	resetStringInfo(&sql);
	appendStringInfo(&sql,
					 "ALTER TABLE %s ENABLE ALWAYS TRIGGER " EL_APPEND_TRIGGER ","
					 " ENABLE ALWAYS TRIGGER " EL_IMMUTABLE_TRIGGER, qname);
	(void) el_exec_as_caller(sql.data, 0, NULL, NULL, false, 0);

	relid = get_relname_relid(rv->relname, nspid);
	if (!OidIsValid(relid))
		elog(ERROR, "stream table %s vanished after creation", qname);

	el_registry_insert(relid, shards);
	if (segment_events > 0)
	{
		Datum		values[2] = {ObjectIdGetDatum(relid), Int64GetDatum(segment_events)};

		el_catalog_sql("INSERT INTO event_log.segmented_streams (stream, segment_events)"
					   " VALUES ($1, $2)", 2, (Oid[]) {OIDOID, INT8OID}, values, NULL, 0, 0);
		el_segment_first(relid);
		/* The database's worker rolls its segments (if preloaded). */
		el_wake_launcher_at_commit();
	}
	SPI_finish();

	PG_RETURN_OID(relid);
}

/*
 * event_log.drop_stream(stream regclass) RETURNS bigint
 * event_log.drop_stream(stream regclass, cascade boolean) RETURNS bigint
 *
 * The only way to remove a stream: its owner drops it and a row in
 * event_log.dropped_streams records what went.  Returns the number of events
 * removed.  Without cascade (the one-argument form of 0.1) the subsystems
 * may refuse (projections do while the stream feeds any); with it, they
 * drop what they built on the stream, in the same transaction.
 */
static int64
el_drop_stream_internal(Oid relid, bool cascade)
{
	int			shards;
	char	   *qname;
	char	   *sql;
	int64		events;
	bool		isnull;

	(void) el_require_stream(relid);
	if (!pg_class_ownercheck(relid, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, OBJECT_TABLE, get_rel_name(relid));

	/*
	 * No appends may slip in between the count and the drop.  Waiting for
	 * the lock may let another drop_stream() or an ALTER ... OWNER commit:
	 * check again under the lock.
	 */
	shards = el_lock_stream(relid, AccessExclusiveLock);
	if (!pg_class_ownercheck(relid, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, OBJECT_TABLE, get_rel_name(relid));
	qname = el_qualified_name(relid);

	SPI_connect();

	/*
	 * The subsystems built on streams refuse the drop, or forget the
	 * stream (projections refuse while any is fed by it, or with cascade
	 * drop them; consumer groups go with it).  What they run as the
	 * extension's owner pins pg_catalog as its path (catalog.c); the count
	 * runs as the caller, and names its function and table in full.
	 */
	for (int i = 0; i < el_ndrop_callbacks; i++)
		el_drop_callbacks[i] (relid, qname, cascade);

	/*
	 * Not read-only: a new snapshot, taken now that we hold the lock.  The
	 * statement's own was taken before we waited for it, and would miss
	 * events that appenders committed meanwhile, which go with the table.
	 */
	sql = psprintf("SELECT pg_catalog.count(*) FROM %s", qname);
	(void) el_exec_as_caller(sql, 0, NULL, NULL, false, 0);
	events = DatumGetInt64(el_spi_value(0, 1, &isnull));

	el_registry_delete(relid);
	el_schema_forget(relid);
	el_personal_forget(relid);
	el_record_drop(qname, shards, events);

	/*
	 * DROP TABLE of a qualified name resolves nothing through the path, and
	 * runs as the caller; other roles' event triggers that fire for it keep
	 * the session's path, as for any DROP TABLE.
	 */
	el_guard_allow(relid, EL_GUARD_DROP_STREAM);
	PG_TRY();
	{
		(void) el_exec_as_caller(psprintf("DROP TABLE %s", qname), 0, NULL, NULL, false, 0);
	}
	PG_FINALLY();
	{
		el_guard_disallow(relid);
	}
	PG_END_TRY();
	if (el_segments_catalog())
	{
		Datum		values[1] = {ObjectIdGetDatum(relid)};

		/* Segments retention detached and did not drop yet go too. */
		(void) el_segment_drop_detached(relid);
		el_catalog_sql("DELETE FROM event_log.segments WHERE stream OPERATOR(pg_catalog.=) $1",
					   1, (Oid[]) {OIDOID}, values, NULL, 0, 0);
		el_catalog_sql("DELETE FROM event_log.segmented_streams WHERE stream OPERATOR(pg_catalog.=) $1",
					   1, (Oid[]) {OIDOID}, values, NULL, 0, 0);
	}
	SPI_finish();

	return events;
}

/* drop_stream(stream regclass), the form of version 0.1: no cascade. */
Datum
el_drop_stream(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("stream must not be null")));
	PG_RETURN_INT64(el_drop_stream_internal(PG_GETARG_OID(0), false));
}

/* drop_stream(stream regclass, cascade boolean), from version 0.3. */
Datum
el_drop_stream_cascade(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("stream must not be null")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("cascade must not be null"),
				 errhint("Pass cascade => true to drop the stream's projections with it, or false to be refused while it has any.")));
	PG_RETURN_INT64(el_drop_stream_internal(PG_GETARG_OID(0), PG_GETARG_BOOL(1)));
}

/*
 * event_log.alter_stream(stream regclass, commit_mode text): the stream's
 * owner chooses how its appenders commit (commit.c, docs/design/offsets.md).
 *
 * Each backend acts on its cached copy of the mode: an appender in how long
 * it holds its shard lock, a reader in whether it makes what it read durable
 * before handing it out.  Both copies must agree with the catalog whenever
 * an event is visible before it is durable, so the switch takes the stream's
 * ACCESS EXCLUSIVE lock (after the owner check, so nobody else can queue
 * it): it waits for every transaction that appended to the stream (an early
 * release of theirs is flushed before their table lock goes) or read it
 * (whose copy may be stale until it takes the lock anew), and whoever locks
 * the stream after it rereads the mode.  Held to the end of our transaction,
 * which may itself have appended in the old mode: readers wait for its
 * flush too.
 */
Datum
el_alter_stream(PG_FUNCTION_ARGS)
{
	Oid			relid;
	char	   *mode;

	el_require_arg(fcinfo, 0, "stream");
	relid = PG_GETARG_OID(0);
	(void) el_require_stream(relid);
	if (!pg_class_ownercheck(relid, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, OBJECT_TABLE, get_rel_name(relid));
	if (PG_ARGISNULL(1))
		PG_RETURN_OID(relid);
	mode = text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (strcmp(mode, "serial") != 0 && strcmp(mode, "grouped") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid commit mode \"%s\"", mode),
				 errhint("The commit mode is 'serial' or 'grouped' (docs/streams.md).")));
	(void) el_lock_stream(relid, AccessExclusiveLock);
	if (!el_registry_set_commit_mode(relid, mode))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the event_log catalog of this database predates commit modes"),
				 errhint("Run ALTER EXTENSION event_log UPDATE.")));
	PG_RETURN_OID(relid);
}
