/* event_log 0.2 -> 0.3 (issue 19: the command and query API) */
\echo Use "ALTER EXTENSION event_log UPDATE TO '0.3'" to load this file. \quit

-- ---------------------------------------------------------------------
-- Several events in one call (docs/streams.md, "Appending several events")
-- ---------------------------------------------------------------------

-- One event to append: what INSERT takes, and the key for the form of
-- append_events() that appends to several keys.
CREATE TYPE event_log.new_event AS (
    type     text,
    payload  jsonb,
    metadata jsonb,
    event_id uuid,
    key      text
);

-- Its constructor, with the optional fields named.  A SQL-standard body is
-- bound when it is created, so no caller's search_path can change it.
CREATE FUNCTION event_log.new_event(
    type text,
    payload jsonb,
    metadata jsonb DEFAULT NULL,
    event_id uuid DEFAULT NULL,
    key text DEFAULT NULL)
RETURNS event_log.new_event
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN ROW(type, payload, metadata, event_id, key)::event_log.new_event;

-- To one key, under one expected_version check.
CREATE FUNCTION event_log.append_events(
    stream regclass,
    key text,
    events event_log.new_event[],
    expected_version bigint DEFAULT NULL)
RETURNS TABLE (key text, shard integer, seq bigint, version bigint,
               event_id uuid, duplicate boolean)
AS 'MODULE_PATHNAME', 'el_append_events'
LANGUAGE C VOLATILE;

-- To the keys the events name.
CREATE FUNCTION event_log.append_events(
    stream regclass,
    events event_log.new_event[])
RETURNS TABLE (key text, shard integer, seq bigint, version bigint,
               event_id uuid, duplicate boolean)
AS 'MODULE_PATHNAME', 'el_append_events_keys'
LANGUAGE C VOLATILE;

-- One event by its event_id, read as the caller (SELECT, row-level security).
CREATE FUNCTION event_log.read_event(stream regclass, event_id uuid)
RETURNS SETOF event_log.event
AS 'MODULE_PATHNAME', 'el_read_event'
LANGUAGE C STABLE;

-- ---------------------------------------------------------------------
-- Offsets without foreign keys (docs/design/restore.md)
-- ---------------------------------------------------------------------

-- A parallel pg_restore (-j) loads the catalog tables of the extension
-- in any order, so a foreign key from the offsets to their group or
-- projection made it drop the offsets it loaded first.  The rows are
-- written only by the extension's C code, which deletes a group's or a
-- projection's offsets with it.
ALTER TABLE event_log.consumer_offsets DROP CONSTRAINT consumer_offsets_group_id_fkey;
ALTER TABLE event_log.projection_offsets DROP CONSTRAINT projection_offsets_projection_fkey;

-- ---------------------------------------------------------------------
-- The DDL guard before DROP INDEX CONCURRENTLY, which commits before
-- ddl_command_end (docs/design/restore.md, "Why a stream owner cannot use
-- it to weaken a stream").
-- ---------------------------------------------------------------------
CREATE FUNCTION event_log.guard_ddl_start()
RETURNS event_trigger
AS 'MODULE_PATHNAME', 'el_guard_ddl_start'
LANGUAGE C;

CREATE EVENT TRIGGER event_log_guard_ddl_start ON ddl_command_start
    WHEN TAG IN ('DROP INDEX')
    EXECUTE FUNCTION event_log.guard_ddl_start();
ALTER EVENT TRIGGER event_log_guard_ddl_start ENABLE ALWAYS;

-- ---------------------------------------------------------------------
-- Appends refused while a stream's triggers are missing, as after an
-- interrupted restore (docs/design/restore.md, "A stream without its
-- triggers").
-- ---------------------------------------------------------------------

-- The default of every stream's shard column.  A column default is
-- evaluated for every row that leaves the column out, before the BEFORE
-- INSERT triggers and also on a table that has none; this returns NULL
-- (which the append trigger replaces) when the stream has its triggers,
-- and raises an error naming the missing trigger and the fix otherwise.
-- pg_dump writes a default in pre-data, with the table; triggers come in
-- post-data.
CREATE FUNCTION event_log.require_guards(stream regclass)
RETURNS integer
AS 'MODULE_PATHNAME', 'el_require_guards'
LANGUAGE C STABLE STRICT;

-- Existing streams get it; the DDL guard requires it from now on.  The
-- stream is a regclass constant, stored as its OID and dumped by name.
DO $$
DECLARE
    s regclass;
BEGIN
    FOR s IN SELECT stream FROM event_log.streams ORDER BY stream::oid LOOP
        EXECUTE pg_catalog.format(
            'ALTER TABLE %s ALTER COLUMN shard SET DEFAULT event_log.require_guards(%L::pg_catalog.regclass)',
            s, s::text);
    END LOOP;
END
$$;
