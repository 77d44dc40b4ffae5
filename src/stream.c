/*
 * stream.c
 *	  Creating and dropping streams, and the registry (event_log.streams) that
 *	  says which tables are streams and how many shards each has.
 *
 *	  The registry is written only here, with the executor-free catalog
 *	  routines, so users need no privileges on it.  Lookups go through a small
 *	  per-backend cache keyed by relation OID and flushed by relcache
 *	  invalidations.
 */
#include "postgres.h"

#include <ctype.h>

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "event_log.h"

PG_FUNCTION_INFO_V1(el_create_stream);
PG_FUNCTION_INFO_V1(el_drop_stream);

/* Registry columns (event_log.streams) */
#define Anum_reg_stream		1
#define Anum_reg_shards		2
#define Anum_reg_created_at 3
#define Anum_reg_created_by 4
#define Natts_reg			4

/* event_log.dropped_streams columns */
#define Natts_dropped		5

/*
 * Per-backend cache of what we know about a relation: whether it is a stream,
 * its unique indexes and the SPI plans run against it.  Entries are marked
 * stale by relcache invalidations (creating or dropping an index, renaming,
 * create_stream() and drop_stream() all send one) and rebuilt on next use.
 */
typedef struct ElStreamCacheEntry
{
	Oid			relid;			/* hash key */
	bool		valid;
	int			shards;			/* -1: not a stream */
	bool		have_indexes;
	ElStreamIndexes indexes;
	bool		consumers_known;	/* has_consumers is up to date */
	bool		has_consumers;	/* the stream has a consumer group */
	int64	   *seen_end;		/* per shard: a seq known to be committed */
	SPIPlanPtr	plans[EL_NUM_PLANS];
} ElStreamCacheEntry;

static HTAB *el_stream_cache = NULL;

static void
el_stream_cache_callback(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	ElStreamCacheEntry *entry;

	if (el_stream_cache == NULL)
		return;
	if (OidIsValid(relid))
	{
		entry = hash_search(el_stream_cache, &relid, HASH_FIND, NULL);
		if (entry)
			entry->valid = false;
		return;
	}
	hash_seq_init(&status, el_stream_cache);
	while ((entry = hash_seq_search(&status)) != NULL)
		entry->valid = false;
}

void
el_stream_cache_init(void)
{
	HASHCTL		ctl;

	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(ElStreamCacheEntry);
	el_stream_cache = hash_create("event_log stream cache", 64, &ctl,
								  HASH_ELEM | HASH_BLOBS);
	CacheRegisterRelcacheCallback(el_stream_cache_callback, (Datum) 0);
}

/*
 * The cache entry for relid, rebuilt if stale.  The entry is marked valid
 * before the registry is read, so an invalidation that arrives during the
 * read leaves it stale for the next caller.
 */
static ElStreamCacheEntry *
el_stream_entry(Oid relid)
{
	ElStreamCacheEntry *entry;
	bool		found;
	int			shards;

	entry = hash_search(el_stream_cache, &relid, HASH_ENTER, &found);
	if (found && entry->valid)
		return entry;
	if (!found)
	{
		memset(entry->plans, 0, sizeof(entry->plans));
		entry->seen_end = NULL;
	}
	if (entry->seen_end)
		pfree(entry->seen_end);
	entry->seen_end = NULL;
	for (int i = 0; i < EL_NUM_PLANS; i++)
	{
		if (entry->plans[i])
			SPI_freeplan(entry->plans[i]);
		entry->plans[i] = NULL;
	}
	entry->valid = true;
	entry->have_indexes = false;
	entry->consumers_known = false;
	entry->shards = -1;

	/* Reading the registry may process invalidations: look the entry up again. */
	shards = el_registry_shards(relid);
	entry = hash_search(el_stream_cache, &relid, HASH_FIND, NULL);
	entry->shards = shards;
	return entry;
}

/*
 * Read the registry: the stream's shard count, or -1 when relid is not a
 * stream.  Uses the catalog snapshot, which during logical decoding is the
 * historic one (the registry is a user_catalog_table for that reason).
 */
int
el_registry_shards(Oid relid)
{
	Oid			regid = el_registry_oid(true);
	Relation	reg;
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tup;
	int			shards = -1;

	if (!OidIsValid(regid))
		return -1;

	reg = table_open(regid, AccessShareLock);
	ScanKeyInit(&key, Anum_reg_stream, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(relid));
	scan = systable_beginscan(reg, InvalidOid, false, NULL, 1, &key);
	if (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, Anum_reg_shards, RelationGetDescr(reg),
									 &isnull);

		shards = isnull ? -1 : DatumGetInt32(d);
	}
	systable_endscan(scan);
	table_close(reg, AccessShareLock);
	return shards;
}

/* Cached form of el_registry_shards(). */
int
el_stream_shards(Oid relid)
{
	return el_stream_entry(relid)->shards;
}

/*
 * The highest seq of a shard this backend has seen committed (0 if none),
 * which lets commit_offset() skip probing the shard's end: a committed event
 * never goes away, and a dropped stream's entry is reset by the relcache
 * invalidation drop_stream() sends.
 */
int64
el_shard_seen_end(Oid relid, int32 shard)
{
	ElStreamCacheEntry *entry = el_stream_entry(relid);

	if (entry->seen_end == NULL || shard < 0 || shard >= entry->shards)
		return 0;
	return entry->seen_end[shard];
}

/*
 * Record that seq of a shard was read.  The caller makes sure it was
 * committed: a transaction that appended to the stream could roll its own
 * events back, so what it reads must not be recorded.
 */
void
el_shard_saw(Oid relid, int32 shard, int64 seq)
{
	ElStreamCacheEntry *entry = el_stream_entry(relid);

	if (shard < 0 || shard >= entry->shards)
		return;
	if (entry->seen_end == NULL)
		entry->seen_end = MemoryContextAllocZero(TopMemoryContext,
												 sizeof(int64) * entry->shards);
	if (seq > entry->seen_end[shard])
		entry->seen_end[shard] = seq;
}

/*
 * Whether the stream has at least one consumer group (for the commit-time
 * NOTIFY).  Read lazily, not when the entry is rebuilt: the output plugin
 * uses these entries under a historic snapshot, where the group catalog
 * cannot be read.  Creating or dropping a group sends a relcache
 * invalidation for its stream, which resets this.
 */
bool
el_stream_has_consumers(Oid relid)
{
	ElStreamCacheEntry *entry = el_stream_entry(relid);
	bool		exists;

	if (entry->consumers_known)
		return entry->has_consumers;
	/* As in el_stream_entry(): an invalidation during the read leaves it stale. */
	entry->consumers_known = true;

	/*
	 * The lookup runs as the catalog's owner, also at the pre-commit of any
	 * transaction that appended; consumer.c's el_query() pins pg_catalog as
	 * the path for it, whatever the appender's search_path says.
	 */
	exists = el_consumer_groups_exist(relid);
	entry = hash_search(el_stream_cache, &relid, HASH_FIND, NULL);
	if (entry)
		entry->has_consumers = exists;
	return exists;
}

/* Schema-qualified, quoted name of a relation, for messages and SQL. */
char *
el_stream_name(Oid relid)
{
	char	   *relname = get_rel_name(relid);
	char	   *nspname;

	if (relname == NULL)
		return psprintf("%u", relid);
	nspname = get_namespace_name(get_rel_namespace(relid));
	return quote_qualified_identifier(nspname, relname);
}

/* Shard count of a stream; a clear error if relid is not one. */
int
el_require_stream(Oid relid)
{
	int			shards = el_stream_shards(relid);

	if (shards < 1)
	{
		if (get_rel_name(relid) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_TABLE),
					 errmsg("relation with OID %u does not exist", relid)));
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not an event stream", el_stream_name(relid)),
				 errhint("Create streams with event_log.create_stream().")));
	}
	return shards;
}

/*
 * Lock a stream for a command and make sure it is still a stream once the
 * lock is held; returns its shard count.
 *
 * Callers check what they can (that relid is a stream, the caller's
 * privileges) before calling, so a role without privileges cannot queue
 * behind other transactions' locks.  Waiting for the lock lets a concurrent
 * drop_stream() commit: LockRelationOid() then processes the invalidations
 * it sent, so the checks below see the drop, and the command fails cleanly
 * with 42P01 instead of tripping over a relation that is no longer there.
 * The lock is kept to the end of the transaction, so the stream cannot go
 * away afterwards either.  It is the lock the command's own statement takes
 * on the table anyway (RowExclusiveLock for append()'s INSERT,
 * AccessShareLock for the reads, AccessExclusiveLock for the drop), taken
 * first, before any other lock of the command (append() takes its shard lock
 * after it, as before), so no new lock order and no new deadlock arises.
 */
int
el_lock_stream(Oid relid, LOCKMODE lockmode)
{
	char	   *name = NULL;
	int			shards;

	/* The name, for the error, only when we have to wait (and it may go). */
	if (!ConditionalLockRelationOid(relid, lockmode))
	{
		name = el_stream_name(relid);
		LockRelationOid(relid, lockmode);
	}
	if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid)) ||
		(shards = el_stream_shards(relid)) < 1)
	{
		UnlockRelationOid(relid, lockmode);
		if (name == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_TABLE),
					 errmsg("event stream with OID %u does not exist", relid),
					 errdetail("It was dropped while this command ran.")));
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("event stream \"%s\" does not exist", name),
				 errdetail("It was dropped while this command waited for it.")));
	}
	return shards;
}

/*
 * Find the three unique indexes every stream relies on.  Returns false if any
 * is missing (the DDL guard reports that; lookups need them).
 */
bool
el_find_stream_indexes(Relation rel, ElStreamIndexes *out)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;

	memset(out, 0, sizeof(*out));
	foreach(lc, indexes)
	{
		Oid			indexoid = lfirst_oid(lc);
		HeapTuple	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(indexoid));
		Form_pg_index idx;

		if (!HeapTupleIsValid(tup))
			continue;
		idx = (Form_pg_index) GETSTRUCT(tup);
		if (idx->indisunique && idx->indisvalid && idx->indimmediate &&
			heap_attisnull(tup, Anum_pg_index_indexprs, NULL) &&
			heap_attisnull(tup, Anum_pg_index_indpred, NULL))
		{
			int			n = idx->indnkeyatts;
			int16	   *k = idx->indkey.values;

			if (n == 2 && k[0] == Anum_el_shard && k[1] == Anum_el_seq)
				out->pk = indexoid;
			else if (n == 1 && k[0] == Anum_el_event_id)
				out->event_id = indexoid;
			else if (n == 2 && k[0] == Anum_el_key && k[1] == Anum_el_version)
				out->key_version = indexoid;
		}
		ReleaseSysCache(tup);
	}
	list_free(indexes);
	return OidIsValid(out->pk) && OidIsValid(out->event_id) &&
		OidIsValid(out->key_version);
}

/* The stream's unique indexes, cached; an error if one is missing. */
const ElStreamIndexes *
el_stream_indexes(Relation rel)
{
	ElStreamCacheEntry *entry = el_stream_entry(RelationGetRelid(rel));

	if (!entry->have_indexes)
	{
		ElStreamIndexes found;

		if (!el_find_stream_indexes(rel, &found))
			ereport(ERROR,
					(errcode(ERRCODE_EL_IMMUTABLE),
					 errmsg("event stream \"%s\" is missing one of its unique indexes",
							el_stream_name(RelationGetRelid(rel))),
					 errdetail("Every stream needs unique indexes on (shard, seq), (event_id) and (key, version).")));
		entry = el_stream_entry(RelationGetRelid(rel));
		entry->indexes = found;
		entry->have_indexes = true;
	}
	return &entry->indexes;
}

/*
 * A kept SPI plan for one of the statements we run against a stream.  The
 * caller must be connected to SPI.
 *
 * These statements run as the caller (append(), read(), replay(), and the
 * consumer functions after their own checks), but they must mean the same
 * under any search_path: the plan cache analyses a kept plan again whenever
 * it runs under another search_path than the one it was made under.  So
 * nothing in them is resolved through the path: the table name is
 * schema-qualified and quoted, operators are spelled OPERATOR(pg_catalog.x),
 * parameters have the exact types of the columns they meet (no cast or
 * coercion function is looked up), and ORDER BY uses the column type's
 * default btree operator class, which is found by type, not by name.  The
 * plan is prepared with only pg_catalog on the path, and its first run under
 * the caller's path analyses it again (once per path and backend), to the
 * same plan.  The path is not pinned while the plan runs: that would also
 * pin it for the caller's own triggers and policies on the stream, which run
 * as the caller and may rely on the caller's path.
 */
SPIPlanPtr
el_stream_plan(Oid relid, ElPlanKind kind)
{
	ElStreamCacheEntry *entry = el_stream_entry(relid);
	const char *name;
	char	   *sql = NULL;
	int			nargs = 0;
	Oid			argtypes[5];
	volatile SPIPlanPtr plan;

	if (entry->plans[kind])
		return entry->plans[kind];

	name = el_stream_name(relid);
	switch (kind)
	{
		case EL_PLAN_INSERT:
			sql = psprintf("INSERT INTO %s (key, type, payload, metadata, event_id)"
						   " VALUES ($1, $2, $3, $4, $5)", name);
			nargs = 5;
			argtypes[0] = TEXTOID;
			argtypes[1] = TEXTOID;
			argtypes[2] = JSONBOID;
			argtypes[3] = JSONBOID;
			argtypes[4] = UUIDOID;
			break;
		case EL_PLAN_READ:
			sql = psprintf("SELECT shard, seq, key, version, type, payload, metadata,"
						   " event_id, recorded_at FROM %s"
						   " WHERE shard OPERATOR(pg_catalog.=) $1"
						   " AND seq OPERATOR(pg_catalog.>) $2"
						   " ORDER BY seq LIMIT $3", name);
			nargs = 3;
			argtypes[0] = INT4OID;
			argtypes[1] = INT8OID;
			argtypes[2] = INT8OID;
			break;
		case EL_PLAN_LAST:
			sql = psprintf("SELECT seq FROM %s"
						   " WHERE shard OPERATOR(pg_catalog.=) $1"
						   " ORDER BY seq DESC LIMIT 1", name);
			nargs = 1;
			argtypes[0] = INT4OID;
			break;
		case EL_PLAN_REPLAY:
			sql = psprintf("SELECT shard, seq, key, version, type, payload, metadata,"
						   " event_id, recorded_at FROM %s"
						   " WHERE key OPERATOR(pg_catalog.=) $1"
						   " AND version OPERATOR(pg_catalog.>) $2"
						   " ORDER BY version", name);
			nargs = 2;
			argtypes[0] = TEXTOID;
			argtypes[1] = INT8OID;
			break;
		case EL_NUM_PLANS:
			elog(ERROR, "bad plan kind");
	}

	/*
	 * Always the generic plan: each of these has one sensible plan (an index
	 * scan in key order), and with a custom plan every call would be planned
	 * again (a LIMIT given as a parameter makes the generic plan look costly
	 * to the plan cache, which then never switches to it).
	 */
	el_push_catalog_path();
	PG_TRY();
	{
		plan = SPI_prepare_cursor(sql, nargs, argtypes, CURSOR_OPT_GENERIC_PLAN);
	}
	PG_FINALLY();
	{
		PopOverrideSearchPath();
	}
	PG_END_TRY();
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql,
			 SPI_result_code_string(SPI_result));

	/*
	 * Preparing may have processed invalidations.  Keep the plan only if the
	 * entry is still fresh; otherwise it is used once and freed by
	 * SPI_finish().
	 */
	entry = hash_search(el_stream_cache, &relid, HASH_FIND, NULL);
	if (entry && entry->valid)
	{
		SPI_keepplan(plan);
		entry->plans[kind] = plan;
	}
	return plan;
}

/*
 * Split a possibly qualified name the way the SQL parser would, refusing
 * (instead of silently truncating) any part of NAMEDATALEN bytes or more.
 */
List *
el_parse_name(const char *name, const char *what)
{
	const char *p = name;
	char	   *copy;
	List	   *names;
	List	   *result = NIL;
	ListCell   *lc;

	/* First pass: measure each part before SplitIdentifierString truncates. */
	for (;;)
	{
		int			len = 0;

		while (isspace((unsigned char) *p))
			p++;
		if (*p == '"')
		{
			for (p++; *p; p++)
			{
				if (*p == '"')
				{
					if (p[1] != '"')
					{
						p++;
						break;
					}
					p++;
				}
				len++;
			}
		}
		else
		{
			while (*p && *p != '.' && !isspace((unsigned char) *p))
			{
				len++;
				p++;
			}
		}
		if (len >= NAMEDATALEN)
			ereport(ERROR,
					(errcode(ERRCODE_NAME_TOO_LONG),
					 errmsg("%s name \"%s\" is too long", what, name),
					 errdetail("Each part of a name must be shorter than %d bytes.",
							   NAMEDATALEN)));
		while (isspace((unsigned char) *p))
			p++;
		if (*p != '.')
			break;
		p++;
	}

	copy = pstrdup(name);
	if (!SplitIdentifierString(copy, '.', &names) || names == NIL ||
		list_length(names) > 3)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("invalid %s name \"%s\"", what, name),
				 errhint("Give a table name, optionally schema-qualified, such as \"shop.carts\".")));
	foreach(lc, names)
	{
		char	   *part = (char *) lfirst(lc);

		if (part[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_NAME),
					 errmsg("invalid %s name \"%s\"", what, name),
					 errdetail("Names must not be empty.")));
		result = lappend(result, makeString(part));
	}
	return result;
}

static void
el_registry_insert(Oid relid, int shards)
{
	Relation	reg = table_open(el_registry_oid(false), RowExclusiveLock);
	Datum		values[Natts_reg];
	bool		nulls[Natts_reg] = {0};
	NameData	creator;
	HeapTuple	tup;

	namestrcpy(&creator, GetUserNameFromId(GetUserId(), false));
	values[Anum_reg_stream - 1] = ObjectIdGetDatum(relid);
	values[Anum_reg_shards - 1] = Int32GetDatum(shards);
	values[Anum_reg_created_at - 1] =
		TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	values[Anum_reg_created_by - 1] = NameGetDatum(&creator);
	tup = heap_form_tuple(RelationGetDescr(reg), values, nulls);
	CatalogTupleInsert(reg, tup);
	table_close(reg, NoLock);
	CacheInvalidateRelcacheByRelid(relid);
	CommandCounterIncrement();
}

static void
el_registry_delete(Oid relid)
{
	Relation	reg = table_open(el_registry_oid(false), RowExclusiveLock);
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tup;

	ScanKeyInit(&key, Anum_reg_stream, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(relid));
	scan = systable_beginscan(reg, InvalidOid, false, NULL, 1, &key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
		CatalogTupleDelete(reg, &tup->t_self);
	systable_endscan(scan);
	table_close(reg, NoLock);
	CacheInvalidateRelcacheByRelid(relid);
	CommandCounterIncrement();
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
	appendStringInfo(&sql,
					 "CREATE TABLE %s ("
					 " shard pg_catalog.int4 NOT NULL,"
					 " seq pg_catalog.int8 NOT NULL,"
					 " key pg_catalog.text NOT NULL,"
					 " version pg_catalog.int8 NOT NULL,"
					 " type pg_catalog.text NOT NULL,"
					 " payload pg_catalog.jsonb NOT NULL,"
					 " metadata pg_catalog.jsonb,"
					 " event_id pg_catalog.uuid NOT NULL,"
					 " recorded_at pg_catalog.timestamptz NOT NULL,"
					 " PRIMARY KEY (shard, seq),"
					 " UNIQUE (event_id),"
					 " UNIQUE (key, version))", qname);

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
	SPI_finish();

	PG_RETURN_OID(relid);
}

/*
 * event_log.drop_stream(stream regclass) RETURNS bigint
 *
 * The only way to remove a stream: its owner drops it and a row in
 * event_log.dropped_streams records what went.  Returns the number of events
 * removed.
 */
Datum
el_drop_stream(PG_FUNCTION_ARGS)
{
	Oid			relid;
	int			shards;
	char	   *qname;
	char	   *sql;
	int64		events;
	bool		isnull;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("stream must not be null")));
	relid = PG_GETARG_OID(0);
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
	qname = el_stream_name(relid);

	SPI_connect();

	/*
	 * What follows as the extension's owner (the projections lookup,
	 * forgetting the stream's consumer groups) pins pg_catalog as its path
	 * itself (projection.c, consumer.c); the count runs as the caller, and
	 * names its function and table in full.
	 */
	{
		char	   *projections = el_projections_of_stream(relid);

		if (projections != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
					 errmsg("cannot drop event stream %s because projections depend on it", qname),
					 errdetail("Projections fed by it: %s.", projections),
					 errhint("Drop them first with event_log.drop_projection().")));
	}
	sql = psprintf("SELECT pg_catalog.count(*) FROM %s", qname);
	(void) el_exec_as_caller(sql, 0, NULL, NULL, true, 0);
	events = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										 SPI_tuptable->tupdesc, 1, &isnull));

	el_registry_delete(relid);
	el_record_drop(qname, shards, events);
	el_consumer_forget_stream(relid);

	/*
	 * DROP TABLE of a qualified name resolves nothing through the path, and
	 * runs as the caller; other roles' event triggers that fire for it keep
	 * the session's path, as for any DROP TABLE.
	 */
	el_drop_allowed_relid = relid;
	PG_TRY();
	{
		(void) el_exec_as_caller(psprintf("DROP TABLE %s", qname), 0, NULL, NULL, false, 0);
	}
	PG_FINALLY();
	{
		el_drop_allowed_relid = InvalidOid;
	}
	PG_END_TRY();
	SPI_finish();

	PG_RETURN_INT64(events);
}
