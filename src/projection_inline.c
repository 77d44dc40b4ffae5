/*
 * projection_inline.c
 *	  Inline projections: the per-backend cache of compiled handler sets
 *	  (flushed by relcache invalidations of the view) and event_log.project(),
 *	  the AFTER INSERT trigger that applies each appended event in the
 *	  appending transaction.
 */
#include "postgres.h"

#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/inval.h"

#include "event_log.h"
#include "projection.h"

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
	HASH_SEQ_STATUS status;
	ElLiveEntry *entry;

	hash_seq_init(&status, el_live);
	while ((entry = hash_seq_search(&status)) != NULL)
		if (relid == InvalidOid || entry->view == relid)
			entry->valid = false;
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
	char		tgname[NAMEDATALEN];

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
	cxt = CurrentMemoryContext;

	/*
	 * Only as the trigger create_projection() put on the projection's
	 * stream, checked before the row is read: anybody may attach this
	 * function to a table of its own and name any projection, to feed it
	 * made-up events, or rows of other types read as the contract's.  The
	 * stream itself keeps the contract's layout (the DDL guard).
	 */
	SPI_connect();
	set = el_live_handlers(view);
	snprintf(tgname, sizeof(tgname), EL_PROJECTION_TRIGGER "%u", view);
	if (RelationGetRelid(trigdata->tg_relation) != set->stream || !set->inline_mode ||
		strcmp(trigdata->tg_trigger->tgname, tgname) != 0)
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
			el_check_stream_read(RelationGetRelid(trigdata->tg_relation), set->owner,
								 set->name);
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
