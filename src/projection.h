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
#include "utils/hsearch.h"
#include "utils/jsonb.h"

#include "event_log.h"
#include "segment.h"
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
extern ErrorData *el_in_subxact_ext(void (*fn) (void *), void *arg, bool keep);

/* projection_upcast.c */
extern bool el_projection_upcast(Oid view);
extern bool el_projection_record_upcast(Oid view);

/* projection_inline.c */
extern ElHandlerSet *el_live_handlers(Oid view);
extern void el_release_set(ElHandlerSet *set);
extern char *el_inline_trigger_name(Oid stream, Oid view);
extern void el_projection_inline_init(void);


/* projection_deadletter.c: parked events of async projections */
typedef struct ElPending		/* a parked event whose row is not written yet */
{
	int32		shard;
	int64		seq;
	char	   *key;
	char	   *type;
	char	   *error;			/* NULL: waits behind its key's */
	char	   *sqlstate;
	int64		behind;			/* -1: none */
} ElPending;

typedef struct ElParked
{
	Oid			view;
	Oid			stream;
	bool		park;			/* the policy: park a failing event's key */
	int			shards;
	HTAB	  **keys;			/* per shard: its parked keys, or NULL */
	MemoryContext cxt;
	int64		build_events;	/* parked by a build */
	int64		build_keys;
	MemoryContext pendcxt;		/* of pending[] */
	ElPending  *pending;
	int			npending;
	int			maxpending;
	/* el_parked_mark(): what to undo if what parked since rolls back */
	List	   *since;			/* keys parked since, as "shard:key" */
	int64		mark_events;
	int64		mark_keys;
	bool		marked;
} ElParked;
extern bool el_dead_letters_catalog(void);
extern ElParked *el_parked_open(Oid view, Oid stream, int shards, bool build);
extern int64 el_parked_behind(ElParked *pk, Datum *values, bool *nulls);
extern void el_park_event(ElParked *pk, HeapTuple tup, TupleDesc desc,
						  ErrorData *edata, int64 behind);
extern void el_park_flush(ElParked *pk);
extern void el_parked_mark(ElParked *pk);
extern void el_parked_undo(ElParked *pk);
extern void el_dead_letters_forget(Oid view, bool record);
extern const char *el_error_policy_arg(FunctionCallInfo fcinfo, int argno, const char *what);
extern void el_check_error_policy(const char *name, bool inline_mode,
								  const char *on_error, const char *on_build_error);
extern void el_set_error_policies(Oid view, const char *on_error, const char *on_build_error);

/* projection_async.c */
extern int	el_read_batch(Relation stream, Relation pk, int32 shard, int64 after,
						  int max, HeapTuple *out);
extern int	el_apply_batch(ElHandlerSet *set, TupleDesc desc, HeapTuple *events,
						   const bool *skip, int count, TimestampTz deadline,
						   ElApplyState *outer, int *applied, ErrorData **error);
extern List *el_owned_projections(const char *sql);

/*
 * A run over one shard's events, applying them in subtransactions and
 * parking what fails under the 'park' policy: an async run's batch
 * (checkpoint set: the shard's checkpoint moves with it) or a build's.
 */
typedef struct ElShardRun
{
	ElHandlerSet *set;
	ElParked   *parked;
	TupleDesc	desc;			/* the stream's */
	int32		shard;
	int64		seq;			/* the last event handled */
	bool		checkpoint;		/* move projection_offsets with seq */
	ElApplyState *outer;		/* a build's; NULL: live (handler_timeout) */
	bool		quiet;			/* no WARNING per parked key (builds count) */
	int			segment;		/* events per subtransaction, at most */
	TimestampTz deadline;		/* 0: none */
	int64		total;			/* events applied or parked */
	int64		parked_events;
	int64		parked_keys;	/* events a handler failed on */
	bool		out_of_time;
} ElShardRun;
extern bool el_run_shard_batch(ElShardRun *run, HeapTuple *batch, int count);

/* projection_progress.c: builds watched from other sessions */
extern bool el_progress_begin(Oid view, Oid stream, int shards);
extern void el_progress_phase(int phase);
extern void el_progress_at(int32 shard, int64 seq);
extern void el_progress_end(bool reported);

/* projection_build.c */
extern ElStreamScan *el_shard_scan(Relation stream, Snapshot snap, int32 shard, int64 after);
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
	HeapTupleHeader stored;		/* the stream's tuple, always */
	uint32		len;			/* of tuple and stored */
	int			handler;		/* the caller's */
} ElSetEvent;
extern ElSetPlan *el_setplan_prepare(SPIPlanPtr plan, Oid *table, AttrNumber *keycol,
									 const char **why);
extern const char *el_setplan_table_ok(Oid table, AttrNumber keycol);
extern void el_setplan_run(ElSetPlan *bp, int count, ElSetEvent **events, bool plain);
typedef struct ElSetScreen ElSetScreen;
extern ElSetScreen *el_setplan_screen(ElSetPlan *bp);
extern void el_setplan_screen_event(ElSetScreen *sc, ElSetEvent *ev);
extern void el_setplan_screen_end(ElSetScreen *sc);

#endif							/* EL_PROJECTION_H */
