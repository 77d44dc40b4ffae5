/*
 * projection_upcast.c
 *	  A projection's choice to see events in their type's newest shape:
 *	  the upcast column of event_log.projections (catalog 0.4), read when a
 *	  projection is loaded, first set by create_projection() from the
 *	  session's event_log.upcast, and set_projection_upcast(), which changes it
 *	  and, unless told not to, rebuilds the projection so that the rows
 *	  already there come from the same payloads as the next ones.
 *
 *	  The upcasting itself is the schema layer's (schema_upcast.c):
 *	  el_apply() passes each event through el_upcast_event() when the set
 *	  says so, which is every path a handler runs on (inline, async runs,
 *	  builds and rebuilds; set-based builds are refused for such a
 *	  projection and go event by event), so a rebuild gives what live
 *	  processing gave.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"

#include "catalog.h"
#include "event_log.h"
#include "projection.h"

PG_FUNCTION_INFO_V1(el_set_projection_upcast);

/* Whether this database's catalog has projections.upcast (0.4). */
static bool
el_upcast_column_present(void)
{
	return get_attnum(el_catalog_relid("projections"), "upcast") != InvalidAttrNumber;
}

/*
 * A projection's choice (SPI connected); false on a catalog not yet updated
 * to 0.4, whose projections all see events as stored.
 */
bool
el_projection_upcast(Oid view)
{
	bool		isnull;

	if (!el_upcast_column_present())
		return false;
	if (el_catalog_sql("SELECT p.upcast FROM event_log.projections p"
					   " WHERE p.projection OPERATOR(pg_catalog.=) $1",
					   1, (Oid[]) {OIDOID}, (Datum[]) {ObjectIdGetDatum(view)},
					   NULL, EL_CAT_READ | EL_CAT_LATEST, 1) != 1)
		return false;
	return DatumGetBool(el_spi_value(0, 1, &isnull));
}

/*
 * create_projection(): a new projection upcasts if the creating session
 * has event_log.upcast on (its choice is recorded; the build that follows
 * already upcasts).  Returns the choice.
 */
bool
el_projection_record_upcast(Oid view)
{
	if (!el_upcast_reads || !el_upcast_column_present())
		return false;
	(void) el_catalog_sql("UPDATE event_log.projections p SET upcast = true"
						  " WHERE p.projection OPERATOR(pg_catalog.=) $1",
						  1, (Oid[]) {OIDOID}, (Datum[]) {ObjectIdGetDatum(view)},
						  NULL, 0, 0);
	return true;
}

/*
 * set_projection_upcast(name text, upcast boolean, rebuild boolean DEFAULT
 * true) RETURNS bigint: the projection's owner turns upcasting on or off.
 * With rebuild, the projection is rebuilt at once and the number of events
 * replayed is returned; without, the choice holds from the next event on
 * (as alter_projection()'s new handlers do) and the result is NULL.
 */
Datum
el_set_projection_upcast(PG_FUNCTION_ARGS)
{
	Oid			view;
	bool		upcast;
	bool		rebuild;
	bool		was;
	int64		replayed = 0;

	el_require_arg(fcinfo, 0, "name");
	el_require_arg(fcinfo, 1, "upcast");
	el_require_arg(fcinfo, 2, "rebuild");
	upcast = PG_GETARG_BOOL(1);
	rebuild = PG_GETARG_BOOL(2);

	SPI_connect();
	view = el_projection_oid(PG_GETARG_TEXT_PP(0));
	el_require_owner(view);
	if (!el_upcast_column_present())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("upcasting projections needs version 0.4 of the event_log catalog"),
				 errhint("Run ALTER EXTENSION event_log UPDATE.")));
	(void) el_lock_projection(view, true);
	was = el_projection_upcast(view);
	if (was != upcast)
	{
		(void) el_catalog_sql("UPDATE event_log.projections p SET upcast = $2"
							  " WHERE p.projection OPERATOR(pg_catalog.=) $1",
							  2, (Oid[]) {OIDOID, BOOLOID},
							  (Datum[]) {ObjectIdGetDatum(view), BoolGetDatum(upcast)},
							  NULL, 0, 0);
		/* the live handler sets are rebuilt from the new row */
		CacheInvalidateRelcacheByRelid(view);
		CommandCounterIncrement();
	}
	if (rebuild)
	{
		bool		isnull;

		(void) el_exec_as_caller("SELECT event_log.rebuild_projection($1)",
								 1, (Oid[]) {TEXTOID},
								 (Datum[]) {CStringGetTextDatum(el_qualified_name(view))},
								 false, 1);
		replayed = DatumGetInt64(el_spi_value(0, 1, &isnull));
	}
	SPI_finish();
	if (!rebuild)
		PG_RETURN_NULL();
	PG_RETURN_INT64(replayed);
}
