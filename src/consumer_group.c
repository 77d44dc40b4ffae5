/*
 * consumer_group.c
 *	  Consumer groups' catalog (event_log.consumer_groups, consumer_offsets,
 *	  consumer_members): the statements run on it as its owner, input checks,
 *	  opening a group for a call, and what this backend knows of a stream's
 *	  consumers.
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "executor/tstoreReceiver.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"

#include "catalog.h"
#include "consumer.h"
#include "event_log.h"
#include "read.h"
#include "registry.h"

/* The statements of ElQuery (consumer.h), by number. */

/*
 * The columns of Q_SETTLE, Q_SHARDS_LOCK and Q_OFFSET_LOCK start alike
 * (el_result_lease()): shard, holder, its lock_id, whether its lease runs,
 * committed offset.
 */
#define EL_LEASE_SELECT \
	"o.shard, o.member, m.lock_id," \
	" m.expires_at OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp(), o.committed_seq"
#define EL_LEASE_FROM \
	" FROM event_log.consumer_offsets o" \
	" LEFT JOIN event_log.consumer_members m" \
	" ON m.group_id OPERATOR(pg_catalog.=) o.group_id" \
	" AND m.member OPERATOR(pg_catalog.=) o.member"
#define EL_LEASE_COLUMNS EL_LEASE_SELECT EL_LEASE_FROM

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
	/* From 0.3 on, with the group's types (el_group_types()). */
	[Q_GROUP_FIND_TYPES] = {
		"SELECT id, owner::pg_catalog.oid, types FROM event_log.consumer_groups"
		" WHERE stream OPERATOR(pg_catalog.=) $1"
		" AND group_name OPERATOR(pg_catalog.=) $2",
		2, {REGCLASSOID, TEXTOID}
	},
	[Q_GROUP_TYPES] = {
		"SELECT types FROM event_log.consumer_groups WHERE id OPERATOR(pg_catalog.=) $1",
		1, {INT4OID}
	},
	/* Only the first: a group's types, once set, stay. */
	[Q_GROUP_SUBSCRIBE] = {
		"UPDATE event_log.consumer_groups SET types = $2"
		" WHERE id OPERATOR(pg_catalog.=) $1 AND types IS NULL RETURNING id",
		2, {INT4OID, TEXTARRAYOID}
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
	/*
	 * A group's offsets go with it by our own DELETE: from version 0.3 on,
	 * consumer_offsets has no foreign key (a parallel pg_restore may load
	 * it before consumer_groups; docs/design/restore.md).
	 */
	[Q_GROUP_DROP] = {
		"WITH o AS (DELETE FROM event_log.consumer_offsets"
		" WHERE group_id OPERATOR(pg_catalog.=) $1)"
		" DELETE FROM event_log.consumer_groups WHERE id OPERATOR(pg_catalog.=) $1",
		1, {INT4OID}
	},
	[Q_GROUPS_EXIST] = {
		"SELECT 1 FROM event_log.consumer_groups"
		" WHERE stream OPERATOR(pg_catalog.=) $1 LIMIT 1",
		1, {REGCLASSOID}
	},
	[Q_STREAM_FORGET] = {
		"WITH o AS (DELETE FROM event_log.consumer_offsets"
		" WHERE group_id OPERATOR(pg_catalog.=) ANY (SELECT id FROM event_log.consumer_groups"
		" WHERE stream OPERATOR(pg_catalog.=) $1))"
		" DELETE FROM event_log.consumer_groups WHERE stream OPERATOR(pg_catalog.=) $1",
		1, {REGCLASSOID}
	},
	/*
	 * What poll() settles its shards from, in one statement: first the
	 * group's members (shard NULL; member, lock_id, unexpired, NULL, then
	 * pid and whether less than half the lease is left), then the group's
	 * shards in order, as EL_LEASE_COLUMNS, with two NULLs.
	 */
	[Q_SETTLE] = {
		"SELECT NULL::pg_catalog.int4, member, lock_id,"
		" expires_at OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp(),"
		" NULL::pg_catalog.int8, pid,"
		" expires_at OPERATOR(pg_catalog.<) (pg_catalog.clock_timestamp()"
		" OPERATOR(pg_catalog.+) ($2 OPERATOR(pg_catalog.*) interval '0.5 ms'))"
		" FROM event_log.consumer_members WHERE group_id OPERATOR(pg_catalog.=) $1"
		" UNION ALL"
		" SELECT " EL_LEASE_SELECT ", NULL::pg_catalog.int4, NULL::pg_catalog.bool"
		EL_LEASE_FROM
		" WHERE o.group_id OPERATOR(pg_catalog.=) $1"
		" ORDER BY 1 NULLS FIRST",
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
	/*
	 * commit_offset()'s common case: my shard, forwards, within the shard;
	 * "my": leased to member $4, which is still the member whose lock ($5)
	 * this session holds (not taken over by another session since).
	 */
	[Q_OFFSET_ADVANCE] = {
		"UPDATE event_log.consumer_offsets"
		" SET committed_seq = $3, committed_at = pg_catalog.clock_timestamp()"
		" WHERE group_id OPERATOR(pg_catalog.=) $1 AND shard OPERATOR(pg_catalog.=) $2"
		" AND member OPERATOR(pg_catalog.=) $4 AND committed_seq OPERATOR(pg_catalog.<) $3"
		" AND EXISTS (SELECT FROM event_log.consumer_members m"
		" WHERE m.group_id OPERATOR(pg_catalog.=) $1 AND m.member OPERATOR(pg_catalog.=) $4"
		" AND m.lock_id OPERATOR(pg_catalog.=) $5)",
		5, {INT4OID, INT4OID, INT8OID, TEXTOID, INT4OID}
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
	/* Retention (0.5, consumer_retention.c). */
	[Q_GROUP_OFFSET_RESET] = {
		"SELECT offset_reset FROM event_log.consumer_groups WHERE id OPERATOR(pg_catalog.=) $1",
		1, {INT4OID}
	},
	[Q_GROUP_SET_OFFSET_RESET] = {
		"UPDATE event_log.consumer_groups SET offset_reset = $2 WHERE id OPERATOR(pg_catalog.=) $1",
		2, {INT4OID, TEXTOID}
	},
	/* A jump over removed events, if the shard is still where we found it. */
	[Q_OFFSET_JUMP] = {
		"UPDATE event_log.consumer_offsets"
		" SET committed_seq = $4, committed_at = pg_catalog.clock_timestamp(),"
		" skipped_events = skipped_events OPERATOR(pg_catalog.+) ($4 OPERATOR(pg_catalog.-) $3)"
		" WHERE group_id OPERATOR(pg_catalog.=) $1 AND shard OPERATOR(pg_catalog.=) $2"
		" AND committed_seq OPERATOR(pg_catalog.=) $3",
		4, {INT4OID, INT4OID, INT8OID, INT8OID}
	},
	/* one member: its lock and whether its lease runs */
	[Q_MEMBER_GET] = {
		"SELECT lock_id, expires_at OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp()"
		" FROM event_log.consumer_members"
		" WHERE group_id OPERATOR(pg_catalog.=) $1 AND member OPERATOR(pg_catalog.=) $2",
		2, {INT4OID, TEXTOID}
	},
};

/* ----------------------------------------------------------------
 * The group catalog
 * ----------------------------------------------------------------
 */

/*
 * Run one of the statements above on the group catalog, as its owner
 * (catalog.c), with a kept plan.  The caller is connected to SPI.
 */
uint64
el_query(ElQuery q, Datum *values, const char *nulls, long tcount)
{
	return el_catalog_sql(el_queries[q].sql, el_queries[q].nargs,
						  el_queries[q].types, values, nulls, 0, tcount);
}

/* Read the lease columns of one result row (EL_LEASE_COLUMNS). */
void
el_result_lease(uint64 row, ElLease *lease)
{
	bool		isnull;
	Datum		d;

	lease->shard = DatumGetInt32(el_spi_value(row, 1, &isnull));
	d = el_spi_value(row, 2, &isnull);
	lease->member = isnull ? NULL : TextDatumGetCString(d);
	d = el_spi_value(row, 3, &isnull);
	lease->has_member_row = !isnull;
	lease->lock_id = isnull ? 0 : DatumGetInt32(d);
	d = el_spi_value(row, 4, &isnull);
	lease->unexpired = !isnull && DatumGetBool(d);
	lease->committed_seq = DatumGetInt64(el_spi_value(row, 5, &isnull));
}

Datum
el_int4_array(const int32 *items, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = Int32GetDatum(items[i]);
	return PointerGetDatum(construct_array(d, n, INT4OID, 4, true, TYPALIGN_INT));
}

Datum
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

void
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
char *
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
char *
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
	Oid			catalog;		/* event_log.consumer_groups */
	bool		typed;
	Datum		types;			/* in TopMemoryContext, or (Datum) 0 */
}			el_last_group;

/*
 * Also called by relcache invalidations of the group's stream (sent when a
 * group is created or dropped, or its types set) and of consumer_groups
 * (ALTER EXTENSION UPDATE adding the types column): only the id is reset,
 * the types stay allocated until the next el_group_remember().
 */
void
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
	el_last_group.typed = g->typed;
	if (el_last_group.types != (Datum) 0)
		pfree(DatumGetPointer(el_last_group.types));
	el_last_group.types = (Datum) 0;
	if (g->types != (Datum) 0)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		el_last_group.types = datumCopy(g->types, false, -1);
		MemoryContextSwitchTo(old);
	}
}

/* The types column of a row of Q_GROUP_FIND_TYPES or Q_GROUP_TYPES. */
static Datum
el_result_types(int col)
{
	bool		isnull;
	Datum		d = el_spi_value(0, col, &isnull);

	return isnull ? (Datum) 0 : PointerGetDatum(DatumGetArrayTypePCopy(d));
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
	g->types = (Datum) 0;
	if (el_last_group.id != 0 && el_last_group.relid == relid &&
		strlen(el_last_group.name) == (size_t) len &&
		memcmp(el_last_group.name, VARDATA_ANY(name), len) == 0)
	{
		g->id = el_last_group.id;
		g->owner = el_last_group.owner;
		g->typed = el_last_group.typed;
		if (el_last_group.types != (Datum) 0)
			g->types = datumCopy(el_last_group.types, false, -1);
		return true;
	}
	el_group_forget();

	/*
	 * A 0.1 or 0.2 catalog has no types column (until ALTER EXTENSION
	 * UPDATE): poll() then filters per call only.
	 */
	el_last_group.catalog = el_catalog_relid("consumer_groups");
	g->typed = get_attnum(el_last_group.catalog, "types") != InvalidAttrNumber;
	values[0] = ObjectIdGetDatum(relid);
	values[1] = PointerGetDatum(name);
	values[2] = ObjectIdGetDatum(GetUserId());
	if (el_query(g->typed ? Q_GROUP_FIND_TYPES : Q_GROUP_FIND, values, NULL, 1) == 0)
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

			g->id = DatumGetInt32(el_spi_value(0, 1, &isnull));
			g->owner = DatumGetObjectId(el_spi_value(0, 2, &isnull));
			args[0] = Int32GetDatum(g->id);
			args[1] = Int32GetDatum(shards);
			el_query(Q_OFFSETS_CREATE, args, NULL, 0);
			CacheInvalidateRelcacheByRelid(relid);
			el_group_remember(g);
			return true;
		}
		if (el_query(g->typed ? Q_GROUP_FIND_TYPES : Q_GROUP_FIND, values, NULL, 1) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("could not create consumer group \"%s\" of event stream \"%s\"",
							text_to_cstring(name), el_qualified_name(relid)),
					 errdetail("Another transaction created it concurrently."),
					 errhint("Retry the transaction.")));
	}
	g->id = DatumGetInt32(el_spi_value(0, 1, &isnull));
	g->owner = DatumGetObjectId(el_spi_value(0, 2, &isnull));
	if (g->typed)
		g->types = el_result_types(3);
	el_group_remember(g);
	return true;
}

/* Only the group's owner role (and roles that have its privileges) use it. */
void
el_group_check_owner(ElGroup *g)
{
	if (!has_privs_of_role(GetUserId(), g->owner))
	{
		char	   *owner = GetUserNameFromId(g->owner, true);

		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for consumer group \"%s\" of event stream \"%s\"",
						text_to_cstring(g->name), el_qualified_name(g->relid)),
				 owner ? errdetail("The group belongs to role \"%s\".", owner) : 0,
				 errhint("Use the group as its owner or a member of the owner role, or use another group name.")));
	}
}

/* Common start of the functions that act on a group: checks, SPI, group. */
void
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
void
el_group_reopen(ElGroup *g)
{
	el_group_forget();
	(void) el_group_open(g, g->name, g->relid, g->shards, true);
	el_group_check_owner(g);
}

/* Order two event types (text Datums) byte by byte, for qsort(). */
static int
el_type_cmp(const void *a, const void *b)
{
	Datum		x = *(const Datum *) a;
	Datum		y = *(const Datum *) b;
	int			lx = VARSIZE_ANY_EXHDR(x);
	int			ly = VARSIZE_ANY_EXHDR(y);
	int			c = memcmp(VARDATA_ANY(x), VARDATA_ANY(y), Min(lx, ly));

	return c != 0 ? c : (lx > ly) - (lx < ly);
}

/* The items of an array of types (without nulls), sorted byte by byte. */
static Datum *
el_sorted_items(Datum types, int *n)
{
	Datum	   *items;

	deconstruct_array(DatumGetArrayTypeP(types), TEXTOID, -1, false, TYPALIGN_INT,
					  &items, NULL, n);
	qsort(items, *n, sizeof(Datum), el_type_cmp);
	return items;
}

/* Whether two arrays of distinct types hold the same ones, in any order. */
static bool
el_same_types(Datum a, Datum b)
{
	int			na,
				nb;
	Datum	   *ia = el_sorted_items(a, &na);
	Datum	   *ib = el_sorted_items(b, &nb);

	if (na != nb)
		return false;
	for (int i = 0; i < na; i++)
		if (el_type_cmp(&ia[i], &ib[i]) != 0)
			return false;
	return true;
}

/*
 * The types a poll of g reads, given the call's (el_types_arg(): distinct
 * types, or (Datum) 0 for every type).  From 0.3 on a group keeps its types
 * (docs/design/type_filters.md, "A group's types"): a group without types
 * takes the first ones a poll names, for good; a poll without types reads
 * the group's; a poll naming other types than the group's is refused, since
 * the group's offsets have gone past events of the types it did not poll.
 * On a 0.1 or 0.2 catalog (no types column), the call's.  Setting them
 * sends a relcache invalidation for the stream, so that other backends'
 * el_last_group read them again.  The caller is connected to SPI.
 */
Datum
el_group_types(ElGroup *g, Datum types)
{
	Datum		values[2];
	int			n;

	if (!g->typed)
		return types;
	for (int attempt = 0; g->types == (Datum) 0; attempt++)
	{
		Datum	   *items;

		if (types == (Datum) 0)
			return (Datum) 0;
		if (attempt == 2)
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("could not set the event types of consumer group \"%s\" of event stream \"%s\"",
							text_to_cstring(g->name), el_qualified_name(g->relid)),
					 errdetail("The group was dropped or changed concurrently."),
					 errhint("Retry the transaction.")));
		/* Stored sorted: the catalog and consumer_lag show them alike. */
		items = el_sorted_items(types, &n);
		values[0] = Int32GetDatum(g->id);
		values[1] = PointerGetDatum(construct_array(items, n, TEXTOID, -1, false,
													TYPALIGN_INT));
		if (el_query(Q_GROUP_SUBSCRIBE, values, NULL, 0) == 1)
		{
			CacheInvalidateRelcacheByRelid(g->relid);
			g->types = values[1];
			el_group_remember(g);
			return g->types;
		}
		/* Set meanwhile by another member, or the group is gone. */
		if (el_query(Q_GROUP_TYPES, values, NULL, 1) == 1)
			g->types = el_result_types(1);
		else
			el_group_reopen(g); /* created again, as any first use does */
	}
	if (types != (Datum) 0 && !el_same_types(g->types, types))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("consumer group \"%s\" of event stream \"%s\" polls other event types",
						text_to_cstring(g->name), el_qualified_name(g->relid)),
				 errdetail("The group's types are %s; this poll asked for %s.",
						   OidOutputFunctionCall(F_ARRAY_OUT, g->types),
						   OidOutputFunctionCall(F_ARRAY_OUT, types)),
				 errhint("Poll without types to read the group's. To poll other types, use another group name, or drop this group with event_log.drop_group().")));
	return g->types;
}

/*
 * Whether a stream has consumer groups (for appenders' NOTIFY).  Called
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

/*
 * drop_stream(): its groups go with it, with cascade or without.  The
 * caller is connected to SPI.
 */
void
el_consumer_forget_stream(Oid relid, const char *qname, bool cascade)
{
	Datum		values[1];

	values[0] = ObjectIdGetDatum(relid);
	el_forget_nacks(0, relid);
	el_query(Q_STREAM_FORGET, values, NULL, 0);
	el_group_forget();
}

/* ----------------------------------------------------------------
 * What this backend knows of a stream's consumers
 *
 * Per stream: whether it has a consumer group (for the commit-time NOTIFY),
 * and per shard the highest seq seen committed (which lets commit_offset()
 * skip probing the shard's end: a committed event never goes away).
 * Entries are reset by relcache invalidations of the stream, which creating
 * or dropping a group and drop_stream() send.  An entry is marked valid
 * before it is filled, so an invalidation that arrives meanwhile leaves it
 * stale for the next caller; entries are never removed, so pointers to
 * them stay good.
 * ----------------------------------------------------------------
 */

typedef struct ElConsumerStream
{
	Oid			relid;			/* hash key */
	bool		valid;
	int			shards;
	bool		consumers_known;	/* has_consumers is up to date */
	bool		has_consumers;
	int64	   *seen_end;		/* [shards], or NULL */
} ElConsumerStream;

static HTAB *el_consumer_streams = NULL;

static void
el_consumer_streams_callback(Datum arg, Oid relid)
{
	/* The group this backend opened last: its stream or catalog changed. */
	if (!OidIsValid(relid) || relid == el_last_group.relid ||
		relid == el_last_group.catalog)
		el_group_forget();
	el_cache_invalidate(el_consumer_streams, relid,
						offsetof(ElConsumerStream, valid));
}

void
el_consumer_cache_init(void)
{
	HASHCTL		ctl;

	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(ElConsumerStream);
	el_consumer_streams = hash_create("event_log consumer streams", 64, &ctl,
									  HASH_ELEM | HASH_BLOBS);
	CacheRegisterRelcacheCallback(el_consumer_streams_callback, (Datum) 0);
}

static ElConsumerStream *
el_consumer_stream(Oid relid)
{
	ElConsumerStream *entry;
	bool		found;

	entry = hash_search(el_consumer_streams, &relid, HASH_ENTER, &found);
	if (found && entry->valid)
		return entry;
	if (found && entry->seen_end)
		pfree(entry->seen_end);
	entry->seen_end = NULL;
	entry->consumers_known = false;
	entry->valid = true;
	entry->shards = el_stream_shards(relid);
	return entry;
}

/* The highest seq of a shard this backend has seen committed (0 if none). */
int64
el_shard_seen_end(Oid relid, int32 shard)
{
	ElConsumerStream *entry = el_consumer_stream(relid);

	if (entry->seen_end == NULL || shard < 0 || shard >= entry->shards)
		return 0;
	return entry->seen_end[shard];
}

/*
 * Record that seq of a shard was read.  The caller makes sure it was
 * committed: a transaction that appended to the stream could roll its own
 * events back, so what it reads must not be recorded.
 */
void
el_shard_saw(Oid relid, int32 shard, int64 seq)
{
	ElConsumerStream *entry = el_consumer_stream(relid);

	if (shard < 0 || shard >= entry->shards)
		return;
	if (entry->seen_end == NULL)
		entry->seen_end = MemoryContextAllocZero(TopMemoryContext,
												 sizeof(int64) * entry->shards);
	if (seq > entry->seen_end[shard])
		entry->seen_end[shard] = seq;
}

/*
 * Whether the stream has at least one consumer group.  The lookup runs as
 * the catalog's owner, also at the pre-commit of any transaction that
 * appended, with pg_catalog pinned as the path whatever the appender's
 * search_path says (catalog.c).
 */
bool
el_stream_has_consumers(Oid relid)
{
	ElConsumerStream *entry = el_consumer_stream(relid);
	bool		exists;

	if (entry->consumers_known)
		return entry->has_consumers;
	entry->consumers_known = true;
	exists = el_consumer_groups_exist(relid);
	entry->has_consumers = exists;
	return exists;
}
