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

-- Row-level security on a stream applies to read() and replay() as well.
SET ROLE regress_el_admin;
ALTER TABLE shop.carts ENABLE ROW LEVEL SECURITY;
CREATE POLICY only_checked_out ON shop.carts FOR SELECT TO regress_el_reader
  USING (type = 'CheckedOut');
SET ROLE regress_el_reader;
SELECT key, version, type FROM event_log.replay('shop.carts', 'c1');

RESET ROLE;
SELECT event_log.drop_stream('shop.carts');
DROP SCHEMA shop CASCADE;
DROP ROLE regress_el_admin, regress_el_writer, regress_el_reader, regress_el_nobody;
DROP EXTENSION event_log;
