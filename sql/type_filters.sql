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
SELECT * FROM event_log.reset_offsets('shipping', 'tf', 'start');
SELECT shard, seq, type FROM event_log.poll('shipping', 'tf', 2, types => ARRAY['Removed']);
SELECT event_log.commit_polled('shipping', 'tf');
SELECT shard, committed_seq FROM event_log.consumer_lag WHERE group_name = 'shipping' ORDER BY shard;
SELECT shard, seq, type FROM event_log.poll('shipping', 'tf', 2, types => ARRAY['Removed']);

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
RESET search_path;
RESET ROLE;

DROP SCHEMA tf_hostile CASCADE;
DROP POLICY even_only ON tf;
SELECT event_log.drop_stream('tf');
DROP ROLE regress_el_tf_reader;
DROP EXTENSION event_log;
