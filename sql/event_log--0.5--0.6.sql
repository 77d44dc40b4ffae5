/* event_log 0.5 -> 0.6 */
\echo Use "ALTER EXTENSION event_log UPDATE TO '0.6'" to load this file. \quit

-- Each capability that changes the catalog in 0.6 has its own section
-- below, in the order they landed.

-- ---------------------------------------------------------------------
-- Readers below a low watermark (docs/retention.md, docs/design/retention.md)
-- ---------------------------------------------------------------------

-- The latest recorded_at of any event retention removed from the shard,
-- kept by every removal: read_by_time() refuses a range that could hold
-- a removed event instead of returning what is left of it.  recorded_at
-- is not ordered by seq, so the shard's oldest remaining event cannot
-- tell.  Removals made before 0.6 did not keep it: their shards get the
-- start of their last removal's transaction, after which only an event
-- whose transaction began while that removal ran could have been recorded
-- (and removed by a count policy): a close bound, not an exact one.
ALTER TABLE event_log.shard_watermarks ADD COLUMN removed_until timestamptz;
UPDATE event_log.shard_watermarks SET removed_until = removed_at
 WHERE removed_events > 0;

-- ---------------------------------------------------------------------
-- Segmented streams (docs/retention.md, docs/design/segments.md)
-- ---------------------------------------------------------------------

-- Streams stored in segments: the stream is a table partitioned by list
-- on its tenth column, segment, whose default is the current segment.
-- Each segment is a partition the extension creates in this schema and
-- owns; it holds a prefix of every shard, so retention removes whole
-- segments with DROP TABLE.  Only the extension's C code writes these.
CREATE TABLE event_log.segmented_streams (
    stream          regclass    PRIMARY KEY,
    segment_events  bigint      NOT NULL CHECK (segment_events > 0)
) WITH (user_catalog_table = true);

CREATE TABLE event_log.segments (
    stream      regclass    NOT NULL,
    segment     integer     NOT NULL CHECK (segment > 0),
    segment_table regclass  NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- set when retention detached the segment from its stream; the table
    -- is dropped by the next enforcement, in a transaction of its own
    detached_at timestamptz,
    PRIMARY KEY (stream, segment)
) WITH (user_catalog_table = true);

SELECT pg_catalog.pg_extension_config_dump('event_log.segmented_streams', '');
SELECT pg_catalog.pg_extension_config_dump('event_log.segments', '');
GRANT SELECT ON event_log.segmented_streams, event_log.segments TO PUBLIC;

DROP FUNCTION event_log.create_stream(text, integer);
CREATE FUNCTION event_log.create_stream(stream text, shards integer DEFAULT 1,
                                        segment_events bigint DEFAULT NULL)
RETURNS regclass
AS 'MODULE_PATHNAME', 'el_create_stream'
LANGUAGE C VOLATILE;

-- The default of a segmented stream's segment column: the newest segment.
CREATE FUNCTION event_log.current_segment(stream regclass)
RETURNS integer
AS 'MODULE_PATHNAME', 'el_current_segment'
LANGUAGE C VOLATILE STRICT;

-- Starts a new segment now, whatever the size of the current one.
CREATE FUNCTION event_log.roll_segment(stream regclass)
RETURNS integer
AS 'MODULE_PATHNAME', 'el_roll_segment'
LANGUAGE C VOLATILE STRICT;

CREATE VIEW event_log.stream_segments AS
SELECT s.stream, s.segment, s.segment_table, s.created_at, s.detached_at,
       pg_catalog.pg_total_relation_size(s.segment_table) AS bytes,
       c.reltuples::bigint AS estimated_events
  FROM event_log.segments s
  JOIN pg_catalog.pg_class c ON c.oid = s.segment_table;
GRANT SELECT ON event_log.stream_segments TO PUBLIC;

-- The DDL guard refuses ATTACH and DETACH PARTITION on streams before the
-- command runs (DETACH ... CONCURRENTLY commits before ddl_command_end).
DROP EVENT TRIGGER event_log_guard_ddl_start;
CREATE EVENT TRIGGER event_log_guard_ddl_start ON ddl_command_start
    WHEN TAG IN ('DROP INDEX', 'ALTER TABLE')
    EXECUTE FUNCTION event_log.guard_ddl_start();
ALTER EVENT TRIGGER event_log_guard_ddl_start ENABLE ALWAYS;
