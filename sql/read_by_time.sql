-- event_log.read_by_time(): events recorded in a time range.
CREATE EXTENSION event_log;
SET timezone = 'UTC';
CREATE SCHEMA rt;
SELECT event_log.create_stream('rt.s', 2);

-- create_stream() gives every stream a BRIN index on recorded_at.
SELECT indexrelid::regclass AS index, pg_get_indexdef(indexrelid) AS definition
FROM pg_index WHERE indrelid = 'rt.s'::regclass AND indexrelid::regclass::text LIKE '%recorded_at%';

-- recorded_at is the appending transaction's start time, so within a shard
-- it is not ordered by seq: a transaction that started earlier can commit
-- (and so number its events) later.  Events with chosen timestamps are
-- loaded the way a logical replication subscriber loads them, as a
-- superuser with session_replication_role = replica, to make that case:
-- in shard 0 (key k2), seq 3 was recorded before seq 2.
SELECT event_log.shard_for('k2', 2) AS k2, event_log.shard_for('k3', 2) AS k3;
SET session_replication_role = replica;
INSERT INTO rt.s VALUES
  (0, 1, 'k2', 1, 'A', '{"n": 1}', NULL, '00000000-0000-4000-8000-000000000001', '2026-01-01 10:00:00'),
  (0, 2, 'k2', 2, 'B', '{"n": 2}', NULL, '00000000-0000-4000-8000-000000000002', '2026-01-01 10:00:05'),
  (0, 3, 'k2', 3, 'C', '{"n": 3}', NULL, '00000000-0000-4000-8000-000000000003', '2026-01-01 10:00:02'),
  (1, 1, 'k3', 1, 'A', '{"n": 4}', NULL, '00000000-0000-4000-8000-000000000004', '2026-01-01 10:00:02'),
  (1, 2, 'k3', 2, 'B', '{"n": 5}', NULL, '00000000-0000-4000-8000-000000000005', '2026-01-01 10:00:09');
RESET session_replication_role;

-- The whole range, in (recorded_at, shard, seq) order.
SELECT recorded_at, shard, seq, key, type
FROM event_log.read_by_time('rt.s', '-infinity');

-- A range is since <= recorded_at < until: 10:00:02 is in, 10:00:05 out.
-- Shard 0's seq 3 is found although seq 2, before it, is not in the range.
SELECT recorded_at, shard, seq, type
FROM event_log.read_by_time('rt.s', '2026-01-01 10:00:02', '2026-01-01 10:00:05');

-- Pages: max_count events, then since => the last event's recorded_at and
-- after_shard, after_seq => its position; the pages add up to the range.
SELECT recorded_at, shard, seq
FROM event_log.read_by_time('rt.s', '2026-01-01 10:00:00', max_count => 2);
SELECT recorded_at, shard, seq
FROM event_log.read_by_time('rt.s', '2026-01-01 10:00:02', max_count => 2,
                            after_shard => 0, after_seq => 3);
SELECT recorded_at, shard, seq
FROM event_log.read_by_time('rt.s', '2026-01-01 10:00:05', max_count => 2,
                            after_shard => 0, after_seq => 2);
SELECT recorded_at, shard, seq
FROM event_log.read_by_time('rt.s', '2026-01-01 10:00:09', max_count => 2,
                            after_shard => 1, after_seq => 2);

-- An empty range, max_count 0, a range after every event.
SELECT count(*) FROM event_log.read_by_time('rt.s', '2026-01-01 10:00:03', '2026-01-01 10:00:03');
SELECT count(*) FROM event_log.read_by_time('rt.s', '-infinity', max_count => 0);
SELECT count(*) FROM event_log.read_by_time('rt.s', '2027-01-01');

-- Events appended the usual way are found by their transaction's start time.
BEGIN;
INSERT INTO rt.s (key, type, payload) VALUES ('k1', 'Now', '{}');
SELECT key, type FROM event_log.read_by_time('rt.s', now(), now() + interval '1 microsecond');
COMMIT;

-- The index is used: no sequential scan of the stream.
SET enable_seqscan = off;
EXPLAIN (COSTS OFF)
SELECT shard, seq FROM rt.s
WHERE recorded_at >= '2026-01-01 10:00:00' AND recorded_at < '2026-01-01 10:00:01'
ORDER BY recorded_at, shard, seq LIMIT 1000;
RESET enable_seqscan;

-- Bad input: an error, and nothing read.
SELECT * FROM event_log.read_by_time(NULL, now());
SELECT * FROM event_log.read_by_time('rt.s', NULL);
SELECT * FROM event_log.read_by_time('rt.s', now(), NULL);
SELECT * FROM event_log.read_by_time('rt.s', now(), max_count => NULL);
SELECT * FROM event_log.read_by_time('rt.s', '2026-01-02', '2026-01-01');
SELECT * FROM event_log.read_by_time('rt.s', now(), max_count => -1);
SELECT * FROM event_log.read_by_time('rt.s', now(), after_shard => 0);
SELECT * FROM event_log.read_by_time('rt.s', now(), after_seq => 1);
SELECT * FROM event_log.read_by_time('rt.s', now(), after_shard => 2, after_seq => 1);
SELECT * FROM event_log.read_by_time('rt.s', now(), after_shard => 0, after_seq => -1);
SELECT * FROM event_log.read_by_time('pg_class', now());
SELECT * FROM event_log.read_by_time(0, now());

-- Privileges and row-level security apply on every call; an appender with
-- INSERT only reads nothing.  Each role puts a schema of its own first on
-- its search_path with operators that would run as whoever resolves them.
CREATE ROLE regress_rt_reader;
CREATE ROLE regress_rt_appender;
GRANT USAGE ON SCHEMA rt TO regress_rt_reader, regress_rt_appender;
GRANT SELECT ON rt.s TO regress_rt_reader;
GRANT INSERT ON rt.s TO regress_rt_appender;
CREATE SCHEMA rt_evil;
GRANT USAGE ON SCHEMA rt_evil TO PUBLIC;
CREATE FUNCTION rt_evil.ge(a timestamptz, b timestamptz) RETURNS bool
LANGUAGE plpgsql AS $$ BEGIN RAISE WARNING 'hostile >= ran as %', current_user; RETURN true; END $$;
CREATE OPERATOR rt_evil.>= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = rt_evil.ge);
CREATE OPERATOR rt_evil.< (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = rt_evil.ge);
CREATE FUNCTION rt_evil.gt(a int4, b int4) RETURNS bool
LANGUAGE plpgsql AS $$ BEGIN RAISE WARNING 'hostile > ran as %', current_user; RETURN true; END $$;
CREATE OPERATOR rt_evil.> (LEFTARG = int4, RIGHTARG = int4, FUNCTION = rt_evil.gt);

SET ROLE regress_rt_appender;
SET search_path = rt_evil, pg_catalog;
SELECT * FROM event_log.read_by_time('rt.s', '-infinity');
SET ROLE regress_rt_reader;
SELECT shard, seq FROM event_log.read_by_time('rt.s', '2026-01-01 10:00:00', '2026-01-01 10:00:03');
RESET ROLE;
RESET search_path;
ALTER TABLE rt.s ENABLE ROW LEVEL SECURITY;
CREATE POLICY only_k3 ON rt.s FOR SELECT TO regress_rt_reader USING (key = 'k3');
SET ROLE regress_rt_reader;
SELECT shard, seq, key FROM event_log.read_by_time('rt.s', '-infinity');
SET row_security = off;
SELECT shard, seq, key FROM event_log.read_by_time('rt.s', '-infinity');
RESET row_security;
RESET ROLE;
REVOKE SELECT ON rt.s FROM regress_rt_reader;
SET ROLE regress_rt_reader;
SELECT shard, seq, key FROM event_log.read_by_time('rt.s', '-infinity');
RESET ROLE;

SELECT event_log.drop_stream('rt.s');
DROP SCHEMA rt, rt_evil CASCADE;
DROP ROLE regress_rt_reader, regress_rt_appender;
DROP EXTENSION event_log;
