/*
 * projection_inline.c
 *	  Inline projections: the per-backend cache of compiled handler sets
 *	  (flushed by relcache invalidations of the view) and event_log.project(),
 *	  the AFTER INSERT trigger that applies each appended event in the
 *	  appending transaction; the repair of inline triggers that pg_restore
 *	  brought back with the dumped database's view oids.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_trigger.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "parser/parse_func.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/rel.h"

#include "catalog.h"
#include "event_log.h"
#include "immutable.h"
#include "projection.h"
#include "registry.h"
#include "segment.h"

PG_FUNCTION_INFO_V1(el_project);

/* Live handler sets by view oid, for the inline trigger and async runs. */
typedef struct ElLiveEntry
{
	Oid			view;
	ElHandlerSet *set;
	bool		valid;
} ElLiveEntry;

static HTAB *el_live = NULL;

static void
el_live_invalidate(Datum arg, Oid relid)
{
	el_cache_invalidate(el_live, relid, offsetof(ElLiveEntry, valid));
}

/*
 * The handlers of a live projection, compiled once per backend and kept
 * until the view's relcache entry is invalidated: a rebuild, an
 * alter_projection() or a change of owner all do that.  SPI connected.
 */
ElHandlerSet *
el_live_handlers(Oid view)
{
	ElLiveEntry *entry;
	bool		found;

	if (el_live == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(ElLiveEntry);
		el_live = hash_create("event_log projections", 16, &ctl,
							  HASH_ELEM | HASH_BLOBS);
		CacheRegisterRelcacheCallback(el_live_invalidate, (Datum) 0);
	}
	entry = hash_search(el_live, &view, HASH_ENTER, &found);
	if (!found)
	{
		entry->set = NULL;
		entry->valid = false;
	}
	if (!entry->valid)
	{
		ElHandlerSet *old = entry->set;
		ElProjection *p = el_projection_load(view);

		entry->set = NULL;
		if (old != NULL)
		{
			if (old->refcount == 0)
				el_free_set(old);
			else
				old->orphaned = true;
		}
		if (p == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("projection with view oid %u does not exist", view)));
		entry->set = el_compile(p, p->handlers, false, true, CacheMemoryContext);
		entry->valid = true;
	}
	return entry->set;
}

void
el_release_set(ElHandlerSet *set)
{
	if (--set->refcount == 0 && set->orphaned)
		el_free_set(set);
}

/*
 * An inline handler failed in a transaction of a role that does not act as
 * the projection's owner.  Its error may show the owner's data that the
 * appender may not read (a constraint's "Failing row contains (...)", a
 * value of another key's row in a message): the appender gets the SQLSTATE
 * and which projection and event type failed; the server log gets the
 * whole error.  Called in PG_CATCH; does not return.
 */
static void
el_rethrow_for_appender(ElHandlerSet *set, ElApplyState *st, MemoryContext cxt)
{
	ErrorData  *edata;
	const char *type = st->type ? st->type : "";
	int			typelen = st->type ? st->typelen : 0;

	MemoryContextSwitchTo(cxt);
	edata = CopyErrorData();
	FlushErrorState();
	ereport(LOG,
			(errcode(edata->sqlerrcode),
			 errmsg("inline projection \"%s\" failed on an event of type \"%.*s\": %s",
					set->name, typelen, type, edata->message),
			 edata->detail ? errdetail_internal("%s", edata->detail) : 0,
			 edata->context ? errcontext("%s", edata->context) : 0));
	ereport(ERROR,
			(errcode(edata->sqlerrcode),
			 errmsg("handler of inline projection \"%s\" failed on an event of type \"%.*s\"",
					set->name, typelen, type),
			 errdetail("The handler's error is shown only to roles that act as the projection's owner; the server log has it."),
			 errhint("The projection's owner can fix it with event_log.alter_projection(); the stream's owner can drop the projection with event_log.drop_projection().")));
}

/* event_log.project()'s oid. */
static Oid
el_project_fn(void)
{
	return LookupFuncName(list_make2(makeString("event_log"), makeString("project")),
						  0, NULL, false);
}

/* The projection a project() trigger names: its one argument, a view oid. */
static Oid
el_trigger_view(Trigger *t)
{
	return t->tgnargs == 1 ? atooid(t->tgargs[0]) : InvalidOid;
}

/*
 * Which inline projection each project() trigger of a stream serves.
 * Triggers restored by pg_restore name the views' oids in the dumped
 * database; the catalog names the views again by regclass, so it knows
 * this database's oids.  A trigger whose argument is an inline projection
 * of the stream that no earlier trigger (in the stream's trigger order)
 * claims serves that one; each other trigger serves, in order, an inline
 * projection of the stream that no trigger names; triggers left over serve
 * none (InvalidOid), and the DDL guard refuses them.  All inline triggers
 * run the same function, so which one serves which projection does not
 * matter, only that each projection has exactly one.  Only our function's
 * triggers on the stream, only the stream's own inline projections: nothing
 * create_projection() would not have made.  SPI connected; the stream
 * locked by the caller.  Returns the number of project() triggers.
 */
static int
el_inline_trigger_map(Oid stream, Oid **tgoids, Oid **served, Oid **named)
{
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(stream)};
	Oid		   *views;
	bool	   *claimed;
	int			nviews;
	int			ntrig = 0;
	int			next = 0;
	Relation	rel;
	Oid			project_fn = el_project_fn();

	el_catalog_sql("SELECT projection::pg_catalog.oid FROM event_log.projections"
				   " WHERE stream = $1 AND mode = 'inline' ORDER BY 1",
				   1, types, values, NULL, EL_CAT_READ, 0);
	nviews = (int) SPI_processed;
	views = palloc(sizeof(Oid) * (nviews + 1));
	claimed = palloc0(sizeof(bool) * (nviews + 1));
	for (int i = 0; i < nviews; i++)
	{
		bool		isnull;

		views[i] = DatumGetObjectId(el_spi_value(i, 1, &isnull));
	}

	rel = relation_open(stream, NoLock);
	*tgoids = palloc(sizeof(Oid) * (rel->trigdesc ? rel->trigdesc->numtriggers + 1 : 1));
	*served = palloc(sizeof(Oid) * (rel->trigdesc ? rel->trigdesc->numtriggers + 1 : 1));
	*named = palloc(sizeof(Oid) * (rel->trigdesc ? rel->trigdesc->numtriggers + 1 : 1));
	for (int i = 0; rel->trigdesc && i < rel->trigdesc->numtriggers; i++)
	{
		Trigger    *t = &rel->trigdesc->triggers[i];
		Oid			view;
		int			j;

		if (t->tgfoid != project_fn)
			continue;
		view = el_trigger_view(t);
		for (j = 0; j < nviews; j++)
			if (views[j] == view && !claimed[j])
				break;
		(*tgoids)[ntrig] = t->tgoid;
		(*named)[ntrig] = view;
		(*served)[ntrig] = InvalidOid;
		if (j < nviews)
		{
			claimed[j] = true;
			(*served)[ntrig] = view;
		}
		ntrig++;
	}
	relation_close(rel, NoLock);

	for (int i = 0; i < ntrig; i++)
	{
		if (OidIsValid((*served)[i]))
			continue;
		while (next < nviews && claimed[next])
			next++;
		if (next >= nviews)
			break;
		(*served)[i] = views[next];
		claimed[next] = true;
	}
	return ntrig;
}

/*
 * From el_inline_trigger_map(): the projection a project() trigger serves
 * (by_trigger), or the trigger that serves a projection; InvalidOid if
 * none.  SPI connected.
 */
static Oid
el_trigger_lookup(Oid stream, Oid key, bool by_trigger)
{
	Oid		   *tgoids;
	Oid		   *served;
	Oid		   *named;
	int			n = el_inline_trigger_map(stream, &tgoids, &served, &named);

	for (int i = 0; i < n; i++)
		if ((by_trigger ? tgoids[i] : served[i]) == key)
			return by_trigger ? served[i] : tgoids[i];
	return InvalidOid;
}

/*
 * The name of the inline trigger that serves `view` on its stream, or, if
 * there is none, the name create_projection() gives.  SPI connected; the
 * stream locked by the caller.
 */
char *
el_inline_trigger_name(Oid stream, Oid view)
{
	Oid			tgoid = el_trigger_lookup(stream, view, false);
	char	   *name = NULL;
	Relation	rel = relation_open(stream, NoLock);

	for (int j = 0; rel->trigdesc && j < rel->trigdesc->numtriggers; j++)
		if (OidIsValid(tgoid) && rel->trigdesc->triggers[j].tgoid == tgoid)
			name = pstrdup(rel->trigdesc->triggers[j].tgname);
	relation_close(rel, NoLock);
	return name ? name : psprintf(EL_PROJECTION_TRIGGER "%u", view);
}

/* The trigger a partition's trigger was cloned from (pg_trigger.tgparentid). */
static Oid
el_trigger_parent(Oid tgoid)
{
	Relation	tgrel = table_open(TriggerRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			parent = InvalidOid;

	ScanKeyInit(&key, Anum_pg_trigger_oid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(tgoid));
	scan = systable_beginscan(tgrel, TriggerOidIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		parent = ((Form_pg_trigger) GETSTRUCT(tup))->tgparentid;
	systable_endscan(scan);
	table_close(tgrel, AccessShareLock);
	return parent;
}

/* Set a project() trigger's argument to `view`, in pg_trigger. */
static void
el_repoint_trigger(Oid tgoid, Oid view)
{
	Relation	tgrel = table_open(TriggerRelationId, RowExclusiveLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	char		arg[16];
	Datum		values[Natts_pg_trigger] = {0};
	bool		nulls[Natts_pg_trigger] = {0};
	bool		replace[Natts_pg_trigger] = {0};
	bytea	   *args;
	int			len;

	ScanKeyInit(&key, Anum_pg_trigger_oid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(tgoid));
	scan = systable_beginscan(tgrel, TriggerOidIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "trigger %u vanished", tgoid);

	/* tgargs: each argument followed by a NUL byte */
	len = snprintf(arg, sizeof(arg), "%u", view) + 1;
	args = palloc(VARHDRSZ + len);
	SET_VARSIZE(args, VARHDRSZ + len);
	memcpy(VARDATA(args), arg, len);
	values[Anum_pg_trigger_tgargs - 1] = PointerGetDatum(args);
	replace[Anum_pg_trigger_tgargs - 1] = true;
	tup = heap_modify_tuple(tup, RelationGetDescr(tgrel), values, nulls, replace);
	CatalogTupleUpdate(tgrel, &tup->t_self, tup);
	systable_endscan(scan);
	table_close(tgrel, RowExclusiveLock);
}

/*
 * The DDL guard's repair of a stream (el_guard_repair_stream_hook): each
 * project() trigger's argument becomes the projection it serves
 * (el_inline_trigger_map()), so a restored stream ends up as
 * create_projection() would have made it, but for the triggers' names.
 * project() and drop_projection() use the same map, for the triggers a
 * parallel restore created before the catalog rows were loaded, which no
 * DDL has repaired since.
 */
static void
el_repair_inline_triggers(Oid stream)
{
	Oid		   *tgoids;
	Oid		   *served;
	Oid		   *named;
	int			n = el_inline_trigger_map(stream, &tgoids, &served, &named);
	bool		changed = false;

	for (int i = 0; i < n; i++)
		if (OidIsValid(served[i]) && served[i] != named[i])
		{
			el_repoint_trigger(tgoids[i], served[i]);
			changed = true;
		}
	if (changed)
	{
		CacheInvalidateRelcacheByRelid(stream);
		CommandCounterIncrement();
	}
}

void
el_projection_inline_init(void)
{
	el_guard_repair_stream_hook = el_repair_inline_triggers;
}

/*
 * Whether `view` is an inline projection fed by `stream`: the live cache,
 * so the common case costs no query.  SPI connected.
 */
static bool
el_names_inline_projection(Oid view, Oid stream)
{
	ElProjection *p;

	if (el_live != NULL)
	{
		ElLiveEntry *entry = hash_search(el_live, &view, HASH_FIND, NULL);

		if (entry != NULL && entry->valid)
			return entry->set->stream == stream && entry->set->inline_mode;
	}
	p = el_projection_load(view);
	return p != NULL && p->stream == stream && p->inline_mode;
}

static void
el_refuse_project_trigger(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
			 errmsg("event_log.project() runs only as the trigger event_log.create_projection() puts on a projection's stream")));
}

/*
 * event_log.project(): AFTER INSERT FOR EACH ROW on a stream, one per inline
 * projection, enabled ALWAYS.  It runs the projection's handler for the new
 * event in the appending transaction.
 */
Datum
el_project(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleTableSlot *slot;
	ElHandlerSet *set;
	Oid			view;
	Oid			appender;
	MemoryContext cxt;
	Oid			stream;
	Oid			tgoid;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) ||
		trigdata->tg_trigger->tgnargs != 1)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("event_log.project() must run as an AFTER INSERT row trigger created by event_log.create_projection()")));
	view = atooid(trigdata->tg_trigger->tgargs[0]);
	appender = GetUserId();

	/*
	 * A row a parallel restore loads into a segment it has not finished
	 * (el_segment_unfinished(); see el_restoring_segment() in append.c) is
	 * not a new event; the projection's rows come from the same dump.
	 */
	if (el_segment_unfinished(trigdata->tg_relation))
		return PointerGetDatum(NULL);

	/* On a segmented stream the trigger is the stream's, cloned on a segment. */
	stream = RelationGetRelid(trigdata->tg_relation);
	tgoid = trigdata->tg_trigger->tgoid;
	if (trigdata->tg_relation->rd_rel->relispartition &&
		OidIsValid(el_segment_stream(stream)))
	{
		stream = el_segment_stream(stream);
		if (trigdata->tg_trigger->tgisclone)
			tgoid = InvalidOid; /* looked up below, if needed */
	}
	cxt = CurrentMemoryContext;

	/*
	 * Only as the trigger create_projection() put on the projection's
	 * stream, checked before the row is read: anybody may attach this
	 * function to a table of its own and name any projection, to feed it
	 * made-up events, or rows of other types read as the contract's.  The
	 * stream itself keeps the contract's layout (the DDL guard).
	 */
	SPI_connect();

	/*
	 * A trigger that names no inline projection of its stream was restored
	 * by a parallel pg_restore before the catalog's rows, and no DDL has
	 * repointed it since: it serves what the map says.
	 */
	if (!el_names_inline_projection(view, stream))
	{
		if (!OidIsValid(tgoid))
			tgoid = el_trigger_parent(trigdata->tg_trigger->tgoid);
		view = el_trigger_lookup(stream, tgoid, true);
		if (!OidIsValid(view))
			el_refuse_project_trigger();
	}
	set = el_live_handlers(view);

	/*
	 * The name only by its prefix: a restored trigger keeps the name it had
	 * in the dumped database, its argument repointed by the DDL guard
	 * (el_repair_inline_triggers()).  The guard keeps a stream's project()
	 * triggers to one per inline projection, each named with the prefix.
	 */
	if (stream != set->stream || !set->inline_mode ||
		strncmp(trigdata->tg_trigger->tgname, EL_PROJECTION_TRIGGER,
				strlen(EL_PROJECTION_TRIGGER)) != 0)
		el_refuse_project_trigger();
	slot = trigdata->tg_trigslot;
	slot_getsomeattrs(slot, EL_NATTS);
	if (el_find_handler(set, DatumGetTextPP(slot->tts_values[Anum_el_type - 1])))
	{
		ElApplyState st;

		/*
		 * Checked once per statement and projection, as the executor checks
		 * a statement's permissions once: a multi-row INSERT or COPY does
		 * not pay for it per row.
		 */
		if (set->checked_lxid != MyProc->lxid ||
			set->checked_at != GetCurrentStatementStartTimestamp())
		{
			el_check_stream_read(stream, set->owner, set->name);
			set->checked_lxid = MyProc->lxid;
			set->checked_at = GetCurrentStatementStartTimestamp();
		}
		set->refcount++;
		PG_TRY();
		{
			el_apply_begin(set, &st);
			el_apply(&st, slot->tts_values, slot->tts_isnull);
			el_apply_end(&st);
		}
		PG_CATCH();
		{
			el_release_set(set);
			if (!has_privs_of_role(appender, set->owner))
				el_rethrow_for_appender(set, &st, cxt);
			PG_RE_THROW();
		}
		PG_END_TRY();
		el_release_set(set);
	}
	SPI_finish();
	return PointerGetDatum(NULL);
}
