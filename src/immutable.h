/*
 * immutable.h
 *	  The guards that keep streams append-only (immutable.c): the check of
 *	  an event's columns, the hooks through which the layers above say what
 *	  they own, and the exemptions our own DDL runs under.
 */
#ifndef EL_IMMUTABLE_H
#define EL_IMMUTABLE_H

#include "postgres.h"

#include "access/tupdesc.h"

extern bool el_has_event_columns(TupleDesc desc);

/*
 * event_log.require_guards(regclass), the default of every stream's shard
 * column from 0.3 on; InvalidOid on a catalog not yet updated to 0.3.
 */
extern Oid	el_require_guards_oid(void);

/*
 * Set at load time by the layers above.  owned_relation: whether a relation
 * belongs to them and may be dropped only through their own functions
 * (projections' views and build tables).  stream_triggers: how many inline
 * projection triggers the stream must have.
 */
typedef bool (*el_guard_relation_hook_type) (Oid relid);
typedef int (*el_guard_triggers_hook_type) (Oid stream);
extern PGDLLIMPORT el_guard_relation_hook_type el_guard_owned_relation_hook;
extern PGDLLIMPORT el_guard_triggers_hook_type el_guard_stream_triggers_hook;

/*
 * Called by the DDL guard for each stream it checks, before the check (SPI
 * connected, the stream locked): the layers above may point what they keep
 * on the stream at what their catalog holds now.  Projections use it for
 * inline triggers restored by pg_restore, whose argument is a view oid of
 * the dumped database (docs/design/restore.md).
 */
typedef void (*el_guard_stream_hook_type) (Oid stream);
extern PGDLLIMPORT el_guard_stream_hook_type el_guard_repair_stream_hook;

/*
 * Our own DDL that the guards let through, per relation, for the duration
 * of one statement: the caller clears it with el_guard_disallow() in a
 * PG_FINALLY block.
 *	 EL_GUARD_PROJECTION_DDL: a projection's trigger on the stream may be
 *		created or dropped; a projection's relation may be dropped.
 *	 EL_GUARD_DROP_STREAM: the stream may be dropped (drop_stream()).
 *	 EL_GUARD_SEGMENT_DDL: a segment of the stream may be created, attached
 *		or dropped (segment.c).
 */
#define EL_GUARD_PROJECTION_DDL	0x01
#define EL_GUARD_DROP_STREAM	0x02
#define EL_GUARD_SEGMENT_DDL	0x04

extern void el_guard_allow(Oid relid, int what);
extern void el_guard_disallow(Oid relid);
extern void el_guard_check_stream(Oid relid);

#endif							/* EL_IMMUTABLE_H */
