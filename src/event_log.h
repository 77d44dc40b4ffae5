/*
 * event_log.h
 *	  What every file of the extension shares: the stream contract (its
 *	  columns, limits, trigger names), our lock-tag spaces and SQLSTATEs,
 *	  and the settings.  Each module's own exports are in its header;
 *	  docs/design/architecture.md shows the layers.
 */
#ifndef EVENT_LOG_H
#define EVENT_LOG_H

#include "postgres.h"

#include "fmgr.h"

/* Limits that input is checked against. */
#define EL_MAX_SHARDS		1024
#define EL_MAX_KEY_BYTES	1024
#define EL_MAX_TYPE_BYTES	256

/*
 * pages_per_range of the BRIN index on recorded_at that create_stream()
 * makes (and the 0.3 update script, for older streams).
 */
#define EL_TIME_PAGES_PER_RANGE	32

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

/*
 * Names of the triggers create_stream() installs, and the prefix of the
 * names of inline projections' triggers on a stream (reserved: the guards
 * refuse other triggers so named).
 */
#define EL_APPEND_TRIGGER		"event_log_append"
#define EL_IMMUTABLE_TRIGGER	"event_log_immutable"
#define EL_PROJECTION_TRIGGER	"event_log_projection_"

/* Our own error conditions (documented in docs/streams.md). */
#define ERRCODE_EL_VERSION_CONFLICT	MAKE_SQLSTATE('E','L','0','0','1')
#define ERRCODE_EL_IMMUTABLE		MAKE_SQLSTATE('E','L','0','0','2')
/* ... and in docs/consumers.md */
#define ERRCODE_EL_LEASE_HELD		MAKE_SQLSTATE('E','L','0','0','3')
#define ERRCODE_EL_OFFSET_BACKWARDS	MAKE_SQLSTATE('E','L','0','0','4')
#define ERRCODE_EL_MEMBER_IN_USE	MAKE_SQLSTATE('E','L','0','0','5')
/* ... and in docs/projections.md */
#define ERRCODE_EL_HANDLER_TIMEOUT	MAKE_SQLSTATE('E','L','0','1','0')
/* ... and in docs/schemas.md */
#define ERRCODE_EL_SCHEMA_VIOLATION	MAKE_SQLSTATE('E','L','0','2','0')
#define ERRCODE_EL_SCHEMA_MISSING	MAKE_SQLSTATE('E','L','0','2','1')
#define ERRCODE_EL_SCHEMA_INCOMPATIBLE	MAKE_SQLSTATE('E','L','0','2','2')
/* an event with personal fields names no data subject (docs/erasure.md) */
#define ERRCODE_EL_NO_SUBJECT		MAKE_SQLSTATE('E','L','0','3','0')
/* a nested personal field's path goes through an array or a scalar */
#define ERRCODE_EL_PERSONAL_PATH	MAKE_SQLSTATE('E','L','0','3','1')
/* retention.c: a read below a shard's low watermark (Kafka's OFFSET_OUT_OF_RANGE) */
#define ERRCODE_EL_OUT_OF_RANGE		MAKE_SQLSTATE('E','L','0','4','0')

/*
 * Settings (event_log.c defines them all; docs/ lists them with their
 * meaning).  Boot values here, once.
 */
#define EL_DEFAULT_MAX_PAYLOAD_SIZE		(16 * 1024)	/* kB */
#define EL_DEFAULT_LEASE_TIMEOUT		30000	/* ms */
#define EL_DEFAULT_RETRY_INTERVAL		10000	/* ms */
#define EL_DEFAULT_HANDLER_TIMEOUT		5000	/* ms */
#define EL_DEFAULT_WORKER_NAPTIME		1000	/* ms */
#define EL_DEFAULT_WORKER_BATCH_SIZE	10000	/* events */
#define EL_DEFAULT_RETENTION_INTERVAL	60000	/* ms */
#define EL_DEFAULT_SHARD_LOCK_SPIN		1000	/* microseconds */

extern int	el_max_payload_size;
extern int	el_lease_timeout;
extern int	el_retry_interval;
extern int	el_handler_timeout;
extern int	el_worker_naptime;
extern int	el_worker_batch_size;
extern int	el_retention_interval;
extern int	el_shard_lock_spin;

/*
 * event_log.upcast: whether the readers (read(), read_all(), replay(),
 * read_event(), read_by_time(), conversation(), poll()) hand out payloads upcast to their
 * type's latest schema version (docs/schemas.md, "Upcasting on read").
 */
extern bool el_upcast_reads;

/*
 * event_log.correlation_id and event_log.causation_id: metadata the append
 * trigger adds to events that do not give their own (docs/conversations.md).
 * Empty: none.  At most EL_MAX_CONVERSATION_ID_BYTES bytes.
 */
#define EL_MAX_CONVERSATION_ID_BYTES	256
extern char *el_correlation_id;
extern char *el_causation_id;

/* event_log.c: small helpers every SQL function may use */
extern void el_require_arg(FunctionCallInfo fcinfo, int argno, const char *name);

#endif							/* EVENT_LOG_H */
