-- commit_polled(): commit what this session's last poll() returned, for
-- consumers that auto-commit and stop cleanly (Kafka's commitSync()).
CREATE EXTENSION event_log;
SET client_min_messages = warning;
SELECT event_log.create_stream('cp', 2);
INSERT INTO cp (key, type, payload)
SELECT 'k' || i, 'T', jsonb_build_object('n', i) FROM generate_series(1, 8) i;
SELECT shard, max(seq) FROM cp GROUP BY shard ORDER BY shard;

-- The last batch of an auto-committing consumer is committed by the call.
SELECT shard, seq FROM event_log.poll('cp_g', 'cp', 3, auto_commit => true);
SELECT event_log.commit_polled('cp_g', 'cp') AS shards_moved;
SELECT shard, committed_seq FROM event_log.consumer_lag WHERE group_name = 'cp_g' ORDER BY shard;
-- Once: the poll is forgotten, a second call commits nothing.
SELECT event_log.commit_polled('cp_g', 'cp') AS shards_moved;
-- The next poll starts after what was committed.
SELECT shard, seq FROM event_log.poll('cp_g', 'cp', 2);
-- In a later transaction too (the poll above ran in its own).
SELECT event_log.commit_polled('cp_g', 'cp') AS shards_moved;
SELECT shard, committed_seq FROM event_log.consumer_lag WHERE group_name = 'cp_g' ORDER BY shard;

-- Only a poll of the same group, stream and member counts.
SELECT count(*) FROM event_log.poll('cp_m', 'cp', 2, member => 'm1');
SELECT event_log.commit_polled('cp_m', 'cp') AS other_member;
SELECT event_log.commit_polled('cp_g', 'cp', member => 'm1') AS other_group;
SELECT event_log.commit_polled('cp_m', 'cp', member => 'm1') AS same_member;
SELECT shard, committed_seq FROM event_log.consumer_lag WHERE group_name = 'cp_m' ORDER BY shard;

-- A poll whose statement failed is not remembered; nor is a poll rolled back.
SELECT count(*) FROM event_log.poll('cp_m', 'cp', 2, member => 'm1') WHERE seq / 0 = 1;
SELECT event_log.commit_polled('cp_m', 'cp', member => 'm1') AS after_error;
BEGIN;
SELECT count(*) FROM event_log.poll('cp_m', 'cp', 2, member => 'm1');
ROLLBACK;
SELECT event_log.commit_polled('cp_m', 'cp', member => 'm1') AS after_rollback;
SELECT shard, committed_seq FROM event_log.consumer_lag WHERE group_name = 'cp_m' ORDER BY shard;

-- An offset moved by someone else meanwhile stands.
SELECT shard, seq FROM event_log.poll('cp_m', 'cp', 4, member => 'm1');
SELECT event_log.commit_offset('cp_m', 'cp', 0, 2, member => 'm1');
SELECT event_log.commit_polled('cp_m', 'cp', member => 'm1') AS shards_moved;
SELECT shard, committed_seq FROM event_log.consumer_lag WHERE group_name = 'cp_m' ORDER BY shard;

-- Events the polling transaction appended itself are never committed.
BEGIN;
INSERT INTO cp (key, type, payload) VALUES ('k1', 'T', '{}');
SELECT count(*) FROM event_log.poll('cp_m', 'cp', 100, member => 'm1');
SELECT event_log.commit_polled('cp_m', 'cp', member => 'm1') AS own_appends;
ROLLBACK;
SELECT event_log.drop_group('cp_m', 'cp');

-- Bad input: a clear error, and nothing changes.
SELECT event_log.commit_polled(NULL, 'cp');
SELECT event_log.commit_polled('cp_g', NULL);
SELECT event_log.commit_polled('', 'cp');
SELECT event_log.commit_polled(repeat('x', 201), 'cp');
SELECT event_log.commit_polled('cp_g', 'cp', member => '');
SELECT event_log.commit_polled('no_such_group', 'cp');
SELECT event_log.commit_polled('cp_g', 'pg_class');
SELECT event_log.commit_polled('cp_g', 'no_such_table');
SELECT count(*) AS groups FROM event_log.consumer_groups;

-- Privileges: SELECT on the stream and the group's ownership, at every call.
CREATE ROLE regress_el_cp_reader;
CREATE ROLE regress_el_cp_other;
GRANT SELECT ON cp TO regress_el_cp_reader, regress_el_cp_other;
SET ROLE regress_el_cp_reader;
SELECT count(*) FROM event_log.poll('cp_r', 'cp', 2);
RESET ROLE;
REVOKE SELECT ON cp FROM regress_el_cp_reader;
SET ROLE regress_el_cp_reader;
SELECT event_log.commit_polled('cp_r', 'cp');
RESET ROLE;
GRANT SELECT ON cp TO regress_el_cp_reader;
-- Another role may not commit the reader's group.
SET ROLE regress_el_cp_other;
SELECT event_log.commit_polled('cp_r', 'cp');
RESET ROLE;
SELECT shard, committed_seq FROM event_log.consumer_lag WHERE group_name = 'cp_r' ORDER BY shard;
-- The reader, under a hostile search_path with its own = operators,
-- commits its own poll, and none of its operators runs.
CREATE SCHEMA cp_hostile AUTHORIZATION regress_el_cp_reader;
SET ROLE regress_el_cp_reader;
CREATE FUNCTION cp_hostile.eq(int, int) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN RAISE EXCEPTION 'hostile =(int, int) ran as %', current_user; END $$;
CREATE OPERATOR cp_hostile.= (FUNCTION = cp_hostile.eq, LEFTARG = int, RIGHTARG = int);
CREATE FUNCTION cp_hostile.eq(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN RAISE EXCEPTION 'hostile =(bigint, bigint) ran as %', current_user; END $$;
CREATE OPERATOR cp_hostile.= (FUNCTION = cp_hostile.eq, LEFTARG = bigint, RIGHTARG = bigint);
CREATE FUNCTION cp_hostile.eq(text, text) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN RAISE EXCEPTION 'hostile =(text, text) ran as %', current_user; END $$;
CREATE OPERATOR cp_hostile.= (FUNCTION = cp_hostile.eq, LEFTARG = text, RIGHTARG = text);
SET search_path = cp_hostile, pg_catalog, public;
SELECT count(*) FROM event_log.poll('cp_r', 'cp', 2);
SELECT event_log.commit_polled('cp_r', 'cp') AS shards_moved;
RESET search_path;
RESET ROLE;
SELECT shard, committed_seq FROM event_log.consumer_lag WHERE group_name = 'cp_r' ORDER BY shard;


-- A waiting poll filtered by type looks again at every wake-up (here every
-- third of a 100 ms lease); each look that found none of its types skipped
-- the shard's other events.  What it remembers is one entry per shard,
-- however many looks there were (it overran its arrays, and crashed the
-- server, before).
SELECT event_log.create_stream('cp_one', 1);
INSERT INTO cp_one (key, type, payload) VALUES ('k', 'B', '{}'), ('k', 'B', '{}');
SET event_log.lease_timeout = 100;
SELECT count(*) FROM event_log.poll('cp_w', 'cp_one', types => '{A}', wait => '400 ms');
SELECT event_log.commit_polled('cp_w', 'cp_one') AS shards_moved;
SELECT shard, committed_seq FROM event_log.consumer_lag WHERE group_name = 'cp_w';
RESET event_log.lease_timeout;
SELECT event_log.drop_stream('cp_one');

DROP SCHEMA cp_hostile CASCADE;
SELECT event_log.drop_stream('cp');
DROP ROLE regress_el_cp_reader, regress_el_cp_other;
DROP EXTENSION event_log;
