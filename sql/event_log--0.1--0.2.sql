/* event_log 0.1 -> 0.2 (issue 11: security and robustness) */
\echo Use "ALTER EXTENSION event_log UPDATE TO '0.2'" to load this file. \quit

-- Each change below says which part of docs/security.md it belongs to.

-- ---------------------------------------------------------------------
-- Projections (docs/security.md, "Projections")
-- ---------------------------------------------------------------------

-- What a state projection's handler stores: the reducer's result, never
-- NULL (a NULL would silently restart the key from `initial`).
CREATE FUNCTION event_log.reducer_result(state jsonb)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'el_reducer_result'
LANGUAGE C IMMUTABLE PARALLEL SAFE;

-- The error that stopped a shard may quote an event (a handler's "invalid
-- input syntax for type integer: ..." does), and the checkpoints and their
-- times tell how many events a shard has and when they came: only roles
-- that may read the stream's events see them.  Everybody sees which
-- projections exist and their shards.
REVOKE SELECT ON event_log.projection_offsets FROM PUBLIC;
GRANT SELECT (projection, shard) ON event_log.projection_offsets TO PUBLIC;

CREATE OR REPLACE VIEW event_log.projection_lag AS
SELECT p.projection,
       p.stream,
       o.shard,
       CASE WHEN r.ok THEN o.seq END AS applied_seq,
       s.log_end AS last_seq,
       CASE WHEN r.ok THEN s.log_end - o.seq END AS lag_events,
       CASE WHEN NOT r.ok THEN NULL
            WHEN s.log_end > o.seq THEN now() - s.next_recorded_at
            ELSE interval '0' END AS lag_time,
       CASE WHEN r.ok THEN o.applied_at END AS applied_at,
       CASE WHEN r.ok THEN o.error
            WHEN o.error IS NOT NULL
            THEN '(hidden: you may not read this stream''s events)'
       END AS error,
       CASE WHEN r.ok THEN o.error_seq END AS error_seq,
       o.error_at
  FROM event_log.projections p
  JOIN event_log.projection_offsets o ON o.projection = p.projection
  CROSS JOIN LATERAL (
        SELECT coalesce(pg_catalog.has_table_privilege(p.stream, 'SELECT')
                        AND pg_catalog.row_security_active(p.stream) IS NOT TRUE,
                        false) AS ok) r
  CROSS JOIN LATERAL event_log.shard_status(p.stream, o.shard, o.seq) s
 WHERE p.mode = 'async';

-- A projection by its view's oid, as event_log.projections lists it: the
-- owner of a stream may drop any projection fed by it, even one in a schema
-- it may not look names up in.
CREATE FUNCTION event_log.drop_projection(projection regclass)
RETURNS void
AS 'MODULE_PATHNAME', 'el_drop_projection_oid'
LANGUAGE C VOLATILE;
