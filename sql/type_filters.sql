-- Filters by event type: read(types => ...) and poll(types => ...), with
-- the names and semantics of the CDC plugin's "types" option.
CREATE EXTENSION event_log;
SET client_min_messages = warning;
SELECT event_log.create_stream('tf', 2);
INSERT INTO tf (key, type, payload)
SELECT 'k' || (i % 5), (ARRAY['Added', 'Removed', 'CheckedOut'])[1 + i % 3], jsonb_build_object('n', i)
FROM generate_series(1, 30) i;
SELECT shard, type, count(*) FROM tf GROUP BY 1, 2 ORDER BY 1, 2;

-- read(): only the types asked for, in seq order, max_count and after_seq as before.
SELECT seq, type FROM event_log.read('tf', 0, types => ARRAY['CheckedOut']);
SELECT seq, type FROM event_log.read('tf', 0, 3, 2, ARRAY['CheckedOut']);
SELECT seq, type FROM event_log.read('tf', 0, max_count => 5, types => ARRAY['Removed', 'CheckedOut', 'Removed']);
-- The same events as read() without a filter, minus the other types.
SELECT (SELECT array_agg(seq ORDER BY seq) FROM event_log.read('tf', 1, types => ARRAY['Added', 'Removed']))
     = (SELECT array_agg(seq ORDER BY seq) FROM event_log.read('tf', 1) WHERE type <> 'CheckedOut') AS same;
-- Types match exactly, as in CDC: case and blanks count.
SELECT count(*) FROM event_log.read('tf', 0, types => ARRAY['added', ' Added', 'Nothing']);
-- NULL (the default) is every type.
SELECT count(*) FROM event_log.read('tf', 0, types => NULL);

-- With an index on (shard, type, seq), a selective filter reads only what it
-- returns (docs/design/type_filters.md); results are the same.
CREATE INDEX tf_type ON tf (shard, type, seq);
SELECT seq, type FROM event_log.read('tf', 0, 3, 2, ARRAY['CheckedOut']);
SELECT seq, type FROM event_log.read('tf', 0, max_count => 5, types => ARRAY['Removed', 'CheckedOut']);

-- Bad input: a clear error.
SELECT * FROM event_log.read('tf', 0, types => ARRAY[]::text[]);
SELECT * FROM event_log.read('tf', 0, types => ARRAY['Added', NULL]);
SELECT * FROM event_log.read('tf', 0, types => ARRAY[['Added'], ['Removed']]);
SELECT * FROM event_log.read('tf', 0, types => (SELECT array_agg('T' || i) FROM generate_series(1, 1001) i));
SELECT * FROM event_log.read('tf', 2, types => ARRAY['Added']);
SELECT * FROM event_log.read('tf', 0, -1, types => ARRAY['Added']);
SELECT * FROM event_log.poll('g', 'tf', types => ARRAY[]::text[]);
SELECT * FROM event_log.poll('g', 'tf', types => ARRAY[NULL]::text[]);
SELECT count(*) AS groups FROM event_log.consumer_groups;

-- poll(): a group subscribed to some types gets only those, and its
-- offsets move past the others when it auto-commits.
SELECT shard, seq, type FROM event_log.poll('shipping', 'tf', 4, auto_commit => true, types => ARRAY['CheckedOut']);
SELECT shard, seq, type FROM event_log.poll('shipping', 'tf', 4, auto_commit => true, types => ARRAY['CheckedOut']);
SELECT shard, committed_seq, log_end FROM event_log.consumer_lag WHERE group_name = 'shipping' ORDER BY shard;
SELECT shard, seq, type FROM event_log.poll('shipping', 'tf', 100, auto_commit => true, types => ARRAY['CheckedOut']);
-- The last poll read every shard to its end: commit_polled() commits
-- through the end, past the skipped events, though the last ones returned
-- came before.
SELECT event_log.commit_polled('shipping', 'tf');
SELECT shard, committed_seq, log_end, lag_events FROM event_log.consumer_lag WHERE group_name = 'shipping' ORDER BY shard;
-- Only events of other types arrive: nothing is returned, the offsets still move.
INSERT INTO tf (key, type, payload) VALUES ('k1', 'Added', '{}'), ('k2', 'Added', '{}'), ('k3', 'Removed', '{}');
SELECT count(*) FROM event_log.poll('shipping', 'tf', 100, auto_commit => true, types => ARRAY['CheckedOut']);
SELECT event_log.commit_polled('shipping', 'tf');
SELECT shard, committed_seq, log_end, lag_events FROM event_log.consumer_lag WHERE group_name = 'shipping' ORDER BY shard;
-- A poll limited by max_count stops at its last event: nothing after it is skipped.
SELECT shard, seq, type FROM event_log.poll('removals', 'tf', 2, types => ARRAY['Removed']);
SELECT event_log.commit_polled('removals', 'tf');
SELECT shard, committed_seq FROM event_log.consumer_lag WHERE group_name = 'removals' ORDER BY shard;
SELECT shard, seq, type FROM event_log.poll('removals', 'tf', 2, types => ARRAY['Removed']);

-- A group's types (0.3): the first poll that names types records them in
-- consumer_groups, sorted and without duplicates.
SELECT group_name, types FROM event_log.consumer_groups ORDER BY group_name;
SELECT event_log.create_stream('lt', 2);
INSERT INTO lt (key, type, payload)
SELECT 'k' || (i % 4), (ARRAY['Placed', 'Paid', 'Shipped', 'Paid'])[1 + i % 4], '{}'
FROM generate_series(1, 24) i;
SELECT shard, type, count(*) FROM lt GROUP BY 1, 2 ORDER BY 1, 2;
-- A group created without types (here by reset_offsets()) has none: its
-- lag counts every event, as in 0.2.
SELECT * FROM event_log.reset_offsets('billing', 'lt', 'start');
SELECT shard, log_end, lag_events, lag_time > '0' AS behind FROM event_log.consumer_lag
WHERE group_name = 'billing' ORDER BY shard;
SELECT shard, seq, type FROM event_log.poll('billing', 'lt', 2, types => ARRAY['Shipped', 'Paid', 'Shipped']);
SELECT types FROM event_log.consumer_groups WHERE group_name = 'billing';
-- consumer_lag now counts only Paid and Shipped after the committed offset;
-- log_end is still the shard's last seq.
SELECT l.shard, l.committed_seq, l.log_end, l.lag_events,
       (SELECT count(*) FROM lt WHERE lt.shard = l.shard AND lt.seq > l.committed_seq
          AND lt.type IN ('Paid', 'Shipped')) AS expected
FROM event_log.consumer_lag l WHERE group_name = 'billing' ORDER BY shard;
-- A poll without types polls the group's; the same types in another order
-- are the group's too.
SELECT shard, seq, type FROM event_log.poll('billing', 'lt', 100, auto_commit => true);
SELECT count(*) FROM event_log.poll('billing', 'lt', 100, types => ARRAY['Paid', 'Shipped', 'Paid']);
SELECT event_log.commit_polled('billing', 'lt');
-- Committed past the skipped Placed events: no lag left.
SELECT shard, committed_seq, log_end, lag_events, lag_time FROM event_log.consumer_lag
WHERE group_name = 'billing' ORDER BY shard;
-- Events of other types do not count as lag; those of the group's types do,
-- and lag_time is that of the first of them.
INSERT INTO lt (key, type, payload) VALUES ('k0', 'Placed', '{}'), ('k1', 'Placed', '{}'),
  ('k2', 'Placed', '{}'), ('k3', 'Placed', '{}');
SELECT shard, log_end - committed_seq AS behind, lag_events, lag_time FROM event_log.consumer_lag
WHERE group_name = 'billing' ORDER BY shard;
INSERT INTO lt (key, type, payload) VALUES ('k1', 'Paid', '{}'), ('k2', 'Shipped', '{}');
SELECT shard, log_end - committed_seq AS behind, lag_events, lag_time > '0' AS behind_in_time
FROM event_log.consumer_lag WHERE group_name = 'billing' ORDER BY shard;
-- Two auto-committing polls: the second commits the first's events and
-- the skipped ones after them; the lag goes back to 0.
SELECT shard, type FROM event_log.poll('billing', 'lt', 100, auto_commit => true) ORDER BY shard;
SELECT count(*) FROM event_log.poll('billing', 'lt', 100, auto_commit => true);
SELECT shard, committed_seq = log_end AS at_end, lag_events, lag_time FROM event_log.consumer_lag
WHERE group_name = 'billing' ORDER BY shard;

-- The mismatch rule: other types than the group's are refused, by every
-- member, with the group's types in the message; nothing changes.
SELECT * FROM event_log.poll('billing', 'lt', types => ARRAY['Paid']);
SELECT * FROM event_log.poll('billing', 'lt', member => 'other', types => ARRAY['Placed', 'Paid', 'Shipped']);
SELECT * FROM event_log.poll('billing', 'lt', auto_commit => true, types => ARRAY['paid', 'shipped']);
-- Bad input is refused as before, whatever the group's types.
SELECT * FROM event_log.poll('billing', 'lt', types => ARRAY[]::text[]);
SELECT * FROM event_log.poll('billing', 'lt', types => ARRAY['Paid', NULL]);
SELECT * FROM event_log.shard_status('lt', 0, 0, ARRAY[]::text[]);
SELECT types FROM event_log.consumer_groups WHERE group_name = 'billing';
SELECT count(*) AS members FROM event_log.consumer_members m
JOIN event_log.consumer_groups g ON g.id = m.group_id WHERE g.group_name = 'billing';
-- To poll other types: drop the group (or use another name).
SELECT event_log.drop_group('billing', 'lt');
SELECT count(*) FROM event_log.poll('billing', 'lt', 100, types => ARRAY['Placed']);
SELECT types FROM event_log.consumer_groups WHERE group_name = 'billing';
SELECT shard, lag_events FROM event_log.consumer_lag WHERE group_name = 'billing' ORDER BY shard;

-- A role without SELECT on the stream sees the groups, not their offsets
-- or counts, through the view or the function.
CREATE ROLE regress_el_lt_outsider;
SET ROLE regress_el_lt_outsider;
SELECT group_name, shard, committed_seq, log_end, lag_events, lag_time, committed_at
FROM event_log.consumer_lag WHERE stream = 'lt'::regclass ORDER BY shard;
SELECT * FROM event_log.shard_status('lt', 0, 0, ARRAY['Placed']);
RESET ROLE;
DROP ROLE regress_el_lt_outsider;
SELECT event_log.drop_stream('lt');

-- Row-level security applies to filtered reads and polls as to any read.
CREATE ROLE regress_el_tf_reader;
GRANT SELECT ON tf TO regress_el_tf_reader;
ALTER TABLE tf ENABLE ROW LEVEL SECURITY;
CREATE POLICY even_only ON tf FOR SELECT TO regress_el_tf_reader USING (seq % 2 = 0);
SET ROLE regress_el_tf_reader;
SELECT seq, type FROM event_log.read('tf', 0, types => ARRAY['CheckedOut']);
SELECT shard, seq, type FROM event_log.poll('rls', 'tf', 100, types => ARRAY['CheckedOut']);
SELECT event_log.commit_polled('rls', 'tf');
RESET ROLE;
SELECT shard, committed_seq, log_end FROM event_log.consumer_lag WHERE group_name = 'rls' ORDER BY shard;
-- A role without SELECT reads nothing, filtered or not.
REVOKE SELECT ON tf FROM regress_el_tf_reader;
SET ROLE regress_el_tf_reader;
SELECT * FROM event_log.read('tf', 0, types => ARRAY['CheckedOut']);
SELECT * FROM event_log.poll('rls', 'tf', types => ARRAY['CheckedOut']);
RESET ROLE;
GRANT SELECT ON tf TO regress_el_tf_reader;

-- A hostile reader with its own =(text, text), unnest(text[]) and
-- =(int, int) first on its search_path: none of them runs in our reads.
CREATE SCHEMA tf_hostile AUTHORIZATION regress_el_tf_reader;
SET ROLE regress_el_tf_reader;
CREATE FUNCTION tf_hostile.eq(text, text) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN RAISE EXCEPTION 'hostile =(text, text) ran as %', current_user; END $$;
CREATE OPERATOR tf_hostile.= (FUNCTION = tf_hostile.eq, LEFTARG = text, RIGHTARG = text);
CREATE FUNCTION tf_hostile.eq(int, int) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN RAISE EXCEPTION 'hostile =(int, int) ran as %', current_user; END $$;
CREATE OPERATOR tf_hostile.= (FUNCTION = tf_hostile.eq, LEFTARG = int, RIGHTARG = int);
CREATE FUNCTION tf_hostile.unnest(text[]) RETURNS SETOF text LANGUAGE plpgsql AS
  $$ BEGIN RAISE EXCEPTION 'hostile unnest(text[]) ran as %', current_user; END $$;
SET search_path = tf_hostile, pg_catalog, public;
SELECT seq, type FROM event_log.read('tf', 0, types => ARRAY['CheckedOut']);
SELECT count(*) FROM event_log.poll('hostile', 'tf', 100, types => ARRAY['CheckedOut']);
SELECT count(*) FROM event_log.poll('hostile', 'tf', 100);
-- consumer_lag counts only for a reader row-level security hides nothing
-- from: NULLs under the policy, then counts (by type, past the hostile
-- operators) once the table has none.
SELECT shard, lag_events FROM event_log.consumer_lag
WHERE group_name OPERATOR(pg_catalog.=) 'hostile' ORDER BY shard;
RESET ROLE;
ALTER TABLE tf DISABLE ROW LEVEL SECURITY;
SET ROLE regress_el_tf_reader;
SELECT shard, lag_events FROM event_log.consumer_lag
WHERE group_name OPERATOR(pg_catalog.=) 'hostile' ORDER BY shard;
RESET search_path;
RESET ROLE;

DROP SCHEMA tf_hostile CASCADE;
DROP POLICY even_only ON tf;
SELECT event_log.drop_stream('tf');
DROP ROLE regress_el_tf_reader;
DROP EXTENSION event_log;
