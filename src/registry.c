/*
 * registry.c
 *	  The stream registry (event_log.streams), which says which tables are
 *	  streams and how many shards each has, and what each backend caches
 *	  about a stream: its unique indexes and the plans run against it.
 *
 *	  The registry is written only here (for create_stream() and
 *	  drop_stream(), stream.c), with the executor-free catalog routines, so
 *	  users need no privileges on it.  Lookups go through a small
 *	  per-backend cache keyed by relation OID and flushed by relcache
 *	  invalidations.
 */
#include "postgres.h"

#include <ctype.h>

#include "access/genam.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_index.h"
#include "catalog/pg_trigger.h"
#include "commands/defrem.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "catalog.h"
#include "event_log.h"
#include "registry.h"

/* Registry columns (event_log.streams) */
#define Anum_reg_stream		1
#define Anum_reg_shards		2
#define Anum_reg_created_at 3
#define Anum_reg_created_by 4
#define Anum_reg_commit_mode 5	/* 0.4 */
#define Natts_reg			5

/*
 * Per-backend cache of what we know about a relation: whether it is a stream,
 * its unique indexes, whether our triggers are there, and the SPI plans run
 * against it.  Entries are marked stale by relcache invalidations (creating
 * or dropping an index or a trigger, ENABLE/DISABLE TRIGGER, renaming,
 * create_stream() and drop_stream() all send one) and rebuilt on next use.
 */
typedef struct ElStreamCacheEntry
{
	Oid			relid;			/* hash key */
	bool		valid;
	int			shards;			/* -1: not a stream */
	bool		grouped;		/* commit mode 'grouped' (commit.c) */
	bool		watermarks;		/* has shard_watermarks rows (0.5) */
	bool		have_indexes;
	ElStreamIndexes indexes;
	bool		have_triggers;	/* missing_trigger is known */
	const char *missing_trigger;	/* NULL: both of ours there, ALWAYS */
	SPIPlanPtr	plans[EL_NUM_PLANS];
} ElStreamCacheEntry;

static HTAB *el_stream_cache = NULL;

static int	el_registry_read(Oid relid, bool *grouped);
static bool el_watermark_find(Oid relid, int32 shard, Snapshot snap,
							  int64 *low_seq);

/*
 * For the per-backend caches keyed by a relation's OID (this one, consumer
 * groups' and projections'), from a relcache invalidation callback: mark
 * the entry of relid stale, or every entry when relid is InvalidOid.  Each
 * entry has its OID first and a bool at valid_offset.
 */
void
el_cache_invalidate(HTAB *cache, Oid relid, Size valid_offset)
{
	HASH_SEQ_STATUS status;
	char	   *entry;

	if (cache == NULL)
		return;
	if (OidIsValid(relid))
	{
		entry = hash_search(cache, &relid, HASH_FIND, NULL);
		if (entry)
			*(bool *) (entry + valid_offset) = false;
		return;
	}
	hash_seq_init(&status, cache);
	while ((entry = hash_seq_search(&status)) != NULL)
		*(bool *) (entry + valid_offset) = false;
}

static void
el_stream_cache_callback(Datum arg, Oid relid)
{
	el_cache_invalidate(el_stream_cache, relid,
						offsetof(ElStreamCacheEntry, valid));
}

/*
 * Plans of stale entries, freed when the transaction ends.  An entry goes
 * stale by an invalidation, which can arrive in the middle of one of its
 * plans: append() runs its INSERT plan, and the append trigger and the
 * shard column's default look the entry up again while it runs (an
 * ANALYZE of the stream, say, sends a relcache invalidation that the
 * trigger's index opens process).  Freeing the plan then would pull it out
 * from under SPI, which still walks it.  At the end of the transaction no
 * plan of ours runs.
 */
static List *el_retired_plans = NIL;	/* in TopMemoryContext */

static void
el_free_retired_plans(XactEvent event, void *arg)
{
	ListCell   *lc;

	if (el_retired_plans == NIL)
		return;
	if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_ABORT &&
		event != XACT_EVENT_PREPARE && event != XACT_EVENT_PARALLEL_COMMIT &&
		event != XACT_EVENT_PARALLEL_ABORT)
		return;
	foreach(lc, el_retired_plans)
		SPI_freeplan((SPIPlanPtr) lfirst(lc));
	list_free(el_retired_plans);
	el_retired_plans = NIL;
}

static void
el_retire_plan(SPIPlanPtr plan)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	el_retired_plans = lappend(el_retired_plans, plan);
	MemoryContextSwitchTo(old);
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
	RegisterXactCallback(el_free_retired_plans, NULL);
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
	bool		grouped;
	bool		watermarks;

	entry = hash_search(el_stream_cache, &relid, HASH_ENTER, &found);
	if (found && entry->valid)
		return entry;
	if (!found)
		memset(entry->plans, 0, sizeof(entry->plans));
	for (int i = 0; i < EL_NUM_PLANS; i++)
	{
		if (entry->plans[i])
			el_retire_plan(entry->plans[i]);
		entry->plans[i] = NULL;
	}
	entry->valid = true;
	entry->have_indexes = false;
	entry->have_triggers = false;
	entry->missing_trigger = NULL;
	entry->shards = -1;
	entry->grouped = false;
	entry->watermarks = false;

	/* Reading the registry may process invalidations: look the entry up again. */
	shards = el_registry_read(relid, &grouped);
	/* Not while decoding: the historic snapshot reads catalogs only. */
	watermarks = shards > 0 && !HistoricSnapshotActive() &&
		el_watermark_find(relid, -1, NULL, NULL);
	entry = hash_search(el_stream_cache, &relid, HASH_FIND, NULL);
	entry->shards = shards;
	entry->grouped = grouped;
	entry->watermarks = watermarks;
	return entry;
}

/* The stream's shard count, or -1 when relid is not a stream. */
int
el_registry_shards(Oid relid)
{
	bool		grouped;

	return el_registry_read(relid, &grouped);
}

/*
 * Read the registry: the stream's shard count, or -1 when relid is not a
 * stream, and whether its commit mode is 'grouped' (a catalog older than 0.4
 * has no commit_mode column: every stream is serial).  Uses the catalog
 * snapshot, which during logical decoding is the historic one (the registry
 * is a user_catalog_table for that reason).
 */
static int
el_registry_read(Oid relid, bool *grouped)
{
	Oid			regid = el_registry_oid(true);
	Relation	reg;
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tup;
	int			shards = -1;

	*grouped = false;
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
		if (RelationGetDescr(reg)->natts >= Anum_reg_commit_mode)
		{
			d = heap_getattr(tup, Anum_reg_commit_mode, RelationGetDescr(reg),
							 &isnull);
			*grouped = !isnull &&
				strcmp(TextDatumGetCString(d), "grouped") == 0;
		}
	}
	systable_endscan(scan);
	table_close(reg, AccessShareLock);
	return shards;
}

/* Every registered stream's OID, in OID order. */
List *
el_registry_streams(void)
{
	Oid			regid = el_registry_oid(true);
	Relation	reg;
	SysScanDesc scan;
	HeapTuple	tup;
	List	   *result = NIL;

	if (!OidIsValid(regid))
		return NIL;
	reg = table_open(regid, AccessShareLock);
	scan = systable_beginscan(reg, InvalidOid, false, NULL, 0, NULL);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, Anum_reg_stream, RelationGetDescr(reg),
									 &isnull);

		if (!isnull)
			result = lappend_oid(result, DatumGetObjectId(d));
	}
	systable_endscan(scan);
	table_close(reg, AccessShareLock);
	list_sort(result, list_oid_cmp);
	return result;
}

/* Cached form of el_registry_shards(). */
int
el_stream_shards(Oid relid)
{
	return el_stream_entry(relid)->shards;
}

/* Whether the stream's commit mode is 'grouped' (cached). */
bool
el_stream_grouped(Oid relid)
{
	return el_stream_entry(relid)->grouped;
}

/*
 * Look a stream's low watermarks up in event_log.shard_watermarks (0.5),
 * with snap (NULL: the catalog snapshot).  With shard -1, whether the
 * stream has any row; otherwise whether the shard has one, and its
 * low_seq in *low_seq.  false on an older catalog.
 */
static bool
el_watermark_find(Oid relid, int32 shard, Snapshot snap, int64 *low_seq)
{
	Oid			nsp = el_schema_oid();
	Oid			tabid = get_relname_relid("shard_watermarks", nsp);
	Oid			idxid = get_relname_relid("shard_watermarks_pkey", nsp);
	Relation	tab;
	SysScanDesc scan;
	ScanKeyData keys[2];
	HeapTuple	tup;
	bool		found = false;

	if (!OidIsValid(tabid) || !OidIsValid(idxid))
		return false;
	tab = table_open(tabid, AccessShareLock);
	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(relid));
	ScanKeyInit(&keys[1], 2, BTEqualStrategyNumber, F_INT4EQ,
				Int32GetDatum(shard));
	/* By its primary key (stream, shard): readers look it up on every call. */
	scan = systable_beginscan(tab, idxid, true, snap, shard < 0 ? 1 : 2, keys);
	if (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		found = true;
		if (low_seq != NULL)
		{
			bool		isnull;
			Datum		d = heap_getattr(tup, 3, RelationGetDescr(tab), &isnull);

			*low_seq = isnull ? 1 : DatumGetInt64(d);
		}
	}
	systable_endscan(scan);
	table_close(tab, AccessShareLock);
	return found;
}

/* Whether the stream has low watermarks: it has had a retention policy. */
bool
el_stream_has_watermarks(Oid relid)
{
	return el_stream_entry(relid)->watermarks;
}

/*
 * A shard's low watermark, the first seq still in the log (1 when retention
 * never removed anything from it), as snap sees it.  A reader looks it up
 * after its rows, with the same snapshot, so that the two agree: the rows
 * and the watermark leave in one transaction (retention.c).  Streams that
 * never had a retention policy cost one cache lookup.
 */
int64
el_low_watermark(Oid relid, int32 shard, Snapshot snap)
{
	int64		low = 1;

	if (!el_stream_entry(relid)->watermarks)
		return 1;
	(void) el_watermark_find(relid, shard, snap, &low);

	/*
	 * A segmented stream's removed events went with DROP TABLE, which no
	 * older snapshot sees through: the latest watermark counts too
	 * (retention_segment.c).
	 */
	if (get_rel_relkind(relid) == RELKIND_PARTITIONED_TABLE)
	{
		int64		latest = 1;
		Snapshot	now = RegisterSnapshot(GetLatestSnapshot());

		(void) el_watermark_find(relid, shard, now, &latest);
		UnregisterSnapshot(now);
		low = Max(low, latest);
	}
	return low;
}

/*
 * The last version of a key whose every event retention removed, from
 * event_log.retired_keys (0.5), with the latest snapshot; 0 if it has none.
 */
int64
el_retired_version(Oid relid, text *key)
{
	Oid			nsp = el_schema_oid();
	Oid			tabid = get_relname_relid("retired_keys", nsp);
	Oid			idxid = get_relname_relid("retired_keys_pkey", nsp);
	Relation	tab;
	SysScanDesc scan;
	ScanKeyData keys[2];
	HeapTuple	tup;
	int64		version = 0;
	Snapshot	snap;

	if (!OidIsValid(tabid) || !OidIsValid(idxid))
		return 0;
	snap = RegisterSnapshot(GetLatestSnapshot());
	tab = table_open(tabid, AccessShareLock);
	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(relid));
	ScanKeyEntryInitialize(&keys[1], 0, 2, BTEqualStrategyNumber, InvalidOid,
						   C_COLLATION_OID, F_TEXTEQ, PointerGetDatum(key));
	scan = systable_beginscan(tab, idxid, true, snap, 2, keys);
	if (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, 3, RelationGetDescr(tab), &isnull);

		version = isnull ? 0 : DatumGetInt64(d);
	}
	systable_endscan(scan);
	table_close(tab, AccessShareLock);
	UnregisterSnapshot(snap);
	return version;
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
				 errmsg("\"%s\" is not an event stream", el_qualified_name(relid)),
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
		name = el_qualified_name(relid);
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
 * Whether a unique index's key columns compare as the stream's columns do:
 * each with its type's default btree operator class and, for key, a
 * deterministic collation.  A unique index on (key COLLATE a
 * nondeterministic collation, version), or on key with an operator class
 * that ignores trailing blanks, enforces another uniqueness than ours and
 * makes the append trigger's probes find other keys' events: the stream's
 * owner could put one in place of the index create_stream() made.
 */
static bool
el_index_compares_exactly(Relation rel, HeapTuple tup, Form_pg_index idx)
{
	bool		isnull;
	oidvector  *classes = (oidvector *) DatumGetPointer(
		SysCacheGetAttr(INDEXRELID, tup, Anum_pg_index_indclass, &isnull));
	oidvector  *colls = (oidvector *) DatumGetPointer(
		SysCacheGetAttr(INDEXRELID, tup, Anum_pg_index_indcollation, &isnull));

	for (int i = 0; i < idx->indnkeyatts; i++)
	{
		AttrNumber	att = idx->indkey.values[i];
		Oid			typid;

		if (att <= 0 || att > RelationGetDescr(rel)->natts)
			return false;
		typid = TupleDescAttr(RelationGetDescr(rel), att - 1)->atttypid;
		if (classes->values[i] != GetDefaultOpClass(typid, BTREE_AM_OID))
			return false;
		if (OidIsValid(colls->values[i]) &&
			!get_collation_isdeterministic(colls->values[i]))
			return false;
	}
	return true;
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
		if (idx->indisunique && idx->indisvalid && idx->indisready &&
			idx->indimmediate &&
			heap_attisnull(tup, Anum_pg_index_indexprs, NULL) &&
			heap_attisnull(tup, Anum_pg_index_indpred, NULL) &&
			el_index_compares_exactly(rel, tup, idx))
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
							el_qualified_name(RelationGetRelid(rel))),
					 errdetail("Every stream needs unique indexes on (shard, seq), (event_id) and (key, version)."),
					 errhint("If a restore stopped before its post-data section had finished, run that section again: pg_restore --section=post-data (docs/operations.md, \"An interrupted restore\").")));
		entry = el_stream_entry(RelationGetRelid(rel));
		entry->indexes = found;
		entry->have_indexes = true;
	}
	return &entry->indexes;
}

/* Whether a function is event_log.<name>, whatever the search_path. */
static bool
el_is_our_function(Oid fnoid, Oid nsp, const char *name)
{
	char	   *fname;
	bool		ours;

	if (!OidIsValid(nsp) || get_func_namespace(fnoid) != nsp)
		return false;
	fname = get_func_name(fnoid);
	ours = fname != NULL && strcmp(fname, name) == 0;
	if (fname)
		pfree(fname);
	return ours;
}

/*
 * Which of our two triggers a stream lacks, read from pg_trigger: the name
 * of one that is not there with our function and enabled ALWAYS, or NULL.
 * The DDL guard checks their full definitions; this only has to tell a
 * stream whose post-data was not restored (docs/design/restore.md).
 */
static const char *
el_scan_missing_trigger(Oid relid)
{
	Relation	trig = table_open(TriggerRelationId, AccessShareLock);
	Oid			nsp = get_namespace_oid("event_log", true);
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tup;
	bool		have_append = false;
	bool		have_immutable = false;

	ScanKeyInit(&key, Anum_pg_trigger_tgrelid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(relid));
	scan = systable_beginscan(trig, TriggerRelidNameIndexId, true, NULL, 1, &key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Form_pg_trigger t = (Form_pg_trigger) GETSTRUCT(tup);

		if (t->tgenabled != TRIGGER_FIRES_ALWAYS)
			continue;
		if (strcmp(NameStr(t->tgname), EL_APPEND_TRIGGER) == 0)
			have_append = el_is_our_function(t->tgfoid, nsp, "assign_position");
		else if (strcmp(NameStr(t->tgname), EL_IMMUTABLE_TRIGGER) == 0)
			have_immutable = el_is_our_function(t->tgfoid, nsp, "refuse_change");
	}
	systable_endscan(scan);
	table_close(trig, AccessShareLock);
	if (!have_append)
		return EL_APPEND_TRIGGER;
	if (!have_immutable)
		return EL_IMMUTABLE_TRIGGER;
	return NULL;
}

/*
 * The name of the trigger of ours a stream lacks (not there with our
 * function, or not enabled ALWAYS), or NULL when it has both; cached, so
 * that the column default of every append (event_log.require_guards())
 * costs a hash lookup.  Creating, dropping, enabling and disabling a
 * trigger send the relcache invalidation that resets it.
 */
const char *
el_stream_missing_trigger(Oid relid)
{
	ElStreamCacheEntry *entry = el_stream_entry(relid);
	const char *missing;

	if (entry->have_triggers)
		return entry->missing_trigger;
	missing = el_scan_missing_trigger(relid);

	/* Keep it only if no invalidation arrived while pg_trigger was read. */
	entry = hash_search(el_stream_cache, &relid, HASH_FIND, NULL);
	if (entry && entry->valid)
	{
		entry->missing_trigger = missing;
		entry->have_triggers = true;
	}
	return missing;
}

/* The nine columns of an event, in order, from the stream (%s). */
#define EL_EVENT_SELECT \
	"SELECT shard, seq, key, version, type, payload, metadata," \
	" event_id, recorded_at FROM %s"

/*
 * The statements of el_stream_plan(), by kind: the text (%s is the
 * stream's qualified name), the parameters' types, and whether to plan
 * each call for its parameters.
 */
typedef struct ElStreamStatement
{
	const char *sql;
	int			nargs;
	Oid			types[5];
	bool		custom;
} ElStreamStatement;

static const ElStreamStatement el_stream_statements[EL_NUM_PLANS] = {
	[EL_PLAN_INSERT] = {
		"INSERT INTO %s (key, type, payload, metadata, event_id)"
		" VALUES ($1, $2, $3, $4, $5)",
		5, {TEXTOID, TEXTOID, JSONBOID, JSONBOID, UUIDOID}
	},
	[EL_PLAN_READ] = {
		EL_EVENT_SELECT
		" WHERE shard OPERATOR(pg_catalog.=) $1"
		" AND seq OPERATOR(pg_catalog.>) $2"
		" ORDER BY seq LIMIT $3",
		3, {INT4OID, INT8OID, INT8OID}
	},
	[EL_PLAN_LAST] = {
		"SELECT seq FROM %s"
		" WHERE shard OPERATOR(pg_catalog.=) $1"
		" ORDER BY seq DESC LIMIT 1",
		1, {INT4OID}
	},
	[EL_PLAN_REPLAY] = {
		EL_EVENT_SELECT
		" WHERE key OPERATOR(pg_catalog.=) $1"
		" AND version OPERATOR(pg_catalog.>) $2"
		" ORDER BY version",
		2, {TEXTOID, INT8OID}
	},
	[EL_PLAN_BY_ID] = {
		EL_EVENT_SELECT
		" WHERE event_id OPERATOR(pg_catalog.=) $1",
		1, {UUIDOID}
	},
	/* One type: a range scan of an index on (shard, type, seq), if any. */
	[EL_PLAN_READ_TYPE] = {
		EL_EVENT_SELECT
		" WHERE shard OPERATOR(pg_catalog.=) $1"
		" AND type OPERATOR(pg_catalog.=) $4"
		" AND seq OPERATOR(pg_catalog.>) $2"
		" ORDER BY seq LIMIT $3",
		4, {INT4OID, INT8OID, INT8OID, TEXTOID}
	},

	/*
	 * Several types.  Per type, the shard's next events of that type in seq
	 * order, then the first $3 of those merged.  Each branch is a range scan
	 * of an index on (shard, type, seq) if the stream has one, so a
	 * selective filter reads only the events it returns (at most $3 per
	 * type); without that index each branch walks the primary key and skips
	 * the other types (docs/design/type_filters.md).  $4 holds distinct
	 * types (el_types_arg()).
	 */
	[EL_PLAN_READ_TYPES] = {
		"SELECT e.shard, e.seq, e.key, e.version, e.type, e.payload,"
		" e.metadata, e.event_id, e.recorded_at"
		" FROM pg_catalog.unnest($4) AS t(type) CROSS JOIN LATERAL"
		" (SELECT s.shard, s.seq, s.key, s.version, s.type, s.payload,"
		" s.metadata, s.event_id, s.recorded_at FROM %s s"
		" WHERE s.shard OPERATOR(pg_catalog.=) $1"
		" AND s.type OPERATOR(pg_catalog.=) t.type"
		" AND s.seq OPERATOR(pg_catalog.>) $2"
		" ORDER BY s.seq LIMIT $3) e"
		" ORDER BY e.seq LIMIT $3",
		4, {INT4OID, INT8OID, INT8OID, TEXTARRAYOID}
	},

	/*
	 * A group's lag by type (consumer_lag).  No order is needed, so one scan
	 * with type = ANY: a range scan of an index on (shard, type, seq) if the
	 * stream has one (index-only once vacuumed); without, every event after
	 * $2 through the primary key (docs/design/type_filters.md, "A group's
	 * types").
	 */
	[EL_PLAN_COUNT_TYPES] = {
		"SELECT pg_catalog.count(*) FROM %s"
		" WHERE shard OPERATOR(pg_catalog.=) $1"
		" AND type OPERATOR(pg_catalog.=) ANY ($3)"
		" AND seq OPERATOR(pg_catalog.>) $2",
		3, {INT4OID, INT8OID, TEXTARRAYOID}
	},

	/*
	 * recorded_at >= $1 is what the stream's BRIN index on recorded_at
	 * serves (docs/design/reads.md); the rest resumes after the row ($1, $3,
	 * $4) of an earlier page.  Planned for each call's range (see
	 * el_stream_plan()).
	 */
	[EL_PLAN_TIME] = {
		EL_EVENT_SELECT
		" WHERE recorded_at OPERATOR(pg_catalog.>=) $1"
		" AND recorded_at OPERATOR(pg_catalog.<) $2"
		" AND (recorded_at OPERATOR(pg_catalog.>) $1"
		" OR shard OPERATOR(pg_catalog.>) $3"
		" OR (shard OPERATOR(pg_catalog.=) $3"
		" AND seq OPERATOR(pg_catalog.>) $4))"
		" ORDER BY recorded_at, shard, seq LIMIT $5",
		5, {TIMESTAMPTZOID, TIMESTAMPTZOID, INT4OID, INT8OID, INT8OID}, true
	},

	/*
	 * The predicate and expression of the index that track_conversations()
	 * makes (conversation.c), so it serves.
	 */
	[EL_PLAN_CONVERSATION] = {
		EL_EVENT_SELECT
		" WHERE metadata OPERATOR(pg_catalog.?) 'correlation_id'"
		" AND (metadata OPERATOR(pg_catalog.->>) 'correlation_id')"
		" OPERATOR(pg_catalog.=) $1"
		" ORDER BY shard, seq",
		1, {TEXTOID}
	},
};

/*
 * A kept SPI plan for one of the statements we run against a stream.  The
 * caller must be connected to SPI.
 *
 * These statements run as the caller (append(), read(), replay(),
 * read_event(), and the
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
	const ElStreamStatement *st = &el_stream_statements[kind];
	char	   *sql;
	volatile SPIPlanPtr plan;

	if (entry->plans[kind])
		return entry->plans[kind];
	if (st->sql == NULL)
		elog(ERROR, "bad plan kind %d", (int) kind);
	sql = psprintf(st->sql, el_qualified_name(relid));

	/*
	 * Always the generic plan: each of these has one sensible plan (an index
	 * scan in key order), and with a custom plan every call would be planned
	 * again (a LIMIT given as a parameter makes the generic plan look costly
	 * to the plan cache, which then never switches to it).  Except a read
	 * by time: how many rows a range holds depends on the range, and a
	 * generic plan guesses a fixed share of the stream (0.5%: 50,000 rows of
	 * 10 million), whose cost then crosses jit_above_cost, so that every
	 * call would pay for JIT compilation, several times the read itself.
	 * Planned for the actual range, a 1,000-event read is a small plan
	 * (docs/design/reads.md).
	 */
	el_push_catalog_path();
	PG_TRY();
	{
		plan = SPI_prepare_cursor(sql, st->nargs, unconstify(Oid *, &st->types[0]),
								  st->custom ? CURSOR_OPT_CUSTOM_PLAN :
								  CURSOR_OPT_GENERIC_PLAN);
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

/* Register a new stream, and make the backend's caches see it. */
void
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
	/* Read only from a 0.4 catalog on (the descriptor has the column). */
	values[Anum_reg_commit_mode - 1] = CStringGetTextDatum("serial");
	tup = heap_form_tuple(RelationGetDescr(reg), values, nulls);
	CatalogTupleInsert(reg, tup);
	table_close(reg, NoLock);
	CacheInvalidateRelcacheByRelid(relid);
	CommandCounterIncrement();
}

/*
 * Set a stream's commit mode ('serial' or 'grouped', checked by the caller),
 * and make every backend's cache see it.  false if the catalog predates the
 * commit_mode column (0.4).
 */
bool
el_registry_set_commit_mode(Oid relid, const char *mode)
{
	Relation	reg = table_open(el_registry_oid(false), RowExclusiveLock);
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tup;
	bool		done = false;

	if (RelationGetDescr(reg)->natts < Anum_reg_commit_mode)
	{
		table_close(reg, RowExclusiveLock);
		return false;
	}
	ScanKeyInit(&key, Anum_reg_stream, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(relid));
	scan = systable_beginscan(reg, InvalidOid, false, NULL, 1, &key);
	if (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Datum		values[Natts_reg] = {0};
		bool		nulls[Natts_reg] = {0};
		bool		replace[Natts_reg] = {0};
		HeapTuple	newtup;

		values[Anum_reg_commit_mode - 1] = CStringGetTextDatum(mode);
		replace[Anum_reg_commit_mode - 1] = true;
		newtup = heap_modify_tuple(tup, RelationGetDescr(reg), values, nulls,
								   replace);
		CatalogTupleUpdate(reg, &newtup->t_self, newtup);
		done = true;
	}
	systable_endscan(scan);
	table_close(reg, NoLock);
	CacheInvalidateRelcacheByRelid(relid);
	CommandCounterIncrement();
	return done;
}

/* Remove a stream from the registry, likewise. */
void
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
