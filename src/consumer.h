/*
 * consumer.h
 *	  The consumer group subsystem's shared types and limits, the
 *	  statements it runs on its catalog, and what each of its files
 *	  exports to the others.
 */
#ifndef EL_CONSUMER_H
#define EL_CONSUMER_H

#include "postgres.h"

#include "fmgr.h"
#include "storage/lock.h"
#include "tcop/dest.h"

/* ---- What the rest of the extension uses ---- */

/* At load time: transaction callbacks, the commit hook, drop_stream()'s callback. */
extern void el_consumer_init(void);

/* ---- Inside the subsystem ---- */

/* Limits that input is checked against. */
#define EL_MAX_NAME_BYTES	200		/* group and member names */
#define EL_MAX_POLL			100000	/* max_count of one poll() */
#define EL_MAX_WAIT_MS		(3600 * 1000)	/* wait of one poll() */

/*
 * The statements we run against the group catalog, as its owner (see
 * el_query()).  Each is prepared once per backend and kept.
 *
 * They must mean the same whoever calls and whatever the caller's
 * search_path: a role's own =(regclass, regclass) in a schema on its path
 * beats pg_catalog's binary-coercible one, and would run as the catalog's
 * owner.  So el_query() pins the path to pg_catalog alone around preparing
 * and running them, and they also name every table, type, operator,
 * function and collation schema-qualified (operators as
 * OPERATOR(pg_catalog.op)), so that nothing depends on the path, not even a
 * kept plan that the plan cache analyzes again after an invalidation.
 * sql/hostile_consumers.sql shadows each of these names.
 */
typedef enum ElQuery
{
	Q_GROUP_FIND,
	Q_GROUP_FIND_TYPES,
	Q_GROUP_TYPES,
	Q_GROUP_SUBSCRIBE,
	Q_GROUP_CREATE,
	Q_OFFSETS_CREATE,
	Q_GROUP_DROP,
	Q_GROUPS_EXIST,
	Q_STREAM_FORGET,
	Q_MEMBER_JOIN,
	Q_MEMBER_RENEW,
	Q_MEMBER_TAKE_OVER,
	Q_MEMBERS_EXPIRE,
	Q_SETTLE,
	Q_SHARDS_LOCK,
	Q_SHARDS_ASSIGN,
	Q_OFFSET_LOCK,
	Q_OFFSET_SET,
	Q_OFFSET_ADVANCE,
	Q_OFFSETS_AUTO,
	Q_OFFSET_GET,
	Q_GROUP_OFFSET_RESET,
	Q_GROUP_SET_OFFSET_RESET,
	Q_OFFSET_JUMP,
	Q_MEMBER_GET,
	EL_NUM_QUERIES
} ElQuery;

typedef struct ElGroup
{
	int32		id;
	Oid			owner;
	Oid			relid;			/* the stream */
	int			shards;
	text	   *name;
	bool		typed;			/* the catalog has consumer_groups.types (0.3) */
	Datum		types;			/* the group's types; (Datum) 0: none */
} ElGroup;

/* One shard's row with its lease holder, as EL_LEASE_COLUMNS returns it. */
typedef struct ElLease
{
	int32		shard;
	char	   *member;			/* NULL: nobody */
	bool		has_member_row; /* the holder is in consumer_members */
	int32		lock_id;
	bool		unexpired;
	int64		committed_seq;
} ElLease;

/* consumer_group.c */
extern uint64 el_query(ElQuery q, Datum *values, const char *nulls, long tcount);
extern void el_result_lease(uint64 row, ElLease *lease);
extern Datum el_int4_array(const int32 *items, int n);
extern Datum el_int8_array(const int64 *items, int n);
extern void el_check_name(text *name, const char *what);
extern char *el_session_member(void);
extern char *el_member_arg(FunctionCallInfo fcinfo, int argno);
extern void el_group_forget(void);
extern void el_group_check_owner(ElGroup *g);
extern void el_group_begin(ElGroup *g, FunctionCallInfo fcinfo, bool create);
extern void el_group_reopen(ElGroup *g);
extern Datum el_group_types(ElGroup *g, Datum types);
extern void el_consumer_cache_init(void);
extern bool el_consumer_groups_exist(Oid relid);
extern void el_consumer_forget_stream(Oid relid, const char *qname, bool cascade);
extern int64 el_shard_seen_end(Oid relid, int32 shard);
extern void el_shard_saw(Oid relid, int32 shard, int64 seq);
extern bool el_stream_has_consumers(Oid relid);

/* consumer_deadletter.c: nack(), and polls delivering retried events */
extern uint64 el_redeliver_nacked(ElGroup *g, const int32 *shards, int n, int64 *left,
								  DestReceiver *dest);
extern uint64 el_ack_redelivered(ElGroup *g, const int32 *shards, const int64 *seqs, int n);

/* consumer.c: what the last poll of the session delivered */
extern void el_last_poll_redelivered(int32 shard, int64 seq);
extern void el_forget_nacks(int32 group_id, Oid relid);

/* consumer_member.c */
extern void el_check_lease(ElGroup *g, const ElLease *lease, const char *me);
extern bool el_member_held_here(int32 group_id, const char *me, int32 *lock_id);
extern void el_check_member_here(ElGroup *g, const char *me);
extern int el_settle_shards(ElGroup *g, const char *me, int32 *shards, int64 *after);

/* consumer_retention.c */
extern void el_poll_check_watermarks(ElGroup *g, const int32 *shards,
									 int64 *after, int nheld,
									 int64 *archive_low);

#endif							/* EL_CONSUMER_H */
