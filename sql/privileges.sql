-- Privileges: non-superusers create and use streams; each role gets only
-- what it was granted (INSERT to append, SELECT to read).
CREATE EXTENSION event_log;
SET client_min_messages = warning;
CREATE ROLE regress_el_admin;
CREATE ROLE regress_el_writer;
CREATE ROLE regress_el_reader;
CREATE ROLE regress_el_nobody;
CREATE SCHEMA shop AUTHORIZATION regress_el_admin;
GRANT USAGE ON SCHEMA shop TO regress_el_writer, regress_el_reader, regress_el_nobody;

-- Creating a stream needs CREATE on the schema, like CREATE TABLE.
SET ROLE regress_el_nobody;
SELECT event_log.create_stream('shop.carts', 2);
SET ROLE regress_el_admin;
SELECT event_log.create_stream('shop.carts', 2);
GRANT INSERT ON shop.carts TO regress_el_writer;
GRANT SELECT ON shop.carts TO regress_el_reader;
INSERT INTO shop.carts (key, type, payload) VALUES ('c1', 'ItemAdded', '{}');

-- The writer appends (INSERT and append()), but cannot read.
SET ROLE regress_el_writer;
INSERT INTO shop.carts (key, type, payload) VALUES ('c1', 'ItemAdded', '{}');
SELECT * FROM event_log.append('shop.carts', 'c1', 'CheckedOut', '{}', expected_version => 2);
SELECT * FROM event_log.append('shop.carts', 'c1', 'CheckedOut', '{}', expected_version => 2);
SELECT * FROM event_log.read('shop.carts', 0);
SELECT * FROM event_log.replay('shop.carts', 'c1');
SELECT count(*) FROM shop.carts;
UPDATE shop.carts SET type = 'x';

-- The reader reads, but cannot append.
SET ROLE regress_el_reader;
SELECT key, version, type FROM event_log.replay('shop.carts', 'c1');
SELECT count(*) FROM event_log.read('shop.carts', event_log.shard_for('c1', 2));
INSERT INTO shop.carts (key, type, payload) VALUES ('c1', 'ItemAdded', '{}');
SELECT * FROM event_log.append('shop.carts', 'c1', 'ItemAdded', '{}');
SELECT event_log.drop_stream('shop.carts');

-- A role with no grants can do neither.
SET ROLE regress_el_nobody;
SELECT * FROM event_log.append('shop.carts', 'c1', 'ItemAdded', '{}');
SELECT * FROM event_log.read('shop.carts', 0);

-- The registry is readable by all and writable by none.
SELECT stream, shards, created_by FROM event_log.streams;
INSERT INTO event_log.streams VALUES ('pg_class', 1);
DELETE FROM event_log.streams;
INSERT INTO event_log.dropped_streams VALUES ('x', 1, 0);

-- Privileges are checked on every call, never once per session: a REVOKE
-- takes effect on the reader's next read() and replay() (42501), although
-- this session has run (and cached) both of them before.
SET ROLE regress_el_reader;
SELECT count(*) FROM event_log.read('shop.carts', event_log.shard_for('c1', 2));
SET ROLE regress_el_admin;
REVOKE SELECT ON shop.carts FROM regress_el_reader;
SET ROLE regress_el_reader;
SELECT count(*) FROM event_log.read('shop.carts', event_log.shard_for('c1', 2));
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM event_log.replay('shop.carts', 'c1');
\echo :LAST_ERROR_SQLSTATE
-- SELECT on some columns is not enough; on the nine that read() returns it is,
-- as for a query naming them.
SET ROLE regress_el_admin;
GRANT SELECT (shard, seq, key, version, type, payload) ON shop.carts TO regress_el_reader;
SET ROLE regress_el_reader;
SELECT count(*) FROM event_log.replay('shop.carts', 'c1');
SET ROLE regress_el_admin;
GRANT SELECT (metadata, event_id, recorded_at) ON shop.carts TO regress_el_reader;
SET ROLE regress_el_reader;
SELECT count(*) FROM event_log.replay('shop.carts', 'c1');
SET ROLE regress_el_admin;
REVOKE SELECT (shard, seq, key, version, type, payload, metadata, event_id, recorded_at)
  ON shop.carts FROM regress_el_reader;
GRANT SELECT ON shop.carts TO regress_el_reader;

-- Row-level security on a stream applies to read() and replay() as well,
-- from the first call after a policy is created (the reader's earlier calls
-- saw every row).
SET ROLE regress_el_reader;
SELECT key, version, type FROM event_log.read('shop.carts', event_log.shard_for('c1', 2));
SET ROLE regress_el_admin;
ALTER TABLE shop.carts ENABLE ROW LEVEL SECURITY;
CREATE POLICY only_checked_out ON shop.carts FOR SELECT TO regress_el_reader
  USING (type = 'CheckedOut');
SET ROLE regress_el_reader;
SELECT key, version, type FROM event_log.replay('shop.carts', 'c1');
SELECT key, version, type FROM event_log.read('shop.carts', event_log.shard_for('c1', 2));
-- A policy that hides everything hides everything; with row_security off
-- the reader gets an error, not the hidden rows.
SET ROLE regress_el_admin;
ALTER POLICY only_checked_out ON shop.carts USING (false);
SET ROLE regress_el_reader;
SELECT count(*) FROM event_log.read('shop.carts', event_log.shard_for('c1', 2));
SELECT count(*) FROM event_log.replay('shop.carts', 'c1');
SET row_security = off;
SELECT count(*) FROM event_log.read('shop.carts', event_log.shard_for('c1', 2));
\echo :LAST_ERROR_SQLSTATE
RESET row_security;
-- The table's owner is not subject to its policies unless it forces them.
SET ROLE regress_el_admin;
SELECT count(*) FROM event_log.replay('shop.carts', 'c1');
ALTER TABLE shop.carts FORCE ROW LEVEL SECURITY;
SELECT count(*) FROM event_log.replay('shop.carts', 'c1');

RESET ROLE;
SELECT event_log.drop_stream('shop.carts');
DROP SCHEMA shop CASCADE;
DROP ROLE regress_el_admin, regress_el_writer, regress_el_reader, regress_el_nobody;
DROP EXTENSION event_log;
