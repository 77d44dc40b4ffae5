-- Builds that park, set-based: poison events are found before the batches
-- run and parked with their keys, the rest stays set-based, and the result
-- is the event-by-event build's (docs/design/dead_letters.md, "The cost of
-- finding the bad event").
CREATE EXTENSION event_log;
CREATE SCHEMA lab;
SELECT event_log.create_stream('lab.ops', 3);

-- 16,000 events of 150 keys, each key's spread over the whole stream, with
-- payloads large enough (1.7 kB) that a build reads them in three chunks of
-- about 6,700 events.  Poison: an amount that is not a number ('p') or is
-- missing (NULL, for a NOT NULL column), at positions spread over the
-- stream, a run of eleven keys around the first chunk's end, and the very
-- last event.  Each poisoned key has many events after its poison, in the
-- same chunk and in later ones.  Event 15,500 makes a total negative.
INSERT INTO lab.ops (key, type, payload)
SELECT 'k' || (i % 150), 'Op',
       CASE WHEN i % 997 = 0 OR i = 16000 OR (i BETWEEN 6700 AND 6800 AND i % 150 BETWEEN 10 AND 20)
            THEN jsonb_build_object('n', 'p', 'pad', pad)
            WHEN i % 1999 = 5 THEN jsonb_build_object('pad', pad)
            WHEN i = 15500 THEN jsonb_build_object('n', '-100000', 'pad', pad)
            ELSE jsonb_build_object('n', (i % 50)::text, 'pad', pad) END
  FROM generate_series(1, 16000) i,
       LATERAL (SELECT string_agg(md5((i * 31 + j)::text), '') AS pad
                  FROM generate_series(1, 53) j) p;
SELECT count(*), count(DISTINCT key) FROM lab.ops;

-- The handlers: a per-key total and the trail of seqs, which shows any
-- event applied out of order.  Strict ones fail on poison; the lenient one
-- takes it as 0.  The *_each forms use the whole event e, so they never
-- run set-based: they are the event-by-event reference.
CREATE FUNCTION lab.handler(tab text, amount text) RETURNS jsonb
LANGUAGE sql AS $$
SELECT jsonb_build_object('Op', format($h$
    INSERT INTO %s AS t VALUES (e.key, %s, e.seq::text)
    ON CONFLICT (key) DO UPDATE
    SET total = t.total + excluded.total, trail = t.trail || ',' || excluded.trail $h$, tab, amount)) $$;
CREATE FUNCTION lab.strict() RETURNS text LANGUAGE sql
AS $$ SELECT $a$(e.payload->>'n')::int$a$ $$;
CREATE FUNCTION lab.lenient() RETURNS text LANGUAGE sql
AS $$ SELECT $a$CASE WHEN e.payload->>'n' ~ '^-?[0-9]+$' THEN (e.payload->>'n')::int ELSE 0 END$a$ $$;
CREATE FUNCTION lab.each(amount text) RETURNS text LANGUAGE sql
AS $$ SELECT 'CASE WHEN e IS NULL THEN 0 ELSE ' || amount || ' END' $$;
CREATE FUNCTION lab.create(name text, amount text, checked boolean) RETURNS void
LANGUAGE sql AS $$
SELECT event_log.create_projection('lab.' || name, 'lab.ops',
    columns => 'key text PRIMARY KEY, total bigint NOT NULL, trail text NOT NULL'
               || CASE WHEN checked THEN ', CHECK (total >= 0)' ELSE '' END,
    handlers => lab.handler(name, amount), mode => 'async',
    on_error => 'park', on_build_error => 'park') $$;

SELECT event_log.create_projection('lab.clean', 'lab.ops',
    columns => 'key text PRIMARY KEY, total bigint NOT NULL, trail text NOT NULL',
    handlers => lab.handler('clean', lab.lenient()), mode => 'async');
-- The builds that park say how much they parked.
SELECT lab.create('set_park', lab.strict(), false);
SELECT lab.create('each_park', lab.each(lab.strict()), false);
-- With a CHECK that event 15,500 violates: screening cannot see that, so the
-- group of chunks it is in fails, and the build goes on event by event
-- from the group's start, forgetting what the group had parked.
SELECT lab.create('set_check', lab.strict(), true);
SELECT lab.create('each_check', lab.each(lab.strict()), true);
SELECT projection, build_method ~ '^set-based' AS set_based,
       split_part(build_method, ':', 1) AS method
  FROM event_log.projections ORDER BY projection::text;

-- What each build parked: the failed events, with their errors, and the
-- events of their keys behind them.
SELECT projection, count(*) AS parked, count(error) AS failed,
       count(*) FILTER (WHERE sqlstate = '22P02') AS not_a_number,
       count(*) FILTER (WHERE sqlstate = '23502') AS missing,
       count(*) FILTER (WHERE sqlstate = '23514') AS negative
  FROM event_log.dead_letters GROUP BY projection ORDER BY projection::text;
-- The set-based builds parked exactly what the event-by-event ones did,
-- with the same errors (but for the build table and constraint each names).
CREATE FUNCTION lab.parked(p regclass) RETURNS TABLE (shard int, seq bigint, key text,
    error text, sqlstate text, blocked_by bigint)
LANGUAGE sql AS $$
SELECT shard, seq, key, regexp_replace(error, '"[^"]*\$[^"]*"', '"*"', 'g'), sqlstate,
       blocked_by
  FROM event_log.dead_letters WHERE projection = p $$;
SELECT count(*) AS differences FROM (
    (SELECT * FROM lab.parked('lab.set_park') EXCEPT ALL SELECT * FROM lab.parked('lab.each_park'))
    UNION ALL
    (SELECT * FROM lab.parked('lab.each_park') EXCEPT ALL SELECT * FROM lab.parked('lab.set_park'))) d;
SELECT count(*) AS differences FROM (
    (SELECT * FROM lab.parked('lab.set_check') EXCEPT ALL SELECT * FROM lab.parked('lab.each_check'))
    UNION ALL
    (SELECT * FROM lab.parked('lab.each_check') EXCEPT ALL SELECT * FROM lab.parked('lab.set_check'))) d;
-- A key's first parked event is the one that failed, and every later event
-- of the key waits behind it, in the same chunk and in later ones.
SELECT count(*) AS keys,
       bool_and(head_failed) AS heads_failed, bool_and(rest_behind) AS rest_behind,
       bool_and(all_later) AS every_later_event
  FROM (SELECT d.key,
               bool_and(d.error IS NOT NULL) FILTER (WHERE d.blocked_by IS NULL) AS head_failed,
               bool_and(d.blocked_by = h.seq) FILTER (WHERE d.blocked_by IS NOT NULL) AS rest_behind,
               count(*) = (SELECT count(*) FROM lab.ops o
                            WHERE o.key = d.key AND o.seq >= h.seq) AS all_later
          FROM event_log.dead_letters d
          JOIN event_log.dead_letters h ON h.projection = d.projection AND h.key = d.key
                                       AND h.blocked_by IS NULL
         WHERE d.projection = 'lab.set_park'::regclass
         GROUP BY d.key, h.seq) k;
-- Keys with nothing parked are as a clean build has them; the same goes
-- for the event-by-event build.
SELECT count(*) AS keys_not_parked,
       count(*) FILTER (WHERE (s.total, s.trail) IS DISTINCT FROM (c.total, c.trail)) AS differ
  FROM lab.set_park s JOIN lab.clean c USING (key)
 WHERE NOT EXISTS (SELECT FROM event_log.dead_letters d
                    WHERE d.projection = 'lab.set_park'::regclass AND d.key = s.key);
SELECT count(*) AS differences FROM (
    (SELECT * FROM lab.set_park EXCEPT SELECT * FROM lab.each_park)
    UNION ALL (SELECT * FROM lab.each_park EXCEPT SELECT * FROM lab.set_park)) d;

-- Fix the handler and retry: the set-based build's projection is now what
-- a clean replay of the log gives, key by key and in order.
SELECT event_log.alter_projection('lab.set_park', handlers => lab.handler('set_park', lab.lenient()));
SELECT event_log.retry_dead_letters('lab.set_park');
SELECT count(*) FROM event_log.dead_letters WHERE projection = 'lab.set_park'::regclass;
SELECT count(*) AS keys, count(*) FILTER (WHERE trail !~ '^[0-9]+(,[0-9]+)*$') AS bad_trails
  FROM lab.set_park;
SELECT count(*) AS differences FROM (
    (SELECT * FROM lab.set_park EXCEPT SELECT * FROM lab.clean)
    UNION ALL (SELECT * FROM lab.clean EXCEPT SELECT * FROM lab.set_park)) d;

-- A rebuild under 'park' with the fixed handler parks nothing and stays
-- set-based; with the strict handler again it parks what it parked before.
SELECT event_log.rebuild_projection('lab.set_park');
SELECT build_method FROM event_log.projections WHERE projection = 'lab.set_park'::regclass;
SELECT event_log.alter_projection('lab.set_park', handlers => lab.handler('set_park', lab.strict()));
SELECT event_log.rebuild_projection('lab.set_park');
SELECT count(*) AS differences FROM (
    (SELECT * FROM lab.parked('lab.set_park') EXCEPT ALL SELECT * FROM lab.parked('lab.each_park'))
    UNION ALL
    (SELECT * FROM lab.parked('lab.each_park') EXCEPT ALL SELECT * FROM lab.parked('lab.set_park'))) d;

-- Under 'stop' the first poison event still fails the build, named.
SELECT event_log.create_projection('lab.stopped', 'lab.ops',
    columns => 'key text PRIMARY KEY, total bigint NOT NULL, trail text NOT NULL',
    handlers => lab.handler('stopped', lab.strict()), mode => 'async');
SELECT to_regclass('lab.stopped');

-- Screening may flag an event that would not fail: it finds an UPDATE's
-- value NULL for a NOT NULL column, but the UPDATE of a key with no row
-- yet writes nothing.  Such an event is applied for real, with its key's
-- later events, and nothing is parked.  Each key's first event here is
-- such a Reset.
SELECT event_log.create_stream('lab.fixes', 2);
INSERT INTO lab.fixes (key, type, payload)
SELECT 'f' || (i % 300), CASE WHEN i <= 300 THEN 'Reset' ELSE 'Op' END,
       jsonb_build_object('n', CASE WHEN i > 300 THEN (i % 7)::text END)
  FROM generate_series(1, 1500) i;
CREATE FUNCTION lab.create_fixes(name text, amount text) RETURNS void
LANGUAGE sql AS $$
SELECT event_log.create_projection('lab.' || name, 'lab.fixes',
    columns => 'key text PRIMARY KEY, total bigint NOT NULL, trail text NOT NULL',
    handlers => lab.handler(name, amount) || jsonb_build_object('Reset', format(
        'UPDATE %s SET total = (e.payload->>''n'')::int WHERE key = e.key', name)),
    mode => 'async', on_build_error => 'park') $$;
SELECT lab.create_fixes('fix_set', lab.strict()), lab.create_fixes('fix_each', lab.each(lab.strict()));
SELECT projection, build_method FROM event_log.projections
 WHERE projection IN ('lab.fix_set'::regclass, 'lab.fix_each'::regclass) ORDER BY 1::text;
SELECT count(*) AS parked FROM event_log.dead_letters
 WHERE projection IN ('lab.fix_set'::regclass, 'lab.fix_each'::regclass);
SELECT count(*) AS keys, sum(total) AS total FROM lab.fix_set;
SELECT count(*) AS differences FROM (
    (SELECT * FROM lab.fix_set EXCEPT SELECT * FROM lab.fix_each)
    UNION ALL (SELECT * FROM lab.fix_each EXCEPT SELECT * FROM lab.fix_set)) d;

DROP EXTENSION event_log CASCADE;
DROP SCHEMA lab CASCADE;
