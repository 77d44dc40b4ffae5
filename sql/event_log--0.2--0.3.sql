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
-- Issue 19, api2: commit what the last poll returned (docs/consumers.md,
-- "Stopping cleanly: commit_polled()")
-- ---------------------------------------------------------------------

-- Kafka's commitSync() after poll(): commits what this session's last
-- poll() of the group (and member) returned, as the next
-- poll(auto_commit => true) would.  Returns the number of shards moved.
CREATE FUNCTION event_log.commit_polled(
    group_name text,
    stream regclass,
    member text DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'el_commit_polled'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

-- ---------------------------------------------------------------------
-- Issue 19, api2: filters by event type in read() and poll()
-- (docs/streams.md "Reading by type", docs/consumers.md "Subscribing to
-- some types", docs/design/type_filters.md)
-- ---------------------------------------------------------------------

-- A new trailing argument changes the signature, and an overload with the
-- old one would make every call that omits it ambiguous: so replace them.
-- The C functions read the argument only when it is declared, so 0.1 and
-- 0.2 catalogs keep working with this library until they are updated.
--
-- What a DBA granted or revoked on them stays: their ACLs are carried over
-- to the new functions (through settings local to this transaction).  A
-- view or function of the user's that calls them keeps them from being
-- dropped, and so the update from going through; docs/operations.md says
-- what to do.
SELECT pg_catalog.set_config('el_upgrade.read_acl',
    coalesce((SELECT proacl::pg_catalog.text FROM pg_catalog.pg_proc
              WHERE oid = 'event_log.read(pg_catalog.regclass, integer, bigint, integer)'::pg_catalog.regprocedure), ''),
    true);
SELECT pg_catalog.set_config('el_upgrade.poll_acl',
    coalesce((SELECT proacl::pg_catalog.text FROM pg_catalog.pg_proc
              WHERE oid = 'event_log.poll(text, pg_catalog.regclass, integer, text, interval, boolean)'::pg_catalog.regprocedure), ''),
    true);

DROP FUNCTION event_log.read(regclass, integer, bigint, integer);
CREATE FUNCTION event_log.read(
    stream regclass,
    shard integer,
    after_seq bigint DEFAULT 0,
    max_count integer DEFAULT 1000,
    types text[] DEFAULT NULL)
RETURNS SETOF event_log.event
AS 'MODULE_PATHNAME', 'el_read'
LANGUAGE C STABLE;

DROP FUNCTION event_log.poll(text, regclass, integer, text, interval, boolean);
CREATE FUNCTION event_log.poll(
    group_name text,
    stream regclass,
    max_count integer DEFAULT 100,
    member text DEFAULT NULL,
    wait interval DEFAULT NULL,
    auto_commit boolean DEFAULT false,
    types text[] DEFAULT NULL)
RETURNS SETOF event_log.event
AS 'MODULE_PATHNAME', 'el_poll'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

UPDATE pg_catalog.pg_proc
   SET proacl = NULLIF(pg_catalog.current_setting('el_upgrade.read_acl'), '')::pg_catalog.aclitem[]
 WHERE oid = 'event_log.read(pg_catalog.regclass, integer, bigint, integer, text[])'::pg_catalog.regprocedure;
UPDATE pg_catalog.pg_proc
   SET proacl = NULLIF(pg_catalog.current_setting('el_upgrade.poll_acl'), '')::pg_catalog.aclitem[]
 WHERE oid = 'event_log.poll(text, pg_catalog.regclass, integer, text, interval, boolean, text[])'::pg_catalog.regprocedure;
