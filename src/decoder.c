/*
 * decoder.c
 *	  The `event_log` logical decoding output plugin: one JSON object per
 *	  committed event, written as its own message, so memory stays flat
 *	  whatever the size of the transaction.  Changes to other tables, and
 *	  anything but inserts, produce nothing.
 *
 *	  Whether a relation is a stream is read from event_log.streams, a
 *	  user_catalog_table, under the historic snapshot, and cached per
 *	  relation by registry.c (flushed by relcache invalidations, which decoding
 *	  replays in WAL order).
 *
 *	  Options are read in the startup callback, which runs inside the
 *	  caller's transaction for SQL and outside any transaction in a
 *	  walsender; el_resolve_streams() says what that means for memory.
 */
#include "postgres.h"

#include "catalog/partition.h"

#include "catalog/namespace.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "parser/scansup.h"
#include "replication/logical.h"
#include "replication/output_plugin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/uuid.h"
#include "utils/varlena.h"

#include "catalog.h"
#include "event_log.h"
#include "immutable.h"
#include "personal.h"
#include "registry.h"

extern void _PG_output_plugin_init(OutputPluginCallbacks *cb);

typedef struct ElDecoderData
{
	MemoryContext context;		/* reset after every change */
	bool		include_transaction;
	Oid		   *stream_oids;	/* option "streams", sorted; NULL = every
								 * stream */
	int			nstream_oids;
	List	   *types;			/* option "types"; NIL = every type */
} ElDecoderData;

/* Per transaction: how many events it emitted so far. */
typedef struct ElTxnData
{
	int64		events;
} ElTxnData;

/*
 * The option's value as a C string, or NULL when it has none: a bare option
 * over the replication protocol ("include-transaction" without a value) has
 * no argument at all.
 */
static const char *
el_option_value(DefElem *elem)
{
	if (elem->arg == NULL)
		return NULL;
	return strVal(elem->arg);
}

static bool
el_parse_bool_option(DefElem *elem)
{
	const char *value = el_option_value(elem);
	bool		result;

	if (value == NULL)
		return true;			/* a bare option name means true */
	if (!parse_bool(value, &result))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("could not parse value \"%s\" for parameter \"%s\"",
						value, elem->defname),
				 errhint("Use true or false.")));
	return result;
}

static const char *
el_required_value(DefElem *elem)
{
	const char *value = el_option_value(elem);

	if (value == NULL || value[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("parameter \"%s\" needs a value", elem->defname)));
	return value;
}

static List *
el_split_list_option(DefElem *elem)
{
	const char *value = el_required_value(elem);
	char	   *raw = pstrdup(value);
	List	   *items;

	if (!SplitGUCList(raw, ',', &items))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("could not parse value \"%s\" for parameter \"%s\"",
						value, elem->defname)));
	return items;
}

static void el_bad_name_list(DefElem *elem, const char *value,
							 const char *detail) pg_attribute_noreturn();

static void
el_bad_name_list(DefElem *elem, const char *value, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("could not parse value \"%s\" for parameter \"%s\"",
					value, elem->defname),
			 errdetail_internal("%s", detail),
			 errhint("Separate schema-qualified names with commas, and double-quote a name as in SQL when it holds upper case, commas, dots or spaces, such as app.\"Cart Events\".")));
}

/*
 * Split the value of the "streams" option into its names, each returned as
 * written (a qualified name, maybe with double-quoted parts), without the
 * blanks around it.  A comma separates names unless it is inside double
 * quotes.  The parts themselves are read afterwards by el_parse_name(), the
 * reader create_stream() uses, so a name means here what it meant there.
 * This only finds where each name ends, following the same grammar: a part
 * is double-quoted ("" stands for one quote) or runs to the next dot, comma
 * or blank.
 */
static List *
el_split_name_list(DefElem *elem)
{
	const char *value = el_required_value(elem);
	const char *p = value;
	List	   *items = NIL;

	for (;;)
	{
		const char *start;
		const char *end;

		while (scanner_isspace(*p))
			p++;
		start = p;
		for (;;)
		{
			while (scanner_isspace(*p))
				p++;
			if (*p == '"')
			{
				for (p++; *p; p++)
				{
					if (*p == '"')
					{
						if (p[1] != '"')
							break;
						p++;
					}
				}
				if (*p != '"')
					el_bad_name_list(elem, value,
									 "A double-quoted name is not closed.");
				p++;
			}
			else
			{
				while (*p && *p != '.' && *p != ',' && !scanner_isspace(*p))
					p++;
			}
			end = p;
			while (scanner_isspace(*p))
				p++;
			if (*p != '.')
				break;
			p++;
		}
		if (end == start)
			el_bad_name_list(elem, value, "The list contains an empty name.");
		items = lappend(items, pnstrdup(start, end - start));
		if (*p == '\0')
			break;
		if (*p != ',')
			el_bad_name_list(elem, value,
							 "Two names are separated by something other than a comma.");
		p++;
	}
	return items;
}

/*
 * Resolve the "streams" option to the OIDs of the streams it names, so that
 * a misspelt name is an error instead of a silently empty feed.  Fills
 * data->stream_oids, sorted, allocated in the current memory context.
 *
 * Each name is read by el_parse_name(), as create_stream() reads it, and
 * must be schema-qualified: it is looked up in the catalog directly, never
 * through search_path, so the feed is the same whoever consumes it and
 * whatever their session settings.  No privilege is checked: a role that
 * may use a replication slot reads every stream through it anyway.
 *
 * Over the replication protocol (walsender) no transaction is open when the
 * startup callback runs, so the catalog is read in one of our own.  Its
 * commit frees everything allocated while it was open, and leaves
 * CurrentMemoryContext at TopMemoryContext and no resource owner: the
 * result is therefore allocated before the transaction starts, and the
 * caller's context and resource owner are restored after it ends.  (The
 * result once lived in the transaction's memory: the walsender then
 * filtered against freed memory and sent nothing, while SQL callers, whose
 * transaction was already open, got the right events.)
 *
 * No lock is taken on the named tables: a stream dropped right after this
 * only means its OID matches nothing written afterwards.
 */
static void
el_resolve_streams(ElDecoderData *data, DefElem *elem)
{
	List	   *items = el_split_name_list(elem);
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	bool		own_xact = !IsTransactionState();
	Oid		   *oids;
	int			n = 0;
	ListCell   *lc;

	oids = palloc(sizeof(Oid) * list_length(items));

	if (own_xact)
		StartTransactionCommand();
	foreach(lc, items)
	{
		const char *item = lfirst(lc);
		List	   *parts = el_parse_name(item, "stream");
		const char *schema;
		const char *relname;
		Oid			nspid;
		Oid			relid;

		if (list_length(parts) == 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("stream name \"%s\" in parameter \"streams\" must be schema-qualified",
							item),
					 errdetail("Names in this option are not looked up through search_path."),
					 errhint("Write it as schema.table, such as public.carts.")));
		if (list_length(parts) == 3)
		{
			char	   *dbname = get_database_name(MyDatabaseId);

			if (dbname == NULL || strcmp(strVal(linitial(parts)), dbname) != 0)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cross-database references are not implemented: \"%s\"",
								item)));
			parts = list_delete_first(parts);
		}
		schema = strVal(linitial(parts));
		relname = strVal(lsecond(parts));

		nspid = get_namespace_oid(schema, true);
		if (!OidIsValid(nspid))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_SCHEMA),
					 errmsg("schema \"%s\" does not exist", schema),
					 errdetail("Parameter \"streams\" names \"%s\".", item)));
		relid = get_relname_relid(relname, nspid);
		if (!OidIsValid(relid))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_TABLE),
					 errmsg("event stream \"%s.%s\" does not exist", schema, relname),
					 errdetail("Parameter \"streams\" names \"%s\".", item),
					 errhint("Streams are listed in event_log.streams.")));
		if (el_registry_shards(relid) < 1)
			ereport(ERROR,
					(errcode(ERRCODE_WRONG_OBJECT_TYPE),
					 errmsg("\"%s.%s\" is not an event stream", schema, relname),
					 errdetail("Parameter \"streams\" names \"%s\".", item),
					 errhint("Streams are listed in event_log.streams.")));
		oids[n++] = relid;
	}
	if (own_xact)
	{
		CommitTransactionCommand();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}

	qsort(oids, n, sizeof(Oid), oid_cmp);
	data->stream_oids = oids;
	data->nstream_oids = n;
}

/*
 * A stream's name as the output carries it: schema-qualified, each part
 * quoted as SQL needs it.  The same whatever the session's
 * quote_all_identifiers (a role may set it, in a walsender too): a consumer
 * matches on this name.
 */
static char *
el_output_name(Oid nspid, const char *relname, Oid relid)
{
	bool		saved = quote_all_identifiers;
	char	   *nspname = get_namespace_name(nspid);
	char	   *name;

	if (relname == NULL || nspname == NULL)
		return psprintf("%u", relid);
	quote_all_identifiers = false;
	name = quote_qualified_identifier(nspname, relname);
	quote_all_identifiers = saved;
	return name;
}

static bool
el_stream_wanted(ElDecoderData *data, Oid relid)
{
	if (data->stream_oids == NULL)
		return true;
	return bsearch(&relid, data->stream_oids, data->nstream_oids,
				   sizeof(Oid), oid_cmp) != NULL;
}

/* Refuse an option given twice, as CREATE and COPY do. */
static void
el_option_once(DefElem *elem, bool *seen)
{
	if (*seen)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("conflicting or redundant options"),
				 errdetail("Parameter \"%s\" is given more than once.",
						   elem->defname)));
	*seen = true;
}

static void
el_decoder_startup(LogicalDecodingContext *ctx, OutputPluginOptions *opt,
				   bool is_init)
{
	ElDecoderData *data = palloc0(sizeof(ElDecoderData));
	DefElem    *streams = NULL;
	bool		seen_transaction = false;
	bool		seen_streams = false;
	bool		seen_types = false;
	ListCell   *lc;

	data->context = AllocSetContextCreate(ctx->context,
										  "event_log decoder per-change context",
										  ALLOCSET_DEFAULT_SIZES);
	opt->output_type = OUTPUT_PLUGIN_TEXTUAL_OUTPUT;
	opt->receive_rewrites = false;
	ctx->output_plugin_private = data;

	foreach(lc, ctx->output_plugin_options)
	{
		DefElem    *elem = lfirst(lc);

		if (strcmp(elem->defname, "include-transaction") == 0)
		{
			el_option_once(elem, &seen_transaction);
			data->include_transaction = el_parse_bool_option(elem);
		}
		else if (strcmp(elem->defname, "streams") == 0)
		{
			el_option_once(elem, &seen_streams);
			streams = elem;
		}
		else if (strcmp(elem->defname, "types") == 0)
		{
			el_option_once(elem, &seen_types);
			data->types = el_split_list_option(elem);
		}
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("option \"%s\" is unknown to the event_log output plugin",
							elem->defname),
					 errhint("Known options: streams, types, include-transaction.")));
	}

	/*
	 * Resolved last, after every option was checked.  Slot creation passes
	 * no options; nothing to resolve then.
	 */
	if (streams && !is_init)
		el_resolve_streams(data, streams);
}

static void
el_decoder_shutdown(LogicalDecodingContext *ctx)
{
	ElDecoderData *data = ctx->output_plugin_private;

	MemoryContextDelete(data->context);
}

static void
el_decoder_begin(LogicalDecodingContext *ctx, ReorderBufferTXN *txn)
{
	txn->output_plugin_private =
		MemoryContextAllocZero(ctx->context, sizeof(ElTxnData));
}

static void
el_append_lsn(StringInfo out, XLogRecPtr lsn)
{
	appendStringInfo(out, "\"%X/%X\"", LSN_FORMAT_ARGS(lsn));
}

static void
el_append_timestamptz(StringInfo out, TimestampTz ts)
{
	char		buf[MAXDATELEN + 1];
	const int	utc = 0;

	appendStringInfoChar(out, '"');
	appendStringInfoString(out, JsonEncodeDateTime(buf, TimestampTzGetDatum(ts),
												   TIMESTAMPTZOID, &utc));
	appendStringInfoChar(out, '"');
}

/* Emit {"begin": ...} before a transaction's first event. */
static void
el_emit_begin(LogicalDecodingContext *ctx, ReorderBufferTXN *txn)
{
	OutputPluginPrepareWrite(ctx, false);
	appendStringInfo(ctx->out, "{\"begin\":%u,\"commit_lsn\":", txn->xid);
	el_append_lsn(ctx->out, txn->final_lsn);
	appendStringInfoString(ctx->out, ",\"commit_time\":");
	el_append_timestamptz(ctx->out, txn->xact_time.commit_time);
	appendStringInfoChar(ctx->out, '}');
	OutputPluginWrite(ctx, false);
}

static void
el_decoder_commit(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
				  XLogRecPtr commit_lsn)
{
	ElDecoderData *data = ctx->output_plugin_private;
	ElTxnData  *txndata = txn->output_plugin_private;
	int64		events = txndata ? txndata->events : 0;

	if (txndata)
		pfree(txndata);
	txn->output_plugin_private = NULL;

	if (!data->include_transaction || events == 0)
		return;

	OutputPluginPrepareWrite(ctx, true);
	appendStringInfo(ctx->out, "{\"commit\":%u,\"commit_lsn\":", txn->xid);
	el_append_lsn(ctx->out, commit_lsn);
	appendStringInfo(ctx->out, ",\"events\":" INT64_FORMAT ",\"commit_time\":",
					 events);
	el_append_timestamptz(ctx->out, txn->xact_time.commit_time);
	appendStringInfoChar(ctx->out, '}');
	OutputPluginWrite(ctx, true);
}

static bool
el_type_wanted(ElDecoderData *data, text *type)
{
	ListCell   *lc;
	int			len = VARSIZE_ANY_EXHDR(type);

	if (data->types == NIL)
		return true;
	foreach(lc, data->types)
	{
		const char *want = lfirst(lc);

		if ((int) strlen(want) == len && memcmp(want, VARDATA_ANY(type), len) == 0)
			return true;
	}
	return false;
}

static void
el_append_json_text(StringInfo out, Datum d)
{
	escape_json(out, TextDatumGetCString(d));
}

/*
 * Refuse to read a relation as a stream unless its first columns are the
 * contract columns, with their types: the tuple is deformed and its values
 * used as those types, and anything else (a text where an int4 is expected)
 * would crash the server.  The registry and the guards keep streams in this
 * shape; the check stops a registry that says otherwise, such as a look-alike
 * event_log.streams created by a role in a database without the extension.
 * An error, not a skip: the slot stops at the change until someone looks.
 */
static void
el_check_stream_shape(Relation relation, TupleDesc desc)
{
	if (el_has_event_columns(desc))
		return;
	for (int i = 0; i < EL_NATTS; i++)
	{
		Form_pg_attribute att;

		if (i < desc->natts)
		{
			att = TupleDescAttr(desc, i);
			if (!att->attisdropped && att->atttypid == el_columns[i].type)
				continue;
		}
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("relation \"%s.%s\" is registered as an event stream but lacks its columns",
						get_namespace_name(RelationGetNamespace(relation)),
						RelationGetRelationName(relation)),
				 errdetail("Column %d must be \"%s\" of type %s.",
						   i + 1, el_columns[i].name,
						   format_type_be(el_columns[i].type))));
	}
}

/*
 * An erasure: erase_subject() inserts its audit row into event_log.erasures
 * in the erasing transaction, and that insert is emitted, in its place
 * among the events, as {"erasure": {"stream", "subject", "erased_at"}} for
 * consumers that asked for the stream.  Only the extension's code writes
 * that table (nobody else has INSERT on it), so nobody can forge the line.
 * A logical decoding message would not do: pg_logical_emit_message() is
 * open to every role.  Returns whether the change was the audit's.
 */
static bool
el_decoder_erasure(LogicalDecodingContext *ctx, Relation relation,
				   ReorderBufferChange *change)
{
	ElDecoderData *data = ctx->output_plugin_private;
	TupleDesc	desc = RelationGetDescr(relation);
	Datum		values[3];
	bool		isnull[3];
	Oid			stream;
	MemoryContext old;

	if (strcmp(RelationGetRelationName(relation), "erasures") != 0 ||
		RelationGetNamespace(relation) != get_namespace_oid("event_log", true))
		return false;
	if (desc->natts < 3 ||
		TupleDescAttr(desc, 0)->atttypid != REGCLASSOID ||
		TupleDescAttr(desc, 1)->atttypid != TEXTOID ||
		TupleDescAttr(desc, 2)->atttypid != TIMESTAMPTZOID)
		elog(ERROR, "event_log.erasures lacks its columns");

	old = MemoryContextSwitchTo(data->context);
	for (int i = 0; i < 3; i++)
		values[i] = heap_getattr(&change->data.tp.newtuple->tuple, i + 1, desc, &isnull[i]);
	if (isnull[0] || isnull[1] || isnull[2])
		elog(ERROR, "event_log.erasures has a null column");
	stream = DatumGetObjectId(values[0]);
	if (el_stream_wanted(data, stream))
	{
		OutputPluginPrepareWrite(ctx, true);
		appendStringInfoString(ctx->out, "{\"erasure\":{\"stream\":");
		escape_json(ctx->out, el_output_name(get_rel_namespace(stream), get_rel_name(stream), stream));
		appendStringInfoString(ctx->out, ",\"subject\":");
		el_append_json_text(ctx->out, values[1]);
		appendStringInfoString(ctx->out, ",\"erased_at\":");
		el_append_timestamptz(ctx->out, DatumGetTimestampTz(values[2]));
		appendStringInfoString(ctx->out, "}}");
		OutputPluginWrite(ctx, true);
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(data->context);
	return true;
}

static void
el_decoder_change(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
				  Relation relation, ReorderBufferChange *change)
{
	ElDecoderData *data = ctx->output_plugin_private;
	ElTxnData  *txndata = txn->output_plugin_private;
	Oid			relid = RelationGetRelid(relation);
	TupleDesc	desc = RelationGetDescr(relation);
	HeapTuple	tuple;
	Datum	   *values;
	bool	   *isnull;
	MemoryContext old;
	StringInfo	out;
	char		uuid[UUID_LEN * 2 + 5];

	if (change->action != REORDER_BUFFER_CHANGE_INSERT ||
		change->data.tp.newtuple == NULL)
		return;
	if (el_decoder_erasure(ctx, relation, change))
		return;
	/* A segment's rows are its stream's (segment.c). */
	if (relation->rd_rel->relispartition)
	{
		static Oid	last_segment = InvalidOid;
		static Oid	last_stream = InvalidOid;

		if (relid != last_segment)
		{
			last_stream = get_partition_parent(relid, true);
			last_segment = relid;
		}
		relid = last_stream;
		if (!OidIsValid(relid))
			return;
	}
	if (!el_stream_wanted(data, relid))
		return;
	if (el_stream_shards(relid) < 1)
		return;
	el_check_stream_shape(relation, desc);

	old = MemoryContextSwitchTo(data->context);

	/* Deform once: columns after the first varlena have no cached offset. */
	tuple = &change->data.tp.newtuple->tuple;
	values = palloc(desc->natts * sizeof(Datum));
	isnull = palloc(desc->natts * sizeof(bool));
	heap_deform_tuple(tuple, desc, values, isnull);
	if (isnull[Anum_el_shard - 1] || isnull[Anum_el_seq - 1] ||
		isnull[Anum_el_key - 1] || isnull[Anum_el_version - 1] ||
		isnull[Anum_el_type - 1] || isnull[Anum_el_payload - 1] ||
		isnull[Anum_el_event_id - 1] || isnull[Anum_el_recorded_at - 1])
		elog(ERROR, "event in \"%s\" has a null contract column",
			 RelationGetRelationName(relation));

	if (!el_type_wanted(data, DatumGetTextPP(values[Anum_el_type - 1])))
	{
		MemoryContextSwitchTo(old);
		MemoryContextReset(data->context);
		return;
	}

	if (data->include_transaction && txndata && txndata->events == 0)
		el_emit_begin(ctx, txn);
	if (txndata)
		txndata->events++;

	OutputPluginPrepareWrite(ctx, true);
	out = ctx->out;
	appendStringInfoString(out, "{\"stream\":");
	if (relid == RelationGetRelid(relation))
		escape_json(out, el_output_name(RelationGetNamespace(relation),
										RelationGetRelationName(relation), relid));
	else
		escape_json(out, el_output_name(get_rel_namespace(relid), get_rel_name(relid), relid));
	appendStringInfo(out, ",\"shard\":%d,\"seq\":" INT64_FORMAT ",\"key\":",
					 DatumGetInt32(values[Anum_el_shard - 1]),
					 DatumGetInt64(values[Anum_el_seq - 1]));
	el_append_json_text(out, values[Anum_el_key - 1]);
	appendStringInfo(out, ",\"version\":" INT64_FORMAT ",\"type\":",
					 DatumGetInt64(values[Anum_el_version - 1]));
	el_append_json_text(out, values[Anum_el_type - 1]);

	/* The uuid's bytes, in the canonical 8-4-4-4-12 form. */
	{
		pg_uuid_t  *u = DatumGetUUIDP(values[Anum_el_event_id - 1]);
		static const char hex[] = "0123456789abcdef";
		int			j = 0;

		for (int i = 0; i < UUID_LEN; i++)
		{
			if (i == 4 || i == 6 || i == 8 || i == 10)
				uuid[j++] = '-';
			uuid[j++] = hex[u->data[i] >> 4];
			uuid[j++] = hex[u->data[i] & 0x0f];
		}
		uuid[j] = '\0';
	}
	appendStringInfo(out, ",\"event_id\":\"%s\",\"recorded_at\":", uuid);
	el_append_timestamptz(out, DatumGetTimestampTz(values[Anum_el_recorded_at - 1]));

	appendStringInfoString(out, ",\"payload\":");
	{
		Jsonb	   *jb = DatumGetJsonbP(values[Anum_el_payload - 1]);

		(void) JsonbToCString(out, &jb->root, VARSIZE(jb));
	}
	appendStringInfoString(out, ",\"metadata\":");
	if (isnull[Anum_el_metadata - 1])
		appendStringInfoString(out, "null");
	else
	{
		Jsonb	   *jb = DatumGetJsonbP(values[Anum_el_metadata - 1]);

		(void) JsonbToCString(out, &jb->root, VARSIZE(jb));
	}

	appendStringInfoString(out, ",\"lsn\":");
	el_append_lsn(out, change->lsn);
	appendStringInfo(out, ",\"xid\":%u,\"commit_lsn\":", txn->xid);
	el_append_lsn(out, txn->final_lsn);
	appendStringInfoString(out, ",\"commit_time\":");
	el_append_timestamptz(out, txn->xact_time.commit_time);
	appendStringInfoChar(out, '}');
	OutputPluginWrite(ctx, true);

	MemoryContextSwitchTo(old);
	MemoryContextReset(data->context);
}

void
_PG_output_plugin_init(OutputPluginCallbacks *cb)
{
	cb->startup_cb = el_decoder_startup;
	cb->begin_cb = el_decoder_begin;
	cb->change_cb = el_decoder_change;
	cb->commit_cb = el_decoder_commit;
	cb->shutdown_cb = el_decoder_shutdown;

	/*
	 * No prepare callbacks: without two-phase decoding a prepared transaction
	 * is decoded once, at COMMIT PREPARED.  No streaming callbacks either:
	 * in-progress transactions are never sent, only committed events.
	 */
}
