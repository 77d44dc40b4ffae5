/*
 * conversation.c
 *	  Conversations: the events of every stream that share a correlation_id
 *	  in their metadata (docs/conversations.md).  track_conversations()
 *	  gives a stream the index that finds them; conversation() returns one
 *	  conversation from the streams the caller may read, in order.  The
 *	  metadata itself is filled in from the session by the append trigger
 *	  (append.c).
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relation.h"
#include "access/table.h"
#include "catalog/pg_am.h"
#include "commands/defrem.h"
#include "executor/tstoreReceiver.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "archive.h"
#include "catalog.h"
#include "event_log.h"
#include "personal.h"
#include "read.h"
#include "registry.h"
#include "schema.h"

PG_FUNCTION_INFO_V1(el_track_conversations);
PG_FUNCTION_INFO_V1(el_conversation);

/*
 * Whether an index is one that conversation() can use: a btree on the
 * single expression metadata ->> 'correlation_id'.
 */
static bool
el_is_conversation_index(Oid indexoid)
{
	Relation	index = index_open(indexoid, AccessShareLock);
	bool		result = false;

	if (index->rd_rel->relam == BTREE_AM_OID &&
		index->rd_index->indnkeyatts == 1 &&
		index->rd_index->indkey.values[0] == 0 &&
		index->rd_index->indisvalid)
	{
		List	   *exprs = RelationGetIndexExpressions(index);
		Node	   *expr = linitial(exprs);

		if (IsA(expr, OpExpr) &&
			((OpExpr *) expr)->opfuncid == F_JSONB_OBJECT_FIELD_TEXT)
		{
			Node	   *left = linitial(((OpExpr *) expr)->args);
			Node	   *right = lsecond(((OpExpr *) expr)->args);

			result = IsA(left, Var) &&
				((Var *) left)->varattno == Anum_el_metadata &&
				IsA(right, Const) && !((Const *) right)->constisnull &&
				strcmp(TextDatumGetCString(((Const *) right)->constvalue),
					   "correlation_id") == 0;
		}
	}
	index_close(index, AccessShareLock);
	return result;
}

/* The stream's conversation index, or InvalidOid (also if it is gone). */
static Oid
el_conversation_index(Oid relid)
{
	Relation	rel = try_table_open(relid, AccessShareLock);
	List	   *indexes;
	ListCell   *lc;
	Oid			found = InvalidOid;

	if (rel == NULL)
		return InvalidOid;
	indexes = RelationGetIndexList(rel);
	foreach(lc, indexes)
	{
		if (el_is_conversation_index(lfirst_oid(lc)))
		{
			found = lfirst_oid(lc);
			break;
		}
	}
	list_free(indexes);
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * event_log.track_conversations(stream regclass) RETURNS regclass
 *
 * Index the stream's events by correlation_id, as the stream's owner would
 * with CREATE INDEX (the caller must own it), and return the index; an
 * index that serves already is returned as it is.  Partial: only events
 * with a correlation_id have an entry, so appends without one pay only for
 * testing the predicate.
 */
Datum
el_track_conversations(PG_FUNCTION_ARGS)
{
	Oid			relid;
	Oid			index;
	char	   *name;
	char	   *sql;

	el_require_arg(fcinfo, 0, "stream");
	relid = PG_GETARG_OID(0);
	(void) el_require_stream(relid);
	if (!pg_class_ownercheck(relid, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, OBJECT_TABLE, get_rel_name(relid));
	(void) el_lock_stream(relid, ShareLock);

	index = el_conversation_index(relid);
	if (OidIsValid(index))
		PG_RETURN_OID(index);

	name = ChooseRelationName(get_rel_name(relid), "correlation_id", "idx",
							  get_rel_namespace(relid), false);
	sql = psprintf("CREATE INDEX %s ON %s"
				   " ((metadata OPERATOR(pg_catalog.->>) 'correlation_id'::pg_catalog.text))"
				   " WHERE metadata OPERATOR(pg_catalog.?) 'correlation_id'::pg_catalog.text",
				   quote_identifier(name), el_qualified_name(relid));
	SPI_connect();

	/*
	 * A segmented stream's index is built on each segment, in schema
	 * event_log, where the owner may not create: the extension's owner
	 * builds it.  The text is ours; its expression and predicate are
	 * built-in operators (and PostgreSQL would run index expressions as the
	 * table's owner anyway).
	 */
	if (get_rel_relkind(relid) == RELKIND_PARTITIONED_TABLE)
		el_exec_as(el_catalog_owner(), InvalidOid, sql, false);
	else
		(void) el_exec_as_caller(sql, 0, NULL, NULL, false, 0);
	SPI_finish();

	index = el_conversation_index(relid);
	if (!OidIsValid(index))
		elog(ERROR, "conversation index on \"%s\" was not created",
			 el_qualified_name(relid));
	PG_RETURN_OID(index);
}

/* One event of a conversation, and what orders it. */
typedef struct ElConvRow
{
	int			stream;			/* index into the sorted stream names */
	int32		shard;
	int64		seq;
	TimestampTz key;			/* running max of recorded_at in its shard */
	HeapTuple	tuple;
} ElConvRow;

/* Order of a stream's rows by position, to compute their running keys. */
static int
el_conv_pos_cmp(const void *a, const void *b)
{
	const ElConvRow *x = a;
	const ElConvRow *y = b;

	if (x->shard != y->shard)
		return x->shard < y->shard ? -1 : 1;
	if (x->seq != y->seq)
		return x->seq < y->seq ? -1 : 1;
	return 0;
}

static int
el_conv_row_cmp(const void *a, const void *b)
{
	const ElConvRow *x = a;
	const ElConvRow *y = b;

	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	if (x->stream != y->stream)
		return x->stream < y->stream ? -1 : 1;
	return el_conv_pos_cmp(a, b);
}

/*
 * Append SPI_tuptable's events (of the stream numbered stream) to *rows,
 * copied into the query's memory, each keyed by its own recorded_at; the
 * caller makes the keys running maxima.  Frees SPI_tuptable.
 */
static void
el_conv_collect(ReturnSetInfo *rsinfo, ElConvRow **rows, int *nrows,
				int *maxrows, int stream)
{
	MemoryContext old = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		ElConvRow  *row;

		if (*nrows == *maxrows)
		{
			*maxrows = Max(64, *maxrows * 2);
			*rows = *rows ? repalloc_huge(*rows, sizeof(ElConvRow) * *maxrows)
				: palloc(sizeof(ElConvRow) * *maxrows);
		}
		row = &(*rows)[(*nrows)++];
		row->stream = stream;
		row->shard = DatumGetInt32(SPI_getbinval(tup, desc, Anum_el_shard, &isnull));
		row->seq = DatumGetInt64(SPI_getbinval(tup, desc, Anum_el_seq, &isnull));
		row->key = DatumGetTimestampTz(SPI_getbinval(tup, desc, Anum_el_recorded_at, &isnull));
		row->tuple = heap_copytuple(tup);
	}
	MemoryContextSwitchTo(old);
	SPI_freetuptable(SPI_tuptable);
}

/*
 * Whether the user may read the stream: USAGE on its schema, and SELECT on
 * the table or on every column.  Without the USAGE the search's own query
 * would fail (42501), and one such stream would fail every conversation()
 * without `streams` for that user.
 */
static bool
el_may_select(Oid relid)
{
	return pg_namespace_aclcheck(get_rel_namespace(relid), GetUserId(), ACL_USAGE) == ACLCHECK_OK &&
		el_can_select(relid);
}

static int
el_name_cmp(const ListCell *a, const ListCell *b)
{
	return strcmp(el_qualified_name(lfirst_oid(a)), el_qualified_name(lfirst_oid(b)));
}

/*
 * The streams to search: those given (each must be a stream the caller may
 * read), or every stream with a conversation index that the caller may read.
 * Sorted by qualified name, which orders ties between streams.
 */
static List *
el_conversation_streams(ArrayType *given)
{
	List	   *streams = NIL;

	if (given != NULL)
	{
		Datum	   *elems;
		bool	   *nulls;
		int			n;

		if (ARR_NDIM(given) > 1)
			ereport(ERROR,
					(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
					 errmsg("streams must be a one-dimensional array")));
		deconstruct_array(given, REGCLASSOID, sizeof(Oid), true, TYPALIGN_INT,
						  &elems, &nulls, &n);
		for (int i = 0; i < n; i++)
		{
			Oid			relid;

			if (nulls[i])
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("streams must not contain nulls")));
			relid = DatumGetObjectId(elems[i]);
			(void) el_require_stream(relid);
			el_check_select(relid);
			streams = list_append_unique_oid(streams, relid);
		}
	}
	else
	{
		List	   *all = el_registry_streams();
		ListCell   *lc;

		foreach(lc, all)
		{
			Oid			relid = lfirst_oid(lc);

			if (SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid)) &&
				el_may_select(relid) &&
				OidIsValid(el_conversation_index(relid)))
				streams = lappend_oid(streams, relid);
		}
	}
	list_sort(streams, el_name_cmp);
	return streams;
}

/*
 * event_log.conversation(correlation_id text, streams regclass[] DEFAULT NULL)
 *		RETURNS TABLE (stream regclass, shard int, seq bigint, ...)
 *
 * The events whose metadata has this correlation_id, from the given streams
 * or from every stream with a conversation index that the caller may read,
 * each read as the caller (privileges and row-level security apply).  In
 * order of recorded_at, made monotonic per shard by a running maximum so
 * each shard's events (and so each key's) stay in seq order; ties by stream
 * name, shard and seq.
 */
Datum
el_conversation(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	text	   *id;
	List	   *streams;
	ListCell   *lc;
	Tuplestorestate *store;
	ElConvRow  *rows = NULL;
	int			nrows = 0;
	int			maxrows = 0;
	int			nstream = 0;
	Oid		   *oids;
	ElReveal  **reveal;
	Datum		id_datum;
	TupleDesc	evdesc = NULL;
	bool		upcast = el_upcast_reads;
	MemoryContext row_cxt = NULL;
	int			first;

	el_require_arg(fcinfo, 0, "correlation_id");
	id = PG_GETARG_TEXT_PP(0);
	id_datum = PointerGetDatum(id);
	if (VARSIZE_ANY_EXHDR(id) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("correlation_id must not be empty")));
	if (VARSIZE_ANY_EXHDR(id) > EL_MAX_CONVERSATION_ID_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("correlation_id is too long"),
				 errdetail("Correlation ids are limited to %d bytes; this one has %d.",
						   EL_MAX_CONVERSATION_ID_BYTES, (int) VARSIZE_ANY_EXHDR(id))));

	streams = el_conversation_streams(PG_ARGISNULL(1) ? NULL : PG_GETARG_ARRAYTYPE_P(1));
	store = el_result_store(fcinfo, true);
	oids = palloc(sizeof(Oid) * Max(list_length(streams), 1));
	reveal = palloc0(sizeof(ElReveal *) * Max(list_length(streams), 1));

	SPI_connect();
	foreach(lc, streams)
	{
		Oid			relid = lfirst_oid(lc);
		int32		shard = -1;
		TimestampTz running = 0;
		MemoryContext old;

		/* With row_security off, refuse rather than show what it hides. */
		(void) check_enable_rls(relid, InvalidOid, false);
		(void) el_lock_stream(relid, AccessShareLock);

		/* personal fields as the caller may see them, as read() shows them */
		old = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
		reveal[nstream] = el_personal_reveal_begin(relid);
		MemoryContextSwitchTo(old);
		(void) el_exec_plan(relid, EL_PLAN_CONVERSATION, &id_datum, NULL, 0);

		oids[nstream] = relid;
		if (evdesc == NULL)
		{
			old = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
			evdesc = CreateTupleDescCopy(SPI_tuptable->tupdesc);
			MemoryContextSwitchTo(old);
		}
		first = nrows;
		el_conv_collect(rsinfo, &rows, &nrows, &maxrows, nstream);
		/* The events retention removed: from the archive, or EL040. */
		if (el_stream_has_watermarks(relid))
		{
			bool		removed;
			int64		low;
			int32		lost = el_archive_uncovered(relid, GetActiveSnapshot(), &removed, &low);

			if (lost >= 0)
				ereport(ERROR,
						(errcode(ERRCODE_EL_OUT_OF_RANGE),
						 errmsg("events of conversation \"%s\" may have been removed from event stream \"%s\"",
								text_to_cstring(id), el_qualified_name(relid)),
						 errdetail("Shard %d's low watermark is %lld: its earlier events were removed by the stream's retention policy, and its archive does not hold them all.",
								   lost, (long long) low),
						 errhint("Leave the stream out with streams => ..., or import its archive with event_log.import_archive().")));
			if (removed)
			{
				el_check_archive_reader(relid);
				(void) el_archive_search(relid, true, id_datum);
				el_conv_collect(rsinfo, &rows, &nrows, &maxrows, nstream);
			}
		}

		/*
		 * The stream's rows in (shard, seq) order (archived ones come before
		 * the log's), then recorded_at made a running maximum per shard.
		 */
		if (nrows - first > 1)
			qsort(rows + first, nrows - first, sizeof(ElConvRow), el_conv_pos_cmp);
		for (int i = first; i < nrows; i++)
		{
			if (rows[i].shard != shard || rows[i].key > running)
				running = rows[i].key;
			shard = rows[i].shard;
			rows[i].key = running;
		}
		nstream++;
	}
	SPI_finish();

	if (nrows > 1)
		qsort(rows, nrows, sizeof(ElConvRow), el_conv_row_cmp);
	/*
	 * Each event's personal fields revealed as the caller may see them, then,
	 * under event_log.upcast, the event in its type's newest shape, as read()
	 * does; what that allocates is freed row by row.
	 */
	row_cxt = AllocSetContextCreate(CurrentMemoryContext, "event_log conversation row",
									ALLOCSET_DEFAULT_SIZES);
	for (int i = 0; i < nrows; i++)
	{
		Datum		values[EL_NATTS + 1];
		bool		nulls[EL_NATTS + 1];
		TupleDesc	desc = rsinfo->setDesc;
		ElReveal   *rv = reveal[rows[i].stream];
		MemoryContext old = MemoryContextSwitchTo(row_cxt);

		values[0] = ObjectIdGetDatum(oids[rows[i].stream]);
		nulls[0] = false;
		heap_deform_tuple(rows[i].tuple, evdesc, values + 1, nulls + 1);
		if (rv != NULL && !nulls[Anum_el_payload])
			values[Anum_el_payload] = el_personal_reveal(rv, values[Anum_el_payload]);
		if (upcast)
			(void) el_upcast_event(NULL, oids[rows[i].stream], values + 1, nulls + 1);
		tuplestore_putvalues(store, desc, values, nulls);
		MemoryContextSwitchTo(old);
		MemoryContextReset(row_cxt);
	}
	return (Datum) 0;
}
