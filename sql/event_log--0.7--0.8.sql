/* event_log 0.7 -> 0.8 */
\echo Use "ALTER EXTENSION event_log UPDATE TO '0.8'" to load this file. \quit

-- Each capability that changes the catalog in 0.8 has its own section
-- below, in the order they landed.

-- ---------------------------------------------------------------------
-- Reading a stream needs USAGE on its schema, in the views too
-- (docs/security.md)
-- ---------------------------------------------------------------------

-- The views that quote events or show how far a reader got filtered on
-- the table's SELECT privilege only.  A role with SELECT on a stream in a
-- schema it has no USAGE on may not read the stream (its every read fails),
-- yet it saw the keys and error texts of the stream's parked events, and
-- consumer_lag and projection_lag failed as a whole for it.  Now such a
-- stream is one the role may not read, as for every reader function:
-- dead_letters and dead_letter_log leave its rows out, and the lag views
-- show its rows with the columns that need reading left NULL.  Same
-- columns, in the same order, as in 0.4 and 0.5.

-- Whether the current role may read a stream's events: SELECT on it,
-- USAGE on its schema, and no row-level security hiding rows from it (the
-- views count and quote whole shards).  NULL for a relation that is gone.
-- Plain SQL, run as the caller and inlined into the views.
CREATE FUNCTION event_log.may_read(stream regclass) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT pg_catalog.has_table_privilege(stream, 'SELECT')
   AND pg_catalog.has_schema_privilege(
         (SELECT c.relnamespace FROM pg_catalog.pg_class c
           WHERE c.oid OPERATOR(pg_catalog.=) stream::pg_catalog.oid), 'USAGE')
   AND pg_catalog.row_security_active(stream) IS NOT TRUE
$$;

CREATE OR REPLACE VIEW event_log.dead_letters WITH (security_barrier = true) AS
SELECT l.* FROM (
    SELECT d.projection, NULL::text AS group_name, d.stream, d.shard, d.seq, d.key, d.type,
           d.error, d.sqlstate, d.blocked_by, 'parked'::text AS state, d.attempts,
           d.first_failed_at, d.last_failed_at
      FROM event_log.projection_dead_letters d
    UNION ALL
    SELECT NULL::regclass, g.group_name, g.stream, c.shard, c.seq, c.key, c.type,
           c.error, NULL::text, NULL::bigint, c.state, c.attempts,
           c.first_failed_at, c.last_failed_at
      FROM event_log.consumer_dead_letters c
      JOIN event_log.consumer_groups g ON g.id OPERATOR(pg_catalog.=) c.group_id) l
 WHERE event_log.may_read(l.stream);

CREATE OR REPLACE VIEW event_log.dead_letter_log WITH (security_barrier = true) AS
SELECT a.action, a.done_by, a.done_at, a.projection, a.group_name, a.stream, a.shard,
       a.seq, a.key, a.type, a.error
  FROM event_log.dead_letter_actions a
 WHERE event_log.may_read(a.stream);

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
       o.error_at,
       CASE WHEN r.ok THEN
            (SELECT pg_catalog.count(*) FROM event_log.projection_dead_letters d
              WHERE d.projection OPERATOR(pg_catalog.=) p.projection
                AND d.shard OPERATOR(pg_catalog.=) o.shard)
       END AS parked_events
  FROM event_log.projections p
  JOIN event_log.projection_offsets o ON o.projection = p.projection
  CROSS JOIN LATERAL (
        SELECT coalesce(event_log.may_read(p.stream), false) AS ok) r
  CROSS JOIN LATERAL event_log.shard_status(p.stream, o.shard, o.seq) s
 WHERE p.mode = 'async';

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
       m.expires_at AS lease_expires_at,
       CASE WHEN r.ok THEN
            (SELECT pg_catalog.count(*) FROM event_log.consumer_dead_letters d
              WHERE d.group_id OPERATOR(pg_catalog.=) g.id
                AND d.shard OPERATOR(pg_catalog.=) o.shard)
       END AS parked_events,
       CASE WHEN r.ok THEN o.skipped_events END AS skipped_events
FROM event_log.consumer_groups g
JOIN event_log.consumer_offsets o ON o.group_id = g.id
LEFT JOIN event_log.consumer_members m ON m.group_id = o.group_id AND m.member = o.member
CROSS JOIN LATERAL (
      SELECT coalesce(event_log.may_read(g.stream), false) AS ok) r
CROSS JOIN LATERAL event_log.shard_status(g.stream, o.shard, o.committed_seq, g.types) s;
