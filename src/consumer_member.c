/*
 * consumer_member.c
 *	  Members of consumer groups: the session lock that shows a member is
 *	  alive, leases on shards, the heartbeat every poll() sends, and the
 *	  settling of which member holds which shard.
 */
#include "postgres.h"

#include "executor/spi.h"
#include "executor/tstoreReceiver.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "catalog.h"
#include "consumer.h"
#include "event_log.h"

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

pg_attribute_noreturn()
static void el_member_in_use(ElGroup *g, const char *me, int32 lock_id, int pid);

/*
 * The members this session has been, by group id and name, with their
 * locks.  A member name is only a name: another live session may be that
 * member now (it took the name over after our lease ran out, with a new
 * lock).  So commit_offset()'s one-statement path names the lock it
 * expects to find in the member's row (Q_OFFSET_ADVANCE), and that lock
 * comes from here; pg_advisory_unlock_all() or DISCARD ALL drop it, and
 * the entry then says nothing.  A few entries: a session is usually one
 * member of one group; the oldest is forgotten first, and a forgotten one
 * costs the full path, not a wrong answer.
 */
#define EL_HELD_MEMBERS	8

typedef struct ElHeldMember
{
	int32		group_id;
	int32		lock_id;
	char	   *name;			/* in TopMemoryContext */
} ElHeldMember;

static ElHeldMember el_held[EL_HELD_MEMBERS];
static int	el_held_next = 0;

static ElHeldMember *
el_held_find(int32 group_id, const char *me)
{
	for (int i = 0; i < EL_HELD_MEMBERS; i++)
		if (el_held[i].name != NULL && el_held[i].group_id == group_id &&
			strcmp(el_held[i].name, me) == 0)
			return &el_held[i];
	return NULL;
}

static void
el_member_remember(int32 group_id, const char *me, int32 lock_id)
{
	ElHeldMember *h = el_held_find(group_id, me);

	if (h == NULL)
	{
		h = &el_held[el_held_next];
		el_held_next = (el_held_next + 1) % EL_HELD_MEMBERS;
		if (h->name != NULL)
			pfree(h->name);
		h->name = MemoryContextStrdup(TopMemoryContext, me);
		h->group_id = group_id;
	}
	h->lock_id = lock_id;
}

/*
 * Whether this session was member `me` of the group and still holds the
 * lock it had as that member (*lock_id).  Not whether it still is the
 * member: another session may have taken the name over with a new lock
 * since, which only consumer_members says (Q_OFFSET_ADVANCE checks it).
 */
bool
el_member_held_here(int32 group_id, const char *me, int32 *lock_id)
{
	ElHeldMember *h = el_held_find(group_id, me);

	if (h == NULL)
		return false;
	*lock_id = h->lock_id;
	return el_member_lock_mine(h->lock_id);
}

/*
 * Refuse (EL005) to act as member `me` when another live session is that
 * member, as poll() would.  A member nobody holds, or whose lease ran out,
 * may be acted for, as el_check_lease() lets anyone commit a shard whose
 * holder is gone.  The caller is connected to SPI.
 */
void
el_check_member_here(ElGroup *g, const char *me)
{
	Datum		values[2];
	bool		isnull;
	int32		lock_id;
	bool		unexpired;

	values[0] = Int32GetDatum(g->id);
	values[1] = CStringGetTextDatum(me);
	if (el_query(Q_MEMBER_GET, values, NULL, 1) != 1)
		return;
	lock_id = DatumGetInt32(el_spi_value(0, 1, &isnull));
	unexpired = DatumGetBool(el_spi_value(0, 2, &isnull));
	SPI_freetuptable(SPI_tuptable);
	if (unexpired && !el_member_lock_mine(lock_id) && el_member_lock_held(lock_id))
		el_member_in_use(g, me, lock_id, 0);
}

/*
 * Refuse when a live member holds the lease and this session is not that
 * member: its commits would overwrite ours, or ours its.  That includes a
 * holder with our member name: another session may have taken the name
 * over (EL005, as poll() would say).
 */
void
el_check_lease(ElGroup *g, const ElLease *lease, const char *me)
{
	if (lease->member == NULL)
		return;
	if (lease->has_member_row && el_member_lock_mine(lease->lock_id))
		return;
	if (strcmp(lease->member, me) == 0)
	{
		if (el_lease_live(lease))
			el_member_in_use(g, me, lease->lock_id, 0);
		return;
	}
	if (el_lease_live(lease))
		ereport(ERROR,
				(errcode(ERRCODE_EL_LEASE_HELD),
				 errmsg("shard %d of event stream \"%s\" is leased to another member of consumer group \"%s\"",
						lease->shard, el_qualified_name(g->relid), text_to_cstring(g->name)),
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

/* A row of consumer_members, as Q_SETTLE returns it. */
typedef struct ElMember
{
	char	   *name;
	int32		lock_id;
	int32		pid;
	bool		unexpired;
	bool		stale;			/* less than half its lease left */
} ElMember;

/* EL005: a live session other than ours is the member `me` (lock lock_id). */
pg_attribute_noreturn()
static void
el_member_in_use(ElGroup *g, const char *me, int32 lock_id, int pid)
{
	int			holder = el_member_lock_holder(lock_id);

	ereport(ERROR,
			(errcode(ERRCODE_EL_MEMBER_IN_USE),
			 errmsg("member \"%s\" of consumer group \"%s\" is in use by another session",
					me, text_to_cstring(g->name)),
			 holder != 0 || pid != 0 ?
			 errdetail("Backend %d holds the member's lock.", holder != 0 ? holder : pid) : 0,
			 errhint("Give each consumer session its own member name, or end the other session.")));
}

/*
 * Join the group as `me`, or renew my membership, given the group's
 * members[] as read at the start of this poll.  Sets the number of live
 * members and my rank among them in name order (C collation), which decide
 * my share of the shards, and *wrote when it changed consumer_members (a
 * write that may have waited for another member's transaction).  Returns
 * false if the group is gone (dropped since this backend looked it up).
 *
 * A member name that a new session reuses is taken over when its previous
 * session is gone, or still there but out of lease (hung): the row then
 * names the new session's pid, and gets a new lock_id when the old session
 * still holds the old one, so that the two never count as one live member.
 * The old session, should it poll again, finds the name in use (EL005).
 */
static bool
el_member_heartbeat(ElGroup *g, const char *me, const ElMember *members,
					int nmembers, int *live, int *rank, bool *wrote)
{
	Datum		values[3];
	bool		found = false;
	bool		renew = true;
	bool		take_over = false;
	bool		any_expired = false;
	int32		my_lock = 0;
	bool		isnull;

	*live = 1;
	*rank = 0;
	*wrote = false;
	for (int i = 0; i < nmembers; i++)
	{
		const ElMember *m = &members[i];

		if (strcmp(m->name, me) == 0)
		{
			found = true;
			if (el_member_lock_take(m->lock_id))
			{
				renew = m->stale || m->pid != MyProcPid;
				el_member_remember(g->id, me, m->lock_id);
			}
			else if (m->unexpired)
			{
				/*
				 * Another session that is still alive and within its lease
				 * is this member already; two sessions as one member would
				 * both process its shards.
				 */
				el_member_in_use(g, me, m->lock_id, m->pid);
			}
			else
				take_over = true;
			continue;
		}
		if (!m->unexpired)
			any_expired = true;
		else if (el_member_lock_held(m->lock_id))
		{
			(*live)++;
			if (strcmp(m->name, me) < 0)
				(*rank)++;
		}
	}

	values[0] = Int32GetDatum(g->id);
	*wrote = renew || any_expired;
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
		my_lock = DatumGetInt32(el_spi_value(0, 1, &isnull));
		SPI_freetuptable(SPI_tuptable);

		/*
		 * The statements above name the row by member name only.  If it
		 * changed hands while they waited (another session joined under
		 * the name, or took it over, and committed), we have just written
		 * our pid into that session's row and got its lock back: the name
		 * is in use, and the error takes our write back.
		 */
		if (!el_member_lock_take(my_lock))
			el_member_in_use(g, me, my_lock, 0);
		el_member_remember(g->id, me, my_lock);
	}
	if (any_expired)
		el_query(Q_MEMBERS_EXPIRE, values, NULL, 0);
	return true;
}

/* ----------------------------------------------------------------
 * Shard assignment
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
 * Run Q_SETTLE: the group's shards, in shard order, into a new *leases,
 * and unless members is NULL its members into a new *members (*nmembers
 * of them).  Returns the number of shards.
 */
static int
el_settle_read(ElGroup *g, ElLease **leases, ElMember **members, int *nmembers)
{
	Datum		values[2];
	uint64		n;
	int			nleases = 0;
	bool		isnull;

	values[0] = Int32GetDatum(g->id);
	values[1] = Int32GetDatum(el_lease_timeout);
	n = el_query(Q_SETTLE, values, NULL, 0);
	*leases = palloc(sizeof(ElLease) * (n + 1));
	if (members != NULL)
	{
		*members = palloc(sizeof(ElMember) * (n + 1));
		*nmembers = 0;
	}
	for (uint64 i = 0; i < n; i++)
	{
		(void) el_spi_value(i, 1, &isnull);
		if (!isnull)
		{
			ElLease    *lease = &(*leases)[nleases++];

			el_result_lease(i, lease);
			if (lease->shard < 0 || lease->shard >= g->shards)
				elog(ERROR, "consumer group %d has a shard %d out of range",
					 g->id, lease->shard);
		}
		else if (members != NULL)
		{
			ElMember   *m = &(*members)[(*nmembers)++];

			m->name = TextDatumGetCString(el_spi_value(i, 2, &isnull));
			m->lock_id = DatumGetInt32(el_spi_value(i, 3, &isnull));
			m->unexpired = DatumGetBool(el_spi_value(i, 4, &isnull));
			m->pid = DatumGetInt32(el_spi_value(i, 6, &isnull));
			m->stale = DatumGetBool(el_spi_value(i, 7, &isnull));
		}
	}
	SPI_freetuptable(SPI_tuptable);
	return nleases;
}

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
int
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
	ElLease    *leases;
	int			nleases;
	ElMember   *members;
	int			nmembers;
	bool		wrote;

	/*
	 * One statement reads the members and the shards (it was two, and
	 * every poll makes it; docs/design/append_cost.md).  The shards' rows
	 * are good only as long as nobody can have changed them since: so when
	 * the heartbeat writes (renews my lease, joins, takes a name over,
	 * removes expired members), which happens when my lease is half gone
	 * and may wait for another member's transaction, they are read again
	 * after it.  Meanwhile my lease may have run out and another member
	 * may have taken my shards; read before, they would still look mine.
	 * Without a write nothing waited, and my lease, more than half left
	 * when read, is still running.
	 */
	nleases = el_settle_read(g, &leases, &members, &nmembers);
	if (!el_member_heartbeat(g, me, members, nmembers, &live, &rank, &wrote))
		return -1;				/* the group is gone: the caller retries */
	if (wrote)
		nleases = el_settle_read(g, &leases, NULL, NULL);
	target = g->shards / live + (rank < g->shards % live ? 1 : 0);

	for (int i = 0; i < nleases; i++)
	{
		lease = leases[i];
		if (lease.member != NULL && strcmp(lease.member, me) == 0)
			plan[lease.shard] = (++mine <= target) ? SP_KEEP : SP_RELEASE;
	}
	kept = Min(mine, target);
	for (int i = 0; i < nleases && kept < target; i++)
	{
		lease = leases[i];
		if (plan[lease.shard] == SP_NONE && !el_lease_live(&lease))
		{
			plan[lease.shard] = SP_CLAIM;
			kept++;
		}
	}

	if (nleases == 0)
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
	for (int i = 0; i < nleases; i++)
	{
		if (plan[leases[i].shard] == SP_KEEP)
		{
			shards[nheld] = leases[i].shard;
			after[nheld] = leases[i].committed_seq;
			nheld++;
		}
	}
	for (int s = 0; s < g->shards; s++)
		if (plan[s] == SP_RELEASE || plan[s] == SP_CLAIM)
			lock[nlock++] = s;
	if (nlock == 0)
		return nheld;

	values[0] = Int32GetDatum(g->id);
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
