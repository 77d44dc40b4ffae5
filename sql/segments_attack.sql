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
    msg text;
    detail text;
BEGIN
    EXECUTE cmd;
    RETURN 'done';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL;
    RETURN regexp_replace(SQLSTATE || ': ' || msg || ' / ' || detail,
                          'segment_\d+_', 'segment_N_', 'g');
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

SET ROLE sat_owner;
SELECT event_log.drop_stream('sat.log');
RESET ROLE;
DROP SCHEMA sat CASCADE;
DROP FUNCTION public.sat_masked(text);
DROP ROLE sat_owner, sat_other;
DROP EXTENSION event_log CASCADE;
