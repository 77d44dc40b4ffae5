/*
 * event_log.h
 *	  Declarations shared by the event_log extension's source files: the
 *	  stream table's shape, our SQLSTATEs, and the helpers each file exports.
 */
#ifndef EVENT_LOG_H
#define EVENT_LOG_H

#include "postgres.h"

#include "executor/spi.h"
#include "storage/lock.h"
#include "fmgr.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
#include "utils/uuid.h"

#include "catalog.h"

/* Limits that input is checked against. */
#define EL_MAX_SHARDS		1024
#define EL_MAX_KEY_BYTES	1024
#define EL_MAX_TYPE_BYTES	256

/*
 * Shard locks are advisory-type heavyweight locks in a key space of our own:
 * (database, stream oid, shard, EL_LOCKTAG_SPACE).  The SQL advisory lock
 * functions only ever use 1 or 2 in the last field, so they cannot collide.
 * In pg_locks a shard lock shows as locktype 'advisory' with classid = the
 * stream's oid, objid = the shard and objsubid = 17740.
 */
#define EL_LOCKTAG_SPACE	0x454C

/*
 * A projection's lock, in the same way: (database, view oid, 0, 0x4550).
 * Rebuilds, alter_projection(), drop_projection() and async runs of the
 * projection take it until their transaction ends.
 */
#define EL_PROJECTION_LOCK_SPACE	0x4550

/*
 * Consumer groups use two more spaces of the same kind (docs/consumers.md):
 * a member's liveness lock (database, lock_id, 0, 17741) and the lock a
 * waiting poll() holds on a stream (database, stream oid, 0, 17751).
 * Advisory-type locks because only those are session locks that the
 * backend's exit releases and a transaction abort keeps.
 */
#define EL_MEMBER_LOCKTAG_SPACE	0x454D
#define EL_WAIT_LOCKTAG_SPACE	0x4557

/* The background worker of a database: (database, 0, 0, 0x5752). */
#define EL_WORKER_LOCKTAG_SPACE	0x5752

/* Attribute numbers of the contract columns of every stream table. */
#define Anum_el_shard		1
#define Anum_el_seq			2
#define Anum_el_key			3
#define Anum_el_version		4
#define Anum_el_type		5
#define Anum_el_payload		6
#define Anum_el_metadata	7
#define Anum_el_event_id	8
#define Anum_el_recorded_at 9
#define EL_NATTS			9

/* The contract columns' names and types, in order (immutable.c). */
typedef struct ElColumn
{
	const char *name;
	Oid			type;
} ElColumn;
extern const ElColumn el_columns[EL_NATTS];

/* Names of the triggers create_stream() installs. */
#define EL_APPEND_TRIGGER		"event_log_append"
#define EL_IMMUTABLE_TRIGGER	"event_log_immutable"

/* Our own error conditions (documented in docs/streams.md). */
#define ERRCODE_EL_VERSION_CONFLICT	MAKE_SQLSTATE('E','L','0','0','1')
#define ERRCODE_EL_IMMUTABLE		MAKE_SQLSTATE('E','L','0','0','2')
/* ... and in docs/consumers.md */
#define ERRCODE_EL_LEASE_HELD		MAKE_SQLSTATE('E','L','0','0','3')
#define ERRCODE_EL_OFFSET_BACKWARDS	MAKE_SQLSTATE('E','L','0','0','4')
#define ERRCODE_EL_MEMBER_IN_USE	MAKE_SQLSTATE('E','L','0','0','5')
/* ... and in docs/projections.md */
#define ERRCODE_EL_HANDLER_TIMEOUT	MAKE_SQLSTATE('E','L','0','1','0')

/* event_log.c: GUCs and small shared helpers */
extern int	el_max_payload_size;
extern int	el_lease_timeout;
extern void el_require_arg(FunctionCallInfo fcinfo, int argno, const char *name);

/* stream.c: the stream registry */
typedef struct ElStreamIndexes
{
	Oid			pk;				/* unique (shard, seq) */
	Oid			event_id;		/* unique (event_id) */
	Oid			key_version;	/* unique (key, version) */
} ElStreamIndexes;

extern int	el_registry_shards(Oid relid);
extern int	el_stream_shards(Oid relid);
extern int64 el_shard_seen_end(Oid relid, int32 shard);
extern void el_shard_saw(Oid relid, int32 shard, int64 seq);
extern int	el_require_stream(Oid relid);
extern int	el_lock_stream(Oid relid, LOCKMODE lockmode);
extern bool el_find_stream_indexes(Relation rel, ElStreamIndexes *out);
extern const ElStreamIndexes *el_stream_indexes(Relation rel);

typedef enum ElPlanKind
{
	EL_PLAN_INSERT,				/* append(): INSERT (key, type, payload, ...) */
	EL_PLAN_READ,				/* read(): one shard after a seq */
	EL_PLAN_REPLAY,				/* replay(): one key after a version */
	EL_PLAN_LAST,				/* the last seq of one shard */
	EL_NUM_PLANS
} ElPlanKind;

extern SPIPlanPtr el_stream_plan(Oid relid, ElPlanKind kind);
extern void el_stream_cache_init(void);
extern char *el_stream_name(Oid relid);
extern List *el_parse_name(const char *name, const char *what);
extern bool el_stream_has_consumers(Oid relid);

/* hash.c */
extern int	el_shard_for_key(const char *key, int len, int shards);

/* append.c: position assignment */
extern void el_check_key(text *key);

/* read.c */
extern uint64 el_read_shard(Oid relid, int32 shard, int64 after_seq,
							int64 max_count, DestReceiver *dest);
extern int64 el_shard_end(Oid relid, int32 shard);
extern void el_check_shard(Oid relid, int shards, int32 shard);
extern void el_check_select(Oid relid);
extern Tuplestorestate *el_result_store(FunctionCallInfo fcinfo,
										bool expected_desc);

/* consumer.c: consumer groups */
extern void el_consumer_init(void);
extern void el_consumer_note_append(Oid relid);
extern void el_wait_tag(LOCKTAG *tag, Oid relid);
extern bool el_consumer_groups_exist(Oid relid);
extern void el_consumer_forget_stream(Oid relid);

/* immutable.c */
extern bool el_has_event_columns(TupleDesc desc);
extern Oid	el_drop_allowed_relid;

/* projection.c */
#define EL_PROJECTION_TRIGGER	"event_log_projection_"
extern bool el_projection_ddl;


extern int	el_retry_interval;
extern int	el_handler_timeout;
extern int64 el_run_projection_turn(Oid view, int64 max_events, TimestampTz deadline);
extern void el_worker_exit(int code, Datum arg);
extern void el_note_overrun(void);

/* worker.c */
extern int	el_worker_naptime;
extern int	el_worker_batch_size;
extern void el_register_launcher(void);
extern void el_wake_launcher_at_commit(void);
extern bool el_is_projection_relation(Oid relid);
extern int	el_inline_projections(Oid stream);
extern char *el_projections_of_stream(Oid stream);

/* projection_setplan.c: set-based replay of projection builds */
typedef struct ElSetPlan ElSetPlan;
/*
 * An event of a batch: its fields, the stream's tuple they are in (if it
 * has the event's columns and no others), and the handler it goes to.
 */
typedef struct ElSetEvent
{
	Datum		values[EL_NATTS];
	bool		nulls[EL_NATTS];
	HeapTupleHeader tuple;		/* or NULL */
	uint32		len;			/* of tuple */
	int			handler;		/* the caller's */
} ElSetEvent;
extern ElSetPlan *el_setplan_prepare(SPIPlanPtr plan, Oid *table, AttrNumber *keycol,
									 const char **why);
extern const char *el_setplan_table_ok(Oid table, AttrNumber keycol);
extern void el_setplan_run(ElSetPlan *bp, int count, ElSetEvent **events, bool plain);

#endif							/* EVENT_LOG_H */
