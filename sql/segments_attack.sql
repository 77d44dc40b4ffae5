-- Segmented streams under attack: routes around the immutability of a
-- segmented stream that its owner (or a superuser by mistake) might try,
-- each refused with a clear error and changing nothing.
CREATE EXTENSION event_log;
SET client_min_messages = warning;
CREATE SCHEMA sat;
CREATE ROLE sat_owner;
CREATE ROLE sat_other;
GRANT USAGE, CREATE ON SCHEMA sat TO sat_owner;
GRANT USAGE ON SCHEMA sat TO sat_other;
-- Segment names carry the stream's OID: errors that name one are shown
-- with it masked.
CREATE FUNCTION public.sat_masked(cmd text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    d text;
BEGIN
    EXECUTE cmd;
    RETURN 'done';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL;
    RETURN regexp_replace(format('%s: %s / %s', SQLSTATE, SQLERRM, d), 'segment_\d+_', 'segment_N_', 'g');
END $$;

SET ROLE sat_owner;
SELECT event_log.create_stream('sat.log', shards => 2, segment_events => 100);
INSERT INTO sat.log (key, type, payload) SELECT 'k' || i, 'T', '{}' FROM generate_series(1, 4) i;
SELECT event_log.roll_segment('sat.log');
INSERT INTO sat.log (key, type, payload) VALUES ('k1', 'T', '{}');
RESET ROLE;
SELECT segment_table AS seg1 FROM event_log.segments WHERE segment = 1 \gset

-- The segment column keeps its default and NOT NULL: another default would
-- route new events to an old segment (or none), and NULL to no segment.
SET ROLE sat_owner;
ALTER TABLE sat.log ALTER COLUMN segment SET DEFAULT 1;
ALTER TABLE sat.log ALTER COLUMN segment SET DEFAULT event_log.current_segment('sat.log') + 0;
ALTER TABLE sat.log ALTER COLUMN segment DROP DEFAULT;
ALTER TABLE sat.log ALTER COLUMN segment DROP NOT NULL;
RESET ROLE;
ALTER TABLE sat.log ALTER COLUMN segment SET DEFAULT 1;
SELECT pg_get_expr(adbin, adrelid), attnotnull
  FROM pg_attribute LEFT JOIN pg_attrdef ON adrelid = attrelid AND adnum = attnum
 WHERE attrelid = 'sat.log'::regclass AND attname = 'segment';
INSERT INTO sat.log (key, type, payload) VALUES ('k2', 'T', '{}');
SELECT shard, seq, key, segment FROM sat.log WHERE key = 'k2' ORDER BY shard, seq;

-- A CHECK constraint the owner adds to the stream (valid or not) is given
-- to each new segment, which ATTACH requires: rolling goes on, and the
-- constraint holds in the new segment.
SET ROLE sat_owner;
ALTER TABLE sat.log ADD CONSTRAINT no_blocked CHECK (key <> 'blocked') NOT VALID;
SELECT event_log.roll_segment('sat.log');
\set VERBOSITY sqlstate
INSERT INTO sat.log (key, type, payload) VALUES ('blocked', 'T', '{}');
\set VERBOSITY default
INSERT INTO sat.log (key, type, payload) VALUES ('fine', 'T', '{}');
SELECT key, segment FROM sat.log WHERE segment = 3 OR key = 'blocked';
-- So is a generated column.
ALTER TABLE sat.log ADD COLUMN x text GENERATED ALWAYS AS (payload->>'x') STORED;
SELECT event_log.roll_segment('sat.log');
INSERT INTO sat.log (key, type, payload) VALUES ('gen', 'T', '{"x": "yes"}');
SELECT key, segment, x FROM sat.log WHERE key = 'gen';
ALTER TABLE sat.log DROP COLUMN x;
RESET ROLE;

-- A command dropping the stream with its segments is refused by the
-- stream's name.
SET ROLE sat_owner;
DROP OWNED BY sat_owner;
RESET ROLE;
DROP SCHEMA sat CASCADE;
SELECT count(*) FROM sat.log;

-- Segments stay in schema event_log, owned by the stream's owner.
SET ROLE sat_owner;
SELECT public.sat_masked('ALTER TABLE ' || :'seg1' || ' SET SCHEMA sat');
RESET ROLE;
SELECT public.sat_masked('ALTER TABLE ' || :'seg1' || ' SET SCHEMA sat');
SELECT public.sat_masked('ALTER TABLE ' || :'seg1' || ' OWNER TO sat_other');
SELECT s.segment, n.nspname, pg_get_userbyid(c.relowner) AS owner
  FROM event_log.segments s JOIN pg_class c ON c.oid = s.segment_table
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE s.stream = 'sat.log'::regclass ORDER BY s.segment;

-- A new owner of the stream is the new owner of its segments (and their
-- indexes): the former owner can no longer read a segment directly, nor
-- grant it to anybody; the new one rolls.
ALTER TABLE sat.log OWNER TO sat_other;
SELECT s.segment, pg_get_userbyid(c.relowner) AS owner,
       (SELECT count(*) FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
         WHERE i.indrelid = c.oid AND ic.relowner <> c.relowner) AS other_indexes
  FROM event_log.segments s JOIN pg_class c ON c.oid = s.segment_table
 WHERE s.stream = 'sat.log'::regclass ORDER BY s.segment;
SET ROLE sat_owner;
SELECT public.sat_masked('SELECT count(*) FROM ' || :'seg1');
SELECT public.sat_masked('GRANT SELECT ON ' || :'seg1' || ' TO PUBLIC');
RESET ROLE;
SET ROLE sat_other;
SELECT count(*) FROM sat.log;
SELECT event_log.roll_segment('sat.log');
SELECT s.segment, pg_get_userbyid(c.relowner) AS owner
  FROM event_log.segments s JOIN pg_class c ON c.oid = s.segment_table
 WHERE s.stream = 'sat.log'::regclass ORDER BY s.segment;
RESET ROLE;

-- The append trigger lets a row keep its positions only in a segment a
-- restore is still making: a partition without any index, in schema
-- event_log.  A partition of a table of the owner's own, with no index
-- and the append trigger, is refused as any other table is.
SET ROLE sat_owner;
CREATE TABLE sat.mine (shard integer, seq bigint, key text, version bigint,
  type text, payload jsonb, metadata jsonb, event_id uuid,
  recorded_at timestamptz, segment integer) PARTITION BY LIST (segment);
CREATE TABLE sat.mine_1 PARTITION OF sat.mine FOR VALUES IN (1);
CREATE TRIGGER event_log_append BEFORE INSERT ON sat.mine
  FOR EACH ROW EXECUTE FUNCTION event_log.assign_position('2');
INSERT INTO sat.mine (shard, seq, key, version, type, payload, event_id, recorded_at, segment)
  VALUES (0, 7, 'k', 99, 'T', '{}', gen_random_uuid(), '1999-01-01', 1);
SELECT count(*) FROM sat.mine;
DROP TABLE sat.mine;
RESET ROLE;

-- Anybody may make an object that depends on a segment (a view, or a
-- SQL-standard function, naming it needs no privilege on it).  Retention
-- drops such objects with the detached segment instead of failing at every
-- enforcement, which would let any role stop it for good.
CREATE SCHEMA sat_evil AUTHORIZATION sat_other;
SET ROLE sat_owner;
SELECT event_log.create_stream('sat.dep', shards => 1, segment_events => 1000);
INSERT INTO sat.dep (key, type, payload) SELECT 'k' || i, 'T', '{}' FROM generate_series(1, 5) i;
SELECT event_log.roll_segment('sat.dep');
INSERT INTO sat.dep (key, type, payload) SELECT 'k' || i, 'T', '{}' FROM generate_series(6, 10) i;
SELECT event_log.roll_segment('sat.dep');
INSERT INTO sat.dep (key, type, payload) SELECT 'k' || i, 'T', '{}' FROM generate_series(11, 15) i;
SELECT event_log.set_retention('sat.dep', max_events => 5, keep_unconsumed => false);
RESET ROLE;
SELECT segment_table::regclass AS dseg1 FROM event_log.segments
 WHERE stream = 'sat.dep'::regclass ORDER BY segment LIMIT 1 \gset
SELECT segment_table::regclass AS dseg2 FROM event_log.segments
 WHERE stream = 'sat.dep'::regclass ORDER BY segment LIMIT 1 OFFSET 1 \gset
SET ROLE sat_other;
SELECT sat_masked(format('CREATE VIEW sat_evil.v1 AS SELECT 1 AS one FROM %s', :'dseg1'));
SELECT sat_masked(format('CREATE TEMP VIEW v2 AS SELECT 1 AS one FROM %s', :'dseg2'));
SELECT sat_masked(format('CREATE FUNCTION sat_evil.f() RETURNS bigint LANGUAGE sql BEGIN ATOMIC SELECT count(*) FROM %s; END', :'dseg2'));
SELECT sat_masked(format('SELECT count(*) FROM %s', :'dseg1'));
RESET ROLE;
SET ROLE sat_owner;
-- the first enforcement detaches segments 1 and 2, the second drops them
SELECT stream, shard, removed, low_watermark FROM event_log.enforce_retention('sat.dep');
SELECT stream, shard, removed, low_watermark FROM event_log.enforce_retention('sat.dep');
RESET ROLE;
SELECT count(*) AS dependents_left FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relname = 'v1' AND n.nspname = 'sat_evil' OR c.relname = 'v2' AND n.nspname LIKE 'pg_temp%';
SELECT count(*) AS functions_left FROM pg_proc WHERE proname = 'f' AND pronamespace = 'sat_evil'::regnamespace;
SELECT segment FROM event_log.segments WHERE stream = 'sat.dep'::regclass ORDER BY segment;
SELECT count(*), min(seq), max(seq) FROM sat.dep;
DROP SCHEMA sat_evil CASCADE;

-- A foreign key may name a segment rather than the stream (the segment's
-- owner is the stream's owner).  Retention refuses the stream as it does
-- for a foreign key on the stream itself; one added after the check, to a
-- segment retention has detached, stops the drop with an error instead of
-- being dropped with it.
SET ROLE sat_owner;
SELECT event_log.create_stream('sat.fk', shards => 1, segment_events => 1000);
INSERT INTO sat.fk (key, type, payload) SELECT 'k' || i, 'T', '{}' FROM generate_series(1, 5) i;
SELECT event_log.roll_segment('sat.fk');
INSERT INTO sat.fk (key, type, payload) SELECT 'k' || i, 'T', '{}' FROM generate_series(6, 10) i;
RESET ROLE;
SELECT segment_table::regclass AS fseg1 FROM event_log.segments
 WHERE stream = 'sat.fk'::regclass ORDER BY segment LIMIT 1 \gset
SET ROLE sat_owner;
SELECT sat_masked(format('CREATE TABLE sat.ref (e uuid REFERENCES %s (event_id))', :'fseg1'));
INSERT INTO sat.ref SELECT event_id FROM sat.fk WHERE seq = 1;
SELECT sat_masked($$SELECT event_log.set_retention('sat.fk', max_events => 3, keep_unconsumed => false)$$);
DROP TABLE sat.ref;
SELECT event_log.set_retention('sat.fk', max_events => 3, keep_unconsumed => false);
SELECT sat_masked(format('CREATE TABLE sat.ref (e uuid REFERENCES %s (event_id))', :'fseg1'));
SELECT sat_masked($$SELECT * FROM event_log.enforce_retention('sat.fk')$$);
DROP TABLE sat.ref;
SELECT stream, shard, removed, low_watermark FROM event_log.enforce_retention('sat.fk');
SELECT sat_masked(format('CREATE TABLE sat.ref (e uuid REFERENCES %s (event_id))', :'fseg1'));
SELECT sat_masked($$SELECT * FROM event_log.enforce_retention('sat.fk')$$);
SELECT count(*) FROM event_log.segments WHERE stream = 'sat.fk'::regclass AND detached_at IS NOT NULL;
DROP TABLE sat.ref;
SELECT stream, shard, removed, low_watermark FROM event_log.enforce_retention('sat.fk');
SELECT count(*) FROM event_log.segments WHERE stream = 'sat.fk'::regclass AND detached_at IS NOT NULL;
SELECT count(*), min(seq), max(seq) FROM sat.fk;
RESET ROLE;

SET ROLE sat_owner;
SELECT event_log.drop_stream('sat.dep');
SELECT event_log.drop_stream('sat.fk');
RESET ROLE;

SET ROLE sat_other;
SELECT event_log.drop_stream('sat.log');
RESET ROLE;
DROP SCHEMA sat CASCADE;
DROP FUNCTION public.sat_masked(text);
DROP ROLE sat_owner, sat_other;
DROP EXTENSION event_log CASCADE;
