-- Consumer groups: committed offsets per (group, stream, shard), polling,
-- resets, members sharing shards, and what bad input gets.
CREATE EXTENSION event_log;
SET client_min_messages = warning;
SELECT event_log.create_stream('orders', 2);
INSERT INTO orders (key, type, payload)
SELECT 'order-' || i, 'Placed', jsonb_build_object('n', i) FROM generate_series(1, 8) i;
SELECT shard, count(*), max(seq) FROM orders GROUP BY shard ORDER BY shard;

-- A group starts at the beginning of every shard.  poll() returns up to
-- max_count events after the committed offsets, shared fairly between the
-- shards and in seq order within each shard.  The first poll creates the group.
SELECT shard, seq, key FROM event_log.poll('billing', 'orders', max_count => 4);
SELECT event_log.committed_offset('billing', 'orders', 0) AS shard0,
       event_log.committed_offset('billing', 'orders', 1) AS shard1;

-- Nothing moves until the consumer commits: polling again returns the same
-- events (at least once delivery).
SELECT shard, seq, key FROM event_log.poll('billing', 'orders', max_count => 4);

-- Commit what was processed, per shard; the next poll continues after it.
SELECT event_log.commit_offset('billing', 'orders', 0, 2);
SELECT event_log.commit_offset('billing', 'orders', 1, 2);
SELECT event_log.commit_offset('billing', 'orders', 1, 2);   -- again: no-op
SELECT shard, seq, key FROM event_log.poll('billing', 'orders');
SELECT event_log.committed_offset('billing', 'orders', 0) AS shard0,
       event_log.committed_offset('billing', 'orders', 1) AS shard1;

-- A group that never committed, or does not exist, is at 0.
SELECT event_log.committed_offset('nobody', 'orders', 1);

-- Offsets cannot move backwards, nor beyond the end of the shard.
SELECT event_log.commit_offset('billing', 'orders', 0, 1);
SELECT event_log.commit_offset('billing', 'orders', 0, 99);
SELECT event_log.committed_offset('billing', 'orders', 0);

-- The lag view: committed offset, end of the log, lag in events and time,
-- and the member holding each shard (here the session's own identity).
SELECT group_name, stream, shard, committed_seq, log_end, lag_events,
       lag_time > interval '0' AS lagging, member ~ '^[0-9]+@' AS session_member,
       lease_expires_at > now() AS leased
FROM event_log.consumer_lag ORDER BY group_name, shard;
SELECT event_log.commit_offset('billing', 'orders', 0, 3),
       event_log.commit_offset('billing', 'orders', 1, 5);
SELECT shard, committed_seq, log_end, lag_events, lag_time = interval '0' AS caught_up
FROM event_log.consumer_lag WHERE group_name = 'billing' ORDER BY shard;

-- Caught up: poll returns nothing; with wait it waits that long at most.
SELECT count(*) FROM event_log.poll('billing', 'orders');
SELECT count(*) FROM event_log.poll('billing', 'orders', wait => '20 ms');

-- Resets move a group anywhere, also backwards: to the start, the end, a
-- seq (of every shard or one), or a point in time.  They return what moved.
SELECT * FROM event_log.reset_offsets('billing', 'orders', 'start');
SELECT * FROM event_log.reset_offsets('billing', 'orders', to_seq => 3, only_shard => 1);
SELECT * FROM event_log.reset_offsets('billing', 'orders', to_position => 'end');
-- to_time: every event recorded at or after that time is delivered again.
SELECT * FROM event_log.reset_offsets('billing', 'orders', to_time => now() - interval '1 hour');
SELECT * FROM event_log.reset_offsets('billing', 'orders', to_time => now() + interval '1 hour');
-- A new group can start at the end, before it ever polls.
SELECT * FROM event_log.reset_offsets('audit', 'orders', 'end');
INSERT INTO orders (key, type, payload) VALUES ('order-1', 'Shipped', '{}');
SELECT shard, seq, key, type FROM event_log.poll('audit', 'orders');

-- Members share a group's shards.  Member a polls first and gets both.
SELECT shard, seq, key FROM event_log.poll('mailer', 'orders', 2, member => 'a');
-- b joins: the shards are all taken, so b gets nothing yet ...
SELECT shard, seq, key FROM event_log.poll('mailer', 'orders', 2, member => 'b');
-- ... until a's next poll gives up the shard above its share ...
SELECT shard, seq, key FROM event_log.poll('mailer', 'orders', 2, member => 'a');
-- ... which b then takes.
SELECT shard, seq, key FROM event_log.poll('mailer', 'orders', 2, member => 'b');
SELECT shard, member FROM event_log.consumer_lag WHERE group_name = 'mailer' ORDER BY shard;
SELECT member, pid = pg_backend_pid() AS this_session
FROM event_log.consumer_members m JOIN event_log.consumer_groups g ON g.id = m.group_id
WHERE g.group_name = 'mailer' ORDER BY member;
-- Each member holds a session-level lock while its session lives.
SELECT count(*) FROM pg_locks
WHERE locktype = 'advisory' AND objsubid = 17741
  AND pid = pg_backend_pid() AND mode = 'AccessExclusiveLock';

-- Dropping a group removes its offsets and members.
SELECT event_log.drop_group('mailer', 'orders');
SELECT event_log.drop_group('mailer', 'orders');
SELECT count(*) FROM event_log.consumer_offsets o
WHERE NOT EXISTS (SELECT FROM event_log.consumer_groups g WHERE g.id = o.group_id);

-- The LISTEN channel of a stream.
SELECT event_log.channel('orders') = 'event_log_' || 'orders'::regclass::oid AS channel_is_oid;

-- Bad input: a clear error, and nothing changes.
SELECT * FROM event_log.poll(NULL, 'orders');
SELECT * FROM event_log.poll('billing', NULL);
SELECT * FROM event_log.poll('billing', 'orders', NULL);
SELECT * FROM event_log.poll('billing', 'orders', 0);
SELECT * FROM event_log.poll('billing', 'orders', 100001);
SELECT * FROM event_log.poll('', 'orders');
SELECT * FROM event_log.poll(repeat('g', 201), 'orders');
SELECT * FROM event_log.poll('billing', 'orders', member => '');
SELECT * FROM event_log.poll('billing', 'orders', wait => '-1 s');
SELECT * FROM event_log.poll('billing', 'orders', wait => '2 hours');
SELECT * FROM event_log.poll('billing', 'pg_class');
SELECT * FROM event_log.poll('billing', 0);
SELECT event_log.commit_offset('billing', 'orders', NULL, 1);
SELECT event_log.commit_offset('billing', 'orders', 0, NULL);
SELECT event_log.commit_offset('billing', 'orders', 2, 1);
SELECT event_log.commit_offset('billing', 'orders', -1, 1);
SELECT event_log.commit_offset('billing', 'orders', 0, -1);
SELECT event_log.committed_offset('billing', 'orders', 5);
SELECT * FROM event_log.reset_offsets('billing', 'orders');
SELECT * FROM event_log.reset_offsets('billing', 'orders', 'start', to_seq => 1);
SELECT * FROM event_log.reset_offsets('billing', 'orders', 'middle');
SELECT * FROM event_log.reset_offsets('billing', 'orders', to_seq => -1);
SELECT * FROM event_log.reset_offsets('billing', 'orders', to_seq => 99);
SELECT * FROM event_log.reset_offsets('billing', 'orders', to_time => 'infinity');
SELECT * FROM event_log.reset_offsets('billing', 'orders', 'start', only_shard => 7);
-- Waiting needs a new snapshot per look, which REPEATABLE READ never takes.
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT * FROM event_log.poll('billing', 'orders', wait => '1 s');
ROLLBACK;
-- None of that created a group or moved an offset.
SELECT g.group_name, o.shard, o.committed_seq
FROM event_log.consumer_groups g JOIN event_log.consumer_offsets o ON o.group_id = g.id
ORDER BY 1, 2;

-- Privileges: polling and committing need SELECT on the stream, and a group
-- is used only by the role that created it (and roles with its privileges).
CREATE ROLE regress_el_consumer;
CREATE ROLE regress_el_outsider;
GRANT SELECT ON orders TO regress_el_consumer;
SET ROLE regress_el_outsider;
SELECT * FROM event_log.poll('billing', 'orders');
SET ROLE regress_el_consumer;
SELECT * FROM event_log.poll('billing', 'orders');
SELECT event_log.commit_offset('billing', 'orders', 0, 1);
SELECT * FROM event_log.reset_offsets('billing', 'orders', 'start');
SELECT event_log.drop_group('billing', 'orders');
-- Its own group works.
SELECT count(*) FROM event_log.poll('reporting', 'orders');
SELECT event_log.commit_offset('reporting', 'orders', 1, 1);
-- The catalog is readable by all, writable by none.
UPDATE event_log.consumer_offsets SET committed_seq = 0;
RESET ROLE;
SELECT group_name, owner FROM event_log.consumer_groups ORDER BY 1;

-- An event a transaction saw and then rolled back proves nothing about the
-- shard: commit_offset() still refuses an offset beyond the shard's end.
BEGIN;
INSERT INTO orders (key, type, payload) VALUES ('order-9', 'Placed', '{}');
SELECT shard AS s9, seq AS seq9 FROM event_log.poll('audit', 'orders', 100)
WHERE key = 'order-9' \gset
ROLLBACK;
SELECT event_log.commit_offset('audit', 'orders', :s9, :seq9);
SELECT count(*) FROM orders WHERE key = 'order-9';
-- Committed, the same offset is accepted, and moving it again works.
INSERT INTO orders (key, type, payload) VALUES ('order-9', 'Placed', '{}');
SELECT count(*) FROM event_log.poll('audit', 'orders', 100);
SELECT event_log.commit_offset('audit', 'orders', :s9, :seq9 - 1);
SELECT event_log.commit_offset('audit', 'orders', :s9, :seq9);
SELECT event_log.committed_offset('audit', 'orders', :s9) = :seq9 AS committed;

-- auto_commit: each poll first commits what the previous poll of the session
-- returned (same group, stream and member), as Kafka's auto-commit does.
SELECT * FROM event_log.reset_offsets('auto', 'orders', 'start');
SELECT shard, seq FROM event_log.poll('auto', 'orders', 3, auto_commit => true);
SELECT shard, committed_seq FROM event_log.consumer_lag WHERE group_name = 'auto' ORDER BY shard;
SELECT shard, seq FROM event_log.poll('auto', 'orders', 3, auto_commit => true);
SELECT shard, committed_seq FROM event_log.consumer_lag WHERE group_name = 'auto' ORDER BY shard;
-- A poll without it commits nothing, but is remembered by the next one.
SELECT shard, seq FROM event_log.poll('auto', 'orders', 2);
SELECT shard, committed_seq FROM event_log.consumer_lag WHERE group_name = 'auto' ORDER BY shard;
SELECT count(*) FROM event_log.poll('auto', 'orders', 2, auto_commit => true);
SELECT shard, committed_seq FROM event_log.consumer_lag WHERE group_name = 'auto' ORDER BY shard;
-- An offset moved since (here by a reset) stays where it was moved to.
SELECT count(*) FROM event_log.reset_offsets('auto', 'orders', 'start');
SELECT count(*) FROM event_log.poll('auto', 'orders', 100, auto_commit => true);
SELECT shard, committed_seq FROM event_log.consumer_lag WHERE group_name = 'auto' ORDER BY shard;
-- Another group, or another member, in between: the previous poll is theirs,
-- so there is nothing to commit; the poll after that commits.
SELECT count(*) FROM event_log.poll('billing2', 'orders', 1);
SELECT count(*) FROM event_log.poll('auto', 'orders', 100, auto_commit => true);
SELECT shard, committed_seq FROM event_log.consumer_lag WHERE group_name = 'auto' ORDER BY shard;
SELECT count(*) FROM event_log.poll('auto', 'orders', 100, auto_commit => true);
SELECT shard, committed_seq FROM event_log.consumer_lag WHERE group_name = 'auto' ORDER BY shard;
SELECT count(*) FROM event_log.poll('auto2', 'orders', 100, member => 'm2');
SELECT count(*) FROM event_log.poll('auto2', 'orders', 100, member => 'm3');
SELECT count(*) FROM event_log.poll('auto2', 'orders', 100, member => 'm2', auto_commit => true);
SELECT shard, committed_seq, member FROM event_log.consumer_lag WHERE group_name = 'auto2' ORDER BY shard;
-- Events a transaction appended itself are never auto-committed: it could
-- still roll them back.
SELECT count(*) FROM event_log.poll('auto3', 'orders', 100, member => 'm4');
SELECT count(*) FROM event_log.poll('auto3', 'orders', 100, member => 'm4', auto_commit => true);
BEGIN;
INSERT INTO orders (key, type, payload) VALUES ('order-10', 'Placed', '{}');
SELECT key FROM event_log.poll('auto3', 'orders', 100, member => 'm4');
ROLLBACK;
SELECT count(*) FROM event_log.poll('auto3', 'orders', 100, member => 'm4', auto_commit => true);
SELECT shard, committed_seq, log_end FROM event_log.consumer_lag WHERE group_name = 'auto3' ORDER BY shard;
-- A poll in a statement that fails delivered nothing: what it read is not
-- committed by the next poll.
SELECT count(*) FROM event_log.reset_offsets('auto4', 'orders', 'start');
SELECT seq, 1 / (seq - seq) FROM event_log.poll('auto4', 'orders', 3, member => 'm5', auto_commit => true);
SELECT count(*) FROM event_log.poll('auto4', 'orders', 3, member => 'm5', auto_commit => true);
SELECT shard, committed_seq FROM event_log.consumer_lag WHERE group_name = 'auto4' ORDER BY shard;
SELECT count(*) FROM event_log.poll('auto', 'orders', 100, auto_commit => NULL);
-- An abort elsewhere (a failed statement, an exception block around one
-- event's processing) does not make the next poll forget the previous one.
SELECT count(*) FROM event_log.reset_offsets('auto5', 'orders', 'start');
SELECT count(*) FROM event_log.poll('auto5', 'orders', 4, member => 'm6', auto_commit => true);
SELECT 1 / 0;
DO $$
BEGIN
    PERFORM 1 / 0;
EXCEPTION WHEN division_by_zero THEN
    NULL;
END $$;
SELECT count(*) FROM event_log.poll('auto5', 'orders', 4, member => 'm6', auto_commit => true);
SELECT sum(committed_seq) AS committed FROM event_log.consumer_lag WHERE group_name = 'auto5';
-- A poll whose own subtransaction rolls back is forgotten, though.
BEGIN;
SAVEPOINT s;
SELECT count(*) FROM event_log.poll('auto5', 'orders', 4, member => 'm6', auto_commit => true);
ROLLBACK TO SAVEPOINT s;
SELECT count(*) FROM event_log.poll('auto5', 'orders', 4, member => 'm6', auto_commit => true);
COMMIT;
SELECT sum(committed_seq) AS committed FROM event_log.consumer_lag WHERE group_name = 'auto5';
-- Several auto-committing polls in one transaction commit as they go.
BEGIN;
SELECT count(*) FROM event_log.poll('auto5', 'orders', 2, member => 'm6', auto_commit => true);
SELECT count(*) FROM event_log.poll('auto5', 'orders', 2, member => 'm6', auto_commit => true);
SELECT count(*) FROM event_log.poll('auto5', 'orders', 2, member => 'm6', auto_commit => true);
COMMIT;
SELECT sum(committed_seq) AS committed FROM event_log.consumer_lag WHERE group_name = 'auto5';
-- A group whose creation rolled back is created again by the next poll.
BEGIN;
SELECT count(*) FROM event_log.poll('fresh', 'orders', 1);
ROLLBACK;
SELECT count(*) FROM event_log.poll('fresh', 'orders', 1);

-- The rows of read(), replay() and poll() outlive failures: two reads in one
-- query, a query that fails while it reads them, one that fails inside a
-- PL/pgSQL exception block, then reads that work.
SELECT count(*) FROM event_log.read('orders', 0) a, event_log.read('orders', 1) b;
SELECT seq, 10 / (seq - 2) FROM event_log.read('orders', 0);
DO $$
BEGIN
    PERFORM seq / (seq - 1) FROM event_log.read('orders', 1);
EXCEPTION WHEN division_by_zero THEN
    RAISE WARNING 'caught';
END $$;
SELECT shard, count(*), min(seq), max(seq) FROM event_log.read('orders', 0) GROUP BY shard
UNION ALL
SELECT shard, count(*), min(seq), max(seq) FROM event_log.read('orders', 1) GROUP BY shard;
BEGIN;
DECLARE c CURSOR FOR SELECT shard, seq FROM event_log.read('orders', 1);
FETCH 2 FROM c;
SELECT count(*) FROM event_log.read('orders', 0);
FETCH ALL FROM c;
COMMIT;

-- Row-level security: a role polls only the events its policies show, each
-- once, and its offsets move past the ones it cannot see.
SELECT event_log.create_stream('secret', 1);
INSERT INTO secret (key, type, payload)
SELECT 'k' || i, CASE WHEN i % 2 = 0 THEN 'Public' ELSE 'Private' END, '{}'
FROM generate_series(1, 10) i;
ALTER TABLE secret ENABLE ROW LEVEL SECURITY;
CREATE POLICY public_events ON secret FOR SELECT USING (type = 'Public');
CREATE ROLE regress_el_rls;
GRANT SELECT ON secret TO regress_el_rls;
SET ROLE regress_el_rls;
SELECT seq FROM event_log.poll('rls', 'secret', 4, auto_commit => true);
SELECT seq FROM event_log.poll('rls', 'secret', 4, auto_commit => true);
SELECT seq FROM event_log.poll('rls', 'secret', 4, auto_commit => true);
SELECT event_log.committed_offset('rls', 'secret', 0);
-- consumer_lag counts whole shards: a role that row-level security hides
-- events from gets NULLs, not counts of events it cannot see (whose
-- difference would give away the offset the view hides).
SELECT group_name, committed_seq, log_end, lag_events, lag_time FROM event_log.consumer_lag
 WHERE group_name = 'rls';
RESET ROLE;
SELECT group_name, committed_seq, log_end, lag_events FROM event_log.consumer_lag
 WHERE group_name = 'rls';
SELECT event_log.drop_stream('secret');
DROP ROLE regress_el_rls;

-- Dropping the stream drops its groups.
SELECT event_log.drop_stream('orders');
SELECT count(*) FROM event_log.consumer_groups;
SELECT count(*) AS offsets_left FROM event_log.consumer_offsets;
DROP ROLE regress_el_consumer, regress_el_outsider;
DROP EXTENSION event_log;
