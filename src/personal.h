/*
 * personal.h
 *	  Personal fields and their erasure (personal.c, erasure.c): declared
 *	  payload fields (top-level, or nested ones named by a JSON pointer) are
 *	  encrypted at append with a key per data subject, decrypted where
 *	  events are read for the roles allowed to, and
 *	  made unreadable for good by deleting the subject's key
 *	  (docs/erasure.md, docs/design/erasure.md).
 */
#ifndef EL_PERSONAL_H
#define EL_PERSONAL_H

#include "postgres.h"

#include "tcop/dest.h"
#include "utils/jsonb.h"
#include "utils/relcache.h"

/* ----------------------------------------------------------------
 * What the rest of the extension uses
 * ----------------------------------------------------------------
 */

extern void el_personal_init(void);

/*
 * The append trigger's one call, after the schema check and before the
 * shard lock: the payload with the event's personal fields encrypted.
 * Returns false (and leaves *payload alone) when there is nothing to do.
 */
extern bool el_personal_protect(Relation rel, Datum type, Datum *payload);

/*
 * Whether the stream declares personal fields: its appends may then create
 * a data subject's key, which other appenders of the subject wait for.
 */
extern bool el_personal_declared(Oid relid);

/*
 * Readers: a receiver that passes the rows of a stream's read plan on to
 * `inner` with their payloads as the caller may see them.  `inner` itself
 * when the stream has no personal fields.
 */
extern DestReceiver *el_personal_reveal_dest(Oid relid, DestReceiver *inner);

/* The same for one payload; per-call state from el_personal_reveal_begin(). */
typedef struct ElReveal ElReveal;
extern ElReveal *el_personal_reveal_begin(Oid relid);
extern Datum el_personal_reveal(ElReveal *state, Datum payload);

/* erase_subject(): forget the keys this transaction has appended with. */
extern void el_personal_forget_keys(void);

/* drop_stream(): the stream's declarations, keys and readers go with it. */
extern void el_personal_forget(Oid relid);

/*
 * personal_shred.c: the keys of the rows a DELETE ... RETURNING ctid, key
 * on event_log.subject_keys left in SPI_tuptable are overwritten in their
 * page when the transaction commits (erase_subject(), drop_stream()).
 */
extern void el_personal_shred_init(void);
extern void el_personal_shred_later(uint64 nrows);

/* ----------------------------------------------------------------
 * What personal.c and erasure.c share
 * ----------------------------------------------------------------
 */

#define EL_SUBJECT_ID_LEN	32	/* HMAC-SHA-256 */
#define EL_SUBJECT_KEY_LEN	32
#define EL_KEY_ID_LEN		16	/* random: names a key in markers */
#define EL_PERSONAL_SECRET_LEN	32

/* The marker's keys, and the markers readers see instead of a value. */
#define EL_PERSONAL_MARK	"$personal"
#define EL_PERSONAL_KEY_ID	"key"
#define EL_PERSONAL_MAC		"mac"
#define EL_PERSONAL_HIDDEN	"hidden"
#define EL_PERSONAL_ERASED	"erased"

extern bool el_personal_catalog_present(void);
extern void el_personal_require_catalog(void);
extern bool el_personal_stream_secret(Oid relid, uint8 *secret);
extern void el_personal_subject_id(const uint8 *secret, const char *subject,
								   int len, uint8 *id);
extern char *el_personal_hex(const uint8 *bytes, int len);

/* The mac's length in bytes: a truncated HMAC-SHA-256. */
#define EL_PERSONAL_MAC_LEN	16

/* personal.c, for personal_read.c */
extern JsonbValue *el_personal_member(JsonbContainer *c, const char *name, int len);
extern void el_personal_push_marker(JsonbParseState **st, const char *what);
extern void el_personal_marker_mac(const uint8 *secret, const uint8 *key_id,
								   const char *msg, int len, uint8 *mac);
extern bool el_personal_key_by_id(Oid relid, const uint8 *key_id, uint8 *key);
extern bytea *el_personal_decrypt(const uint8 *key, const char *b64, int len);
extern bytea *el_personal_bytea(const void *data, int len);

#endif							/* EL_PERSONAL_H */
