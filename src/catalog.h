/*
 * catalog.h
 *	  Where the extension's catalog lives, and the one way our C code runs
 *	  SQL: on the catalog as its owner, DDL as a given role, or as the
 *	  caller.  The bottom layer: it calls no other file of ours.
 */
#ifndef EL_CATALOG_H
#define EL_CATALOG_H

#include "postgres.h"

#include "nodes/pg_list.h"
#include "utils/jsonb.h"

/* The catalog's tables, by name in the event_log schema. */
extern Oid	el_schema_oid(void);
extern Oid	el_registry_oid(bool missing_ok);
extern Oid	el_catalog_relid(const char *name);

/* Owners: of any relation, and of our catalog (the extension's owner). */
extern Oid	el_rel_owner(Oid relid);
extern Oid	el_catalog_owner(void);

/* Names: a relation's, quoted and qualified; a name given as text, parsed. */
extern char *el_qualified_name(Oid relid);
extern List *el_parse_name(const char *name, const char *what);

/* Pin pg_catalog as the whole search_path; PopOverrideSearchPath() undoes it. */
extern void el_push_catalog_path(void);

/* Flags of el_catalog_sql(). */
#define EL_CAT_READ		0x01		/* read-only: a SELECT */
#define EL_CAT_LATEST	0x02		/* with the latest snapshot */

extern uint64 el_catalog_sql(const char *sql, int nargs, const Oid *types,
							 Datum *values, const char *nulls, int flags,
							 long tcount);
extern uint64 el_query_as(Oid role, const char *sql, int nargs, const Oid *types,
						  Datum *values, const char *nulls, int flags, long tcount);
extern void el_exec_as(Oid role, Oid nsp, const char *sql, bool restricted);
extern uint64 el_exec_as_caller(const char *sql, int nargs, Oid *types,
								Datum *values, bool read_only, long tcount);

/*
 * Run fn(arg) in a subtransaction of its own: NULL if it succeeded, else
 * its error, with the subtransaction rolled back.
 */
extern ErrorData *el_try_subxact(void (*fn) (void *arg), void *arg);

/*
 * The first foreign key (by OID) that references relid, or with partitions
 * any table of relid's partition tree: its name, its table, the table it
 * references.  The caller is connected to SPI.
 */
extern bool el_referencing_key(Oid relid, bool partitions, char **conname,
							   Oid *conrelid, Oid *confrelid);

/* A column of SPI_tuptable's row (NULL, or -1 for int8, when null). */
extern Datum el_spi_value(uint64 row, int col, bool *isnull);
extern char *el_spi_text(uint64 row, int col);
extern Jsonb *el_spi_jsonb(uint64 row, int col);
extern int64 el_spi_int8(uint64 row, int col);

#endif							/* EL_CATALOG_H */
