/*
 * event.c
 *	  What an event must be before it is appended: the checks of its fields
 *	  on every append path (the append trigger, append(), append_events()),
 *	  the correlation and causation ids the session adds to its metadata,
 *	  and the default of a stream's shard column, which refuses appends
 *	  while the stream lacks its triggers (docs/design/restore.md).  Schema
 *	  validation of payloads will plug in here.
 */
#include "postgres.h"

#include "access/detoast.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"

#include "append.h"
#include "catalog.h"
#include "event_log.h"
#include "registry.h"

PG_FUNCTION_INFO_V1(el_require_guards);


void
el_check_type(text *type)
{
	int			len = VARSIZE_ANY_EXHDR(type);

	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event type must not be empty")));
	if (len > EL_MAX_TYPE_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("event type is too long"),
				 errdetail("Event types are limited to %d bytes; this one has %d.",
						   EL_MAX_TYPE_BYTES, len)));
}

void
el_check_document(Datum doc, const char *what)
{
	Size		size = toast_raw_datum_size(doc) - VARHDRSZ;

	if (size > (Size) el_max_payload_size * 1024)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("event %s is too large", what),
				 errdetail("It has %zu bytes; event_log.max_payload_size allows %d kB.",
						   size, el_max_payload_size),
				 errhint("Store large documents elsewhere and reference them from the event.")));
}

void
el_refuse_supplied(Relation rel, int attnum)
{
	const char *col = NameStr(TupleDescAttr(RelationGetDescr(rel), attnum - 1)->attname);

	ereport(ERROR,
			(errcode(ERRCODE_GENERATED_ALWAYS),
			 errmsg("cannot insert a value into column \"%s\" of event stream \"%s\"",
					col, el_qualified_name(RelationGetRelid(rel))),
			 errdetail("Column \"%s\" is assigned by event_log when an event is appended.",
					   col),
			 errhint("Insert only key, type, payload, metadata and event_id.")));
}

void
el_refuse_null(Relation rel, int attnum)
{
	ereport(ERROR,
			(errcode(ERRCODE_NOT_NULL_VIOLATION),
			 errmsg("null value in column \"%s\" of event stream \"%s\"",
					NameStr(TupleDescAttr(RelationGetDescr(rel), attnum - 1)->attname),
					el_qualified_name(RelationGetRelid(rel)))));
}

/*
 * A version 4 UUID, as gen_random_uuid() makes.  The random bytes come from
 * pg_strong_random() as gen_random_uuid()'s do, but a batch of UUIDs' worth
 * at a time: each call into OpenSSL takes its locks and checks its state,
 * about a microsecond, which every append paid (docs/design/append_cost.md).
 * The batch belongs to the process that drew it (a forked child draws its
 * own, so no two processes hand out the same bytes), and every byte is
 * handed out once: the slot is zeroed as it is taken.
 */
#define EL_UUID_BATCH 32

pg_uuid_t *
el_new_uuid(void)
{
	static uint8 batch[EL_UUID_BATCH * UUID_LEN];
	static int	next = EL_UUID_BATCH;
	static int	drawn_by = 0;
	pg_uuid_t  *uuid = palloc(UUID_LEN);

	if (next >= EL_UUID_BATCH || drawn_by != MyProcPid)
	{
		if (!pg_strong_random(batch, sizeof(batch)))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate random values")));
		next = 0;
		drawn_by = MyProcPid;
	}
	memcpy(uuid->data, batch + next * UUID_LEN, UUID_LEN);
	memset(batch + next * UUID_LEN, 0, UUID_LEN);
	next++;
	uuid->data[6] = (uuid->data[6] & 0x0f) | 0x40;
	uuid->data[8] = (uuid->data[8] & 0x3f) | 0x80;
	return uuid;
}

/*
 * The session's correlation_id and causation_id (the settings), added to an
 * event's metadata where it has no such key of its own.  Metadata that is
 * not an object is left as it is.  Returns false, and changes nothing, when
 * there is nothing to add.  Costs nothing while both settings are empty.
 */
bool
el_add_session_ids(Datum *metadata, bool *isnull)
{
	static const char *const names[2] = {"correlation_id", "causation_id"};
	const char *ids[2] = {el_correlation_id, el_causation_id};
	Jsonb	   *old = *isnull ? NULL : DatumGetJsonbP(*metadata);
	JsonbParseState *state = NULL;
	JsonbValue *added;
	int			nadded = 0;

	if ((ids[0] == NULL || ids[0][0] == '\0') && (ids[1] == NULL || ids[1][0] == '\0'))
		return false;
	if (old != NULL && !JB_ROOT_IS_OBJECT(old))
		return false;

	(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	for (int i = 0; i < 2; i++)
	{
		JsonbValue	k;
		JsonbValue	v;

		if (ids[i] == NULL || ids[i][0] == '\0')
			continue;
		k.type = jbvString;
		k.val.string.val = unconstify(char *, names[i]);
		k.val.string.len = strlen(names[i]);
		if (old != NULL &&
			findJsonbValueFromContainer(&old->root, JB_FOBJECT, &k) != NULL)
			continue;
		v.type = jbvString;
		v.val.string.val = unconstify(char *, ids[i]);
		v.val.string.len = strlen(ids[i]);
		(void) pushJsonbValue(&state, WJB_KEY, &k);
		(void) pushJsonbValue(&state, WJB_VALUE, &v);
		nadded++;
	}
	added = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	if (nadded == 0)
		return false;

	*metadata = JsonbPGetDatum(JsonbValueToJsonb(added));
	if (old != NULL)
		*metadata = DirectFunctionCall2(jsonb_concat, JsonbPGetDatum(old), *metadata);
	*isnull = false;
	return true;
}

/*
 * Refuse appends to a stream that lacks one of our triggers, with the cause
 * and the fix: a restore that stopped before its post-data section.
 */
void
el_require_stream_guards(Oid relid)
{
	const char *missing = el_stream_missing_trigger(relid);

	if (missing != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("event stream \"%s\" is missing its trigger \"%s\"",
						el_qualified_name(relid), missing),
				 errdetail("Appends are refused until the stream has its triggers, enabled ALWAYS: they assign the positions and keep the stream append-only. A restore that stopped before its post-data section (triggers, unique indexes) leaves a stream in this state."),
				 errhint("Run the restore's post-data section again: pg_restore --section=post-data (docs/operations.md, \"An interrupted restore\").")));
}

/*
 * event_log.require_guards(stream regclass) RETURNS int: the default of
 * every stream's shard column, so it runs for each appended row before the
 * BEFORE INSERT triggers, also on a stream that has none.  NULL (for the
 * append trigger to fill in) when the stream has its triggers; otherwise
 * the error above, instead of PostgreSQL's "null value in column".  A
 * relation that is no registered stream gets NULL: its own trigger, if it
 * has one, says what is wrong (docs/design/restore.md).
 */
Datum
el_require_guards(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);

	if (el_stream_shards(relid) > 0)
		el_require_stream_guards(relid);
	PG_RETURN_NULL();
}
