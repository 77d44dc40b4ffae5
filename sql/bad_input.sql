-- Bad input: a clear error, and nothing changes.
CREATE EXTENSION event_log;
SET client_min_messages = warning;
SELECT event_log.create_stream('s', 2);
CREATE TABLE plain (id int);

-- create_stream(): names and shard counts.
SELECT event_log.create_stream(NULL);
SELECT event_log.create_stream('t', NULL);
SELECT event_log.create_stream('');
SELECT event_log.create_stream('a..b');
SELECT event_log.create_stream('"unterminated');
SELECT event_log.create_stream('a.b.c.d');
SELECT event_log.create_stream('other_db.public.t');
SELECT event_log.create_stream(repeat('x', 64));
SELECT event_log.create_stream('public.' || repeat('y', 70));
SELECT event_log.create_stream('no_such_schema.t');
SELECT event_log.create_stream('t', 0);
SELECT event_log.create_stream('t', -1);
SELECT event_log.create_stream('t', 1025);
SELECT event_log.create_stream('s');
SELECT event_log.create_stream('plain');
SELECT event_log.create_stream('pg_temp.t');
SELECT event_log.create_stream('event_log.t');
-- Injection-shaped names are just names.
SELECT event_log.create_stream('"x; DROP TABLE plain; --"');
SELECT event_log.append('"x; DROP TABLE plain; --"', 'k', 't', '{}');
SELECT count(*) FROM plain;
SELECT event_log.drop_stream('"x; DROP TABLE plain; --"');
SELECT stream FROM event_log.streams ORDER BY 1;

-- append(): NULLs, non-streams, bad versions.
SELECT * FROM event_log.append(NULL, 'k', 't', '{}');
SELECT * FROM event_log.append('s', NULL, 't', '{}');
SELECT * FROM event_log.append('s', 'k', NULL, '{}');
SELECT * FROM event_log.append('s', 'k', 't', NULL);
SELECT * FROM event_log.append('s', 'k', 't', '{}', expected_version => -1);
SELECT * FROM event_log.append('plain', 'k', 't', '{}');
SELECT * FROM event_log.append('pg_class', 'k', 't', '{}');
SELECT * FROM event_log.append(0, 'k', 't', '{}');
SELECT * FROM event_log.append('s', '', 't', '{}');
SELECT * FROM event_log.append('s', 'k', '', '{}');
SELECT * FROM event_log.append('s', repeat('k', 1025), 't', '{}');
SELECT * FROM event_log.append('s', 'k', repeat('t', 257), '{}');

-- Huge payloads are refused before they are written.
SET event_log.max_payload_size = '1kB';
SELECT * FROM event_log.append('s', 'k', 't', jsonb_build_object('blob', repeat('x', 2000)));
INSERT INTO s (key, type, payload, metadata) VALUES ('k', 't', '{}', jsonb_build_object('blob', repeat('x', 2000)));
RESET event_log.max_payload_size;

-- INSERT: assigned columns cannot be supplied, required ones cannot be NULL.
INSERT INTO s (key, type, payload, shard) VALUES ('k', 't', '{}', 0);
INSERT INTO s (key, type, payload, seq) VALUES ('k', 't', '{}', 1);
INSERT INTO s (key, type, payload, version) VALUES ('k', 't', '{}', 1);
INSERT INTO s (key, type, payload, recorded_at) VALUES ('k', 't', '{}', now());
INSERT INTO s (type, payload) VALUES ('t', '{}');
INSERT INTO s (key, payload) VALUES ('k', '{}');
INSERT INTO s (key, type) VALUES ('k', 't');

-- A multi-row INSERT or COPY with one bad row appends nothing at all.
INSERT INTO s (key, type, payload) VALUES ('k', 't', '{}'), ('k', 't', '{}'), (NULL, 't', '{}');
COPY s (key, type, payload) FROM stdin;
k	t	{}
k	t	not json
\.
SELECT count(*) FROM s;

-- read() and replay(): NULLs, shards out of range, negative offsets and limits.
SELECT * FROM event_log.read(NULL, 0);
SELECT * FROM event_log.read('s', NULL);
SELECT * FROM event_log.read('s', 2);
SELECT * FROM event_log.read('s', -1);
SELECT * FROM event_log.read('s', 0, -5);
SELECT * FROM event_log.read('s', 0, NULL);
SELECT * FROM event_log.read('s', 0, 0, -1);
SELECT * FROM event_log.read('s', 0, 0, NULL);
SELECT * FROM event_log.read('plain', 0);
SELECT * FROM event_log.replay('s', NULL);
SELECT * FROM event_log.replay('s', 'k', -1);
SELECT * FROM event_log.replay('plain', 'k');
SELECT event_log.shard_for('k', 0);
SELECT event_log.drop_stream(NULL);
SELECT event_log.drop_stream('plain');

-- The trigger functions cannot be misused.
SELECT event_log.assign_position();
CREATE TRIGGER t AFTER INSERT ON plain FOR EACH ROW EXECUTE FUNCTION event_log.assign_position('2');
INSERT INTO plain VALUES (1);
DROP TRIGGER t ON plain;

-- search_path cannot redirect the functions: a hostile operator and table
-- shadowing pg_catalog are ignored.
CREATE SCHEMA evil;
CREATE FUNCTION evil.gt(bigint, bigint) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE OPERATOR evil.> (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.gt);
CREATE FUNCTION evil.eq(int, int) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE OPERATOR evil.= (LEFTARG = int, RIGHTARG = int, FUNCTION = evil.eq);
INSERT INTO s (key, type, payload) VALUES ('a', 't', '{}'), ('b', 't', '{}'), ('c', 't', '{}');
SET search_path = evil, public, pg_catalog;
SELECT count(*) FROM event_log.read('s', 0, after_seq => 1000);
SELECT count(*) FROM event_log.replay('s', 'a', after_version => 1000);
RESET search_path;

SELECT event_log.drop_stream('s');
DROP TABLE plain;
DROP SCHEMA evil CASCADE;
DROP EXTENSION event_log;
