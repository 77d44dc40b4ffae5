/*-------------------------------------------------------------------------
 *
 * archive.h
 *	  The archive of removed events (archive.c): written by retention,
 *	  read, exported and imported by its SQL functions.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EL_ARCHIVE_H
#define EL_ARCHIVE_H

#include "postgres.h"

#include "tcop/dest.h"
#include "utils/snapshot.h"
#include "utils/tuplestore.h"

extern void el_archive_range(Oid relid, int32 shard, int64 from, int64 to);
extern void el_archive_range_from(Oid relid, Oid source, int32 shard,
								  int64 from, int64 to);
extern void el_require_archive_catalog(void);
extern uint64 el_archive_fetch(Oid relid, int32 shard, int64 after, int64 limit);
extern void el_archive_missing(Oid relid, int32 shard, int64 seq) pg_attribute_noreturn();
extern uint64 el_archive_read_shard(Oid relid, int32 shard, int64 after,
									int64 max_count, int64 low, Datum types,
									DestReceiver *dest, int64 *last);
extern bool el_archive_covers(Oid relid, int32 shard, int64 low);
extern int64 el_archive_replay_key(Oid relid, int32 shard, text *key,
								   int64 after, int64 before, int64 low,
								   Tuplestorestate *store, TupleDesc desc);
extern void el_check_archive_reader(Oid relid);
extern int32 el_archive_uncovered(Oid relid, Snapshot snap, bool *removed,
								  int64 *low);
extern uint64 el_archive_search(Oid relid, bool by_correlation, Datum id);
extern uint64 el_archive_read_event(Oid relid, Datum id, Tuplestorestate *store,
									TupleDesc desc);
extern uint64 el_archive_read_time(Oid relid, Datum since, Datum until,
								   int32 after_shard, int64 after_seq,
								   int64 max_count, Tuplestorestate *store,
								   TupleDesc desc);
extern char *el_sha256_hex(const char *data, size_t len);

#endif							/* EL_ARCHIVE_H */
