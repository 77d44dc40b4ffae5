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
-- on recorded_at alone is already there.
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
        AND i.indkey::pg_catalog.int2[] OPERATOR(pg_catalog.=) '{9}')
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
