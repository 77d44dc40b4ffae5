/*
 * schema_registry.c
 *	  The SQL functions of the event schema registry (docs/schemas.md):
 *	  registering versions under a compatibility mode, the per-stream and
 *	  per-type settings, the quarantine, and checking documents and the
 *	  stored events against a schema without appending.
 *
 *	  Locking: every function that changes a stream's schemas or settings
 *	  takes the stream's ShareRowExclusiveLock, which conflicts with the
 *	  RowExclusiveLock every append holds until its transaction ends, and
 *	  with itself: a registration waits for appends in progress and holds
 *	  new ones until it commits (schema.c says what that guarantees).  Each
 *	  change sends a relcache invalidation of the stream, which empties the
 *	  backends' caches of compiled schemas.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "append.h"
#include "catalog.h"
#include "event_log.h"
#include "registry.h"
#include "schema.h"

PG_FUNCTION_INFO_V1(el_register_schema);
PG_FUNCTION_INFO_V1(el_set_schema_policy);
PG_FUNCTION_INFO_V1(el_set_schema_compatibility);
PG_FUNCTION_INFO_V1(el_set_quarantine);
PG_FUNCTION_INFO_V1(el_validate_event);
PG_FUNCTION_INFO_V1(el_json_schema_errors);
PG_FUNCTION_INFO_V1(el_json_schema_valid);
PG_FUNCTION_INFO_V1(el_check_schema_history);

/* The first event of a type that a schema refuses, found by el_history_check(). */
typedef struct ElHistoryFailure
{
	Datum		shard;
	Datum		seq;
	Datum		key;			/* text, in the caller's memory */
	ElSchemaError *error;
} ElHistoryFailure;

static bool el_history_check(Oid relid, text *type, ElSchema *schema,
							 ElHistoryFailure *out);

/* ----------------------------------------------------------------
 * The registry's SQL functions
 * ----------------------------------------------------------------
 */


/* The compatibility modes, as the Confluent Schema Registry names them. */
static const char *const el_compat_modes[] = {
	"NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE",
	"FULL", "FULL_TRANSITIVE", NULL
};

static void
el_check_compat_mode(const char *mode)
{
	for (int i = 0; el_compat_modes[i] != NULL; i++)
		if (strcmp(mode, el_compat_modes[i]) == 0)
			return;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid compatibility \"%s\"", mode),
			 errhint("Use NONE, BACKWARD, FORWARD or FULL, or one of the last three with _TRANSITIVE.")));
}

/* The type's mode, else the stream's, else BACKWARD. */
static char *
el_compat_mode(Oid relid, text *type)
{
	Oid			types[2] = {REGCLASSOID, TEXTOID};
	Datum		values[2] = {ObjectIdGetDatum(relid), PointerGetDatum(type)};

	(void) el_catalog_sql("SELECT COALESCE("
						  " (SELECT t.compatibility FROM event_log.schema_type_settings t"
						  "  WHERE t.stream OPERATOR(pg_catalog.=) $1 AND t.type OPERATOR(pg_catalog.=) $2),"
						  " (SELECT s.compatibility FROM event_log.schema_settings s"
						  "  WHERE s.stream OPERATOR(pg_catalog.=) $1),"
						  " 'BACKWARD')",
						  2, types, values, NULL, EL_CAT_READ | EL_CAT_LATEST, 1);
	return el_spi_text(0, 1);
}

/*
 * Refuse a new version that the mode does not allow against an earlier one:
 * BACKWARD, the new one must accept every event the old one accepts;
 * FORWARD, the reverse; FULL, both.
 */
static void
el_check_compatible(Oid relid, text *type, const char *mode, ElSchema *new,
					ElSchema *old, int32 old_version)
{
	char	   *old_name = psprintf("version %d", old_version);
	char	   *why = NULL;
	const char *direction = NULL;

	if (strncmp(mode, "BACKWARD", 8) == 0 || strncmp(mode, "FULL", 4) == 0)
	{
		why = el_schema_includes(new, old, "the new schema", old_name);
		direction = "BACKWARD";
	}
	if (why == NULL && (strncmp(mode, "FORWARD", 7) == 0 || strncmp(mode, "FULL", 4) == 0))
	{
		why = el_schema_includes(old, new, old_name, "the new schema");
		direction = "FORWARD";
	}
	if (why != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_EL_SCHEMA_INCOMPATIBLE),
				 errmsg("schema for event type \"%s\" of stream \"%s\" is not %s compatible with version %d",
						text_to_cstring(type), el_qualified_name(relid), direction, old_version),
				 errdetail("%s%s: %s.",
						   strcmp(direction, "BACKWARD") == 0 ?
						   "Events valid under the old version could be refused by the new one" :
						   "Events valid under the new version could be refused by readers of the old one",
						   strcmp(mode, direction) == 0 ? "" : psprintf(" (mode %s)", mode), why),
				 errhint("Registration proves compatibility from the schemas alone and refuses what it cannot prove. Check the events themselves with event_log.check_schema_history(), and register with event_log.set_schema_compatibility(stream, type, 'NONE') if the change is intended.")));
}

/*
 * register_schema(stream regclass, type text, schema jsonb, check_history
 * boolean DEFAULT false) RETURNS integer
 *
 * The schema's version number: a new one, or the latest when that is the
 * same schema already (registering is idempotent).  The new schema must be
 * compatible with the latest version (or every earlier one, in the
 * _TRANSITIVE modes) as the type's mode says, and, with check_history,
 * accept every event of the type already in the stream.
 */
Datum
el_register_schema(PG_FUNCTION_ARGS)
{
	Oid			relid;
	text	   *type;
	Jsonb	   *schema;
	ElSchema   *compiled;
	char	   *mode;
	int32		version = 0;
	uint64		nold;
	Oid			types[5] = {REGCLASSOID, TEXTOID, INT4OID, JSONBOID, NAMEOID};
	Datum		values[5];
	ElHistoryFailure failure;

	el_require_arg(fcinfo, 0, "stream");
	el_require_arg(fcinfo, 1, "type");
	el_require_arg(fcinfo, 2, "schema");
	el_require_arg(fcinfo, 3, "check_history");
	relid = PG_GETARG_OID(0);
	type = PG_GETARG_TEXT_PP(1);
	el_schema_require_owner(relid);
	el_check_type(type);
	el_check_document(PG_GETARG_DATUM(2), "schema");
	schema = PG_GETARG_JSONB_P(2);
	compiled = el_schema_compile(schema);

	(void) el_lock_stream(relid, ShareRowExclusiveLock);

	values[0] = ObjectIdGetDatum(relid);
	values[1] = PointerGetDatum(type);
	SPI_connect();
	mode = el_compat_mode(relid, type);
	nold = el_catalog_sql("SELECT e.version, e.schema FROM event_log.event_schemas e"
						  " WHERE e.stream OPERATOR(pg_catalog.=) $1"
						  " AND e.type OPERATOR(pg_catalog.=) $2"
						  " ORDER BY e.version DESC",
						  2, types, values, NULL, EL_CAT_READ | EL_CAT_LATEST,
						  strstr(mode, "_TRANSITIVE") ? 0 : 1);
	if (nold > 0)
	{
		SPITupleTable *old_rows = SPI_tuptable;
		bool		isnull;

		version = DatumGetInt32(el_spi_value(0, 1, &isnull));
		if (compareJsonbContainers(&el_spi_jsonb(0, 2)->root, &schema->root) == 0)
		{
			SPI_finish();
			PG_RETURN_INT32(version);
		}
		if (strcmp(mode, "NONE") != 0)
			for (uint64 i = 0; i < nold; i++)
			{
				SPI_tuptable = old_rows;
				el_check_compatible(relid, type, mode, compiled,
									el_schema_compile(el_spi_jsonb(i, 2)),
									DatumGetInt32(el_spi_value(i, 1, &isnull)));
			}
	}
	version++;

	/* under the lock no event of the type can be appended meanwhile */
	if (PG_GETARG_BOOL(3) && !el_history_check(relid, type, compiled, &failure))
		ereport(ERROR,
				(errcode(ERRCODE_EL_SCHEMA_INCOMPATIBLE),
				 errmsg("schema for event type \"%s\" of stream \"%s\" refuses events already in the stream",
						text_to_cstring(type), el_qualified_name(relid)),
				 errdetail("The event at shard %d, seq " INT64_FORMAT " (key \"%s\"): at %s, %s (keyword \"%s\").",
						   DatumGetInt32(failure.shard), DatumGetInt64(failure.seq),
						   TextDatumGetCString(failure.key), failure.error->path,
						   failure.error->message, failure.error->keyword),
				 errhint("event_log.check_schema_history() finds such events without registering.")));

	values[2] = Int32GetDatum(version);
	values[3] = JsonbPGetDatum(schema);
	values[4] = DirectFunctionCall1(namein,
									CStringGetDatum(GetUserNameFromId(GetUserId(), false)));
	(void) el_catalog_sql("INSERT INTO event_log.event_schemas"
						  " (stream, type, version, schema, registered_by)"
						  " VALUES ($1, $2, $3, $4, $5)",
						  5, types, values, NULL, 0, 0);
	SPI_finish();

	/* appenders in every backend read the registry again */
	CacheInvalidateRelcacheByRelid(relid);
	PG_RETURN_INT32(version);
}

/*
 * set_schema_policy(stream regclass, unregistered_types text DEFAULT NULL,
 * compatibility text DEFAULT NULL): what the stream does with events of
 * types that have no schema ('allow', the default, or 'refuse'), and the
 * compatibility mode of its types (BACKWARD by default).  NULL keeps the
 * current setting.
 */
Datum
el_set_schema_policy(PG_FUNCTION_ARGS)
{
	Oid			relid;
	Oid			types[3] = {REGCLASSOID, TEXTOID, TEXTOID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};

	el_require_arg(fcinfo, 0, "stream");
	relid = PG_GETARG_OID(0);
	if (PG_ARGISNULL(1) && PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("unregistered_types and compatibility must not both be null"),
				 errhint("Pass unregistered_types => 'allow' or 'refuse', or compatibility => 'BACKWARD', 'FORWARD', 'FULL' (or _TRANSITIVE) or 'NONE'.")));
	if (!PG_ARGISNULL(1))
	{
		char	   *policy = text_to_cstring(PG_GETARG_TEXT_PP(1));

		if (strcmp(policy, "allow") != 0 && strcmp(policy, "refuse") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid unregistered_types \"%s\"", policy),
					 errhint("Use 'allow' or 'refuse'.")));
	}
	if (!PG_ARGISNULL(2))
		el_check_compat_mode(text_to_cstring(PG_GETARG_TEXT_PP(2)));
	el_schema_require_owner(relid);
	(void) el_lock_stream(relid, ShareRowExclusiveLock);

	values[0] = ObjectIdGetDatum(relid);
	for (int i = 1; i <= 2; i++)
	{
		values[i] = PG_ARGISNULL(i) ? (Datum) 0 : PG_GETARG_DATUM(i);
		nulls[i] = PG_ARGISNULL(i) ? 'n' : ' ';
	}
	SPI_connect();
	(void) el_catalog_sql("INSERT INTO event_log.schema_settings AS s"
						  " (stream, unregistered_types, compatibility)"
						  " VALUES ($1, COALESCE($2, 'allow'), COALESCE($3, 'BACKWARD'))"
						  " ON CONFLICT (stream) DO UPDATE"
						  " SET unregistered_types = COALESCE($2, s.unregistered_types),"
						  " compatibility = COALESCE($3, s.compatibility)",
						  3, types, values, nulls, 0, 0);
	SPI_finish();
	CacheInvalidateRelcacheByRelid(relid);
	PG_RETURN_VOID();
}

/*
 * set_schema_compatibility(stream regclass, type text, compatibility text):
 * one type's mode, over the stream's; NULL removes it.
 */
Datum
el_set_schema_compatibility(PG_FUNCTION_ARGS)
{
	Oid			relid;
	text	   *type;
	Oid			types[3] = {REGCLASSOID, TEXTOID, TEXTOID};
	Datum		values[3];

	el_require_arg(fcinfo, 0, "stream");
	el_require_arg(fcinfo, 1, "type");
	relid = PG_GETARG_OID(0);
	type = PG_GETARG_TEXT_PP(1);
	el_check_type(type);
	if (!PG_ARGISNULL(2))
		el_check_compat_mode(text_to_cstring(PG_GETARG_TEXT_PP(2)));
	el_schema_require_owner(relid);
	(void) el_lock_stream(relid, ShareRowExclusiveLock);

	values[0] = ObjectIdGetDatum(relid);
	values[1] = PointerGetDatum(type);
	SPI_connect();
	if (PG_ARGISNULL(2))
		(void) el_catalog_sql("DELETE FROM event_log.schema_type_settings t"
							  " WHERE t.stream OPERATOR(pg_catalog.=) $1"
							  " AND t.type OPERATOR(pg_catalog.=) $2",
							  2, types, values, NULL, 0, 0);
	else
	{
		values[2] = PG_GETARG_DATUM(2);
		(void) el_catalog_sql("INSERT INTO event_log.schema_type_settings AS t"
							  " (stream, type, compatibility) VALUES ($1, $2, $3)"
							  " ON CONFLICT (stream, type) DO UPDATE"
							  " SET compatibility = excluded.compatibility",
							  3, types, values, NULL, 0, 0);
	}
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * set_quarantine(stream regclass, quarantine regclass): the stream where
 * events that the stream's schemas refuse are appended instead, with the
 * errors in their metadata (NULL: refuse them, the default).  Only plain
 * INSERT and COPY divert; append() and append_events() still refuse.
 */
Datum
el_set_quarantine(PG_FUNCTION_ARGS)
{
	Oid			relid;
	Oid			quarantine = InvalidOid;
	Oid			types[2] = {REGCLASSOID, REGCLASSOID};
	Datum		values[2];
	char		nulls[2] = {' ', ' '};

	el_require_arg(fcinfo, 0, "stream");
	relid = PG_GETARG_OID(0);
	el_schema_require_owner(relid);
	if (!PG_ARGISNULL(1))
	{
		quarantine = PG_GETARG_OID(1);
		(void) el_require_stream(quarantine);
		if (quarantine == relid)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("a stream cannot be its own quarantine")));
		if (pg_class_aclcheck(quarantine, GetUserId(), ACL_INSERT) != ACLCHECK_OK)
			aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_TABLE, get_rel_name(quarantine));
	}
	(void) el_lock_stream(relid, ShareRowExclusiveLock);

	values[0] = ObjectIdGetDatum(relid);
	values[1] = ObjectIdGetDatum(quarantine);
	nulls[1] = OidIsValid(quarantine) ? ' ' : 'n';
	SPI_connect();
	if (OidIsValid(quarantine))
	{
		bool		isnull;

		/* one step only: a quarantine has none of its own, and is no stream's */
		(void) el_catalog_sql("SELECT EXISTS (SELECT FROM event_log.schema_settings s"
							  "  WHERE s.stream OPERATOR(pg_catalog.=) $2 AND s.quarantine IS NOT NULL),"
							  " EXISTS (SELECT FROM event_log.schema_settings s"
							  "  WHERE s.quarantine OPERATOR(pg_catalog.=) $1)",
							  2, types, values, NULL, EL_CAT_READ | EL_CAT_LATEST, 1);

		if (DatumGetBool(el_spi_value(0, 1, &isnull)) || DatumGetBool(el_spi_value(0, 2, &isnull)))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("\"%s\" cannot be the quarantine of \"%s\"",
							el_qualified_name(quarantine), el_qualified_name(relid)),
					 errdetail("A quarantine has no quarantine of its own, and a stream that is a quarantine gets none.")));
	}
	(void) el_catalog_sql("INSERT INTO event_log.schema_settings AS s (stream, quarantine)"
						  " VALUES ($1, $2) ON CONFLICT (stream) DO UPDATE"
						  " SET quarantine = excluded.quarantine",
						  2, types, values, nulls, 0, 0);
	SPI_finish();
	CacheInvalidateRelcacheByRelid(relid);
	PG_RETURN_VOID();
}

/* ----------------------------------------------------------------
 * Checking documents without appending them
 * ----------------------------------------------------------------
 */

static void
el_put_errors(FunctionCallInfo fcinfo, List *errors)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ListCell   *lc;

	foreach(lc, errors)
	{
		ElSchemaError *err = lfirst(lc);
		Datum		values[3];
		bool		nulls[3] = {0};

		values[0] = CStringGetTextDatum(err->path);
		values[1] = CStringGetTextDatum(err->keyword);
		values[2] = CStringGetTextDatum(err->message);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
}

/*
 * validate_event(stream regclass, type text, payload jsonb, version int
 * DEFAULT NULL) RETURNS TABLE (path text, keyword text, message text):
 * every error of the payload against the type's schema (the latest
 * version, or the one given); no rows when it is valid.
 */
Datum
el_validate_event(PG_FUNCTION_ARGS)
{
	ElSchema   *schema;
	int32		version;

	el_require_arg(fcinfo, 0, "stream");
	el_require_arg(fcinfo, 1, "type");
	el_require_arg(fcinfo, 2, "payload");
	if (!PG_ARGISNULL(3) && PG_GETARG_INT32(3) < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("schema version must be positive")));
	schema = el_schema_require(PG_GETARG_OID(0), PG_GETARG_TEXT_PP(1),
							   PG_ARGISNULL(3) ? 0 : PG_GETARG_INT32(3), &version);
	InitMaterializedSRF(fcinfo, 0);
	el_put_errors(fcinfo, el_schema_validate(schema, PG_GETARG_JSONB_P(2), 0));
	return (Datum) 0;
}

/*
 * json_schema_errors(schema jsonb, instance jsonb) RETURNS TABLE (path
 * text, keyword text, message text): a schema that is not registered.
 */
Datum
el_json_schema_errors(PG_FUNCTION_ARGS)
{
	ElSchema   *schema;

	el_require_arg(fcinfo, 0, "schema");
	el_require_arg(fcinfo, 1, "instance");
	schema = el_schema_compile(PG_GETARG_JSONB_P(0));
	InitMaterializedSRF(fcinfo, 0);
	el_put_errors(fcinfo, el_schema_validate(schema, PG_GETARG_JSONB_P(1), 0));
	return (Datum) 0;
}

/* json_schema_valid(schema jsonb, instance jsonb) RETURNS boolean (strict) */
Datum
el_json_schema_valid(PG_FUNCTION_ARGS)
{
	ElSchema   *schema = el_schema_compile(PG_GETARG_JSONB_P(0));

	PG_RETURN_BOOL(el_schema_validate(schema, PG_GETARG_JSONB_P(1), 1) == NIL);
}


/*
 * Check every event of a type in the stream against a schema, in (shard,
 * seq) order, reading as the caller through a cursor (the caller's SELECT
 * privilege and row-level security apply; memory stays flat whatever the
 * length of the log).  False, with the first event refused, when there is
 * one.  `schema` must not be a cached one: the reads can invalidate the
 * cache.
 */
static bool
el_history_check(Oid relid, text *type, ElSchema *schema, ElHistoryFailure *out)
{
	MemoryContext callercxt = CurrentMemoryContext;
	MemoryContext rowcxt;
	Portal		portal;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	bool		ok = true;

	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "event_log history check",
								   ALLOCSET_DEFAULT_SIZES);
	values[0] = PointerGetDatum(type);
	SPI_connect();
	portal = SPI_cursor_open_with_args(NULL,
									   psprintf("SELECT shard, seq, key, payload FROM %s"
												" WHERE type OPERATOR(pg_catalog.=) $1"
												" ORDER BY shard, seq",
												el_qualified_name(relid)),
									   1, types, values, NULL, true, 0);
	while (ok)
	{
		SPI_cursor_fetch(portal, true, 1000);
		if (SPI_processed == 0)
			break;
		for (uint64 i = 0; i < SPI_processed && ok; i++)
		{
			bool		isnull;
			List	   *errors;
			MemoryContext old = MemoryContextSwitchTo(rowcxt);

			CHECK_FOR_INTERRUPTS();
			errors = el_schema_validate(schema, el_spi_jsonb(i, 4), 1);
			MemoryContextSwitchTo(callercxt);
			if (errors != NIL)
			{
				ElSchemaError *err = linitial(errors);

				out->shard = el_spi_value(i, 1, &isnull);
				out->seq = el_spi_value(i, 2, &isnull);
				out->key = PointerGetDatum(DatumGetTextPCopy(el_spi_value(i, 3, &isnull)));
				out->error = palloc(sizeof(ElSchemaError));
				out->error->path = pstrdup(err->path);
				out->error->keyword = err->keyword;
				out->error->message = pstrdup(err->message);
				ok = false;
			}
			MemoryContextSwitchTo(old);
			MemoryContextReset(rowcxt);
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	SPI_finish();
	MemoryContextDelete(rowcxt);
	return ok;
}

/*
 * check_schema_history(stream regclass, type text, version int DEFAULT
 * NULL) RETURNS TABLE (shard int, seq bigint, key text, path text,
 * keyword text, message text)
 *
 * Whether a schema (the latest version of the type, or the one given)
 * accepts every event of that type already in the stream: no rows when it
 * does, else the first event in (shard, seq) order that it refuses, with
 * its first error.
 */
Datum
el_check_schema_history(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			relid;
	text	   *type;
	int32		version;
	ElSchema   *schema;
	ElHistoryFailure failure;
	MemoryContext old;

	el_require_arg(fcinfo, 0, "stream");
	el_require_arg(fcinfo, 1, "type");
	if (!PG_ARGISNULL(2) && PG_GETARG_INT32(2) < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("schema version must be positive")));
	relid = PG_GETARG_OID(0);
	type = PG_GETARG_TEXT_PP(1);
	(void) el_schema_require(relid, type, PG_ARGISNULL(2) ? 0 : PG_GETARG_INT32(2),
							 &version);
	InitMaterializedSRF(fcinfo, 0);

	old = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	schema = el_schema_private_copy(relid, type, version);
	MemoryContextSwitchTo(old);

	if (!el_history_check(relid, type, schema, &failure))
	{
		Datum		out[6];
		bool		nulls[6] = {0};

		out[0] = failure.shard;
		out[1] = failure.seq;
		out[2] = failure.key;
		out[3] = CStringGetTextDatum(failure.error->path);
		out[4] = CStringGetTextDatum(failure.error->keyword);
		out[5] = CStringGetTextDatum(failure.error->message);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, out, nulls);
	}
	return (Datum) 0;
}
