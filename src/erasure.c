/*
 * erasure.c
 *	  The SQL functions of personal data (docs/erasure.md):
 *	  declare_personal() (which fields of a stream's payloads are personal,
 *	  and which names the data subject), undeclare_personal() (fields taken
 *	  out of a declaration, for events appended afterwards), grant_personal() and
 *	  revoke_personal() (who reads them in clear besides the owner),
 *	  subject_id(), erase_subject() (deletes the subject's key, records the
 *	  erasure in event_log.erasures, whose row the output plugin turns into
 *	  an erasure line for CDC consumers), and reveal() for payloads read with
 *	  plain SQL.
 *	  Encryption and decryption themselves are in personal.c.
 *
 *	  Only the stream's owner (or a member of its role) declares, grants and
 *	  erases.  declare_personal() takes the stream's ShareRowExclusiveLock,
 *	  as register_schema() does: it waits for appends in progress and holds
 *	  new ones until it commits, so no event committed after a declaration
 *	  escaped it.  erase_subject() takes no stream lock: appends go on; it
 *	  waits for the transactions appending with the subject's key (they
 *	  lock its row), and a placeholder key makes it wait for the subject's
 *	  first append in progress, whose key it would not see.  The deleted
 *	  key's bytes are overwritten in their page when the erasure commits
 *	  (personal_shred.c; docs/design/erasure.md).
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "append.h"
#include "catalog.h"
#include "event_log.h"
#include "personal.h"
#include "read.h"
#include "registry.h"

PG_FUNCTION_INFO_V1(el_declare_personal);
PG_FUNCTION_INFO_V1(el_undeclare_personal);
PG_FUNCTION_INFO_V1(el_grant_personal);
PG_FUNCTION_INFO_V1(el_revoke_personal);
PG_FUNCTION_INFO_V1(el_subject_id);
PG_FUNCTION_INFO_V1(el_erase_subject);
PG_FUNCTION_INFO_V1(el_reveal);

/* The most fields one declaration names, and the longest name. */
#define EL_MAX_PERSONAL_FIELDS	100
#define EL_MAX_FIELD_BYTES		256

/* The longest reason an erasure records. */
#define EL_MAX_REASON_BYTES		1000


/* A stream the caller owns (or whose owning role it is a member of). */
static void
el_personal_require_owner(FunctionCallInfo fcinfo)
{
	Oid			relid;

	el_require_arg(fcinfo, 0, "stream");
	relid = PG_GETARG_OID(0);
	(void) el_require_stream(relid);
	if (!pg_class_ownercheck(relid, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, OBJECT_TABLE, get_rel_name(relid));
	el_personal_require_catalog();
}

static void
el_check_field_name(const char *name, const char *what)
{
	int			len = strlen(name);

	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", what)));
	if (len > EL_MAX_FIELD_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s is too long", what),
				 errdetail("It has %d bytes; the limit is %d.", len, EL_MAX_FIELD_BYTES)));
}

/*
 * A field starting with "/" is a path to a nested field, a JSON pointer
 * (RFC 6901): "~" inside a key is written "~0" and "/" is written "~1".
 */
static void
el_check_field_path(const char *name)
{
	if (name[0] != '/')
		return;
	for (const char *c = name; *c; c++)
		if (*c == '~' && c[1] != '0' && c[1] != '1')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid path to a personal field: \"%s\"", name),
					 errdetail("In a path, \"~\" must be followed by \"0\" (for \"~\") or \"1\" (for \"/\")."),
					 errhint("A field named with a leading \"/\" is a JSON pointer, such as \"/address/street\".")));
}

/* A secret for the stream's subject ids, made on its first declaration. */
static void
el_personal_ensure_secret(Oid relid)
{
	Oid			types[2] = {REGCLASSOID, BYTEAOID};
	Datum		values[2];
	bytea	   *secret = el_personal_bytea(NULL, EL_PERSONAL_SECRET_LEN);

	if (!pg_strong_random(VARDATA(secret), EL_PERSONAL_SECRET_LEN))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random secret")));
	values[0] = ObjectIdGetDatum(relid);
	values[1] = PointerGetDatum(secret);
	(void) el_catalog_sql("INSERT INTO event_log.personal_streams (stream, secret)"
						  " VALUES ($1, $2) ON CONFLICT (stream) DO NOTHING",
						  2, types, values, NULL, 0, 0);
	explicit_bzero(VARDATA(secret), EL_PERSONAL_SECRET_LEN);
}

/*
 * The field names of a declaration: a one-dimensional array of 1 to
 * EL_MAX_PERSONAL_FIELDS distinct, non-empty names.  Returns them as text
 * datums in *items.
 */
static int
el_check_fields(ArrayType *arr, Datum **items)
{
	bool	   *nulls;
	int			n;

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("fields must be a one-dimensional array")));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, items, &nulls, &n);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("fields must name at least one field")));
	if (n > EL_MAX_PERSONAL_FIELDS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many personal fields"),
				 errdetail("%d fields are given; the limit is %d.", n, EL_MAX_PERSONAL_FIELDS)));
	for (int i = 0; i < n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("fields must not contain NULL")));
		el_check_field_name(TextDatumGetCString((*items)[i]), "a personal field's name");
		el_check_field_path(TextDatumGetCString((*items)[i]));
		for (int j = 0; j < i; j++)
			if (strcmp(TextDatumGetCString((*items)[i]), TextDatumGetCString((*items)[j])) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("field \"%s\" is named twice",
								TextDatumGetCString((*items)[i]))));
	}
	return n;
}

/*
 * event_log.declare_personal(stream regclass, fields text[],
 *		subject_field text, type text DEFAULT NULL) RETURNS void
 *
 * The payload fields that are personal (top-level names, or JSON pointers
 * such as "/address/street" to nested ones), for every type of the
 * stream (type NULL) or for one type, whose declaration then replaces the
 * stream's for it.  Declaring again replaces the earlier declaration;
 * events already appended keep what they were appended with.
 */
Datum
el_declare_personal(PG_FUNCTION_ARGS)
{
	Oid			relid;
	ArrayType  *arr;
	Datum	   *items;
	char	   *subject_field;
	text	   *type;
	Oid			types[5] = {REGCLASSOID, TEXTOID, TEXTARRAYOID, TEXTOID, NAMEOID};
	Datum		values[5];

	el_personal_require_owner(fcinfo);
	el_require_arg(fcinfo, 1, "fields");
	el_require_arg(fcinfo, 2, "subject_field");
	relid = PG_GETARG_OID(0);
	arr = PG_GETARG_ARRAYTYPE_P(1);
	subject_field = text_to_cstring(PG_GETARG_TEXT_PP(2));
	el_check_field_name(subject_field, "subject_field");
	type = PG_ARGISNULL(3) ? cstring_to_text("") : PG_GETARG_TEXT_PP(3);
	if (!PG_ARGISNULL(3))
		el_check_type(type);

	(void) el_check_fields(arr, &items);

	/* waits for appends in progress; holds new ones until we commit */
	(void) el_lock_stream(relid, ShareRowExclusiveLock);

	values[0] = ObjectIdGetDatum(relid);
	values[1] = PointerGetDatum(type);
	values[2] = PointerGetDatum(arr);
	values[3] = CStringGetTextDatum(subject_field);
	values[4] = DirectFunctionCall1(namein,
									CStringGetDatum(GetUserNameFromId(GetUserId(), false)));
	SPI_connect();
	el_personal_ensure_secret(relid);
	(void) el_catalog_sql("INSERT INTO event_log.personal_fields AS f"
						  " (stream, type, fields, subject_field, declared_by)"
						  " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (stream, type) DO UPDATE"
						  " SET fields = excluded.fields, subject_field = excluded.subject_field,"
						  " declared_at = pg_catalog.now(), declared_by = excluded.declared_by",
						  5, types, values, NULL, 0, 0);
	SPI_finish();
	CacheInvalidateRelcacheByRelid(relid);
	PG_RETURN_VOID();
}

/* Whether the field name is one of list[0..n) (NULLs, where nulls says so, are not). */
static bool
el_field_in(Datum name, Datum *list, bool *nulls, int n)
{
	for (int i = 0; i < n; i++)
		if ((nulls == NULL || !nulls[i]) &&
			strcmp(TextDatumGetCString(name), TextDatumGetCString(list[i])) == 0)
			return true;
	return false;
}

/*
 * event_log.undeclare_personal(stream regclass, fields text[],
 *		type text DEFAULT NULL) RETURNS text[]
 *
 * Takes fields out of the stream's declaration (type NULL) or a type's,
 * and returns the fields that stay declared.  The declaration stays, with
 * no fields if none are left: a type's then still replaces the stream's,
 * so the type has no personal fields.  Who and when are recorded in the
 * declaration's row, as for declare_personal().  Only events appended
 * after it are affected: those appended before keep their encrypted
 * fields, read and erased as before.
 */
Datum
el_undeclare_personal(PG_FUNCTION_ARGS)
{
	Oid			relid;
	Datum	   *items;
	int			n;
	text	   *type;
	Datum	   *old;
	bool	   *oldnulls;
	int			nold;
	Datum	   *keep;
	int			nkeep = 0;
	bool		isnull;
	ArrayType  *kept;
	MemoryContext fn_cxt = CurrentMemoryContext;
	MemoryContext spi_cxt;
	Oid			types[4] = {REGCLASSOID, TEXTOID, TEXTARRAYOID, NAMEOID};
	Datum		values[4];

	el_personal_require_owner(fcinfo);
	el_require_arg(fcinfo, 1, "fields");
	relid = PG_GETARG_OID(0);
	n = el_check_fields(PG_GETARG_ARRAYTYPE_P(1), &items);
	type = PG_ARGISNULL(2) ? cstring_to_text("") : PG_GETARG_TEXT_PP(2);
	if (!PG_ARGISNULL(2))
		el_check_type(type);

	/* as declare_personal(): appends in progress finish under the old list */
	(void) el_lock_stream(relid, ShareRowExclusiveLock);

	values[0] = ObjectIdGetDatum(relid);
	values[1] = PointerGetDatum(type);
	SPI_connect();
	if (el_catalog_sql("SELECT f.fields FROM event_log.personal_fields f"
					   " WHERE f.stream OPERATOR(pg_catalog.=) $1"
					   " AND f.type OPERATOR(pg_catalog.=) $2 FOR UPDATE",
					   2, types, values, NULL, 0, 1) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 PG_ARGISNULL(2)
				 ? errmsg("stream \"%s\" has no declaration of personal fields for every type",
						  el_qualified_name(relid))
				 : errmsg("stream \"%s\" has no declaration of personal fields for type \"%s\"",
						  el_qualified_name(relid), text_to_cstring(type)),
				 errhint("See event_log.personal_fields.")));
	deconstruct_array(DatumGetArrayTypeP(el_spi_value(0, 1, &isnull)), TEXTOID, -1, false,
					  TYPALIGN_INT, &old, &oldnulls, &nold);
	for (int i = 0; i < n; i++)
		if (!el_field_in(items[i], old, oldnulls, nold))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("field \"%s\" is not declared personal in that declaration",
							TextDatumGetCString(items[i])),
					 errhint("See event_log.personal_fields.")));
	keep = palloc(sizeof(Datum) * Max(nold, 1));
	for (int j = 0; j < nold; j++)
		if (oldnulls[j] || !el_field_in(old[j], items, NULL, n))
			keep[nkeep++] = old[j];
	/* the result outlives SPI's memory */
	spi_cxt = MemoryContextSwitchTo(fn_cxt);
	kept = construct_array(keep, nkeep, TEXTOID, -1, false, TYPALIGN_INT);
	MemoryContextSwitchTo(spi_cxt);
	values[2] = PointerGetDatum(kept);
	values[3] = DirectFunctionCall1(namein,
									CStringGetDatum(GetUserNameFromId(GetUserId(), false)));
	(void) el_catalog_sql("UPDATE event_log.personal_fields f"
						  " SET fields = $3, declared_at = pg_catalog.now(), declared_by = $4"
						  " WHERE f.stream OPERATOR(pg_catalog.=) $1"
						  " AND f.type OPERATOR(pg_catalog.=) $2",
						  4, types, values, NULL, 0, 0);
	SPI_finish();
	CacheInvalidateRelcacheByRelid(relid);
	PG_RETURN_ARRAYTYPE_P(kept);
}

/* grant_personal() and revoke_personal(): a row of personal_readers. */
static void
el_personal_reader(FunctionCallInfo fcinfo, const char *sql)
{
	Oid			types[2] = {REGCLASSOID, REGROLEOID};
	Datum		values[2];

	el_personal_require_owner(fcinfo);
	el_require_arg(fcinfo, 1, "reader");
	values[0] = PG_GETARG_DATUM(0);
	values[1] = PG_GETARG_DATUM(1);
	SPI_connect();
	(void) el_catalog_sql(sql, 2, types, values, NULL, 0, 0);
	SPI_finish();
}

/*
 * event_log.grant_personal(stream regclass, reader regrole) RETURNS void
 *
 * Lets the role (and its members) read the stream's personal fields in
 * clear.  Reading still needs SELECT on the stream.
 */
Datum
el_grant_personal(PG_FUNCTION_ARGS)
{
	el_personal_reader(fcinfo,
					   "INSERT INTO event_log.personal_readers (stream, reader)"
					   " VALUES ($1, $2) ON CONFLICT DO NOTHING");
	PG_RETURN_VOID();
}

Datum
el_revoke_personal(PG_FUNCTION_ARGS)
{
	el_personal_reader(fcinfo,
					   "DELETE FROM event_log.personal_readers r"
					   " WHERE r.stream OPERATOR(pg_catalog.=) $1"
					   " AND r.reader OPERATOR(pg_catalog.=) $2");
	PG_RETURN_VOID();
}

/* The subject's id in the stream, hex; the stream's secret must exist. */
static char *
el_subject_id_hex(Oid relid, text *subject)
{
	uint8		secret[EL_PERSONAL_SECRET_LEN];
	uint8		id[EL_SUBJECT_ID_LEN];

	if (VARSIZE_ANY_EXHDR(subject) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("subject must not be empty")));
	if (!el_personal_stream_secret(relid, secret))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("stream \"%s\" has no personal fields", el_qualified_name(relid)),
				 errhint("Declare them with event_log.declare_personal().")));
	el_personal_subject_id(secret, VARDATA_ANY(subject), VARSIZE_ANY_EXHDR(subject), id);
	explicit_bzero(secret, sizeof(secret));
	return el_personal_hex(id, EL_SUBJECT_ID_LEN);
}

/*
 * event_log.subject_id(stream regclass, subject text) RETURNS text
 *
 * The id under which the stream keeps a subject's key and records its
 * erasures: for the stream's owner, and for auditors (SELECT on
 * event_log.erasures), who find a subject's erasures by it.
 */
Datum
el_subject_id(PG_FUNCTION_ARGS)
{
	Oid			relid;

	el_require_arg(fcinfo, 0, "stream");
	el_require_arg(fcinfo, 1, "subject");
	relid = PG_GETARG_OID(0);
	(void) el_require_stream(relid);
	el_personal_require_catalog();
	if (!pg_class_ownercheck(relid, GetUserId()) &&
		pg_class_aclcheck(el_catalog_relid("erasures"), GetUserId(),
						  ACL_SELECT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for subject ids of \"%s\"",
						el_qualified_name(relid)),
				 errhint("The stream's owner, and roles with SELECT on event_log.erasures, may compute them.")));
	PG_RETURN_TEXT_P(cstring_to_text(el_subject_id_hex(relid, PG_GETARG_TEXT_PP(1))));
}

/*
 * event_log.erase_subject(stream regclass, subject text, reason text)
 *		RETURNS boolean
 *
 * Deletes the subject's key, so that its personal fields read as erased
 * everywhere; records the erasure in event_log.erasures, which the output
 * plugin emits as an erasure line with the stream and the subject's id.
 * Returns whether there was a key to delete: false for a subject with no
 * personal data in the stream, or one erased before (recorded all the
 * same: the request was made).
 */
Datum
el_erase_subject(PG_FUNCTION_ARGS)
{
	Oid			relid;
	text	   *reason;
	char	   *id;
	bytea	   *idb;
	bool		destroyed;
	Oid			types[5] = {REGCLASSOID, BYTEAOID, TEXTOID, TEXTOID, BOOLOID};
	Datum		values[5];

	el_personal_require_owner(fcinfo);
	el_require_arg(fcinfo, 1, "subject");
	el_require_arg(fcinfo, 2, "reason");
	relid = PG_GETARG_OID(0);
	reason = PG_GETARG_TEXT_PP(2);
	if (VARSIZE_ANY_EXHDR(reason) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("reason must not be empty"),
				 errhint("Say why the subject is erased (a request's reference, say); not the personal data.")));
	if (VARSIZE_ANY_EXHDR(reason) > EL_MAX_REASON_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("reason is too long"),
				 errdetail("It has %d bytes; the limit is %d.",
						   (int) VARSIZE_ANY_EXHDR(reason), EL_MAX_REASON_BYTES)));
	id = el_subject_id_hex(relid, PG_GETARG_TEXT_PP(1));
	idb = el_personal_bytea(NULL, EL_SUBJECT_ID_LEN);
	hex_decode(id, EL_SUBJECT_ID_LEN * 2, VARDATA(idb));

	values[0] = ObjectIdGetDatum(relid);
	values[1] = PointerGetDatum(idb);
	values[2] = CStringGetTextDatum(id);
	values[3] = PointerGetDatum(reason);
	SPI_connect();

	/*
	 * A key an append in progress made is invisible to the DELETE, which
	 * would miss it: the subject's first events would then commit after the
	 * erasure in clear.  Inserting a placeholder under the subject waits for
	 * such an append's transaction (the unique index); then the DELETE, with
	 * the latest snapshot (also in REPEATABLE READ, whose snapshot may
	 * predate the key), destroys whichever key is there, the placeholder
	 * included.  A placeholder is random and never used: appends that come
	 * after it wait for us, and find no key once we commit.
	 */
	{
		Oid			ptypes[4] = {REGCLASSOID, BYTEAOID, BYTEAOID, BYTEAOID};
		Datum		pvalues[4];
		bytea	   *pkey = el_personal_bytea(NULL, EL_SUBJECT_KEY_LEN);
		bytea	   *pkid = el_personal_bytea(NULL, EL_KEY_ID_LEN);
		uint64		placed;
		uint64		deleted;

		if (!pg_strong_random(VARDATA(pkey), EL_SUBJECT_KEY_LEN) ||
			!pg_strong_random(VARDATA(pkid), EL_KEY_ID_LEN))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate a random key")));
		pvalues[0] = values[0];
		pvalues[1] = values[1];
		pvalues[2] = PointerGetDatum(pkey);
		pvalues[3] = PointerGetDatum(pkid);
		placed = el_catalog_sql("INSERT INTO event_log.subject_keys (stream, subject, key, key_id)"
								" VALUES ($1, $2, $3, $4) ON CONFLICT (stream, subject) DO NOTHING"
								" RETURNING 1",
								4, ptypes, pvalues, NULL, EL_CAT_LATEST, 0);
		explicit_bzero(VARDATA(pkey), EL_SUBJECT_KEY_LEN);
		deleted = el_catalog_sql("DELETE FROM event_log.subject_keys k"
								 " WHERE k.stream OPERATOR(pg_catalog.=) $1"
								 " AND k.subject OPERATOR(pg_catalog.=) $2"
								 " RETURNING k.ctid, k.key",
								 2, types, values, NULL, EL_CAT_LATEST, 0);
		destroyed = deleted > placed;
		/* the deleted rows' key bytes are overwritten once we commit */
		el_personal_shred_later(deleted);
	}
	values[4] = BoolGetDatum(destroyed);
	(void) el_catalog_sql("INSERT INTO event_log.erasures"
						  " (stream, subject, erased_by, session_user_name, reason, key_destroyed)"
						  " SELECT $1, $3, CURRENT_USER, SESSION_USER, $4, $5"
						  " WHERE $2 IS NOT NULL",
						  5, types, values, NULL, 0, 0);
	SPI_finish();
	el_personal_forget_keys();

	/*
	 * CDC: the decoder emits the audit row above as {"erasure": ...}, at the
	 * commit, in its place among the events (decoder.c).
	 */

	if (!destroyed)
		ereport(NOTICE,
				(errmsg("subject has no key in \"%s\"", el_qualified_name(relid)),
				 errdetail("It has no personal data in the stream, or was erased before; the request is recorded.")));
	PG_RETURN_BOOL(destroyed);
}

/*
 * event_log.reveal(stream regclass, payload jsonb) RETURNS jsonb
 *
 * A payload read with plain SQL, as read() would return it to the caller:
 * personal fields decrypted for those allowed, markers for others.
 */
Datum
el_reveal(PG_FUNCTION_ARGS)
{
	Oid			relid;

	el_require_arg(fcinfo, 0, "stream");
	if (PG_ARGISNULL(1))
		PG_RETURN_NULL();
	relid = PG_GETARG_OID(0);
	(void) el_require_stream(relid);
	el_check_select(relid);
	PG_RETURN_DATUM(el_personal_reveal(el_personal_reveal_begin(relid),
									   PG_GETARG_DATUM(1)));
}
