-- Segmented streams (docs/retention.md, "Segmented streams"): a stream
-- stored in segments, each a prefix of every shard, so that retention
-- removes old events by dropping a table and the disk space comes back at
-- once.  Everything else reads and writes it as any stream.
CREATE EXTENSION event_log;
SET client_min_messages = warning;
CREATE SCHEMA seg;
CREATE ROLE seg_owner;
CREATE ROLE seg_appender;
CREATE ROLE seg_reader;
GRANT USAGE ON SCHEMA seg TO seg_owner, seg_appender, seg_reader;
GRANT CREATE ON SCHEMA seg TO seg_owner;

-- Bad sizes are refused and create nothing.
SET ROLE seg_owner;
SELECT event_log.create_stream('seg.bad', 1, segment_events => 0);
SELECT event_log.create_stream('seg.bad', 1, segment_events => -1);
SELECT count(*) FROM pg_class WHERE relname = 'bad';

-- A segmented stream: a tenth column, segment, routes each row to the
-- newest segment; segment 1 exists from the start.
SELECT event_log.create_stream('seg.log', shards => 2, segment_events => 8);
GRANT INSERT ON seg.log TO seg_appender;
GRANT SELECT ON seg.log TO seg_reader;
SELECT attnum, attname, format_type(atttypid, atttypmod), pg_get_expr(adbin, adrelid)
  FROM pg_attribute LEFT JOIN pg_attrdef ON adrelid = attrelid AND adnum = attnum
 WHERE attrelid = 'seg.log'::regclass AND attnum > 8 ORDER BY attnum;
SELECT stream, segment_events FROM event_log.segmented_streams;
SELECT stream, segment, segment_table::text ~ '^event_log\.segment_\d+_1$' AS named,
       pg_get_userbyid(c.relowner) AS owner
  FROM event_log.segments s JOIN pg_class c ON c.oid = s.segment_table;
RESET ROLE;

-- Appends of every kind: INSERT by a role with only INSERT, append(),
-- append_events().  Key a hashes to shard 1; b, c and d to shard 0.
SET ROLE seg_appender;
INSERT INTO seg.log (key, type, payload)
SELECT k, 'Tick', jsonb_build_object('n', i)
  FROM generate_series(1, 3) i, unnest('{a,b,c,d}'::text[]) k ORDER BY i, k;
INSERT INTO seg.log (key, type, payload) VALUES ('once', 'Tick', '{"n": 1}');
-- An append that rolls back leaves a dead row in segment 1: its key never
-- had an event, and retention must not retire it.
BEGIN;
INSERT INTO seg.log (key, type, payload) VALUES ('ghost', 'Tick', '{}');
ROLLBACK;
RESET ROLE;
SELECT shard, seq, version FROM event_log.append('seg.log', 'a', 'Tick', '{"n": 4}');
SELECT shard, seq, key, version FROM event_log.append_events('seg.log', 'b',
    ARRAY[event_log.new_event('Tick', '{"n": 4}')]);
SELECT shard, count(*), min(seq), max(seq), max(segment) FROM seg.log GROUP BY shard ORDER BY shard;

-- A new segment: appends go on in it, numbering goes on across segments.
SET ROLE seg_owner;
SELECT event_log.roll_segment('seg.log');
RESET ROLE;
INSERT INTO seg.log (key, type, payload) VALUES ('a', 'Tick', '{"n": 5}'), ('b', 'Tick', '{"n": 5}');
SELECT shard, seq, key, version, segment FROM seg.log WHERE segment = 2 ORDER BY shard, seq;
SELECT shard, seq, version FROM event_log.append('seg.log', 'c', 'Tick', '{"n": 4}');
-- An event_id already used in an older segment is idempotent there too.
SELECT event_id AS a1 FROM seg.log WHERE key = 'a' AND version = 1 \gset
SELECT shard, seq, version FROM event_log.append('seg.log', 'a', 'Tick', '{"n": 1}', event_id => :'a1');
SELECT count(*) FROM seg.log WHERE event_id = :'a1';

-- A value for segment is refused unless it names the newest segment.
INSERT INTO seg.log (key, type, payload, segment) VALUES ('a', 'Tick', '{}', 1);
INSERT INTO seg.log (key, type, payload, segment) VALUES ('a', 'Tick', '{}', 7);

-- Readers see one stream, in seq order across segments.
SET ROLE seg_reader;
SELECT shard, seq, key, version FROM event_log.read('seg.log', 0, 2, 10);
SELECT shard, seq, version FROM event_log.replay('seg.log', 'a');
SELECT count(*) FROM event_log.read_all('seg.log', NULL, 100);
RESET ROLE;

-- Consumer groups and projections read across segments.
SELECT shard, seq, key FROM event_log.poll('g', 'seg.log', max_count => 100) ORDER BY shard, seq;
SELECT event_log.create_projection('seg.counts', 'seg.log',
    columns  => 'key text PRIMARY KEY, n int',
    handlers => jsonb_build_object('Tick', $$
        INSERT INTO counts AS c VALUES (e.key, 1)
        ON CONFLICT (key) DO UPDATE SET n = c.n + 1 $$));
SELECT * FROM seg.counts ORDER BY key;
INSERT INTO seg.log (key, type, payload) VALUES ('d', 'Tick', '{"n": 4}');
SELECT * FROM seg.counts ORDER BY key;
SELECT event_log.rebuild_projection('seg.counts');
SELECT * FROM seg.counts ORDER BY key;
SELECT event_log.create_projection('seg.async_counts', 'seg.log', mode => 'async',
    columns  => 'key text PRIMARY KEY, n int',
    handlers => jsonb_build_object('Tick', $$
        INSERT INTO async_counts AS c VALUES (e.key, 1)
        ON CONFLICT (key) DO UPDATE SET n = c.n + 1 $$));
SELECT event_log.run_projections('seg.async_counts');
SELECT * FROM seg.async_counts ORDER BY key;

-- Conversations: the stream's owner may index a segmented stream by
-- correlation_id (built on every segment, and on new ones).
SET ROLE seg_owner;
SELECT event_log.track_conversations('seg.log') IS NOT NULL AS tracked;
RESET ROLE;
INSERT INTO seg.log (key, type, payload, metadata)
VALUES ('d', 'Tick', '{"n": 5}', '{"correlation_id": "c-1"}');
SELECT stream, key, version FROM event_log.conversation('c-1');

-- The CDC plugin names the stream, not the segment.
SELECT 'created' FROM pg_create_logical_replication_slot('seg_cdc', 'event_log');
INSERT INTO seg.log (key, type, payload) VALUES ('b', 'Tock', '{}');
SELECT data::jsonb->>'stream' AS stream, data::jsonb->>'seq' AS seq, data::jsonb->>'type' AS type
  FROM pg_logical_slot_get_changes('seg_cdc', NULL, NULL);
SELECT pg_drop_replication_slot('seg_cdc');

-- Immutability holds for the segments too, for their owner as well.
-- Segment names carry the stream's OID: errors that name one are shown
-- with it masked.
CREATE FUNCTION public.masked(cmd text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    msg text;
    detail text;
BEGIN
    EXECUTE cmd;
    RETURN 'done';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL;
    RETURN regexp_replace(SQLSTATE || ': ' || msg || ' / ' || detail,
                          'segment_\d+_', 'segment_N_', 'g');
END $$;
SELECT segment_table AS seg1 FROM event_log.segments WHERE segment = 1 \gset
SET ROLE seg_owner;
UPDATE seg.log SET payload = '{}';
DELETE FROM seg.log;
TRUNCATE seg.log;
UPDATE :seg1 SET payload = '{}';
DELETE FROM :seg1;
TRUNCATE :seg1;
ALTER TABLE seg.log DETACH PARTITION :seg1;
ALTER TABLE seg.log DETACH PARTITION :seg1 CONCURRENTLY;
SELECT public.masked('DROP TABLE ' || :'seg1');
SELECT public.masked('ALTER TABLE ' || :'seg1' || ' DISABLE TRIGGER event_log_immutable');
SELECT public.masked('ALTER TABLE ' || :'seg1' || ' DISABLE TRIGGER event_log_append');
SELECT public.masked('ALTER TABLE ' || :'seg1' || ' SET UNLOGGED');
SELECT public.masked('CREATE RULE r AS ON INSERT TO ' || :'seg1' || ' DO INSTEAD NOTHING');
CREATE TABLE seg.mine (LIKE seg.log);
ALTER TABLE seg.log ATTACH PARTITION seg.mine FOR VALUES IN (99);
CREATE TABLE seg.more PARTITION OF seg.log FOR VALUES IN (100);
-- Only the owner starts a segment.
RESET ROLE;
SET ROLE seg_reader;
SELECT event_log.roll_segment('seg.log');
SET ROLE seg_owner;
SELECT event_log.roll_segment('pg_class');
SELECT event_log.create_stream('seg.plain');
SELECT event_log.roll_segment('seg.plain');
RESET ROLE;
SELECT segment, segment_table = :'seg1'::regclass AS first FROM event_log.segments
 WHERE stream = 'seg.log'::regclass ORDER BY segment;
SELECT count(*) FROM seg.log;

-- Retention removes whole segments: only when every event of the segment
-- may go, oldest first, never the newest.  The watermarks, the archive and
-- the retired keys are as for any stream.
SELECT event_log.drop_projection('seg.counts');
SELECT event_log.drop_projection('seg.async_counts');
SELECT event_log.drop_group('g', 'seg.log');
SET ROLE seg_owner;
SELECT event_log.set_retention('seg.log', max_events => 2, keep_unconsumed => false, archive => true);
-- Nothing goes yet: segment 2 holds fewer than 2 events of shard 1, so
-- segment 1 still holds some of its 2 newest.
SELECT * FROM event_log.enforce_retention('seg.log');
SELECT segment FROM event_log.segments WHERE stream = 'seg.log'::regclass ORDER BY segment;
-- The summary of each sealed segment, written once from one read of it:
-- what a removal checks instead of the events.  The newest segment has
-- none.  Only the extension's owner reads it.
SELECT count(*) FROM event_log.segment_summaries;
RESET ROLE;
SELECT segment, shard, events, first_seq, last_seq,
       newest_recorded_at = (SELECT max(recorded_at) FROM seg.log l
                              WHERE l.segment = s.segment AND l.shard = s.shard) AS newest_is_max
  FROM event_log.segment_summaries s WHERE stream = 'seg.log'::regclass ORDER BY segment, shard;
INSERT INTO seg.log (key, type, payload)
SELECT k, 'Tick', jsonb_build_object('n', i)
  FROM generate_series(6, 8) i, unnest('{a,b}'::text[]) k ORDER BY i, k;
SET ROLE seg_owner;
SELECT * FROM event_log.enforce_retention('seg.log');
-- Segment 1 left the stream (detached); the next enforcement drops its
-- table, in a transaction that holds no lock on the stream, and does
-- nothing else.
SELECT segment, detached_at IS NOT NULL AS detached FROM event_log.segments
 WHERE stream = 'seg.log'::regclass ORDER BY segment;
SELECT count(*) FROM pg_inherits WHERE inhrelid = :'seg1'::regclass;
SELECT * FROM event_log.enforce_retention('seg.log');
SELECT segment FROM event_log.segments WHERE stream = 'seg.log'::regclass ORDER BY segment;
SELECT to_regclass(:'seg1') IS NULL AS dropped;
SELECT shard, low_watermark, removed_events FROM event_log.retention WHERE stream = 'seg.log'::regclass ORDER BY shard;
RESET ROLE;
SELECT stream, shard, first_seq, last_seq, events FROM event_log.archive ORDER BY shard;
SELECT shard, count(*), min(seq), max(seq) FROM seg.log GROUP BY shard ORDER BY shard;
SELECT key, last_version FROM event_log.retired_keys ORDER BY key;
-- Readers below the watermark are told; replay() reads the archive.
SET ROLE seg_reader;
SELECT shard, seq FROM event_log.read('seg.log', 0, 0, 1);
SELECT shard, seq, version FROM event_log.replay('seg.log', 'c');
RESET ROLE;
-- The append after a removed segment goes on from the watermark and the
-- versions of keys whose every event left.
SELECT shard, seq, version FROM event_log.append('seg.log', 'c', 'Tick', '{"n": 5}');
SELECT shard, seq, version FROM event_log.append('seg.log', 'once', 'Tick', '{"n": 2}');

-- A removal checks the policy against the summaries, not the events: a
-- summary that says a shard's latest event is recent holds its segment
-- back.  (The summaries are the extension's; only a superuser can change
-- them, as here, to show which figure counts.)
SET ROLE seg_owner;
SELECT event_log.create_stream('seg.aged', 2, segment_events => 100);
INSERT INTO seg.aged (key, type, payload)
SELECT 'k' || i, 'Tick', '{}' FROM generate_series(1, 6) i;
SELECT event_log.roll_segment('seg.aged');
INSERT INTO seg.aged (key, type, payload) VALUES ('k1', 'Tick', '{}');
-- Vacuumed: the removal reads segment 1's keys from its index alone
-- (seg.log's, not vacuumed and with a dead row, were checked row by row).
VACUUM seg.aged;
SELECT * FROM event_log.enforce_retention('seg.aged');
RESET ROLE;
SELECT segment, shard, events, first_seq, last_seq FROM event_log.segment_summaries
 WHERE stream = 'seg.aged'::regclass ORDER BY segment, shard;
UPDATE event_log.segment_summaries SET newest_recorded_at = 'infinity'
 WHERE stream = 'seg.aged'::regclass AND shard = 1;
SET ROLE seg_owner;
SELECT event_log.set_retention('seg.aged', max_age => interval '1 microsecond', keep_unconsumed => false);
SELECT * FROM event_log.enforce_retention('seg.aged');
RESET ROLE;
UPDATE event_log.segment_summaries s SET newest_recorded_at =
       (SELECT max(recorded_at) FROM seg.aged l WHERE l.segment = s.segment AND l.shard = s.shard)
 WHERE stream = 'seg.aged'::regclass AND shard = 1;
-- A summary that the segment's index contradicts (as one written while a
-- restore had not yet loaded the segment's rows would) is not trusted:
-- the removal reads the segment again, and shard 0's events are counted.
UPDATE event_log.segment_summaries
   SET events = 0, first_seq = NULL, last_seq = NULL, newest_recorded_at = NULL
 WHERE stream = 'seg.aged'::regclass AND shard = 0;
SET ROLE seg_owner;
SELECT * FROM event_log.enforce_retention('seg.aged');
SELECT segment, detached_at IS NOT NULL AS detached FROM event_log.segments
 WHERE stream = 'seg.aged'::regclass ORDER BY segment;
RESET ROLE;
-- Keys with an event left (k1) do not retire; the others do.
SELECT key, last_version FROM event_log.retired_keys WHERE stream = 'seg.aged'::regclass ORDER BY key;
SET ROLE seg_owner;
SELECT event_log.drop_stream('seg.aged');

-- A segment detached by a removal is dropped by the next enforcement even
-- if the policy was taken away in between (it would stay forever).
SELECT event_log.create_stream('seg.unset', 1, segment_events => 100);
INSERT INTO seg.unset (key, type, payload) SELECT 'k' || i, 'Tick', '{}' FROM generate_series(1, 4) i;
SELECT event_log.roll_segment('seg.unset');
INSERT INTO seg.unset (key, type, payload) SELECT 'k' || i, 'Tick', '{}' FROM generate_series(1, 4) i;
SELECT event_log.set_retention('seg.unset', max_events => 2, keep_unconsumed => false);
SELECT * FROM event_log.enforce_retention('seg.unset');
SELECT event_log.set_retention('seg.unset');
SELECT * FROM event_log.enforce_retention('seg.unset');
SELECT segment, detached_at IS NOT NULL AS detached FROM event_log.segments
 WHERE stream = 'seg.unset'::regclass ORDER BY segment;
SELECT count(*) FROM pg_class WHERE relname = 'segment_' || 'seg.unset'::regclass::oid || '_1';
SELECT event_log.drop_stream('seg.unset');
RESET ROLE;

-- drop_stream() takes the segments and their catalog rows with it.
SET ROLE seg_owner;
SELECT event_log.drop_stream('seg.log');
SELECT event_log.drop_stream('seg.plain');
RESET ROLE;
SELECT count(*) FROM event_log.segments;
SELECT count(*) FROM event_log.segmented_streams;
SELECT count(*) FROM event_log.segment_summaries;
SELECT count(*) FROM pg_class WHERE relname ~ '^segment_[0-9]+_[0-9]+$' AND relnamespace = 'event_log'::regnamespace;

-- Batches in one transaction take a shard's end from the row they numbered
-- last when they find it in the segment's heap (docs/design/offsets.md):
-- across a savepoint rolled back, a roll to a new segment in the middle of
-- the transaction, a repeated event_id and append(), shards and keys stay
-- dense and versions follow seq.
SELECT event_log.create_stream('seg.batch', shards => 2, segment_events => 1000);
BEGIN;
INSERT INTO seg.batch (key, type, payload)
SELECT 'k' || (i % 7), 'T', jsonb_build_object('n', i) FROM generate_series(1, 30) i;
SAVEPOINT s;
INSERT INTO seg.batch (key, type, payload)
SELECT 'k' || (i % 7), 'Lost', '{}' FROM generate_series(1, 5) i;
ROLLBACK TO SAVEPOINT s;
INSERT INTO seg.batch (key, type, payload, event_id)
VALUES ('k1', 'U', '{}', '00000000-0000-0000-0000-0000000000b1'),
       ('k1', 'U', '{}', '00000000-0000-0000-0000-0000000000b1'),
       ('k3', 'U', '{}', '00000000-0000-0000-0000-0000000000b3');
SELECT event_log.roll_segment('seg.batch');
INSERT INTO seg.batch (key, type, payload)
SELECT 'k' || (i % 5), 'V', jsonb_build_object('n', i) FROM generate_series(1, 12) i;
SELECT count(*) AS appended FROM generate_series(1, 4) i,
       event_log.append('seg.batch', 'k' || i, 'W', '{}');
INSERT INTO seg.batch (key, type, payload)
SELECT 'k' || (i % 3), 'X', '{}' FROM generate_series(1, 6) i;
COMMIT;
SELECT type, count(*) FROM seg.batch GROUP BY type ORDER BY type;
SELECT segment, count(*) FROM seg.batch GROUP BY segment ORDER BY segment;
SELECT shard, count(*) = max(seq) AS dense FROM seg.batch GROUP BY shard ORDER BY shard;
SELECT count(*) AS keys_not_dense FROM (SELECT key FROM seg.batch GROUP BY key
  HAVING count(*) <> max(version) OR min(version) <> 1) k;
SELECT count(*) AS versions_out_of_seq_order FROM (
  SELECT version < lag(version) OVER (PARTITION BY key ORDER BY seq) AS back FROM seg.batch) v
WHERE back;
SELECT event_log.drop_stream('seg.batch');

DROP SCHEMA seg CASCADE;
DROP FUNCTION public.masked(text);
DROP ROLE seg_owner, seg_appender, seg_reader;
DROP EXTENSION event_log CASCADE;
