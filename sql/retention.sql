-- Retention (docs/retention.md): a policy per stream removes whole shard
-- prefixes, each shard keeps a low watermark, and no reader ever jumps
-- over removed events without being told.
CREATE EXTENSION event_log;
CREATE SCHEMA ret;
CREATE ROLE ret_owner;
CREATE ROLE ret_reader;
CREATE ROLE ret_appender;
GRANT USAGE ON SCHEMA ret TO ret_owner, ret_reader, ret_appender;
GRANT CREATE ON SCHEMA ret TO ret_owner;
SET ROLE ret_owner;
SELECT event_log.create_stream('ret.log', shards => 2);
GRANT SELECT ON ret.log TO ret_reader;
GRANT INSERT ON ret.log TO ret_appender;
RESET ROLE;
-- Keys b, c and e hash to shard 0 (18 events), a to shard 1 (6 events),
-- all appended by one earlier transaction.
INSERT INTO ret.log (key, type, payload)
SELECT k, 'Tick', jsonb_build_object('n', i)
  FROM generate_series(1, 6) i, unnest('{a,b,c,e}'::text[]) k ORDER BY i, k;
SELECT shard, count(*), min(seq), max(seq), string_agg(DISTINCT key, ',') AS keys
  FROM ret.log GROUP BY shard ORDER BY shard;

-- Before a policy there are no watermarks, and every shard starts at 1.
SELECT count(*) FROM event_log.retention;
SELECT event_log.low_watermark('ret.log', 0), event_log.low_watermark('ret.log', 1);

-- Only the owner sets a policy.  Bad policies are refused and change nothing.
SET ROLE ret_reader;
SELECT event_log.set_retention('ret.log', max_events => 4);
SELECT * FROM event_log.enforce_retention('ret.log');
SET ROLE ret_owner;
SELECT event_log.set_retention('ret.log', max_events => 0);
SELECT event_log.set_retention('ret.log', max_events => -5);
SELECT event_log.set_retention('ret.log', max_age => '0');
SELECT event_log.set_retention('ret.log', max_age => '-1 day');
SELECT event_log.set_retention('ret.log', max_events => 4, keep_unconsumed => NULL);
SELECT event_log.set_retention(NULL, max_events => 4);
SELECT event_log.set_retention('pg_class', max_events => 4);
SELECT event_log.low_watermark('ret.log', 2);
SELECT event_log.low_watermark('ret.log', NULL);
SELECT count(*) FROM event_log.retention_policies;

-- A policy: keep the last 4 events of each shard.  A consumer group that
-- has committed 6 events in shard 0 and none in shard 1 holds shard 1
-- back (keep_unconsumed, the default).
SELECT event_log.commit_offset('billing', 'ret.log', 0, 6);
RESET ROLE;
GRANT SELECT ON ret.log TO ret_owner;
SET ROLE ret_owner;
SELECT event_log.set_retention('ret.log', max_events => 4);
SELECT stream, shard, low_watermark, removed_events, removed_at IS NULL AS never,
       max_age, max_events, keep_unconsumed FROM event_log.retention ORDER BY shard;
SELECT * FROM event_log.enforce_retention('ret.log') ORDER BY shard;
SELECT shard, low_watermark, removed_events FROM event_log.retention ORDER BY shard;
SELECT shard, count(*), min(seq), max(seq) FROM ret.log GROUP BY shard ORDER BY shard;

-- Without keep_unconsumed, shard 1 goes down to its last 4 events too.
SELECT event_log.set_retention('ret.log', max_events => 4, keep_unconsumed => false);
SELECT * FROM event_log.enforce_retention() ORDER BY shard;
SELECT shard, count(*), min(seq), max(seq) FROM ret.log GROUP BY shard ORDER BY shard;
-- Applying it again removes nothing more.
SELECT * FROM event_log.enforce_retention('ret.log') ORDER BY shard;
SELECT stream, shard, from_seq, to_seq, events, removed_by
  FROM event_log.retention_log ORDER BY shard, from_seq;

-- Reads below a watermark are an error naming it, never a silent jump.
\set VERBOSITY default
SET ROLE ret_reader;
SELECT seq FROM event_log.read('ret.log', 0);
SELECT seq FROM event_log.read('ret.log', 0, 7);
SELECT seq FROM event_log.read('ret.log', 0, 8);
SELECT seq FROM event_log.read('ret.log', 0, 7, types => '{Tick}');
SELECT seq FROM event_log.read('ret.log', 0, 7, types => '{Nothing}');
SELECT event_log.low_watermark('ret.log', 0), event_log.low_watermark('ret.log', 1);
SELECT count(*) FROM event_log.read_all('ret.log');
SELECT count(*) FROM event_log.read_all('ret.log', ARRAY[8, 8]::bigint[]);
-- replay() of a key whose first events were removed says so.
SELECT key, version FROM event_log.replay('ret.log', 'b');
SELECT key, version FROM event_log.replay('ret.log', 'b', 3);
SELECT key, version FROM event_log.replay('ret.log', 'b', 4);
SELECT key, version FROM event_log.replay('ret.log', 'b', 5);
\set VERBOSITY terse

-- Consumer groups.  billing committed 6 in shard 0 (below the watermark 15)
-- and nothing in shard 1: by default ('error') its poll fails and changes
-- nothing.  With 'earliest' it jumps to the watermarks, counting what it
-- skipped; a shard never committed starts at its watermark.
SET ROLE ret_owner;
SELECT count(*) FROM event_log.poll('billing', 'ret.log');
SELECT shard, committed_seq, skipped_events FROM event_log.consumer_lag
 WHERE group_name = 'billing' ORDER BY shard;
SELECT event_log.set_offset_reset('billing', 'ret.log', 'sideways');
SELECT event_log.set_offset_reset('billing', 'ret.log', NULL);
SELECT event_log.set_offset_reset('billing', 'ret.log', 'earliest');
SELECT seq, shard FROM event_log.poll('billing', 'ret.log', 3) ORDER BY shard, seq;
SELECT shard, committed_seq, skipped_events FROM event_log.consumer_lag
 WHERE group_name = 'billing' ORDER BY shard;
-- 'latest' jumps to the end of the shard; 'earliest' on a new group.
SELECT event_log.set_offset_reset('audit', 'ret.log', 'latest');
SELECT event_log.commit_offset('audit', 'ret.log', 0, 2);
SELECT count(*) FROM event_log.poll('audit', 'ret.log');
SELECT shard, committed_seq, skipped_events FROM event_log.consumer_lag
 WHERE group_name = 'audit' ORDER BY shard;
SELECT group_name, offset_reset FROM event_log.consumer_groups ORDER BY group_name;

-- Retention by age: events recorded before now() - max_age leave; an
-- event appended by this transaction is as old as now() and stays.
BEGIN;
SELECT event_log.append('ret.log', 'b', 'Tick', '{"n": 7}') IS NOT NULL AS appended;
SELECT event_log.set_retention('ret.log', max_age => '1 microsecond', keep_unconsumed => false);
SELECT * FROM event_log.enforce_retention('ret.log') ORDER BY shard;
SELECT shard, seq, key, version FROM ret.log ORDER BY shard, seq;
COMMIT;
SELECT shard, low_watermark, removed_events FROM event_log.retention ORDER BY shard;
-- The key's next event continues its versions: nothing is renumbered.
SELECT seq, version FROM event_log.append('ret.log', 'b', 'Tick', '{"n": 8}');

-- A later transaction removes everything: both shards are empty, and the
-- last version of each key that has no event left is kept.
SELECT shard, removed, low_watermark FROM event_log.enforce_retention('ret.log') ORDER BY shard;
SELECT count(*) FROM ret.log;
RESET ROLE;
SELECT key, last_version FROM event_log.retired_keys ORDER BY key;
-- A new session, with no position cached: seq and versions go on after
-- what was removed, on every append path.
\c -
SET ROLE ret_owner;
SELECT shard, seq, version FROM event_log.append('ret.log', 'b', 'Tick', '{"n": 9}');
SELECT shard, seq, version FROM event_log.append('ret.log', 'a', 'Tick', '{"n": 9}');
INSERT INTO ret.log (key, type, payload) VALUES ('c', 'Tick', '{}'), ('new', 'Tick', '{}')
RETURNING shard, seq, key, version;
SELECT event_log.append('ret.log', 'e', 'Tick', '{}', expected_version => 5);
SELECT seq, version FROM event_log.append('ret.log', 'e', 'Tick', '{}', expected_version => 6);

-- A projection cannot be built from a stream that lost events.
SELECT event_log.create_projection('ret.counts', 'ret.log',
    columns  => 'key text PRIMARY KEY, n int NOT NULL',
    handlers => '{"Tick": "INSERT INTO counts AS c VALUES (e.key, 1) ON CONFLICT (key) DO UPDATE SET n = c.n + 1"}');
SELECT to_regclass('ret.counts');

-- Retention is the only path that removes events; the rest stay refused.
DELETE FROM ret.log;
SET ROLE ret_appender;
INSERT INTO ret.log (key, type, payload) VALUES ('z', 'Tick', '{}');
SELECT * FROM event_log.enforce_retention('ret.log');
SELECT event_log.set_retention('ret.log', max_events => 1);
RESET ROLE;

-- Removing the policy keeps the watermarks: reads keep checking them.
SET ROLE ret_owner;
SELECT event_log.set_retention('ret.log');
SELECT count(*) FROM event_log.retention_policies;
SELECT * FROM event_log.enforce_retention('ret.log');
SELECT shard, low_watermark FROM event_log.retention ORDER BY shard;
SELECT count(*) FROM event_log.read('ret.log', 0);
RESET ROLE;

-- drop_stream() takes the policy, watermarks and report with it.
SELECT event_log.drop_stream('ret.log');
SELECT (SELECT count(*) FROM event_log.retention_policies) AS policies,
       (SELECT count(*) FROM event_log.shard_watermarks) AS watermarks,
       (SELECT count(*) FROM event_log.retention_log) AS log;

-- Attacks (issue 15): policies whose max_age no enforcement could apply
-- are refused when set, since one would stop the worker's run for every
-- stream; a key whose every event was removed does not replay as an empty
-- history; a parked event that retention removed is not retried silently.
SET ROLE ret_owner;
SELECT event_log.create_stream('ret.more', shards => 1);
INSERT INTO ret.more (key, type, payload)
SELECT 'k' || i % 3, 'Tick', '{}' FROM generate_series(1, 9) i;
SELECT event_log.set_retention('ret.more', max_age => '200000 years');
SELECT event_log.set_retention('ret.more', max_age => '1 month -29 days');
SELECT event_log.set_retention('ret.more', max_age => '-1 month 40 days');
SELECT count(*) FROM event_log.retention_policies WHERE stream = 'ret.more'::regclass;
SELECT event_log.set_retention('ret.more', max_age => '1000 years');
SELECT count(*) FROM event_log.enforce_retention('ret.more');
SELECT seq FROM event_log.poll('more', 'ret.more', 3);
SELECT event_log.nack('more', 'ret.more', 0, 2, 'bad');
SELECT event_log.commit_polled('more', 'ret.more');
SELECT event_log.set_retention('ret.more', max_events => 2, keep_unconsumed => false);
SELECT shard, removed, low_watermark FROM event_log.enforce_retention('ret.more');
\set VERBOSITY default
SELECT key, version FROM event_log.replay('ret.more', 'k1');
SELECT key, version FROM event_log.replay('ret.more', 'k1', 2);
SELECT key, version FROM event_log.replay('ret.more', 'k1', 3);
SELECT key, version FROM event_log.replay('ret.more', 'k2', 1);
SELECT event_log.retry_nacked('more', 'ret.more');
SELECT event_log.set_offset_reset('more', 'ret.more', 'earliest');
SELECT seq FROM event_log.poll('more', 'ret.more', 10);
\set VERBOSITY terse
SELECT shard, committed_seq, skipped_events, parked_events FROM event_log.consumer_lag
 WHERE group_name = 'more';
SELECT event_log.discard_nacked('more', 'ret.more', 'k2', 2);
SELECT seq FROM event_log.poll('more', 'ret.more', 10);
-- Removal goes past foreign keys, so a stream that one references gets no
-- policy, and enforcement refuses it if the key came after the policy.
CREATE TABLE ret.audit (shard int, seq bigint, FOREIGN KEY (shard, seq) REFERENCES ret.more);
INSERT INTO ret.audit VALUES (0, 8);
SELECT event_log.set_retention('ret.more', max_events => 1);
SELECT * FROM event_log.enforce_retention('ret.more');
SELECT count(*) FROM ret.more;
DROP TABLE ret.audit;
SELECT shard, removed, low_watermark FROM event_log.enforce_retention('ret.more');
-- Nor is a stream whose deletes a publication publishes: a subscriber
-- would apply the removal and lose the events silently.
RESET ROLE;
CREATE PUBLICATION ret_pub FOR TABLE ret.more;
SET ROLE ret_owner;
SELECT event_log.set_retention('ret.more', max_events => 1);
RESET ROLE;
ALTER PUBLICATION ret_pub SET (publish = 'insert');
SET ROLE ret_owner;
SELECT event_log.set_retention('ret.more', max_events => 1);
RESET ROLE;
ALTER PUBLICATION ret_pub SET (publish = 'insert, delete');
SET ROLE ret_owner;
SELECT * FROM event_log.enforce_retention('ret.more');
RESET ROLE;
DROP PUBLICATION ret_pub;
SET ROLE ret_owner;
SELECT shard, removed, low_watermark FROM event_log.enforce_retention('ret.more');
SELECT event_log.drop_stream('ret.more');

-- A key whose every event leaves is retired even when an aborted append
-- left an index entry of a later version behind (or a prepared one holds
-- it): its next event goes on from its last version, never from 1.
SELECT event_log.create_stream('ret.abort', shards => 1);
INSERT INTO ret.abort (key, type, payload) SELECT 'k', 'Tick', '{}' FROM generate_series(1, 3);
BEGIN;
INSERT INTO ret.abort (key, type, payload) VALUES ('k', 'Tick', '{}');
ROLLBACK;
SELECT event_log.set_retention('ret.abort', max_age => '1 microsecond', keep_unconsumed => false);
SELECT shard, removed, low_watermark FROM event_log.enforce_retention('ret.abort');
INSERT INTO ret.abort (key, type, payload) VALUES ('k', 'Tick', '{}') RETURNING seq, key, version;
SELECT event_log.drop_stream('ret.abort');
RESET ROLE;
DROP SCHEMA ret CASCADE;
DROP ROLE ret_owner, ret_reader, ret_appender;
DROP EXTENSION event_log CASCADE;
