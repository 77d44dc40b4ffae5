/*
 * projection.h
 *	  The projection subsystem's shared types (a projection's catalog row, a
 *	  compiled handler set, one use of it) and what each of its files
 *	  exports to the others.  Nothing outside the subsystem includes this
 *	  but the background worker (worker.c).
 */
#ifndef EL_PROJECTION_H
#define EL_PROJECTION_H

#include "postgres.h"

#include "access/genam.h"
#include "executor/spi.h"
#include "catalog/namespace.h"
#include "utils/jsonb.h"

#include "event_log.h"
#include "utils/timestamp.h"

/* ---- What the rest of the extension uses ---- */

/* At load time: the guard hooks and drop_stream() callback (projection.c). */
extern void el_projection_init(void);

/* The background worker's side (projection_async.c). */
extern int64 el_run_projection_turn(Oid view, int64 max_events, TimestampTz deadline);
extern void el_worker_exit(int code, Datum arg);
extern void el_note_overrun(void);

/* ---- Inside the subsystem ---- */

/* A handler's statements in their set-based form (projection_setplan.c). */
typedef struct ElSetPlan ElSetPlan;

#define EL_PARAM_ROW			(EL_NATTS + 1)	/* $n of the whole event */

/* A projection's row in event_log.projections. */
typedef struct ElProjection
{
	Oid			view;
	Oid			stream;
	bool		inline_mode;
	char	   *columns;
	Jsonb	   *handlers;
	char	   *reducer;		/* NULL unless a state projection */
	Jsonb	   *initial;
	Oid			build_table;
	int32		generation;
	bool		upcast;			/* handlers see payloads upcast (0.4) */
} ElProjection;

/* One event type's handler, prepared. */
typedef struct ElHandler
{
	char	   *type;
	int			typelen;
	SPIPlanPtr	plan;
} ElHandler;

/*
 * A projection's handlers, ready to run: prepared plans, the identity and
 * search path they run under, and the parameters an event is passed in.
 */
typedef struct ElHandlerSet
{
	MemoryContext cxt;
	Oid			view;
	Oid			stream;
	bool		inline_mode;
	bool		upcast;			/* events upcast before the handler runs */
	char	   *name;			/* qualified view name, for messages */
	Oid			owner;
	OverrideSearchPath *path;
	int			nhandlers;
	ElHandler  *handlers;
	SPIPlanPtr	any;			/* the "*" handler, if any */
	bool		keep;			/* plans saved with SPI_keepplan */
	bool		uses_row;		/* some handler uses the whole event `e` */
	TupleDesc	rowdesc;		/* event_log.event */
	Oid			argtypes[EL_PARAM_ROW];	/* of $1..$10 */
	int			refcount;		/* running now (for the live cache) */
	LocalTransactionId checked_lxid;	/* inline: the statement whose */
	TimestampTz checked_at;		/* read privileges were checked last */
	bool		orphaned;		/* replaced in the cache while running */
	/* Set-based replay for builds (projection_setplan.c): per handler, and for "*". */
	bool		setbased;
	ElSetPlan **setplans;
	ElSetPlan *any_setplan;
	const char *setbased_why;		/* why not (projections.build_method) */
	bool		setbased_plain;	/* INSERT ... ON CONFLICT runs as INSERT */
	char	   *setbased_fallback;	/* the build went on event by event: why */
} ElHandlerSet;

/*
 * One use of a handler set, on the caller's stack: what el_apply_begin()
 * saved, and the event being applied, for the error context.  A handler
 * may append, and so run a handler of the same set, inside another one.
 */
typedef struct ElApplyState
{
	ElHandlerSet *set;
	Oid			save_user;
	int			save_sec;
	int			nestlevel;
	int32		shard;
	int64		seq;
	const char *type;
	int			typelen;
	bool		timed;			/* each handler run under handler_timeout */
} ElApplyState;

/* projection.c */
extern ElProjection *el_projection_load(Oid view);
extern Oid el_projection_oid(text *name);
extern bool el_lock_projection(Oid view, bool wait);
extern void el_check_stream_read(Oid stream, Oid owner, const char *projection);
extern void el_require_owner(Oid view);

/* projection_handler.c */
extern void el_apply_begin(ElHandlerSet *set, ElApplyState *st);
extern void el_apply_end(ElApplyState *st);
extern void el_check_handlers(Jsonb *handlers);
extern ElHandlerSet *el_compile(ElProjection *p, Jsonb *handlers, bool redirect, bool keep, MemoryContext parent);
extern void el_free_set(ElHandlerSet *set);
extern int el_handler_index(ElHandlerSet *set, text *type);
extern SPIPlanPtr el_find_handler(ElHandlerSet *set, text *type);
extern bool el_apply(ElApplyState *st, Datum *values, bool *nulls);
extern bool el_handler_overran(void);
extern ErrorData *el_in_subxact(void (*fn) (void *), void *arg);

/* projection_upcast.c */
extern bool el_projection_upcast(Oid view);
extern bool el_projection_record_upcast(Oid view);

/* projection_inline.c */
extern ElHandlerSet *el_live_handlers(Oid view);
extern void el_release_set(ElHandlerSet *set);
extern char *el_inline_trigger_name(Oid stream, Oid view);
extern void el_projection_inline_init(void);

/* projection_build.c */
extern IndexScanDesc el_shard_scan(Relation stream, Relation pk, Snapshot snap, int32 shard, int64 after);
extern int64 el_build(ElHandlerSet *set, ElProjection *p, int64 *last, bool create);
extern void el_set_checkpoints(Oid view, int shards, int64 *last);

/* projection_setplan.c: set-based replay of builds */
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

#endif							/* EL_PROJECTION_H */
