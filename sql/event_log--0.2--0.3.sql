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
-- ddl_command_end (docs/design/immutability.md, "3. table_rewrite: refuse
-- rewrites").
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
-- commit what the last poll returned (docs/consumers.md,
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
-- filters by event type in read() and poll()
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

-- ---------------------------------------------------------------------
-- Reads by time and across shards (docs/streams.md, "Reading by time",
-- "Reading a whole stream"; docs/design/reads.md)
-- ---------------------------------------------------------------------

-- Events with since <= recorded_at < until, in (recorded_at, shard, seq)
-- order; after_shard and after_seq resume after an earlier page's last event.
CREATE FUNCTION event_log.read_by_time(
    stream regclass,
    since timestamptz,
    until timestamptz DEFAULT 'infinity',
    max_count integer DEFAULT 1000,
    after_shard integer DEFAULT NULL,
    after_seq bigint DEFAULT NULL)
RETURNS SETOF event_log.event
AS 'MODULE_PATHNAME', 'el_read_by_time'
LANGUAGE C STABLE;

-- Streams created by 0.3 get a BRIN index on recorded_at from
-- create_stream(); give older streams the same one (pages_per_range as
-- EL_TIME_PAGES_PER_RANGE in src/event_log.h).  Skipped where a BRIN index
-- on recorded_at alone is already there: the library creates it for
-- streams created before the update, and on a large stream a DBA may
-- create it CONCURRENTLY beforehand (CREATE INDEX holds off appends while
-- it builds; docs/operations.md).
DO $$
DECLARE
  s regclass;
BEGIN
  FOR s IN
    SELECT r.stream FROM event_log.streams r
    WHERE NOT EXISTS (
      SELECT FROM pg_catalog.pg_index i
      JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) i.indexrelid
      JOIN pg_catalog.pg_am a ON a.oid OPERATOR(pg_catalog.=) c.relam
      WHERE i.indrelid OPERATOR(pg_catalog.=) r.stream
        AND a.amname OPERATOR(pg_catalog.=) 'brin'
        AND i.indnatts OPERATOR(pg_catalog.=) 1
        AND i.indkey[0] OPERATOR(pg_catalog.=) 9)
    ORDER BY r.stream
  LOOP
    EXECUTE pg_catalog.format(
      'CREATE INDEX ON %s USING brin (recorded_at) WITH (pages_per_range = 32, autosummarize = on)', s);
  END LOOP;
END $$;

-- A whole stream, every shard merged, resumable by one position token: one
-- seq per shard (element i for shard i - 1); each row's position resumes
-- right after it.
CREATE FUNCTION event_log.read_all(
    stream regclass,
    after bigint[] DEFAULT NULL,
    max_count integer DEFAULT 1000)
RETURNS TABLE (shard integer, seq bigint, key text, version bigint, type text,
               payload jsonb, metadata jsonb, event_id uuid,
               recorded_at timestamptz, "position" bigint[])
AS 'MODULE_PATHNAME', 'el_read_all'
LANGUAGE C STABLE;

-- ---------------------------------------------------------------------
-- Correlation and causation (docs/conversations.md)
-- ---------------------------------------------------------------------

-- Index a stream's events by metadata ->> 'correlation_id' (its owner only).
CREATE FUNCTION event_log.track_conversations(stream regclass)
RETURNS regclass
AS 'MODULE_PATHNAME', 'el_track_conversations'
LANGUAGE C VOLATILE;

-- One conversation, from the given streams or every tracked stream the
-- caller may read, in order.
CREATE FUNCTION event_log.conversation(
    correlation_id text,
    streams regclass[] DEFAULT NULL)
RETURNS TABLE (stream regclass, shard integer, seq bigint, key text, version bigint,
               type text, payload jsonb, metadata jsonb, event_id uuid,
               recorded_at timestamptz)
AS 'MODULE_PATHNAME', 'el_conversation'
LANGUAGE C STABLE;

-- ---------------------------------------------------------------------
-- drop_stream(..., cascade => true) (docs/streams.md,
-- "Dropping a stream")
-- ---------------------------------------------------------------------

-- The stream with its projections and consumer groups, in one transaction
-- (its owner only).  No default for cascade: drop_stream(stream regclass)
-- of 0.1 stays the one-argument form, never ambiguous; cascade => false is
-- the same as it (refused while projections are fed by the stream).
CREATE FUNCTION event_log.drop_stream(stream regclass, cascade boolean)
RETURNS bigint
AS 'MODULE_PATHNAME', 'el_drop_stream_cascade'
LANGUAGE C VOLATILE;

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

-- ---------------------------------------------------------------------
-- a consumer group's types, and consumer_lag counting
-- only those (docs/consumers.md "Subscribing to some types",
-- docs/design/type_filters.md "A group's types")
-- ---------------------------------------------------------------------

-- The types the group polls: NULL until a poll() names some, then set for
-- good (a poll with other types is refused).  Written only by the C code,
-- sorted and without duplicates.
ALTER TABLE event_log.consumer_groups
    ADD COLUMN types text[] CHECK (pg_catalog.cardinality(types) BETWEEN 1 AND 1000);

-- For consumer_lag: shard_status() with, in lag_events, the number of
-- events of the given types (every type when NULL) after after_seq, and in
-- next_recorded_at the recorded_at of the first of them.  NULLs when the
-- caller may not read the stream.  Not STRICT: types may be NULL.
CREATE FUNCTION event_log.shard_status(
    stream regclass,
    shard integer,
    after_seq bigint,
    types text[],
    OUT log_end bigint,
    OUT next_recorded_at timestamptz,
    OUT lag_events bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'el_shard_status'
LANGUAGE C STABLE
SET search_path = pg_catalog, pg_temp;

-- The columns and privilege rules of 0.2; lag_events and lag_time count
-- only the group's types when it has some.
CREATE OR REPLACE VIEW event_log.consumer_lag AS
SELECT g.group_name,
       g.stream,
       o.shard,
       CASE WHEN r.ok THEN o.committed_seq END AS committed_seq,
       s.log_end,
       s.lag_events,
       CASE WHEN s.log_end IS NULL THEN NULL
            WHEN s.next_recorded_at IS NULL THEN interval '0'
            ELSE greatest(now() - s.next_recorded_at, interval '0')
       END AS lag_time,
       CASE WHEN r.ok THEN o.committed_at END AS committed_at,
       o.member,
       m.expires_at AS lease_expires_at
FROM event_log.consumer_groups g
JOIN event_log.consumer_offsets o ON o.group_id = g.id
LEFT JOIN event_log.consumer_members m ON m.group_id = o.group_id AND m.member = o.member
CROSS JOIN LATERAL (
      SELECT coalesce(pg_catalog.has_table_privilege(g.stream, 'SELECT')
                      AND pg_catalog.row_security_active(g.stream) IS NOT TRUE,
                      false) AS ok) r
CROSS JOIN LATERAL event_log.shard_status(g.stream, o.shard, o.committed_seq, g.types) s;
