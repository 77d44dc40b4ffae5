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

-- ---------------------------------------------------------------------
-- Consumer groups (docs/security.md, "Consumer groups")
-- ---------------------------------------------------------------------

-- A committed offset that has caught up is the shard's end, and its time
-- says when events came: like projection checkpoints, only for roles that
-- may read the stream.  Everybody still sees which groups, shards and
-- members exist.
REVOKE SELECT ON event_log.consumer_offsets FROM PUBLIC;
GRANT SELECT (group_id, shard, member) ON event_log.consumer_offsets TO PUBLIC;

CREATE OR REPLACE VIEW event_log.consumer_lag AS
SELECT g.group_name,
       g.stream,
       o.shard,
       CASE WHEN r.ok THEN o.committed_seq END AS committed_seq,
       s.log_end,
       s.log_end - o.committed_seq AS lag_events,
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
CROSS JOIN LATERAL event_log.shard_status(g.stream, o.shard, o.committed_seq) s;
