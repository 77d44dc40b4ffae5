/*
 * append_batch.c
 *	  event_log.append_events(): several events in one call, all or none,
 *	  to one key under one expected_version check, or to several keys.
 *	  Each event goes through the same steps as append() (append.h): the
 *	  event_id lookup under the shard lock, the version check, the insert
 *	  through the append trigger.  The result says, event by event, where
 *	  it stands and whether it was a duplicate of an earlier event_id.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"

#include "append.h"
#include "event_log.h"
#include "key.h"

PG_FUNCTION_INFO_V1(el_append_events);
PG_FUNCTION_INFO_V1(el_append_events_keys);

/* The fields of event_log.new_event, in order. */
#define EL_NEW_TYPE		0
#define EL_NEW_PAYLOAD	1
#define EL_NEW_METADATA	2
#define EL_NEW_EVENT_ID	3
#define EL_NEW_KEY		4
#define EL_NEW_NATTS	5

/* One event of the call. */
typedef struct ElNewEvent
{
	text	   *key;
	Datum		type;
	Datum		payload;
	Datum		metadata;
	bool		metadata_null;
	pg_uuid_t  *event_id;		/* NULL: a new one is made */
	int32		shard;
	int			same_as;		/* an earlier event of the call with this
								 * event_id, or -1 */
	bool		existing;		/* the stream has its event_id already */
	ElAppended	done;
} ElNewEvent;

/* Which element an error is about: "events[3] of append_events()". */
static void
el_events_context(void *arg)
{
	int			i = *(int *) arg;

	if (i >= 0)
		errcontext("events[%d] of append_events()", i + 1);
}

static void
el_refuse_null_field(const char *field, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_NOT_NULL_VIOLATION),
			 errmsg("null value in field \"%s\" of an event", field),
			 hint ? errhint("%s", hint) : 0));
}

/*
 * The events of the array, checked (all of them, before anything is
 * locked or appended).  call_key is the one-key form's key (each event's
 * key must then be NULL or the same), or NULL for the several-keys form
 * (each event names its key).  *cur is the element being read, for the
 * error context.
 */
static ElNewEvent *
el_read_events(ArrayType *arr, text *call_key, int *nevents, int *cur)
{
	Oid			elemtype = ARR_ELEMTYPE(arr);
	int16		typlen;
	bool		typbyval;
	char		typalign;
	Datum	   *elems;
	bool	   *elemnulls;
	int			n;
	ElNewEvent *events;
	HTAB	   *ids = NULL;

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("events must be a one-dimensional array")));
	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	deconstruct_array(arr, elemtype, typlen, typbyval, typalign,
					  &elems, &elemnulls, &n);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("events must not be empty"),
				 errhint("Give at least one event_log.new_event.")));

	events = palloc0(sizeof(ElNewEvent) * n);
	for (int i = 0; i < n; i++)
	{
		ElNewEvent *ev = &events[i];
		HeapTupleHeader th;
		HeapTupleData tuple;
		TupleDesc	desc;
		Datum		values[EL_NEW_NATTS];
		bool		nulls[EL_NEW_NATTS];

		*cur = i;
		if (elemnulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("events must not contain null elements")));
		th = DatumGetHeapTupleHeader(elems[i]);
		desc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(th),
									  HeapTupleHeaderGetTypMod(th));
		if (desc->natts != EL_NEW_NATTS)
			elog(ERROR, "event_log.new_event has %d fields, not %d",
				 desc->natts, EL_NEW_NATTS);
		tuple.t_len = HeapTupleHeaderGetDatumLength(th);
		ItemPointerSetInvalid(&tuple.t_self);
		tuple.t_tableOid = InvalidOid;
		tuple.t_data = th;
		heap_deform_tuple(&tuple, desc, values, nulls);
		ReleaseTupleDesc(desc);

		if (nulls[EL_NEW_TYPE])
			el_refuse_null_field("type", NULL);
		if (nulls[EL_NEW_PAYLOAD])
			el_refuse_null_field("payload", NULL);
		ev->type = values[EL_NEW_TYPE];
		ev->payload = values[EL_NEW_PAYLOAD];
		ev->metadata = values[EL_NEW_METADATA];
		ev->metadata_null = nulls[EL_NEW_METADATA];
		ev->event_id = nulls[EL_NEW_EVENT_ID] ? NULL :
			DatumGetUUIDP(values[EL_NEW_EVENT_ID]);
		ev->same_as = -1;

		if (call_key == NULL && nulls[EL_NEW_KEY])
			el_refuse_null_field("key",
								 "Name each event's key, or call append_events(stream, key, events) to append to one key.");
		if (call_key != NULL && !nulls[EL_NEW_KEY])
		{
			text	   *key = DatumGetTextPP(values[EL_NEW_KEY]);

			if (VARSIZE_ANY_EXHDR(key) != VARSIZE_ANY_EXHDR(call_key) ||
				memcmp(VARDATA_ANY(key), VARDATA_ANY(call_key),
					   VARSIZE_ANY_EXHDR(key)) != 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("event key \"%s\" differs from the key \"%s\" of the call",
								text_to_cstring(key), text_to_cstring(call_key)),
						 errhint("Leave each event's key NULL, or call append_events(stream, events) to append to several keys.")));
		}
		ev->key = call_key ? call_key : DatumGetTextPP(values[EL_NEW_KEY]);

		el_check_key(ev->key);
		el_check_type(DatumGetTextPP(ev->type));
		el_check_document(ev->payload, "payload");
		if (!ev->metadata_null)
			el_check_document(ev->metadata, "metadata");

		/* An event_id given twice in the call: the second is a duplicate. */
		if (ev->event_id != NULL)
		{
			bool		found;
			int		   *first;

			if (ids == NULL)
			{
				HASHCTL		ctl;

				ctl.keysize = sizeof(pg_uuid_t);
				ctl.entrysize = sizeof(pg_uuid_t) + sizeof(int);
				ctl.hcxt = CurrentMemoryContext;
				ids = hash_create("event_log append_events ids", Min(n, 1024),
								  &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
			}
			first = (int *) ((char *) hash_search(ids, ev->event_id, HASH_ENTER,
												   &found) + sizeof(pg_uuid_t));
			if (found)
			{
				el_check_same_key(ev->event_id, events[*first].key, ev->key);
				ev->same_as = *first;
			}
			else
				*first = i;
		}
	}
	*cur = -1;
	if (ids != NULL)
		hash_destroy(ids);
	*nevents = n;
	return events;
}

static int
el_cmp_int32(const void *a, const void *b)
{
	int32		x = *(const int32 *) a;
	int32		y = *(const int32 *) b;

	return (x > y) - (x < y);
}

/*
 * Append the checked events, all or none: lock the stream, then the shards
 * the events go to, in ascending order (so that two calls over the same
 * shards never deadlock with each other), look their event_ids up, check
 * the expected version (one-key form), insert the new ones in order, and
 * return a row per event, in the order given.
 */
static void
el_append_checked(FunctionCallInfo fcinfo, Oid relid, ElNewEvent *events,
				  int n, bool has_expected, int64 expected, int *cur)
{
	ReturnSetInfo *rsinfo;
	Relation	rel;
	int			shards;
	int32	   *order = palloc(sizeof(int32) * n);
	bool		any_new = false;

	rel = el_append_open(relid, &shards);
	for (int i = 0; i < n; i++)
		order[i] = events[i].shard =
			el_shard_for_key(VARDATA_ANY(events[i].key),
							 VARSIZE_ANY_EXHDR(events[i].key), shards);
	qsort(order, n, sizeof(int32), el_cmp_int32);
	for (int i = 0; i < n; i++)
		if (i == 0 || order[i] != order[i - 1])
			el_append_lock_shard(rel, order[i]);

	/* Under the shard locks, what is already there stays as it is. */
	for (int i = 0; i < n; i++)
	{
		*cur = i;
		if (events[i].same_as < 0 && events[i].event_id != NULL)
			events[i].existing = el_append_existing(rel, events[i].key,
													events[i].event_id,
													&events[i].done);
		if (events[i].same_as < 0 && !events[i].existing)
			any_new = true;
	}
	*cur = -1;

	/* A retried command whose events are all there succeeds again. */
	if (has_expected && any_new)
		el_append_expect(rel, events[0].key, expected);
	table_close(rel, NoLock);

	for (int i = 0; i < n; i++)
	{
		ElNewEvent *ev = &events[i];

		*cur = i;
		if (ev->same_as >= 0)
		{
			ev->done = events[ev->same_as].done;
			ev->done.duplicate = true;
		}
		else if (!ev->existing)
			el_append_insert(relid, ev->key, ev->type, ev->payload,
							 ev->metadata, ev->metadata_null,
							 ev->event_id ? ev->event_id : el_new_uuid(),
							 &ev->done);
	}
	*cur = -1;

	InitMaterializedSRF(fcinfo, 0);
	rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	for (int i = 0; i < n; i++)
	{
		Datum		values[6];
		bool		nulls[6] = {0};

		values[0] = PointerGetDatum(events[i].key);
		values[1] = Int32GetDatum(events[i].done.shard);
		values[2] = Int64GetDatum(events[i].done.seq);
		values[3] = Int64GetDatum(events[i].done.version);
		values[4] = UUIDPGetDatum(&events[i].done.event_id);
		values[5] = BoolGetDatum(events[i].done.duplicate);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
}

/* The work of both forms; call_key NULL for the several-keys form. */
static Datum
el_append_events_common(FunctionCallInfo fcinfo, Oid relid, text *call_key,
						ArrayType *arr, bool has_expected, int64 expected)
{
	ErrorContextCallback errcb;
	int			cur = -1;
	int			n;
	ElNewEvent *events;

	if (has_expected)
		el_check_expected_version(expected);
	(void) el_append_check_stream(relid);
	if (call_key != NULL)
		el_check_key(call_key);

	errcb.callback = el_events_context;
	errcb.arg = &cur;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;
	events = el_read_events(arr, call_key, &n, &cur);
	el_append_checked(fcinfo, relid, events, n, has_expected, expected, &cur);
	error_context_stack = errcb.previous;
	return (Datum) 0;
}

/*
 * event_log.append_events(stream regclass, key text,
 *		events event_log.new_event[], expected_version bigint DEFAULT NULL)
 *		RETURNS TABLE (key, shard, seq, version, event_id, duplicate)
 */
Datum
el_append_events(PG_FUNCTION_ARGS)
{
	el_require_arg(fcinfo, 0, "stream");
	el_require_arg(fcinfo, 1, "key");
	el_require_arg(fcinfo, 2, "events");
	return el_append_events_common(fcinfo, PG_GETARG_OID(0),
								   PG_GETARG_TEXT_PP(1),
								   PG_GETARG_ARRAYTYPE_P(2),
								   !PG_ARGISNULL(3),
								   PG_ARGISNULL(3) ? 0 : PG_GETARG_INT64(3));
}

/*
 * event_log.append_events(stream regclass, events event_log.new_event[])
 *		RETURNS TABLE (key, shard, seq, version, event_id, duplicate)
 */
Datum
el_append_events_keys(PG_FUNCTION_ARGS)
{
	el_require_arg(fcinfo, 0, "stream");
	el_require_arg(fcinfo, 1, "events");
	return el_append_events_common(fcinfo, PG_GETARG_OID(0), NULL,
								   PG_GETARG_ARRAYTYPE_P(1), false, 0);
}
