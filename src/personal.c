/*
 * personal.c
 *	  Personal fields: the per-backend cache of each stream's declarations,
 *	  their encryption at append (the append trigger calls
 *	  el_personal_protect() on every path: INSERT, COPY, append(),
 *	  append_events()), and their decryption where events are read
 *	  (el_personal_reveal_dest() around read.c's plans, in personal_read.c).
 *	  The SQL functions that declare fields and erase subjects are in
 *	  erasure.c.
 *
 *	  Crypto-shredding: each data subject of a stream has a random 256-bit
 *	  key (pg_strong_random()) in event_log.subject_keys, under the
 *	  subject's id, an HMAC-SHA-256 of the subject keyed by the stream's
 *	  secret, so the catalog never holds the subject itself; each key has a
 *	  random key_id.  A personal field's value is replaced at append by a
 *	  marker object
 *
 *		{"$personal": "<base64 message>", "key": "<key_id, hex>",
 *		 "mac": "<hex>"}
 *
 *	  whose message is a random IV and pgcrypto's encrypt_iv() of the
 *	  value's JSON text under the subject's key (AES-256-CBC), and whose mac
 *	  (HMAC-SHA-256 under the stream's secret of the key_id and the message,
 *	  128 bits: encrypt-then-MAC) authenticates the message and tells a
 *	  marker we wrote from one an appender forged, so that no stored value
 *	  can make a read fail.
 *	  pgcrypto's functions are called through the function manager from its
 *	  library, which ships with PostgreSQL's contrib: no CREATE EXTENSION
 *	  pgcrypto and no SQL lookup of its functions by name, so nobody's
 *	  search_path or overloads come into it.  Erasing a subject deletes its
 *	  key, whose bytes personal_shred.c overwrites in the table's page once
 *	  the erasure commits; its markers then read as {"$personal": "erased"}.
 *
 *	  Readers: the stream's owner (and members of its role) and the roles
 *	  granted with grant_personal() read personal fields as appended; other
 *	  readers see {"$personal": "hidden"}.  Keys are read with the latest
 *	  snapshot, so an erasure is seen by reads that start after it commits
 *	  whatever the reader's isolation level.  Keys never reach a message:
 *	  pgcrypto's errors do not quote them and ours do not either.
 *
 *	  On a catalog not yet updated to 0.4 (no event_log.personal_fields) no
 *	  stream has personal fields: appends and reads are unchanged.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/base64.h"
#include "common/hmac.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "catalog.h"
#include "event_log.h"
#include "personal.h"

/* pgcrypto's raw cipher: AES (256-bit keys), CBC with a random IV, PKCS#7 padding. */
#define EL_CIPHER			"aes-cbc/pad:pkcs"
#define EL_IV_LEN			16

/* ----------------------------------------------------------------
 * The per-backend cache of declarations
 * ----------------------------------------------------------------
 */

typedef struct ElPersonalDecl
{
	char	   *type;			/* "" for every type of the stream */
	int			nfields;
	char	  **fields;
	char	   *subject_field;
} ElPersonalDecl;

typedef struct ElPersonalEntry
{
	Oid			relid;			/* hash key */
	bool		has_personal;
	uint8		secret[EL_PERSONAL_SECRET_LEN];
	int			ndecls;
	ElPersonalDecl *decls;
} ElPersonalEntry;

static MemoryContext el_personal_cxt = NULL;
static HTAB *el_personal_cache = NULL;
static bool el_personal_stale = false;

static void
el_personal_cache_callback(Datum arg, Oid relid)
{
	if (el_personal_cache == NULL)
		return;
	if (!OidIsValid(relid) ||
		hash_search(el_personal_cache, &relid, HASH_FIND, NULL) != NULL)
		el_personal_stale = true;
}

/*
 * The keys this transaction has appended with, by stream and subject id:
 * an INSERT ... SELECT of many events of few subjects looks each key up
 * once.  Kept in TopTransactionContext and dropped (wiped) at the end of
 * the transaction, at the abort of any subtransaction (a key it created is
 * gone with it), and by erase_subject().  Its row is locked when it is
 * first taken, so a concurrent erasure waits for this transaction, whose
 * events are then erased with the rest (docs/design/erasure.md).
 */
typedef struct ElTxnKey
{
	Oid			relid;			/* hash key: relid and subject id */
	uint8		id[EL_SUBJECT_ID_LEN];
	uint8		key[EL_SUBJECT_KEY_LEN];
	uint8		key_id[EL_KEY_ID_LEN];
} ElTxnKey;

static HTAB *el_txn_keys = NULL;

void
el_personal_forget_keys(void)
{
	HASH_SEQ_STATUS seq;
	ElTxnKey   *k;

	if (el_txn_keys == NULL)
		return;
	hash_seq_init(&seq, el_txn_keys);
	while ((k = hash_seq_search(&seq)) != NULL)
		explicit_bzero(k->key, sizeof(k->key));
	hash_destroy(el_txn_keys);
	el_txn_keys = NULL;
}

static void
el_personal_xact_callback(XactEvent event, void *arg)
{
	/* the hash's memory goes with the transaction; wipe it first */
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
		el_personal_forget_keys();
}

static void
el_personal_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
							 SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		el_personal_forget_keys();
}

void
el_personal_init(void)
{
	CacheRegisterRelcacheCallback(el_personal_cache_callback, (Datum) 0);
	RegisterXactCallback(el_personal_xact_callback, NULL);
	RegisterSubXactCallback(el_personal_subxact_callback, NULL);
	el_personal_shred_init();
}

static HTAB *
el_personal_cache_get(void)
{
	HASHCTL		ctl;

	if (el_personal_stale && el_personal_cxt != NULL)
	{
		/* the secrets go with the entries: wipe them, not just free them */
		if (el_personal_cache != NULL)
		{
			HASH_SEQ_STATUS seq;
			ElPersonalEntry *e;

			hash_seq_init(&seq, el_personal_cache);
			while ((e = hash_seq_search(&seq)) != NULL)
				explicit_bzero(e->secret, sizeof(e->secret));
		}
		MemoryContextReset(el_personal_cxt);
		el_personal_cache = NULL;
	}
	el_personal_stale = false;
	if (el_personal_cache != NULL)
		return el_personal_cache;
	if (el_personal_cxt == NULL)
		el_personal_cxt = AllocSetContextCreate(CacheMemoryContext,
												"event_log personal fields",
												ALLOCSET_SMALL_SIZES);
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(ElPersonalEntry);
	ctl.hcxt = el_personal_cxt;
	el_personal_cache = hash_create("event_log personal fields", 32, &ctl,
									HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	return el_personal_cache;
}

/* Whether this database's catalog has personal fields (0.4). */
bool
el_personal_catalog_present(void)
{
	return OidIsValid(get_relname_relid("personal_fields", el_schema_oid()));
}

void
el_personal_require_catalog(void)
{
	if (!el_personal_catalog_present())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("personal fields need the event_log 0.4 catalog"),
				 errhint("Run ALTER EXTENSION event_log UPDATE.")));
}

/* A copy of a text[] datum's elements in the cache's memory. */
static char **
el_personal_text_array(Datum d, int *n)
{
	Datum	   *items;
	bool	   *nulls;
	char	  **out;

	deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
					  &items, &nulls, n);
	out = MemoryContextAlloc(el_personal_cxt, sizeof(char *) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
		out[i] = MemoryContextStrdup(el_personal_cxt,
									 nulls[i] ? "" : TextDatumGetCString(items[i]));
	return out;
}

static ElPersonalEntry *
el_personal_entry(Oid relid)
{
	ElPersonalEntry *entry;
	bool		found;
	uint64		n = 0;

	entry = hash_search(el_personal_cache_get(), &relid, HASH_FIND, NULL);
	if (entry != NULL)
		return entry;

	if (el_personal_catalog_present())
	{
		Oid			types[1] = {REGCLASSOID};
		Datum		values[1] = {ObjectIdGetDatum(relid)};

		SPI_connect();
		n = el_catalog_sql("SELECT f.type, f.fields, f.subject_field, s.secret"
						   " FROM event_log.personal_fields f"
						   " JOIN event_log.personal_streams s"
						   "  ON s.stream OPERATOR(pg_catalog.=) f.stream"
						   " WHERE f.stream OPERATOR(pg_catalog.=) $1",
						   1, types, values, NULL, EL_CAT_READ | EL_CAT_LATEST, 0);
		/* the read may have marked the cache stale: enter into the current one */
		entry = hash_search(el_personal_cache_get(), &relid, HASH_ENTER, &found);
		entry->has_personal = n > 0;
		entry->ndecls = (int) n;
		entry->decls = n > 0 ?
			MemoryContextAllocZero(el_personal_cxt, sizeof(ElPersonalDecl) * n) : NULL;
		for (uint64 i = 0; i < n; i++)
		{
			ElPersonalDecl *d = &entry->decls[i];
			bool		isnull;
			bytea	   *secret;

			d->type = MemoryContextStrdup(el_personal_cxt, el_spi_text(i, 1));
			d->fields = el_personal_text_array(el_spi_value(i, 2, &isnull), &d->nfields);
			d->subject_field = MemoryContextStrdup(el_personal_cxt, el_spi_text(i, 3));
			secret = DatumGetByteaPP(el_spi_value(i, 4, &isnull));
			if (VARSIZE_ANY_EXHDR(secret) != EL_PERSONAL_SECRET_LEN)
				elog(ERROR, "malformed secret for stream %u", relid);
			memcpy(entry->secret, VARDATA_ANY(secret), EL_PERSONAL_SECRET_LEN);
		}
		SPI_finish();
		return entry;
	}
	entry = hash_search(el_personal_cache_get(), &relid, HASH_ENTER, &found);
	entry->has_personal = false;
	entry->ndecls = 0;
	entry->decls = NULL;
	return entry;
}

/* The stream's secret, if it has personal fields declared. */
bool
el_personal_stream_secret(Oid relid, uint8 *secret)
{
	ElPersonalEntry *entry = el_personal_entry(relid);

	if (!entry->has_personal)
		return false;
	memcpy(secret, entry->secret, EL_PERSONAL_SECRET_LEN);
	return true;
}

/* The declaration for events of this type: the type's own, else the stream's. */
static ElPersonalDecl *
el_personal_decl(ElPersonalEntry *entry, const char *type, int len)
{
	ElPersonalDecl *all = NULL;

	for (int i = 0; i < entry->ndecls; i++)
	{
		ElPersonalDecl *d = &entry->decls[i];

		if (d->type[0] == '\0')
			all = d;
		else if ((int) strlen(d->type) == len && memcmp(d->type, type, len) == 0)
			return d;
	}
	return all;
}

/* ----------------------------------------------------------------
 * Crypto: HMACs from PostgreSQL's common code, ciphers from pgcrypto
 * ----------------------------------------------------------------
 */

static PGFunction el_encrypt_iv = NULL;
static PGFunction el_decrypt_iv = NULL;

static void
el_pgcrypto_context(void *arg)
{
	errcontext("loading pgcrypto, which encrypts personal fields (docs/erasure.md)");
}

static void
el_load_pgcrypto(void)
{
	ErrorContextCallback cb;

	if (el_encrypt_iv != NULL && el_decrypt_iv != NULL)
		return;
	cb.callback = el_pgcrypto_context;
	cb.arg = NULL;
	cb.previous = error_context_stack;
	error_context_stack = &cb;
	/* encrypt_iv() and decrypt_iv() at the SQL level */
	el_encrypt_iv = load_external_function("$libdir/pgcrypto",
										   "pg_encrypt_iv", true, NULL);
	el_decrypt_iv = load_external_function("$libdir/pgcrypto",
										   "pg_decrypt_iv", true, NULL);
	error_context_stack = cb.previous;
}

/* HMAC-SHA-256 under key of the two parts, into out (32 bytes). */
static void
el_hmac(const uint8 *key, int keylen, const uint8 *a, int alen,
		const uint8 *b, int blen, uint8 *out)
{
	pg_hmac_ctx *ctx = pg_hmac_create(PG_SHA256);

	if (ctx == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	if (pg_hmac_init(ctx, key, keylen) < 0 ||
		pg_hmac_update(ctx, a, alen) < 0 ||
		(blen > 0 && pg_hmac_update(ctx, b, blen) < 0) ||
		pg_hmac_final(ctx, out, PG_SHA256_DIGEST_LENGTH) < 0)
	{
		const char *why = pg_hmac_error(ctx);

		pg_hmac_free(ctx);
		elog(ERROR, "could not compute HMAC: %s", why);
	}
	pg_hmac_free(ctx);
}

void
el_personal_subject_id(const uint8 *secret, const char *subject, int len,
					   uint8 *id)
{
	el_hmac(secret, EL_PERSONAL_SECRET_LEN, (const uint8 *) subject, len,
			NULL, 0, id);
}

char *
el_personal_hex(const uint8 *bytes, int len)
{
	char	   *out = palloc(len * 2 + 1);

	hex_encode((const char *) bytes, len, out);
	out[len * 2] = '\0';
	return out;
}

/* A bytea of len bytes copied from data (NULL: uninitialised). */
bytea *
el_personal_bytea(const void *data, int len)
{
	bytea	   *b = palloc(VARHDRSZ + len);

	SET_VARSIZE(b, VARHDRSZ + len);
	if (data != NULL)
		memcpy(VARDATA(b), data, len);
	return b;
}

static void
el_wipe_bytea(bytea *b)
{
	explicit_bzero(VARDATA(b), VARSIZE(b) - VARHDRSZ);
	pfree(b);
}

/*
 * A subject's key into *key: false if it has none (never had personal
 * data in the stream, or was erased).  With create, one is made if there
 * is none.  Read with the latest snapshot, as the catalog's owner.
 */
static bool el_subject_key_lookup(Oid relid, const uint8 *id, bool create,
								  uint8 *key, uint8 *key_id);

static bool
el_subject_key(Oid relid, const uint8 *id, bool create, uint8 *key, uint8 *key_id)
{
	ElTxnKey	probe;
	ElTxnKey   *k;
	bool		found;

	memset(&probe, 0, sizeof(probe));
	probe.relid = relid;
	memcpy(probe.id, id, EL_SUBJECT_ID_LEN);
	if (el_txn_keys != NULL &&
		(k = hash_search(el_txn_keys, &probe, HASH_FIND, NULL)) != NULL)
	{
		memcpy(key, k->key, EL_SUBJECT_KEY_LEN);
		memcpy(key_id, k->key_id, EL_KEY_ID_LEN);
		return true;
	}
	if (!el_subject_key_lookup(relid, id, create, key, key_id))
		return false;
	if (el_txn_keys == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = offsetof(ElTxnKey, key);
		ctl.entrysize = sizeof(ElTxnKey);
		ctl.hcxt = TopTransactionContext;
		el_txn_keys = hash_create("event_log transaction keys", 64, &ctl,
								  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	k = hash_search(el_txn_keys, &probe, HASH_ENTER, &found);
	memcpy(k->key, key, EL_SUBJECT_KEY_LEN);
	memcpy(k->key_id, key_id, EL_KEY_ID_LEN);
	return true;
}

static bool
el_subject_key_lookup(Oid relid, const uint8 *id, bool create, uint8 *key, uint8 *key_id)
{
	Oid			types[4] = {REGCLASSOID, BYTEAOID, BYTEAOID, BYTEAOID};
	Datum		values[4];
	bytea	   *idb = el_personal_bytea(id, EL_SUBJECT_ID_LEN);
	bool		found = false;
	/*
	 * The row is locked (FOR KEY SHARE) to the end of the transaction: an
	 * erase_subject() deleting it waits for us, so no append of ours can
	 * encrypt under a key that is erased, and shredded, before we commit.
	 * Taken once per transaction and subject (the keys kept above).  A key
	 * an erasure in progress deletes: its commit makes the row go (none
	 * found, and a new key is made), or, under REPEATABLE READ, a
	 * serialization failure.
	 */
	const char *select_key = "SELECT k.key, k.key_id FROM event_log.subject_keys k"
		" WHERE k.stream OPERATOR(pg_catalog.=) $1"
		" AND k.subject OPERATOR(pg_catalog.=) $2"
		" FOR KEY SHARE OF k";

	values[0] = ObjectIdGetDatum(relid);
	values[1] = PointerGetDatum(idb);

	SPI_connect();
	if (el_catalog_sql(select_key, 2, types, values, NULL, EL_CAT_LATEST, 1) == 1)
		found = true;
	else if (create)
	{
		bytea	   *newkey = el_personal_bytea(NULL, EL_SUBJECT_KEY_LEN);
		bytea	   *newid = el_personal_bytea(NULL, EL_KEY_ID_LEN);

		if (!pg_strong_random(VARDATA(newkey), EL_SUBJECT_KEY_LEN) ||
			!pg_strong_random(VARDATA(newid), EL_KEY_ID_LEN))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate a random key")));
		values[2] = PointerGetDatum(newkey);
		values[3] = PointerGetDatum(newid);

		/*
		 * A concurrent append for the same subject may have made one first;
		 * and an erasure may delete that one before we read it (then we
		 * try again: the row it leaves is gone, and ours can go in).
		 */
		do
		{
			CHECK_FOR_INTERRUPTS();
			found = el_catalog_sql("INSERT INTO event_log.subject_keys (stream, subject, key, key_id)"
								   " VALUES ($1, $2, $3, $4) ON CONFLICT (stream, subject) DO NOTHING"
								   " RETURNING key, key_id",
								   4, types, values, NULL, 0, 0) == 1 ||
				el_catalog_sql(select_key, 2, types, values, NULL, EL_CAT_LATEST, 1) == 1;
		} while (!found);
		explicit_bzero(VARDATA(newkey), EL_SUBJECT_KEY_LEN);
	}
	if (found)
	{
		bool		isnull;
		bytea	   *k = DatumGetByteaPP(el_spi_value(0, 1, &isnull));

		bytea	   *kid = DatumGetByteaPP(el_spi_value(0, 2, &isnull));

		if (VARSIZE_ANY_EXHDR(k) != EL_SUBJECT_KEY_LEN ||
			VARSIZE_ANY_EXHDR(kid) != EL_KEY_ID_LEN)
			elog(ERROR, "malformed key in event_log.subject_keys");
		memcpy(key, VARDATA_ANY(k), EL_SUBJECT_KEY_LEN);
		memcpy(key_id, VARDATA_ANY(kid), EL_KEY_ID_LEN);
	}
	SPI_finish();
	pfree(idb);
	return found;
}

/* A key by its key_id: false once it is erased. */
bool
el_personal_key_by_id(Oid relid, const uint8 *key_id, uint8 *key)
{
	Oid			types[2] = {REGCLASSOID, BYTEAOID};
	Datum		values[2];
	bytea	   *kid = el_personal_bytea(key_id, EL_KEY_ID_LEN);
	bool		found;

	values[0] = ObjectIdGetDatum(relid);
	values[1] = PointerGetDatum(kid);
	SPI_connect();
	found = el_catalog_sql("SELECT k.key FROM event_log.subject_keys k"
						   " WHERE k.key_id OPERATOR(pg_catalog.=) $2"
						   " AND k.stream OPERATOR(pg_catalog.=) $1",
						   2, types, values, NULL, EL_CAT_READ | EL_CAT_LATEST, 1) == 1;
	if (found)
	{
		bool		isnull;
		bytea	   *k = DatumGetByteaPP(el_spi_value(0, 1, &isnull));

		if (VARSIZE_ANY_EXHDR(k) != EL_SUBJECT_KEY_LEN)
			elog(ERROR, "malformed key in event_log.subject_keys");
		memcpy(key, VARDATA_ANY(k), EL_SUBJECT_KEY_LEN);

		/*
		 * Zeros: a row whose erasure committed after our snapshot, copied
		 * as personal_shred.c overwrote it.  Erased.
		 */
		found = false;
		for (int i = 0; i < EL_SUBJECT_KEY_LEN && !found; i++)
			found = key[i] != 0;
	}
	SPI_finish();
	pfree(kid);
	return found;
}

/* The mac of a marker: the key_id and the message, under the secret. */
void
el_personal_marker_mac(const uint8 *secret, const uint8 *key_id, const char *msg, int len,
			  uint8 *mac)
{
	uint8		full[PG_SHA256_DIGEST_LENGTH];

	el_hmac(secret, EL_PERSONAL_SECRET_LEN, key_id, EL_KEY_ID_LEN,
			(const uint8 *) msg, len, full);
	memcpy(mac, full, EL_PERSONAL_MAC_LEN);
}

/* ----------------------------------------------------------------
 * JSON helpers
 * ----------------------------------------------------------------
 */

static void
el_push_string(JsonbParseState **st, JsonbIteratorToken tok, const char *s, int len)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) s;
	v.val.string.len = len;
	(void) pushJsonbValue(st, tok, &v);
}

/* A one-key marker object {"$personal": what} as the value being pushed. */
void
el_personal_push_marker(JsonbParseState **st, const char *what)
{
	(void) pushJsonbValue(st, WJB_BEGIN_OBJECT, NULL);
	el_push_string(st, WJB_KEY, EL_PERSONAL_MARK, strlen(EL_PERSONAL_MARK));
	el_push_string(st, WJB_VALUE, what, strlen(what));
	(void) pushJsonbValue(st, WJB_END_OBJECT, NULL);
}

/* A member of an object by name, or NULL. */
JsonbValue *
el_personal_member(JsonbContainer *c, const char *name, int len)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) name;
	k.val.string.len = len;
	return findJsonbValueFromContainer(c, JB_FOBJECT, &k);
}

/* ----------------------------------------------------------------
 * Encryption at append
 * ----------------------------------------------------------------
 */

/*
 * A declared field as a path of object keys: a name not starting with "/"
 * is one top-level key; one starting with "/" is a JSON pointer (RFC 6901:
 * "/address/street", with "~1" for "/" and "~0" for "~" inside a key).
 */
typedef struct ElPath
{
	const char *field;			/* as declared, for messages */
	int			nsegs;
	char	  **segs;
	int		   *lens;
} ElPath;

static ElPath *
el_personal_paths(ElPersonalDecl *d)
{
	ElPath	   *paths = palloc0(sizeof(ElPath) * Max(d->nfields, 1));

	for (int i = 0; i < d->nfields; i++)
	{
		const char *f = d->fields[i];
		ElPath	   *p = &paths[i];
		int			max = 1;

		p->field = f;
		if (f[0] != '/')
		{
			p->nsegs = 1;
			p->segs = palloc(sizeof(char *));
			p->lens = palloc(sizeof(int));
			p->segs[0] = pstrdup(f);
			p->lens[0] = strlen(f);
			continue;
		}
		for (const char *c = f; *c; c++)
			max += (*c == '/');
		p->segs = palloc(sizeof(char *) * max);
		p->lens = palloc(sizeof(int) * max);
		for (const char *c = f + 1;; c++)
		{
			/* one segment, unescaped (the syntax was checked at declaration) */
			char	   *seg = palloc(strlen(c) + 1);
			int			len = 0;

			for (; *c && *c != '/'; c++)
			{
				if (*c == '~' && (c[1] == '0' || c[1] == '1'))
					seg[len++] = (*++c == '0') ? '~' : '/';
				else
					seg[len++] = *c;
			}
			seg[len] = '\0';
			p->segs[p->nsegs] = seg;
			p->lens[p->nsegs++] = len;
			if (*c == '\0')
				break;
		}
	}
	return paths;
}

static bool
el_seg_is(const ElPath *p, int depth, const JsonbValue *key)
{
	return p->lens[depth] == key->val.string.len &&
		memcmp(p->segs[depth], key->val.string.val, key->val.string.len) == 0;
}

static void
el_path_refused(Relation rel, const ElPath *p, int depth, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_EL_PERSONAL_PATH),
			 errmsg("personal field \"%s\" of an event in \"%s\" cannot be reached",
					p->field, RelationGetRelationName(rel)),
			 errdetail("The value at its step %d is %s, not an object.", depth + 1, what),
			 errhint("Declare the enclosing field personal, or append the field inside an object.")));
}

static const char *
el_json_kind(const JsonbValue *v)
{
	if (v->type == jbvBinary)
		return JsonContainerIsArray(v->val.binary.data) ? "an array" : "an object";
	switch (v->type)
	{
		case jbvString:
			return "a string";
		case jbvNumeric:
			return "a number";
		case jbvBool:
			return "a boolean";
		default:
			return "a scalar";
	}
}

/*
 * Whether another declared field encloses path i (a prefix of it): that one
 * is encrypted whole, whatever shape path i's steps have in the event.
 */
static bool
el_path_covered(const ElPath *paths, int n, int i)
{
	for (int j = 0; j < n; j++)
	{
		bool		prefix = paths[j].nsegs < paths[i].nsegs;

		for (int k = 0; prefix && k < paths[j].nsegs; k++)
			prefix = paths[j].lens[k] == paths[i].lens[k] &&
				memcmp(paths[j].segs[k], paths[i].segs[k], paths[i].lens[k]) == 0;
		if (prefix)
			return true;
	}
	return false;
}

/*
 * Whether the event has the path's field; a path that meets an array or a
 * scalar before its last step is refused (EL031): the value there may hold
 * the personal data in another shape, which must not go in clear.  A
 * missing or null step is no field.
 */
static bool
el_path_present(Relation rel, JsonbContainer *c, const ElPath *p)
{
	for (int depth = 0; depth < p->nsegs; depth++)
	{
		JsonbValue *v = el_personal_member(c, p->segs[depth], p->lens[depth]);

		if (v == NULL)
			return false;
		if (depth == p->nsegs - 1)
			return true;
		if (v->type == jbvNull)
			return false;
		if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
			el_path_refused(rel, p, depth, el_json_kind(v));
		c = v->val.binary.data;
	}
	return false;
}

/* One field's value as an encrypted marker, pushed as the current value. */
static void
el_push_encrypted(JsonbParseState **st, JsonbValue *value, const uint8 *key,
				  const uint8 *secret, const uint8 *key_id)
{
	Jsonb	   *doc = JsonbValueToJsonb(value);
	char	   *plain = JsonbToCString(NULL, &doc->root, VARSIZE(doc));
	int			plen = strlen(plain);
	bytea	   *data = el_personal_bytea(plain, plen);
	bytea	   *kb = el_personal_bytea(key, EL_SUBJECT_KEY_LEN);
	uint8		iv[EL_IV_LEN];
	bytea	   *ct;
	bytea	   *msg;
	char	   *b64;
	int			b64len;
	uint8		mac[EL_PERSONAL_MAC_LEN];
	char		machex[EL_PERSONAL_MAC_LEN * 2];

	if (!pg_strong_random(iv, EL_IV_LEN))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random IV")));
	ct = DatumGetByteaPP(DirectFunctionCall4(el_encrypt_iv,
											 PointerGetDatum(data),
											 PointerGetDatum(kb),
											 PointerGetDatum(el_personal_bytea(iv, EL_IV_LEN)),
											 CStringGetTextDatum(EL_CIPHER)));
	el_wipe_bytea(kb);
	/* the message: the IV, then the ciphertext */
	msg = el_personal_bytea(NULL, EL_IV_LEN + VARSIZE_ANY_EXHDR(ct));
	memcpy(VARDATA(msg), iv, EL_IV_LEN);
	memcpy(VARDATA(msg) + EL_IV_LEN, VARDATA_ANY(ct), VARSIZE_ANY_EXHDR(ct));
	explicit_bzero(VARDATA(data), plen);
	explicit_bzero(plain, plen);

	b64 = palloc(pg_b64_enc_len(VARSIZE_ANY_EXHDR(msg)) + 1);
	b64len = pg_b64_encode(VARDATA_ANY(msg), VARSIZE_ANY_EXHDR(msg), b64,
						   pg_b64_enc_len(VARSIZE_ANY_EXHDR(msg)));
	if (b64len < 0)
		elog(ERROR, "could not encode an encrypted field");
	el_personal_marker_mac(secret, key_id, b64, b64len, mac);
	hex_encode((const char *) mac, EL_PERSONAL_MAC_LEN, machex);

	(void) pushJsonbValue(st, WJB_BEGIN_OBJECT, NULL);
	el_push_string(st, WJB_KEY, EL_PERSONAL_MARK, strlen(EL_PERSONAL_MARK));
	el_push_string(st, WJB_VALUE, b64, b64len);
	el_push_string(st, WJB_KEY, EL_PERSONAL_KEY_ID, strlen(EL_PERSONAL_KEY_ID));
	el_push_string(st, WJB_VALUE, el_personal_hex(key_id, EL_KEY_ID_LEN),
				   EL_KEY_ID_LEN * 2);
	el_push_string(st, WJB_KEY, EL_PERSONAL_MAC, strlen(EL_PERSONAL_MAC));
	/* pushJsonbValue() keeps pointers, not copies: no stack buffer */
	el_push_string(st, WJB_VALUE, pnstrdup(machex, sizeof(machex)), sizeof(machex));
	(void) pushJsonbValue(st, WJB_END_OBJECT, NULL);
}

/* The subject an event names, as text; an error when it names none. */
static char *
el_event_subject(Relation rel, Jsonb *payload, ElPersonalDecl *d, text *type)
{
	JsonbValue *v = el_personal_member(&payload->root, d->subject_field,
							  strlen(d->subject_field));

	if (v != NULL && v->type == jbvString && v->val.string.len > 0)
		return pnstrdup(v->val.string.val, v->val.string.len);
	if (v != NULL && v->type == jbvNumeric)
		return DatumGetCString(DirectFunctionCall1(numeric_out,
												   NumericGetDatum(v->val.numeric)));
	ereport(ERROR,
			(errcode(ERRCODE_EL_NO_SUBJECT),
			 errmsg("event of type \"%s\" in \"%s\" has personal fields but no data subject",
					text_to_cstring(type), RelationGetRelationName(rel)),
			 errdetail("Its payload's field \"%s\" must be a non-empty string or a number.",
					   d->subject_field),
			 errhint("The stream's declaration names the subject's field (event_log.personal_fields).")));
	return NULL;				/* keep the compiler quiet */
}

/* What el_protect_object() encrypts with, and which paths. */
typedef struct ElProtect
{
	const uint8 *key;
	const uint8 *secret;
	const uint8 *key_id;
	ElPath	   *paths;
	int			npaths;
} ElProtect;

/*
 * An object pushed with the declared fields encrypted: `live` lists the
 * paths whose first `depth` steps led here (NULL at the top: all).  A field
 * a path ends at is encrypted whole (an enclosing field declared too wins:
 * the whole value is encrypted once); one a longer path goes through is
 * rebuilt the same way; the rest is pushed as it is.  Returns the object
 * (the document at the top).
 */
static JsonbValue *
el_protect_object(ElProtect *pr, JsonbParseState **st, JsonbContainer *c,
				  int *live, int nlive, int depth)
{
	JsonbIterator *it = JsonbIteratorInit(c);
	JsonbIteratorToken r;
	JsonbValue	v;
	JsonbValue *res = NULL;
	int			n = live ? nlive : pr->npaths;
	int		   *next = palloc(sizeof(int) * Max(n, 1));

	while ((r = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		bool		ends = false;
		int			nnext = 0;

		if (r != WJB_KEY)
		{
			res = pushJsonbValue(st, r, r < WJB_BEGIN_ARRAY ? &v : NULL);
			continue;
		}
		for (int i = 0; i < n; i++)
		{
			ElPath	   *p = &pr->paths[live ? live[i] : i];

			if (!el_seg_is(p, depth, &v))
				continue;
			if (p->nsegs == depth + 1)
				ends = true;
			else
				next[nnext++] = live ? live[i] : i;
		}
		(void) pushJsonbValue(st, WJB_KEY, &v);
		r = JsonbIteratorNext(&it, &v, true);
		Assert(r == WJB_VALUE);
		if (ends)
			el_push_encrypted(st, &v, pr->key, pr->secret, pr->key_id);
		else if (nnext > 0 && v.type == jbvBinary && JsonContainerIsObject(v.val.binary.data))
			(void) el_protect_object(pr, st, v.val.binary.data, next, nnext, depth + 1);
		else
			(void) pushJsonbValue(st, WJB_VALUE, &v);	/* el_path_present() checked the rest */
	}
	pfree(next);
	return res;
}

bool
el_personal_declared(Oid relid)
{
	return el_personal_entry(relid)->has_personal;
}

bool
el_personal_protect(Relation rel, Datum type, Datum *payload)
{
	Oid			relid = RelationGetRelid(rel);
	ElPersonalEntry *entry = el_personal_entry(relid);
	ElPersonalDecl *d;
	text	   *typetext;
	Jsonb	   *doc;
	ElPath	   *paths;
	JsonbParseState *st = NULL;
	JsonbValue *res = NULL;
	bool		any = false;
	char	   *subject;
	uint8		id[EL_SUBJECT_ID_LEN];
	uint8		key[EL_SUBJECT_KEY_LEN];
	uint8		key_id[EL_KEY_ID_LEN];
	uint8		secret[EL_PERSONAL_SECRET_LEN];

	if (!entry->has_personal)
		return false;
	typetext = DatumGetTextPP(type);
	d = el_personal_decl(entry, VARDATA_ANY(typetext), VARSIZE_ANY_EXHDR(typetext));
	if (d == NULL)
		return false;
	doc = DatumGetJsonbP(*payload);

	/*
	 * A payload that is not an object may hold the declared fields in
	 * another shape (an array of objects, say), which would be stored in
	 * clear: refused, as an array or a scalar on the way to a nested field
	 * is (el_path_refused()).
	 */
	if (!JB_ROOT_IS_OBJECT(doc))
		ereport(ERROR,
				(errcode(ERRCODE_EL_PERSONAL_PATH),
				 errmsg("personal fields of an event in \"%s\" cannot be reached",
						RelationGetRelationName(rel)),
				 errdetail("The event's payload is %s, not an object.",
						   JB_ROOT_IS_SCALAR(doc) ? "a scalar" : "an array"),
				 errhint("Events of a type with personal fields need an object as their payload.")));
	paths = el_personal_paths(d);
	for (int i = 0; i < d->nfields; i++)
		if (!el_path_covered(paths, d->nfields, i))
			any |= el_path_present(rel, &doc->root, &paths[i]);
	if (!any)
		return false;

	/* copies: the lookups below may reset the cache under `entry` */
	memcpy(secret, entry->secret, sizeof(secret));
	subject = el_event_subject(rel, doc, d, typetext);
	el_personal_subject_id(secret, subject, strlen(subject), id);
	explicit_bzero(subject, strlen(subject));
	{
		ElProtect	pr;

		el_load_pgcrypto();
		if (!el_subject_key(relid, id, true, key, key_id))
			elog(ERROR, "could not make a key for a data subject");
		pr.key = key;
		pr.secret = secret;
		pr.key_id = key_id;
		pr.paths = paths;
		pr.npaths = d->nfields;
		res = el_protect_object(&pr, &st, &doc->root, NULL, 0, 0);
	}
	explicit_bzero(key, sizeof(key));
	explicit_bzero(secret, sizeof(secret));
	*payload = JsonbPGetDatum(JsonbValueToJsonb(res));
	return true;
}

/* A marker's message (base64: IV, ciphertext) decrypted with key. */
bytea *
el_personal_decrypt(const uint8 *key, const char *b64, int len)
{
	char	   *raw;
	int			rawlen;
	bytea	   *kb;
	bytea	   *plain;

	el_load_pgcrypto();
	raw = palloc(pg_b64_dec_len(len) + 1);
	rawlen = pg_b64_decode(b64, len, raw, pg_b64_dec_len(len));
	if (rawlen <= EL_IV_LEN)
		elog(ERROR, "malformed encrypted field");
	kb = el_personal_bytea(key, EL_SUBJECT_KEY_LEN);
	plain = DatumGetByteaPP(DirectFunctionCall4(el_decrypt_iv,
												PointerGetDatum(el_personal_bytea(raw + EL_IV_LEN,
																				  rawlen - EL_IV_LEN)),
												PointerGetDatum(kb),
												PointerGetDatum(el_personal_bytea(raw, EL_IV_LEN)),
												CStringGetTextDatum(EL_CIPHER)));
	el_wipe_bytea(kb);
	return plain;
}

/* ----------------------------------------------------------------
 * drop_stream()
 * ----------------------------------------------------------------
 */

void
el_personal_forget(Oid relid)
{
	Oid			types[1] = {REGCLASSOID};
	Datum		values[1] = {ObjectIdGetDatum(relid)};

	if (!el_personal_catalog_present())
		return;
	SPI_connect();
	el_personal_shred_later(el_catalog_sql("DELETE FROM event_log.subject_keys k"
										   " WHERE k.stream OPERATOR(pg_catalog.=) $1"
										   " RETURNING k.ctid, k.key",
										   1, types, values, NULL, 0, 0));
	(void) el_catalog_sql("DELETE FROM event_log.personal_readers r"
						  " WHERE r.stream OPERATOR(pg_catalog.=) $1",
						  1, types, values, NULL, 0, 0);
	(void) el_catalog_sql("DELETE FROM event_log.personal_fields f"
						  " WHERE f.stream OPERATOR(pg_catalog.=) $1",
						  1, types, values, NULL, 0, 0);
	(void) el_catalog_sql("DELETE FROM event_log.personal_streams s"
						  " WHERE s.stream OPERATOR(pg_catalog.=) $1",
						  1, types, values, NULL, 0, 0);
	SPI_finish();
}
