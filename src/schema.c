/*
 * schema.c
 *	  The event schema registry's per-backend cache of compiled schemas
 *	  (read from event_log.event_schemas and event_log.schema_settings),
 *	  and the check that the append trigger makes on every event, with the
 *	  diversion of refused events to a quarantine (docs/schemas.md).  The
 *	  registry's SQL functions are in schema_registry.c.
 *
 *	  Locking: the functions that change the registry take the stream's
 *	  ShareRowExclusiveLock, which conflicts with the RowExclusiveLock that
 *	  every append holds on the stream until its transaction ends, and with
 *	  itself.  So a registration waits for appends in progress and holds new
 *	  ones until it commits; an append that then takes its lock processes
 *	  the invalidation the registration sent, and reads the registry with
 *	  the latest snapshot.  Every event is checked against the version that
 *	  was the latest when its transaction first appended to the stream, and
 *	  none committed after a registration escaped it (docs/design/schemas.md).
 *	  It cannot deadlock with appends beyond what two appenders could: the
 *	  stream lock is the first lock either takes on the stream.
 *
 *	  On a catalog not yet updated to 0.4 (no event_log.event_schemas) no
 *	  stream has schemas, and appends are not checked.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"

#include "append.h"
#include "catalog.h"
#include "event_log.h"
#include "registry.h"
#include "schema.h"

/* ----------------------------------------------------------------
 * The per-backend cache
 * ----------------------------------------------------------------
 */

/*
 * One entry per stream (version EL_SCHEMA_STREAM, type ""): its policy and
 * whether it has any schema; and one per stream, type and version asked
 * for (version 0: the latest), with the compiled schema or none.
 */
#define EL_SCHEMA_STREAM	(-1)
#define EL_SCHEMA_LATEST	0

typedef struct ElSchemaKey
{
	Oid			relid;
	int32		version;
	char		type[EL_MAX_TYPE_BYTES + 1];
} ElSchemaKey;

typedef struct ElSchemaEntry
{
	ElSchemaKey key;
	/* stream entries */
	bool		has_schemas;
	bool		refuse_unregistered;
	Oid			quarantine;		/* where refused events go, or InvalidOid */
	/* type entries: NULL schema when the type (or that version) has none */
	int32		version;
	ElSchema   *schema;
} ElSchemaEntry;

static MemoryContext el_schema_cxt = NULL;
static HTAB *el_schema_cache = NULL;

/*
 * Set by invalidations, acted on at the next lookup: the callback may run
 * while a compiled schema is in use (a lock taken by a catalog read during
 * a lookup), so it never frees anything itself.
 */
static bool el_schema_stale = false;

static void
el_schema_cache_callback(Datum arg, Oid relid)
{
	ElSchemaKey key;

	if (el_schema_cache == NULL || el_schema_stale)
		return;
	if (!OidIsValid(relid))
	{
		el_schema_stale = true;
		return;
	}
	memset(&key, 0, sizeof(key));
	key.relid = relid;
	key.version = EL_SCHEMA_STREAM;
	if (hash_search(el_schema_cache, &key, HASH_FIND, NULL) != NULL)
		el_schema_stale = true;
}

void
el_schema_init(void)
{
	CacheRegisterRelcacheCallback(el_schema_cache_callback, (Datum) 0);
	el_upcast_init();
}

/*
 * A per-backend cache of the schema files: its hash, emptied first if an
 * invalidation marked it stale since the last lookup, made if need be.
 */
HTAB *
el_schema_hash(HTAB **hash, MemoryContext *cxt, bool *stale, const char *name,
			   Size keysize, Size entrysize)
{
	HASHCTL		ctl;

	if (*stale && *cxt != NULL)
	{
		MemoryContextReset(*cxt);
		*hash = NULL;
	}
	*stale = false;
	if (*hash != NULL)
		return *hash;
	if (*cxt == NULL)
	{
		*cxt = AllocSetContextCreate(CacheMemoryContext, "event_log schema cache",
									 ALLOCSET_DEFAULT_SIZES);
		MemoryContextSetIdentifier(*cxt, name); /* name: a string constant */
	}
	ctl.keysize = keysize;
	ctl.entrysize = entrysize;
	ctl.hcxt = *cxt;
	*hash = hash_create(name, 64, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	return *hash;
}

static HTAB *
el_schema_cache_get(void)
{
	return el_schema_hash(&el_schema_cache, &el_schema_cxt, &el_schema_stale,
						  "event_log schemas", sizeof(ElSchemaKey), sizeof(ElSchemaEntry));
}

static void
el_schema_key(ElSchemaKey *key, Oid relid, int32 version, const char *type, int len)
{
	memset(key, 0, sizeof(*key));
	key->relid = relid;
	key->version = version;
	if (len > EL_MAX_TYPE_BYTES)
		elog(ERROR, "event type of %d bytes is too long", len);
	memcpy(key->type, type, len);
}

/* Whether this database's catalog has the schema registry (0.4). */
static bool
el_schema_catalog_present(void)
{
	return OidIsValid(get_relname_relid("event_schemas", el_schema_oid()));
}

static ElSchemaEntry *
el_schema_stream_entry(Oid relid)
{
	ElSchemaKey key;
	ElSchemaEntry *entry;
	bool		found;
	bool		has_schemas = false;
	bool		refuse = false;
	Oid			quarantine = InvalidOid;

	el_schema_key(&key, relid, EL_SCHEMA_STREAM, "", 0);
	entry = hash_search(el_schema_cache_get(), &key, HASH_FIND, NULL);
	if (entry != NULL)
		return entry;

	if (el_schema_catalog_present())
	{
		Oid			types[1] = {REGCLASSOID};
		Datum		values[1] = {ObjectIdGetDatum(relid)};
		bool		isnull;

		SPI_connect();
		(void) el_catalog_sql("SELECT EXISTS (SELECT FROM event_log.event_schemas e"
							  "  WHERE e.stream OPERATOR(pg_catalog.=) $1),"
							  " EXISTS (SELECT FROM event_log.schema_settings s"
							  "  WHERE s.stream OPERATOR(pg_catalog.=) $1"
							  "  AND s.unregistered_types OPERATOR(pg_catalog.=) 'refuse'),"
							  " (SELECT s.quarantine FROM event_log.schema_settings s"
							  "  WHERE s.stream OPERATOR(pg_catalog.=) $1)",
							  1, types, values, NULL, EL_CAT_READ | EL_CAT_LATEST, 1);
		has_schemas = DatumGetBool(el_spi_value(0, 1, &isnull));
		refuse = DatumGetBool(el_spi_value(0, 2, &isnull));
		quarantine = DatumGetObjectId(el_spi_value(0, 3, &isnull));
		if (isnull)
			quarantine = InvalidOid;
		SPI_finish();
	}

	/* the lookup above may have marked the cache stale: enter into the current one */
	entry = hash_search(el_schema_cache_get(), &key, HASH_ENTER, &found);
	entry->has_schemas = has_schemas;
	entry->refuse_unregistered = refuse;
	entry->quarantine = quarantine;
	entry->version = 0;
	entry->schema = NULL;
	return entry;
}

/*
 * A registered schema as written: version `version`, or the latest when it
 * is 0; *got is its version.  NULL (and *got 0) when there is none.  The
 * result is in the caller's memory.
 */
static Jsonb *
el_read_schema(Oid relid, text *type, int32 version, int32 *got)
{
	Oid			types[3] = {REGCLASSOID, TEXTOID, INT4OID};
	Datum		values[3];
	MemoryContext cxt = CurrentMemoryContext;
	Jsonb	   *doc = NULL;

	values[0] = ObjectIdGetDatum(relid);
	values[1] = PointerGetDatum(type);
	values[2] = Int32GetDatum(version);
	*got = 0;
	SPI_connect();
	if (el_catalog_sql("SELECT e.version, e.schema FROM event_log.event_schemas e"
					   " WHERE e.stream OPERATOR(pg_catalog.=) $1"
					   " AND e.type OPERATOR(pg_catalog.=) $2"
					   " AND ($3 OPERATOR(pg_catalog.=) 0 OR e.version OPERATOR(pg_catalog.=) $3)"
					   " ORDER BY e.version DESC LIMIT 1",
					   3, types, values, NULL, EL_CAT_READ | EL_CAT_LATEST, 1) == 1)
	{
		bool		isnull;
		Jsonb	   *found = el_spi_jsonb(0, 2);
		MemoryContext old = MemoryContextSwitchTo(cxt);

		*got = DatumGetInt32(el_spi_value(0, 1, &isnull));
		doc = DatumGetJsonbPCopy(JsonbPGetDatum(found));
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return doc;
}

/*
 * A type's schema: the latest version (version 0) or the one given.  The
 * entry's schema is NULL when there is none.
 */
static ElSchemaEntry *
el_schema_type_entry(Oid relid, text *type, int32 version)
{
	ElSchemaKey key;
	ElSchemaEntry *entry;
	bool		found;
	int32		got = 0;
	Jsonb	   *doc;
	ElSchema   *schema = NULL;

	el_schema_key(&key, relid, version, VARDATA_ANY(type), VARSIZE_ANY_EXHDR(type));
	entry = hash_search(el_schema_cache_get(), &key, HASH_FIND, NULL);
	if (entry != NULL)
		return entry;

	doc = el_read_schema(relid, type, version, &got);
	(void) el_schema_cache_get();	/* reset now if the read made it stale */
	if (doc != NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(el_schema_cxt);

		schema = el_schema_compile(doc);
		MemoryContextSwitchTo(old);
	}

	/* not el_schema_cache_get(): nothing may empty the cache under `schema` now */
	entry = hash_search(el_schema_cache, &key, HASH_ENTER, &found);
	entry->has_schemas = false;
	entry->refuse_unregistered = false;
	entry->quarantine = InvalidOid;
	entry->version = got;
	entry->schema = schema;
	return entry;
}

/* ----------------------------------------------------------------
 * The check at append
 * ----------------------------------------------------------------
 */

/* The schema_version an event's metadata names, 0 if none, -1 if malformed. */
int32
el_schema_metadata_version(Jsonb *meta)
{
	JsonbValue	k;
	JsonbValue *v;
	Numeric		n;
	int32		version;
	bool		error = false;

	k.type = jbvString;
	k.val.string.val = EL_SCHEMA_VERSION_KEY;
	k.val.string.len = strlen(EL_SCHEMA_VERSION_KEY);
	v = findJsonbValueFromContainer(&meta->root, JB_FOBJECT, &k);
	if (v == NULL)
		return 0;
	if (v->type != jbvNumeric)
		return -1;
	n = v->val.numeric;

	/*
	 * Rounded to an int4 (NaN, infinities and values out of range fail),
	 * then compared back, which refuses fractions: one conversion and one
	 * comparison, as readers that upcast do this for every event.
	 */
	version = numeric_int4_opt_error(n, &error);
	if (error || version < 1 ||
		!DatumGetBool(DirectFunctionCall2(numeric_eq, NumericGetDatum(n),
										  NumericGetDatum(int64_to_numeric(version)))))
		return -1;
	return version;
}

/*
 * Why an event was refused: the error it raises, or, on a stream with a
 * quarantine, what the quarantined event's metadata records.
 */
typedef struct ElRefusal
{
	int			sqlstate;
	int32		version;		/* the schema version checked, or 0 */
	char	   *message;
	char	   *detail;
	char	   *hint;
	List	   *errors;			/* ElSchemaError, for a schema violation */
} ElRefusal;

static ElRefusal *
el_refusal(int sqlstate, int32 version, char *message, char *detail, char *hint)
{
	ElRefusal  *r = palloc0(sizeof(ElRefusal));

	r->sqlstate = sqlstate;
	r->version = version;
	r->message = message;
	r->detail = detail;
	r->hint = hint;
	return r;
}

/*
 * The check of one event: NULL when it passes (with *version the schema
 * version it passed, 0 when its type has none, and *supplied whether its
 * metadata named that version itself).
 */
static ElRefusal *
el_schema_verdict(Oid relid, const ElSchemaEntry *stream, text *type, Datum payload,
				  Jsonb *meta, int32 *version, bool *supplied)
{
	ElSchemaEntry *entry;
	int32		named = 0;
	List	   *errors;
	char	   *tname = text_to_cstring(type);

	*version = 0;
	*supplied = false;
	entry = el_schema_type_entry(relid, type, EL_SCHEMA_LATEST);
	if (entry->schema == NULL)
	{
		if (stream->refuse_unregistered)
			return el_refusal(ERRCODE_EL_SCHEMA_MISSING, 0,
							  psprintf("event type \"%s\" has no schema in stream \"%s\"",
									   tname, el_qualified_name(relid)),
							  pstrdup("The stream refuses events of types without a registered schema."),
							  pstrdup("Register one with event_log.register_schema(), or allow such types with event_log.set_schema_policy(stream, 'allow')."));
		return NULL;
	}

	if (meta != NULL)
	{
		if (!JB_ROOT_IS_OBJECT(meta))
			return el_refusal(ERRCODE_INVALID_PARAMETER_VALUE, entry->version,
							  pstrdup("metadata of an event with a schema must be a JSON object"),
							  psprintf("Type \"%s\" has a schema in stream \"%s\", and the event's metadata records the schema version it was checked against.",
									   tname, el_qualified_name(relid)),
							  NULL);
		named = el_schema_metadata_version(meta);
		if (named < 0)
			return el_refusal(ERRCODE_INVALID_PARAMETER_VALUE, entry->version,
							  psprintf("metadata key \"%s\" must be a positive integer",
									   EL_SCHEMA_VERSION_KEY),
							  psprintf("The event of type \"%s\" to stream \"%s\" names the schema version it was written for there.",
									   tname, el_qualified_name(relid)),
							  psprintf("Leave \"%s\" out to check the event against the latest version.",
									   EL_SCHEMA_VERSION_KEY));
	}
	if (named > 0 && named != entry->version)
	{
		entry = el_schema_type_entry(relid, type, named);
		if (entry->schema == NULL)
			return el_refusal(ERRCODE_EL_SCHEMA_MISSING, named,
							  psprintf("event type \"%s\" has no schema version %d in stream \"%s\"",
									   tname, named, el_qualified_name(relid)),
							  NULL,
							  psprintf("The metadata key \"%s\" must name a registered version (event_log.event_schemas).",
									   EL_SCHEMA_VERSION_KEY));
	}

	errors = el_schema_validate(entry->schema, DatumGetJsonbP(payload),
								OidIsValid(stream->quarantine) ? 0 : 1);
	if (errors != NIL)
	{
		ElSchemaError *err = linitial(errors);
		ElRefusal  *r;

		r = el_refusal(ERRCODE_EL_SCHEMA_VIOLATION, entry->version,
					   psprintf("event of type \"%s\" does not match schema version %d of stream \"%s\"",
								tname, entry->version, el_qualified_name(relid)),
					   psprintf("At %s: %s (keyword \"%s\").", err->path, err->message,
								err->keyword),
					   pstrdup("event_log.validate_event() lists every error of an event."));
		r->errors = errors;
		return r;
	}
	*version = entry->version;
	*supplied = named > 0;
	return NULL;
}

static void
el_push_string(JsonbParseState **state, const char *key, const char *value)
{
	JsonbValue	k;
	JsonbValue	v;

	k.type = jbvString;
	k.val.string.val = unconstify(char *, key);
	k.val.string.len = strlen(key);
	(void) pushJsonbValue(state, WJB_KEY, &k);
	if (value == NULL)
		v.type = jbvNull;
	else
	{
		v.type = jbvString;
		v.val.string.val = unconstify(char *, value);
		v.val.string.len = strlen(value);
	}
	(void) pushJsonbValue(state, WJB_VALUE, &v);
}

static void
el_push_int(JsonbParseState **state, const char *key, int64 value)
{
	JsonbValue	k;
	JsonbValue	v;

	k.type = jbvString;
	k.val.string.val = unconstify(char *, key);
	k.val.string.len = strlen(key);
	v.type = jbvNumeric;
	v.val.numeric = int64_to_numeric(value);
	(void) pushJsonbValue(state, WJB_KEY, &k);
	(void) pushJsonbValue(state, WJB_VALUE, &v);
}

/*
 * A quarantined event's metadata: its own (when an object), plus
 * "quarantine": {stream, sqlstate, message, schema_version, errors: [{path,
 * keyword, message}], and its own metadata when that was no object}.
 */
static Datum
el_quarantine_metadata(Oid relid, ElRefusal *r, Jsonb *meta)
{
	JsonbParseState *state = NULL;
	JsonbValue	k;
	JsonbValue *res;
	ListCell   *lc;
	Datum		out;

	(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	k.type = jbvString;
	k.val.string.val = "quarantine";
	k.val.string.len = strlen("quarantine");
	(void) pushJsonbValue(&state, WJB_KEY, &k);
	(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	el_push_string(&state, "stream", el_qualified_name(relid));
	el_push_string(&state, "sqlstate", unpack_sql_state(r->sqlstate));
	el_push_string(&state, "message", r->message);
	if (r->version > 0)
		el_push_int(&state, EL_SCHEMA_VERSION_KEY, r->version);
	k.val.string.val = "errors";
	k.val.string.len = strlen("errors");
	(void) pushJsonbValue(&state, WJB_KEY, &k);
	(void) pushJsonbValue(&state, WJB_BEGIN_ARRAY, NULL);
	foreach(lc, r->errors)
	{
		ElSchemaError *err = lfirst(lc);

		(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
		el_push_string(&state, "path", err->path);
		el_push_string(&state, "keyword", err->keyword);
		el_push_string(&state, "message", err->message);
		(void) pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	}
	(void) pushJsonbValue(&state, WJB_END_ARRAY, NULL);
	if (meta != NULL && !JB_ROOT_IS_OBJECT(meta))
	{
		JsonbValue	v;

		k.val.string.val = "metadata";
		k.val.string.len = strlen("metadata");
		(void) pushJsonbValue(&state, WJB_KEY, &k);
		v.type = jbvBinary;
		v.val.binary.data = &meta->root;
		v.val.binary.len = VARSIZE(meta) - VARHDRSZ;
		(void) pushJsonbValue(&state, WJB_VALUE, &v);
	}
	(void) pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	res = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	out = JsonbPGetDatum(JsonbValueToJsonb(res));
	if (meta != NULL && JB_ROOT_IS_OBJECT(meta))
		out = DirectFunctionCall2(jsonb_concat, JsonbPGetDatum(meta), out);
	return out;
}

/* Set while an event is appended to a quarantine: no second diversion. */
static bool el_diverting = false;

/*
 * Append the refused event to the stream's quarantine instead, as the
 * caller (who needs INSERT there), with the same key, type, payload and
 * event_id.  Its own append trigger assigns its position there.
 */
static void
el_divert(Oid relid, Oid quarantine, ElRefusal *r, Datum *values, bool *isnull,
		  Jsonb *meta)
{
	Oid			types[5] = {TEXTOID, TEXTOID, JSONBOID, JSONBOID, UUIDOID};
	Datum		args[5];
	bool		with_id = !isnull[Anum_el_event_id - 1];

	args[0] = values[Anum_el_key - 1];
	args[1] = values[Anum_el_type - 1];
	args[2] = values[Anum_el_payload - 1];
	args[3] = el_quarantine_metadata(relid, r, meta);
	args[4] = with_id ? values[Anum_el_event_id - 1] : (Datum) 0;
	SPI_connect();
	el_diverting = true;
	PG_TRY();
	{
		(void) el_exec_as_caller(psprintf("INSERT INTO %s (key, type, payload, metadata%s)"
										  " VALUES ($1, $2, $3, $4%s)",
										  el_qualified_name(quarantine),
										  with_id ? ", event_id" : "",
										  with_id ? ", $5" : ""),
								 with_id ? 5 : 4, types, args, false, 0);
	}
	PG_FINALLY();
	{
		el_diverting = false;
	}
	PG_END_TRY();
	SPI_finish();
}

ElSchemaCheck
el_schema_check_event(Relation rel, Datum *values, bool *isnull,
					  Datum *metadata, bool *metadata_null, bool may_divert,
					  ElKnownEvent known, void *known_arg)
{
	Oid			relid = RelationGetRelid(rel);
	ElSchemaEntry stream_copy;
	const ElSchemaEntry *stream = &stream_copy;
	Jsonb	   *meta;
	ElRefusal  *r;
	int32		version;
	bool		supplied;
	JsonbParseState *state = NULL;
	JsonbValue *added;

	/*
	 * A copy: the lookups below read the catalog, which may process an
	 * invalidation that empties the cache under the entry.
	 */
	stream_copy = *el_schema_stream_entry(relid);
	if (!stream->has_schemas && !stream->refuse_unregistered)
		return EL_SCHEMA_PASSED;	/* a quarantine alone diverts nothing */
	meta = *metadata_null ? NULL : DatumGetJsonbP(*metadata);

	r = el_schema_verdict(relid, stream, DatumGetTextPP(values[Anum_el_type - 1]),
						  values[Anum_el_payload - 1], meta, &version, &supplied);
	if (r != NULL)
	{
		if (known != NULL && known(known_arg))
			return EL_SCHEMA_KNOWN;
		if (OidIsValid(stream->quarantine) && may_divert && !el_diverting)
		{
			el_divert(relid, stream->quarantine, r, values, isnull, meta);
			return EL_SCHEMA_DIVERTED;
		}
		ereport(ERROR,
				(errcode(r->sqlstate),
				 errmsg_internal("%s", r->message),
				 r->detail ? errdetail_internal("%s", r->detail) : 0,
				 r->hint ? errhint("%s", r->hint) : 0));
	}
	if (version == 0 || supplied)
		return EL_SCHEMA_PASSED;

	/* record the version checked against: {"schema_version": N} */
	(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	el_push_int(&state, EL_SCHEMA_VERSION_KEY, version);
	added = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	*metadata = JsonbPGetDatum(JsonbValueToJsonb(added));
	if (meta != NULL)
		*metadata = DirectFunctionCall2(jsonb_concat, JsonbPGetDatum(meta), *metadata);
	*metadata_null = false;
	return EL_SCHEMA_RECORDED;
}

/* ----------------------------------------------------------------
 * What the registry's functions (schema_registry.c) and upcasting share
 * ----------------------------------------------------------------
 */

/* A stream the caller owns, for the functions that change its schemas. */
void
el_schema_require_owner(Oid relid)
{
	(void) el_require_stream(relid);
	if (!pg_class_ownercheck(relid, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, OBJECT_TABLE, get_rel_name(relid));
}

/*
 * A type's schema, compiled, and its version (the latest when version is
 * 0); an error (EL021) when there is none.  The schema is the cache's: it
 * stays valid until the next read of the registry.
 */
ElSchema *
el_schema_require(Oid relid, text *type, int32 version, int32 *got)
{
	ElSchemaEntry *entry;

	(void) el_require_stream(relid);
	el_check_type(type);
	if (version < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("schema version must be positive")));
	entry = el_schema_type_entry(relid, type, version);
	if (entry->schema == NULL && version > 0)
		ereport(ERROR,
				(errcode(ERRCODE_EL_SCHEMA_MISSING),
				 errmsg("event type \"%s\" has no schema version %d in stream \"%s\"",
						text_to_cstring(type), version, el_qualified_name(relid))));
	if (entry->schema == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_EL_SCHEMA_MISSING),
				 errmsg("event type \"%s\" has no schema in stream \"%s\"",
						text_to_cstring(type), el_qualified_name(relid)),
				 errhint("Register one with event_log.register_schema().")));
	*got = entry->version;
	return entry->schema;
}

/*
 * A private compiled copy of a registered version, in the current context:
 * for use across statements that may invalidate the cache.
 */
ElSchema *
el_schema_private_copy(Oid relid, text *type, int32 version)
{
	int32		got;
	Jsonb	   *doc = el_read_schema(relid, type, version, &got);

	if (doc == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_EL_SCHEMA_MISSING),
				 errmsg("event type \"%s\" has no schema version %d in stream \"%s\"",
						text_to_cstring(type), version, el_qualified_name(relid))));
	return el_schema_compile(doc);
}

/* The latest version of a type's schema; 0 when it has none. */
int32
el_schema_latest_version(Oid relid, text *type)
{
	return el_schema_type_entry(relid, type, EL_SCHEMA_LATEST)->version;
}

/*
 * Whether a stream has any registered schema (false on a catalog not yet
 * updated to 0.4): readers that upcast skip streams without one at the cost
 * of a hash lookup.
 */
bool
el_schema_stream_has_schemas(Oid relid)
{
	return el_schema_stream_entry(relid)->has_schemas;
}

/* drop_stream(): forget the stream's schemas, settings and upcasters. */
void
el_schema_forget(Oid relid)
{
	Oid			types[1] = {REGCLASSOID};
	Datum		values[1] = {ObjectIdGetDatum(relid)};

	static const char *const deletes[] = {
		"DELETE FROM event_log.event_schemas e WHERE e.stream OPERATOR(pg_catalog.=) $1",
		"DELETE FROM event_log.schema_settings s WHERE s.stream OPERATOR(pg_catalog.=) $1",
		"DELETE FROM event_log.schema_type_settings t WHERE t.stream OPERATOR(pg_catalog.=) $1",
		"DELETE FROM event_log.upcasters u WHERE u.stream OPERATOR(pg_catalog.=) $1"
	};

	if (!el_schema_catalog_present())
		return;
	for (int i = 0; i < (int) lengthof(deletes); i++)
		(void) el_catalog_sql(deletes[i], 1, types, values, NULL, 0, 0);
	/* streams whose quarantine it was refuse such events again */
	(void) el_catalog_sql("UPDATE event_log.schema_settings s SET quarantine = NULL"
						  " WHERE s.quarantine OPERATOR(pg_catalog.=) $1 RETURNING s.stream",
						  1, types, values, NULL, 0, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		CacheInvalidateRelcacheByRelid(DatumGetObjectId(el_spi_value(i, 1, &isnull)));
	}
}

