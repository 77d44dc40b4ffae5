-- Immutability: events cannot be changed or removed, by anyone, by any route.
CREATE EXTENSION event_log;
SET client_min_messages = warning;
CREATE ROLE regress_el_owner;
CREATE SCHEMA app AUTHORIZATION regress_el_owner;
CREATE TABLE app.other ();
ALTER TABLE app.other OWNER TO regress_el_owner;

-- The stream belongs to an ordinary (non-superuser) role.
SET ROLE regress_el_owner;
SELECT event_log.create_stream('app.ledger', 2);
SELECT pg_get_userbyid(relowner) AS owner FROM pg_class WHERE oid = 'app.ledger'::regclass;
INSERT INTO app.ledger (key, type, payload)
SELECT 'k' || i, 'Booked', jsonb_build_object('i', i) FROM generate_series(1, 6) i;

-- UPDATE, DELETE, TRUNCATE: refused, with SQLSTATE EL002, even with no matching row.
UPDATE app.ledger SET payload = '{}' WHERE key = 'k1';
\echo :LAST_ERROR_SQLSTATE
UPDATE app.ledger SET payload = '{}' WHERE false;
DELETE FROM app.ledger;
TRUNCATE app.ledger;
TRUNCATE app.other, app.ledger;
MERGE INTO app.ledger l USING (VALUES ('k1')) v(k) ON l.key = v.k
  WHEN MATCHED THEN DELETE;
INSERT INTO app.ledger (key, type, payload) VALUES ('k1', 'Booked', '{}')
  ON CONFLICT (key, version) DO UPDATE SET payload = '{}';

-- The owner cannot switch the guards off ...
ALTER TABLE app.ledger DISABLE TRIGGER ALL;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE app.ledger DISABLE TRIGGER event_log_immutable;
ALTER TABLE app.ledger ENABLE REPLICA TRIGGER event_log_immutable;
ALTER TABLE app.ledger ENABLE TRIGGER event_log_append;
DROP TRIGGER event_log_immutable ON app.ledger;
ALTER TRIGGER event_log_immutable ON app.ledger RENAME TO gone;
-- ... nor route around them with rules, inheritance or partitions ...
CREATE RULE no_update AS ON UPDATE TO app.ledger DO INSTEAD NOTHING;
CREATE RULE no_insert AS ON INSERT TO app.ledger DO INSTEAD NOTHING;
CREATE TABLE app.fake () INHERITS (app.ledger);
CREATE TABLE app.parent (LIKE app.ledger) PARTITION BY LIST (shard);
ALTER TABLE app.parent ATTACH PARTITION app.ledger FOR VALUES IN (0, 1);
ALTER TABLE app.ledger INHERIT app.other;
-- ... nor by rewriting, retyping, renaming or dropping columns ...
ALTER TABLE app.ledger ALTER COLUMN payload TYPE jsonb USING '{}'::jsonb;
ALTER TABLE app.ledger ALTER COLUMN seq TYPE numeric;
ALTER TABLE app.ledger RENAME COLUMN payload TO body;
ALTER TABLE app.ledger DROP COLUMN metadata;
ALTER TABLE app.ledger ADD COLUMN n float8 DEFAULT random();
ALTER TABLE app.ledger SET UNLOGGED;
ALTER TABLE app.ledger ALTER COLUMN key TYPE text COLLATE "C";
-- ... nor by dropping the unique indexes the positions rely on ...
ALTER TABLE app.ledger DROP CONSTRAINT ledger_pkey;
-- ... nor by a BEFORE INSERT trigger that could rewrite positions ...
CREATE FUNCTION app.shift() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.seq := NEW.seq + 100; RETURN NEW; END $$;
CREATE TRIGGER zz_shift BEFORE INSERT ON app.ledger FOR EACH ROW EXECUTE FUNCTION app.shift();
-- ... nor by dropping the table, directly or by cascade.
DROP TABLE app.ledger;
\echo :LAST_ERROR_SQLSTATE
DROP SCHEMA app CASCADE;
RESET ROLE;
DROP OWNED BY regress_el_owner;
SET ROLE regress_el_owner;

-- Replica mode (logical replication's apply role) changes none of this, even
-- for a role that was granted it.
RESET ROLE;
GRANT SET ON PARAMETER session_replication_role TO regress_el_owner;
SET ROLE regress_el_owner;
SET session_replication_role = replica;
DELETE FROM app.ledger;
ALTER TABLE app.ledger DISABLE TRIGGER event_log_immutable;
DROP TABLE app.ledger;
-- Only a superuser (the apply worker) may bring rows with their positions.
INSERT INTO app.ledger (shard, seq, key, version, type, payload, event_id, recorded_at)
VALUES (0, 99, 'k2', 7, 'Forged', '{}', gen_random_uuid(), now());
RESET session_replication_role;
RESET ROLE;
REVOKE SET ON PARAMETER session_replication_role FROM regress_el_owner;
SET ROLE regress_el_owner;

-- Nothing above changed a single event.
SELECT shard, seq, key, version, payload FROM app.ledger ORDER BY shard, seq;

-- What is allowed: adding columns and indexes, AFTER triggers, renaming.
CREATE TABLE app.audit (seq bigint);
CREATE FUNCTION app.audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO app.audit VALUES (NEW.seq); RETURN NULL; END $$;
CREATE TRIGGER audit AFTER INSERT ON app.ledger FOR EACH ROW EXECUTE FUNCTION app.audit();
ALTER TABLE app.ledger ADD COLUMN note text;
CREATE INDEX ON app.ledger (type);
ALTER TABLE app.ledger RENAME TO journal;
INSERT INTO app.journal (key, type, payload) VALUES ('k1', 'Booked', '{}');
SELECT * FROM app.audit;

-- Only drop_stream() removes a stream, only for its owner, and it leaves a record.
RESET ROLE;
CREATE ROLE regress_el_other;
GRANT USAGE ON SCHEMA app TO regress_el_other;
SET ROLE regress_el_other;
SELECT event_log.drop_stream('app.journal');
SET ROLE regress_el_owner;
SELECT event_log.drop_stream('app.journal');
SELECT stream, shards, events, dropped_by FROM event_log.dropped_streams;
RESET ROLE;
DROP SCHEMA app CASCADE;
DROP ROLE regress_el_other;
DROP ROLE regress_el_owner;
DROP EXTENSION event_log;
