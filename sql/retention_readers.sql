-- Readers below a low watermark (docs/retention.md, "Readers that look
-- events up by time, id or correlation"): read_by_time(), read_event() and
-- conversation() of a stream
-- that retention removed events from read the archive where it holds
-- every removed event, and otherwise raise EL040 instead of returning
-- what is left as if it were the whole answer.  And enforce_retention()
-- of every stream goes on after a stream that fails.
CREATE EXTENSION event_log;
SET timezone = 'UTC';
CREATE SCHEMA rr;
SELECT event_log.create_stream('rr.plain', 1);
SELECT event_log.create_stream('rr.kept', 1);
SELECT event_log.track_conversations('rr.plain') IS NOT NULL AS tracked;
SELECT event_log.track_conversations('rr.kept') IS NOT NULL AS tracked;

-- Events with chosen timestamps, loaded as a subscriber loads them:
-- recorded_at is not ordered by seq, and seq 2 (10:00:05) was recorded
-- after seq 3 (10:00:02).  Conversation conv-1 is seqs 1, 2 and 4.
SET session_replication_role = replica;
INSERT INTO rr.plain VALUES
  (0, 1, 'a', 1, 'A', '{"n": 1}', '{"correlation_id": "conv-1"}', '00000000-0000-4000-8000-000000000001', '2026-01-01 10:00:00'),
  (0, 2, 'a', 2, 'B', '{"n": 2}', '{"correlation_id": "conv-1"}', '00000000-0000-4000-8000-000000000002', '2026-01-01 10:00:05'),
  (0, 3, 'b', 1, 'C', '{"n": 3}', '{"correlation_id": "conv-2"}', '00000000-0000-4000-8000-000000000003', '2026-01-01 10:00:02'),
  (0, 4, 'b', 2, 'D', '{"n": 4}', '{"correlation_id": "conv-1"}', '00000000-0000-4000-8000-000000000004', '2026-01-01 10:00:09');
INSERT INTO rr.kept VALUES
  (0, 1, 'a', 1, 'A', '{"n": 1}', '{"correlation_id": "conv-1"}', '00000000-0000-4000-8000-000000000011', '2026-01-01 10:00:00'),
  (0, 2, 'a', 2, 'B', '{"n": 2}', '{"correlation_id": "conv-1"}', '00000000-0000-4000-8000-000000000012', '2026-01-01 10:00:05'),
  (0, 3, 'b', 1, 'C', '{"n": 3}', '{"correlation_id": "conv-2"}', '00000000-0000-4000-8000-000000000013', '2026-01-01 10:00:02'),
  (0, 4, 'b', 2, 'D', '{"n": 4}', '{"correlation_id": "conv-1"}', '00000000-0000-4000-8000-000000000014', '2026-01-01 10:00:09');
RESET session_replication_role;

-- Before any removal, all three answer from the log.
SELECT seq, recorded_at FROM event_log.read_by_time('rr.plain', '2026-01-01 10:00:03');
SELECT seq FROM event_log.read_event('rr.plain', '00000000-0000-4000-8000-000000000001');
SELECT stream, seq FROM event_log.conversation('conv-1');

-- A stream whose policy cannot be applied: a foreign key references it
-- (added after its policy was set).  enforce_retention() without a stream
-- applies every other policy, and reports the failing stream as a WARNING
-- and as one row with a NULL shard; the others' removals stay.
SELECT event_log.create_stream('rr.pinned', 1);
INSERT INTO rr.pinned (key, type, payload) SELECT 'p', 'P', '{}' FROM generate_series(1, 3);
SELECT event_log.set_retention('rr.pinned', max_events => 1, keep_unconsumed => false);
CREATE TABLE rr.refs (event_id uuid REFERENCES rr.pinned (event_id));
SELECT event_log.set_retention('rr.plain', max_events => 2, keep_unconsumed => false);
SELECT event_log.set_retention('rr.kept', max_events => 2, keep_unconsumed => false, archive => true);
SELECT * FROM event_log.enforce_retention() ORDER BY stream::text, shard;
SELECT stream, shard, low_seq, removed_events, removed_until
  FROM event_log.shard_watermarks ORDER BY stream::text, shard;
SELECT count(*) FROM rr.pinned;
-- Named, the failing stream is still an error, and nothing changes.
SELECT * FROM event_log.enforce_retention('rr.pinned');
\echo :LAST_ERROR_SQLSTATE
-- Where no stream could be applied, the call is refused as a whole rather
-- than reduced to one warning per stream.
BEGIN READ ONLY;
SELECT * FROM event_log.enforce_retention();
ROLLBACK;
-- Once the foreign key is gone, the stream's policy applies again.
DROP TABLE rr.refs;
SELECT * FROM event_log.enforce_retention() ORDER BY stream::text, shard;

-- read_by_time(): the removed seq 2 was recorded at 10:00:05, after seq 3,
-- the oldest event left: a range from 10:00:03 would miss it, and is
-- EL040 (the oldest event left could not have told).  From just after
-- 10:00:05 on, nothing removed can be in the range.
SELECT seq FROM event_log.read_by_time('rr.plain', '2026-01-01 10:00:03');
\echo :LAST_ERROR_SQLSTATE
SELECT seq FROM event_log.read_by_time('rr.plain', '2026-01-01 10:00:05');
\echo :LAST_ERROR_SQLSTATE
SELECT seq FROM event_log.read_by_time('rr.plain', '2026-01-01 10:00:05.000001');
SELECT seq FROM event_log.read_by_time('rr.plain', '-infinity', 'infinity', 0);
\echo :LAST_ERROR_SQLSTATE
-- With an archive that holds every removed event, the range is read from
-- the archive and the log together, in (recorded_at, shard, seq) order,
-- and pages resume across the two.
SELECT seq, recorded_at FROM event_log.read_by_time('rr.kept', '-infinity');
SELECT seq, recorded_at FROM event_log.read_by_time('rr.kept', '2026-01-01 10:00:01', '2026-01-01 10:00:06');
SELECT seq, recorded_at FROM event_log.read_by_time('rr.kept', '-infinity', max_count => 2);
SELECT seq, recorded_at FROM event_log.read_by_time('rr.kept', '2026-01-01 10:00:02', max_count => 2,
                                                    after_shard => 0, after_seq => 3);
SELECT seq FROM event_log.read_by_time('rr.kept', '2026-01-01 10:00:06');
SELECT count(*) FROM event_log.read_by_time('rr.kept', '-infinity', max_count => 0);

-- read_event(): an event still in the log is found as before.  One the log
-- no longer holds, in a stream whose removed events were not archived,
-- cannot be told from one that never existed: EL040, for both.
SELECT seq, type FROM event_log.read_event('rr.plain', '00000000-0000-4000-8000-000000000004');
SELECT seq FROM event_log.read_event('rr.plain', '00000000-0000-4000-8000-000000000001');
\echo :LAST_ERROR_SQLSTATE
SELECT seq FROM event_log.read_event('rr.plain', '00000000-0000-4000-8000-0000000000ff');
\echo :LAST_ERROR_SQLSTATE
-- With the archive holding every removed event: an archived event comes
-- from it, whole; an id in neither is no row.
SELECT shard, seq, key, version, type, payload, metadata, event_id, recorded_at
  FROM event_log.read_event('rr.kept', '00000000-0000-4000-8000-000000000012');
SELECT seq FROM event_log.read_event('rr.kept', '00000000-0000-4000-8000-000000000014');
SELECT count(*) FROM event_log.read_event('rr.kept', '00000000-0000-4000-8000-0000000000ff');

-- conversation(): from an archived stream, the removed events of the
-- conversation come from the archive, in order with the log's; a stream
-- whose removed events were not archived is EL040, whether it is named or
-- found among the tracked streams.
SELECT stream, shard, seq, type, recorded_at FROM event_log.conversation('conv-1', ARRAY['rr.kept'::regclass]);
SELECT stream, seq FROM event_log.conversation('conv-2', ARRAY['rr.kept'::regclass]);
SELECT stream, seq FROM event_log.conversation('conv-1');
\echo :LAST_ERROR_SQLSTATE
SELECT stream, seq FROM event_log.conversation('conv-1', ARRAY['rr.plain'::regclass]);
\echo :LAST_ERROR_SQLSTATE

-- Three shards, 300 events recorded in 30 transactions, 240 of them
-- archived: read_by_time() of everything, of a middle range, and page by
-- page (7 events a page) is exactly the archive and the log in
-- (recorded_at, shard, seq) order.
SELECT event_log.create_stream('rr.many', 3);
SELECT format('INSERT INTO rr.many (key, type, payload) SELECT ''k'' || (i %% 7), ''T'', jsonb_build_object(''i'', i + %s) FROM generate_series(1, 10) i', g * 10)
  FROM generate_series(0, 29) g \gexec
SELECT event_log.set_retention('rr.many', max_events => 20, keep_unconsumed => false, archive => true);
SELECT sum(removed) FROM event_log.enforce_retention('rr.many');
CREATE TEMP TABLE everything AS
SELECT e.*, row_number() OVER (ORDER BY recorded_at, shard, seq) AS n
  FROM (SELECT * FROM event_log.read_archive('rr.many', 0, 0, 1000)
        UNION ALL SELECT * FROM event_log.read_archive('rr.many', 1, 0, 1000)
        UNION ALL SELECT * FROM event_log.read_archive('rr.many', 2, 0, 1000)
        UNION ALL SELECT shard, seq, key, version, type, payload, metadata, event_id, recorded_at FROM rr.many) e;
SELECT count(*), count(DISTINCT event_id) FROM everything;
SELECT (SELECT array_agg(event_id ORDER BY n) FROM everything)
     = (SELECT array_agg(event_id) FROM event_log.read_by_time('rr.many', '-infinity', max_count => 1000)) AS whole;
SELECT (SELECT array_agg(event_id ORDER BY n) FROM everything
         WHERE recorded_at >= (SELECT recorded_at FROM everything WHERE n = 51)
           AND recorded_at < (SELECT recorded_at FROM everything WHERE n = 251))
     = (SELECT array_agg(event_id) FROM event_log.read_by_time('rr.many',
            (SELECT recorded_at FROM everything WHERE n = 51),
            (SELECT recorded_at FROM everything WHERE n = 251), 1000)) AS middle;
CREATE TEMP TABLE pages (n serial, event_id uuid);
DO $$
DECLARE
  r record;
  since timestamptz := '-infinity';
  s int;
  q bigint;
  got int;
BEGIN
  LOOP
    got := 0;
    FOR r IN SELECT * FROM event_log.read_by_time('rr.many', since, max_count => 7,
                                                  after_shard => s, after_seq => q) LOOP
      INSERT INTO pages (event_id) VALUES (r.event_id);
      since := r.recorded_at; s := r.shard; q := r.seq; got := got + 1;
    END LOOP;
    EXIT WHEN got < 7;
  END LOOP;
END $$;
SELECT (SELECT array_agg(event_id ORDER BY n) FROM everything)
     = (SELECT array_agg(event_id ORDER BY n) FROM pages) AS paged;
DROP TABLE everything, pages;

-- Privileges: a role that may not read the stream learns nothing about
-- its retention; one to whom row-level security applies reads the log as
-- before, but not the archive (it cannot apply the stream's policies).
CREATE ROLE rr_nobody;
CREATE ROLE rr_rls;
GRANT USAGE ON SCHEMA rr, event_log TO rr_nobody, rr_rls;
GRANT SELECT ON rr.kept TO rr_rls;
ALTER TABLE rr.kept ENABLE ROW LEVEL SECURITY;
CREATE POLICY only_b ON rr.kept TO rr_rls USING (key = 'b');
SET ROLE rr_nobody;
SELECT seq FROM event_log.read_by_time('rr.kept', '-infinity');
SELECT seq FROM event_log.read_event('rr.kept', '00000000-0000-4000-8000-000000000012');
SELECT seq FROM event_log.conversation('conv-1', ARRAY['rr.kept'::regclass]);
SET ROLE rr_rls;
SELECT seq FROM event_log.read_by_time('rr.kept', '2026-01-01 10:00:06');
SELECT seq FROM event_log.read_by_time('rr.kept', '-infinity');
\echo :LAST_ERROR_SQLSTATE
SELECT seq FROM event_log.read_event('rr.kept', '00000000-0000-4000-8000-000000000014');
SELECT seq FROM event_log.read_event('rr.kept', '00000000-0000-4000-8000-000000000012');
\echo :LAST_ERROR_SQLSTATE
SELECT seq FROM event_log.conversation('conv-1', ARRAY['rr.kept'::regclass]);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- An archive that no longer holds every removed event (a chunk dropped
-- after an export) is as good as none: EL040 again.
SELECT event_log.drop_archive('rr.kept', 0, 2);
SELECT seq FROM event_log.read_by_time('rr.kept', '-infinity');
\echo :LAST_ERROR_SQLSTATE
SELECT seq FROM event_log.read_event('rr.kept', '00000000-0000-4000-8000-000000000012');
\echo :LAST_ERROR_SQLSTATE
SELECT seq FROM event_log.conversation('conv-1', ARRAY['rr.kept'::regclass]);
\echo :LAST_ERROR_SQLSTATE

-- drop_stream() takes the streams' watermarks with them.
SELECT event_log.drop_stream('rr.plain');
SELECT event_log.drop_stream('rr.kept');
SELECT event_log.drop_stream('rr.pinned');
SELECT event_log.drop_stream('rr.many');
SELECT count(*) FROM event_log.shard_watermarks;
DROP SCHEMA rr CASCADE;
DROP OWNED BY rr_nobody, rr_rls;
DROP ROLE rr_nobody, rr_rls;
DROP EXTENSION event_log CASCADE;
