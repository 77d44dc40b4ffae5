/*
 * immutable.c
 *	  What keeps a stream append-only, for its owner too: the statement
 *	  trigger refusing UPDATE, DELETE and TRUNCATE, and three event triggers
 *	  that refuse DDL which would get around it (disabling or dropping our
 *	  triggers, rules, inheritance, column changes, rewrites, DROP TABLE).
 *
 *	  The DDL guard checks the result, not the command: after every DDL
 *	  command it re-verifies the shape of each stream the transaction holds a
 *	  lock on, so a route we did not think of is caught as well.  One
 *	  exception, for pg_restore: a registered stream whose parts (unique
 *	  indexes, our triggers, ENABLE ALWAYS) are still missing may be given
 *	  them by commands that can only add (docs/design/restore.md).
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/xact.h"
#include "access/table.h"
#include "access/relation.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/event_trigger.h"
#include "commands/tablecmds.h"
#include "fmgr.h"
#include "parser/parse_func.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/partcache.h"
#include "utils/syscache.h"

#include "catalog.h"
#include "event_log.h"
#include "immutable.h"
#include "registry.h"
#include "segment.h"

PG_FUNCTION_INFO_V1(el_refuse_change);
PG_FUNCTION_INFO_V1(el_guard_ddl);
PG_FUNCTION_INFO_V1(el_guard_rewrite);
PG_FUNCTION_INFO_V1(el_guard_drop);
PG_FUNCTION_INFO_V1(el_guard_ddl_start);

/*
 * The layers above register what they keep: projections' relations, which
 * only drop_projection() may drop, and the inline projection triggers a
 * stream must have.
 */
el_guard_relation_hook_type el_guard_owned_relation_hook = NULL;
el_guard_triggers_hook_type el_guard_stream_triggers_hook = NULL;
el_guard_stream_hook_type el_guard_repair_stream_hook = NULL;

/*
 * Our own DDL that the guards let through, by relation: set around the
 * statement by the code that runs it (el_guard_allow()), cleared after it,
 * whether it succeeded or not (el_guard_disallow()).
 */
typedef struct ElGuardExemption
{
	Oid			relid;
	int			what;			/* EL_GUARD_* */
} ElGuardExemption;

#define EL_MAX_EXEMPTIONS	4
static ElGuardExemption el_exempt[EL_MAX_EXEMPTIONS];
static int	el_nexempt = 0;

/*
 * However a caller leaves (its PG_FINALLY clears its exemptions), none
 * outlives the transaction.
 */
static void
el_guard_xact_callback(XactEvent event, void *arg)
{
	el_nexempt = 0;
}

/* Let our own DDL of kind `what` on relid through, until el_guard_disallow(). */
void
el_guard_allow(Oid relid, int what)
{
	static bool registered = false;

	if (!registered)
	{
		RegisterXactCallback(el_guard_xact_callback, NULL);
		registered = true;
	}
	if (el_nexempt >= EL_MAX_EXEMPTIONS)
		elog(ERROR, "too many guard exemptions");
	el_exempt[el_nexempt].relid = relid;
	el_exempt[el_nexempt].what = what;
	el_nexempt++;
}

/* End the last el_guard_allow() of relid. */
void
el_guard_disallow(Oid relid)
{
	for (int i = el_nexempt - 1; i >= 0; i--)
		if (el_exempt[i].relid == relid)
		{
			/* Keep the others in the order they were allowed in. */
			memmove(&el_exempt[i], &el_exempt[i + 1],
					sizeof(ElGuardExemption) * (el_nexempt - i - 1));
			el_nexempt--;
			return;
		}
}

static bool
el_guard_exempt(Oid relid, int what)
{
	for (int i = 0; i < el_nexempt; i++)
		if (el_exempt[i].relid == relid && (el_exempt[i].what & what) != 0)
			return true;
	return false;
}

/* The contract columns, in order: also the fields of event_log.event. */
const ElColumn el_columns[EL_NATTS] =
{
	{"shard", INT4OID},
	{"seq", INT8OID},
	{"key", TEXTOID},
	{"version", INT8OID},
	{"type", TEXTOID},
	{"payload", JSONBOID},
	{"metadata", JSONBOID},
	{"event_id", UUIDOID},
	{"recorded_at", TIMESTAMPTZOID},
};

/*
 * event_log.refuse_change(): BEFORE UPDATE OR DELETE OR TRUNCATE FOR EACH
 * STATEMENT on every stream, enabled ALWAYS.  A statement trigger fires
 * before any row is touched, also when no row matches, and also for
 * INSERT ... ON CONFLICT DO UPDATE and MERGE with an UPDATE or DELETE action.
 */
Datum
el_refuse_change(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	const char *op;
	Oid			relid;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("event_log.refuse_change() must run as a trigger")));

	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		op = "UPDATE";
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		op = "DELETE";
	else if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
		op = "TRUNCATE";
	else
		op = "this command";

	relid = RelationGetRelid(trigdata->tg_relation);
	/* A segment's events are its stream's (segment.c). */
	if (trigdata->tg_relation->rd_rel->relispartition &&
		OidIsValid(el_segment_stream(relid)))
		relid = el_segment_stream(relid);
	ereport(ERROR,
			(errcode(ERRCODE_EL_IMMUTABLE),
			 errmsg("cannot %s event stream \"%s\"", op, el_qualified_name(relid)),
			 errdetail("Events are immutable: UPDATE, DELETE and TRUNCATE are refused for every role."),
			 errhint("Append a new event that records the correction.")));
	PG_RETURN_NULL();
}

static Oid
el_function_oid(const char *name)
{
	return LookupFuncName(list_make2(makeString("event_log"), makeString((char *) name)),
						  0, NULL, false);
}

Oid
el_require_guards_oid(void)
{
	Oid			argtype = REGCLASSOID;

	return LookupFuncName(list_make2(makeString("event_log"), makeString("require_guards")),
						  1, &argtype, true);
}

static void
el_shape_violation_hint(Relation rel, const char *detail, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_EL_IMMUTABLE),
			 errmsg("cannot change event stream \"%s\" this way",
					el_qualified_name(RelationGetRelid(rel))),
			 errdetail_internal("%s", detail),
			 errhint("%s", hint)));
}

static void
el_shape_violation(Relation rel, const char *detail)
{
	el_shape_violation_hint(rel, detail,
							"Event streams are append-only: their contract columns, triggers and unique indexes stay as event_log.create_stream() made them.");
}

/*
 * A part of the stream is missing: one of its unique indexes, one of our
 * triggers, or a trigger of ours that is not (yet) enabled ALWAYS.  That is
 * a violation, unless the command can only add parts (only_adds): then the
 * stream was incomplete before it, which only a restore makes (nobody else
 * can write the registry), and the command is building it back.
 */
static void
el_missing_part(Relation rel, bool only_adds, const char *detail)
{
	if (!only_adds)
		el_shape_violation(rel, detail);
}

/*
 * Whether the default of column attnum is exactly event_log.require_guards()
 * of this stream: a call of that function (guards_fn) with the stream as a
 * regclass constant, which is stored as the OID and dumped as the name.
 * The same test, given event_log.current_segment() as guards_fn, checks the
 * default of a segmented stream's segment column.
 * Anything else is not it: another stream, another function around or
 * instead of it, an OID cast to regclass (dumped as a number, it would name
 * another relation after a restore).
 */
static bool
el_is_guards_default(Relation rel, AttrNumber attnum, Oid guards_fn)
{
	TupleConstr *constr = RelationGetDescr(rel)->constr;

	for (int i = 0; constr != NULL && i < constr->num_defval; i++)
	{
		Node	   *expr;
		FuncExpr   *call;
		Const	   *arg;

		if (constr->defval[i].adnum != attnum)
			continue;
		expr = stringToNode(constr->defval[i].adbin);
		if (!IsA(expr, FuncExpr))
			return false;
		call = (FuncExpr *) expr;
		if (call->funcid != guards_fn || call->funcretset ||
			list_length(call->args) != 1 || !IsA(linitial(call->args), Const))
			return false;
		arg = linitial_node(Const, call->args);
		return arg->consttype == REGCLASSOID && !arg->constisnull &&
			DatumGetObjectId(arg->constvalue) == RelationGetRelid(rel);
	}
	return false;
}

/* Whether a value of the type may never be NULL (a NOT NULL domain). */
static bool
el_type_not_null(Oid typid)
{
	for (;;)
	{
		HeapTuple	tup = SearchSysCache1(TYPEOID, ObjectIdGetDatum(typid));
		Form_pg_type typ;
		bool		notnull;
		Oid			base;

		if (!HeapTupleIsValid(tup))
			return false;
		typ = (Form_pg_type) GETSTRUCT(tup);
		notnull = typ->typtype == TYPTYPE_DOMAIN && typ->typnotnull;
		base = typ->typtype == TYPTYPE_DOMAIN ? typ->typbasetype : InvalidOid;
		ReleaseSysCache(tup);
		if (notnull)
			return true;
		if (!OidIsValid(base))
			return false;
		typid = base;
	}
}

/*
 * Whether a tuple descriptor starts with the contract columns' types, none
 * dropped: what our triggers and the decoder read a row's first EL_NATTS
 * fields as.  A table that merely has the right names is not enough.
 */
bool
el_has_event_columns(TupleDesc desc)
{
	if (desc->natts < EL_NATTS)
		return false;
	for (int i = 0; i < EL_NATTS; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || att->atttypid != el_columns[i].type)
			return false;
	}
	return true;
}

/*
 * The contract columns' properties besides name, type and collation, each
 * of which some ALTER TABLE ... ALTER COLUMN subcommand can change:
 *
 * - no default, identity or generation expression (SET DEFAULT, ADD
 *	 GENERATED ... AS IDENTITY): event_log assigns shard, seq, version,
 *	 event_id and recorded_at, and refuses values it did not assign, so a
 *	 default there makes every append fail; on key, type, payload and
 *	 metadata a default would stand in for what the appender left out.
 *	 The one exception, from 0.3 on (guards_fn valid): shard has exactly
 *	 the default event_log.require_guards(<this stream>), which returns
 *	 NULL or refuses the append while our triggers are missing.  Without
 *	 it a part is missing: a restore's pre-data creates it with the table,
 *	 and SET DEFAULT gives it back, completing the stream;
 * - NOT NULL as create_stream() made it (DROP/SET NOT NULL): metadata is
 *	 the one column append() may leave NULL;
 * - not storage PLAIN (SET STORAGE PLAIN): a large event would no longer
 *	 fit in a row.  MAIN and EXTERNAL, compression and statistics settings
 *	 change no value and break no append.
 *
 * Columns added by the user may be anything an append can leave out: a
 * column that is NOT NULL (or of a NOT NULL domain) without a default would
 * make append() and every INSERT that does not name it fail.
 */
static void
el_check_columns(Relation rel, Oid guards_fn, bool only_adds)
{
	TupleDesc	desc = RelationGetDescr(rel);

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		const char *name = NameStr(att->attname);

		if (att->attisdropped)
			continue;
		if (i >= EL_NATTS)
		{
			if ((att->attnotnull || el_type_not_null(att->atttypid)) &&
				!att->atthasdef && att->attidentity == '\0' &&
				att->attgenerated == '\0')
				el_shape_violation_hint(rel,
										psprintf("Column \"%s\" is NOT NULL without a default, so appends that leave it out would fail.",
												 name),
										"Give the column a default, or let it be NULL.");
			continue;
		}
		if (i + 1 == Anum_el_shard && OidIsValid(guards_fn) &&
			att->attidentity == '\0' && att->attgenerated == '\0')
		{
			char	   *qname = el_qualified_name(RelationGetRelid(rel));
			char	   *expected = psprintf("event_log.require_guards(%s::regclass)",
											quote_literal_cstr(qname));

			if (!att->atthasdef)
			{
				if (!only_adds)
					el_shape_violation_hint(rel,
											psprintf("Column \"%s\" must keep its default %s, which refuses appends while the stream's triggers are missing.",
													 name, expected),
											psprintf("Give it back with ALTER TABLE %s ALTER COLUMN %s SET DEFAULT %s.",
													 qname, name, expected));
			}
			else if (!el_is_guards_default(rel, Anum_el_shard, guards_fn))
				el_shape_violation(rel,
								   psprintf("Column \"%s\" must have no default but %s.",
											name, expected));
		}
		else if (att->atthasdef || att->attidentity != '\0' ||
				 att->attgenerated != '\0')
			el_shape_violation(rel,
							   psprintf("Column \"%s\" must not have a default, an identity or a generation expression: event_log fills the contract columns itself or takes them from the appender.",
										name));
		if (att->attnotnull != (i + 1 != Anum_el_metadata))
			el_shape_violation(rel,
							   i + 1 == Anum_el_metadata ?
							   psprintf("Column \"%s\" must stay nullable: append() stores NULL when no metadata is given.",
										name) :
							   psprintf("Column \"%s\" must stay NOT NULL.", name));
		if (att->attstorage == TYPSTORAGE_PLAIN &&
			get_typstorage(att->atttypid) != TYPSTORAGE_PLAIN)
			el_shape_violation(rel,
							   psprintf("Column \"%s\" cannot use storage PLAIN: large events would no longer fit in a row.",
										name));
	}
}

static void el_check_segments(Relation rel, Oid append_fn, Oid refuse_fn,
							  bool only_adds);

/*
 * The stream the DDL command being checked is ALTER TABLE ... OWNER TO of,
 * if any (set by el_guard_ddl()).
 */
static Oid	el_guard_owner_changed = InvalidOid;

/*
 * Whether a partitioned stream is laid out as create_stream() lays out a
 * segmented one: partitioned by list on its tenth column, segment, an
 * integer.  Judged on the table, not on event_log.segmented_streams, which
 * a parallel restore may load after the table's other parts.
 */
static bool
el_is_segment_layout(Relation rel)
{
	PartitionKey key = RelationGetPartitionKey(rel);
	TupleDesc	desc = RelationGetDescr(rel);

	return key != NULL && key->strategy == PARTITION_STRATEGY_LIST &&
		key->partnatts == 1 && key->partattrs[0] == Anum_el_segment &&
		desc->natts >= Anum_el_segment &&
		!TupleDescAttr(desc, Anum_el_segment - 1)->attisdropped &&
		TupleDescAttr(desc, Anum_el_segment - 1)->atttypid == INT4OID &&
		strcmp(NameStr(TupleDescAttr(desc, Anum_el_segment - 1)->attname), EL_SEGMENT_COLUMN) == 0;
}

/*
 * A segmented stream's segment column routes each new row to the newest
 * segment: it must stay NOT NULL with no default but
 * event_log.current_segment(<this stream>).  Another default (a constant, an
 * older segment) would route rows where the append trigger refuses them, or
 * nowhere; a NULL has no segment at all.
 */
static void
el_check_segment_column(Relation rel, bool only_adds)
{
	Form_pg_attribute att = TupleDescAttr(RelationGetDescr(rel), Anum_el_segment - 1);
	Oid			argtype = REGCLASSOID;
	Oid			current_fn;
	char	   *expected;

	current_fn = LookupFuncName(list_make2(makeString("event_log"),
										   makeString("current_segment")),
								1, &argtype, true);
	expected = psprintf("event_log.current_segment(%s::regclass)",
						quote_literal_cstr(el_qualified_name(RelationGetRelid(rel))));
	if (!att->attnotnull)
		el_shape_violation(rel, "Column \"" EL_SEGMENT_COLUMN "\" must stay NOT NULL.");
	if (!att->atthasdef)
		el_missing_part(rel, only_adds,
						psprintf("Column \"" EL_SEGMENT_COLUMN "\" must keep its default %s, which routes each new event to the newest segment.",
								 expected));
	else if (!OidIsValid(current_fn) ||
			 !el_is_guards_default(rel, Anum_el_segment, current_fn))
		el_shape_violation(rel,
						   psprintf("Column \"" EL_SEGMENT_COLUMN "\" must have no default but %s, which routes each new event to the newest segment.",
									expected));
}

/* Verify that a stream still has the shape that makes it append-only. */
static void
el_check_stream_shape(Oid relid, int shards, Oid append_fn, Oid refuse_fn,
					  Oid guards_fn, bool only_adds)
{
	Relation	rel;
	TupleDesc	desc;
	TriggerDesc *trigdesc;
	ElStreamIndexes idx;
	bool		have_append = false;
	bool		have_refuse = false;
	bool		append_always = false;
	bool		refuse_always = false;
	int			nexpected;
	const int16 refuse_type = TRIGGER_TYPE_BEFORE | TRIGGER_TYPE_UPDATE |
		TRIGGER_TYPE_DELETE | TRIGGER_TYPE_TRUNCATE;
	const int16 append_type = TRIGGER_TYPE_BEFORE | TRIGGER_TYPE_ROW |
		TRIGGER_TYPE_INSERT;
	const int16 project_type = TRIGGER_TYPE_ROW | TRIGGER_TYPE_INSERT;
	Oid			project_fn = el_function_oid("project");
	int			nproject = 0;
	bool		projection_ddl = el_guard_exempt(relid, EL_GUARD_PROJECTION_DDL);
	bool		segmented;

	/* Our own segment DDL (segment.c) changes nothing else of the stream. */
	if (el_guard_exempt(relid, EL_GUARD_SEGMENT_DDL))
		return;
	if (!projection_ddl && el_guard_repair_stream_hook != NULL &&
		SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid)))
		el_guard_repair_stream_hook(relid);
	rel = try_relation_open(relid, NoLock);
	if (rel == NULL)
		return;

	segmented = rel->rd_rel->relkind == RELKIND_PARTITIONED_TABLE &&
		el_is_segment_layout(rel);
	if ((rel->rd_rel->relkind != RELKIND_RELATION && !segmented) ||
		rel->rd_rel->relispartition)
		el_shape_violation(rel, "An event stream must stay a plain table, not a partition.");
	if (rel->rd_rel->relpersistence != RELPERSISTENCE_PERMANENT)
		el_shape_violation(rel, "An event stream must stay a logged table.");
	if (rel->rd_rel->relhasrules || rel->rd_rules != NULL)
		el_shape_violation(rel, "Rules are not allowed on event streams.");
	if (segmented)
		el_check_segments(rel, append_fn, refuse_fn, only_adds);
	else if (has_superclass(relid) || find_inheritance_children(relid, NoLock) != NIL)
		el_shape_violation(rel, "Event streams cannot take part in table inheritance.");

	desc = RelationGetDescr(rel);
	for (int i = 0; i < EL_NATTS; i++)
	{
		Form_pg_attribute att;

		if (i >= desc->natts)
			el_shape_violation(rel, "A contract column is missing.");
		att = TupleDescAttr(desc, i);

		/*
		 * Collation too: keys are hashed and compared as bytes, which the
		 * default (deterministic) collation agrees with.
		 */
		if (att->attisdropped || att->atttypid != el_columns[i].type ||
			strcmp(NameStr(att->attname), el_columns[i].name) != 0 ||
			(OidIsValid(att->attcollation) &&
			 att->attcollation != DEFAULT_COLLATION_OID))
			el_shape_violation(rel, psprintf("Column %d must stay \"%s\" of type %s%s.",
											 i + 1, el_columns[i].name,
											 format_type_be(el_columns[i].type),
											 el_columns[i].type == TEXTOID ?
											 " with the default collation" : ""));
	}

	el_check_columns(rel, guards_fn, only_adds);
	if (segmented)
		el_check_segment_column(rel, only_adds);

	trigdesc = rel->trigdesc;
	for (int i = 0; trigdesc && i < trigdesc->numtriggers; i++)
	{
		Trigger    *t = &trigdesc->triggers[i];

		/*
		 * A trigger of ours with another definition is a violation whatever
		 * the command; one that is only not enabled ALWAYS is a missing
		 * part (plain dumps create it, then enable it in a second command).
		 */
		if (strcmp(t->tgname, EL_APPEND_TRIGGER) == 0)
		{
			have_append = t->tgfoid == append_fn &&
				t->tgtype == append_type && t->tgnargs == 1 &&
				pg_strtoint32(t->tgargs[0]) == shards;
			if (!have_append)
				el_shape_violation(rel, "Trigger \"" EL_APPEND_TRIGGER "\" must stay, unchanged and enabled ALWAYS.");
			append_always = t->tgenabled == TRIGGER_FIRES_ALWAYS;
		}
		else if (strcmp(t->tgname, EL_IMMUTABLE_TRIGGER) == 0)
		{
			have_refuse = t->tgfoid == refuse_fn &&
				t->tgtype == refuse_type && t->tgnargs == 0;
			if (!have_refuse)
				el_shape_violation(rel, "Trigger \"" EL_IMMUTABLE_TRIGGER "\" must stay, unchanged and enabled ALWAYS.");
			refuse_always = t->tgenabled == TRIGGER_FIRES_ALWAYS;
		}
		else if (t->tgfoid == project_fn)
		{
			if (!projection_ddl &&
				(t->tgtype != project_type || t->tgnargs != 1 ||
				 strncmp(t->tgname, EL_PROJECTION_TRIGGER, strlen(EL_PROJECTION_TRIGGER)) != 0))
				el_shape_violation(rel, psprintf("Inline projection trigger \"%s\" must stay, unchanged and enabled ALWAYS.",
												 t->tgname));
			if (t->tgenabled != TRIGGER_FIRES_ALWAYS && !projection_ddl)
				el_missing_part(rel, only_adds,
								psprintf("Inline projection trigger \"%s\" must stay, unchanged and enabled ALWAYS.",
										 t->tgname));
			nproject++;
		}
		else if (!projection_ddl &&
				 strncmp(t->tgname, EL_PROJECTION_TRIGGER, strlen(EL_PROJECTION_TRIGGER)) == 0)
			el_shape_violation(rel, psprintf("Trigger names beginning with \"%s\" are for inline projections; \"%s\" would keep a projection from being created.",
											 EL_PROJECTION_TRIGGER, t->tgname));
		else if (TRIGGER_FOR_ROW(t->tgtype) && TRIGGER_FOR_BEFORE(t->tgtype) &&
				 TRIGGER_FOR_INSERT(t->tgtype))
			ereport(ERROR,
					(errcode(ERRCODE_EL_IMMUTABLE),
					 errmsg("cannot change event stream \"%s\" this way",
							el_qualified_name(relid)),
					 errdetail("BEFORE INSERT row trigger \"%s\" could change or drop rows after event_log has assigned their positions.",
							   t->tgname),
					 errhint("Use an AFTER INSERT trigger instead.")));
	}
	if (!have_append || !append_always)
		el_missing_part(rel, only_adds, "Trigger \"" EL_APPEND_TRIGGER "\" must stay, unchanged and enabled ALWAYS.");
	if (!have_refuse || !refuse_always)
		el_missing_part(rel, only_adds, "Trigger \"" EL_IMMUTABLE_TRIGGER "\" must stay, unchanged and enabled ALWAYS.");

	/* Fewer projection triggers than projections: missing; more: never. */
	nexpected = el_guard_stream_triggers_hook ? el_guard_stream_triggers_hook(relid) : 0;
	if (!projection_ddl && nproject > nexpected)
		el_shape_violation(rel, "Each inline projection's trigger must stay; drop a projection with event_log.drop_projection().");
	if (!projection_ddl && nproject < nexpected)
		el_missing_part(rel, only_adds, "Each inline projection's trigger must stay; drop a projection with event_log.drop_projection().");

	if (!segmented && !el_find_stream_indexes(rel, &idx))
		el_missing_part(rel, only_adds, "The unique indexes on (shard, seq), (event_id) and (key, version) must stay.");

	relation_close(rel, NoLock);
}

/*
 * A segmented stream's partitions must be exactly its segments listed in
 * event_log.segments (none attached or detached but by segment.c), each a
 * logged table with no rule, the unique indexes, the statement trigger
 * refusing changes and the stream's append trigger, both enabled ALWAYS,
 * and no BEFORE INSERT row trigger of anybody else's.
 */
static void
el_check_segments(Relation rel, Oid append_fn, Oid refuse_fn, bool only_adds)
{
	Oid			relid = RelationGetRelid(rel);
	List	   *children = find_inheritance_children(relid, NoLock);
	List	   *reown = NIL;
	Datum		values[1] = {ObjectIdGetDatum(relid)};
	uint64		nlisted;
	ListCell   *lc;

	if (has_superclass(relid))
		el_shape_violation(rel, "Event streams cannot take part in table inheritance.");
	if (el_guard_exempt(relid, EL_GUARD_SEGMENT_DDL))
		return;
	nlisted = el_catalog_sql("SELECT segment_table FROM event_log.segments"
							 " WHERE stream OPERATOR(pg_catalog.=) $1 AND detached_at IS NULL",
							 1, (Oid[]) {OIDOID}, values, NULL,
							 EL_CAT_READ | EL_CAT_LATEST, 0);
	/*
	 * A parallel restore may load event_log.segments after the commands
	 * that only add to the stream (ATTACH is refused before it runs, and
	 * CREATE TABLE ... PARTITION OF does not only add).
	 */
	if (nlisted != (uint64) list_length(children))
		el_missing_part(rel, only_adds, "A segmented stream's partitions must stay its segments, attached and detached only by event_log.");
	for (uint64 i = 0; i < nlisted; i++)
	{
		bool		isnull;

		if (!list_member_oid(children, DatumGetObjectId(el_spi_value(i, 1, &isnull))))
			el_missing_part(rel, only_adds, "A segmented stream's partitions must stay its segments, attached and detached only by event_log.");
	}
	foreach(lc, children)
	{
		Relation	seg = relation_open(lfirst_oid(lc), NoLock);
		TriggerDesc *trigdesc = seg->trigdesc;
		bool		have_append = false;
		bool		have_refuse = false;
		ElStreamIndexes idx;

		if (seg->rd_rel->relkind != RELKIND_RELATION ||
			seg->rd_rel->relpersistence != RELPERSISTENCE_PERMANENT ||
			seg->rd_rel->relhasrules || seg->rd_rules != NULL ||
			find_inheritance_children(RelationGetRelid(seg), NoLock) != NIL)
			el_shape_violation(rel, psprintf("Segment \"%s\" must stay a logged plain table without rules.",
											 RelationGetRelationName(seg)));
		for (int i = 0; trigdesc && i < trigdesc->numtriggers; i++)
		{
			Trigger    *t = &trigdesc->triggers[i];

			if (strcmp(t->tgname, EL_APPEND_TRIGGER) == 0 && t->tgfoid == append_fn &&
				t->tgisclone)
				have_append = t->tgenabled == TRIGGER_FIRES_ALWAYS;
			else if (strcmp(t->tgname, EL_IMMUTABLE_TRIGGER) == 0 &&
					 t->tgfoid == refuse_fn && t->tgnargs == 0 &&
					 t->tgtype == (TRIGGER_TYPE_BEFORE | TRIGGER_TYPE_UPDATE |
								   TRIGGER_TYPE_DELETE | TRIGGER_TYPE_TRUNCATE))
				have_refuse = t->tgenabled == TRIGGER_FIRES_ALWAYS;
			else if (TRIGGER_FOR_ROW(t->tgtype) && TRIGGER_FOR_BEFORE(t->tgtype) &&
					 TRIGGER_FOR_INSERT(t->tgtype))
				el_shape_violation(rel, psprintf("BEFORE INSERT row trigger \"%s\" on segment \"%s\" could change or drop rows after event_log has assigned their positions.",
												 t->tgname, RelationGetRelationName(seg)));
		}
		if (!have_append || !have_refuse)
			el_missing_part(rel, only_adds,
							psprintf("Segment \"%s\" must keep triggers \"" EL_APPEND_TRIGGER "\" and \"" EL_IMMUTABLE_TRIGGER "\", unchanged and enabled ALWAYS.",
									 RelationGetRelationName(seg)));
		if (!el_find_stream_indexes(seg, &idx))
			el_missing_part(rel, only_adds,
							psprintf("Segment \"%s\" must keep its unique indexes on (shard, seq), (event_id) and (key, version).",
									 RelationGetRelationName(seg)));
		if (seg->rd_rel->relnamespace != el_schema_oid())
			el_shape_violation(rel, psprintf("Segment \"%s\" must stay in schema event_log.",
											 RelationGetRelationName(seg)));
		if (seg->rd_rel->relowner != rel->rd_rel->relowner)
		{
			if (relid != el_guard_owner_changed)
				el_shape_violation_hint(rel,
										psprintf("Segment \"%s\" must stay owned by the stream's owner.",
												 RelationGetRelationName(seg)),
										psprintf("Change the owner of the stream, and its segments with it, with ALTER TABLE %s OWNER TO.",
												 el_qualified_name(relid)));
			reown = lappend_oid(reown, RelationGetRelid(seg));
		}
		relation_close(seg, NoLock);
	}

	/*
	 * ALTER TABLE ... OWNER TO of the stream: its segments follow (PostgreSQL
	 * does not recurse to partitions), so that the former owner keeps no
	 * table of the stream's events to read or grant from.
	 */
	foreach(lc, reown)
		ATExecChangeOwner(lfirst_oid(lc), rel->rd_rel->relowner, true,
						  AccessExclusiveLock);
	if (reown != NIL)
		CommandCounterIncrement();
}

/*
 * Check a stream's whole shape now, outside any exemption: after our own
 * DDL that ran code of the stream's owner (ATTACH builds the owner's index
 * expressions on a new segment), which could itself have run DDL while the
 * guards let our statement through.  The caller is connected to SPI.
 */
void
el_guard_check_stream(Oid relid)
{
	int			shards = el_stream_shards(relid);

	if (shards < 1)
		return;
	el_push_catalog_path();
	el_check_stream_shape(relid, shards, el_function_oid("assign_position"),
						  el_function_oid("refuse_change"), el_require_guards_oid(),
						  false);
	PopOverrideSearchPath();
}

/*
 * Whether a DDL statement can only add to a table what a restore adds to a
 * stream after its data: an index or constraint, a trigger, ENABLE ALWAYS
 * of a trigger; or leaves every table's parts alone (COMMENT, GRANT,
 * CREATE POLICY, CREATE STATISTICS, which a restore in one transaction runs
 * while streams are still incomplete).  None of them can remove or change a
 * part of any stream, whichever table it names; what one adds is still
 * checked (a wrong trigger of ours, a BEFORE INSERT trigger, a rule, a
 * column change are refused whatever the command).
 *
 * Judged on the statement as written (the event's parse tree), not on the
 * commands collected for the event: DROP is never collected, so an empty
 * list of commands would say nothing.  Left out on purpose: CREATE OR
 * REPLACE TRIGGER (replaces), ADD CONSTRAINT ... USING INDEX (can turn an
 * existing unique index DEFERRABLE), ENABLE TRIGGER ALL/USER (turns ALWAYS
 * back to ORIGIN), and every other ALTER TABLE subcommand.
 */
static bool
el_ddl_only_adds(Node *parsetree)
{
	ListCell   *lc;

	if (parsetree == NULL)
		return false;
	switch (nodeTag(parsetree))
	{
		case T_IndexStmt:
		case T_CommentStmt:
		case T_GrantStmt:
		case T_CreatePolicyStmt:
		case T_CreateStatsStmt:
			return true;
		case T_CreateTrigStmt:
			return !((CreateTrigStmt *) parsetree)->replace;
		case T_AlterTableStmt:
			foreach(lc, ((AlterTableStmt *) parsetree)->cmds)
			{
				AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);

				if (cmd->subtype == AT_EnableAlwaysTrig)
					continue;
				/* A restore attaches a segment's index to the stream's. */
				if (cmd->subtype == AT_AttachPartition &&
					((AlterTableStmt *) parsetree)->objtype == OBJECT_INDEX)
					continue;
				if (cmd->subtype == AT_AddConstraint &&
					IsA(cmd->def, Constraint) &&
					((Constraint *) cmd->def)->indexname == NULL)
					continue;
				return false;
			}
			return true;
		default:
			return false;
	}
}

/*
 * The table an ALTER TABLE ... OWNER TO changes the owner of, or InvalidOid.
 */
static Oid
el_ddl_owner_target(Node *parsetree)
{
	AlterTableStmt *stmt;
	ListCell   *lc;

	if (parsetree == NULL || !IsA(parsetree, AlterTableStmt))
		return InvalidOid;
	stmt = (AlterTableStmt *) parsetree;
	if (stmt->relation == NULL)
		return InvalidOid;
	foreach(lc, stmt->cmds)
		if (lfirst_node(AlterTableCmd, lc)->subtype == AT_ChangeOwner)
			return RangeVarGetRelid(stmt->relation, NoLock, true);
	return InvalidOid;
}

/*
 * Whether this transaction holds a lock on a segment of a stream (DDL on a
 * partition need not lock its parent).  Only the registry's partitioned
 * streams have any.
 */
static bool
el_segment_locked(Oid relid)
{
	bool		locked = false;
	List	   *children;
	ListCell   *lc;

	if (get_rel_relkind(relid) != RELKIND_PARTITIONED_TABLE)
		return false;
	children = find_inheritance_children(relid, NoLock);
	foreach(lc, children)
		if (CheckRelationOidLockedByMe(lfirst_oid(lc), AccessShareLock, true))
			locked = true;
	list_free(children);
	return locked;
}

/*
 * event_log.guard_ddl(): ddl_command_end.  Streams the transaction holds no
 * lock on cannot have been changed by it, so only those are checked; the
 * registry is small and read with the catalog snapshot.
 */
Datum
el_guard_ddl(PG_FUNCTION_ARGS)
{
	Oid			regid;
	Relation	reg;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			append_fn = InvalidOid;
	Oid			refuse_fn = InvalidOid;
	Oid			guards_fn = InvalidOid;
	bool		only_adds;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("event_log.guard_ddl() must run as an event trigger")));
	only_adds = el_ddl_only_adds(((EventTriggerData *) fcinfo->context)->parsetree);
	el_guard_owner_changed = el_ddl_owner_target(((EventTriggerData *) fcinfo->context)->parsetree);

	regid = el_registry_oid(true);
	if (!OidIsValid(regid))
		PG_RETURN_NULL();

	/*
	 * Event trigger functions run as the role that issued the DDL, with its
	 * session's search_path; that role may be a superuser whose path a
	 * hostile role can write to.  Only pg_catalog resolves what the checks
	 * look up (catalog.c's statements pin it as well).  An error pops
	 * the path with the transaction.
	 */
	el_push_catalog_path();
	reg = table_open(regid, AccessShareLock);
	scan = systable_beginscan(reg, InvalidOid, false, NULL, 0, NULL);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		bool		isnull;
		Oid			relid = DatumGetObjectId(heap_getattr(tup, 1, RelationGetDescr(reg), &isnull));
		int			shards = DatumGetInt32(heap_getattr(tup, 2, RelationGetDescr(reg), &isnull));

		if (!CheckRelationOidLockedByMe(relid, AccessShareLock, true) &&
			!el_segment_locked(relid))
			continue;
		if (!OidIsValid(append_fn))
		{
			SPI_connect();
			append_fn = el_function_oid("assign_position");
			refuse_fn = el_function_oid("refuse_change");
			guards_fn = el_require_guards_oid();
		}
		el_check_stream_shape(relid, shards, append_fn, refuse_fn, guards_fn,
							  only_adds);
	}
	systable_endscan(scan);
	table_close(reg, AccessShareLock);
	if (OidIsValid(append_fn))
		SPI_finish();
	PopOverrideSearchPath();
	PG_RETURN_NULL();
}

/*
 * ATTACH PARTITION and DETACH PARTITION on a stream, or of one of its
 * segments, by anybody but segment.c.  Refused before anything happens:
 * DETACH ... CONCURRENTLY commits its first step before ddl_command_end,
 * and a segment left "detach pending" would drop out of every read.
 */
static void
el_guard_partition_cmds(AlterTableStmt *stmt)
{
	ListCell   *lc;
	Oid			relid;

	if (stmt->relation == NULL)
		return;
	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);
		Oid			partid;

		if (cmd->subtype != AT_AttachPartition && cmd->subtype != AT_DetachPartition &&
			cmd->subtype != AT_DetachPartitionFinalize)
			continue;
		relid = RangeVarGetRelid(stmt->relation, NoLock, true);
		partid = IsA(cmd->def, PartitionCmd) && ((PartitionCmd *) cmd->def)->name ?
			RangeVarGetRelid(((PartitionCmd *) cmd->def)->name, NoLock, true) : InvalidOid;
		if (!OidIsValid(relid))
			return;
		/* A stream made a partition of something else. */
		if (OidIsValid(partid) && el_registry_shards(partid) > 0)
			ereport(ERROR,
					(errcode(ERRCODE_EL_IMMUTABLE),
					 errmsg("cannot change event stream \"%s\" this way",
							el_qualified_name(partid)),
					 errdetail("An event stream must stay a plain table, not a partition."),
					 errhint("Event streams are append-only: their contract columns, triggers and unique indexes stay as event_log.create_stream() made them.")));
		if (el_registry_shards(relid) > 0 &&
			!el_guard_exempt(relid, EL_GUARD_SEGMENT_DDL))
			ereport(ERROR,
					(errcode(ERRCODE_EL_IMMUTABLE),
					 errmsg("cannot attach or detach partitions of event stream \"%s\"",
							el_qualified_name(relid)),
					 errdetail("A segmented stream's segments are added and removed only by event_log; detaching one would drop its events out of the stream."),
					 errhint("Use event_log.roll_segment() to start a segment, and a retention policy to remove old ones (docs/retention.md).")));
	}
}

/*
 * event_log.guard_ddl_start(): ddl_command_start, for DROP INDEX.  DROP
 * INDEX CONCURRENTLY commits twice before it drops the index: first the
 * index is no longer valid, then no longer live (ignored by every insert).
 * An error of the DDL guard at ddl_command_end rolls back only the last
 * step, and would leave the stream with a dead unique index, incomplete.
 * So an index of a stream is refused before anything is committed; its
 * owner can drop it without CONCURRENTLY (under the guard, as always).
 */
Datum
el_guard_ddl_start(PG_FUNCTION_ARGS)
{
	Node	   *parsetree;
	DropStmt   *drop;
	ListCell   *lc;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("event_log.guard_ddl_start() must run as an event trigger")));
	parsetree = ((EventTriggerData *) fcinfo->context)->parsetree;
	if (parsetree != NULL && IsA(parsetree, AlterTableStmt))
	{
		el_guard_partition_cmds((AlterTableStmt *) parsetree);
		PG_RETURN_NULL();
	}
	if (parsetree == NULL || !IsA(parsetree, DropStmt))
		PG_RETURN_NULL();
	drop = (DropStmt *) parsetree;
	if (drop->removeType != OBJECT_INDEX || !drop->concurrent)
		PG_RETURN_NULL();

	/* Resolved as DROP INDEX will: through the session's path, calling nothing. */
	foreach(lc, drop->objects)
	{
		RangeVar   *rv = makeRangeVarFromNameList((List *) lfirst(lc));
		Oid			indexoid = RangeVarGetRelid(rv, NoLock, true);
		Oid			heapoid;

		if (!OidIsValid(indexoid) || get_rel_relkind(indexoid) != RELKIND_INDEX)
			continue;
		heapoid = IndexGetRelation(indexoid, true);
		if (OidIsValid(heapoid) && el_registry_shards(heapoid) > 0)
			ereport(ERROR,
					(errcode(ERRCODE_EL_IMMUTABLE),
					 errmsg("cannot drop index \"%s\" of event stream \"%s\" concurrently",
							get_rel_name(indexoid), el_qualified_name(heapoid)),
					 errdetail("DROP INDEX CONCURRENTLY commits before the DDL guard can check the stream."),
					 errhint("Use DROP INDEX without CONCURRENTLY.")));
	}
	PG_RETURN_NULL();
}

/*
 * event_log.guard_rewrite(): table_rewrite.  A rewrite (ALTER COLUMN TYPE
 * ... USING, a volatile column default, SET LOGGED/UNLOGGED, SET ACCESS
 * METHOD) would change every stored event.
 */
Datum
el_guard_rewrite(PG_FUNCTION_ARGS)
{
	Oid			relid;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("event_log.guard_rewrite() must run as an event trigger")));

	relid = DatumGetObjectId(OidFunctionCall0(F_PG_EVENT_TRIGGER_TABLE_REWRITE_OID));
	if (el_registry_shards(relid) > 0)
		ereport(ERROR,
				(errcode(ERRCODE_EL_IMMUTABLE),
				 errmsg("cannot rewrite event stream \"%s\"", el_qualified_name(relid)),
				 errdetail("This command would rewrite every stored event."),
				 errhint("Add columns without a volatile default, or create a new stream.")));
	PG_RETURN_NULL();
}

/*
 * The hint for a drop of nstreams streams.  A drop that asked for what
 * depends on what it drops to go as well (DROP TABLE ... CASCADE, DROP
 * SCHEMA, which drops a schema holding streams only with CASCADE, DROP
 * OWNED) meant their projections and consumer groups to go too: name the
 * call that does that.  DROP SCHEMA and DROP OWNED drop more than the
 * streams, and can be run again once they are gone.
 */
static char *
el_drop_hint(Node *parsetree, int nstreams)
{
	bool		more = parsetree != NULL &&
		(IsA(parsetree, DropOwnedStmt) ||
		 (IsA(parsetree, DropStmt) &&
		  ((DropStmt *) parsetree)->removeType != OBJECT_TABLE));
	bool		cascade = more || (parsetree != NULL && IsA(parsetree, DropStmt) &&
								   ((DropStmt *) parsetree)->behavior == DROP_CASCADE);

	if (!cascade)
		return "Use event_log.drop_stream(), which records what it removes.";
	if (!more)
		return nstreams > 1 ?
			"Use event_log.drop_stream(..., cascade => true) for each stream, which drops its projections and consumer groups with it and records what it removes." :
			"Use event_log.drop_stream(..., cascade => true), which drops its projections and consumer groups with it and records what it removes.";
	return nstreams > 1 ?
		"Drop the streams first with event_log.drop_stream(..., cascade => true), which drops their projections and consumer groups with them and records what it removes; then run the command again." :
		"Drop the stream first with event_log.drop_stream(..., cascade => true), which drops its projections and consumer groups with it and records what it removes; then run the command again.";
}

/* The stream a dropped table was a segment of, from event_log.segments. */
static Oid
el_dropped_segment_stream(Oid relid)
{
	Datum		values[1] = {ObjectIdGetDatum(relid)};
	bool		isnull;

	if (el_catalog_sql("SELECT stream FROM event_log.segments"
					   " WHERE segment_table OPERATOR(pg_catalog.=) $1",
					   1, (Oid[]) {OIDOID}, values, NULL,
					   EL_CAT_READ | EL_CAT_LATEST, 1) != 1)
		return InvalidOid;
	return DatumGetObjectId(el_spi_value(0, 1, &isnull));
}

/*
 * event_log.guard_drop(): sql_drop.  Dropping a stream (DROP TABLE, DROP
 * SCHEMA ... CASCADE, DROP OWNED) is refused unless drop_stream() asked.
 * Streams are looked for first, so a schema that holds streams and their
 * projections is refused with what to call for the streams.
 */
Datum
el_guard_drop(PG_FUNCTION_ARGS)
{
	SPITupleTable *dropped;
	uint64		ndropped;
	int			nstreams = 0;
	const char *first = NULL;
	StringInfoData streams;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("event_log.guard_drop() must run as an event trigger")));

	/* Dropping the extension itself drops the registry first. */
	if (!OidIsValid(el_registry_oid(true)))
		PG_RETURN_NULL();

	SPI_connect();
	/* As in guard_ddl(): the query below is qualified, and pinned too. */
	el_push_catalog_path();
	/*
	 * Tables and views: streams, their segments, projections' build tables
	 * and views (not their indexes, TOAST tables or types, which would cost
	 * the checks below a query each).
	 */
	(void) el_exec_as_caller("SELECT objid, object_identity"
							 " FROM pg_catalog.pg_event_trigger_dropped_objects()"
							 " WHERE classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass"
							 " AND objsubid OPERATOR(pg_catalog.=) 0"
							 " AND object_type OPERATOR(pg_catalog.=) ANY ('{table,view,\"materialized view\"}'::pg_catalog.text[])",
							 0, NULL, NULL, true, 0);
	dropped = SPI_tuptable;
	ndropped = SPI_processed;
	initStringInfo(&streams);
	for (uint64 i = 0; i < ndropped; i++)
	{
		bool		isnull;
		Oid			relid = DatumGetObjectId(SPI_getbinval(dropped->vals[i],
														   dropped->tupdesc,
														   1, &isnull));

		if (el_segments_catalog())
		{
			Oid			stream = el_dropped_segment_stream(relid);

			/*
			 * A stream dropped by the same command (DROP SCHEMA ... CASCADE,
			 * DROP OWNED) is refused below, by its name, which the catalog
			 * no longer has.
			 */
			if (OidIsValid(stream) &&
				!el_guard_exempt(stream, EL_GUARD_DROP_STREAM | EL_GUARD_SEGMENT_DDL) &&
				SearchSysCacheExists1(RELOID, ObjectIdGetDatum(stream)))
				ereport(ERROR,
						(errcode(ERRCODE_EL_IMMUTABLE),
						 errmsg("cannot drop segment %s of event stream \"%s\"",
								SPI_getvalue(dropped->vals[i], dropped->tupdesc, 2),
								el_qualified_name(stream)),
						 errdetail("Dropping a segment would delete its events."),
						 errhint("Old segments are removed by a retention policy (docs/retention.md).")));
		}
		if (!el_guard_exempt(relid, EL_GUARD_DROP_STREAM) &&
			el_registry_shards(relid) > 0)
		{
			char	   *name = SPI_getvalue(dropped->vals[i], dropped->tupdesc, 2);

			if (first == NULL)
				first = name;
			appendStringInfo(&streams, "%s%s", nstreams > 0 ? ", " : "", name);
			nstreams++;
		}
	}
	if (nstreams > 0)
		ereport(ERROR,
				(errcode(ERRCODE_EL_IMMUTABLE),
				 errmsg("cannot drop event stream \"%s\"", first),
				 nstreams > 1 ?
				 errdetail("Dropping a stream would delete its events.  This command would drop %d streams: %s.",
						   nstreams, streams.data) :
				 errdetail("Dropping a stream would delete its events."),
				 errhint("%s", el_drop_hint(((EventTriggerData *) fcinfo->context)->parsetree,
											nstreams))));
	for (uint64 i = 0; i < ndropped; i++)
	{
		bool		isnull;
		Oid			relid = DatumGetObjectId(SPI_getbinval(dropped->vals[i],
														   dropped->tupdesc,
														   1, &isnull));

		if (el_guard_owned_relation_hook != NULL &&
			!el_guard_exempt(relid, EL_GUARD_PROJECTION_DDL) &&
			el_guard_owned_relation_hook(relid))
			ereport(ERROR,
					(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
					 errmsg("cannot drop %s: it belongs to a projection",
							SPI_getvalue(dropped->vals[i], dropped->tupdesc, 2)),
					 errhint("Use event_log.drop_projection().")));
	}
	PopOverrideSearchPath();
	SPI_finish();
	PG_RETURN_NULL();
}
