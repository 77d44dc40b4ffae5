/*
 * consumer_deadletter.c
 *	  Dead letters of consumer groups: nack() parks an event the
 *	  application cannot process, so that the group's committed offset can
 *	  move on past it; retry_nacked() hands the group's parked events back
 *	  to its polls, which deliver them again before new events; and
 *	  discard_nacked() drops them.  Each retry delivered and each discard is
 *	  recorded in event_log.dead_letter_actions.
 *
 *	  A parked event is below the committed offset, so the offsets and
 *	  leases (consumer.c, consumer_member.c) know nothing of it.  A poll
 *	  delivers a shard's events to retry only to the member that holds the
 *	  shard, reads each as the caller (privileges and row-level security
 *	  apply, as for any event it polls), and delivers it again at every poll
 *	  until the commit that covers what the poll returned removes its row
 *	  (auto-commit, commit_polled(), commit_offset(): consumer.c calls
 *	  el_ack_redelivered()).  The catalog (event_log.consumer_dead_letters)
 *	  is 0.4's: on an older one polls skip all this.
 *	  docs/design/dead_letters.md, "Consumer groups", has the reasoning.
 */
#include "postgres.h"

#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"

#include "catalog.h"
#include "consumer.h"
#include "event_log.h"
#include "read.h"
#include "registry.h"

PG_FUNCTION_INFO_V1(el_nack);
PG_FUNCTION_INFO_V1(el_retry_nacked);
PG_FUNCTION_INFO_V1(el_discard_nacked);

/* Whether the catalog has consumer groups' dead letters (0.4). */
static bool
el_nacks_catalog(void)
{
	return OidIsValid(get_relname_relid("consumer_dead_letters", el_schema_oid()));
}

/*
 * A receiver that passes on only the event at one seq (a read after seq - 1
 * returns the next event the caller may see, which need not be that one),
 * and keeps its key and type.
 */
typedef struct ElExactDest
{
	DestReceiver pub;
	DestReceiver *inner;		/* or NULL: only keep key and type */
	int64		seq;
	bool		found;
	MemoryContext cxt;			/* where key and type go: the reader's */
	char	   *key;
	char	   *type;
} ElExactDest;

static bool
el_exact_receive(TupleTableSlot *slot, DestReceiver *self)
{
	ElExactDest *d = (ElExactDest *) self;
	bool		isnull;
	MemoryContext old;

	if (DatumGetInt64(slot_getattr(slot, Anum_el_seq, &isnull)) != d->seq)
		return true;
	d->found = true;

	/*
	 * The executor's memory, current here, is gone when the read ends: keep
	 * key and type where the caller asked for them.
	 */
	old = MemoryContextSwitchTo(d->cxt);
	d->key = TextDatumGetCString(slot_getattr(slot, Anum_el_key, &isnull));
	d->type = TextDatumGetCString(slot_getattr(slot, Anum_el_type, &isnull));
	MemoryContextSwitchTo(old);
	return d->inner == NULL || d->inner->receiveSlot(slot, d->inner);
}

static void
el_exact_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
	ElExactDest *d = (ElExactDest *) self;

	if (d->inner != NULL)
		d->inner->rStartup(d->inner, operation, typeinfo);
}

static void
el_exact_shutdown(DestReceiver *self)
{
	ElExactDest *d = (ElExactDest *) self;

	if (d->inner != NULL)
		d->inner->rShutdown(d->inner);
}

static void
el_exact_destroy(DestReceiver *self)
{
}

/* Read the event at (shard, seq) as the caller, into inner if given. */
static bool
el_read_exact(Oid relid, int32 shard, int64 seq, DestReceiver *inner,
			  char **key, char **type)
{
	ElExactDest d = {{el_exact_receive, el_exact_startup, el_exact_shutdown,
	el_exact_destroy, DestTuplestore}, inner, seq, false, CurrentMemoryContext, NULL, NULL};

	if (seq < 1)
		return false;
	(void) el_read_shard_types(relid, shard, seq - 1, 1, (Datum) 0, (DestReceiver *) &d);
	if (key != NULL)
		*key = d.key;
	if (type != NULL)
		*type = d.type;
	return d.found;
}

/* The calling role's name, for dead_letter_actions.done_by. */
static Datum
el_caller_name(void)
{
	return DirectFunctionCall1(namein,
							   CStringGetDatum(GetUserNameFromId(GetUserId(), false)));
}

/*
 * Remove a group's parked events (those of key and seq where given: key
 * NULL, seq -1 for any; with n > 0, only the events to retry at
 * (shards[i], seqs[i])), recording each with action in dead_letter_actions.
 * Returns how many.
 */
static uint64
el_nacks_done(ElGroup *g, const char *action, text *key, int64 seq,
			  const int32 *shards, const int64 *seqs, int n)
{
	Oid			types[7] = {INT4OID, INT4ARRAYOID, TEXTOID, INT8OID, NAMEOID, TEXTOID,
	INT8ARRAYOID};
	Datum		values[7];
	char		nulls[7] = "       ";

	values[0] = Int32GetDatum(g->id);
	values[1] = n > 0 ? el_int4_array(shards, n) : (Datum) 0;
	values[2] = key ? PointerGetDatum(key) : (Datum) 0;
	values[3] = Int64GetDatum(seq);
	values[4] = el_caller_name();
	values[5] = CStringGetTextDatum(action);
	values[6] = n > 0 ? el_int8_array(seqs, n) : (Datum) 0;
	nulls[1] = nulls[6] = n > 0 ? ' ' : 'n';
	nulls[2] = key == NULL ? 'n' : ' ';
	nulls[3] = seq < 0 ? 'n' : ' ';
	return el_catalog_sql("WITH d AS (DELETE FROM event_log.consumer_dead_letters"
						  " WHERE group_id OPERATOR(pg_catalog.=) $1"
						  " AND ($2::pg_catalog.int4[] IS NULL OR (state = 'retry' AND EXISTS"
						  " (SELECT FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($7)) u(s, q)"
						  " WHERE u.s OPERATOR(pg_catalog.=) shard AND u.q OPERATOR(pg_catalog.=) seq)))"
						  " AND ($3::pg_catalog.text IS NULL OR key OPERATOR(pg_catalog.=) $3)"
						  " AND ($4::pg_catalog.int8 IS NULL OR seq OPERATOR(pg_catalog.=) $4)"
						  " RETURNING *)"
						  " INSERT INTO event_log.dead_letter_actions"
						  " (action, done_by, group_name, stream, shard, seq, key, type, error)"
						  " SELECT $6, $5, g.group_name, g.stream, d.shard, d.seq, d.key, d.type, d.error"
						  " FROM d JOIN event_log.consumer_groups g ON g.id OPERATOR(pg_catalog.=) d.group_id",
						  7, types, values, nulls, 0, 0);
}

/*
 * Open the group a nack(), retry_nacked() or discard_nacked() names, which
 * must exist; the checks are poll()'s (the stream's owner may also act on
 * any group of its stream, as it may drop it).  SPI connected on return.
 */
static void
el_nack_group(ElGroup *g, FunctionCallInfo fcinfo)
{
	el_require_arg(fcinfo, 0, "group_name");
	el_require_arg(fcinfo, 1, "stream");
	if (InSecurityRestrictedOperation())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot manage dead letters within a security-restricted operation")));
	el_group_begin(g, fcinfo, false);
	if (!el_nacks_catalog())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("dead letters need version 0.4 of the event_log catalog"),
				 errhint("Run ALTER EXTENSION event_log UPDATE.")));
	if (g->id == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("consumer group \"%s\" of stream \"%s\" does not exist",
						text_to_cstring(PG_GETARG_TEXT_PP(0)), el_qualified_name(g->relid)),
				 errhint("A group exists once it has polled.")));
}

/*
 * event_log.nack(group_name text, stream regclass, shard integer,
 *     seq bigint, reason text) RETURNS void
 *
 * Parks an event the application could not process, with the reason; the
 * group may then commit its offset past it.  Parking it again (after a
 * retry) counts another attempt.
 */
Datum
el_nack(PG_FUNCTION_ARGS)
{
	ElGroup		g;
	int32		shard;
	int64		seq;
	char	   *key;
	char	   *type;
	Oid			types[6] = {INT4OID, INT4OID, INT8OID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[6];
	char		nulls[6] = "      ";

	el_require_arg(fcinfo, 2, "shard");
	el_require_arg(fcinfo, 3, "seq");
	shard = PG_GETARG_INT32(2);
	seq = PG_GETARG_INT64(3);
	if (!PG_ARGISNULL(4) && VARSIZE_ANY_EXHDR(PG_GETARG_TEXT_PP(4)) > 8192)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("reason must be at most 8192 bytes")));
	el_nack_group(&g, fcinfo);
	el_check_shard(g.relid, g.shards, shard);
	if (!el_read_exact(g.relid, shard, seq, NULL, &key, &type))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("stream \"%s\" has no event at shard %d seq " INT64_FORMAT " that you may read",
						el_qualified_name(g.relid), shard, seq)));
	values[0] = Int32GetDatum(g.id);
	values[1] = Int32GetDatum(shard);
	values[2] = Int64GetDatum(seq);
	values[3] = CStringGetTextDatum(key);
	values[4] = CStringGetTextDatum(type);
	if (PG_ARGISNULL(4))
		nulls[5] = 'n';
	else
		values[5] = PointerGetDatum(PG_GETARG_TEXT_PP(4));
	el_catalog_sql("INSERT INTO event_log.consumer_dead_letters AS d"
				   " (group_id, shard, seq, key, type, error)"
				   " VALUES ($1, $2, $3, $4, $5, $6)"
				   " ON CONFLICT (group_id, shard, seq) DO UPDATE"
				   " SET error = EXCLUDED.error, state = 'parked',"
				   " attempts = d.attempts OPERATOR(pg_catalog.+) 1,"
				   " last_failed_at = pg_catalog.now()",
				   6, types, values, nulls, 0, 0);
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * event_log.retry_nacked(group_name text, stream regclass, key text)
 *     RETURNS bigint
 *
 * Hands the group's parked events (of one key, if given) back to its
 * polls: each is delivered once more, before new events, to the member
 * that holds its shard.  Returns how many.
 */
Datum
el_retry_nacked(PG_FUNCTION_ARGS)
{
	ElGroup		g;
	Oid			types[2] = {INT4OID, TEXTOID};
	Datum		values[2];
	char		nulls[2] = "  ";
	uint64		n;

	el_nack_group(&g, fcinfo);
	values[0] = Int32GetDatum(g.id);
	if (PG_ARGISNULL(2))
		nulls[1] = 'n';
	else
		values[1] = PointerGetDatum(PG_GETARG_TEXT_PP(2));
	n = el_catalog_sql("UPDATE event_log.consumer_dead_letters SET state = 'retry'"
					   " WHERE group_id OPERATOR(pg_catalog.=) $1"
					   " AND ($2::pg_catalog.text IS NULL OR key OPERATOR(pg_catalog.=) $2)",
					   2, types, values, nulls, 0, 0);
	SPI_finish();
	PG_RETURN_INT64((int64) n);
}

/*
 * event_log.discard_nacked(group_name text, stream regclass, key text,
 *     seq bigint) RETURNS bigint
 *
 * Drops the group's parked events (of one key, or one event of it), each
 * recorded in dead_letter_log.  Returns how many.
 */
Datum
el_discard_nacked(PG_FUNCTION_ARGS)
{
	ElGroup		g;
	uint64		n;

	if (!PG_ARGISNULL(3) && PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("discarding one event needs its key"),
				 errdetail("A seq is a position in one shard; the key says which shard."),
				 errhint("Give key => '...' with seq.")));
	el_nack_group(&g, fcinfo);
	n = el_nacks_done(&g, "discarded", PG_ARGISNULL(2) ? NULL : PG_GETARG_TEXT_PP(2),
					  PG_ARGISNULL(3) ? -1 : PG_GETARG_INT64(3), NULL, NULL, 0);
	SPI_finish();
	PG_RETURN_INT64((int64) n);
}

/*
 * A parked event to retry that is below its shard's low watermark was
 * removed by retention (a policy without keep_unconsumed): it can never be
 * delivered again, whatever the group's offset_reset policy, so the poll
 * fails with EL040 until someone discards it.
 */
static void
el_check_parked_removed(ElGroup *g, int32 shard, int64 seq)
{
	int64		low = el_low_watermark(g->relid, shard, GetActiveSnapshot());

	if (seq < low)
		ereport(ERROR,
				(errcode(ERRCODE_EL_OUT_OF_RANGE),
				 errmsg("parked event seq %lld of shard %d of consumer group \"%s\" to retry was removed from event stream \"%s\"",
						(long long) seq, shard, text_to_cstring(g->name),
						el_qualified_name(g->relid)),
				 errdetail("Shard %d's low watermark is %lld: its earlier events were removed by the stream's retention policy.",
						   shard, (long long) low),
				 errhint("Drop it with event_log.discard_nacked(), with its key and seq => %lld (the view event_log.dead_letters shows both).",
						 (long long) seq)));
}

/*
 * For poll(): deliver into dest, before new events, up to *left of the
 * group's events to retry in the shards this member holds (shards[0..n)),
 * each read as the caller.  They stay in the list, to retry, until the
 * group commits them as it commits what a poll returned: each is noted
 * with what the session's poll returned (el_last_poll_redelivered()), and
 * the commit that covers it (consumer.c) removes it with
 * el_ack_redelivered().  Until then every poll of the shard delivers it
 * again, as it delivers the events after an offset nobody committed: a
 * consumer that dies while it processes one gets it back.  An event the
 * caller may not read stays to retry.  Returns how many were delivered.
 * SPI connected; in the poll's snapshot.
 */
uint64
el_redeliver_nacked(ElGroup *g, const int32 *shards, int n, int64 *left,
					DestReceiver *dest)
{
	Oid			types[3] = {INT4OID, INT4ARRAYOID, INT8OID};
	Datum		values[3];
	uint64		rows;
	int32	   *rshard;
	int64	   *rseq;
	uint64		delivered = 0;

	if (*left <= 0 || n <= 0 || !el_nacks_catalog())
		return 0;
	values[0] = Int32GetDatum(g->id);
	values[1] = el_int4_array(shards, n);
	values[2] = Int64GetDatum(*left);
	rows = el_catalog_sql("SELECT shard, seq FROM event_log.consumer_dead_letters"
						  " WHERE group_id OPERATOR(pg_catalog.=) $1 AND state = 'retry'"
						  " AND shard OPERATOR(pg_catalog.=) ANY ($2)"
						  " ORDER BY shard, seq LIMIT $3",
						  3, types, values, NULL, EL_CAT_READ | EL_CAT_LATEST, 0);
	if (rows == 0)
		return 0;
	rshard = palloc(sizeof(int32) * rows);
	rseq = palloc(sizeof(int64) * rows);
	for (uint64 r = 0; r < rows; r++)
	{
		bool		isnull;

		rshard[r] = DatumGetInt32(el_spi_value(r, 1, &isnull));
		rseq[r] = el_spi_int8(r, 2);
	}
	for (uint64 r = 0; r < rows && *left > 0; r++)
	{
		if (!el_read_exact(g->relid, rshard[r], rseq[r], dest, NULL, NULL))
		{
			/* Removed by retention: say so, never leave it waiting silently. */
			el_check_parked_removed(g, rshard[r], rseq[r]);
			continue;
		}
		el_last_poll_redelivered(rshard[r], rseq[r]);
		delivered++;
		(*left)--;
	}
	return delivered;
}

/*
 * A commit of events a poll delivered again (shards[i], seqs[i]): those
 * still to retry leave the list, recorded as retried.  One nacked again or
 * discarded since is left as it is.  Returns how many.  SPI connected.
 */
uint64
el_ack_redelivered(ElGroup *g, const int32 *shards, const int64 *seqs, int n)
{
	if (n <= 0 || !el_nacks_catalog())
		return 0;
	return el_nacks_done(g, "retried", NULL, -1, shards, seqs, n);
}

/* A group's dead letters go with it (drop_group(), drop_stream()). */
void
el_forget_nacks(int32 group_id, Oid relid)
{
	Oid			types[2] = {INT4OID, OIDOID};
	Datum		values[2] = {Int32GetDatum(group_id), ObjectIdGetDatum(relid)};

	if (!el_nacks_catalog())
		return;
	el_catalog_sql("DELETE FROM event_log.consumer_dead_letters d"
				   " USING event_log.consumer_groups g"
				   " WHERE g.id OPERATOR(pg_catalog.=) d.group_id"
				   " AND (g.id OPERATOR(pg_catalog.=) $1"
				   " OR g.stream OPERATOR(pg_catalog.=) $2::pg_catalog.regclass)",
				   2, types, values, NULL, 0, 0);
}
