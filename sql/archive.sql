-- The archive (docs/retention.md, "The archive"): events retention removes
-- under a policy with archive => true are kept compressed, read back in
-- order without a gap, exported to a file with checksums and imported
-- back; personal fields stay encrypted in it.
CREATE EXTENSION event_log;
CREATE ROLE arc_owner;
CREATE ROLE arc_reader;
CREATE ROLE arc_rls;
ALTER ROLE arc_reader BYPASSRLS;
CREATE SCHEMA arc AUTHORIZATION arc_owner;
SET ROLE arc_owner;
SELECT event_log.create_stream('arc.log', 2);
GRANT USAGE ON SCHEMA arc TO arc_reader, arc_rls;
GRANT SELECT ON arc.log TO arc_reader, arc_rls;
ALTER TABLE arc.log ENABLE ROW LEVEL SECURITY;
CREATE POLICY everything ON arc.log TO arc_reader USING (true);
CREATE POLICY only_c1 ON arc.log TO arc_rls USING (key = 'c1');
SELECT event_log.declare_personal('arc.log', '{email}', 'customer');
SELECT event_log.grant_personal('arc.log', 'arc_owner');
RESET ROLE;
INSERT INTO arc.log (key, type, payload)
SELECT 'c' || i % 4, 'Seen', jsonb_build_object('customer', 'c' || i % 4, 'email', 'c' || i % 4 || '@example.org', 'n', i)
  FROM generate_series(1, 2400) i;
SELECT shard, count(*), max(seq) FROM arc.log GROUP BY shard ORDER BY shard;

-- A policy that archives what it removes.
SET ROLE arc_owner;
SELECT event_log.set_retention('arc.log', max_events => 200, keep_unconsumed => false, archive => NULL);
SELECT event_log.set_retention('arc.log', max_events => 200, keep_unconsumed => false, archive => true);
SELECT shard, low_watermark, archive FROM event_log.retention ORDER BY shard;
SELECT * FROM event_log.enforce_retention('arc.log') ORDER BY shard;
SELECT shard, first_seq, last_seq, events, stored_bytes > 0 AS stored
  FROM event_log.archive_chunks ORDER BY shard, first_seq;

-- Archived events read back in seq order, as read() returns them: the
-- owner may see personal fields, a reader sees them encrypted.
SELECT seq, key, version, payload->>'email' AS email, payload->>'n' AS n
  FROM event_log.read_archive('arc.log', 0, 0, 3);
SELECT count(*), min(seq), max(seq), count(DISTINCT event_id)
  FROM event_log.read_archive('arc.log', 0, 0, 100000);
-- Archive and log together are the whole shard, each event once.
SELECT (SELECT count(*) FROM event_log.read_archive('arc.log', 1, 0, 100000))
     + (SELECT count(*) FROM event_log.read('arc.log', 1, event_log.low_watermark('arc.log', 1) - 1, 100000))
     = (SELECT max(seq) FROM arc.log WHERE shard = 1) AS whole;
-- At the watermark the archive ends and read() goes on.
SELECT count(*) FROM event_log.read_archive('arc.log', 0, event_log.low_watermark('arc.log', 0) - 1);
-- Positions at the end of bigint's range read nothing (no overflow).
SELECT count(*) FROM event_log.read('arc.log', 0, 9223372036854775807);
SELECT count(*) FROM event_log.read_archive('arc.log', 0, 9223372036854775807);
SELECT count(*) FROM event_log.replay('arc.log', 'c1', 9223372036854775807);
SET ROLE arc_reader;
SELECT seq, payload->'email' ? '$personal' AS encrypted FROM event_log.read_archive('arc.log', 0, 0, 1);
-- Row-level security applies to arc_rls: it cannot read the archive
-- (arc_reader bypasses it).
SET ROLE arc_rls;
SELECT count(*) FROM event_log.read_archive('arc.log', 0);
-- Nor can a role without SELECT, or anyone read archived rows directly.
RESET ROLE;
CREATE ROLE arc_nobody;
SET ROLE arc_nobody;
SELECT count(*) FROM event_log.read_archive('arc.log', 0);
SELECT count(*) FROM event_log.archive;
SELECT count(*) > 0 FROM event_log.archive_chunks;
RESET ROLE;

-- Erasing a subject erases it from the archive too (its key is gone).
SET ROLE arc_owner;
SELECT event_log.erase_subject('arc.log', 'c2', 'asked to be forgotten');
SELECT DISTINCT payload->'email'->>'$personal' AS email
  FROM event_log.read_archive('arc.log', 0, 0, 100000) WHERE key = 'c2';
SELECT count(*) FROM event_log.archive WHERE data LIKE '%c2@example.org%';

-- replay() goes to the archive for the versions that left the log: a
-- key's whole history, in order; from a version on, only the rest.
SELECT count(*), min(version), max(version), bool_and(seq IS NOT NULL)
  FROM event_log.replay('arc.log', 'c1');
SELECT version FROM event_log.replay('arc.log', 'c1', after_version => 597);
SELECT count(*) FROM event_log.replay('arc.log', 'nobody');

-- Builds replay the archive, then the log: a read model of the whole
-- history, event by event or set-based after the archived part.
SELECT event_log.create_projection('arc.counts', 'arc.log',
    columns  => 'key text PRIMARY KEY, events int NOT NULL, total bigint NOT NULL',
    handlers => $$ {"Seen": "INSERT INTO counts AS c VALUES (e.key, 1, (e.payload->>'n')::bigint) ON CONFLICT (key) DO UPDATE SET events = c.events + 1, total = c.total + excluded.total"} $$);
SELECT key, events, total FROM arc.counts ORDER BY key;
SELECT event_log.rebuild_projection('arc.counts');
SELECT sum(events), sum(total) = 2400 * 2401 / 2 AS all_events FROM arc.counts;

-- A consumer group set to read the archive gets every event, archived
-- then in the log, in order per shard, with auto-commit; with types, only
-- those.
SELECT event_log.set_offset_reset('replayer', 'arc.log', 'archive');
CREATE TEMP TABLE polled AS
SELECT * FROM event_log.poll('replayer', 'arc.log', 900, auto_commit => true);
INSERT INTO polled SELECT * FROM event_log.poll('replayer', 'arc.log', 900, auto_commit => true);
INSERT INTO polled SELECT * FROM event_log.poll('replayer', 'arc.log', 900, auto_commit => true);
SELECT count(*) FROM event_log.poll('replayer', 'arc.log', 900, auto_commit => true);
SELECT count(*), count(DISTINCT (shard, seq)), min(seq), sum((payload->>'n')::int) = 2400 * 2401 / 2 AS all_events
  FROM polled;
SELECT shard, committed_seq, skipped_events FROM event_log.consumer_lag
 WHERE group_name = 'replayer' ORDER BY shard;
SELECT event_log.set_offset_reset('c1_only', 'arc.log', 'archive');
SELECT count(*), count(*) FILTER (WHERE key = 'c1') FROM event_log.poll('c1_only', 'arc.log', 5000, types => '{Seen}');
DROP TABLE polled;

-- Export: a header, each chunk's header and events, a trailer.
CREATE TEMP TABLE export AS
SELECT row_number() OVER () AS n, line FROM event_log.export_archive('arc.log') line;
SELECT count(*) FROM export;
SELECT line FROM export WHERE n = 1;
SELECT line::jsonb->'chunk'->'events' AS events FROM export WHERE line LIKE '{"chunk"%' ORDER BY n;
SELECT (line::jsonb->'end'->>'events')::int AS events, (line::jsonb->'end'->>'chunks')::int AS chunks
  FROM export WHERE line LIKE '{"end"%';
SELECT count(*) FROM event_log.export_archive('arc.log', 1);

-- Drop shard 1's archive, then import the file: only what is missing is
-- added, the rest skipped; reading it back gives the same events.
SELECT md5(string_agg(event_id::text, ',' ORDER BY seq)) AS before
  FROM event_log.read_archive('arc.log', 1, 0, 100000) \gset
SELECT event_log.drop_archive('arc.log', 1, 1000);
SELECT count(*) FROM event_log.read_archive('arc.log', 1, 0, 100000);
SELECT event_log.drop_archive('arc.log', 1, 1000000);
SELECT string_agg(line, E'\n' ORDER BY n) AS file FROM export \gset
-- Without its archive, a rebuild fails rather than build from part of
-- the history, and so does a replay; imported again, both succeed.
SELECT event_log.rebuild_projection('arc.counts');
SELECT count(*) FROM event_log.replay('arc.log', 'c1');
SELECT * FROM event_log.import_archive('arc.log', :'file');
SELECT event_log.rebuild_projection('arc.counts');
SELECT count(*) FROM event_log.replay('arc.log', 'c1');
SELECT md5(string_agg(event_id::text, ',' ORDER BY seq)) = :'before' AS same
  FROM event_log.read_archive('arc.log', 1, 0, 100000);
SELECT * FROM event_log.import_archive('arc.log', :'file');

-- Bad files change nothing.
SELECT * FROM event_log.import_archive('arc.log', replace(:'file', '"n": 7,', '"n": 8,'));
SELECT * FROM event_log.import_archive('arc.log', left(:'file', length(:'file') / 2));
SELECT * FROM event_log.import_archive('arc.log', regexp_replace(:'file', '\n\{"end".*$', ''));
SELECT * FROM event_log.import_archive('arc.log', 'not json');
SELECT * FROM event_log.import_archive('arc.log', '{"event_log_archive": 2, "shards": 2}');
SELECT * FROM event_log.import_archive('arc.log', replace(:'file', '"shards": 2', '"shards": 4'));
SELECT * FROM event_log.import_archive('arc.log', NULL);
SELECT count(*) AS chunks FROM event_log.archive_chunks;
-- Events still in the log cannot be imported, nor into another stream.
SELECT event_log.create_stream('arc.other', 2);
SELECT * FROM event_log.import_archive('arc.other', :'file');
RESET ROLE;
SET ROLE arc_reader;
SELECT * FROM event_log.import_archive('arc.log', :'file');
SELECT event_log.drop_archive('arc.log', 0, 10);
RESET ROLE;

-- drop_stream() takes the archive with it.
SELECT event_log.drop_stream('arc.log', cascade => true);
SELECT event_log.drop_stream('arc.other');
SELECT count(*) FROM event_log.archive;
DROP TABLE export;
DROP SCHEMA arc CASCADE;
DROP ROLE arc_owner, arc_reader, arc_rls, arc_nobody;
DROP EXTENSION event_log CASCADE;
