-- append()'s result row type is built once per backend and kept (the first
-- call builds it, later calls reuse it, a change to the function's row in
-- pg_proc makes the next call build it again): whatever way it is called,
-- every call returns its own event's (shard, seq, version).
CREATE EXTENSION event_log;
SELECT event_log.create_stream('calls', 2);

-- One call site, many calls: FROM, in a LATERAL join over several rows.
SELECT g, a.shard, a.seq, a.version
FROM generate_series(1, 4) g,
     LATERAL event_log.append('calls', 'k-' || (g % 2), 'Counted',
                              jsonb_build_object('g', g)) a
ORDER BY g;

-- In the select list, as a record and by field.
SELECT event_log.append('calls', 'k-0', 'Counted', '{"g": 5}');
SELECT (event_log.append('calls', 'k-1', 'Counted', '{"g": 6}')).version;
SELECT event_log.append('calls', 'k-' || g, 'Counted', '{}') AS pos
FROM generate_series(2, 3) g ORDER BY g;

-- The result row compares and expands like any record of three columns.
SELECT a = ROW(a.shard, a.seq, a.version) AS same, (a).*
FROM event_log.append('calls', 'k-0', 'Counted', '{"g": 7}') a;

-- A prepared statement, executed again and again.
PREPARE ap(text, int) AS
  SELECT shard, seq, version FROM event_log.append('calls', $1, 'Counted',
                                                   jsonb_build_object('g', $2));
EXECUTE ap('k-1', 8);
EXECUTE ap('k-1', 9);
EXECUTE ap('k-0', 10);
DEALLOCATE ap;

-- A PL/pgSQL loop.
DO $$
DECLARE
  r record;
BEGIN
  FOR i IN 11..13 LOOP
    SELECT * INTO r FROM event_log.append('calls', 'k-1', 'Counted',
                                          jsonb_build_object('g', i));
    RAISE NOTICE 'g % -> shard %, seq %, version %', i, r.shard, r.seq, r.version;
  END LOOP;
END $$;

-- An error in a call does not spoil the kept row type for the next call:
-- the same expression conflicts once (caught), then appends twice.
DO $$
DECLARE
  r record;
BEGIN
  FOR e IN 4..6 LOOP
    BEGIN
      SELECT * INTO r FROM event_log.append('calls', 'k-0', 'Counted', '{}',
                                            expected_version => e);
      RAISE NOTICE 'expected % -> version %', e, r.version;
    EXCEPTION WHEN SQLSTATE 'EL001' THEN
      RAISE NOTICE 'expected %: conflict', e;
    END;
  END LOOP;
END $$;

-- Changing the function's row in pg_proc (here its cost) makes the next
-- call build the row type again; calls before and after return the same
-- kind of row, and it still compares as a record of three columns.
SELECT shard, seq, version FROM event_log.append('calls', 'k-2', 'Counted', '{}');
ALTER FUNCTION event_log.append(regclass, text, text, jsonb, jsonb, bigint, uuid) COST 2;
SELECT shard, seq, version FROM event_log.append('calls', 'k-2', 'Counted', '{}');
SELECT a = ROW(a.shard, a.seq, a.version) AS same, (a).*
FROM event_log.append('calls', 'k-3', 'Counted', '{}') a;
ALTER FUNCTION event_log.append(regclass, text, text, jsonb, jsonb, bigint, uuid) COST 1;
SELECT * FROM event_log.append('calls', 'k-3', 'Counted', '{}');

-- What the calls returned is what the stream holds: dense seqs per shard,
-- versions per key, in order.
SELECT shard, count(*), min(seq), max(seq),
       bool_and(seq = rn) AS dense
FROM (SELECT shard, seq, row_number() OVER (PARTITION BY shard ORDER BY seq) AS rn
      FROM calls) s
GROUP BY shard ORDER BY shard;
SELECT key, array_agg(version ORDER BY seq) AS versions
FROM calls GROUP BY key ORDER BY key;
SELECT event_log.drop_stream('calls');
DROP EXTENSION event_log;
