/*
 * decoder.c
 *	  The `event_log` logical decoding output plugin: one JSON object per
 *	  committed event, written as its own message, so memory stays flat
 *	  whatever the size of the transaction.  Changes to other tables, and
 *	  anything but inserts, produce nothing.
 *
 *	  Whether a relation is a stream is read from event_log.streams, a
 *	  user_catalog_table, under the historic snapshot, and cached per
 *	  relation by stream.c (flushed by relcache invalidations, which decoding
 *	  replays in WAL order).
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "mb/pg_wchar.h"
#include "replication/logical.h"
#include "replication/output_plugin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/rel.h"
#include "utils/uuid.h"
#include "utils/varlena.h"

#include "event_log.h"

extern void _PG_output_plugin_init(OutputPluginCallbacks *cb);

typedef struct ElDecoderData
{
	MemoryContext context;		/* reset after every change */
	bool		include_transaction;
	List	   *stream_oids;	/* option "streams"; NIL = every stream */
	List	   *types;			/* option "types"; NIL = every type */
} ElDecoderData;

/* Per transaction: how many events it emitted so far. */
typedef struct ElTxnData
{
	int64		events;
} ElTxnData;

static bool
el_parse_bool_option(DefElem *elem)
{
	bool		result;

	if (elem->arg == NULL)
		return true;			/* a bare option name means true */
	if (!parse_bool(strVal(elem->arg), &result))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("could not parse value \"%s\" for parameter \"%s\"",
						strVal(elem->arg), elem->defname),
				 errhint("Use true or false.")));
	return result;
}

static List *
el_split_list_option(DefElem *elem)
{
	char	   *raw;
	List	   *items;

	if (elem->arg == NULL || strVal(elem->arg)[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("parameter \"%s\" needs a value", elem->defname)));
	raw = pstrdup(strVal(elem->arg));
	if (!SplitGUCList(raw, ',', &items))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("could not parse value \"%s\" for parameter \"%s\"",
						strVal(elem->arg), elem->defname)));
	return items;
}

/*
 * Resolve the "streams" option now, so that a misspelt name is an error
 * instead of a silently empty feed.  Names must be schema-qualified.
 */
static List *
el_resolve_streams(DefElem *elem)
{
	List	   *names = el_split_list_option(elem);
	List	   *oids = NIL;
	ListCell   *lc;
	bool		started = false;

	if (!IsTransactionState())
	{
		StartTransactionCommand();
		started = true;
	}
	foreach(lc, names)
	{
		char	   *name = (char *) lfirst(lc);
		List	   *qualified = stringToQualifiedNameList(name);
		Oid			relid;

		if (list_length(qualified) != 2)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("stream name \"%s\" in parameter \"streams\" must be schema-qualified",
							name)));
		relid = RangeVarGetRelid(makeRangeVarFromNameList(qualified), NoLock, true);
		if (!OidIsValid(relid))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_TABLE),
					 errmsg("event stream \"%s\" does not exist", name),
					 errhint("Streams are listed in event_log.streams.")));
		if (el_registry_shards(relid) < 1)
			ereport(ERROR,
					(errcode(ERRCODE_WRONG_OBJECT_TYPE),
					 errmsg("\"%s\" is not an event stream", name)));
		oids = lappend_oid(oids, relid);
	}
	if (started)
		CommitTransactionCommand();
	return oids;
}

static void
el_decoder_startup(LogicalDecodingContext *ctx, OutputPluginOptions *opt,
				   bool is_init)
{
	ElDecoderData *data = palloc0(sizeof(ElDecoderData));
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
			data->include_transaction = el_parse_bool_option(elem);
		else if (strcmp(elem->defname, "streams") == 0)
		{
			/* Slot creation passes no options; nothing to resolve then. */
			if (!is_init)
				data->stream_oids = el_resolve_streams(elem);
		}
		else if (strcmp(elem->defname, "types") == 0)
			data->types = el_split_list_option(elem);
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("option \"%s\" is unknown to the event_log output plugin",
							elem->defname),
					 errhint("Known options: streams, types, include-transaction.")));
	}
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
	if (data->stream_oids != NIL && !list_member_oid(data->stream_oids, relid))
		return;
	if (el_stream_shards(relid) < 1 || desc->natts < EL_NATTS)
		return;

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
	escape_json(out, quote_qualified_identifier(get_namespace_name(RelationGetNamespace(relation)),
												RelationGetRelationName(relation)));
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
