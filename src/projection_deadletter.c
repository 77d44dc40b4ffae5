/*
 * projection_deadletter.c
 *	  Dead letters of async projections: an error policy per projection, the
 *	  parking of a failed event and of every later event of its key
 *	  (event_log.projection_dead_letters), and the SQL functions that set
 *	  the policy and retry or discard parked events, recording who did it
 *	  (event_log.dead_letter_actions).
 *
 *	  The rule that keeps a key's events in order: a key with a parked event
 *	  is parked as a whole.  The async run (projection_async.c) parks every
 *	  later event of it instead of applying it, whatever the policy, and
 *	  moves the shard's checkpoint past it, so the other keys of the shard
 *	  go on.  Parked events are applied only by retry_dead_letters(), in the
 *	  order of their seq, key by key, under the projection lock that runs
 *	  hold too; an event is applied exactly when its row here is deleted, in
 *	  the same transaction.  Events of the key that come after the parked
 *	  ones are past the checkpoint, so the run applies them after the retry
 *	  has committed, in order.  A rebuild replays every event anew and so
 *	  forgets the parked ones; drop_projection() deletes them with it.
 *
 *	  The catalog objects are 0.4's: on a catalog not yet updated every
 *	  projection's policy is 'stop' and nothing is parked.
 *	  docs/design/dead_letters.md has the reasoning.
 */
#include "postgres.h"

#include "access/table.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "archive.h"
#include "catalog.h"
#include "event_log.h"
#include "projection.h"
#include "registry.h"

PG_FUNCTION_INFO_V1(el_set_error_policy);
PG_FUNCTION_INFO_V1(el_retry_dead_letters);
PG_FUNCTION_INFO_V1(el_discard_dead_letters);

/* A parked key of a shard, and the seq of its first parked event. */
typedef struct ElParkedKey
{
	char		key[EL_MAX_KEY_BYTES + 1];
	int64		head;
} ElParkedKey;

/* The calling role's name, for event_log.dead_letter_actions.done_by. */
static Datum
el_caller_name(void)
{
	return DirectFunctionCall1(namein,
							   CStringGetDatum(GetUserNameFromId(GetUserId(), false)));
}

/* Whether the catalog has the dead letters (0.4). */
bool
el_dead_letters_catalog(void)
{
	return OidIsValid(get_relname_relid("projection_dead_letters", el_schema_oid()));
}

/*
 * A key as the hash of parked keys holds it.  Every append path refuses
 * keys over EL_MAX_KEY_BYTES (key.c); one that got in some other way (a
 * restore with the triggers off) must not be cut short here, which could
 * let its events pass a parked key's.
 */
static const char *
el_hash_key(const char *key)
{
	if (strlen(key) > EL_MAX_KEY_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("event key of %zu bytes is longer than the limit of %d bytes",
						strlen(key), EL_MAX_KEY_BYTES)));
	return key;
}

/* The hash of a shard's parked keys, made on first use. */
static HTAB *
el_shard_keys(ElParked *pk, int32 shard)
{
	if (pk->keys[shard] == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = EL_MAX_KEY_BYTES + 1;
		ctl.entrysize = sizeof(ElParkedKey);
		ctl.hcxt = pk->cxt;
		pk->keys[shard] = hash_create("event_log parked keys", 64, &ctl,
									  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	return pk->keys[shard];
}

/*
 * What a run of an async projection needs to know (SPI connected, the
 * projection locked): its policy for live runs, and the parked keys of
 * each shard, read with the latest snapshot as the checkpoints are.
 */
ElParked *
el_parked_open(Oid view, Oid stream, int shards, bool build)
{
	ElParked   *pk = palloc0(sizeof(ElParked));

	pk->view = view;
	pk->stream = stream;
	pk->shards = shards;
	pk->cxt = CurrentMemoryContext;
	pk->keys = palloc0(sizeof(HTAB *) * shards);
	if (!el_dead_letters_catalog())
		return pk;

	el_catalog_sql(build ?
				   "SELECT on_build_error FROM event_log.projections WHERE projection = $1" :
				   "SELECT on_error FROM event_log.projections WHERE projection = $1",
				   1, (Oid[]) {OIDOID}, (Datum[]) {ObjectIdGetDatum(view)},
				   NULL, EL_CAT_READ | EL_CAT_LATEST, 1);
	pk->park = SPI_processed == 1 && strcmp(el_spi_text(0, 1), "park") == 0;
	if (build)
		return pk;				/* a build starts from nothing parked */

	el_catalog_sql("SELECT shard::int8, key, pg_catalog.min(seq)"
				   " FROM event_log.projection_dead_letters"
				   " WHERE projection = $1 AND key IS NOT NULL GROUP BY shard, key",
				   1, (Oid[]) {OIDOID}, (Datum[]) {ObjectIdGetDatum(view)},
				   NULL, EL_CAT_READ | EL_CAT_LATEST, 0);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		int64		shard = el_spi_int8(r, 1);
		char	   *key = el_spi_text(r, 2);
		ElParkedKey *entry;

		if (shard < 0 || shard >= shards || key == NULL)
			continue;			/* not a shard of the stream now: never read */
		entry = hash_search(el_shard_keys(pk, (int32) shard), el_hash_key(key),
							HASH_ENTER, NULL);
		entry->head = el_spi_int8(r, 3);
	}
	return pk;
}

/*
 * Whether an event (its fields deformed) must be parked because its key is:
 * the seq its key waits behind, or -1.
 */
int64
el_parked_behind(ElParked *pk, Datum *values, bool *nulls)
{
	int32		shard = DatumGetInt32(values[Anum_el_shard - 1]);
	char	   *key;
	ElParkedKey *entry;

	if (nulls[Anum_el_key - 1] || shard < 0 || shard >= pk->shards ||
		pk->keys[shard] == NULL)
		return -1;
	key = TextDatumGetCString(values[Anum_el_key - 1]);
	entry = hash_search(pk->keys[shard], el_hash_key(key), HASH_FIND, NULL);
	pfree(key);
	return entry != NULL ? entry->head : -1;
}

/*
 * Park one event of the run's stream: the one a handler failed on (edata
 * set), whose key is parked from now on, or one that waits behind it
 * (edata NULL, behind: the seq of the failed one).  Its row is written by
 * el_park_flush(), in the transaction that moves the shard's checkpoint
 * past it; the key is parked for the rest of the run at once.
 */
void
el_park_event(ElParked *pk, HeapTuple tup, TupleDesc desc, ErrorData *edata,
			  int64 behind)
{
	MemoryContext old;
	ElPending  *ev;
	bool		isnull;
	Datum		key = heap_getattr(tup, Anum_el_key, desc, &isnull);
	int32		shard = DatumGetInt32(heap_getattr(tup, Anum_el_shard, desc, &isnull));

	if (pk->pendcxt == NULL)
		pk->pendcxt = AllocSetContextCreate(pk->cxt, "event_log parked events",
											ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(pk->pendcxt);
	if (pk->npending == pk->maxpending)
	{
		pk->maxpending = Max(64, pk->maxpending * 2);
		pk->pending = pk->pending == NULL ?
			palloc(sizeof(ElPending) * pk->maxpending) :
			repalloc(pk->pending, sizeof(ElPending) * pk->maxpending);
	}
	ev = &pk->pending[pk->npending++];
	ev->shard = shard;
	ev->seq = DatumGetInt64(heap_getattr(tup, Anum_el_seq, desc, &isnull));
	ev->key = heap_attisnull(tup, Anum_el_key, desc) ? NULL : TextDatumGetCString(key);
	ev->type = TextDatumGetCString(heap_getattr(tup, Anum_el_type, desc, &isnull));
	ev->error = edata ? pstrdup(edata->message ? edata->message : "(no message)") : NULL;
	ev->sqlstate = edata ? pstrdup(unpack_sql_state(edata->sqlerrcode)) : NULL;
	ev->behind = behind;
	MemoryContextSwitchTo(old);

	if (edata != NULL && ev->key != NULL && shard >= 0 && shard < pk->shards)
	{
		bool		found;
		ElParkedKey *entry = hash_search(el_shard_keys(pk, shard), el_hash_key(ev->key),
										 HASH_ENTER, &found);

		entry->head = ev->seq;
		if (pk->marked && !found)
		{
			ElPending  *since;

			old = MemoryContextSwitchTo(pk->cxt);
			since = palloc0(sizeof(ElPending));
			since->shard = shard;
			since->key = pstrdup(ev->key);
			pk->since = lappend(pk->since, since);
			MemoryContextSwitchTo(old);
		}
	}
}

/*
 * A build that parks inside a subtransaction it may roll back (a set-based
 * group of chunks, projection_build.c) marks the parked keys and counts
 * first: el_parked_undo() then forgets what was parked since, whose rows
 * the rollback took with it.
 */
void
el_parked_mark(ElParked *pk)
{
	list_free_deep(pk->since);
	pk->since = NIL;
	pk->mark_events = pk->build_events;
	pk->mark_keys = pk->build_keys;
	pk->marked = true;
}

void
el_parked_undo(ElParked *pk)
{
	ListCell   *lc;

	foreach(lc, pk->since)
	{
		ElPending  *since = lfirst(lc);

		(void) hash_search(pk->keys[since->shard], since->key, HASH_REMOVE, NULL);
	}
	pk->build_events = pk->mark_events;
	pk->build_keys = pk->mark_keys;
	el_parked_mark(pk);
	/* Rows not written yet were the rolled-back subtransaction's too. */
	pk->npending = 0;
	pk->maxpending = 0;
	pk->pending = NULL;
	if (pk->pendcxt != NULL)
		MemoryContextReset(pk->pendcxt);
}

/* An array of the pending events' field (NULL where absent). */
static Datum
el_pending_array(ElParked *pk, int field)
{
	int			n = pk->npending;
	Datum	   *elems = palloc(sizeof(Datum) * n);
	bool	   *nulls = palloc0(sizeof(bool) * n);
	Oid			elemtype = field <= 1 ? (field == 0 ? INT4OID : INT8OID) :
		field == 6 ? INT8OID : TEXTOID;
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			dims[1] = {n};
	int			lbs[1] = {1};

	for (int i = 0; i < n; i++)
	{
		ElPending  *ev = &pk->pending[i];
		const char *text = NULL;

		switch (field)
		{
			case 0:
				elems[i] = Int32GetDatum(ev->shard);
				break;
			case 1:
				elems[i] = Int64GetDatum(ev->seq);
				break;
			case 6:
				elems[i] = Int64GetDatum(ev->behind);
				nulls[i] = ev->behind < 0;
				break;
			default:
				text = field == 2 ? ev->key : field == 3 ? ev->type :
					field == 4 ? ev->error : ev->sqlstate;
				nulls[i] = text == NULL;
				elems[i] = text ? CStringGetTextDatum(text) : (Datum) 0;
				break;
		}
	}
	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs, elemtype,
											  typlen, typbyval, typalign));
}

/*
 * Write the rows of the events parked since the last flush, in one
 * statement (a build may park thousands).  SPI connected.
 */
void
el_park_flush(ElParked *pk)
{
	Oid			types[9] = {OIDOID, OIDOID, INT4ARRAYOID, INT8ARRAYOID, TEXTARRAYOID,
	TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, INT8ARRAYOID};
	Datum		values[9];

	if (pk->npending == 0)
		return;
	values[0] = ObjectIdGetDatum(pk->view);
	values[1] = ObjectIdGetDatum(pk->stream);
	for (int f = 0; f < 7; f++)
		values[f + 2] = el_pending_array(pk, f);
	el_catalog_sql("INSERT INTO event_log.projection_dead_letters"
				   " (projection, stream, shard, seq, key, type, error, sqlstate, blocked_by)"
				   " SELECT $1, $2, u.* FROM ROWS FROM (pg_catalog.unnest($3),"
				   " pg_catalog.unnest($4), pg_catalog.unnest($5), pg_catalog.unnest($6),"
				   " pg_catalog.unnest($7), pg_catalog.unnest($8), pg_catalog.unnest($9)) u",
				   9, types, values, NULL, 0, 0);
	pk->npending = 0;
	pk->maxpending = 0;
	pk->pending = NULL;
	MemoryContextReset(pk->pendcxt);
}

/*
 * A rebuild replays every event, parked ones too: forget them, recording
 * that (action 'rebuilt').  drop_projection() deletes them and their log
 * (record false): the view's oid may be used again.  SPI connected.
 */
void
el_dead_letters_forget(Oid view, bool record)
{
	Oid			types[2] = {OIDOID, NAMEOID};
	Datum		values[2];

	if (!el_dead_letters_catalog())
		return;
	values[0] = ObjectIdGetDatum(view);
	if (record)
	{
		values[1] = el_caller_name();
		el_catalog_sql("WITH d AS (DELETE FROM event_log.projection_dead_letters"
					   " WHERE projection = $1 RETURNING *)"
					   " INSERT INTO event_log.dead_letter_actions"
					   " (action, done_by, projection, stream, shard, seq, key, type, error)"
					   " SELECT 'rebuilt', $2, projection, stream, shard, seq, key, type, error FROM d",
					   2, types, values, NULL, 0, 0);
	}
	else
		el_catalog_sql("WITH d AS (DELETE FROM event_log.projection_dead_letters"
					   " WHERE projection = $1)"
					   " DELETE FROM event_log.dead_letter_actions WHERE projection = $1",
					   1, types, values, NULL, 0, 0);
}

/* ---------------------------------------------------------------------
 * The SQL functions
 * ---------------------------------------------------------------------
 */

/*
 * Refuse a call on a catalog not yet updated to 0.4, or from a handler
 * (any security-restricted operation): a retry inside a handler of the
 * same projection would apply its key's later events before the one being
 * applied.
 */
static void
el_require_dead_letters(void)
{
	if (InSecurityRestrictedOperation())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot manage dead letters within a security-restricted operation"),
				 errdetail("Projection handlers run as security-restricted operations.")));
	if (!el_dead_letters_catalog())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("dead letters need version 0.4 of the event_log catalog"),
				 errhint("Run ALTER EXTENSION event_log UPDATE.")));
}

/*
 * An error policy argument: NULL (as it is), 'stop' or 'park'.  what
 * names it in the message.
 */
const char *
el_error_policy_arg(FunctionCallInfo fcinfo, int argno, const char *what)
{
	char	   *policy;

	if (argno >= PG_NARGS() || PG_ARGISNULL(argno))
		return NULL;
	policy = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	if (strcmp(policy, "stop") != 0 && strcmp(policy, "park") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid %s policy \"%s\"", what, policy),
				 errhint("The policies are 'stop' and 'park'.")));
	return policy;
}

/*
 * Refuse 'park' for an inline projection: its handler runs in the
 * appending transaction, and its trigger would apply a parked key's later
 * events at once, out of order.
 */
void
el_check_error_policy(const char *name, bool inline_mode, const char *on_error,
					  const char *on_build_error)
{
	if (!inline_mode)
		return;
	if (on_error != NULL && strcmp(on_error, "park") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("inline projection \"%s\" cannot park events", name),
				 errdetail("An inline projection's handler runs in the appending transaction: its failure fails the append, so the event never enters the log."),
				 errhint("Use an async projection to park failing events per key.")));
	if (on_build_error != NULL && strcmp(on_build_error, "park") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("inline projection \"%s\" cannot park events in its builds", name),
				 errdetail("Its trigger would apply the later events of a parked key as they are appended, out of order."),
				 errhint("Use an async projection to park failing events per key.")));
}

/* Write a projection's policies (NULL: as they are).  SPI connected. */
void
el_set_error_policies(Oid view, const char *on_error, const char *on_build_error)
{
	Oid			types[3] = {OIDOID, TEXTOID, TEXTOID};
	Datum		values[3];
	char		nulls[3] = "   ";

	values[0] = ObjectIdGetDatum(view);
	values[1] = on_error ? CStringGetTextDatum(on_error) : (Datum) 0;
	values[2] = on_build_error ? CStringGetTextDatum(on_build_error) : (Datum) 0;
	if (on_error == NULL)
		nulls[1] = 'n';
	if (on_build_error == NULL)
		nulls[2] = 'n';
	el_catalog_sql("UPDATE event_log.projections"
				   " SET on_error = coalesce($2, on_error),"
				   " on_build_error = coalesce($3, on_build_error)"
				   " WHERE projection = $1",
				   3, types, values, nulls, 0, 0);
}

/*
 * event_log.set_error_policy(projection text, on_error text,
 *     on_build_error text) RETURNS void
 *
 * What a projection does when a handler fails, in live runs and in
 * builds: 'stop' its shard at the event (a build: fail), or 'park' the
 * event and the later events of its key.  NULL leaves a policy as it is.
 * Only async projections may park.
 */
Datum
el_set_error_policy(PG_FUNCTION_ARGS)
{
	const char *on_error;
	const char *on_build_error;
	Oid			view;
	ElProjection *p;

	el_require_arg(fcinfo, 0, "projection");
	on_error = el_error_policy_arg(fcinfo, 1, "on_error");
	on_build_error = el_error_policy_arg(fcinfo, 2, "on_build_error");
	SPI_connect();
	el_require_dead_letters();
	view = el_projection_oid(PG_GETARG_TEXT_PP(0));
	el_require_owner(view);
	el_lock_projection(view, true);
	p = el_projection_load(view);
	if (p == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("projection \"%s\" was dropped",
						text_to_cstring(PG_GETARG_TEXT_PP(0)))));
	el_check_error_policy(get_rel_name(view), p->inline_mode, on_error, on_build_error);
	el_set_error_policies(view, on_error, on_build_error);
	SPI_finish();
	PG_RETURN_VOID();
}

/* A parked event of a retry, copied out of SPI's result. */
typedef struct ElDeadLetter
{
	int32		shard;
	int64		seq;
	char	   *key;			/* NULL: an event without key, alone */
} ElDeadLetter;

/* Read the event at (shard, seq) of an open stream, or NULL. */
static HeapTuple
el_fetch_event(Relation stream, Relation pk, int32 shard, int64 seq)
{
	Snapshot	snap = RegisterSnapshot(GetTransactionSnapshot());
	ElStreamScan *scan = el_shard_scan(stream, snap, shard, seq - 1);
	TupleTableSlot *slot = table_slot_create(stream, NULL);
	HeapTuple	tup = NULL;

	if (el_stream_scan_next(scan, slot))
	{
		bool		isnull;

		if (DatumGetInt64(slot_getattr(slot, Anum_el_seq, &isnull)) == seq)
			tup = ExecCopySlotHeapTuple(slot);
	}
	el_stream_scan_end(scan);
	ExecDropSingleTupleTableSlot(slot);
	UnregisterSnapshot(snap);
	return tup;
}

/*
 * Read a parked event that the log no longer holds from the archive (a
 * build parks archived events too): a copy of its tuple, with *desc set to
 * a copy of its descriptor, or NULL if the archive does not hold it.
 * SPI connected.
 */
static HeapTuple
el_fetch_archived(Oid stream, int32 shard, int64 seq, TupleDesc *desc)
{
	HeapTuple	tup = NULL;
	bool		isnull;

	if (!OidIsValid(get_relname_relid("archive", el_schema_oid())))
		return NULL;
	if (el_archive_fetch(stream, shard, seq - 1, 1) == 1 &&
		DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									Anum_el_seq, &isnull)) == seq && !isnull)
	{
		tup = heap_copytuple(SPI_tuptable->vals[0]);
		*desc = CreateTupleDescCopy(SPI_tuptable->tupdesc);
	}
	SPI_freetuptable(SPI_tuptable);
	return tup;
}

/* Record an action on one parked event, deleting it. */
static void
el_dead_letter_done(Oid view, int32 shard, int64 seq, const char *action)
{
	Oid			types[5] = {OIDOID, INT4OID, INT8OID, TEXTOID, NAMEOID};
	Datum		values[5] = {ObjectIdGetDatum(view), Int32GetDatum(shard),
	Int64GetDatum(seq), CStringGetTextDatum(action), el_caller_name()};

	el_catalog_sql("WITH d AS (DELETE FROM event_log.projection_dead_letters"
				   " WHERE projection = $1 AND shard = $2 AND seq = $3 RETURNING *)"
				   " INSERT INTO event_log.dead_letter_actions"
				   " (action, done_by, projection, stream, shard, seq, key, type, error)"
				   " SELECT $4, $5, projection, stream, shard, seq, key, type, error FROM d",
				   5, types, values, NULL, 0, 0);
}

/*
 * A retried event failed again: it is its key's first parked event now,
 * with the new error, and the key's later parked events wait behind it.
 */
static void
el_dead_letter_failed(Oid view, ElDeadLetter *dl, ErrorData *edata)
{
	Oid			types[6] = {OIDOID, INT4OID, INT8OID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[6];
	char		nulls[6] = "      ";

	values[0] = ObjectIdGetDatum(view);
	values[1] = Int32GetDatum(dl->shard);
	values[2] = Int64GetDatum(dl->seq);
	values[3] = CStringGetTextDatum(edata->message ? edata->message : "(no message)");
	values[4] = CStringGetTextDatum(unpack_sql_state(edata->sqlerrcode));
	if (dl->key != NULL)
		values[5] = CStringGetTextDatum(dl->key);
	else
		nulls[5] = 'n';
	el_catalog_sql("UPDATE event_log.projection_dead_letters"
				   " SET error = $4, sqlstate = $5, blocked_by = NULL,"
				   " attempts = attempts + 1, last_failed_at = now()"
				   " WHERE projection = $1 AND shard = $2 AND seq = $3",
				   5, types, values, nulls, 0, 0);
	if (dl->key != NULL)
		el_catalog_sql("UPDATE event_log.projection_dead_letters SET blocked_by = $3"
					   " WHERE projection = $1 AND shard = $2 AND key = $6 AND seq > $3",
					   6, types, values, nulls, 0, 0);
}

/*
 * Retry one projection's parked events (all, or one key's): key by key, in
 * the order of seq, each event in a subtransaction; a key stops at an event
 * that fails again.  Returns the number applied.  SPI connected.
 */
static int64
el_retry_projection(Oid view, text *key)
{
	ElProjection *p;
	ElHandlerSet *set;
	Relation	stream;
	Relation	pk;
	ElDeadLetter *rows;
	uint64		nrows;
	volatile int64 applied = 0;
	Oid			types[2] = {OIDOID, TEXTOID};
	Datum		values[2] = {ObjectIdGetDatum(view), key ? PointerGetDatum(key) : (Datum) 0};
	char		nulls[2] = {' ', key ? ' ' : 'n'};

	/* As a run does: no run applies the projection's events meanwhile. */
	el_lock_projection(view, true);
	p = el_projection_load(view);
	if (p == NULL)
		return 0;				/* dropped while we waited */
	el_catalog_sql("SELECT shard, seq, key FROM event_log.projection_dead_letters"
				   " WHERE projection = $1 AND ($2::text IS NULL OR key = $2)"
				   " ORDER BY shard, key, seq",
				   2, types, values, nulls, EL_CAT_READ | EL_CAT_LATEST, 0);
	nrows = SPI_processed;
	if (nrows == 0)
		return 0;
	rows = palloc(sizeof(ElDeadLetter) * nrows);
	for (uint64 r = 0; r < nrows; r++)
	{
		bool		isnull;

		rows[r].shard = DatumGetInt32(el_spi_value(r, 1, &isnull));
		rows[r].seq = el_spi_int8(r, 2);
		rows[r].key = el_spi_text(r, 3);
	}

	(void) el_lock_stream(p->stream, AccessShareLock);
	set = el_live_handlers(view);
	el_check_stream_read(p->stream, set->owner, set->name);
	stream = table_open(p->stream, AccessShareLock);
	pk = el_stream_pk_open(stream);
	set->refcount++;
	PG_TRY();
	{
		uint64		r = 0;

		while (r < nrows)
		{
			uint64		end = r + 1;
			bool		failed = false;

			/* One key's events: rows[r..end). */
			while (rows[r].key != NULL && end < nrows &&
				   rows[end].shard == rows[r].shard && rows[end].key != NULL &&
				   strcmp(rows[end].key, rows[r].key) == 0)
				end++;
			for (; r < end && !failed; r++)
			{
				HeapTuple	tup;
				TupleDesc	desc = RelationGetDescr(stream);
				ErrorData  *edata = NULL;
				int			n;

				CHECK_FOR_INTERRUPTS();
				/* Below the watermark, a build parked it from the archive. */
				if (rows[r].seq < el_low_watermark(p->stream, rows[r].shard,
												   GetTransactionSnapshot()))
					tup = el_fetch_archived(p->stream, rows[r].shard, rows[r].seq, &desc);
				else
					tup = el_fetch_event(stream, pk, rows[r].shard, rows[r].seq);
				if (tup == NULL)
					ereport(ERROR,
							(errcode(ERRCODE_DATA_CORRUPTED),
							 errmsg("parked event at shard %d seq " INT64_FORMAT " of projection \"%s\" is not in stream \"%s\"",
									rows[r].shard, rows[r].seq, set->name,
									el_qualified_name(p->stream))));
				if (el_apply_batch(set, desc, &tup, NULL, 1, 0,
								   NULL, &n, &edata) < 0)
				{
					el_dead_letter_done(view, rows[r].shard, rows[r].seq, "retried");
					applied++;
				}
				else
				{
					el_dead_letter_failed(view, &rows[r], edata);
					ereport(WARNING,
							(errcode(edata->sqlerrcode),
							 errmsg("projection \"%s\": parked event at shard %d seq " INT64_FORMAT " failed again: %s",
									set->name, rows[r].shard, rows[r].seq, edata->message)));
					failed = true;
				}
				heap_freetuple(tup);
				if (desc != RelationGetDescr(stream))
					FreeTupleDesc(desc);
			}
			r = end;
		}
	}
	PG_FINALLY();
	{
		el_release_set(set);
	}
	PG_END_TRY();
	el_stream_pk_close(pk);
	table_close(stream, AccessShareLock);
	return applied;
}

/*
 * event_log.retry_dead_letters(projection text, key text) RETURNS bigint
 *
 * Applies parked events again, after their handler was fixed: those of the
 * projection named (all the caller's projections if NULL), of one key if
 * given.  Returns the number applied; those that fail again stay parked,
 * with their new error.
 */
Datum
el_retry_dead_letters(PG_FUNCTION_ARGS)
{
	text	   *key = PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1);
	List	   *views = NIL;
	ListCell   *lc;
	int64		total = 0;

	SPI_connect();
	el_require_dead_letters();
	if (!PG_ARGISNULL(0))
	{
		Oid			view = el_projection_oid(PG_GETARG_TEXT_PP(0));

		el_require_owner(view);
		views = list_make1_oid(view);
	}
	else
	{
		views = el_owned_projections("SELECT DISTINCT projection"
									 " FROM event_log.projection_dead_letters"
									 " ORDER BY projection");
	}
	foreach(lc, views)
		total += el_retry_projection(lfirst_oid(lc), key);
	SPI_finish();
	PG_RETURN_INT64(total);
}

/*
 * event_log.discard_dead_letters(projection text, key text, seq bigint)
 *     RETURNS bigint
 *
 * Gives up on parked events of a projection, all or one key's or one
 * event: they are never applied, and the key goes on with its next events.
 * Each is recorded in event_log.dead_letter_log.  Returns how many.
 */
Datum
el_discard_dead_letters(PG_FUNCTION_ARGS)
{
	Oid			view;
	Oid			types[4] = {OIDOID, TEXTOID, INT8OID, NAMEOID};
	Datum		values[4];
	char		nulls[4] = "    ";
	uint64		n;

	el_require_arg(fcinfo, 0, "projection");
	/* A seq is per shard: the key says which. */
	if (!PG_ARGISNULL(2) && PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("discarding one event needs its key"),
				 errdetail("A seq is a position in one shard; the key says which shard."),
				 errhint("Give key => '...' with seq.")));
	SPI_connect();
	el_require_dead_letters();
	view = el_projection_oid(PG_GETARG_TEXT_PP(0));
	el_require_owner(view);
	el_lock_projection(view, true);
	values[0] = ObjectIdGetDatum(view);
	values[1] = PG_ARGISNULL(1) ? (Datum) 0 : PointerGetDatum(PG_GETARG_TEXT_PP(1));
	values[2] = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
	nulls[1] = PG_ARGISNULL(1) ? 'n' : ' ';
	nulls[2] = PG_ARGISNULL(2) ? 'n' : ' ';
	values[3] = el_caller_name();
	n = el_catalog_sql("WITH d AS (DELETE FROM event_log.projection_dead_letters"
					   " WHERE projection = $1 AND ($2::text IS NULL OR key = $2)"
					   " AND ($3::int8 IS NULL OR seq = $3) RETURNING *)"
					   " INSERT INTO event_log.dead_letter_actions"
					   " (action, done_by, projection, stream, shard, seq, key, type, error)"
					   " SELECT 'discarded', $4, projection, stream, shard, seq, key, type, error FROM d",
					   4, types, values, nulls, 0, 0);
	SPI_finish();
	PG_RETURN_INT64((int64) n);
}
