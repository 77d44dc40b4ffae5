-- Builds of a stream whose oldest events are in the archive
-- (docs/retention.md, "Projections"): under on_build_error => 'park' a
-- handler's failure on an archived event parks it and its key, as on an
-- event of the log, and the build goes on; retry_dead_letters() applies
-- parked archived events from the archive.  Under the default policy the
-- build stops at the failing archived event.
CREATE EXTENSION event_log;
CREATE SCHEMA ab;
SELECT event_log.create_stream('ab.ops', 2);
-- 60 events of six keys; the payloads of events 7 and 20 (keys k1, k2)
-- and 58 (key k4) are poison to a handler that wants a number.
INSERT INTO ab.ops (key, type, payload)
SELECT 'k' || (i % 6), 'Op',
       CASE WHEN i IN (7, 20, 58) THEN '{"n": "p"}' ELSE jsonb_build_object('n', i) END
  FROM generate_series(1, 60) i;
SELECT event_log.set_retention('ab.ops', max_events => 10, keep_unconsumed => false, archive => true);
SELECT shard, removed, low_watermark FROM event_log.enforce_retention('ab.ops') ORDER BY shard;
-- Events 7 and 20 left the log for the archive; 58 is still in the log.
SELECT key, shard, seq, seq < event_log.low_watermark('ab.ops', shard) AS archived
  FROM (SELECT * FROM event_log.read_archive('ab.ops', 0, 0, 100)
        UNION ALL SELECT * FROM event_log.read_archive('ab.ops', 1, 0, 100)
        UNION ALL SELECT * FROM ab.ops) e
 WHERE payload->>'n' = 'p' ORDER BY key;

CREATE FUNCTION ab.handlers(amount text) RETURNS jsonb LANGUAGE sql AS $$
SELECT jsonb_build_object('Op', format($h$
    INSERT INTO %%s AS t VALUES (e.key, %s, e.seq::text)
    ON CONFLICT (key) DO UPDATE
    SET total = t.total + excluded.total, trail = t.trail || ',' || excluded.trail $h$, amount)) $$;
-- The reference: a handler that takes poison as 0 builds from all 60 events.
SELECT event_log.create_projection('ab.clean', 'ab.ops',
    columns => 'key text PRIMARY KEY, total bigint NOT NULL, trail text NOT NULL',
    handlers => replace(ab.handlers($$CASE WHEN e.payload->>'n' ~ '^[0-9]+$' THEN (e.payload->>'n')::int ELSE 0 END$$)::text, '%s', 'clean')::jsonb,
    mode => 'async');
SELECT key, total, trail FROM ab.clean ORDER BY key;

-- A strict handler under the default build policy: the build stops at the
-- first failing event, an archived one, and nothing is created.
SELECT event_log.create_projection('ab.stops', 'ab.ops',
    columns => 'key text PRIMARY KEY, total bigint NOT NULL, trail text NOT NULL',
    handlers => replace(ab.handlers($$(e.payload->>'n')::int$$)::text, '%s', 'stops')::jsonb,
    mode => 'async');
SELECT to_regclass('ab.stops') AS created;

-- The same under on_build_error => 'park': the build parks the archived
-- events 7 and 20 and the log's 58, each with its key's later events
-- (archived and in the log), and builds everything else.
SELECT event_log.create_projection('ab.parks', 'ab.ops',
    columns => 'key text PRIMARY KEY, total bigint NOT NULL, trail text NOT NULL',
    handlers => replace(ab.handlers($$(e.payload->>'n')::int$$)::text, '%s', 'parks')::jsonb,
    mode => 'async', on_error => 'park', on_build_error => 'park');
SELECT key, total, trail FROM ab.parks ORDER BY key;
SELECT key, count(*) AS parked,
       count(*) FILTER (WHERE seq < event_log.low_watermark(stream, shard)) AS archived,
       count(*) FILTER (WHERE blocked_by IS NULL) AS failed
  FROM event_log.dead_letters WHERE projection = 'ab.parks'::regclass
 GROUP BY key ORDER BY key;

-- Fixed, and retried: the parked events, archived ones read from the
-- archive, apply in order, and the read model is the reference's.
SELECT event_log.alter_projection('ab.parks',
    handlers => replace(ab.handlers($$CASE WHEN e.payload->>'n' ~ '^[0-9]+$' THEN (e.payload->>'n')::int ELSE 0 END$$)::text, '%s', 'parks')::jsonb);
SELECT event_log.retry_dead_letters('ab.parks');
SELECT count(*) AS still_parked FROM event_log.dead_letters WHERE projection = 'ab.parks'::regclass;
SELECT (SELECT array_agg(p ORDER BY key) FROM ab.parks p)::text
     = (SELECT array_agg(c ORDER BY key) FROM ab.clean c)::text AS same_as_reference;

-- A rebuild that parks again starts from nothing parked, and parks the
-- same events.
SELECT event_log.alter_projection('ab.parks',
    handlers => replace(ab.handlers($$(e.payload->>'n')::int$$)::text, '%s', 'parks')::jsonb);
SELECT event_log.rebuild_projection('ab.parks');
SELECT count(*) AS parked,
       count(*) FILTER (WHERE seq < event_log.low_watermark(stream, shard)) AS archived
  FROM event_log.dead_letters WHERE projection = 'ab.parks'::regclass;

SELECT event_log.drop_stream('ab.ops', cascade => true);
DROP SCHEMA ab CASCADE;
DROP EXTENSION event_log CASCADE;
