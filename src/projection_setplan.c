/*
 * projection_setplan.c
 *	  Set-based replay for projection builds: a handler statement run once
 *	  over a batch of events instead of once per event.
 *
 * A projection build (create_projection(), rebuild_projection()) replays
 * every event of the stream through the handlers.  Run per event, each
 * statement pays for SPI and starting the executor.  For
 * handlers whose statements provably touch only rows of their own event's
 * key, a batch of events with distinct keys can instead run each statement
 * once, joined with the batch: the result is the same as running them event
 * by event, because statements for different keys touch disjoint rows.
 *
 * A statement qualifies (el_setplan_prepare) when, after rewriting, it is
 *	 - an INSERT of one VALUES row that sets a key column to e.key, with an
 *	   ON CONFLICT target (if any) that includes that column and an ON
 *	   CONFLICT clause that does not use the event;
 *	 - or an UPDATE or DELETE whose WHERE clause has "column = e.key" as a
 *	   top-level AND condition, and which does not change that column;
 * on one table, with no subqueries, WITH, RETURNING, set-returning functions,
 * other relations or the whole event `e`, and with immutable functions
 * only (a stable function could read other keys' rows).  All statements of
 * all handlers must agree on the table and the key column, and the table
 * (el_setplan_table_ok) must keep keys apart: a text key column with a
 * deterministic collation, every unique index on it compared as text, no
 * exclusion constraint, no triggers, no row-level security.  Then no two
 * keys' rows can ever meet.  See docs/design/projections.md, "Set-based
 * rebuilds".
 *
 * The batch is passed as a tuplestore of events, which the statement reads
 * as an ephemeral named relation `e` (as trigger transition tables are
 * read); each of its references to an event field becomes a reference to
 * that relation's column.  Each statement is planned once per build and
 * run once per batch.
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/pg_am.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_opfamily.h"
#include "executor/executor.h"
#include "jit/jit.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/analyze.h"
#include "parser/parsetree.h"
#include "tcop/tcopprot.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "event_log.h"
#include "projection.h"

/* The name the batch relation `e` has in the statements' query environment. */
#define EL_BATCH_ENR		"event_log_batch"

/* One handler's statements, rewritten to run over a batch. */
struct ElSetPlan
{
	List	   *queries;		/* Query per statement, e.field as batch Vars */
	List	   *sources;		/* the statements' text, for messages */
	List	   *stmts;			/* their plans, made on first use */
	List	   *plain_stmts;	/* the same without ON CONFLICT, likewise */
	MemoryContext cxt;			/* where the plans go */
};

/* The batch's row type: the event's fields, as in a stream. */
static TupleDesc
el_setplan_desc(void)
{
	static TupleDesc desc = NULL;

	if (desc == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
		TupleDesc	d = CreateTemplateTupleDesc(EL_NATTS);

		for (int i = 0; i < EL_NATTS; i++)
			TupleDescInitEntry(d, i + 1, el_columns[i].name, el_columns[i].type, -1, 0);
		MemoryContextSwitchTo(old);
		desc = d;
	}
	return desc;
}

/* A query environment holding the batch relation, with `rows` as its contents. */
static QueryEnvironment *
el_setplan_env(Tuplestorestate *rows, double count)
{
	QueryEnvironment *env = create_queryEnv();
	EphemeralNamedRelation enr = palloc0(sizeof(EphemeralNamedRelationData));

	enr->md.name = EL_BATCH_ENR;
	enr->md.reliddesc = InvalidOid;
	enr->md.tupdesc = el_setplan_desc();
	enr->md.enrtype = ENR_NAMED_TUPLESTORE;
	enr->md.enrtuples = count;
	enr->reldata = rows;
	register_ENR(env, enr);
	return env;
}

/* The batch relation `e`, as the parser makes it. */
static RangeTblEntry *
el_setplan_rte(void)
{
	const char *sql = "SELECT * FROM " EL_BATCH_ENR " AS e";
	List	   *raw = raw_parser(sql, RAW_PARSE_DEFAULT);
	Query	   *q;

	/* A typical batch's size, for the planner's estimates. */
	q = parse_analyze_fixedparams(linitial_node(RawStmt, raw), sql, NULL, 0,
								  el_setplan_env(NULL, 1000));
	return linitial_node(RangeTblEntry, q->rtable);
}

/* Whether a node tree contains a Param (of the event). */
static bool
el_has_param(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (IsA(node, Param))
		return true;
	return expression_tree_walker(node, el_has_param, context);
}

/* A Param of the event's key, under any relabeling. */
static bool
el_is_key_param(Node *node)
{
	while (node && IsA(node, RelabelType))
		node = (Node *) ((RelabelType *) node)->arg;
	return node && IsA(node, Param) &&
		((Param *) node)->paramkind == PARAM_EXTERN &&
		((Param *) node)->paramid == Anum_el_key;
}

/* A plain column of the result relation: its number, else 0. */
static AttrNumber
el_result_column(Node *node, int rti)
{
	while (node && IsA(node, RelabelType))
		node = (Node *) ((RelabelType *) node)->arg;
	if (node && IsA(node, Var) && ((Var *) node)->varno == rti &&
		((Var *) node)->varlevelsup == 0 && ((Var *) node)->varattno > 0)
		return ((Var *) node)->varattno;
	return 0;
}

/* The column a WHERE clause ties to e.key with a top-level "=", else 0. */
static AttrNumber
el_key_condition(Node *quals, int rti)
{
	ListCell   *lc;

	foreach(lc, make_ands_implicit((Expr *) quals))
	{
		OpExpr	   *op = (OpExpr *) lfirst(lc);
		Node	   *l,
				   *r;
		AttrNumber	col;

		if (!IsA(op, OpExpr) || list_length(op->args) != 2 ||
			op->opno != TextEqualOperator || !OidIsValid(op->inputcollid) ||
			!get_collation_isdeterministic(op->inputcollid))
			continue;
		l = linitial(op->args);
		r = lsecond(op->args);
		if ((col = el_result_column(l, rti)) != 0 && el_is_key_param(r))
			return col;
		if ((col = el_result_column(r, rti)) != 0 && el_is_key_param(l))
			return col;
	}
	return 0;
}

/* Whether a target list assigns the column (ignoring junk entries). */
static bool
el_assigns(List *tlist, AttrNumber col)
{
	ListCell   *lc;

	foreach(lc, tlist)
	{
		TargetEntry *te = lfirst_node(TargetEntry, lc);

		if (!te->resjunk && te->resno == col)
			return true;
	}
	return false;
}

/*
 * Check one rewritten statement; on success set *table and *keycol.
 * Returns NULL if it qualifies, else why not.
 */
static const char *
el_check_query(Query *q, Oid *table, AttrNumber *keycol)
{
	RangeTblEntry *target;
	AttrNumber	col = 0;
	ListCell   *lc;
	int			rti = 0;

	if (q->commandType != CMD_INSERT && q->commandType != CMD_UPDATE &&
		q->commandType != CMD_DELETE)
		return "a statement other than INSERT, UPDATE or DELETE";
	if (q->hasSubLinks || q->cteList || q->returningList || q->hasTargetSRFs ||
		q->hasAggs || q->hasWindowFuncs || q->rowMarks || q->setOperations ||
		q->withCheckOptions || q->hasModifyingCTE || q->hasRecursive ||
		q->groupClause || q->havingQual || q->sortClause || q->limitCount ||
		q->limitOffset || q->distinctClause)
		return "a subquery, WITH, RETURNING or a clause other than WHERE";
	if (contain_mutable_functions((Node *) q))
		return "a function that is not immutable";

	target = rt_fetch(q->resultRelation, q->rtable);
	foreach(lc, q->rtable)
	{
		RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);

		rti++;
		if (rte->rtekind != RTE_RELATION || rte->securityQuals != NIL)
			return "another relation";
		/* The view the statement named, kept for its permission check. */
		/* ON CONFLICT's EXCLUDED, as the parser and the view rewrite make it. */
		if (rte->relkind == RELKIND_COMPOSITE_TYPE && q->onConflict != NULL)
			continue;
		if (rti != q->resultRelation && rte->relid != target->relid &&
			(rte->relkind != RELKIND_VIEW || rte->inFromCl))
			return "another relation";
	}

	if (q->commandType == CMD_INSERT)
	{
		if (q->jointree->fromlist != NIL)
			return "an INSERT of more than one VALUES row or of a SELECT";
		foreach(lc, q->targetList)
		{
			TargetEntry *te = lfirst_node(TargetEntry, lc);

			if (!te->resjunk && el_is_key_param((Node *) te->expr))
				col = te->resno;
		}
		if (col == 0)
			return "an INSERT that does not set a column to e.key";
		if (q->onConflict)
		{
			OnConflictExpr *oc = q->onConflict;
			bool		has_key = false;

			if (OidIsValid(oc->constraint) || oc->arbiterElems == NIL)
				return "ON CONFLICT without a column list";
			foreach(lc, oc->arbiterElems)
			{
				InferenceElem *ie = lfirst_node(InferenceElem, lc);

				if (el_result_column(ie->expr, q->resultRelation) == col)
					has_key = true;
			}
			if (!has_key)
				return "an ON CONFLICT target without the key column";
			if (el_has_param((Node *) oc->onConflictSet, NULL) ||
				el_has_param(oc->onConflictWhere, NULL) ||
				el_has_param(oc->arbiterWhere, NULL))
				return "an ON CONFLICT clause that uses the event";
			if (el_assigns(oc->onConflictSet, col))
				return "an ON CONFLICT clause that changes the key column";
		}
	}
	else
	{
		foreach(lc, q->jointree->fromlist)
		{
			Node	   *item = lfirst(lc);

			if (!IsA(item, RangeTblRef) ||
				((RangeTblRef *) item)->rtindex != q->resultRelation)
				return "another relation";
		}
		col = el_key_condition(q->jointree->quals, q->resultRelation);
		if (col == 0)
			return "a WHERE clause without \"column = e.key\"";
		if (q->commandType == CMD_UPDATE && el_assigns(q->targetList, col))
			return "an UPDATE of the key column";
	}

	if (OidIsValid(*table) && (*table != target->relid || *keycol != col))
		return "statements on different tables or key columns";
	*table = target->relid;
	*keycol = col;
	return NULL;
}

/* Mutator: the event's fields ($1..$9) become columns of the batch. */
static int	el_setplan_rti;

static Node *
el_params_to_batch(Node *node, void *context)
{
	if (node == NULL)
		return NULL;
	if (IsA(node, Param) && ((Param *) node)->paramkind == PARAM_EXTERN &&
		((Param *) node)->paramid >= 1 && ((Param *) node)->paramid <= EL_NATTS)
	{
		Param	   *p = (Param *) node;
		Var		   *v = makeVar(el_setplan_rti, p->paramid, p->paramtype, -1,
								p->paramcollid, 0);

		v->location = p->location;
		return (Node *) v;
	}
	return expression_tree_mutator(node, el_params_to_batch, context);
}

/*
 * The batch form of a prepared handler, or NULL (with *why) if one of its
 * statements does not qualify.  *table and *keycol collect what the
 * statements agree on (InvalidOid and 0 before the first).  Allocates in
 * the current memory context.
 */
ElSetPlan *
el_setplan_prepare(SPIPlanPtr plan, Oid *table, AttrNumber *keycol,
				 const char **why)
{
	ElSetPlan *bp = palloc0(sizeof(ElSetPlan));
	ListCell   *lc;

	bp->cxt = CurrentMemoryContext;
	foreach(lc, SPI_plan_get_plan_sources(plan))
	{
		CachedPlanSource *ps = (CachedPlanSource *) lfirst(lc);
		Query	   *q;
		RangeTblEntry *rte;
		RangeTblRef *ref;
		int			rti;

		if (list_length(ps->query_list) != 1)
		{
			*why = "a statement that rules rewrite into several";
			return NULL;
		}
		q = copyObject(linitial_node(Query, ps->query_list));
		if ((*why = el_check_query(q, table, keycol)) != NULL)
			return NULL;

		rte = el_setplan_rte();
		q->rtable = lappend(q->rtable, rte);
		rti = list_length(q->rtable);
		ref = makeNode(RangeTblRef);
		ref->rtindex = rti;
		q->jointree->fromlist = lappend(q->jointree->fromlist, ref);
		el_setplan_rti = rti;
		q->targetList = (List *) el_params_to_batch((Node *) q->targetList, NULL);
		q->jointree->quals = el_params_to_batch(q->jointree->quals, NULL);
		if (el_has_param((Node *) q->targetList, NULL) ||
			el_has_param(q->jointree->quals, NULL))
		{
			*why = "the whole event e";
			return NULL;
		}
		bp->queries = lappend(bp->queries, q);
		bp->sources = lappend(bp->sources, pstrdup(ps->query_string));
	}
	*why = NULL;
	return bp;
}

/*
 * Whether column i of an index compares the key column as the handlers'
 * "= e.key" does: the column itself, with the text B-tree operator family
 * and a deterministic collation, so that equal means equal bytes.
 */
static bool
el_index_column_is_key(Relation index, int i, AttrNumber keycol)
{
	Oid			coll = index->rd_indcollation[i];

	return index->rd_index->indkey.values[i] == keycol &&
		index->rd_opfamily[i] == TEXT_BTREE_FAM_OID &&
		OidIsValid(coll) && get_collation_isdeterministic(coll);
}

/*
 * Whether the table keeps different keys' rows apart, and lets a batch look
 * keys up by index: the key column is text (or varchar) with a
 * deterministic collation, so keys that differ as text never match or
 * conflict; no triggers, no row-level security, no exclusion constraint;
 * every unique index has the key column, compared as text; and a valid
 * B-tree index starts with it.  Returns NULL if so, else why not.
 */
const char *
el_setplan_table_ok(Oid table, AttrNumber keycol)
{
	Relation	rel = table_open(table, AccessShareLock);
	TupleDesc	desc = RelationGetDescr(rel);
	Form_pg_attribute att = keycol <= desc->natts ? TupleDescAttr(desc, keycol - 1) : NULL;
	const char *why = NULL;
	bool		leading = false;
	ListCell   *lc;

	if (att == NULL || (att->atttypid != TEXTOID && att->atttypid != VARCHAROID))
		why = "the key column is not of type text";
	else if (!OidIsValid(att->attcollation) ||
			 !get_collation_isdeterministic(att->attcollation))
		why = "the key column has a nondeterministic collation";
	else if (rel->trigdesc != NULL)
		why = "the table has triggers";
	else if (rel->rd_rel->relrowsecurity)
		why = "the table has row-level security";
	foreach(lc, RelationGetIndexList(rel))
	{
		Relation	index = index_open(lfirst_oid(lc), AccessShareLock);
		Form_pg_index form = index->rd_index;
		bool		has_key = false;

		for (int i = 0; i < form->indnkeyatts; i++)
			if (el_index_column_is_key(index, i, keycol))
				has_key = true;
		if (why == NULL && form->indisexclusion)
			why = "the table has an exclusion constraint";
		else if (why == NULL && form->indisunique && !has_key)
			why = "the table has a unique index without the key column";
		if (index->rd_rel->relam == BTREE_AM_OID && form->indisvalid &&
			form->indnkeyatts > 0 && index->rd_indpred == NIL &&
			el_index_column_is_key(index, 0, keycol))
			leading = true;
		index_close(index, AccessShareLock);
	}
	if (why == NULL && !leading)
		why = "no index of the table starts with the key column";
	table_close(rel, AccessShareLock);
	return why;
}

/*
 * Plan a statement over a batch the way it runs event by event: for each
 * event, index probes of the table by its key.  The planner, left to
 * itself, knows nothing yet of a table being built and guesses that a key
 * matches thousands of rows, and so scans or sorts the whole table for every
 * batch; so joins other than nested loops, and scans other than index
 * scans, are off while it plans (el_setplan_table_ok() made sure there is an
 * index that leads with the key column).  The plan holds no parameters, so
 * one plan serves every batch of the build.
 */
static PlannedStmt *
el_setplan_plan(Query *q, const char *sql)
{
	static const char *const off[] = {
		"enable_hashjoin", "enable_mergejoin", "enable_seqscan", "enable_bitmapscan"
	};
	int			level = NewGUCNestLevel();
	PlannedStmt *stmt;

	for (int i = 0; i < (int) lengthof(off); i++)
		(void) set_config_option(off[i], "off", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	stmt = pg_plan_query(q, sql, 0, NULL);
	AtEOXact_GUC(true, level);
	/* Compiling would cost more than a batch's expressions save. */
	stmt->jitFlags = PGJIT_NONE;
	return stmt;
}

/*
 * The plans of a handler's statements, made on first use and kept for the
 * build.  With plain, an INSERT's ON CONFLICT clause is left out.
 */
static List *
el_setplan_plans(ElSetPlan *bp, bool plain)
{
	List	   *stmts = NIL;
	MemoryContext old;
	ListCell   *lq,
			   *ls;

	if (!plain && bp->stmts != NIL)
		return bp->stmts;
	if (plain && bp->plain_stmts != NIL)
		return bp->plain_stmts;

	/*
	 * The statements as written are planned first, even when only their
	 * plain form runs: planning checks what parsing does not, such as an
	 * ON CONFLICT target that no unique index matches.
	 */
	if (plain)
	{
		bool		any = false;

		(void) el_setplan_plans(bp, false);
		foreach(lq, bp->queries)
			any |= (lfirst_node(Query, lq)->onConflict != NULL);
		/* Without an ON CONFLICT clause the plain form is the same. */
		if (!any)
			return bp->plain_stmts = bp->stmts;
	}

	old = MemoryContextSwitchTo(bp->cxt);
	PushActiveSnapshot(GetTransactionSnapshot());
	forboth(lq, bp->queries, ls, bp->sources)
	{
		Query	   *q = copyObject(lfirst_node(Query, lq));

		if (plain)
			q->onConflict = NULL;
		stmts = lappend(stmts, el_setplan_plan(q, (const char *) lfirst(ls)));
	}
	PopActiveSnapshot();
	MemoryContextSwitchTo(old);
	if (plain)
		bp->plain_stmts = stmts;
	else
		bp->stmts = stmts;
	return stmts;
}

/*
 * Run a handler's statements over a batch: count events, keys all
 * distinct.  With plain, an INSERT ... ON CONFLICT runs as a plain INSERT
 * (see el_replay_setbased() in projection_build.c).  The caller holds the handler
 * identity (el_apply_begin) and runs this in a subtransaction.
 */
void
el_setplan_run(ElSetPlan *bp, int count, ElSetEvent **events, bool plain)
{
	TupleDesc	desc = el_setplan_desc();
	/* The events are in memory already; their copies here may be too. */
	Tuplestorestate *rows = tuplestore_begin_heap(false, false, MAX_KILOBYTES);
	QueryEnvironment *env = el_setplan_env(rows, count);
	ListCell   *lp,
			   *ls;

	for (int k = 0; k < count; k++)
	{
		/* The stream's tuple as it is, if it is laid out as the batch's. */
		if (events[k]->tuple != NULL)
		{
			HeapTupleData tuple;

			tuple.t_len = events[k]->len;
			ItemPointerSetInvalid(&tuple.t_self);
			tuple.t_tableOid = InvalidOid;
			tuple.t_data = events[k]->tuple;
			tuplestore_puttuple(rows, &tuple);
		}
		else
			tuplestore_putvalues(rows, desc, events[k]->values, events[k]->nulls);
	}

	forboth(lp, el_setplan_plans(bp, plain), ls, bp->sources)
	{
		PlannedStmt *stmt = lfirst_node(PlannedStmt, lp);
		QueryDesc  *qd;

		/* A new snapshot per statement, as SPI takes for each handler's. */
		PushActiveSnapshot(IsolationUsesXactSnapshot() ? GetLatestSnapshot()
						   : GetTransactionSnapshot());
		UpdateActiveSnapshotCommandId();
		qd = CreateQueryDesc(stmt, (const char *) lfirst(ls), GetActiveSnapshot(),
							 InvalidSnapshot, None_Receiver, NULL, env, 0);
		ExecutorStart(qd, 0);
		ExecutorRun(qd, ForwardScanDirection, 0, true);
		ExecutorFinish(qd);
		ExecutorEnd(qd);
		FreeQueryDesc(qd);
		PopActiveSnapshot();
		CommandCounterIncrement();
	}
	tuplestore_end(rows);
}

/*
 * Screening a chunk for events that will fail, before its batches run.
 *
 * A batch fails as a whole and names no event, so one poison event in it
 * would cost the whole batch (and, under the 'park' build policy, make the
 * rest of the build go event by event).  Before a chunk is applied, a build
 * that parks evaluates, for each event, the expressions of its handler's
 * statements that read nothing but the event: an INSERT's or UPDATE's
 * values computed from e's fields alone.  An expression that fails there
 * would fail in the batch too (an INSERT evaluates its VALUES row for every
 * event); the event and its key's later events of the chunk are then held
 * out of the batches and applied event by event, where a failure is parked
 * (projection_build.c).  A NULL for a NOT NULL column is flagged the same
 * way.
 *
 * Screening is only a guess about what will fail, and no decision rests on
 * it: a flagged event is applied for real, on its own, and parked only if
 * that fails; an UPDATE that matches no row would not have evaluated the
 * value (flagged for nothing: it then just goes event by event); failures
 * screening cannot see (constraints, conflicts, values read from the
 * table) fail the batch as before.
 */
struct ElSetScreen
{
	int			n;
	ExprState **exprs;
	bool	   *notnull;		/* the column takes no NULL */
	ExprContext *econtext;
	TupleTableSlot *slot;
};

/* Whether an expression reads only the batch relation rti (and constants). */
static bool
el_reads_other(Node *node, void *context)
{
	int			rti = *(int *) context;

	if (node == NULL)
		return false;
	if (IsA(node, Var))
		return ((Var *) node)->varno != rti || ((Var *) node)->varlevelsup != 0;
	if (IsA(node, Param) || IsA(node, SubLink) || IsA(node, Aggref) ||
		IsA(node, WindowFunc) || IsA(node, GroupingFunc))
		return true;
	return expression_tree_walker(node, el_reads_other, context);
}

/*
 * The screens of a handler's statements in their batch form, made in the
 * current memory context, or NULL if none of their values can be computed
 * from the event alone.  Runs the handler's immutable expressions: call it
 * as the handler's identity (el_apply_begin()), in a subtransaction.
 */
ElSetScreen *
el_setplan_screen(ElSetPlan *bp)
{
	ElSetScreen *sc = palloc0(sizeof(ElSetScreen));
	ListCell   *lq;
	int			max = 0;

	foreach(lq, bp->queries)
		max += list_length(lfirst_node(Query, lq)->targetList);
	sc->exprs = palloc(sizeof(ExprState *) * Max(max, 1));
	sc->notnull = palloc(sizeof(bool) * Max(max, 1));
	foreach(lq, bp->queries)
	{
		Query	   *q = lfirst_node(Query, lq);
		int			rti = list_length(q->rtable);	/* e, appended last */
		Oid			table = rt_fetch(q->resultRelation, q->rtable)->relid;
		ListCell   *lc;

		if (q->commandType != CMD_INSERT && q->commandType != CMD_UPDATE)
			continue;
		foreach(lc, q->targetList)
		{
			TargetEntry *te = lfirst_node(TargetEntry, lc);
			HeapTuple	att;

			if (te->resjunk || el_reads_other((Node *) te->expr, &rti))
				continue;
			att = SearchSysCache2(ATTNUM, ObjectIdGetDatum(table),
								  Int16GetDatum(te->resno));
			sc->notnull[sc->n] = HeapTupleIsValid(att) &&
				((Form_pg_attribute) GETSTRUCT(att))->attnotnull;
			if (HeapTupleIsValid(att))
				ReleaseSysCache(att);
			sc->exprs[sc->n++] =
				ExecInitExpr(expression_planner((Expr *) copyObject(te->expr)), NULL);
		}
	}
	if (sc->n == 0)
		return NULL;
	sc->econtext = CreateStandaloneExprContext();
	sc->slot = MakeSingleTupleTableSlot(el_setplan_desc(), &TTSOpsVirtual);
	sc->econtext->ecxt_scantuple = sc->slot;
	return sc;
}

/*
 * Compute an event's screened values: raises the error its batch would
 * (or a NOT NULL violation), else returns.
 */
void
el_setplan_screen_event(ElSetScreen *sc, ElSetEvent *ev)
{
	ExecClearTuple(sc->slot);
	memcpy(sc->slot->tts_values, ev->values, sizeof(Datum) * EL_NATTS);
	memcpy(sc->slot->tts_isnull, ev->nulls, sizeof(bool) * EL_NATTS);
	ExecStoreVirtualTuple(sc->slot);
	for (int i = 0; i < sc->n; i++)
	{
		bool		isnull;

		(void) ExecEvalExprSwitchContext(sc->exprs[i], sc->econtext, &isnull);
		if (isnull && sc->notnull[i])
			ereport(ERROR,
					(errcode(ERRCODE_NOT_NULL_VIOLATION),
					 errmsg("null value for a NOT NULL column")));
	}
	ResetExprContext(sc->econtext);
}

/* Release what el_setplan_screen() made outside its memory context. */
void
el_setplan_screen_end(ElSetScreen *sc)
{
	if (sc == NULL)
		return;
	FreeExprContext(sc->econtext, true);
	ExecDropSingleTupleTableSlot(sc->slot);
}
