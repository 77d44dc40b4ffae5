/* event_log 0.4 -> 0.5 */
\echo Use "ALTER EXTENSION event_log UPDATE TO '0.5'" to load this file. \quit

-- Each capability that changes the catalog in 0.5 has its own section
-- below, in the order they landed.

-- ---------------------------------------------------------------------
-- Erasure of personal data, continued (docs/erasure.md; docs/design/erasure.md)
-- ---------------------------------------------------------------------

-- erase_subject() overwrites a deleted key's bytes in its page at commit
-- (personal_shred.c); ANALYZE must not have copied them elsewhere first:
-- a column's statistics keep sample values (the histogram of a bytea), in
-- pg_statistic, out of the erasure's reach.  None are gathered for the
-- keys, and those gathered before 0.5 go.
ALTER TABLE event_log.subject_keys ALTER COLUMN key SET STATISTICS 0;
DELETE FROM pg_catalog.pg_statistic s
 WHERE s.starelid OPERATOR(pg_catalog.=) 'event_log.subject_keys'::pg_catalog.regclass
   AND s.staattnum OPERATOR(pg_catalog.=)
       (SELECT a.attnum FROM pg_catalog.pg_attribute a
         WHERE a.attrelid OPERATOR(pg_catalog.=) 'event_log.subject_keys'::pg_catalog.regclass
           AND a.attname OPERATOR(pg_catalog.=) 'key');

-- Fields taken out of a declaration, for events appended afterwards;
-- returns the fields that stay declared.
CREATE FUNCTION event_log.undeclare_personal(stream regclass, fields text[],
                                             type text DEFAULT NULL)
RETURNS text[]
AS 'MODULE_PATHNAME', 'el_undeclare_personal'
LANGUAGE C VOLATILE;
