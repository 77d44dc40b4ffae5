-- Erasure of personal data (docs/erasure.md): personal fields declared per
-- stream or type are encrypted on every append path with a key per data
-- subject, read back in clear by the roles allowed to, and erased for good
-- by erase_subject(), which is audited.
CREATE EXTENSION event_log;
SET client_min_messages = warning;
SELECT event_log.create_stream('shop', 2);
SELECT event_log.create_stream('plain_other');
CREATE ROLE er_owner;
CREATE ROLE er_reader;
CREATE ROLE er_support;
CREATE ROLE er_appender;
CREATE ROLE er_auditor;
ALTER TABLE shop OWNER TO er_owner;
GRANT SELECT ON shop TO er_reader, er_support;
GRANT INSERT ON shop TO er_appender;
GRANT SELECT ON event_log.erasures TO er_auditor;
SELECT 'created' FROM pg_create_logical_replication_slot('erasure_cdc', 'event_log');

-- Only the owner declares.  Bad declarations are refused and change nothing.
SET ROLE er_reader;
SELECT event_log.declare_personal('shop', '{email}', 'customer');
SET ROLE er_owner;
SELECT event_log.declare_personal('shop', '{}', 'customer');
SELECT event_log.declare_personal('shop', '{email,NULL}', 'customer');
SELECT event_log.declare_personal('shop', '{email,email}', 'customer');
SELECT event_log.declare_personal('shop', '{email}', '');
SELECT event_log.declare_personal('shop', '{{a},{b}}', 'customer');
SELECT event_log.declare_personal('shop', NULL, 'customer');
SELECT event_log.declare_personal('shop', '{email}', 'customer', '');
SELECT event_log.declare_personal('pg_class', '{email}', 'customer');
SELECT count(*) FROM event_log.personal_fields;

-- The stream's declaration, and one for a type that replaces it.
SELECT event_log.declare_personal('shop', '{name,email}', 'customer');
SELECT event_log.declare_personal('shop', '{ip}', 'customer', 'Visited');
SELECT stream, type, fields, subject_field, declared_by FROM event_log.personal_fields ORDER BY type;
RESET ROLE;

-- Appends on every path: INSERT, COPY, append(), append_events().
SET ROLE er_appender;
INSERT INTO shop (key, type, payload) VALUES
  ('cart-1', 'Placed', '{"customer": "alice", "name": "Alice Liddell", "email": "alice@example.org", "total": 12}'),
  ('cart-2', 'Placed', '{"customer": "bob", "name": "Bob", "email": "bob@example.org", "total": 3}'),
  ('cart-1', 'Visited', '{"customer": "alice", "ip": "192.0.2.1", "email": "kept@example.org"}'),
  ('cart-3', 'Noted', '{"note": "no personal field, no subject needed"}');
RESET ROLE;
COPY shop (key, type, payload) FROM stdin;
cart-2	Placed	{"customer": 42, "name": {"first": "Carol", "last": "C"}, "email": null}
\.
SELECT event_log.append('shop', 'cart-4', 'Placed',
       '{"customer": "dave", "name": "Dave", "email": "dave@example.org"}') IS NOT NULL AS appended;
SELECT count(*) FROM event_log.append_events('shop', ARRAY[
       event_log.new_event('Placed', '{"customer": "erin", "name": "Erin", "email": "erin@example.org"}', key => 'cart-5'),
       event_log.new_event('Placed', '{"customer": "alice", "name": "Alice L.", "email": "alice@example.org"}', key => 'cart-6')]);

-- An event with a personal field but no subject is refused (EL030).
\set VERBOSITY default
INSERT INTO shop (key, type, payload) VALUES ('cart-7', 'Placed', '{"name": "Nobody"}');
INSERT INTO shop (key, type, payload) VALUES ('cart-7', 'Placed', '{"customer": "", "name": "Nobody"}');
INSERT INTO shop (key, type, payload) VALUES ('cart-7', 'Placed', '{"customer": ["x"], "email": "x@example.org"}');
\set VERBOSITY terse

-- As stored, no personal value is there in clear: plain SELECT sees markers
-- with the ciphertext, the subject's id and a mac; other fields as written.
SELECT count(*) AS events,
       count(*) FILTER (WHERE payload::text ~ '("(Alice|Bob|Carol|Dave|Erin)|alice@|bob@|dave@|erin@|192\.0\.2\.1)') AS in_clear
FROM shop;
SELECT key, type, jsonb_typeof(payload->'name') AS name,
       payload->'name' ? '$personal' AS marked, payload->'customer' AS customer,
       payload->'total' AS total, payload->'email' ? 'mac' AS email_marked,
       length(payload->'name'->>'key') AS key_id_len
FROM shop ORDER BY shard, seq;

-- The owner, and roles it grants, read them as written: read(), replay(),
-- read_all(), read_event(), poll(), and reveal() for plain SQL.
SET ROLE er_owner;
SELECT key, type, payload FROM event_log.replay('shop', 'cart-1');
SELECT key, payload->'name' AS name, payload->'email' AS email
FROM event_log.read_all('shop') ORDER BY key, version;
SELECT event_log.grant_personal('shop', 'er_reader');
RESET ROLE;
SET ROLE er_reader;
SELECT key, payload->'name' AS name FROM event_log.read('shop', 0, 0, 100)
UNION ALL
SELECT key, payload->'name' FROM event_log.read('shop', 1, 0, 100) ORDER BY 1, 2;
SELECT e.key, event_log.reveal('shop', e.payload)->>'email' AS email FROM shop e ORDER BY e.key, e.version;
SELECT key, payload->'email' AS email FROM event_log.poll('g1', 'shop', 100) ORDER BY key, version;
RESET ROLE;

-- Others see a marker instead; a reader whose grant is revoked too.
SET ROLE er_support;
SELECT key, payload FROM event_log.replay('shop', 'cart-1');
SELECT key, payload->'email' AS email FROM event_log.read_all('shop') ORDER BY key, version;
RESET ROLE;
SET ROLE er_owner;
SELECT event_log.revoke_personal('shop', 'er_reader');
RESET ROLE;
SET ROLE er_reader;
SELECT DISTINCT payload->'name' FROM event_log.read_all('shop') WHERE type = 'Placed';
RESET ROLE;

-- A forged marker (an appender copying the shape) is not ours: it reads as
-- stored, and breaks no read.
INSERT INTO shop (key, type, payload) VALUES ('cart-8', 'Noted',
  ('{"x": {"$personal": "AAAA", "key": "' || repeat('0', 32) || '", "mac": "' || repeat('0', 32) || '"}}')::jsonb);
SELECT payload FROM event_log.replay('shop', 'cart-8');

-- Erasure: the owner only, with a reason; the audit holds the subject's id,
-- never the subject, and who and when.
SET ROLE er_reader;
SELECT event_log.erase_subject('shop', 'alice', 'request 17');
RESET ROLE;
SET ROLE er_owner;
SELECT event_log.erase_subject('shop', 'alice', '');
SELECT event_log.erase_subject('shop', '', 'request 17');
SELECT event_log.erase_subject('shop', NULL, 'request 17');
SELECT event_log.erase_subject('shop', 'alice', repeat('x', 1001));
-- A role that may not erase forges erase_subject()'s logical decoding
-- message (pg_logical_emit_message() is executable by PUBLIC): CDC
-- consumers must not see an erasure, nor its made-up JSON.
SET ROLE er_reader;
SELECT 'emitted' FROM pg_logical_emit_message(true, 'event_log.erasure',
       'shop'::regclass::oid || E'\n{"stream":"public.shop","subject":"forged"},"x":{');
SELECT 'emitted' FROM pg_logical_emit_message(true, 'event_log.erasure',
       'plain_other'::regclass::oid || E'\n{"stream":"public.plain_other","subject":"forged"}');
SET ROLE er_owner;
SELECT event_log.erase_subject('shop', 'alice', 'request 17');
-- Every event of alice's, on every reader: erased; others unchanged.
SELECT key, type, payload FROM event_log.read_all('shop') ORDER BY shard, seq;
SELECT count(*) FROM event_log.poll('g2', 'shop', 100) WHERE payload::text ~ '"Alice|alice@|192\.0\.2';
-- CDC carries the encrypted markers, never a personal value or a key, and
-- tells consumers of the erasure with the stream and the subject's id.
RESET ROLE;
SELECT count(*) AS lines,
       count(*) FILTER (WHERE data ~ '("(Alice|Bob|Carol|Dave|Erin)|alice@|bob@|dave@|erin@|192\.0\.2\.1)') AS in_clear,
       count(*) FILTER (WHERE data LIKE '%"$personal"%') AS with_markers
FROM pg_logical_slot_peek_changes('erasure_cdc', NULL, NULL) WHERE data NOT LIKE '{"erasure"%';
SELECT data::jsonb->'erasure'->>'stream' AS stream,
       data::jsonb->'erasure'->>'subject' = event_log.subject_id('shop', 'alice') AS subject_id,
       data::jsonb->'erasure' ? 'erased_at' AS has_time
FROM pg_logical_slot_peek_changes('erasure_cdc', NULL, NULL) WHERE data LIKE '{"erasure"%';
SELECT count(*) FROM pg_logical_slot_peek_changes('erasure_cdc', NULL, NULL, 'streams', 'public.plain_other')
WHERE data LIKE '{"erasure"%';
SELECT count(*) AS forged FROM pg_logical_slot_peek_changes('erasure_cdc', NULL, NULL)
WHERE data LIKE '%forged%';
SET ROLE er_owner;
-- Erasing twice, and a subject with no events: false, recorded, a notice.
SET client_min_messages = notice;
SELECT event_log.erase_subject('shop', 'alice', 'request 17, again');
SELECT event_log.erase_subject('shop', 'zoe', 'request 18');
SET client_min_messages = warning;
RESET ROLE;
SELECT count(*) AS keys_left FROM event_log.subject_keys;

-- The auditor finds a subject's erasures by its id; the catalog has no
-- subject in clear and no personal value.
SET ROLE er_auditor;
SELECT stream, erased_by, session_user_name, reason, key_destroyed
FROM event_log.erasures WHERE subject = event_log.subject_id('shop', 'alice') ORDER BY erased_at, reason;
SELECT count(*) FROM event_log.erasures WHERE subject ~ 'alice|zoe';
SELECT * FROM event_log.subject_keys;
RESET ROLE;
SET ROLE er_support;
SELECT event_log.subject_id('shop', 'alice');
SELECT * FROM event_log.erasures;
RESET ROLE;

-- A subject that comes back after its erasure gets a new key: its new
-- events are readable, its old ones stay erased.
SELECT event_log.append('shop', 'cart-9', 'Placed',
       '{"customer": "alice", "name": "Alice again"}') IS NOT NULL AS appended;
SELECT key, payload->'name' FROM event_log.read_all('shop') WHERE payload->>'customer' = 'alice' ORDER BY key, version;

-- Keys a transaction appended with are kept for it, but not past the
-- rollback of a savepoint that created one, nor past an erasure in the
-- same transaction: both appends after them are readable.
BEGIN;
SAVEPOINT a;
INSERT INTO shop (key, type, payload) VALUES ('cart-10', 'Placed', '{"customer": "sp", "name": "Rolled back"}');
ROLLBACK TO a;
INSERT INTO shop (key, type, payload) VALUES ('cart-10', 'Placed', '{"customer": "sp", "name": "Sam Point"}');
INSERT INTO shop (key, type, payload) VALUES ('cart-10', 'Placed', '{"customer": "tx", "name": "Before"}');
SELECT event_log.erase_subject('shop', 'tx', 'same transaction');
INSERT INTO shop (key, type, payload) VALUES ('cart-10', 'Placed', '{"customer": "tx", "name": "After"}');
COMMIT;
SELECT version, payload->'name' FROM event_log.replay('shop', 'cart-10');

-- Streams without declarations, and erasing in one: unchanged / refused.
SELECT event_log.create_stream('plain');
INSERT INTO plain (key, type, payload) VALUES ('k', 'T', '{"email": "p@example.org"}');
SELECT payload FROM event_log.replay('plain', 'k');
SELECT event_log.erase_subject('plain', 'p', 'why');

-- drop_stream() removes the declarations and keys, keeps the audit.
SELECT event_log.drop_stream('shop');
SELECT (SELECT count(*) FROM event_log.personal_fields) AS fields,
       (SELECT count(*) FROM event_log.subject_keys) AS keys,
       (SELECT count(*) FROM event_log.personal_streams) AS secrets,
       (SELECT count(*) FROM event_log.erasures) AS erasures;

-- Upcasting (docs/schemas.md) and personal fields: a field's marker stands
-- for its value when the upcast payload is checked against the newest
-- schema, whether the field is encrypted, hidden from the reader or erased.
SELECT event_log.create_stream('people');
SELECT event_log.register_schema('people', 'Registered',
    '{"type": "object", "properties": {"email": {"type": "string"}, "id": {"type": "string"}}, "required": ["email", "id"]}');
SELECT event_log.declare_personal('people', ARRAY['email'], 'id');
INSERT INTO people (key, type, payload) VALUES
  ('p1', 'Registered', '{"id": "u1", "email": "one@example.org"}'),
  ('p2', 'Registered', '{"id": "u2", "email": "two@example.org"}');
SELECT event_log.set_schema_compatibility('people', 'Registered', 'NONE');
SELECT event_log.register_schema('people', 'Registered',
    '{"type": "object", "properties": {"email": {"type": "string"}, "id": {"type": "string"}, "v": {"type": "integer"}}, "required": ["email", "id", "v"]}');
SELECT event_log.register_upcaster('people', 'Registered', 1, $$payload || '{"v": 2}'$$);
SELECT event_log.erase_subject('people', 'u1', 'asked');
SET event_log.upcast = on;
SELECT key, payload, metadata FROM event_log.read('people', 0);
SELECT key, payload FROM event_log.read_all('people');
GRANT SELECT ON people TO er_reader;
SET ROLE er_reader;
SELECT key, payload FROM event_log.replay('people', 'p2');
RESET ROLE;
RESET event_log.upcast;
SELECT event_log.drop_stream('people');

-- Nested fields, declared as JSON pointers ("/address/street"; "~1" is a
-- "/" in a key, "~0" a "~"): encrypted where they are, their siblings left
-- in clear.  A missing or null object on the way means no field; an array
-- or a scalar on the way is refused (EL031), since it may hold the data in
-- another shape; an object at the end is encrypted whole.
SELECT event_log.create_stream('nest');
GRANT SELECT ON nest TO er_support;
SELECT event_log.declare_personal('nest', '{/x~2}', 'id');
SELECT event_log.declare_personal('nest', '{/x~}', 'id');
SELECT event_log.declare_personal('nest',
       ARRAY['/address/street', '/address/geo/lat', '/a~1b', '/t~0', 'name'], 'id');
INSERT INTO nest (key, type, payload) VALUES
  ('n1', 'T', '{"id": "u1", "name": "Nina", "a/b": "slash key", "t~": "tilde key",
               "address": {"street": "1 Elm St", "city": "Oslo", "geo": {"lat": 59.9, "lng": 10.7}}}'),
  ('n2', 'T', '{"id": "u2", "address": {"city": "Bergen"}}'),
  ('n3', 'T', '{"address": {"city": "Molde", "geo": {}}}'),
  ('n4', 'T', '{"id": "u4", "address": null}'),
  ('n9', 'T', '{"id": "u9", "address": {"street": {"no": 5, "name": "Birch"}, "geo": null}}');
\set VERBOSITY default
INSERT INTO nest (key, type, payload) VALUES ('n5', 'T', '{"id": "u5", "address": "2 Oak St"}');
\set VERBOSITY terse
INSERT INTO nest (key, type, payload) VALUES ('n6', 'T', '{"id": "u6", "address": [{"street": "3 Pine"}]}');
INSERT INTO nest (key, type, payload) VALUES ('n7', 'T', '{"id": "u7", "address": {"geo": "somewhere"}}');
INSERT INTO nest (key, type, payload) VALUES ('n8', 'T', '{"address": {"street": "4 Ash"}}');
-- A payload that is not an object at all is refused the same way: an array
-- of objects would hold the fields in clear, and so would a scalar.
\set VERBOSITY default
INSERT INTO nest (key, type, payload) VALUES ('n10', 'T', '[{"id": "u10", "name": "Nina"}]');
\set VERBOSITY terse
INSERT INTO nest (key, type, payload) VALUES ('n11', 'T', '"Nina"');
INSERT INTO nest (key, type, payload) VALUES ('n12', 'T', '5');
SELECT * FROM event_log.append('nest', 'n13', 'T', '[{"name": "Nina"}]');
-- (Whole quoted values: a bare "Elm" or "Ash" turns up in base64 ciphertext
-- about once in a hundred runs.)
SELECT count(*) AS events,
       count(*) FILTER (WHERE payload::text ~ '("Nina"|"slash key"|"tilde key"|"1 Elm St"|59\.9|"Birch"|"2 Oak St"|"3 Pine"|"4 Ash")') AS in_clear
FROM nest;
SELECT key, payload->'address'->'street' ? '$personal' AS street_marked,
       payload->'address'->'geo'->'lat' ? '$personal' AS lat_marked,
       payload->'address'->'geo'->'lng' AS lng, payload->'address'->>'city' AS city,
       payload->'a/b' ? '$personal' AS slash_marked, payload->'t~' ? '$personal' AS tilde_marked
FROM nest ORDER BY key;
SELECT key, payload FROM event_log.read_all('nest') ORDER BY key;
SET ROLE er_support;
SELECT key, payload FROM event_log.read_all('nest') WHERE key IN ('n1', 'n9') ORDER BY key;
RESET ROLE;
SELECT event_log.erase_subject('nest', 'u1', 'asked');
SELECT key, payload FROM event_log.read_all('nest') WHERE key IN ('n1', 'n9') ORDER BY key;
-- An enclosing field declared too is encrypted whole, whatever its shape.
SELECT event_log.declare_personal('nest', '{/address/street,address}', 'id', type => 'Both');
INSERT INTO nest (key, type, payload) VALUES
  ('n11', 'Both', '{"id": "u11", "address": "7 Yew St"}'),
  ('n12', 'Both', '{"id": "u12", "address": {"street": "8 Oak"}}');
SELECT key, payload->'address' ? '$personal' AS address_marked, payload::text ~ '"(7 Yew St|8 Oak)"' AS in_clear
FROM nest WHERE type = 'Both' ORDER BY key;
SELECT key, payload FROM event_log.replay('nest', 'n11')
UNION ALL SELECT key, payload FROM event_log.replay('nest', 'n12');
SELECT event_log.undeclare_personal('nest', '{/address/geo/lat}');
INSERT INTO nest (key, type, payload) VALUES
  ('n10', 'T', '{"id": "u10", "address": {"street": "6 Fir", "geo": {"lat": 1.5}}}');
SELECT payload->'address'->'street' ? '$personal' AS street_marked, payload->'address'->'geo' AS geo
FROM nest WHERE key = 'n10';
SELECT event_log.drop_stream('nest');

-- undeclare_personal(): fields taken out of a declaration, by the owner,
-- recorded like a declaration; events appended afterwards keep them in
-- clear, those appended before stay encrypted, read and erased as before.
-- A type's declaration left with no fields still replaces the stream's.
SELECT event_log.create_stream('forms');
ALTER TABLE forms OWNER TO er_owner;
GRANT SELECT ON forms TO er_reader;
SET ROLE er_owner;
SELECT event_log.declare_personal('forms', '{name,email}', 'id');
SELECT event_log.declare_personal('forms', '{phone}', 'id', type => 'Called');
INSERT INTO forms (key, type, payload) VALUES
  ('f1', 'Filled', '{"id": "a", "name": "Ann", "email": "ann@example.org"}'),
  ('f1', 'Called', '{"id": "a", "phone": "555-0100", "email": "ann@example.org"}');
-- Bad calls change nothing.
SET ROLE er_reader;
SELECT event_log.undeclare_personal('forms', '{name}');
SET ROLE er_owner;
SELECT event_log.undeclare_personal('forms', '{nope}');
SELECT event_log.undeclare_personal('forms', '{name,nope}');
SELECT event_log.undeclare_personal('forms', '{name}', 'Unknown');
SELECT event_log.undeclare_personal('forms', NULL);
SELECT event_log.undeclare_personal('forms', '{}');
SELECT event_log.undeclare_personal('forms', '{name,name}');
SELECT event_log.undeclare_personal('forms', '{name,NULL}');
SELECT event_log.undeclare_personal('forms', '{{name}}');
SELECT event_log.undeclare_personal(NULL, '{name}');
SELECT event_log.undeclare_personal('forms', '{name}', '');
SELECT type, fields FROM event_log.personal_fields WHERE stream = 'forms'::regclass ORDER BY type;
SELECT event_log.undeclare_personal('forms', '{name}');
SELECT event_log.undeclare_personal('forms', '{phone}', 'Called');
SELECT type, fields, subject_field, declared_by FROM event_log.personal_fields
WHERE stream = 'forms'::regclass ORDER BY type;
INSERT INTO forms (key, type, payload) VALUES
  ('f1', 'Filled', '{"id": "a", "name": "Ann B", "email": "annb@example.org"}'),
  ('f1', 'Called', '{"id": "a", "phone": "555-0199", "email": "annb@example.org"}');
SELECT version, type, payload->'name' ? '$personal' AS name_encrypted,
       payload->'email' ? '$personal' AS email_encrypted, payload->'phone' ? '$personal' AS phone_encrypted
FROM forms ORDER BY version;
SELECT version, payload FROM event_log.replay('forms', 'f1');
SELECT event_log.erase_subject('forms', 'a', 'asked');
SELECT version, payload FROM event_log.replay('forms', 'f1');
-- The stream's last field: its declaration stays, with none; an event
-- without a subject is then appended as it is.
SELECT event_log.undeclare_personal('forms', '{email}');
INSERT INTO forms (key, type, payload) VALUES ('f2', 'Filled', '{"name": "No Subject", "email": "n@example.org"}');
SELECT payload FROM event_log.replay('forms', 'f2');
SELECT event_log.undeclare_personal('forms', '{email}');
RESET ROLE;
SELECT event_log.drop_stream('forms');

-- conversation() (docs/conversations.md) shows personal fields as read()
-- does: in clear to the owner and granted readers, hidden from others,
-- erased for everyone once the subject is erased; a stream without
-- declarations in the same conversation is unchanged, upcast or not.
SELECT event_log.create_stream('talk');
SELECT event_log.create_stream('talk_plain');
SELECT event_log.declare_personal('talk', ARRAY['email'], 'id');
SELECT event_log.track_conversations('talk');
SELECT event_log.track_conversations('talk_plain');
SET event_log.correlation_id = 'conv-1';
INSERT INTO talk (key, type, payload) VALUES
  ('t1', 'Asked', '{"id": "u1", "email": "one@example.org", "q": 1}'),
  ('t2', 'Asked', '{"id": "u2", "email": "two@example.org", "q": 2}');
INSERT INTO talk_plain (key, type, payload) VALUES ('t3', 'Noted', '{"email": "plain@example.org"}');
RESET event_log.correlation_id;
GRANT SELECT ON talk, talk_plain TO er_reader, er_support;
SELECT event_log.grant_personal('talk', 'er_reader');
SELECT stream, key, payload FROM event_log.conversation('conv-1') ORDER BY key;
SET ROLE er_reader;
SELECT stream, key, payload FROM event_log.conversation('conv-1') ORDER BY key;
RESET ROLE;
SET ROLE er_support;
SELECT stream, key, payload FROM event_log.conversation('conv-1') ORDER BY key;
RESET ROLE;
SELECT event_log.erase_subject('talk', 'u1', 'asked');
SET event_log.upcast = on;
SET ROLE er_reader;
SELECT stream, key, payload FROM event_log.conversation('conv-1', ARRAY['talk']::regclass[]) ORDER BY key;
RESET ROLE;
RESET event_log.upcast;
SELECT stream, key, payload FROM event_log.conversation('conv-1') ORDER BY key;
SELECT event_log.drop_stream('talk');
SELECT event_log.drop_stream('talk_plain');

-- A bulk append of many new subjects in one statement: each gets a key,
-- and nothing per subject may be held in the shared lock table to the
-- commit (docs/design/erasure.md, "Where encryption runs").
SELECT event_log.create_stream('bulk', 4);
SELECT event_log.declare_personal('bulk', '{email}', 'customer');
INSERT INTO bulk (key, type, payload)
SELECT 'b' || (i % 100), 'Placed', jsonb_build_object('customer', 'c' || i, 'email', 'e' || i)
FROM generate_series(1, 20000) i;
SELECT count(*) AS keys FROM event_log.subject_keys WHERE stream = 'bulk'::regclass;
SELECT count(*) FILTER (WHERE event_log.reveal('bulk', payload)->>'email' = 'e' || substr(payload->>'customer', 2)) AS readable
FROM bulk;
SELECT event_log.drop_stream('bulk');

SELECT pg_drop_replication_slot('erasure_cdc');
DROP EXTENSION event_log CASCADE;
DROP ROLE er_owner, er_reader, er_support, er_appender, er_auditor;
