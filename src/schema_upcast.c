/*
 * schema_upcast.c
 *	  Upcasting: an SQL expression per stream, event type and version step
 *	  (N to N + 1) that turns a payload of version N into the shape of
 *	  version N + 1, and upcast(), which applies the steps from the version
 *	  an event recorded at append up to the type's latest, so that readers
 *	  (replay(), polls, projection handlers) deal with the newest shape only.
 *	  Stored events never change.
 *
 *	  An expression is the stream owner's code: it runs as the stream's
 *	  owner, in a security-restricted operation, with pg_catalog as the
 *	  whole search_path (el_query_as()), over `payload` and `metadata`, as a
 *	  view runs as its owner for whoever reads it.  Registering a step runs
 *	  it on every stored event of version N and checks the result against
 *	  version N + 1, naming the first event it fails on; upcast() checks
 *	  its result against the latest version too, so a reader never gets a
 *	  payload that its schema refuses.
 *
 *	  Upcasting on read: el_upcast_event() does the same to an event's
 *	  columns for the readers (read.c, when the session sets event_log.upcast,
 *	  through el_upcast_dest() or row by row) and for projection handlers
 *	  (projections.upcast), and makes metadata's schema_version name the
 *	  version it upcast to.  Events already at the latest version, of types
 *	  with one version or none, and of streams without schemas pass as they
 *	  are, at the cost of lookups a read remembers across its rows
 *	  (ElUpcastMemo); the steps' statements are cached per backend.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "parser/parser.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#include "append.h"
#include "catalog.h"
#include "event_log.h"
#include "registry.h"
#include "schema.h"

PG_FUNCTION_INFO_V1(el_register_upcaster);
PG_FUNCTION_INFO_V1(el_upcast);

/*
 * The statement an expression runs in.  The expression ends its own line,
 * so that a trailing "--" comment cannot swallow what follows it.
 */
static char *
el_upcaster_sql(const char *expression)
{
	return psprintf("SELECT (%s\n)::pg_catalog.jsonb"
					" FROM (SELECT $1::pg_catalog.jsonb AS payload,"
					" $2::pg_catalog.jsonb AS metadata) AS event",
					expression);
}

/*
 * Refuse an expression that is not one: the statement around it must parse
 * as a single SELECT (a syntax error's position would point into our
 * statement, not the caller's, so it is reported as a detail).
 */
static void
el_parse_upcaster(const char *sql)
{
	MemoryContext cxt = CurrentMemoryContext;
	List	   *volatile parsed = NIL;
	char	   *volatile why = NULL;

	PG_TRY();
	{
		parsed = raw_parser(sql, RAW_PARSE_DEFAULT);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		why = edata->message;
	}
	PG_END_TRY();
	if (list_length(parsed) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("an upcaster must be one SQL expression"),
				 why ? errdetail("%s.", why) : 0,
				 errhint("Write an expression over payload and metadata that returns the new payload, such as payload || '{\"currency\": \"EUR\"}'.")));
}

/* Run one step: the new payload (NULL is an error, naming the step). */
static Jsonb *
el_upcast_step(Oid relid, text *type, int32 from, const char *sql,
			   Datum payload, Datum metadata, bool metadata_null)
{
	Oid			types[2] = {JSONBOID, JSONBOID};
	Datum		values[2] = {payload, metadata};
	char		nulls[2] = {' ', metadata_null ? 'n' : ' '};
	MemoryContext cxt = CurrentMemoryContext;
	Jsonb	   *out = NULL;
	bool		isnull;

	SPI_connect();
	(void) el_query_as(el_rel_owner(relid), sql, 2, types, values, nulls,
					   EL_CAT_READ, 1);
	if (SPI_processed == 1)
	{
		Datum		d = el_spi_value(0, 1, &isnull);

		if (!isnull)
		{
			MemoryContext old = MemoryContextSwitchTo(cxt);

			out = DatumGetJsonbPCopy(d);
			MemoryContextSwitchTo(old);
		}
	}
	SPI_finish();
	if (out == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_EL_SCHEMA_VIOLATION),
				 errmsg("upcaster of event type \"%s\" from version %d of stream \"%s\" returned null",
						text_to_cstring(type), from, el_qualified_name(relid))));
	return out;
}

/* A payload that must match version `version`: EL020 if it does not. */
static void
el_upcast_require(Oid relid, text *type, int32 version, ElSchema *schema,
				  Jsonb *payload, const char *what)
{
	List	   *errors = el_schema_validate_ext(schema, payload, 1, true);

	if (errors != NIL)
	{
		ElSchemaError *err = linitial(errors);

		ereport(ERROR,
				(errcode(ERRCODE_EL_SCHEMA_VIOLATION),
				 errmsg("upcast event of type \"%s\" does not match schema version %d of stream \"%s\"",
						text_to_cstring(type), version, el_qualified_name(relid)),
				 errdetail("%sAt %s: %s (keyword \"%s\").", what, err->path,
						   err->message, err->keyword),
				 errhint("Fix the upcaster with event_log.register_upcaster().")));
	}
}

/*
 * The statements of upcasters this backend has run, per stream, type and
 * step, so that reading many old events reads the catalog once per step.
 * Emptied at the next lookup after an invalidation of a stream it holds
 * (register_upcaster() invalidates the stream), never under a caller.
 */
typedef struct ElUpcasterKey
{
	Oid			relid;
	int32		from;
	char		type[EL_MAX_TYPE_BYTES + 1];
} ElUpcasterKey;

typedef struct ElUpcasterEntry
{
	ElUpcasterKey key;
	char	   *sql;			/* NULL: no such step */
} ElUpcasterEntry;

static MemoryContext el_upcaster_cxt = NULL;
static HTAB *el_upcasters = NULL;
static bool el_upcasters_stale = false;

static void
el_upcaster_callback(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS seq;
	ElUpcasterEntry *entry;

	if (el_upcasters == NULL || el_upcasters_stale)
		return;
	if (!OidIsValid(relid))
	{
		el_upcasters_stale = true;
		return;
	}
	hash_seq_init(&seq, el_upcasters);
	while ((entry = hash_seq_search(&seq)) != NULL)
		if (entry->key.relid == relid)
		{
			el_upcasters_stale = true;
			hash_seq_term(&seq);
			break;
		}
}

static HTAB *
el_upcaster_cache(void)
{
	return el_schema_hash(&el_upcasters, &el_upcaster_cxt, &el_upcasters_stale,
						  "event_log upcasters", sizeof(ElUpcasterKey),
						  sizeof(ElUpcasterEntry));
}

void
el_upcast_init(void)
{
	CacheRegisterRelcacheCallback(el_upcaster_callback, (Datum) 0);
}

/* Read step `from` of a type from the catalog: its statement, or NULL. */
static char *
el_read_upcaster(Oid relid, text *type, int32 from)
{
	Oid			types[3] = {REGCLASSOID, TEXTOID, INT4OID};
	Datum		values[3] = {ObjectIdGetDatum(relid), PointerGetDatum(type),
	Int32GetDatum(from)};
	MemoryContext cxt = CurrentMemoryContext;
	char	   *sql = NULL;

	SPI_connect();
	if (el_catalog_sql("SELECT u.expression FROM event_log.upcasters u"
					   " WHERE u.stream OPERATOR(pg_catalog.=) $1"
					   " AND u.type OPERATOR(pg_catalog.=) $2"
					   " AND u.from_version OPERATOR(pg_catalog.=) $3",
					   3, types, values, NULL, EL_CAT_READ | EL_CAT_LATEST, 1) == 1)
	{
		char	   *expr = el_spi_text(0, 1);
		MemoryContext old = MemoryContextSwitchTo(cxt);

		sql = el_upcaster_sql(expr);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return sql;
}

/*
 * The statement of step `from` of a type, in the caller's memory; NULL if
 * there is none.
 */
static char *
el_upcaster(Oid relid, text *type, int32 from)
{
	ElUpcasterKey key;
	ElUpcasterEntry *entry;
	int			len = VARSIZE_ANY_EXHDR(type);
	char	   *sql;
	bool		found;

	if (len > EL_MAX_TYPE_BYTES)
		return el_read_upcaster(relid, type, from);
	memset(&key, 0, sizeof(key));
	key.relid = relid;
	key.from = from;
	memcpy(key.type, VARDATA_ANY(type), len);

	entry = hash_search(el_upcaster_cache(), &key, HASH_FIND, NULL);
	if (entry != NULL)
		return entry->sql ? pstrdup(entry->sql) : NULL;

	sql = el_read_upcaster(relid, type, from);

	/* the read may have made the cache stale: enter into the current one */
	entry = hash_search(el_upcaster_cache(), &key, HASH_ENTER, &found);
	entry->sql = sql ? MemoryContextStrdup(el_upcaster_cxt, sql) : NULL;
	return sql;
}

/*
 * The payload of an event recorded at `version`, taken step by step to
 * `latest` and checked against it.  A missing step, a step that fails or
 * returns null, and a result the latest version refuses are errors: the
 * old shape is never passed on as the new one.
 */
static Jsonb *
el_upcast_chain(Oid relid, text *type, Jsonb *payload, Jsonb *meta,
				int32 version, int32 latest)
{
	for (int32 from = version; from < latest; from++)
	{
		char	   *sql = el_upcaster(relid, type, from);

		if (sql == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_EL_SCHEMA_MISSING),
					 errmsg("event type \"%s\" of stream \"%s\" has no upcaster from version %d",
							text_to_cstring(type), el_qualified_name(relid), from),
					 errhint("Register one with event_log.register_upcaster().")));
		payload = el_upcast_step(relid, type, from, sql, JsonbPGetDatum(payload),
								 meta ? JsonbPGetDatum(meta) : (Datum) 0, meta == NULL);
	}
	{
		int32		got;

		/* the cached schema: nothing runs between this lookup and its use */
		el_upcast_require(relid, type, latest,
						  el_schema_require(relid, type, latest, &got), payload, "");
	}
	return payload;
}

/*
 * register_upcaster(stream regclass, type text, from_version integer,
 * expression text): the step from version from_version of the type to the
 * next.  Both versions must be registered.  The expression is checked on
 * every stored event of from_version (as recorded in its metadata): each
 * result must match the next version.
 */
Datum
el_register_upcaster(PG_FUNCTION_ARGS)
{
	Oid			relid;
	text	   *type;
	int32		from;
	char	   *expression;
	char	   *sql;
	ElSchema   *target;
	Portal		portal;
	Oid			types[4] = {REGCLASSOID, TEXTOID, INT4OID, TEXTOID};
	Datum		values[4];
	MemoryContext rowcxt;
	uint64		checked = 0;

	el_require_arg(fcinfo, 0, "stream");
	el_require_arg(fcinfo, 1, "type");
	el_require_arg(fcinfo, 2, "from_version");
	el_require_arg(fcinfo, 3, "expression");
	relid = PG_GETARG_OID(0);
	type = PG_GETARG_TEXT_PP(1);
	from = PG_GETARG_INT32(2);
	expression = text_to_cstring(PG_GETARG_TEXT_PP(3));
	el_schema_require_owner(relid);
	el_check_type(type);
	if (from < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("from_version must be positive")));

	/* one expression, nothing around it */
	sql = el_upcaster_sql(expression);
	el_parse_upcaster(sql);

	(void) el_lock_stream(relid, ShareRowExclusiveLock);
	{
		int32		got;

		(void) el_schema_require(relid, type, from, &got);
	}
	target = el_schema_private_copy(relid, type, from + 1);

	/* every stored event of from_version, upcast, must match the next version */
	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "event_log upcaster check",
								   ALLOCSET_DEFAULT_SIZES);
	values[0] = PointerGetDatum(type);
	values[1] = CStringGetTextDatum(psprintf("%d", from));
	SPI_connect();
	portal = SPI_cursor_open_with_args(NULL,
									   psprintf("SELECT shard, seq, payload, metadata FROM %s"
												" WHERE type OPERATOR(pg_catalog.=) $1"
												" AND (metadata OPERATOR(pg_catalog.->>) '%s') OPERATOR(pg_catalog.=) $2"
												" ORDER BY shard, seq",
												el_qualified_name(relid), EL_SCHEMA_VERSION_KEY),
									   2, (Oid[]) {TEXTOID, TEXTOID}, values, NULL, true, 0);
	for (;;)
	{
		SPITupleTable *rows;
		uint64		n;

		SPI_cursor_fetch(portal, true, 1000);
		rows = SPI_tuptable;
		n = SPI_processed;
		if (n == 0)
			break;
		for (uint64 i = 0; i < n; i++)
		{
			bool		isnull;
			bool		meta_null;
			Datum		payload;
			Datum		meta;
			int32		shard;
			int64		seq;
			MemoryContext old = MemoryContextSwitchTo(rowcxt);

			CHECK_FOR_INTERRUPTS();
			SPI_tuptable = rows;
			shard = DatumGetInt32(el_spi_value(i, 1, &isnull));
			seq = DatumGetInt64(el_spi_value(i, 2, &isnull));
			payload = el_spi_value(i, 3, &isnull);
			meta = el_spi_value(i, 4, &meta_null);
			el_upcast_require(relid, type, from + 1, target,
							  el_upcast_step(relid, type, from, sql, payload, meta, meta_null),
							  psprintf("The upcaster's result for the event at shard %d, seq " INT64_FORMAT ". ",
									   shard, seq));
			MemoryContextSwitchTo(old);
			MemoryContextReset(rowcxt);
			checked++;
		}
		SPI_freetuptable(rows);
	}
	SPI_cursor_close(portal);
	SPI_finish();
	MemoryContextDelete(rowcxt);

	/* no stored event: run it once, for its errors of name and type */
	if (checked == 0)
	{
		Oid			t[2] = {JSONBOID, JSONBOID};
		Datum		v[2] = {0, 0};
		char		nulls[2] = {'n', 'n'};

		SPI_connect();
		(void) el_query_as(el_rel_owner(relid), sql, 2, t, v, nulls, EL_CAT_READ, 1);
		SPI_finish();
	}

	values[0] = ObjectIdGetDatum(relid);
	values[1] = PointerGetDatum(type);
	values[2] = Int32GetDatum(from);
	values[3] = CStringGetTextDatum(expression);
	SPI_connect();
	(void) el_catalog_sql("INSERT INTO event_log.upcasters AS u"
						  " (stream, type, from_version, expression) VALUES ($1, $2, $3, $4)"
						  " ON CONFLICT (stream, type, from_version) DO UPDATE"
						  " SET expression = excluded.expression",
						  4, types, values, NULL, 0, 0);
	SPI_finish();
	/* readers' caches of upcasters (and of the stream) read it anew */
	CacheInvalidateRelcacheByRelid(relid);
	PG_RETURN_VOID();
}

/*
 * upcast(stream regclass, type text, payload jsonb, metadata jsonb)
 * RETURNS jsonb: the payload in the shape of the type's latest version,
 * from the version its metadata records.  A payload without a recorded
 * version (its type had no schema when it was appended), or already at
 * the latest, is returned as it is.  The caller must be able to read the
 * stream.
 */
Datum
el_upcast(PG_FUNCTION_ARGS)
{
	Oid			relid;
	text	   *type;
	Jsonb	   *payload;
	Jsonb	   *meta = NULL;
	int32		version;
	int32		latest;

	el_require_arg(fcinfo, 0, "stream");
	el_require_arg(fcinfo, 1, "type");
	if (PG_ARGISNULL(2))
		PG_RETURN_NULL();
	relid = PG_GETARG_OID(0);
	type = PG_GETARG_TEXT_PP(1);
	payload = PG_GETARG_JSONB_P(2);
	(void) el_require_stream(relid);
	el_check_type(type);
	if (pg_class_aclcheck(relid, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_TABLE, get_rel_name(relid));
	if (!PG_ARGISNULL(3))
		meta = PG_GETARG_JSONB_P(3);

	version = meta != NULL && JB_ROOT_IS_OBJECT(meta) ? el_schema_metadata_version(meta) : 0;
	if (version < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("metadata key \"%s\" must be a positive integer",
						EL_SCHEMA_VERSION_KEY)));
	if (version == 0)
		PG_RETURN_JSONB_P(payload);
	latest = el_schema_latest_version(relid, type);
	if (version >= latest)
		PG_RETURN_JSONB_P(payload);

	PG_RETURN_JSONB_P(el_upcast_chain(relid, type, payload, meta, version, latest));
}


/* ----------------------------------------------------------------
 * Upcasting on read: readers (event_log.upcast) and projections
 * ----------------------------------------------------------------
 */

/* Which event an upcast on read is working on, for the error context. */
typedef struct ElUpcastWhere
{
	const char *stream;
	int32		shard;
	int64		seq;
} ElUpcastWhere;

static void
el_upcast_context(void *arg)
{
	ElUpcastWhere *where = (ElUpcastWhere *) arg;

	errcontext("upcasting the event at shard %d, seq " INT64_FORMAT " of stream \"%s\"",
			   where->shard, where->seq, where->stream);
}

/*
 * An event's columns (EL_NATTS of them, in the stream's order), upcast in
 * place: payload in the shape of its type's latest version, and metadata's
 * schema_version saying so.  Returns false, touching nothing, when the
 * event is already at the latest version, recorded none (its type had no
 * schema when it was appended), or its stream has no schemas at all; these
 * cost a hash lookup, or that and reading one metadata key.  The new
 * values are allocated in the current memory context.
 */
void
el_upcast_memo_init(ElUpcastMemo *memo)
{
	memo->has_schemas = -1;
	memo->typelen = -1;
	memo->latest = 0;
}

bool
el_upcast_event(ElUpcastMemo *memo, Oid relid, Datum *values, bool *nulls)
{
	Jsonb	   *meta;
	text	   *type;
	int32		version;
	int32		latest;
	ElUpcastWhere where;
	ErrorContextCallback errcb;
	Jsonb	   *payload;
	Datum		stamp;

	if (nulls[Anum_el_metadata - 1] || nulls[Anum_el_type - 1] ||
		nulls[Anum_el_payload - 1])
		return false;
	if (memo == NULL ? !el_schema_stream_has_schemas(relid) :
		memo->has_schemas == 0)
		return false;
	if (memo != NULL && memo->has_schemas < 0)
	{
		memo->has_schemas = el_schema_stream_has_schemas(relid) ? 1 : 0;
		if (memo->has_schemas == 0)
			return false;
	}
	type = DatumGetTextPP(values[Anum_el_type - 1]);
	if (memo != NULL && memo->typelen == (int) VARSIZE_ANY_EXHDR(type) &&
		memcmp(memo->type, VARDATA_ANY(type), memo->typelen) == 0)
		latest = memo->latest;
	else
	{
		latest = el_schema_latest_version(relid, type);
		if (memo != NULL && VARSIZE_ANY_EXHDR(type) <= EL_MAX_TYPE_BYTES)
		{
			memo->typelen = VARSIZE_ANY_EXHDR(type);
			memcpy(memo->type, VARDATA_ANY(type), memo->typelen);
			memo->latest = latest;
		}
	}

	/*
	 * A type without a schema (or with one version only) has nothing to
	 * upcast to, whatever the metadata says, which is then not read: the
	 * append path does not read schema_version for types without a schema,
	 * so an appender could otherwise stop every upcasting reader of the
	 * stream with one event naming a version that is not a number.
	 */
	if (latest <= 1)
		return false;
	meta = DatumGetJsonbP(values[Anum_el_metadata - 1]);
	if (!JB_ROOT_IS_OBJECT(meta))
		return false;
	version = el_schema_metadata_version(meta);
	if (version == 0 || version >= latest)
		return false;

	where.stream = el_qualified_name(relid);
	where.shard = DatumGetInt32(values[Anum_el_shard - 1]);
	where.seq = DatumGetInt64(values[Anum_el_seq - 1]);
	errcb.callback = el_upcast_context;
	errcb.arg = &where;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	if (version < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("metadata key \"%s\" must be a positive integer",
						EL_SCHEMA_VERSION_KEY)));
	payload = el_upcast_chain(relid, type, DatumGetJsonbP(values[Anum_el_payload - 1]),
							  meta, version, latest);

	error_context_stack = errcb.previous;

	stamp = DirectFunctionCall1(jsonb_in,
								CStringGetDatum(psprintf("{\"%s\": %d}",
														 EL_SCHEMA_VERSION_KEY, latest)));
	values[Anum_el_payload - 1] = JsonbPGetDatum(payload);
	values[Anum_el_metadata - 1] = DirectFunctionCall2(jsonb_concat,
													   JsonbPGetDatum(meta), stamp);
	return true;
}

/*
 * A DestReceiver in front of another: each row (a stream's read plan, the
 * event's columns first) goes on upcast by el_upcast_event(), or as it
 * came.  Its rDestroy frees it alone, not the receiver behind it.
 */
typedef struct ElUpcastDest
{
	DestReceiver pub;
	DestReceiver *inner;
	Oid			relid;
	ElUpcastMemo memo;			/* across the rows of this read */
	TupleTableSlot *out;		/* the upcast row */
	MemoryContext rowcxt;		/* reset per row */
} ElUpcastDest;

static void
el_upcast_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
	ElUpcastDest *d = (ElUpcastDest *) self;

	if (typeinfo->natts < EL_NATTS)
		elog(ERROR, "a stream's read plan returns %d columns", typeinfo->natts);
	d->out = MakeSingleTupleTableSlot(typeinfo, &TTSOpsVirtual);
	d->inner->rStartup(d->inner, operation, typeinfo);
}

static bool
el_upcast_receive(TupleTableSlot *slot, DestReceiver *self)
{
	ElUpcastDest *d = (ElUpcastDest *) self;
	TupleTableSlot *out = d->out;
	int			natts = slot->tts_tupleDescriptor->natts;
	MemoryContext old;
	bool		sent;

	slot_getallattrs(slot);
	old = MemoryContextSwitchTo(d->rowcxt);
	ExecClearTuple(out);
	memcpy(out->tts_values, slot->tts_values, sizeof(Datum) * natts);
	memcpy(out->tts_isnull, slot->tts_isnull, sizeof(bool) * natts);
	if (el_upcast_event(&d->memo, d->relid, out->tts_values, out->tts_isnull))
	{
		ExecStoreVirtualTuple(out);
		slot = out;
	}
	sent = d->inner->receiveSlot(slot, d->inner);
	ExecClearTuple(out);
	MemoryContextSwitchTo(old);
	MemoryContextReset(d->rowcxt);
	return sent;
}

static void
el_upcast_shutdown(DestReceiver *self)
{
	ElUpcastDest *d = (ElUpcastDest *) self;

	d->inner->rShutdown(d->inner);
	if (d->out != NULL)
		ExecDropSingleTupleTableSlot(d->out);
	d->out = NULL;
}

static void
el_upcast_destroy(DestReceiver *self)
{
	ElUpcastDest *d = (ElUpcastDest *) self;

	MemoryContextDelete(d->rowcxt);
	pfree(d);
}

DestReceiver *
el_upcast_dest(Oid relid, DestReceiver *inner)
{
	ElUpcastDest *d = palloc0(sizeof(ElUpcastDest));

	d->pub.receiveSlot = el_upcast_receive;
	d->pub.rStartup = el_upcast_startup;
	d->pub.rShutdown = el_upcast_shutdown;
	d->pub.rDestroy = el_upcast_destroy;
	d->pub.mydest = inner->mydest;
	d->inner = inner;
	d->relid = relid;
	el_upcast_memo_init(&d->memo);
	d->rowcxt = AllocSetContextCreate(CurrentMemoryContext, "event_log upcast row",
									  ALLOCSET_DEFAULT_SIZES);
	return &d->pub;
}
