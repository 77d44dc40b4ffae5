/*
 * append.h
 *	  Appending (append.c, append_batch.c, event.c): the steps of an append that
 *	  append() and append_events() share, in the order they run.  Every
 *	  path inserts through the stream's append trigger, which assigns the
 *	  positions; these steps add the checks that need the shard lock first.
 */
#ifndef EL_APPEND_H
#define EL_APPEND_H

#include "postgres.h"

#include "utils/relcache.h"
#include "utils/uuid.h"

/* Where an event of an append() or append_events() call stands. */
typedef struct ElAppended
{
	int32		shard;
	int64		seq;
	int64		version;
	pg_uuid_t	event_id;
	bool		duplicate;		/* an earlier event with this event_id */
} ElAppended;

/* Checks of the input, before anything is locked. */
extern int	el_append_check_stream(Oid relid);
extern void el_check_expected_version(int64 expected);
extern void el_check_same_key(pg_uuid_t *event_id, text *old_key, text *key);

/* event.c: an event's fields, on every append path. */
extern void el_check_type(text *type);
extern void el_check_document(Datum doc, const char *what);
extern void el_refuse_supplied(Relation rel, int attnum);
extern void el_refuse_null(Relation rel, int attnum);
extern bool el_add_session_ids(Datum *metadata, bool *isnull);
extern void el_require_stream_guards(Oid relid);

/*
 * Under the stream's lock (el_append_open()) and, but for
 * el_append_insert(), the shard's.
 */
extern Relation el_append_open(Oid relid, int *shards);
extern int32 el_append_lock_key(Relation rel, int shards, text *key);
extern void el_append_lock_shard(Relation rel, int32 shard);
extern bool el_append_existing(Relation rel, text *key, pg_uuid_t *event_id,
							   ElAppended *out);
extern void el_append_expect(Relation rel, text *key, int64 expected);
extern void el_append_insert(Oid relid, text *key, Datum type, Datum payload,
							 Datum metadata, bool metadata_null,
							 pg_uuid_t *event_id, ElAppended *out);
extern pg_uuid_t *el_new_uuid(void);	/* event.c */

#endif							/* EL_APPEND_H */
