/*
 * consumer.c
 *	  Consumer groups: committed offsets per (group, stream, shard), shard
 *	  leases shared by a group's members, poll() with an optional wait for new
 *	  events, and the wake-up that appending transactions send at commit.
 *
 *	  The decisions behind this file are in docs/design/consumers.md.  The
 *	  group catalog (event_log.consumer_groups, consumer_offsets,
 *	  consumer_members) is read and written through kept SPI plans run as the
 *	  catalog's owner, the way PostgreSQL's foreign key triggers run as the
 *	  table owner; the stream itself is always read as the caller.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "executor/spi.h"
#include "executor/tstoreReceiver.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "storage/sinvaladt.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "event_log.h"

/*
 * From libpq/libpq.h, which we cannot include: it includes libpq-be.h, which
 * needs GSSAPI headers (libkrb5-dev) that nothing else here needs.  The
 * backend's wait set for its client connection, and where pq_init() puts
 * the socket in it (PostgreSQL 14 to 17 alike).
 */
#if PG_VERSION_NUM < 140000 || PG_VERSION_NUM >= 180000
#error "check FeBeWaitSet in libpq/libpq.h for this PostgreSQL version"
#endif
extern PGDLLIMPORT WaitEventSet *FeBeWaitSet;
#define EL_FEBE_SOCKET_POS	0	/* FeBeWaitSetSocketPos */
#define EL_FEBE_NEVENTS		3	/* FeBeWaitSetNEvents */

PG_FUNCTION_INFO_V1(el_poll);
PG_FUNCTION_INFO_V1(el_commit_offset);
PG_FUNCTION_INFO_V1(el_committed_offset);
PG_FUNCTION_INFO_V1(el_reset_offsets);
PG_FUNCTION_INFO_V1(el_drop_group);
PG_FUNCTION_INFO_V1(el_channel);
PG_FUNCTION_INFO_V1(el_shard_status);

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
	Q_GROUP_CREATE,
	Q_OFFSETS_CREATE,
	Q_GROUP_DROP,
	Q_GROUPS_EXIST,
	Q_STREAM_FORGET,
	Q_MEMBERS,
	Q_MEMBER_JOIN,
	Q_MEMBER_RENEW,
	Q_MEMBER_TAKE_OVER,
	Q_MEMBERS_EXPIRE,
	Q_SHARDS,
	Q_SHARDS_LOCK,
	Q_SHARDS_ASSIGN,
	Q_OFFSET_LOCK,
	Q_OFFSET_SET,
	Q_OFFSET_ADVANCE,
	Q_OFFSETS_AUTO,
	Q_OFFSET_GET,
	EL_NUM_QUERIES
} ElQuery;

/* The columns of Q_SHARDS, Q_SHARDS_LOCK and Q_OFFSET_LOCK start alike. */
#define EL_LEASE_COLUMNS \
	"o.shard, o.member, m.lock_id," \
	" m.expires_at OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp(), o.committed_seq" \
	" FROM event_log.consumer_offsets o" \
	" LEFT JOIN event_log.consumer_members m" \
	" ON m.group_id OPERATOR(pg_catalog.=) o.group_id" \
	" AND m.member OPERATOR(pg_catalog.=) o.member"

/* A new lease's end: now plus $3 (the lease timeout) milliseconds. */
#define EL_LEASE_END_3 \
	"pg_catalog.clock_timestamp()" \
	" OPERATOR(pg_catalog.+) ($3 OPERATOR(pg_catalog.*) interval '1 ms')"

static const struct
{
	const char *sql;
	int			nargs;
	Oid			types[5];
}			el_queries[EL_NUM_QUERIES] =
{
	[Q_GROUP_FIND] = {
		"SELECT id, owner::pg_catalog.oid FROM event_log.consumer_groups"
		" WHERE stream OPERATOR(pg_catalog.=) $1"
		" AND group_name OPERATOR(pg_catalog.=) $2",
		2, {REGCLASSOID, TEXTOID}
	},
	[Q_GROUP_CREATE] = {
		"INSERT INTO event_log.consumer_groups (stream, group_name, owner)"
		" VALUES ($1, $2, $3::pg_catalog.regrole)"
		" ON CONFLICT (stream, group_name) DO NOTHING"
		" RETURNING id, owner::pg_catalog.oid",
		3, {REGCLASSOID, TEXTOID, OIDOID}
	},
	[Q_OFFSETS_CREATE] = {
		"INSERT INTO event_log.consumer_offsets (group_id, shard)"
		" SELECT $1, s FROM pg_catalog.generate_series(0, $2 OPERATOR(pg_catalog.-) 1) s",
		2, {INT4OID, INT4OID}
	},
	[Q_GROUP_DROP] = {
		"DELETE FROM event_log.consumer_groups WHERE id OPERATOR(pg_catalog.=) $1",
		1, {INT4OID}
	},
	[Q_GROUPS_EXIST] = {
		"SELECT 1 FROM event_log.consumer_groups"
		" WHERE stream OPERATOR(pg_catalog.=) $1 LIMIT 1",
		1, {REGCLASSOID}
	},
	[Q_STREAM_FORGET] = {
		"DELETE FROM event_log.consumer_groups WHERE stream OPERATOR(pg_catalog.=) $1",
		1, {REGCLASSOID}
	},
	/* member, lock_id, pid, unexpired, less than half the lease left */
	[Q_MEMBERS] = {
		"SELECT member, lock_id, pid,"
		" expires_at OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp(),"
		" expires_at OPERATOR(pg_catalog.<) (pg_catalog.clock_timestamp()"
		" OPERATOR(pg_catalog.+) ($2 OPERATOR(pg_catalog.*) interval '0.5 ms'))"
		" FROM event_log.consumer_members WHERE group_id OPERATOR(pg_catalog.=) $1"
		" ORDER BY member COLLATE pg_catalog.\"C\"",
		2, {INT4OID, INT4OID}
	},

	/*
	 * Only while the group exists: its row is locked (FOR KEY SHARE, as the
	 * foreign key check would) before the insert, so a group that a
	 * concurrent drop_group() deleted yields no row (or, in REPEATABLE READ,
	 * a serialization failure) rather than a foreign key violation.
	 */
	[Q_MEMBER_JOIN] = {
		"INSERT INTO event_log.consumer_members (group_id, member, pid, expires_at)"
		" SELECT g.id, $2, pg_catalog.pg_backend_pid(),"
		" " EL_LEASE_END_3
		" FROM event_log.consumer_groups g WHERE g.id OPERATOR(pg_catalog.=) $1"
		" FOR KEY SHARE"
		" ON CONFLICT (group_id, member) DO UPDATE"
		" SET pid = excluded.pid, expires_at = excluded.expires_at"
		" RETURNING lock_id",
		3, {INT4OID, TEXTOID, INT4OID}
	},
	[Q_MEMBER_RENEW] = {
		"UPDATE event_log.consumer_members"
		" SET pid = pg_catalog.pg_backend_pid(),"
		" expires_at = " EL_LEASE_END_3
		" WHERE group_id OPERATOR(pg_catalog.=) $1 AND member OPERATOR(pg_catalog.=) $2"
		" RETURNING lock_id",
		3, {INT4OID, TEXTOID, INT4OID}
	},

	/*
	 * A new session takes a member name over whose previous session still
	 * holds the old lock (its lease ran out): a new lock_id, which is the
	 * new session's alone.
	 */
	[Q_MEMBER_TAKE_OVER] = {
		"UPDATE event_log.consumer_members"
		" SET pid = pg_catalog.pg_backend_pid(),"
		" lock_id = pg_catalog.nextval('event_log.consumer_member_locks'::pg_catalog.regclass),"
		" expires_at = " EL_LEASE_END_3
		" WHERE group_id OPERATOR(pg_catalog.=) $1 AND member OPERATOR(pg_catalog.=) $2"
		" RETURNING lock_id",
		3, {INT4OID, TEXTOID, INT4OID}
	},
	/* SKIP LOCKED: a member renewing its row in an open transaction stays. */
	[Q_MEMBERS_EXPIRE] = {
		"DELETE FROM event_log.consumer_members"
		" WHERE group_id OPERATOR(pg_catalog.=) $1 AND member OPERATOR(pg_catalog.=) ANY"
		" (SELECT member FROM event_log.consumer_members"
		"  WHERE group_id OPERATOR(pg_catalog.=) $1"
		"  AND expires_at OPERATOR(pg_catalog.<) pg_catalog.clock_timestamp()"
		"  FOR UPDATE SKIP LOCKED)",
		1, {INT4OID}
	},
	[Q_SHARDS] = {
		"SELECT " EL_LEASE_COLUMNS
		" WHERE o.group_id OPERATOR(pg_catalog.=) $1 ORDER BY o.shard",
		1, {INT4OID}
	},
	/* SKIP LOCKED: a row another transaction holds is not ours to take. */
	[Q_SHARDS_LOCK] = {
		"SELECT " EL_LEASE_COLUMNS
		" WHERE o.group_id OPERATOR(pg_catalog.=) $1"
		" AND o.shard OPERATOR(pg_catalog.=) ANY ($2) ORDER BY o.shard"
		" FOR UPDATE OF o SKIP LOCKED",
		2, {INT4OID, INT4ARRAYOID}
	},
	[Q_SHARDS_ASSIGN] = {
		"UPDATE event_log.consumer_offsets SET member = $3"
		" WHERE group_id OPERATOR(pg_catalog.=) $1 AND shard OPERATOR(pg_catalog.=) ANY ($2)",
		3, {INT4OID, INT4ARRAYOID, TEXTOID}
	},
	[Q_OFFSET_LOCK] = {
		"SELECT " EL_LEASE_COLUMNS
		" WHERE o.group_id OPERATOR(pg_catalog.=) $1 AND o.shard OPERATOR(pg_catalog.=) $2"
		" FOR UPDATE OF o",
		2, {INT4OID, INT4OID}
	},
	[Q_OFFSET_SET] = {
		"UPDATE event_log.consumer_offsets"
		" SET committed_seq = $3, committed_at = pg_catalog.clock_timestamp()"
		" WHERE group_id OPERATOR(pg_catalog.=) $1 AND shard OPERATOR(pg_catalog.=) $2",
		3, {INT4OID, INT4OID, INT8OID}
	},
	/* commit_offset()'s common case: my shard, forwards, within the shard. */
	[Q_OFFSET_ADVANCE] = {
		"UPDATE event_log.consumer_offsets"
		" SET committed_seq = $3, committed_at = pg_catalog.clock_timestamp()"
		" WHERE group_id OPERATOR(pg_catalog.=) $1 AND shard OPERATOR(pg_catalog.=) $2"
		" AND member OPERATOR(pg_catalog.=) $4 AND committed_seq OPERATOR(pg_catalog.<) $3",
		4, {INT4OID, INT4OID, INT8OID, TEXTOID}
	},

	/*
	 * poll(auto_commit): move each shard from where the previous poll read
	 * it to where that poll stopped, if it is still where that poll found
	 * it and still mine.
	 */
	[Q_OFFSETS_AUTO] = {
		"UPDATE event_log.consumer_offsets o"
		" SET committed_seq = c.to_seq, committed_at = pg_catalog.clock_timestamp()"
		" FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3), pg_catalog.unnest($4))"
		" AS c(shard, from_seq, to_seq)"
		" WHERE o.group_id OPERATOR(pg_catalog.=) $1 AND o.shard OPERATOR(pg_catalog.=) c.shard"
		" AND o.member OPERATOR(pg_catalog.=) $5"
		" AND o.committed_seq OPERATOR(pg_catalog.=) c.from_seq",
		5, {INT4OID, INT4ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, TEXTOID}
	},
	[Q_OFFSET_GET] = {
		"SELECT o.committed_seq FROM event_log.consumer_offsets o"
		" JOIN event_log.consumer_groups g ON g.id OPERATOR(pg_catalog.=) o.group_id"
		" WHERE g.stream OPERATOR(pg_catalog.=) $1 AND g.group_name OPERATOR(pg_catalog.=) $2"
		" AND o.shard OPERATOR(pg_catalog.=) $3",
		3, {REGCLASSOID, TEXTOID, INT4OID}
	},
};

/* A group as the functions below use it. */
typedef struct ElGroup
{
	int32		id;
	Oid			owner;
	Oid			relid;			/* the stream */
	int			shards;
	text	   *name;
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

static void el_group_check_owner(ElGroup *g);

/* ----------------------------------------------------------------
 * The group catalog
 * ----------------------------------------------------------------
 */

/*
 * Run one of the statements above on the group catalog, as its owner
 * (catalog.c), with a kept plan.  The caller is connected to SPI.
 */
static uint64
el_query(ElQuery q, Datum *values, const char *nulls, long tcount)
{
	return el_catalog_sql(el_queries[q].sql, el_queries[q].nargs,
						  el_queries[q].types, values, nulls, 0, tcount);
}

static Datum
el_result(uint64 row, int col, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col,
						 isnull);
}

/* Read the lease columns of one result row (EL_LEASE_COLUMNS). */
static void
el_result_lease(uint64 row, ElLease *lease)
{
	bool		isnull;
	Datum		d;

	lease->shard = DatumGetInt32(el_result(row, 1, &isnull));
	d = el_result(row, 2, &isnull);
	lease->member = isnull ? NULL : TextDatumGetCString(d);
	d = el_result(row, 3, &isnull);
	lease->has_member_row = !isnull;
	lease->lock_id = isnull ? 0 : DatumGetInt32(d);
	d = el_result(row, 4, &isnull);
	lease->unexpired = !isnull && DatumGetBool(d);
	lease->committed_seq = DatumGetInt64(el_result(row, 5, &isnull));
}

static Datum
el_int4_array(const int32 *items, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = Int32GetDatum(items[i]);
	return PointerGetDatum(construct_array(d, n, INT4OID, 4, true, TYPALIGN_INT));
}

static Datum
el_int8_array(const int64 *items, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = Int64GetDatum(items[i]);
	return PointerGetDatum(construct_array(d, n, INT8OID, 8, FLOAT8PASSBYVAL,
										   TYPALIGN_DOUBLE));
}

/* ----------------------------------------------------------------
 * Input checks
 * ----------------------------------------------------------------
 */

static void
el_check_name(text *name, const char *what)
{
	int			len = VARSIZE_ANY_EXHDR(name);

	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", what)));
	if (len > EL_MAX_NAME_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("%s is too long", what),
				 errdetail("It is limited to %d bytes; this one has %d.",
						   EL_MAX_NAME_BYTES, len)));
}

/*
 * The session's own member identity: backend pid and start time, unique for
 * the life of the cluster.
 */
static char *
el_session_member(void)
{
	static char *session_member = NULL;

	if (session_member == NULL)
		session_member = MemoryContextStrdup(TopMemoryContext,
											 psprintf("%d@%s", MyProcPid,
													  timestamptz_to_str(MyStartTimestamp)));
	return session_member;
}

/* The member a call acts for: the argument, or the session's identity. */
static char *
el_member_arg(FunctionCallInfo fcinfo, int argno)
{
	if (PG_ARGISNULL(argno))
		return el_session_member();
	el_check_name(PG_GETARG_TEXT_PP(argno), "member name");
	return text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

/* ----------------------------------------------------------------
 * Groups
 * ----------------------------------------------------------------
 */

/*
 * Find the group, or create it (with a row per shard) when create is set.
 * Creating sends a relcache invalidation for the stream, so that appenders
 * start notifying its channel.  Returns false if it does not exist and
 * create is not set.  The caller is connected to SPI.
 */
/*
 * The last group this backend opened, so that a consumer's loop does not
 * look it up on every call.  A stale entry (the group was dropped, or its
 * creation rolled back) is noticed by the next statement that finds no row
 * for its id, which calls el_group_forget() and opens the group again.
 */
static struct
{
	Oid			relid;
	char		name[EL_MAX_NAME_BYTES + 1];
	int32		id;
	Oid			owner;
}			el_last_group;

static void
el_group_forget(void)
{
	el_last_group.id = 0;
}

static void
el_group_remember(ElGroup *g)
{
	int			len = VARSIZE_ANY_EXHDR(g->name);

	el_last_group.relid = g->relid;
	memcpy(el_last_group.name, VARDATA_ANY(g->name), len);
	el_last_group.name[len] = '\0';
	el_last_group.id = g->id;
	el_last_group.owner = g->owner;
}

static bool
el_group_open(ElGroup *g, text *name, Oid relid, int shards, bool create)
{
	Datum		values[3];
	bool		isnull;
	int			len = VARSIZE_ANY_EXHDR(name);

	g->relid = relid;
	g->shards = shards;
	g->name = name;
	if (el_last_group.id != 0 && el_last_group.relid == relid &&
		strlen(el_last_group.name) == (size_t) len &&
		memcmp(el_last_group.name, VARDATA_ANY(name), len) == 0)
	{
		g->id = el_last_group.id;
		g->owner = el_last_group.owner;
		return true;
	}
	el_group_forget();
	values[0] = ObjectIdGetDatum(relid);
	values[1] = PointerGetDatum(name);
	values[2] = ObjectIdGetDatum(GetUserId());
	if (el_query(Q_GROUP_FIND, values, NULL, 1) == 0)
	{
		if (!create)
			return false;

		/*
		 * Two sessions creating the same group: ON CONFLICT makes the second
		 * wait for the first and then insert nothing; it finds the first's
		 * row with its next statement's snapshot.
		 */
		if (el_query(Q_GROUP_CREATE, values, NULL, 1) == 1)
		{
			Datum		args[2];

			g->id = DatumGetInt32(el_result(0, 1, &isnull));
			g->owner = DatumGetObjectId(el_result(0, 2, &isnull));
			args[0] = Int32GetDatum(g->id);
			args[1] = Int32GetDatum(shards);
			el_query(Q_OFFSETS_CREATE, args, NULL, 0);
			CacheInvalidateRelcacheByRelid(relid);
			el_group_remember(g);
			return true;
		}
		if (el_query(Q_GROUP_FIND, values, NULL, 1) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("could not create consumer group \"%s\" of event stream \"%s\"",
							text_to_cstring(name), el_stream_name(relid)),
					 errdetail("Another transaction created it concurrently."),
					 errhint("Retry the transaction.")));
	}
	g->id = DatumGetInt32(el_result(0, 1, &isnull));
	g->owner = DatumGetObjectId(el_result(0, 2, &isnull));
	el_group_remember(g);
	return true;
}

/* Only the group's owner role (and roles that have its privileges) use it. */
static void
el_group_check_owner(ElGroup *g)
{
	if (!has_privs_of_role(GetUserId(), g->owner))
	{
		char	   *owner = GetUserNameFromId(g->owner, true);

		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for consumer group \"%s\" of event stream \"%s\"",
						text_to_cstring(g->name), el_stream_name(g->relid)),
				 owner ? errdetail("The group belongs to role \"%s\".", owner) : 0,
				 errhint("Use the group as its owner or a member of the owner role, or use another group name.")));
	}
}

/* Common start of the functions that act on a group: checks, SPI, group. */
static void
el_group_begin(ElGroup *g, FunctionCallInfo fcinfo, bool create)
{
	Oid			relid = PG_GETARG_OID(1);
	int			shards;

	bool		stream_owner;

	el_check_name(PG_GETARG_TEXT_PP(0), "group name");
	shards = el_require_stream(relid);

	/*
	 * drop_group() (the one caller that does not create): the stream's owner
	 * may drop any group of its stream, as it may drop any projection of it,
	 * so that a reader cannot squat a group name for good.
	 */
	stream_owner = !create && pg_class_ownercheck(relid, GetUserId());
	if (!stream_owner)
		el_check_select(relid);
	SPI_connect();
	if (!create)
		el_group_forget();		/* look it up: no stale entry may recreate it */
	if (!el_group_open(g, PG_GETARG_TEXT_PP(0), relid, shards, create))
		g->id = 0;
	else if (!stream_owner)
		el_group_check_owner(g);
}

/*
 * The group g named is gone (a statement found no row for its id): open it
 * again by name, creating it if need be (as any first use of a group
 * does), and check that the caller may use what is there now.
 */
static void
el_group_reopen(ElGroup *g)
{
	el_group_forget();
	(void) el_group_open(g, g->name, g->relid, g->shards, true);
	el_group_check_owner(g);
}

/*
 * Whether a group has consumer groups (for appenders' NOTIFY).  Called
 * through the stream cache, also at pre-commit, when no SPI connection is
 * open.  False if the extension's catalog is gone (being dropped).
 */
bool
el_consumer_groups_exist(Oid relid)
{
	Oid			nsp = get_namespace_oid("event_log", true);
	Datum		values[1];
	bool		exists;

	if (!OidIsValid(nsp) || !OidIsValid(get_relname_relid("consumer_groups", nsp)))
		return false;
	values[0] = ObjectIdGetDatum(relid);
	SPI_connect();
	/* At pre-commit no snapshot is active; any recent one will do. */
	PushActiveSnapshot(GetTransactionSnapshot());
	exists = el_query(Q_GROUPS_EXIST, values, NULL, 1) > 0;
	PopActiveSnapshot();
	SPI_finish();
	return exists;
}

/* drop_stream(): its groups go with it.  The caller is connected to SPI. */
void
el_consumer_forget_stream(Oid relid)
{
	Datum		values[1];

	values[0] = ObjectIdGetDatum(relid);
	el_query(Q_STREAM_FORGET, values, NULL, 0);
	el_group_forget();
}

/* ----------------------------------------------------------------
 * Members and their locks
 *
 * A member holds, for as long as its session lives, a session-level
 * AccessExclusiveLock on the advisory-type tag (database, lock_id, 0,
 * EL_MEMBER_LOCKTAG_SPACE).  That lock is what tells other members that it
 * is alive: when its backend exits, however it exits, the lock is released
 * (by the lock manager at process exit, or with the process when the
 * postmaster resets shared memory after a crash).  A transaction abort keeps
 * it; pg_advisory_unlock_all() and DISCARD ALL drop it, and the member's
 * next poll takes it again.  Others test it with a conditional session
 * AccessShareLock that they release right away; testers never conflict with
 * each other and nobody ever waits for these locks, so they cannot take
 * part in a deadlock.
 * ----------------------------------------------------------------
 */

static void
el_member_tag(LOCKTAG *tag, int32 lock_id)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, (uint32) lock_id, 0,
						 EL_MEMBER_LOCKTAG_SPACE);
}

/* Whether this session holds the member lock lock_id. */
static bool
el_member_lock_mine(int32 lock_id)
{
	LOCKTAG		tag;

	el_member_tag(&tag, lock_id);
	return LockHeldByMe(&tag, AccessExclusiveLock);
}

/* Take the member lock for this session if nobody holds it. */
static bool
el_member_lock_take(int32 lock_id)
{
	LOCKTAG		tag;

	if (el_member_lock_mine(lock_id))
		return true;
	el_member_tag(&tag, lock_id);
	return LockAcquire(&tag, AccessExclusiveLock, true, true) != LOCKACQUIRE_NOT_AVAIL;
}

/* Whether some session (this one included) holds the member lock lock_id. */
static bool
el_member_lock_held(int32 lock_id)
{
	LOCKTAG		tag;

	if (el_member_lock_mine(lock_id))
		return true;
	el_member_tag(&tag, lock_id);
	if (LockAcquire(&tag, AccessShareLock, true, true) == LOCKACQUIRE_NOT_AVAIL)
		return true;
	LockRelease(&tag, AccessShareLock, true);
	return false;
}

/*
 * Whether a lease's holder is a live member: it has a member row whose lease
 * has not expired, and its session still holds its member lock.  A holder
 * that is not live has lost its shards to whoever claims them.
 */
static bool
el_lease_live(const ElLease *lease)
{
	return lease->member != NULL && lease->has_member_row && lease->unexpired &&
		el_member_lock_held(lease->lock_id);
}

/*
 * Refuse when a live member other than `me` (and not held by this session)
 * holds the lease: its commits would overwrite ours.
 */
static void
el_check_lease(ElGroup *g, const ElLease *lease, const char *me)
{
	if (lease->member == NULL || strcmp(lease->member, me) == 0)
		return;
	if (lease->has_member_row && el_member_lock_mine(lease->lock_id))
		return;
	if (el_lease_live(lease))
		ereport(ERROR,
				(errcode(ERRCODE_EL_LEASE_HELD),
				 errmsg("shard %d of event stream \"%s\" is leased to another member of consumer group \"%s\"",
						lease->shard, el_stream_name(g->relid), text_to_cstring(g->name)),
				 errdetail("Member \"%s\" holds the shard.", lease->member),
				 errhint("Only the member holding a shard commits its offsets; poll again to see which shards are yours.")));
}

/*
 * The pid of the backend holding member lock lock_id, or 0 if none does.
 * Asked of the lock manager (as pg_locks is), not of consumer_members,
 * whose pid column another session may be changing in a transaction that
 * has not committed yet.  Only for error messages: it looks at every lock.
 */
static int
el_member_lock_holder(int32 lock_id)
{
	LOCKTAG		tag;
	LockData   *locks;

	el_member_tag(&tag, lock_id);
	locks = GetLockStatusData();
	for (int i = 0; i < locks->nelements; i++)
	{
		LockInstanceData *l = &locks->locks[i];

		if (l->locktag.locktag_type == tag.locktag_type &&
			l->locktag.locktag_lockmethodid == tag.locktag_lockmethodid &&
			l->locktag.locktag_field1 == tag.locktag_field1 &&
			l->locktag.locktag_field2 == tag.locktag_field2 &&
			l->locktag.locktag_field3 == tag.locktag_field3 &&
			l->locktag.locktag_field4 == tag.locktag_field4 &&
			(l->holdMask & LOCKBIT_ON(AccessExclusiveLock)) != 0)
			return l->pid;
	}
	return 0;
}

/*
 * Join the group as `me`, or renew my membership.  Sets the number of live
 * members and my rank among them in name order (C collation), which decide
 * my share of the shards.  Returns false if the group is gone (dropped
 * since this backend looked it up).
 *
 * A member name that a new session reuses is taken over when its previous
 * session is gone, or still there but out of lease (hung): the row then
 * names the new session's pid, and gets a new lock_id when the old session
 * still holds the old one, so that the two never count as one live member.
 * The old session, should it poll again, finds the name in use (EL005).
 */
static bool
el_member_heartbeat(ElGroup *g, const char *me, int *live, int *rank)
{
	Datum		values[3];
	uint64		n;
	bool		found = false;
	bool		renew = true;
	bool		take_over = false;
	bool		any_expired = false;
	int32		my_lock = 0;
	bool		isnull;

	values[0] = Int32GetDatum(g->id);
	values[1] = Int32GetDatum(el_lease_timeout);
	n = el_query(Q_MEMBERS, values, NULL, 0);
	*live = 1;
	*rank = 0;
	for (uint64 i = 0; i < n; i++)
	{
		char	   *name = TextDatumGetCString(el_result(i, 1, &isnull));
		int32		lock_id = DatumGetInt32(el_result(i, 2, &isnull));
		int32		pid = DatumGetInt32(el_result(i, 3, &isnull));
		bool		unexpired = DatumGetBool(el_result(i, 4, &isnull));
		bool		stale = DatumGetBool(el_result(i, 5, &isnull));

		if (strcmp(name, me) == 0)
		{
			found = true;
			if (el_member_lock_take(lock_id))
				renew = stale || pid != MyProcPid;
			else if (unexpired)
			{
				/*
				 * Another session that is still alive and within its lease
				 * is this member already; two sessions as one member would
				 * both process its shards.
				 */
				int			holder = el_member_lock_holder(lock_id);

				ereport(ERROR,
						(errcode(ERRCODE_EL_MEMBER_IN_USE),
						 errmsg("member \"%s\" of consumer group \"%s\" is in use by another session",
								me, text_to_cstring(g->name)),
						 errdetail("Backend %d holds the member's lock.",
								   holder != 0 ? holder : pid),
						 errhint("Give each consumer session its own member name, or end the other session.")));
			}
			else
				take_over = true;
			continue;
		}
		if (!unexpired)
			any_expired = true;
		else if (el_member_lock_held(lock_id))
		{
			(*live)++;
			if (strcmp(name, me) < 0)
				(*rank)++;
		}
	}
	SPI_freetuptable(SPI_tuptable);

	if (renew)
	{
		values[1] = CStringGetTextDatum(me);
		values[2] = Int32GetDatum(el_lease_timeout);
		if (!found ||
			el_query(take_over ? Q_MEMBER_TAKE_OVER : Q_MEMBER_RENEW,
					 values, NULL, 1) == 0)
		{
			/* No row (the group may be gone, see Q_MEMBER_JOIN). */
			if (el_query(Q_MEMBER_JOIN, values, NULL, 1) == 0)
			{
				el_group_forget();
				return false;
			}
		}
		my_lock = DatumGetInt32(el_result(0, 1, &isnull));
		SPI_freetuptable(SPI_tuptable);
		(void) el_member_lock_take(my_lock);
	}
	if (any_expired)
		el_query(Q_MEMBERS_EXPIRE, values, NULL, 0);
	return true;
}

/* ----------------------------------------------------------------
 * poll()
 * ----------------------------------------------------------------
 */

/* What poll does with a shard this round. */
typedef enum ElShardPlan
{
	SP_NONE,
	SP_KEEP,					/* mine, keep it */
	SP_RELEASE,					/* mine, above my share: give it up */
	SP_CLAIM					/* free: take it */
} ElShardPlan;

/*
 * Settle my shards: keep up to my share, release the excess, claim free
 * shards up to my share.  Fills shards[] and after[] with the shards I hold,
 * and their committed offsets, and returns how many.
 *
 * Locking: the decision is made from an unlocked read, then the rows to
 * claim or release are locked FOR UPDATE SKIP LOCKED and checked again.  A
 * row another transaction holds (its member claiming or committing in an
 * open transaction, or a reset) is skipped, never waited for; so poll never
 * blocks on other members and cannot deadlock with them.  Rows are locked in
 * shard order.  Returns -1 if the group is gone (stale cache).
 */
static int
el_settle_shards(ElGroup *g, const char *me, int32 *shards, int64 *after)
{
	int			live,
				rank,
				target,
				mine = 0,
				kept = 0,
				nlock = 0,
				nrelease = 0,
				nclaim = 0,
				nheld = 0;
	ElShardPlan *plan = palloc0(sizeof(ElShardPlan) * g->shards);
	int32	   *lock = palloc(sizeof(int32) * g->shards);
	int32	   *release = palloc(sizeof(int32) * g->shards);
	int32	   *claim = palloc(sizeof(int32) * g->shards);
	Datum		values[3];
	uint64		n;
	ElLease		lease;

	if (!el_member_heartbeat(g, me, &live, &rank))
		return -1;				/* the group is gone: the caller retries */
	target = g->shards / live + (rank < g->shards % live ? 1 : 0);

	values[0] = Int32GetDatum(g->id);
	n = el_query(Q_SHARDS, values, NULL, 0);
	for (uint64 i = 0; i < n; i++)
	{
		el_result_lease(i, &lease);
		if (lease.member != NULL && strcmp(lease.member, me) == 0)
			plan[lease.shard] = (++mine <= target) ? SP_KEEP : SP_RELEASE;
	}
	kept = Min(mine, target);
	for (uint64 i = 0; i < n && kept < target; i++)
	{
		el_result_lease(i, &lease);
		if (plan[lease.shard] == SP_NONE && !el_lease_live(&lease))
		{
			plan[lease.shard] = SP_CLAIM;
			kept++;
		}
	}

	if (n == 0)
	{
		/* The group is gone (a stale cache entry): the caller retries. */
		el_group_forget();
		return -1;
	}

	/*
	 * Kept shards are read without a row lock: another member claims a
	 * shard only when my lease is not live, and if that happens while I
	 * read, its events are delivered twice and my commit is refused.
	 */
	for (uint64 i = 0; i < n; i++)
	{
		el_result_lease(i, &lease);
		if (plan[lease.shard] == SP_KEEP)
		{
			shards[nheld] = lease.shard;
			after[nheld] = lease.committed_seq;
			nheld++;
		}
	}
	SPI_freetuptable(SPI_tuptable);
	for (int s = 0; s < g->shards; s++)
		if (plan[s] == SP_RELEASE || plan[s] == SP_CLAIM)
			lock[nlock++] = s;
	if (nlock == 0)
		return nheld;

	values[1] = el_int4_array(lock, nlock);
	n = el_query(Q_SHARDS_LOCK, values, NULL, 0);
	for (uint64 i = 0; i < n; i++)
	{
		bool		is_mine;

		el_result_lease(i, &lease);
		is_mine = lease.member != NULL && strcmp(lease.member, me) == 0;
		switch (plan[lease.shard])
		{
			case SP_RELEASE:
				if (is_mine)
					release[nrelease++] = lease.shard;
				continue;
			case SP_CLAIM:
				if (!is_mine && el_lease_live(&lease))
					continue;
				if (!is_mine)
					claim[nclaim++] = lease.shard;
				break;
			case SP_KEEP:
			case SP_NONE:
				continue;
		}
		shards[nheld] = lease.shard;
		after[nheld] = lease.committed_seq;
		nheld++;
	}
	SPI_freetuptable(SPI_tuptable);

	if (nrelease > 0)
	{
		char		nulls[3] = {' ', ' ', 'n'};

		values[1] = el_int4_array(release, nrelease);
		values[2] = (Datum) 0;
		el_query(Q_SHARDS_ASSIGN, values, nulls, 0);
	}
	if (nclaim > 0)
	{
		values[1] = el_int4_array(claim, nclaim);
		values[2] = CStringGetTextDatum(me);
		el_query(Q_SHARDS_ASSIGN, values, NULL, 0);
	}
	return nheld;
}

static bool el_appended_here(Oid relid);

/*
 * What this session's last poll() returned, per shard: the events after
 * from[i] up to to[i] of shard[i], for a poll(auto_commit => true) of the
 * same group, stream and member to commit.
 */
static struct
{
	int32		group_id;		/* 0: nothing remembered */
	Oid			relid;
	char		member[EL_MAX_NAME_BYTES + 1];
	bool		committed;		/* what it reads is committed */
	bool		in_xact;		/* its transaction has not ended yet */
	SubTransactionId subid;		/* the subtransaction it ran in */
	int			n;
	int32	   *shard;
	int64	   *from;
	int64	   *to;
}			el_last_poll;

/*
 * Start remembering a poll of g by me (forgetting the previous one).
 * committed tells whether what the poll reads is known to be committed (see
 * el_poll).
 */
static void
el_last_poll_begin(ElGroup *g, const char *me, bool committed)
{
	el_last_poll.committed = committed;
	el_last_poll.in_xact = true;
	el_last_poll.subid = GetCurrentSubTransactionId();
	el_last_poll.group_id = 0;
	el_last_poll.n = 0;
	if (el_last_poll.shard != NULL)
	{
		pfree(el_last_poll.shard);
		pfree(el_last_poll.from);
		pfree(el_last_poll.to);
	}
	el_last_poll.shard = MemoryContextAlloc(TopMemoryContext, sizeof(int32) * g->shards);
	el_last_poll.from = MemoryContextAlloc(TopMemoryContext, sizeof(int64) * g->shards);
	el_last_poll.to = MemoryContextAlloc(TopMemoryContext, sizeof(int64) * g->shards);
	el_last_poll.relid = g->relid;
	strlcpy(el_last_poll.member, me, sizeof(el_last_poll.member));
	el_last_poll.group_id = g->id;
}

/*
 * Remember that a poll returned the events of shard after from up to to.
 * Not when the poll's transaction may have appended: it could roll its own
 * events back, and they must not be committed.
 */
static void
el_last_poll_add(Oid relid, int32 shard, int64 from, int64 to)
{
	int			i;

	if (el_last_poll.group_id == 0 || !el_last_poll.committed)
		return;
	el_shard_saw(relid, shard, to);
	/* A shard read in several rounds of one look continues where it was. */
	for (i = 0; i < el_last_poll.n; i++)
		if (el_last_poll.shard[i] == shard && el_last_poll.to[i] == from)
		{
			el_last_poll.to[i] = to;
			return;
		}
	el_last_poll.shard[i] = shard;
	el_last_poll.from[i] = from;
	el_last_poll.to[i] = to;
	el_last_poll.n++;
}

/*
 * poll(auto_commit => true): commit what the previous poll of this session
 * returned for the same group, stream and member, as if the consumer had
 * called commit_offset() for each shard's last event.  A shard is moved only
 * if its offset is still where that poll read it from and the shard is
 * still leased to me; otherwise someone moved it meanwhile (a commit, a
 * reset, a member that took the shard over), and their word stands: the
 * events are delivered again if need be, which at least once allows.
 */
static void
el_auto_commit(ElGroup *g, const char *me)
{
	Datum		values[5];

	if (el_last_poll.group_id != g->id || el_last_poll.relid != g->relid ||
		strcmp(el_last_poll.member, me) != 0 || el_last_poll.n == 0)
		return;
	values[0] = Int32GetDatum(g->id);
	values[1] = el_int4_array(el_last_poll.shard, el_last_poll.n);
	values[2] = el_int8_array(el_last_poll.from, el_last_poll.n);
	values[3] = el_int8_array(el_last_poll.to, el_last_poll.n);
	values[4] = CStringGetTextDatum(me);
	el_last_poll.group_id = 0;
	el_query(Q_OFFSETS_AUTO, values, NULL, 0);
}

/*
 * A receiver in front of the poll's tuplestore that notes the seq of the
 * last row passed on.  Offsets are dense, but what a role sees of a shard
 * need not be: row-level security may hide some events, so where a read
 * stopped is the last seq it returned, not where it started plus the count.
 */
typedef struct ElSeqDest
{
	DestReceiver pub;
	DestReceiver *inner;
	int64		last;
} ElSeqDest;

static bool
el_seq_receive(TupleTableSlot *slot, DestReceiver *self)
{
	ElSeqDest  *d = (ElSeqDest *) self;
	bool		isnull;

	/* The read plans return the event's columns: seq is the second. */
	d->last = DatumGetInt64(slot_getattr(slot, 2, &isnull));
	return d->inner->receiveSlot(slot, d->inner);
}

static void
el_seq_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
	ElSeqDest  *d = (ElSeqDest *) self;

	d->inner->rStartup(d->inner, operation, typeinfo);
}

static void
el_seq_shutdown(DestReceiver *self)
{
	ElSeqDest  *d = (ElSeqDest *) self;

	d->inner->rShutdown(d->inner);
}

static void
el_seq_destroy(DestReceiver *self)
{
}

/*
 * One look: settle my shards, then read up to max_count events after their
 * committed offsets into dest, with a new snapshot (in READ COMMITTED; the
 * transaction's in REPEATABLE READ and SERIALIZABLE).
 *
 * Fairness: each pass gives every shard that still has events an equal
 * share of what is left of max_count, starting from a shard that rotates
 * from call to call, until max_count is reached or every shard is drained.
 * Within a shard events come in seq order.  Each read goes on after the
 * last seq the previous one returned (see ElSeqDest).
 */
static uint64
el_poll_once(ElGroup *g, const char *me, int max_count, DestReceiver *dest)
{
	ElSeqDest	seqdest = {{el_seq_receive, el_seq_startup, el_seq_shutdown,
	el_seq_destroy, DestTuplestore}, dest, 0};
	static uint32 rotation = 0;
	int32	   *shards = palloc(sizeof(int32) * g->shards);
	int64	   *after = palloc(sizeof(int64) * g->shards);
	bool	   *active = palloc(sizeof(bool) * g->shards);
	int			nheld,
				nactive,
				start;
	int64		left = max_count;
	uint64		total = 0;

	nheld = el_settle_shards(g, me, shards, after);
	if (nheld < 0)
	{
		/* The group is gone: open (create) it again, once. */
		el_group_reopen(g);
		nheld = el_settle_shards(g, me, shards, after);
	}
	if (nheld <= 0)
		return 0;

	PushActiveSnapshot(GetTransactionSnapshot());
	nactive = nheld;
	for (int i = 0; i < nheld; i++)
		active[i] = true;
	start = rotation++ % nheld;
	while (left > 0 && nactive > 0)
	{
		int64		share = Max(1, left / nactive);

		for (int k = 0; k < nheld && left > 0; k++)
		{
			int			i = (start + k) % nheld;
			int64		ask = Min(share, left);
			uint64		got;

			if (!active[i])
				continue;
			seqdest.last = after[i];
			got = el_read_shard(g->relid, shards[i], after[i], ask,
								(DestReceiver *) &seqdest);
			if (got > 0)
				el_last_poll_add(g->relid, shards[i], after[i], seqdest.last);
			after[i] = seqdest.last;
			left -= got;
			total += got;
			if ((int64) got < ask)
			{
				active[i] = false;
				nactive--;
			}
		}
	}
	PopActiveSnapshot();
	return total;
}

/*
 * The lock a waiting poll() holds while it waits for events of a stream:
 * the advisory-type tag (database, stream oid, 0, EL_WAIT_LOCKTAG_SPACE) in
 * AccessShareLock, for the transaction or until the poll releases it.  An
 * appending transaction lists the holders after its commit and sets their
 * latches.  Nobody ever acquires this lock in a conflicting mode (appenders
 * only list holders), so it never blocks anyone.  The background worker
 * (worker.c) waits the same way.
 */
void
el_wait_tag(LOCKTAG *tag, Oid relid)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, relid, 0, EL_WAIT_LOCKTAG_SPACE);
}

/*
 * Sleep until the latch is set or timeout_ms have passed, for a waiting
 * poll().  Also wakes when the client's connection is closed (a consumer
 * killed or gone while it waits): the session then ends at once, as
 * PostgreSQL's client_connection_check_interval would end it, so that its
 * member lock, and with it its shards, go now and not when the wait (up to
 * an hour) is over.  Returns false if the wait should end anyway (the
 * client is gone but interrupts are held off).
 *
 * A client that vanished without closing its connection (a machine that
 * lost power, a network cut) is not noticed here; TCP keepalives
 * (tcp_keepalives_idle) and the lease timeout cover it.
 */
static bool
el_wait(long timeout_ms)
{
	WaitEvent	events[EL_FEBE_NEVENTS];
	int			n;

	/* No client connection (a background worker, single-user mode). */
	if (whereToSendOutput != DestRemote || MyProcPort == NULL || FeBeWaitSet == NULL)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout_ms, PG_WAIT_EXTENSION);
		return true;
	}

	/*
	 * The backend's own wait set: its socket, its latch and postmaster
	 * death.  Every user of the set sets the socket's events it waits for,
	 * as pq_check_connection() does, so we need not restore them.
	 */
	ModifyWaitEvent(FeBeWaitSet, EL_FEBE_SOCKET_POS, WL_SOCKET_CLOSED, NULL);
	n = WaitEventSetWait(FeBeWaitSet, timeout_ms, events, lengthof(events),
						 PG_WAIT_EXTENSION);
	for (int i = 0; i < n; i++)
	{
		if (events[i].events & WL_POSTMASTER_DEATH)
			ereport(FATAL,
					(errcode(ERRCODE_ADMIN_SHUTDOWN),
					 errmsg("terminating connection due to unexpected postmaster exit")));
		if (events[i].events & WL_SOCKET_CLOSED)
		{
			/* What ProcessInterrupts() does with a lost connection. */
			ClientConnectionLost = true;
			InterruptPending = true;
			CHECK_FOR_INTERRUPTS();
			return false;
		}
	}
	return true;
}

/* Milliseconds in an interval, or -1 if it is out of our range. */
static int64
el_interval_ms(Interval *iv)
{
	int64		usecs;

	if (iv->month != 0 || iv->day < 0 || iv->day > 1 || iv->time < 0 ||
		iv->time > (int64) EL_MAX_WAIT_MS * 1000)
		return -1;
	usecs = iv->day * USECS_PER_DAY + iv->time;
	if (usecs > (int64) EL_MAX_WAIT_MS * 1000)
		return -1;
	return (usecs + 999) / 1000;
}

/*
 * event_log.poll(group_name text, stream regclass, max_count int DEFAULT 100,
 *				  member text DEFAULT NULL, wait interval DEFAULT NULL,
 *				  auto_commit boolean DEFAULT false)
 *		RETURNS SETOF event_log.event
 *
 * With auto_commit, the events the previous poll of this session returned
 * (same group, stream and member) are committed first (el_auto_commit).
 * The rows it updates stay locked until the transaction ends, through a
 * wait too: other sessions' commits and resets of those shards wait for it.
 */
Datum
el_poll(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int32		max_count;
	char	   *me;
	int64		wait_ms = 0;
	bool		auto_commit;
	bool		reads_committed;
	ElGroup		g;
	DestReceiver *dest;
	LOCKTAG		wait_tag;
	TimestampTz deadline = 0;
	MemoryContext attempt_cxt;

	el_require_arg(fcinfo, 0, "group_name");
	el_require_arg(fcinfo, 1, "stream");
	el_require_arg(fcinfo, 2, "max_count");
	max_count = PG_GETARG_INT32(2);
	if (max_count < 1 || max_count > EL_MAX_POLL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_count must be between 1 and %d", EL_MAX_POLL),
				 errdetail("The requested max_count was %d.", max_count)));
	me = el_member_arg(fcinfo, 3);
	el_require_arg(fcinfo, 5, "auto_commit");
	auto_commit = PG_GETARG_BOOL(5);
	if (!PG_ARGISNULL(4))
	{
		wait_ms = el_interval_ms(PG_GETARG_INTERVAL_P(4));
		if (wait_ms < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("wait must be between 0 and 1 hour")));
		if (wait_ms > 0 && IsolationUsesXactSnapshot())
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("poll() cannot wait in a REPEATABLE READ or SERIALIZABLE transaction"),
					 errdetail("The transaction's snapshot would never show new events."),
					 errhint("Poll with wait in READ COMMITTED, or poll without wait.")));
	}

	/* What the poll reads is committed unless we appended to the stream. */
	reads_committed = !el_appended_here(PG_GETARG_OID(1));
	el_group_begin(&g, fcinfo, true);
	if (auto_commit)
		el_auto_commit(&g, me);
	el_last_poll_begin(&g, me, reads_committed);

	dest = CreateDestReceiver(DestTuplestore);
	SetTuplestoreDestReceiverParams(dest, el_result_store(fcinfo, true),
									rsinfo->econtext->ecxt_per_query_memory,
									false, NULL, NULL);
	attempt_cxt = AllocSetContextCreate(CurrentMemoryContext,
										"event_log poll attempt",
										ALLOCSET_SMALL_SIZES);

	/*
	 * Take the wait lock before the first look: an append that commits after
	 * it is held wakes us, and one that committed before is visible to the
	 * look.  Resetting the latch before each look closes the gap between a
	 * look and the wait.
	 */
	if (wait_ms > 0)
	{
		el_wait_tag(&wait_tag, g.relid);
		(void) LockAcquire(&wait_tag, AccessShareLock, false, false);
		deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), wait_ms);
	}
	for (;;)
	{
		MemoryContext old = MemoryContextSwitchTo(attempt_cxt);
		uint64		got;
		long		left;

		if (wait_ms > 0)
			ResetLatch(MyLatch);
		got = el_poll_once(&g, me, max_count, dest);
		MemoryContextSwitchTo(old);
		MemoryContextReset(attempt_cxt);
		if (got > 0 || wait_ms == 0)
			break;
		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		if (left <= 0)
			break;

		/*
		 * Wake up at least every third of the lease to renew it and to take
		 * over shards freed meanwhile.
		 */
		if (!el_wait(Min(left, Max(el_lease_timeout / 3, 10))))
			break;
		CHECK_FOR_INTERRUPTS();
	}
	if (wait_ms > 0)
		LockRelease(&wait_tag, AccessShareLock, false);

	dest->rDestroy(dest);		/* it lives in SPI's memory */
	SPI_finish();
	return (Datum) 0;
}

/* ----------------------------------------------------------------
 * Offsets
 * ----------------------------------------------------------------
 */

/*
 * Lock a shard's row of the group (waiting for other transactions).  If
 * the group is gone (dropped since this backend looked it up, or by a
 * transaction that committed while we waited for the row): with create, it
 * is opened again by name, and created if need be, as the first use of a
 * group creates it; without, returns false.
 */
static bool
el_lock_offset(ElGroup *g, int32 shard, ElLease *lease, bool create)
{
	Datum		values[2];

	values[0] = Int32GetDatum(g->id);
	values[1] = Int32GetDatum(shard);
	if (el_query(Q_OFFSET_LOCK, values, NULL, 1) != 1)
	{
		if (!create)
			return false;
		el_group_reopen(g);
		values[0] = Int32GetDatum(g->id);
		if (el_query(Q_OFFSET_LOCK, values, NULL, 1) != 1)
			elog(ERROR, "consumer group %d has no row for shard %d", g->id, shard);
	}
	el_result_lease(0, lease);
	SPI_freetuptable(SPI_tuptable);
	return true;
}

static void
el_set_offset(ElGroup *g, int32 shard, int64 seq)
{
	Datum		values[3];

	values[0] = Int32GetDatum(g->id);
	values[1] = Int32GetDatum(shard);
	values[2] = Int64GetDatum(seq);
	el_query(Q_OFFSET_SET, values, NULL, 0);
}

/*
 * Refuse an offset beyond what the shard holds.  committed: the transaction
 * has not appended to the stream (el_appended_here()), so the end it sees
 * is committed and can be remembered.
 */
static void
el_check_within(ElGroup *g, int32 shard, int64 seq, bool committed)
{
	int64		end;

	if (seq <= el_shard_seen_end(g->relid, shard))
		return;
	end = el_shard_end(g->relid, shard);
	if (committed)
		el_shard_saw(g->relid, shard, end);
	if (seq > end)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("offset " INT64_FORMAT " is beyond the end of shard %d of event stream \"%s\"",
						seq, shard, el_stream_name(g->relid)),
				 errdetail("The shard's last event has seq " INT64_FORMAT ".", end),
				 errhint("Commit the seq of the last event you processed.")));
}

/*
 * event_log.commit_offset(group_name text, stream regclass, shard int,
 *						   seq bigint, member text DEFAULT NULL)
 *
 * The row lock (FOR UPDATE, waiting) serializes commits of one shard: a
 * second committer re-reads the offset the first committed.  It is the only
 * row this locks, so commits cannot deadlock with each other; poll() never
 * waits for it (SKIP LOCKED).
 */
Datum
el_commit_offset(PG_FUNCTION_ARGS)
{
	bool		committed;
	ElGroup		g;
	ElLease		lease;
	int32		shard;
	int64		seq;
	char	   *me;

	el_require_arg(fcinfo, 0, "group_name");
	el_require_arg(fcinfo, 1, "stream");
	el_require_arg(fcinfo, 2, "shard");
	el_require_arg(fcinfo, 3, "seq");
	shard = PG_GETARG_INT32(2);
	seq = PG_GETARG_INT64(3);
	me = el_member_arg(fcinfo, 4);
	el_check_shard(PG_GETARG_OID(1), el_require_stream(PG_GETARG_OID(1)), shard);
	if (seq < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("seq must not be negative")));

	committed = !el_appended_here(PG_GETARG_OID(1));
	el_group_begin(&g, fcinfo, true);

	/*
	 * The common case in one statement: the shard is leased to me, the
	 * offset moves forwards and stays within what this backend has seen of
	 * the shard.  The UPDATE waits for the row's lock and rechecks its
	 * conditions on the newest version, as the FOR UPDATE below would;
	 * anything else (another holder, no holder, the same or a lower offset,
	 * an offset not seen yet, a stale group id) takes the full path.
	 */
	if (seq <= el_shard_seen_end(g.relid, shard))
	{
		Datum		values[4];

		values[0] = Int32GetDatum(g.id);
		values[1] = Int32GetDatum(shard);
		values[2] = Int64GetDatum(seq);
		values[3] = CStringGetTextDatum(me);
		if (el_query(Q_OFFSET_ADVANCE, values, NULL, 0) == 1)
		{
			SPI_finish();
			PG_RETURN_VOID();
		}
	}

	(void) el_lock_offset(&g, shard, &lease, true);
	el_check_lease(&g, &lease, me);
	if (seq < lease.committed_seq)
		ereport(ERROR,
				(errcode(ERRCODE_EL_OFFSET_BACKWARDS),
				 errmsg("cannot move the offset of consumer group \"%s\" backwards",
						text_to_cstring(g.name)),
				 errdetail("Shard %d of event stream \"%s\" is committed up to seq " INT64_FORMAT "; the new offset was " INT64_FORMAT ".",
						   shard, el_stream_name(g.relid), lease.committed_seq, seq),
				 errhint("To process events again, use event_log.reset_offsets().")));
	if (seq > lease.committed_seq)
	{
		el_check_within(&g, shard, seq, committed);
		el_set_offset(&g, shard, seq);
	}
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * event_log.committed_offset(group_name text, stream regclass, shard int)
 *		RETURNS bigint: 0 when nothing was committed (or no such group).
 */
Datum
el_committed_offset(PG_FUNCTION_ARGS)
{
	Oid			relid;
	int32		shard;
	Datum		values[3];
	int64		result = 0;
	bool		isnull;

	el_require_arg(fcinfo, 0, "group_name");
	el_require_arg(fcinfo, 1, "stream");
	el_require_arg(fcinfo, 2, "shard");
	relid = PG_GETARG_OID(1);
	shard = PG_GETARG_INT32(2);
	el_check_name(PG_GETARG_TEXT_PP(0), "group name");
	el_check_shard(relid, el_require_stream(relid), shard);
	/* An offset tells how far the stream goes: for its readers only. */
	el_check_select(relid);

	values[0] = ObjectIdGetDatum(relid);
	values[1] = PG_GETARG_DATUM(0);
	values[2] = Int32GetDatum(shard);
	SPI_connect();
	if (el_query(Q_OFFSET_GET, values, NULL, 1) == 1)
		result = DatumGetInt64(el_result(0, 1, &isnull));
	SPI_finish();
	PG_RETURN_INT64(result);
}

/*
 * Per shard, the offset after which every event was recorded at or after t:
 * one before the first such event, or the end of the shard if there is
 * none.  recorded_at is not ordered by seq (it is the appending
 * transaction's start), so "the last event before t" would skip events.
 * Read as the caller (privileges and row-level security apply), with the
 * operators spelled out and the path pinned like the catalog statements'.
 */
static int64
el_offset_at_time(Oid relid, int32 shard, Datum t)
{
	char	   *name = el_stream_name(relid);
	char	   *sql = psprintf("SELECT COALESCE(pg_catalog.min(seq) OPERATOR(pg_catalog.-) 1,"
							   " (SELECT pg_catalog.max(seq) FROM %s WHERE shard OPERATOR(pg_catalog.=) $1), 0)"
							   " FROM %s WHERE shard OPERATOR(pg_catalog.=) $1"
							   " AND recorded_at OPERATOR(pg_catalog.>=) $2",
							   name, name);
	Oid			types[2] = {INT4OID, TIMESTAMPTZOID};
	Datum		values[2];
	bool		isnull;

	values[0] = Int32GetDatum(shard);
	values[1] = t;
	el_push_catalog_path();
	(void) el_exec_as_caller(sql, 2, types, values, true, 1);
	PopOverrideSearchPath();
	return DatumGetInt64(el_result(0, 1, &isnull));
}

/*
 * event_log.reset_offsets(group_name, stream, to_position text, to_seq
 *		bigint, to_time timestamptz, only_shard int)
 *		RETURNS TABLE (shard int, old_seq bigint, new_seq bigint)
 *
 * Exactly one target: to_position 'start' or 'end', to_seq, or to_time.
 * Every new offset is computed and every lease checked before anything is
 * written.  Rows are locked in shard order (waiting), like commit_offset()
 * locks its one row, so two resets cannot deadlock.
 */
Datum
el_reset_offsets(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ElGroup		g;
	int			targets = 0;
	char	   *position = NULL;
	int32		first,
				last;
	int64	   *new_seq;
	ElLease    *old;
	char	   *me = el_session_member();
	bool		committed;

	el_require_arg(fcinfo, 0, "group_name");
	el_require_arg(fcinfo, 1, "stream");
	committed = !el_appended_here(PG_GETARG_OID(1));
	for (int i = 2; i <= 4; i++)
		targets += PG_ARGISNULL(i) ? 0 : 1;
	if (targets != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("reset_offsets() needs exactly one of to_position, to_seq and to_time"),
				 errhint("For example: event_log.reset_offsets('mailer', 'shop.cart_events', to_position => 'start').")));
	if (!PG_ARGISNULL(2))
	{
		position = text_to_cstring(PG_GETARG_TEXT_PP(2));
		if (strcmp(position, "start") != 0 && strcmp(position, "end") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid to_position \"%s\"", position),
					 errhint("Use 'start' or 'end'.")));
	}
	if (!PG_ARGISNULL(3) && PG_GETARG_INT64(3) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("to_seq must not be negative")));
	if (!PG_ARGISNULL(4) && TIMESTAMP_NOT_FINITE(PG_GETARG_TIMESTAMPTZ(4)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("to_time must be finite")));

	el_check_name(PG_GETARG_TEXT_PP(0), "group name");
	first = 0;
	last = el_require_stream(PG_GETARG_OID(1)) - 1;
	if (!PG_ARGISNULL(5))
	{
		first = last = PG_GETARG_INT32(5);
		el_check_shard(PG_GETARG_OID(1), el_require_stream(PG_GETARG_OID(1)), first);
	}

	el_group_begin(&g, fcinfo, true);
	new_seq = palloc(sizeof(int64) * g.shards);
	old = palloc(sizeof(ElLease) * g.shards);
	for (int32 s = first; s <= last; s++)
	{
		if (position && strcmp(position, "start") == 0)
			new_seq[s] = 0;
		else if (position)
			new_seq[s] = el_shard_end(g.relid, s);
		else if (!PG_ARGISNULL(3))
		{
			new_seq[s] = PG_GETARG_INT64(3);
			el_check_within(&g, s, new_seq[s], committed);
		}
		else
			new_seq[s] = el_offset_at_time(g.relid, s, PG_GETARG_DATUM(4));
	}
	for (int32 s = first; s <= last; s++)
	{
		(void) el_lock_offset(&g, s, &old[s], true);
		el_check_lease(&g, &old[s], me);
	}

	InitMaterializedSRF(fcinfo, 0);
	for (int32 s = first; s <= last; s++)
	{
		Datum		values[3];
		bool		nulls[3] = {0};

		if (new_seq[s] != old[s].committed_seq)
			el_set_offset(&g, s, new_seq[s]);
		values[0] = Int32GetDatum(s);
		values[1] = Int64GetDatum(old[s].committed_seq);
		values[2] = Int64GetDatum(new_seq[s]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	SPI_finish();
	return (Datum) 0;
}

/*
 * event_log.drop_group(group_name text, stream regclass) RETURNS boolean
 *
 * Removes the group, its offsets and members; false if there was none.
 * Refused while another live member holds one of its shards.
 */
Datum
el_drop_group(PG_FUNCTION_ARGS)
{
	ElGroup		g;
	ElLease		lease;
	Datum		values[1];
	char	   *me = el_session_member();

	el_require_arg(fcinfo, 0, "group_name");
	el_require_arg(fcinfo, 1, "stream");
	el_group_begin(&g, fcinfo, false);
	if (g.id == 0)
	{
		SPI_finish();
		PG_RETURN_BOOL(false);
	}
	for (int32 s = 0; s < g.shards; s++)
	{
		if (!el_lock_offset(&g, s, &lease, false))
		{
			/* Dropped meanwhile, by a transaction that has committed. */
			SPI_finish();
			PG_RETURN_BOOL(false);
		}
		el_check_lease(&g, &lease, me);
	}
	values[0] = Int32GetDatum(g.id);
	el_query(Q_GROUP_DROP, values, NULL, 0);
	el_group_forget();
	CacheInvalidateRelcacheByRelid(g.relid);
	SPI_finish();
	PG_RETURN_BOOL(true);
}

/* ----------------------------------------------------------------
 * Visibility
 * ----------------------------------------------------------------
 */

static char *
el_channel_name(Oid relid)
{
	return psprintf("event_log_%u", relid);
}

/* event_log.channel(stream regclass) RETURNS text */
Datum
el_channel(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);

	(void) el_require_stream(relid);
	PG_RETURN_TEXT_P(cstring_to_text(el_channel_name(relid)));
}

/*
 * event_log.shard_status(stream, shard, after_seq, OUT log_end bigint,
 *						  OUT next_recorded_at timestamptz)
 *
 * NULLs when the caller may not read the stream, so that consumer_lag lists
 * every group to everybody without failing on one stream.
 */
Datum
el_shard_status(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	int32		shard = PG_GETARG_INT32(1);
	int64		after_seq = PG_GETARG_INT64(2);
	TupleDesc	tupdesc;
	Datum		values[2] = {0};
	bool		nulls[2] = {true, true};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (el_stream_shards(relid) > shard && shard >= 0 && after_seq >= 0 &&
		pg_class_aclcheck(relid, GetUserId(), ACL_SELECT) == ACLCHECK_OK)
	{
		SPI_connect();
		values[0] = Int64GetDatum(el_shard_end(relid, shard));
		nulls[0] = false;
		if (el_read_shard(relid, shard, after_seq, 1, NULL) == 1)
			values[1] = el_result(0, Anum_el_recorded_at, &nulls[1]);
		SPI_finish();
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* ----------------------------------------------------------------
 * Wake-up of consumers when appends commit
 *
 * The append trigger notes each stream a transaction appends to (a
 * comparison per row once the stream is noted).  At pre-commit the
 * transaction NOTIFYs each such stream's channel, if the stream has a
 * consumer group: one notification per transaction and stream, and none at
 * all for streams nobody consumes by group (NOTIFY serializes the commits of
 * all notifying transactions of a database, see docs/design/consumers.md).
 * Pre-commit rather than at the append, so that PREPARE TRANSACTION, which
 * refuses transactions that have notified, still works; a prepared append
 * wakes nobody.  After the commit is visible, it sets the latch of every
 * poll() waiting on the stream.
 * ----------------------------------------------------------------
 */

static List *el_appended = NIL; /* in TopTransactionContext */

/*
 * Whether this transaction appended to the stream (in any subtransaction,
 * also one rolled back): then it may see events of its own that are not
 * committed, and a rollback could remove them.
 */
static bool
el_appended_here(Oid relid)
{
	return list_member_oid(el_appended, relid);
}
static Oid	el_noted_relid = InvalidOid;
static LocalTransactionId el_noted_lxid = InvalidLocalTransactionId;
static bool el_wake = false;	/* set at pre-commit: wake at commit */

void
el_consumer_note_append(Oid relid)
{
	MemoryContext old;

	if (relid == el_noted_relid && MyProc->lxid == el_noted_lxid)
		return;
	el_noted_relid = relid;
	el_noted_lxid = MyProc->lxid;
	if (list_member_oid(el_appended, relid))
		return;
	old = MemoryContextSwitchTo(TopTransactionContext);
	el_appended = lappend_oid(el_appended, relid);
	MemoryContextSwitchTo(old);
}

/* Set the latch of every backend waiting in poll() on the stream. */
/*
 * After an abort: the remembered group may have been created by the aborted
 * transaction, so it is looked up again.  The last poll is forgotten only if
 * it ran in what aborted (the transaction, or the subtransaction subid or
 * one inside it): the statement may have failed after the poll read its
 * events and before they reached the consumer.  An abort elsewhere (a
 * consumer's savepoint around one event's processing, say) leaves it.
 */
static void
el_forget_on_abort(SubTransactionId subid)
{
	el_group_forget();
	if (el_last_poll.in_xact &&
		(subid == InvalidSubTransactionId || el_last_poll.subid >= subid))
	{
		el_last_poll.group_id = 0;
		el_last_poll.in_xact = false;
	}
}

static void
el_wake_waiters(Oid relid)
{
	LOCKTAG		tag;
	VirtualTransactionId *vxids;

	el_wait_tag(&tag, relid);
	vxids = GetLockConflicts(&tag, AccessExclusiveLock, NULL);
	for (; VirtualTransactionIdIsValid(*vxids); vxids++)
	{
		PGPROC	   *proc = BackendIdGetProc(vxids->backendId);

		if (proc != NULL)
			SetLatch(&proc->procLatch);
	}
}

static void
el_consumer_xact_callback(XactEvent event, void *arg)
{
	ListCell   *lc;

	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			if (el_appended == NIL)
				break;
			el_wake = true;
			foreach(lc, el_appended)
			{
				Oid			relid = lfirst_oid(lc);

				if (el_stream_has_consumers(relid))
					Async_Notify(el_channel_name(relid), "");
			}
			break;
		case XACT_EVENT_COMMIT:
			/* Nothing here may fail: the transaction is already committed. */
			if (el_wake)
				foreach(lc, el_appended)
					el_wake_waiters(lfirst_oid(lc));
			el_last_poll.in_xact = false;
			el_appended = NIL;
			el_noted_relid = InvalidOid;
			el_wake = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			el_forget_on_abort(InvalidSubTransactionId);
			/* FALLTHROUGH */
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_COMMIT:
			el_last_poll.in_xact = false;
			el_appended = NIL;
			el_noted_relid = InvalidOid;
			el_wake = false;
			break;
		default:
			break;
	}
}

static void
el_consumer_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
							 SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		el_forget_on_abort(mySubid);
}

void
el_consumer_init(void)
{
	RegisterXactCallback(el_consumer_xact_callback, NULL);
	RegisterSubXactCallback(el_consumer_subxact_callback, NULL);
}
