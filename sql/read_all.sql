-- event_log.read_all(): a whole stream, every shard, by one position token.
CREATE EXTENSION event_log;
SET timezone = 'UTC';
CREATE SCHEMA ra;
SELECT event_log.create_stream('ra.s', 3);
SELECT k, event_log.shard_for(k, 3) AS shard FROM unnest(ARRAY['k1', 'k2', 'k4']) k;

-- Events with chosen timestamps, loaded as a logical replication subscriber
-- would: in shard 0 (k1), seq 2 was recorded before seq 1 (a transaction
-- that started earlier committed later).  read_all() still returns each
-- shard in seq order.
SET session_replication_role = replica;
INSERT INTO ra.s VALUES
  (0, 1, 'k1', 1, 'A', '{}', NULL, '00000000-0000-4000-8000-000000000001', '2026-01-01 10:00:05'),
  (0, 2, 'k1', 2, 'B', '{}', NULL, '00000000-0000-4000-8000-000000000002', '2026-01-01 10:00:01'),
  (0, 3, 'k1', 3, 'C', '{}', NULL, '00000000-0000-4000-8000-000000000003', '2026-01-01 10:00:07'),
  (1, 1, 'k2', 1, 'A', '{}', NULL, '00000000-0000-4000-8000-000000000004', '2026-01-01 10:00:02'),
  (1, 2, 'k2', 2, 'B', '{}', NULL, '00000000-0000-4000-8000-000000000005', '2026-01-01 10:00:06'),
  (2, 1, 'k4', 1, 'A', '{}', NULL, '00000000-0000-4000-8000-000000000006', '2026-01-01 10:00:03');
RESET session_replication_role;

SELECT shard, seq, key, type, recorded_at, position FROM event_log.read_all('ra.s');

-- Pages of two: each call resumes from the last row's position; together
-- they are every event once.
SELECT shard, seq, position FROM event_log.read_all('ra.s', max_count => 2);
SELECT shard, seq, position FROM event_log.read_all('ra.s', '{0,1,0}', 2);
SELECT shard, seq, position FROM event_log.read_all('ra.s', '{1,1,1}', 2);
SELECT shard, seq, position FROM event_log.read_all('ra.s', '{2,2,1}', 2);
SELECT shard, seq, position FROM event_log.read_all('ra.s', '{3,2,1}', 2);

-- Any row's position resumes right after that row: read the stream one
-- event at a time from every position, and compare with one read.
WITH RECURSIVE walk(n, shard, seq, position) AS (
    SELECT 1, r.shard, r.seq, r.position FROM event_log.read_all('ra.s', NULL, 1) r
  UNION ALL
    SELECT w.n + 1, r.shard, r.seq, r.position
    FROM walk w, LATERAL event_log.read_all('ra.s', w.position, 1) r)
SELECT (SELECT array_agg(ROW(shard, seq)::text ORDER BY n) FROM walk)
     = (SELECT array_agg(ROW(shard, seq)::text) FROM event_log.read_all('ra.s')) AS same;

-- New events after a position are found, in whatever shard they land.
INSERT INTO ra.s (key, type, payload) VALUES ('k4', 'D', '{}'), ('k1', 'D', '{}');
SELECT shard, seq, key, type, position FROM event_log.read_all('ra.s', '{3,2,1}');

-- The empty token is the start too; a token past the end reads nothing;
-- max_count 0 reads nothing.
SELECT count(*) FROM event_log.read_all('ra.s', '{}');
SELECT count(*) FROM event_log.read_all('ra.s', '{100,100,100}');
SELECT count(*) FROM event_log.read_all('ra.s', max_count => 0);

-- A stream with one shard and no events.
SELECT event_log.create_stream('ra.empty');
SELECT count(*) FROM event_log.read_all('ra.empty');

-- Bad input: an error, and nothing read.
SELECT * FROM event_log.read_all(NULL);
SELECT * FROM event_log.read_all('ra.s', max_count => NULL);
SELECT * FROM event_log.read_all('ra.s', max_count => -1);
SELECT * FROM event_log.read_all('ra.s', '{1,2}');
SELECT * FROM event_log.read_all('ra.s', '{1,2,3,4}');
SELECT * FROM event_log.read_all('ra.s', '{1,NULL,3}');
SELECT * FROM event_log.read_all('ra.s', '{1,-2,3}');
SELECT * FROM event_log.read_all('ra.s', '{{1,2,3}}');
SELECT * FROM event_log.read_all('pg_class');
SELECT * FROM event_log.read_all(0);

-- Privileges and row-level security on every call; hostile operators first
-- on the caller's search_path do not run.
CREATE ROLE regress_ra_reader;
CREATE ROLE regress_ra_appender;
GRANT USAGE ON SCHEMA ra TO regress_ra_reader, regress_ra_appender;
GRANT SELECT ON ra.s TO regress_ra_reader;
GRANT INSERT ON ra.s TO regress_ra_appender;
CREATE SCHEMA ra_evil;
GRANT USAGE ON SCHEMA ra_evil TO PUBLIC;
CREATE FUNCTION ra_evil.gt8(a int8, b int8) RETURNS bool
LANGUAGE plpgsql AS $$ BEGIN RAISE WARNING 'hostile > ran as %', current_user; RETURN true; END $$;
CREATE OPERATOR ra_evil.> (LEFTARG = int8, RIGHTARG = int8, FUNCTION = ra_evil.gt8);
CREATE FUNCTION ra_evil.eq4(a int4, b int4) RETURNS bool
LANGUAGE plpgsql AS $$ BEGIN RAISE WARNING 'hostile = ran as %', current_user; RETURN true; END $$;
CREATE OPERATOR ra_evil.= (LEFTARG = int4, RIGHTARG = int4, FUNCTION = ra_evil.eq4);

SET ROLE regress_ra_appender;
SET search_path = ra_evil, pg_catalog;
SELECT * FROM event_log.read_all('ra.s');
SET ROLE regress_ra_reader;
SELECT shard, seq, key FROM event_log.read_all('ra.s', '{2,1,1}');
RESET ROLE;
RESET search_path;
ALTER TABLE ra.s ENABLE ROW LEVEL SECURITY;
CREATE POLICY only_k2 ON ra.s FOR SELECT TO regress_ra_reader USING (key = 'k2');
SET ROLE regress_ra_reader;
SELECT shard, seq, key, position FROM event_log.read_all('ra.s');
SET row_security = off;
SELECT shard, seq, key FROM event_log.read_all('ra.s');
RESET row_security;
RESET ROLE;
REVOKE SELECT ON ra.s FROM regress_ra_reader;
SET ROLE regress_ra_reader;
SELECT shard, seq, key FROM event_log.read_all('ra.s');
RESET ROLE;

SELECT event_log.drop_stream('ra.s');
SELECT event_log.drop_stream('ra.empty');
DROP SCHEMA ra, ra_evil CASCADE;
DROP ROLE regress_ra_reader, regress_ra_appender;
DROP EXTENSION event_log;
