-- event_log.append(): optimistic concurrency, idempotency, and density
-- across rollbacks and savepoints.
CREATE EXTENSION event_log;
SELECT event_log.create_stream('accounts', 2);

-- expected_version 0: the key must have no events yet.
SELECT * FROM event_log.append('accounts', 'acc-1', 'Opened', '{"owner": "ann"}', expected_version => 0);
-- expected_version N: the key's current version must be N.
SELECT * FROM event_log.append('accounts', 'acc-1', 'Deposited', '{"amount": 10}', expected_version => 1);
-- NULL (the default): any version.
SELECT * FROM event_log.append('accounts', 'acc-1', 'Deposited', '{"amount": 5}');

-- A stale expected version fails with SQLSTATE EL001 and changes nothing.
SELECT * FROM event_log.append('accounts', 'acc-1', 'Withdrawn', '{"amount": 1}', expected_version => 1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM event_log.append('accounts', 'acc-2', 'Deposited', '{}', expected_version => 3);
SELECT count(*) FROM accounts;

-- Applications catch it by SQLSTATE.
DO $$
BEGIN
  PERFORM event_log.append('accounts', 'acc-1', 'Opened', '{}', expected_version => 0);
EXCEPTION WHEN SQLSTATE 'EL001' THEN
  RAISE NOTICE 'conflict caught: %', SQLERRM;
END $$;

-- Idempotency: the same event_id again returns the first append's position.
SELECT * FROM event_log.append('accounts', 'acc-2', 'Opened', '{}',
  event_id => '11111111-1111-4111-8111-111111111111');
SELECT * FROM event_log.append('accounts', 'acc-2', 'Opened', '{}',
  event_id => '11111111-1111-4111-8111-111111111111');
-- ... even when its expected_version no longer matches (a retried command).
SELECT * FROM event_log.append('accounts', 'acc-2', 'Opened', '{}',
  expected_version => 0, event_id => '11111111-1111-4111-8111-111111111111');
-- A plain INSERT of a known event_id appends nothing.
INSERT INTO accounts (key, type, payload, event_id)
  VALUES ('acc-2', 'Opened', '{}', '11111111-1111-4111-8111-111111111111');
SELECT count(*) FROM accounts WHERE key = 'acc-2';
-- The same event_id under another key is an error, not a silent success.
SELECT * FROM event_log.append('accounts', 'acc-3', 'Opened', '{}',
  event_id => '11111111-1111-4111-8111-111111111111');
INSERT INTO accounts (key, type, payload, event_id)
  VALUES ('acc-3', 'Opened', '{}', '11111111-1111-4111-8111-111111111111');

-- Rolled-back appends free their numbers: seq stays dense.
BEGIN;
SELECT * FROM event_log.append('accounts', 'acc-1', 'Deposited', '{"amount": 99}');
ROLLBACK;
SELECT * FROM event_log.append('accounts', 'acc-1', 'Deposited', '{"amount": 1}');

-- So do appends rolled back to a savepoint, within a transaction that goes on.
BEGIN;
SELECT * FROM event_log.append('accounts', 'acc-1', 'Deposited', '{"amount": 2}');
SAVEPOINT s1;
SELECT * FROM event_log.append('accounts', 'acc-1', 'Deposited', '{"amount": 3}');
INSERT INTO accounts (key, type, payload) VALUES ('acc-1', 'Deposited', '{"amount": 4}');
ROLLBACK TO SAVEPOINT s1;
SELECT * FROM event_log.append('accounts', 'acc-1', 'Deposited', '{"amount": 5}');
COMMIT;

-- A savepoint whose first append took the shard lock, then rolled back.
BEGIN;
SAVEPOINT s1;
INSERT INTO accounts (key, type, payload) VALUES ('acc-9', 'Opened', '{}');
ROLLBACK TO SAVEPOINT s1;
INSERT INTO accounts (key, type, payload) VALUES ('acc-9', 'Opened', '{}');
COMMIT;

-- An exception block inside a batch: the failed row leaves no hole.
DO $$
BEGIN
  FOR i IN 1..3 LOOP
    BEGIN
      PERFORM event_log.append('accounts', 'acc-1', 'Deposited', jsonb_build_object('amount', i),
                               expected_version => CASE WHEN i = 2 THEN 0 END);
    EXCEPTION WHEN SQLSTATE 'EL001' THEN NULL;
    END;
  END LOOP;
END $$;

SELECT shard, seq, key, version, payload FROM accounts ORDER BY shard, seq;
SELECT shard, max(seq) = count(*) AS dense FROM accounts GROUP BY shard ORDER BY shard;

-- INSERT ... ON CONFLICT DO NOTHING that skips a row leaves no hole either.
CREATE UNIQUE INDEX accounts_ref ON accounts ((payload ->> 'ref'));
INSERT INTO accounts (key, type, payload) VALUES ('acc-1', 'Deposited', '{"ref": "r1"}');
INSERT INTO accounts (key, type, payload) VALUES
  ('acc-1', 'Deposited', '{"ref": "r1"}'),
  ('acc-1', 'Deposited', '{"ref": "r2"}')
ON CONFLICT DO NOTHING;
SELECT seq, version, payload FROM accounts WHERE payload ? 'ref' ORDER BY seq;
SELECT shard, max(seq) = count(*) AS dense FROM accounts GROUP BY shard ORDER BY shard;

-- expected_version sees through a row ON CONFLICT skipped in the same transaction.
BEGIN;
INSERT INTO accounts (key, type, payload) VALUES ('acc-1', 'Deposited', '{"ref": "r2"}')
ON CONFLICT DO NOTHING;
SELECT version AS current FROM accounts WHERE key = 'acc-1' ORDER BY version DESC LIMIT 1 \gset
SELECT version = :current + 1 AS next_version
FROM event_log.append('accounts', 'acc-1', 'Deposited', '{}', expected_version => :current);
COMMIT;

-- A shard lock belongs to the transaction, even when the append ran in a
-- cursor whose later FETCH failed under a savepoint.
BEGIN;
DECLARE c CURSOR FOR
  SELECT (event_log.append('accounts', 'acc-1', 'Deposited', '{}',
                           expected_version => CASE WHEN i = 2 THEN 0 END)).seq IS NOT NULL AS appended
  FROM generate_series(1, 2) i;
FETCH 1 FROM c;
SAVEPOINT sp;
FETCH 1 FROM c;
ROLLBACK TO SAVEPOINT sp;
SELECT count(*) AS shard_locks_held FROM pg_locks
WHERE locktype = 'advisory' AND objsubid = 17740 AND pid = pg_backend_pid();
ROLLBACK;

-- append() called by a trigger inside another append() returns its own
-- position, and the outer call returns the outer one.
SELECT event_log.create_stream('audit');
CREATE FUNCTION audit_accounts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM event_log.append('audit', 'accounts', 'Seen', jsonb_build_object('seq', NEW.seq));
  RETURN NULL;
END $$;
CREATE TRIGGER audit_accounts AFTER INSERT ON accounts FOR EACH ROW EXECUTE FUNCTION audit_accounts();
SELECT shard AS a_shard, seq AS a_seq, version AS a_version
FROM event_log.append('accounts', 'acc-2', 'Audited', '{}') \gset
SELECT :a_seq = max(seq) AS outer_seq_returned, :a_shard = 0 AS outer_shard_returned
FROM accounts WHERE shard = :a_shard;
SELECT :a_version = max(version) AS outer_version_returned FROM accounts WHERE key = 'acc-2';
SELECT count(*) AS audit_events FROM audit;
DROP TRIGGER audit_accounts ON accounts;
DROP FUNCTION audit_accounts();
SELECT event_log.drop_stream('audit');

-- A large batch in one statement.
INSERT INTO accounts (key, type, payload)
SELECT 'bulk-' || (i % 50), 'Deposited', jsonb_build_object('i', i)
FROM generate_series(1, 5000) i;
SELECT shard, max(seq) = count(*) AS dense, count(*) FROM accounts GROUP BY shard ORDER BY shard;
SELECT count(*) AS keys, bool_and(n = mx) AS versions_dense
FROM (SELECT key, count(*) n, max(version) mx FROM accounts GROUP BY key) k;
SELECT event_log.drop_stream('accounts');

-- Streams with added and dropped columns: INSERT, COPY, append(), read()
-- and replay() work with any number of added columns of any type, with
-- defaults, an identity, and dropped columns between and after them.
SELECT event_log.create_stream('wide', 2);
ALTER TABLE wide ADD COLUMN tenant text, ADD COLUMN gone int DEFAULT 7,
  ADD COLUMN tags text[] DEFAULT '{a,b}', ADD COLUMN amount numeric(12,2),
  ADD COLUMN extra jsonb DEFAULT '{"x": 1}', ADD COLUMN big text,
  ADD COLUMN at timestamptz DEFAULT now(), ADD COLUMN flag boolean NOT NULL DEFAULT true;
ALTER TABLE wide DROP COLUMN gone;
ALTER TABLE wide ADD COLUMN id bigint;
ALTER TABLE wide ALTER COLUMN id SET NOT NULL,
  ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY;
INSERT INTO wide (key, type, payload, tenant, amount, big)
VALUES ('w1', 'Opened', '{}', 'acme', 12.5, repeat('x', 100000));
SELECT * FROM event_log.append('wide', 'w1', 'Noted', '{"n": 1}', '{"m": 2}');
COPY wide (key, type, payload, tenant, tags) FROM stdin;
w2	Opened	{}	beta	{c}
w1	Closed	{"n": 2}	\N	\N
\.
SELECT key, version, type, tenant, tags, amount, extra, length(big) AS big,
       at IS NOT NULL AS has_at, flag, id
FROM wide ORDER BY key, version;
SELECT key, version, type, payload, metadata FROM event_log.replay('wide', 'w1');
SELECT count(*) AS events, bool_and(recorded_at IS NOT NULL) AS all_recorded
FROM (SELECT * FROM event_log.read('wide', 0) UNION ALL
      SELECT * FROM event_log.read('wide', 1)) r;
-- Dropping added columns that hold values, then appending again.
ALTER TABLE wide DROP COLUMN big, DROP COLUMN tags;
SELECT * FROM event_log.append('wide', 'w2', 'Closed', '{}');
INSERT INTO wide (key, type, payload, amount) VALUES ('w3', 'Opened', '{}', 1);
SELECT key, version, type, tenant, amount, extra, flag, id
FROM wide ORDER BY key, version;
SELECT key, version, type FROM event_log.replay('wide', 'w2');
SELECT event_log.drop_stream('wide');

-- A key's last version read from the index alone where the visibility map
-- says its page is all-visible (after VACUUM), and from the heap elsewhere:
-- new sessions, with no versions cached, append after the right one: for
-- keys whose last row is on an all-visible page (k7 on the last page, old
-- on the first), and after a rolled-back row on a page no longer all-visible.
SELECT event_log.create_stream('vm', 2);
INSERT INTO vm (key, type, payload) SELECT 'old', 'T', '{}' FROM generate_series(1, 3);
INSERT INTO vm (key, type, payload)
SELECT 'k' || (i % 50), 'T', jsonb_build_object('i', i) FROM generate_series(1, 5000) i;
VACUUM (FREEZE) vm;
\c
SET client_min_messages = warning;
INSERT INTO vm (key, type, payload) VALUES ('k7', 'After', '{}'), ('old', 'After', '{}');
\c
SET client_min_messages = warning;
BEGIN;
INSERT INTO vm (key, type, payload) VALUES ('k7', 'Lost', '{}');
ROLLBACK;
INSERT INTO vm (key, type, payload) VALUES ('k7', 'Again', '{}'), ('k8', 'Again', '{}');
SELECT key, version, type FROM vm WHERE type <> 'T' ORDER BY key, version;
SELECT count(*) AS keys_not_dense FROM (SELECT key FROM vm GROUP BY key
  HAVING count(*) <> max(version) OR min(version) <> 1) k;
SELECT event_log.drop_stream('vm');

-- The owner may replace the (key, version) index by one whose key has
-- another deterministic collation (en-x-icu orders 'a' < 'B', C 'B' < 'a'):
-- the probes position their scans with the index's collation, not the
-- database's, and find every key's last version.
SELECT event_log.create_stream('coll', 1);
INSERT INTO coll (key, type, payload)
SELECT k, 'T', '{}' FROM unnest(ARRAY['a', 'B', 'c', 'D', 'e', 'F', 'é']) k;
CREATE UNIQUE INDEX coll_key_version_icu ON coll (key COLLATE "en-x-icu", version);
ALTER TABLE coll DROP CONSTRAINT coll_key_version_key;
\c
SET client_min_messages = warning;
SELECT k, (event_log.append('coll', k, 'T', '{}')).version
FROM unnest(ARRAY['a', 'B', 'c', 'D', 'e', 'F', 'é']) k;
INSERT INTO coll (key, type, payload)
SELECT k, 'U', '{}' FROM unnest(ARRAY['F', 'é', 'a']) k;
SELECT key, max(version) AS version, count(*) AS events FROM coll GROUP BY key ORDER BY key COLLATE "C";
SELECT event_log.drop_stream('coll');
-- Within a transaction, a shard's next seq comes without an index probe when
-- the row numbered before it is found in the heap page this backend last
-- inserted into.  Rows that ON CONFLICT DO NOTHING skips after they
-- were numbered, here every fourth, on two shards and in both directions,
-- savepoints released and rolled back, and a session that does not count
-- (track_counts off) must all leave both shards and every key dense.
SELECT event_log.create_stream('skips', 2);
CREATE UNIQUE INDEX skips_ref ON skips ((payload ->> 'ref'));
INSERT INTO skips (key, type, payload)
SELECT 'k' || i, 'Seed', jsonb_build_object('ref', 'dup' || i) FROM generate_series(0, 7) i;
BEGIN;
INSERT INTO skips (key, type, payload)
SELECT 'k' || (i % 5), 'T',
       jsonb_build_object('ref', CASE WHEN i % 4 = 0 THEN 'dup' || (i % 8) ELSE 'r' || i END)
FROM generate_series(1, 60) i
ON CONFLICT DO NOTHING;
INSERT INTO skips (key, type, payload)
SELECT 'k' || (i % 7), 'U', jsonb_build_object('ref', 'u' || i) FROM generate_series(1, 20) i;
SAVEPOINT a;
INSERT INTO skips (key, type, payload)
SELECT 'k' || i, 'V', jsonb_build_object('ref', 'v' || i) FROM generate_series(1, 6) i;
RELEASE SAVEPOINT a;
SAVEPOINT b;
INSERT INTO skips (key, type, payload)
SELECT 'k' || i, 'W', jsonb_build_object('ref', 'w' || i) FROM generate_series(1, 6) i;
ROLLBACK TO SAVEPOINT b;
INSERT INTO skips (key, type, payload) VALUES ('k1', 'X', '{"ref": "dup1"}'), ('k1', 'X', '{"ref": "x1"}')
ON CONFLICT DO NOTHING;
SELECT (event_log.append('skips', 'k2', 'X', '{"ref": "x2"}')).version > 0 AS appended;
COMMIT;
SET track_counts = off;
BEGIN;
INSERT INTO skips (key, type, payload)
SELECT 'k' || (i % 3), 'Y', jsonb_build_object('ref', CASE WHEN i % 3 = 0 THEN 'dup1' ELSE 'y' || i END)
FROM generate_series(1, 12) i
ON CONFLICT DO NOTHING;
INSERT INTO skips (key, type, payload) VALUES ('k0', 'Y', '{"ref": "y0"}');
COMMIT;
RESET track_counts;
SELECT type, count(*) FROM skips GROUP BY type ORDER BY type;
SELECT shard, count(*) = max(seq) AS dense FROM skips GROUP BY shard ORDER BY shard;
SELECT count(*) AS keys_not_dense FROM (SELECT key FROM skips GROUP BY key
  HAVING count(*) <> max(version) OR min(version) <> 1) k;
SELECT count(*) AS versions_out_of_seq_order FROM (
  SELECT version < lag(version) OVER (PARTITION BY key ORDER BY seq) AS back FROM skips) v
WHERE back;
SELECT event_log.drop_stream('skips');

-- Keys stored out of line (1024 incompressible bytes, in rows over the TOAST
-- threshold): a batch compares them with the hint within the transaction,
-- and the commit, whose callbacks have no snapshot to read TOAST with, must
-- not try to (it failed with "cannot fetch toast data without an active
-- snapshot").
SELECT event_log.create_stream('toasted', 1);
BEGIN;
INSERT INTO toasted (key, type, payload)
SELECT (SELECT string_agg(md5(i::text || '/' || j::text), '') FROM generate_series(1, 32) j), 'T',
       jsonb_build_object('p', (SELECT string_agg(md5(j::text || '\' || i::text), '')
                                FROM generate_series(1, 31) j))
FROM generate_series(1, 3) i;
INSERT INTO toasted (key, type, payload)
SELECT key, 'U', payload FROM toasted;
COMMIT;
INSERT INTO toasted (key, type, payload)
SELECT key, 'V', payload FROM toasted WHERE type = 'T' AND seq = 1;
SELECT (SELECT pg_relation_size(reltoastrelid) > 0 FROM pg_class WHERE oid = 'toasted'::regclass)
         AS keys_out_of_line,
       count(*), max(seq) AS last_seq, count(DISTINCT key) AS keys,
       sum(version) AS version_sum
  FROM toasted;
SELECT event_log.drop_stream('toasted');

-- User code that runs between the trigger and the row's insert (a CHECK
-- constraint here; a policy's WITH CHECK alike) appends to the same stream,
-- and ON CONFLICT skips that nested row: the outer row's insert comes after
-- the nested numbering, and must not pass for the nested row's.  ('k2' is in
-- shard 0 and 'k1' in shard 1.)
SELECT event_log.create_stream('nested', 2);
CREATE UNIQUE INDEX nested_ref ON nested ((payload ->> 'ref'));
INSERT INTO nested (key, type, payload)
SELECT 'k' || i, 'Seed', jsonb_build_object('ref', 'seed' || i) FROM generate_series(1, 6) i;
CREATE FUNCTION nested_append(p jsonb) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  IF p ? 'nest' THEN
    INSERT INTO nested (key, type, payload)
    VALUES (p ->> 'nest', 'Nested', jsonb_build_object('ref', p ->> 'nestref'))
    ON CONFLICT DO NOTHING;
  END IF;
  RETURN true;
END $$;
ALTER TABLE nested ADD CONSTRAINT nested_check CHECK (nested_append(payload));
INSERT INTO nested (key, type, payload) VALUES
  ('k2', 'Outer', '{"ref": "o1", "nest": "k1", "nestref": "seed1"}'),
  ('k1', 'After', '{"ref": "a1"}'),
  ('k2', 'Outer', '{"ref": "o2", "nest": "k1", "nestref": "n2"}'),
  ('k1', 'After', '{"ref": "a2"}');
SELECT key, shard, seq, version, type FROM nested WHERE type <> 'Seed' ORDER BY shard, seq;
SELECT shard, count(*) = max(seq) AS dense FROM nested GROUP BY shard ORDER BY shard;
SELECT count(*) AS keys_not_dense FROM (SELECT key FROM nested GROUP BY key
  HAVING count(*) <> max(version) OR min(version) <> 1) k;
-- In one shard, the nested row takes the outer row's seq (the outer row is
-- not written yet) and is skipped; the outer row then holds the seq the hint
-- names, and must not pass for the nested row (k1's next version is 2).
SELECT event_log.drop_stream('nested');
SELECT event_log.create_stream('nested', 1);
CREATE UNIQUE INDEX nested_ref ON nested ((payload ->> 'ref'));
INSERT INTO nested (key, type, payload)
SELECT 'k' || i, 'Seed', jsonb_build_object('ref', 'seed' || i) FROM generate_series(1, 3) i;
ALTER TABLE nested ADD CONSTRAINT nested_check CHECK (nested_append(payload));
INSERT INTO nested (key, type, payload) VALUES
  ('k2', 'Outer', '{"ref": "o1", "nest": "k1", "nestref": "seed1"}'),
  ('k1', 'After', '{"ref": "a1"}');
SELECT key, shard, seq, version, type FROM nested WHERE type <> 'Seed' ORDER BY shard, seq;
SELECT count(*) AS keys_not_dense FROM (SELECT key FROM nested GROUP BY key
  HAVING count(*) <> max(version) OR min(version) <> 1) k;
SELECT event_log.drop_stream('nested');
DROP FUNCTION nested_append(jsonb);

-- A function called by an index expression appends to the same shard while
-- INSERT ... ON CONFLICT is still inserting the outer row, which it may yet
-- kill: refused (numbering after it would leave a hole).  A plain INSERT
-- numbers the nested row after the outer one.
SELECT event_log.create_stream('spec', 2);
CREATE FUNCTION spec_append(p jsonb) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
  IF p ? 'nest' THEN
    INSERT INTO spec (key, type, payload) VALUES (p ->> 'nest', 'Nested', '{}');
  END IF;
  RETURN 0;
END $$;
CREATE FUNCTION spec_index(p jsonb) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  RETURN spec_append(p);
END $$;
CREATE INDEX spec_nest ON spec (spec_index(payload));
INSERT INTO spec (key, type, payload) VALUES ('k2', 'Seed', '{}');
INSERT INTO spec (key, type, payload) VALUES ('k2', 'Outer', '{"nest": "k2"}')
ON CONFLICT DO NOTHING;
INSERT INTO spec (key, type, payload) VALUES ('k2', 'Outer', '{"nest": "k2"}');
INSERT INTO spec (key, type, payload) VALUES ('k2', 'Outer', '{"nest": "k1"}')
ON CONFLICT DO NOTHING;
SELECT key, shard, seq, version, type FROM spec ORDER BY shard, seq;
SELECT event_log.drop_stream('spec');
DROP FUNCTION spec_index(jsonb);
DROP FUNCTION spec_append(jsonb);
DROP EXTENSION event_log;
