/*-------------------------------------------------------------------------
 *
 * archive.c
 *	  The archive: events retention removed, kept compressed, readable in
 *	  (shard, seq) order, exported to files and imported back.
 *
 *	  When a stream's policy says archive => true, enforce_retention()
 *	  copies each prefix it removes into event_log.archive before removing
 *	  it (retention.c), in the same transaction.  The archive holds chunks
 *	  of up to EL_ARCHIVE_CHUNK consecutive events of one shard, as JSON
 *	  lines (one event per line, the nine columns), with the SHA-256 of the
 *	  chunk's text.  The text is compressed by TOAST, which for event JSON
 *	  takes it to a fraction of what the same events cost in the stream
 *	  with its four indexes (docs/performance.md).  Payloads are archived
 *	  as stored: personal fields stay encrypted, so erasing a subject
 *	  erases it from the archive too.
 *
 *	  Only this file's code writes the archive.  read_archive() reads it
 *	  for whoever may read the stream (not when row-level security applies
 *	  to the caller: the archive cannot apply the stream's policies),
 *	  revealing personal fields as read() does; it never skips: a seq the
 *	  archive does not hold is EL040.  export_archive() writes the chunks as
 *	  a file of JSON lines with a header before each chunk and a trailer
 *	  that sums them up; import_archive() checks every chunk's SHA-256,
 *	  the continuity of its seqs and the trailer, and adds only what the
 *	  archive lacks and the log no longer holds: it never replaces an
 *	  archived chunk nor duplicates an event still in the log.
 *
 * Copyright (c) 2026, event_log authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"

#include "archive.h"
#include "catalog.h"
#include "event_log.h"
#include "personal.h"
#include "read.h"
#include "registry.h"
#include "schema.h"

PG_FUNCTION_INFO_V1(el_read_archive);
PG_FUNCTION_INFO_V1(el_export_archive);
PG_FUNCTION_INFO_V1(el_import_archive);
PG_FUNCTION_INFO_V1(el_drop_archive);

#define EL_ARCHIVE_CHUNK	1000	/* events per chunk */
#define EL_ARCHIVE_FORMAT	1		/* the export file's format version */

/*
 * Copy the events from..to of a shard into the archive, in chunks.  The
 * caller (retention.c) removes them afterwards in the same transaction and
 * is connected to SPI.  Runs as the catalog's owner, so that nothing of
 * the stream owner's (row-level security, its functions) decides what is
 * read.  The events are read with the latest snapshot: the caller chose
 * them with one taken under the stream's lock, and the calling
 * transaction's own snapshot (a REPEATABLE READ one, or a statement's that
 * waited for the lock) may predate some of them; every event of the range
 * must be copied, or removing it would lose it, so a copy that comes out
 * short is an error.
 */
void
el_archive_range(Oid relid, int32 shard, int64 from, int64 to)
{
	el_archive_range_from(relid, relid, shard, from, to);
}

/*
 * The same, reading the events from source: the stream itself, or one of
 * its segments (retention of a segmented stream archives a segment before
 * dropping it).
 */
void
el_archive_range_from(Oid relid, Oid source, int32 shard, int64 from, int64 to)
{
	Datum		values[4];
	char	   *sql;
	uint64		chunks;
	int64		copied = 0;

	sql = psprintf("INSERT INTO event_log.archive"
				   " (stream, shard, first_seq, last_seq, events, first_recorded_at,"
				   "  last_recorded_at, checksum, data)"
				   " SELECT $1, $2, pg_catalog.min(seq), pg_catalog.max(seq), pg_catalog.count(*),"
				   " pg_catalog.min(recorded_at), pg_catalog.max(recorded_at),"
				   " pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to("
				   "   pg_catalog.string_agg(line, E'\\n' ORDER BY seq), 'UTF8')), 'hex'),"
				   " pg_catalog.string_agg(line, E'\\n' ORDER BY seq)"
				   " FROM (SELECT e.seq, e.recorded_at, pg_catalog.to_jsonb(e)::pg_catalog.text AS line,"
				   "  (e.seq OPERATOR(pg_catalog.-) $3) OPERATOR(pg_catalog./) %d AS chunk"
				   "  FROM (SELECT shard, seq, key, version, type, payload, metadata, event_id, recorded_at"
				   "   FROM ONLY %s WHERE shard OPERATOR(pg_catalog.=) $2"
				   "   AND seq OPERATOR(pg_catalog.>=) $3 AND seq OPERATOR(pg_catalog.<=) $4) e) c"
				   " GROUP BY chunk RETURNING events",
				   EL_ARCHIVE_CHUNK, el_qualified_name(source));
	values[0] = ObjectIdGetDatum(relid);
	values[1] = Int32GetDatum(shard);
	values[2] = Int64GetDatum(from);
	values[3] = Int64GetDatum(to);
	chunks = el_catalog_sql(sql, 4, (Oid[]) {REGCLASSOID, INT4OID, INT8OID, INT8OID},
							values, NULL, EL_CAT_LATEST, 0);
	for (uint64 i = 0; i < chunks; i++)
	{
		bool		isnull;

		copied += DatumGetInt32(el_spi_value(i, 1, &isnull));
	}
	if (copied != to - from + 1)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("archiving events %lld to %lld of shard %d of event stream \"%s\" copied %lld of them",
						(long long) from, (long long) to, shard, el_qualified_name(relid),
						(long long) copied),
				 errdetail("Nothing was removed.")));
}

/*
 * Up to limit archived events of a shard after after, in chunk and line
 * order (seq order, where the archive has no gap), as rows of the nine
 * columns in SPI_tuptable.  The caller is connected to SPI, has checked
 * the reader, and checks that the seqs follow each other.
 */
uint64
el_archive_fetch(Oid relid, int32 shard, int64 after, int64 limit)
{
	Datum		args[4];

	args[0] = ObjectIdGetDatum(relid);
	args[1] = Int32GetDatum(shard);
	args[2] = Int64GetDatum(after);
	args[3] = Int64GetDatum(limit);
	return el_catalog_sql("SELECT (pg_catalog.jsonb_populate_record(NULL::event_log.event, l.line::pg_catalog.jsonb)).*"
						  " FROM (SELECT first_seq, data FROM event_log.archive"
						  "  WHERE stream OPERATOR(pg_catalog.=) $1 AND shard OPERATOR(pg_catalog.=) $2"
						  "  AND last_seq OPERATOR(pg_catalog.>) $3) a,"
						  " LATERAL pg_catalog.string_to_table(a.data, E'\\n') WITH ORDINALITY l(line, n)"
						  " WHERE ((l.line::pg_catalog.jsonb OPERATOR(pg_catalog.->>) 'seq')::pg_catalog.int8)"
						  "  OPERATOR(pg_catalog.>) $3"
						  " ORDER BY a.first_seq, l.n LIMIT $4",
						  4, (Oid[]) {REGCLASSOID, INT4OID, INT8OID, INT8OID}, args, NULL,
						  EL_CAT_READ, 0);
}

/* The error for a seq the archive lacks. */
void
el_archive_missing(Oid relid, int32 shard, int64 seq)
{
	ereport(ERROR,
			(errcode(ERRCODE_EL_OUT_OF_RANGE),
			 errmsg("the archive of event stream \"%s\" has no event with seq %lld in shard %d",
					el_qualified_name(relid), (long long) seq, shard),
			 errdetail("The event was removed by retention without being archived, or its archive was not imported."),
			 errhint("Import it with event_log.import_archive(), or read from the next seq the archive holds.")));
}

/* Refuse a catalog older than 0.5, which has no archive. */
void
el_require_archive_catalog(void)
{
	if (!OidIsValid(get_relname_relid("archive", el_schema_oid())))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the event_log catalog of this database predates the archive"),
				 errhint("Run ALTER EXTENSION event_log UPDATE.")));
}

/* Refuse a caller who may not read the stream, or to whom RLS applies. */
void
el_check_archive_reader(Oid relid)
{
	el_check_select(relid);
	if (check_enable_rls(relid, InvalidOid, true) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot read the archive of event stream \"%s\"",
						el_qualified_name(relid)),
				 errdetail("Row-level security applies to you on the stream, and archived events are read without it."),
				 errhint("Read the archive as a role that bypasses the stream's row-level security.")));
}

/*
 * event_log.read_archive(stream regclass, shard int, after_seq bigint
 *						  DEFAULT 0, max_count int DEFAULT 1000)
 *		RETURNS SETOF event_log.event
 *
 * Up to max_count archived events of the shard after after_seq, in seq
 * order, without a gap: a seq the archive lacks is an error, unless the
 * log holds it (then the result ends, and read() goes on from there).
 */
Datum
el_read_archive(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			relid;
	int32		shard;
	int64		after;
	int32		max_count;
	Tuplestorestate *store;
	ElReveal   *reveal;
	uint64		n;
	int64		expect;
	int64		low;

	(void) el_shard_read_args(fcinfo, &relid, &shard, &after, &max_count);
	el_require_archive_catalog();
	el_check_archive_reader(relid);
	(void) el_lock_stream(relid, AccessShareLock);

	store = el_result_store(fcinfo, true);
	reveal = el_personal_reveal_begin(relid);
	low = el_low_watermark(relid, shard, GetActiveSnapshot());
	if (max_count == 0 || after >= low - 1)
		return (Datum) 0;

	SPI_connect();
	n = el_archive_fetch(relid, shard, after, Min((int64) max_count, low - 1 - after));
	expect = after + 1;
	for (uint64 i = 0; i < n; i++)
	{
		Datum		values[EL_NATTS];
		bool		nulls[EL_NATTS];

		heap_deform_tuple(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, values, nulls);
		if (nulls[Anum_el_seq - 1] || DatumGetInt64(values[Anum_el_seq - 1]) != expect)
			break;
		if (reveal != NULL && !nulls[Anum_el_payload - 1])
			values[Anum_el_payload - 1] = el_personal_reveal(reveal, values[Anum_el_payload - 1]);
		tuplestore_putvalues(store, rsinfo->setDesc, values, nulls);
		expect++;
	}
	SPI_finish();
	if (expect <= Min(after + (int64) max_count, low - 1))
		el_archive_missing(relid, shard, expect);
	return (Datum) 0;
}

/*
 * event_log.export_archive(stream regclass, shard int DEFAULT NULL)
 *		RETURNS SETOF text
 *
 * The archive of a stream (or of one shard) as lines of a file: a header,
 * then each chunk as a line describing it followed by its events, then a
 * trailer with the number of chunks and events and the SHA-256 of the
 * chunks' checksums in order.  docs/retention.md has the format.
 */
Datum
el_export_archive(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			relid;
	int			shards;
	Tuplestorestate *store;
	Datum		args[2];
	char		nulls[2] = {' ', ' '};
	uint64		n;
	int64		events = 0;
	StringInfoData sums;
	bool		isnull;

	el_require_arg(fcinfo, 0, "stream");
	relid = PG_GETARG_OID(0);
	shards = el_require_stream(relid);
	if (!PG_ARGISNULL(1))
		el_check_shard(relid, shards, PG_GETARG_INT32(1));
	el_require_archive_catalog();
	el_check_archive_reader(relid);
	(void) el_lock_stream(relid, AccessShareLock);
	{
		/* A set of text: a one-column descriptor of our own. */
		MemoryContext old;
		TupleDesc	desc;

		if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) ||
			!(rsinfo->allowedModes & SFRM_Materialize))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("materialize mode required, but it is not allowed in this context")));
		old = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
		desc = CreateTemplateTupleDesc(1);
		TupleDescInitEntry(desc, 1, "line", TEXTOID, -1, 0);
		store = tuplestore_begin_heap(true, false, work_mem);
		rsinfo->returnMode = SFRM_Materialize;
		rsinfo->setResult = store;
		rsinfo->setDesc = desc;
		MemoryContextSwitchTo(old);
	}

	SPI_connect();
	args[0] = ObjectIdGetDatum(relid);
	args[1] = PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1);
	nulls[1] = PG_ARGISNULL(1) ? 'n' : ' ';
	n = el_catalog_sql("SELECT shard, first_seq, last_seq, events, checksum, data,"
					   " pg_catalog.jsonb_build_object('shard', shard, 'first_seq', first_seq,"
					   "  'last_seq', last_seq, 'events', events, 'sha256', checksum)::pg_catalog.text"
					   " FROM event_log.archive WHERE stream OPERATOR(pg_catalog.=) $1"
					   " AND ($2 IS NULL OR shard OPERATOR(pg_catalog.=) $2)"
					   " ORDER BY shard, first_seq",
					   2, (Oid[]) {REGCLASSOID, INT4OID}, args, nulls, EL_CAT_READ, 0);

	{
		/* The name is quoted as an identifier, then escaped as a JSON string. */
		StringInfoData buf;
		Datum		d;
		bool		nonull = false;

		initStringInfo(&buf);
		appendStringInfo(&buf, "{\"event_log_archive\": %d, \"stream\": ", EL_ARCHIVE_FORMAT);
		escape_json(&buf, el_qualified_name(relid));
		appendStringInfo(&buf, ", \"shards\": %d}", shards);
		d = CStringGetTextDatum(buf.data);
		tuplestore_putvalues(store, rsinfo->setDesc, &d, &nonull);
	}
	initStringInfo(&sums);
	for (uint64 i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *data = TextDatumGetCString(SPI_getbinval(tup, desc, 6, &isnull));
		char	   *line = data;
		char	   *meta = SPI_getvalue(tup, desc, 7);
		StringInfoData buf;
		Datum		d;
		bool		nonull = false;

		initStringInfo(&buf);
		appendStringInfo(&buf, "{\"chunk\": %s}", meta);
		d = CStringGetTextDatum(buf.data);
		tuplestore_putvalues(store, rsinfo->setDesc, &d, &nonull);
		appendStringInfoString(&sums, SPI_getvalue(tup, desc, 5));
		events += DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull));
		for (;;)
		{
			char	   *nl = strchr(line, '\n');

			if (nl != NULL)
				*nl = '\0';
			d = CStringGetTextDatum(line);
			tuplestore_putvalues(store, rsinfo->setDesc, &d, &nonull);
			if (nl == NULL)
				break;
			line = nl + 1;
		}
		pfree(data);
	}
	{
		StringInfoData buf;
		Datum		d;
		bool		nonull = false;

		initStringInfo(&buf);
		appendStringInfo(&buf, "{\"end\": {\"chunks\": %llu, \"events\": %lld, \"sha256\": \"%s\"}}",
						 (unsigned long long) n, (long long) events, el_sha256_hex(sums.data, sums.len));
		d = CStringGetTextDatum(buf.data);
		tuplestore_putvalues(store, rsinfo->setDesc, &d, &nonull);
	}
	SPI_finish();
	return (Datum) 0;
}

/* The SHA-256 of len bytes, as 64 hex digits. */
char *
el_sha256_hex(const char *data, size_t len)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	char	   *hex = palloc(PG_SHA256_DIGEST_LENGTH * 2 + 1);

	if (pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) data, len) < 0 ||
		pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
		elog(ERROR, "could not compute a SHA-256 digest: %s", pg_cryptohash_error(ctx));
	pg_cryptohash_free(ctx);
	for (int i = 0; i < PG_SHA256_DIGEST_LENGTH; i++)
		sprintf(hex + 2 * i, "%02x", digest[i]);
	return hex;
}

/*
 * el_catalog_sql() on the lines of a file being imported: a line that is
 * not what the statement expects (not JSON, a field of the wrong type)
 * is reported as a bad file, naming the line, rather than with the
 * internal statement as its context.  Errors of other classes (a cancel)
 * go through as they are.
 */
typedef struct ElImportCall
{
	const char *sql;
	int			nargs;
	const Oid  *types;
	Datum	   *values;
	int			flags;
	long		tcount;
	uint64		n;
} ElImportCall;

static void
el_import_call(void *arg)
{
	ElImportCall *call = (ElImportCall *) arg;

	call->n = el_catalog_sql(call->sql, call->nargs, call->types, call->values,
							 NULL, call->flags, call->tcount);
}

static uint64
el_import_sql(int lineno, const char *sql, int nargs, const Oid *types,
			  Datum *values, int flags, long tcount)
{
	ElImportCall call = {sql, nargs, types, values, flags, tcount, 0};
	ErrorData  *e = el_try_subxact(el_import_call, &call);

	if (e == NULL)
		return call.n;
	if (ERRCODE_TO_CATEGORY(e->sqlerrcode) != ERRCODE_DATA_EXCEPTION)
		ReThrowError(e);
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("invalid archive file: line %d: %s", lineno, e->message),
			 e->detail ? errdetail_internal("%s", e->detail) : 0));
	return 0;					/* keep the compiler quiet */
}

/* One line of an import, as jsonb fields read by SQL; NULL if it is not one. */
static bool
el_import_meta(int lineno, const char *line, const char *kind, int64 *fields,
			   int nfields, char **sha)
{
	static const char *names[] = {"shard", "first_seq", "last_seq", "events", "chunks"};
	Datum		args[2];
	bool		isnull;
	uint64		n;

	args[0] = CStringGetTextDatum(line);
	args[1] = CStringGetTextDatum(kind);
	n = el_import_sql(lineno, "SELECT m OPERATOR(pg_catalog.->>) 'shard', m OPERATOR(pg_catalog.->>) 'first_seq',"
					   " m OPERATOR(pg_catalog.->>) 'last_seq', m OPERATOR(pg_catalog.->>) 'events',"
					   " m OPERATOR(pg_catalog.->>) 'chunks', m OPERATOR(pg_catalog.->>) 'sha256'"
					   " FROM (SELECT ($1::pg_catalog.jsonb) OPERATOR(pg_catalog.->) $2 AS m) x"
					  " WHERE pg_catalog.jsonb_typeof(m) OPERATOR(pg_catalog.=) 'object'",
					  2, (Oid[]) {TEXTOID, TEXTOID}, args, EL_CAT_READ, 1);
	if (n == 0)
		return false;
	for (int i = 0; i < nfields; i++)
	{
		const char *name = kind[0] == 'c' ? names[i] : names[3 + i];
		int			col = kind[0] == 'c' ? i + 1 : 4 + i;
		char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col);

		if (v == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid archive file: \"%s\" line without \"%s\"", kind, name)));
		fields[i] = DatumGetInt64(DirectFunctionCall1(int8in, CStringGetDatum(v)));
	}
	(void) isnull;
	*sha = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 6);
	if (*sha == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid archive file: \"%s\" line without \"sha256\"", kind)));
	return true;
}

/*
 * event_log.import_archive(stream regclass, data text)
 *		RETURNS TABLE (imported_chunks int, imported_events bigint,
 *					   skipped_chunks int)
 *
 * Add the chunks of an exported archive file to the stream's archive.
 * Everything is checked before anything is added (all or nothing): the
 * header's format and shard count, each chunk's SHA-256 and that its lines
 * are its events, consecutive, of its shard; the trailer's counts and
 * checksum.  A chunk the archive already holds identically is skipped; one
 * that overlaps a different archived chunk, or events still in the log, is
 * refused.  Only the stream's owner imports.
 */
Datum
el_import_archive(PG_FUNCTION_ARGS)
{
	Oid			relid;
	int			shards;
	char	   *data;
	char	   *line;
	char	   *next;
	int			lineno = 1;
	int64		nchunks = 0;
	int64		nevents = 0;
	int32		imported = 0,
				skipped = 0;
	int64		imported_events = 0;
	StringInfoData sums;
	Datum		args[2];
	uint64		n;
	bool		ended = false;
	TupleDesc	desc;
	Datum		result[3];
	bool		rnulls[3] = {false, false, false};

	el_require_arg(fcinfo, 0, "stream");
	el_require_arg(fcinfo, 1, "data");
	relid = PG_GETARG_OID(0);
	shards = el_require_stream(relid);
	el_require_archive_catalog();
	if (!pg_class_ownercheck(relid, GetUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to import into the archive of event stream \"%s\"",
						el_qualified_name(relid)),
				 errdetail("Only the stream's owner may do this.")));
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	/* Imports and enforcements of a stream one at a time. */
	(void) el_lock_stream(relid, ShareUpdateExclusiveLock);

	data = text_to_cstring(PG_GETARG_TEXT_PP(1));
	SPI_connect();

	/* The header. */
	next = strchr(data, '\n');
	if (next != NULL)
		*next++ = '\0';
	args[0] = CStringGetTextDatum(data);
	n = el_import_sql(1, "SELECT (h OPERATOR(pg_catalog.->>) 'event_log_archive')::pg_catalog.int4,"
					   " (h OPERATOR(pg_catalog.->>) 'shards')::pg_catalog.int4"
					   " FROM (SELECT $1::pg_catalog.jsonb AS h) x"
					  " WHERE pg_catalog.jsonb_typeof(h) OPERATOR(pg_catalog.=) 'object'",
					  1, (Oid[]) {TEXTOID}, args, EL_CAT_READ, 1);
	if (n == 0 || SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1) == NULL ||
		strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1), "1") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid archive file: the first line is not an event_log archive header of format %d",
						EL_ARCHIVE_FORMAT)));
	{
		char	   *s = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);

		if (s == NULL || atoi(s) != shards)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("archive file of a stream with %s shards cannot be imported into event stream \"%s\", which has %d",
							s ? s : "an unknown number of", el_qualified_name(relid), shards)));
	}

	initStringInfo(&sums);
	while (next != NULL && *next != '\0')
	{
		int64		meta[4];
		char	   *sha;
		char	   *chunk;
		int64		low;
		int			chunk_line;
		Datum		cargs[7];

		line = next;
		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		lineno++;
		if (*line == '\0')
			continue;
		if (ended)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid archive file: line %d follows the trailer", lineno)));
		if (el_import_meta(lineno, line, "end", meta, 2, &sha))
		{
			/* meta: events, chunks */
			if (meta[1] != nchunks || meta[0] != nevents ||
				strcmp(sha, el_sha256_hex(sums.data, sums.len)) != 0)
				ereport(ERROR,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("archive file does not match its trailer"),
						 errdetail("The trailer counts %lld chunks and %lld events; the file holds %lld and %lld, or their checksums differ.",
								   (long long) meta[1], (long long) meta[0],
								   (long long) nchunks, (long long) nevents)));
			ended = true;
			continue;
		}
		if (!el_import_meta(lineno, line, "chunk", meta, 4, &sha))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid archive file: line %d is neither a chunk header nor the trailer", lineno)));
		if (meta[0] < 0 || meta[0] >= shards || meta[1] < 1 || meta[2] < meta[1] ||
			meta[3] != meta[2] - meta[1] + 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid archive file: the chunk header on line %d is inconsistent", lineno)));

		/* The chunk's events: its next meta[3] lines, exactly. */
		chunk = next;
		chunk_line = lineno + 1;
		for (int64 i = 0; i < meta[3]; i++)
		{
			if (next == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("archive file ends inside the chunk of shard %lld from seq %lld",
								(long long) meta[0], (long long) meta[1])));
			next = strchr(next, '\n');
			lineno++;
			if (next != NULL && i + 1 < meta[3])
				next++;
		}
		if (next != NULL)
			*next++ = '\0';
		if (strcmp(sha, el_sha256_hex(chunk, strlen(chunk))) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("archive file: the chunk of shard %lld from seq %lld does not match its checksum",
							(long long) meta[0], (long long) meta[1])));
		appendStringInfoString(&sums, sha);
		nchunks++;
		nevents += meta[3];

		/* Only what the log no longer holds. */
		low = el_low_watermark(relid, (int32) meta[0], GetLatestSnapshot());
		if (meta[2] >= low)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("archive file holds events of shard %lld from seq %lld, which are still in event stream \"%s\"",
							(long long) meta[0], (long long) Max(meta[1], low), el_qualified_name(relid)),
					 errdetail("The shard's low watermark is %lld: only events before it can be imported.",
							   (long long) low)));

		cargs[0] = ObjectIdGetDatum(relid);
		cargs[1] = Int32GetDatum((int32) meta[0]);
		cargs[2] = Int64GetDatum(meta[1]);
		cargs[3] = Int64GetDatum(meta[2]);
		cargs[4] = CStringGetTextDatum(sha);
		n = el_catalog_sql("SELECT first_seq OPERATOR(pg_catalog.=) $3 AND last_seq OPERATOR(pg_catalog.=) $4"
						   " AND checksum OPERATOR(pg_catalog.=) $5"
						   " FROM event_log.archive WHERE stream OPERATOR(pg_catalog.=) $1"
						   " AND shard OPERATOR(pg_catalog.=) $2 AND first_seq OPERATOR(pg_catalog.<=) $4"
						   " AND last_seq OPERATOR(pg_catalog.>=) $3",
						   5, (Oid[]) {REGCLASSOID, INT4OID, INT8OID, INT8OID, TEXTOID},
						   cargs, NULL, EL_CAT_READ | EL_CAT_LATEST, 2);
		if (n > 0)
		{
			bool		isnull;

			if (n == 1 && DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
			{
				skipped++;
				continue;
			}
			ereport(ERROR,
					(errcode(ERRCODE_UNIQUE_VIOLATION),
					 errmsg("archive file: the chunk of shard %lld from seq %lld overlaps a different chunk already archived",
							(long long) meta[0], (long long) meta[1])));
		}
		cargs[4] = Int64GetDatum(meta[3]);
		cargs[5] = CStringGetTextDatum(sha);
		cargs[6] = CStringGetTextDatum(chunk);
		n = el_import_sql(chunk_line, "INSERT INTO event_log.archive (stream, shard, first_seq, last_seq, events,"
						   " first_recorded_at, last_recorded_at, checksum, data)"
						   " SELECT $1, $2, $3, $4, $5, pg_catalog.min(e.recorded_at),"
						   " pg_catalog.max(e.recorded_at), $6, $7"
						   " FROM pg_catalog.string_to_table($7, E'\\n') l,"
						   " LATERAL pg_catalog.jsonb_populate_record(NULL::event_log.event, l::pg_catalog.jsonb) e"
						   " HAVING pg_catalog.count(*) OPERATOR(pg_catalog.=) $5"
						   " AND pg_catalog.count(DISTINCT e.seq) OPERATOR(pg_catalog.=) $5"
						   " AND pg_catalog.min(e.seq) OPERATOR(pg_catalog.=) $3"
						   " AND pg_catalog.max(e.seq) OPERATOR(pg_catalog.=) $4"
						   " AND pg_catalog.bool_and(e.shard IS NOT DISTINCT FROM $2"
						   "  AND e.key IS NOT NULL AND e.version IS NOT NULL AND e.type IS NOT NULL"
						   "  AND e.payload IS NOT NULL AND e.event_id IS NOT NULL AND e.recorded_at IS NOT NULL)",
						  7, (Oid[]) {REGCLASSOID, INT4OID, INT8OID, INT8OID, INT8OID, TEXTOID, TEXTOID},
						  cargs, 0, 0);
		if (n != 1)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("archive file: the chunk of shard %lld from seq %lld is not its %lld consecutive events",
							(long long) meta[0], (long long) meta[1], (long long) meta[3])));
		imported++;
		imported_events += meta[3];
	}
	if (!ended)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("archive file has no trailer"),
				 errdetail("The file is truncated: its last line must be the {\"end\": ...} trailer.")));
	SPI_finish();

	result[0] = Int32GetDatum(imported);
	result[1] = Int64GetDatum(imported_events);
	result[2] = Int32GetDatum(skipped);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), result, rnulls)));
}

/*
 * event_log.drop_archive(stream regclass, shard int, through_seq bigint)
 *		RETURNS bigint
 *
 * Remove the archived chunks of a shard that end at or before through_seq
 * (whole chunks only), once they are exported and kept elsewhere.  Only
 * the stream's owner; returns the number of events dropped.  Reads of
 * what was dropped then fail with EL040 until it is imported again.
 */
Datum
el_drop_archive(PG_FUNCTION_ARGS)
{
	Oid			relid;
	int			shards;
	Datum		args[3];
	uint64		n;
	int64		dropped = 0;

	el_require_arg(fcinfo, 0, "stream");
	el_require_arg(fcinfo, 1, "shard");
	el_require_arg(fcinfo, 2, "through_seq");
	relid = PG_GETARG_OID(0);
	shards = el_require_stream(relid);
	el_check_shard(relid, shards, PG_GETARG_INT32(1));
	el_require_archive_catalog();
	if (!pg_class_ownercheck(relid, GetUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to drop the archive of event stream \"%s\"",
						el_qualified_name(relid)),
				 errdetail("Only the stream's owner may do this.")));
	(void) el_lock_stream(relid, ShareUpdateExclusiveLock);
	SPI_connect();
	args[0] = ObjectIdGetDatum(relid);
	args[1] = PG_GETARG_DATUM(1);
	args[2] = PG_GETARG_DATUM(2);
	n = el_catalog_sql("DELETE FROM event_log.archive WHERE stream OPERATOR(pg_catalog.=) $1"
					   " AND shard OPERATOR(pg_catalog.=) $2 AND last_seq OPERATOR(pg_catalog.<=) $3"
					   " RETURNING events",
					   3, (Oid[]) {REGCLASSOID, INT4OID, INT8OID}, args, NULL, 0, 0);
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;

		dropped += DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
	}
	SPI_finish();
	PG_RETURN_INT64(dropped);
}

/* Whether the text Datum t is one of the types in the text[] types. */
static bool
el_type_in(Datum t, Datum *items, int n)
{
	for (int i = 0; i < n; i++)
		if (VARSIZE_ANY_EXHDR(items[i]) == VARSIZE_ANY_EXHDR(t) &&
			memcmp(VARDATA_ANY(items[i]), VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t)) == 0)
			return true;
	return false;
}

/*
 * For poll() of a group that reads the archive (offset_reset 'archive'):
 * up to max_count archived events of a shard after after (and before the
 * watermark low), of the given types ((Datum) 0: every type), sent to dest
 * as read() sends the log's: personal fields revealed as the caller may
 * see them, upcast under event_log.upcast.  A seq the archive lacks is
 * EL040.  *last gets the last seq looked at (events of other types
 * included).  Returns how many were sent.  The caller is connected to SPI
 * and has checked SELECT on the stream.
 */
uint64
el_archive_read_shard(Oid relid, int32 shard, int64 after, int64 max_count,
					  int64 low, Datum types, DestReceiver *dest, int64 *last)
{
	DestReceiver *upcast = NULL;
	DestReceiver *out;
	Datum	   *items = NULL;
	int			nitems = 0;
	uint64		sent = 0;
	bool		started = false;

	el_check_archive_reader(relid);
	if (types != (Datum) 0)
		deconstruct_array(DatumGetArrayTypeP(types), TEXTOID, -1, false,
						  TYPALIGN_INT, &items, NULL, &nitems);
	if (el_upcast_reads)
		dest = upcast = el_upcast_dest(relid, dest);
	out = el_personal_reveal_dest(relid, dest);
	*last = after;
	while ((int64) sent < max_count && *last < low - 1)
	{
		uint64		got = el_archive_fetch(relid, shard, *last,
										   Min(EL_ARCHIVE_CHUNK, low - 1 - *last));
		SPITupleTable *rows = SPI_tuptable;
		TupleTableSlot *slot;

		if (got == 0)
			break;
		slot = MakeSingleTupleTableSlot(rows->tupdesc, &TTSOpsHeapTuple);
		if (!started)
		{
			out->rStartup(out, CMD_SELECT, rows->tupdesc);
			started = true;
		}
		for (uint64 i = 0; i < got && (int64) sent < max_count; i++)
		{
			bool		isnull;
			Datum		seq = SPI_getbinval(rows->vals[i], rows->tupdesc, Anum_el_seq, &isnull);

			if (isnull || DatumGetInt64(seq) != *last + 1)
				el_archive_missing(relid, shard, *last + 1);
			*last += 1;
			if (nitems > 0 &&
				!el_type_in(SPI_getbinval(rows->vals[i], rows->tupdesc, Anum_el_type, &isnull),
							items, nitems))
				continue;
			ExecStoreHeapTuple(rows->vals[i], slot, false);
			(void) out->receiveSlot(slot, out);
			sent++;
		}
		ExecDropSingleTupleTableSlot(slot);
		SPI_freetuptable(rows);
	}
	if (started)
		out->rShutdown(out);
	if (out != dest)
		out->rDestroy(out);
	if (upcast != NULL)
		upcast->rDestroy(upcast);
	if ((int64) sent < max_count && *last < low - 1)
		el_archive_missing(relid, shard, *last + 1);
	return sent;
}

/* The events of the archive's chunks a, one row e each, for a WHERE clause. */
#define EL_ARCHIVED_EVENTS \
	"SELECT e.* FROM event_log.archive a," \
	" LATERAL pg_catalog.string_to_table(a.data, E'\\n') l," \
	" LATERAL pg_catalog.jsonb_populate_record(NULL::event_log.event, l::pg_catalog.jsonb) e"

/*
 * Put an archived event into a reader's result as read() returns rows:
 * personal fields revealed as the caller may see them (reveal, from
 * el_personal_reveal_begin()), upcast under event_log.upcast.
 */
static void
el_archive_put(Oid relid, ElReveal *reveal, ElUpcastMemo *memo, HeapTuple tuple,
			   TupleDesc tupdesc, Tuplestorestate *store, TupleDesc desc)
{
	Datum		values[EL_NATTS];
	bool		nulls[EL_NATTS];

	heap_deform_tuple(tuple, tupdesc, values, nulls);
	if (reveal != NULL && !nulls[Anum_el_payload - 1])
		values[Anum_el_payload - 1] = el_personal_reveal(reveal, values[Anum_el_payload - 1]);
	if (el_upcast_reads)
		(void) el_upcast_event(memo, relid, values, nulls);
	tuplestore_putvalues(store, desc, values, nulls);
}

/* Put SPI_tuptable's n archived events into a reader's result, in order. */
static void
el_archive_put_all(Oid relid, uint64 n, Tuplestorestate *store, TupleDesc desc)
{
	ElReveal   *reveal = el_personal_reveal_begin(relid);
	ElUpcastMemo memo;

	el_upcast_memo_init(&memo);
	for (uint64 i = 0; i < n; i++)
		el_archive_put(relid, reveal, &memo, SPI_tuptable->vals[i],
					   SPI_tuptable->tupdesc, store, desc);
}

/*
 * For replay(): the archived events of a key (in its shard) with version
 * after after, and before before when it is not 0 (the key's first
 * version still in the log), put into store in version order, as read()
 * returns rows (personal fields revealed, upcast under event_log.upcast).
 * The key's archived versions must follow each other from after + 1 (to
 * before - 1): otherwise EL040, never a partial history.  Returns the
 * number of events.  The caller is connected to SPI and has checked that
 * the archive covers the shard (el_archive_covers()).
 */
int64
el_archive_replay_key(Oid relid, int32 shard, text *key, int64 after,
					  int64 before, int64 low, Tuplestorestate *store,
					  TupleDesc desc)
{
	Datum		args[6];
	uint64		n;
	int64		last = after;	/* the last version put; after + 1 could overflow */
	ElReveal   *reveal;
	ElUpcastMemo memo;

	el_check_archive_reader(relid);
	args[0] = ObjectIdGetDatum(relid);
	args[1] = Int32GetDatum(shard);
	args[2] = Int64GetDatum(low);
	args[3] = PointerGetDatum(key);
	args[4] = Int64GetDatum(after);
	args[5] = Int64GetDatum(before);
	n = el_catalog_sql(EL_ARCHIVED_EVENTS
					   " WHERE a.stream OPERATOR(pg_catalog.=) $1 AND a.shard OPERATOR(pg_catalog.=) $2"
					   " AND a.last_seq OPERATOR(pg_catalog.<) $3"
					   " AND e.key OPERATOR(pg_catalog.=) $4 AND e.version OPERATOR(pg_catalog.>) $5"
					   " AND ($6 OPERATOR(pg_catalog.=) 0 OR e.version OPERATOR(pg_catalog.<) $6)"
					   " ORDER BY e.version",
					   6, (Oid[]) {REGCLASSOID, INT4OID, INT8OID, TEXTOID, INT8OID, INT8OID},
					   args, NULL, EL_CAT_READ, 0);
	reveal = el_personal_reveal_begin(relid);
	el_upcast_memo_init(&memo);
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;
		Datum		version = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
											Anum_el_version, &isnull);

		if (isnull || DatumGetInt64(version) != last + 1)
			break;
		el_archive_put(relid, reveal, &memo, SPI_tuptable->vals[i],
					   SPI_tuptable->tupdesc, store, desc);
		last++;
	}
	if (before > 0 && last != before - 1)
		ereport(ERROR,
				(errcode(ERRCODE_EL_OUT_OF_RANGE),
				 errmsg("the archive of event stream \"%s\" does not hold version %lld of key \"%s\"",
						el_qualified_name(relid), (long long) (last + 1), text_to_cstring(key)),
				 errhint("Import the missing history with event_log.import_archive().")));
	return last - after;
}

/*
 * Whether the archive holds every event of a shard below its watermark low
 * (chunks never overlap, so their counts add up).  false on a catalog
 * older than 0.5.  The caller is connected to SPI.
 */
bool
el_archive_covers(Oid relid, int32 shard, int64 low)
{
	Datum		args[3];
	bool		isnull;

	if (!OidIsValid(get_relname_relid("archive", el_schema_oid())))
		return false;
	args[0] = ObjectIdGetDatum(relid);
	args[1] = Int32GetDatum(shard);
	args[2] = Int64GetDatum(low);
	return el_catalog_sql("SELECT COALESCE(pg_catalog.sum(events), 0)"
						  " OPERATOR(pg_catalog.=) ($3 OPERATOR(pg_catalog.-) 1)"
						  " FROM event_log.archive WHERE stream OPERATOR(pg_catalog.=) $1"
						  " AND shard OPERATOR(pg_catalog.=) $2 AND last_seq OPERATOR(pg_catalog.<) $3",
						  3, (Oid[]) {REGCLASSOID, INT4OID, INT8OID}, args, NULL, EL_CAT_READ, 1) == 1 &&
		DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * For the readers that look events up by a value rather than by position
 * (read_event(), conversation()): whether retention removed events from any
 * shard of the stream (as snap sees the watermarks), in *removed, and the
 * first such shard whose removed events the archive does not all hold, or
 * -1 when it holds them all (then *low is 0); *low gets that shard's
 * watermark.  The caller is connected to SPI.
 */
int32
el_archive_uncovered(Oid relid, Snapshot snap, bool *removed, int64 *low)
{
	int			shards = el_stream_shards(relid);

	*removed = false;
	*low = 0;
	if (!el_stream_has_watermarks(relid))
		return -1;
	for (int32 shard = 0; shard < shards; shard++)
	{
		int64		l = el_low_watermark(relid, shard, snap);

		if (l <= 1)
			continue;
		*removed = true;
		if (!el_archive_covers(relid, shard, l))
		{
			*low = l;
			return shard;
		}
	}
	return -1;
}

/*
 * The archived events of a stream whose event_id is id (a uuid Datum), or,
 * with by_correlation, whose metadata's correlation_id is id (a text
 * Datum), as rows of event_log.event in SPI_tuptable, in (shard, seq)
 * order.  There is no index into the chunks: every archived line of the
 * stream is parsed (the lines of an imported file are not in a canonical
 * form that a text search could rely on).  Returns the number of rows.
 * The caller is connected to SPI and has checked the reader
 * (el_check_archive_reader()).
 */
uint64
el_archive_search(Oid relid, bool by_correlation, Datum id)
{
	Datum		args[2];

	args[0] = ObjectIdGetDatum(relid);
	args[1] = id;
	/* One statement text per kind, so that each keeps its plan. */
	return el_catalog_sql(psprintf("SELECT e.* FROM event_log.archive a,"
								   " LATERAL (SELECT t.line::pg_catalog.jsonb AS j, t.n"
								   "  FROM pg_catalog.string_to_table(a.data, E'\\n') WITH ORDINALITY t(line, n)) l,"
								   " LATERAL pg_catalog.jsonb_populate_record(NULL::event_log.event, l.j) e"
								   " WHERE a.stream OPERATOR(pg_catalog.=) $1 AND %s"
								   " ORDER BY a.shard, a.first_seq, l.n",
								   by_correlation ?
								   "((l.j OPERATOR(pg_catalog.->) 'metadata')"
								   " OPERATOR(pg_catalog.->>) 'correlation_id') OPERATOR(pg_catalog.=) $2" :
								   "CAST(l.j OPERATOR(pg_catalog.->>) 'event_id' AS pg_catalog.uuid)"
								   " OPERATOR(pg_catalog.=) $2"),
						  2, (Oid[]) {REGCLASSOID, by_correlation ? TEXTOID : UUIDOID},
						  args, NULL, EL_CAT_READ, 0);
}

/*
 * For read_event(): the archived event of a stream with this event_id (a
 * uuid Datum), put into store as read() returns rows.  Returns how many
 * were found (0 or 1).  The caller is connected to SPI and has checked
 * that the archive holds every removed event (el_archive_uncovered()).
 */
uint64
el_archive_read_event(Oid relid, Datum id, Tuplestorestate *store, TupleDesc desc)
{
	uint64		n;

	el_check_archive_reader(relid);
	n = el_archive_search(relid, false, id);
	el_archive_put_all(relid, n, store, desc);
	return n;
}

/*
 * For read_by_time() of a range that removed events may fall in: up to
 * max_count archived events of the stream with since <= recorded_at <
 * until, after (since, after_shard, after_seq) in (recorded_at, shard, seq)
 * order (after_shard -1: from the first), put into store in that order as
 * read() returns rows.  Only chunks whose recorded_at span meets the range
 * are decompressed.  Returns how many.  The caller is connected to SPI and
 * has checked the reader (el_check_archive_reader()).
 */
uint64
el_archive_read_time(Oid relid, Datum since, Datum until, int32 after_shard,
					 int64 after_seq, int64 max_count, Tuplestorestate *store,
					 TupleDesc desc)
{
	Datum		args[6];
	uint64		n;

	args[0] = ObjectIdGetDatum(relid);
	args[1] = since;
	args[2] = until;
	args[3] = Int32GetDatum(after_shard);
	args[4] = Int64GetDatum(after_seq);
	args[5] = Int64GetDatum(max_count);
	n = el_catalog_sql(EL_ARCHIVED_EVENTS
					   " WHERE a.stream OPERATOR(pg_catalog.=) $1"
					   " AND a.last_recorded_at OPERATOR(pg_catalog.>=) $2"
					   " AND a.first_recorded_at OPERATOR(pg_catalog.<) $3"
					   " AND e.recorded_at OPERATOR(pg_catalog.>=) $2"
					   " AND e.recorded_at OPERATOR(pg_catalog.<) $3"
					   " AND (e.recorded_at OPERATOR(pg_catalog.>) $2"
					   "  OR e.shard OPERATOR(pg_catalog.>) $4"
					   "  OR (e.shard OPERATOR(pg_catalog.=) $4 AND e.seq OPERATOR(pg_catalog.>) $5))"
					   " ORDER BY e.recorded_at, e.shard, e.seq LIMIT $6",
					   6, (Oid[]) {REGCLASSOID, TIMESTAMPTZOID, TIMESTAMPTZOID, INT4OID, INT8OID, INT8OID},
					   args, NULL, EL_CAT_READ, 0);
	el_archive_put_all(relid, n, store, desc);
	return n;
}
