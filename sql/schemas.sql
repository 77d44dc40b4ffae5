-- Event schemas (docs/schemas.md): a registry of JSON Schemas per stream and
-- event type, checked on every append path, with clear errors.
CREATE EXTENSION event_log;
SET client_min_messages = warning;

-- The keywords, one by one: json_schema_errors() lists each failure with the
-- SQL/JSON path of the failing value and the keyword it broke.
CREATE FUNCTION pg_temp.errs(s jsonb, d jsonb) RETURNS text LANGUAGE sql AS $$
  SELECT coalesce(string_agg(path || ' ' || keyword || ': ' || message, '; '), 'valid')
  FROM event_log.json_schema_errors(s, d) $$;
SELECT pg_temp.errs('{"type": "string"}', '1'),
       pg_temp.errs('{"type": ["string", "null"]}', 'null'),
       pg_temp.errs('{"type": "integer"}', '1.0') AS integral,
       pg_temp.errs('{"type": "integer"}', '1.5') AS fraction,
       pg_temp.errs('{"type": "boolean"}', '0') AS zero_is_no_boolean;
SELECT pg_temp.errs('{"properties": {"a": {"type": "number"}}, "required": ["a", "b c"]}', '{"a": "x"}'),
       pg_temp.errs('{"properties": {"a": true}, "additionalProperties": false}', '{"a": 1, "zz": 2, "q\"uote": 3}'),
       pg_temp.errs('{"additionalProperties": {"type": "integer"}}', '{"n": 1, "m": "x"}');
SELECT pg_temp.errs('{"items": {"type": "integer", "minimum": 0}}', '[1, -2, "x"]'),
       pg_temp.errs('{"minItems": 2, "maxItems": 3}', '[1]'),
       pg_temp.errs('{"maxItems": 1, "uniqueItems": true}', '[{"a": 1}, {"a": 1.0}]'),
       pg_temp.errs('{"minProperties": 1, "maxProperties": 1}', '{}');
-- uniqueItems names the first item that has an equal one after it, and the
-- nearest such; equality is JSON's (1 = 1.0, "1" is not 1, key order is
-- not part of an object); a long array is checked as readily as a short one.
SELECT pg_temp.errs('{"uniqueItems": true}', '[3, 1, 2, 1, 3]') AS first_pair,
       pg_temp.errs('{"uniqueItems": true}', '[1, 2, "1", 2.0]') AS numbers,
       pg_temp.errs('{"uniqueItems": true}', '[{"a": 1, "b": [2]}, {"b": [2.0], "a": 1}]') AS objects,
       pg_temp.errs('{"uniqueItems": true}', '[[1], 1, "a", null, {}, [], true]') AS all_distinct;
SELECT pg_temp.errs('{"uniqueItems": true}', (SELECT jsonb_agg(i) FROM generate_series(1, 50000) i)) AS long_unique,
       pg_temp.errs('{"uniqueItems": true}', (SELECT jsonb_agg(i % 49999) FROM generate_series(1, 50000) i)) AS long_repeat;
SELECT pg_temp.errs('{"enum": ["a", 1, null]}', '"b"'),
       pg_temp.errs('{"enum": []}', 'null') AS empty_enum,
       pg_temp.errs('{"const": {"x": [1, 2]}}', '{"x": [1, 2.0]}') AS const_equal,
       pg_temp.errs('{"const": false}', '0') AS const_false;
SELECT pg_temp.errs('{"minimum": 1, "maximum": 5}', '0'),
       pg_temp.errs('{"minimum": 1, "maximum": 5}', '5.5'),
       pg_temp.errs('{"exclusiveMinimum": 0, "exclusiveMaximum": 1}', '0'),
       pg_temp.errs('{"exclusiveMinimum": 0, "exclusiveMaximum": 1}', '1'),
       pg_temp.errs('{"multipleOf": 0.01}', '19.99') AS cents,
       pg_temp.errs('{"multipleOf": 0.01}', '19.999');
SELECT pg_temp.errs('{"minLength": 2, "maxLength": 3}', '"é"') AS characters_not_bytes,
       pg_temp.errs('{"maxLength": 3}', '"abcd"'),
       pg_temp.errs('{"pattern": "^[A-Z]{3}-[0-9]+$"}', '"ABC-12"'),
       pg_temp.errs('{"pattern": "[0-9]"}', '"no digits"'),
       pg_temp.errs('{"pattern": "x", "minLength": 9}', '42') AS only_strings;
SELECT pg_temp.errs('{"format": "date-time"}', '"2026-02-28T23:59:59.5+01:00"'),
       pg_temp.errs('{"format": "date-time"}', '"2026-02-29T10:00:00Z"') AS no_leap_day,
       pg_temp.errs('{"format": "uuid"}', '"6f1c1e4e-3c2a-4b8e-9f0a-2b1c3d4e5f60"'),
       pg_temp.errs('{"format": "uuid"}', '"6f1c1e4e3c2a4b8e9f0a2b1c3d4e5f60"'),
       pg_temp.errs('{"format": "email"}', '"ann@example.com"'),
       pg_temp.errs('{"format": "email"}', '"ann..b@example.com"');
SELECT pg_temp.errs('{"allOf": [{"minimum": 1}, {"maximum": 2}]}', '3'),
       pg_temp.errs('{"anyOf": [{"type": "string"}, {"minimum": 10}]}', '3'),
       pg_temp.errs('{"oneOf": [{"minimum": 1}, {"maximum": 5}]}', '3'),
       pg_temp.errs('{"oneOf": [{"minimum": 1}, {"maximum": 5}]}', '7'),
       pg_temp.errs('{"not": {"type": "null"}}', 'null');
SELECT pg_temp.errs('{"$defs": {"pos": {"type": "integer", "minimum": 1}},
                      "properties": {"n": {"$ref": "#/$defs/pos"}}}', '{"n": 0}'),
       pg_temp.errs('{"properties": {"child": {"$ref": "#"}}, "required": ["id"]}',
                    '{"id": 1, "child": {"child": {}}}') AS recursive,
       pg_temp.errs('{"$defs": {"a/b": {"const": 1}}, "$ref": "#/$defs/a~1b"}', '2') AS escaped,
       pg_temp.errs('true', '{"anything": 1}'), pg_temp.errs('false', '1'),
       pg_temp.errs('{"title": "t", "description": "d", "default": 1, "examples": [1], "$comment": "c"}', '1');
-- Odd keys in paths are quoted as SQL/JSON path does, and the paths work there.
SELECT path FROM event_log.json_schema_errors('{"additionalProperties": false}', '{"a b": 1}');
SELECT jsonb_path_query('{"a b": 1}', path::jsonpath)
FROM event_log.json_schema_errors('{"additionalProperties": false}', '{"a b": 1}');
SELECT event_log.json_schema_valid('{"type": "object"}', '{}'), event_log.json_schema_valid('{"type": "object"}', '[]');

-- Unsupported keywords, formats, references and dialects are refused, never
-- ignored (0A000); malformed keyword values are invalid (22023).
SELECT event_log.json_schema_valid('{"minContains": 1}', '1');
SELECT event_log.json_schema_valid('{"properties": {"a": {"patternProperties": {}}}}', '1');
SELECT event_log.json_schema_valid('{"if": {}, "then": {}}', '1');
SELECT event_log.json_schema_valid('{"items": [{}]}', '1');
SELECT event_log.json_schema_valid('{"format": "ipv4"}', '1');
SELECT event_log.json_schema_valid('{"$ref": "other.json"}', '1');
SELECT event_log.json_schema_valid('{"$ref": "#/properties/a"}', '1');
SELECT event_log.json_schema_valid('{"$schema": "http://json-schema.org/draft-07/schema#"}', '1');
SELECT event_log.json_schema_valid('{"properties": {"a": {"$defs": {}}}}', '1');
SELECT event_log.json_schema_valid('{"minimum": "1"}', '1');
SELECT event_log.json_schema_valid('{"minLength": -1}', '1');
SELECT event_log.json_schema_valid('{"minLength": 1.5}', '1');
SELECT event_log.json_schema_valid('{"multipleOf": 0}', '1');
SELECT event_log.json_schema_valid('{"type": "text"}', '1');
SELECT event_log.json_schema_valid('{"type": []}', '1');
SELECT event_log.json_schema_valid('{"required": ["a", "a"]}', '1');
SELECT event_log.json_schema_valid('{"anyOf": []}', '1');
SELECT event_log.json_schema_valid('{"pattern": "(("}', '"x"');
SELECT event_log.json_schema_valid('{"$ref": "#/$defs/missing"}', '1');
SELECT event_log.json_schema_valid('{"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"allOf": [{"$ref": "#/$defs/a"}]}}, "$ref": "#/$defs/a"}', '1');
SELECT event_log.json_schema_valid('[]', '1');
SELECT * FROM event_log.json_schema_errors(NULL, '1');

-- A stream with a schema for one type.
SELECT event_log.create_stream('orders', 2);
SELECT event_log.register_schema('orders', 'OrderPlaced', '{
  "type": "object",
  "required": ["order_id", "total", "lines"],
  "additionalProperties": false,
  "properties": {
    "order_id": {"type": "string", "format": "uuid"},
    "total": {"type": "number", "minimum": 0},
    "lines": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/line"}}
  },
  "$defs": {"line": {"type": "object", "required": ["sku", "qty"],
                     "properties": {"sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]+$"},
                                    "qty": {"type": "integer", "minimum": 1}}}}
}') AS version;
-- The same schema again is the same version; a different one is the next.
SELECT event_log.register_schema('orders', 'OrderPlaced', schema) AS same
FROM event_log.event_schemas WHERE type = 'OrderPlaced';
SELECT type, version, registered_by = current_user AS by_me FROM event_log.event_schemas;

-- Valid events are appended, on every path, with the version they were
-- checked against in their metadata.
INSERT INTO orders (key, type, payload, metadata) VALUES
  ('o1', 'OrderPlaced', '{"order_id": "6f1c1e4e-3c2a-4b8e-9f0a-2b1c3d4e5f60", "total": 12.5,
                          "lines": [{"sku": "ABC-1", "qty": 2}]}', '{"source": "web"}');
SELECT * FROM event_log.append('orders', 'o2', 'OrderPlaced',
  '{"order_id": "6f1c1e4e-3c2a-4b8e-9f0a-2b1c3d4e5f61", "total": 0, "lines": [{"sku": "XYZ-9", "qty": 1}]}');
SELECT key, duplicate FROM event_log.append_events('orders', 'o3', ARRAY[
  event_log.new_event('OrderPlaced', '{"order_id": "6f1c1e4e-3c2a-4b8e-9f0a-2b1c3d4e5f62", "total": 1, "lines": [{"sku": "QQQ-1", "qty": 1}]}'),
  event_log.new_event('Untyped', '{"free": "form"}')]);
COPY orders (key, type, payload) FROM stdin;
o4	OrderPlaced	{"order_id": "6f1c1e4e-3c2a-4b8e-9f0a-2b1c3d4e5f63", "total": 3, "lines": [{"sku": "ABC-2", "qty": 5}]}
\.
SELECT key, type, metadata FROM orders ORDER BY key, version;

-- Invalid events are refused with SQLSTATE EL020, naming the stream, the
-- type, the version, the path and the rule; nothing is appended.
\set VERBOSITY default
INSERT INTO orders (key, type, payload) VALUES
  ('o5', 'OrderPlaced', '{"order_id": "6f1c1e4e-3c2a-4b8e-9f0a-2b1c3d4e5f64", "total": 3, "lines": [{"sku": "ABC-2", "qty": 0}]}');
INSERT INTO orders (key, type, payload) VALUES
  ('o5', 'OrderPlaced', '{"order_id": "not-a-uuid", "total": 3, "lines": [{"sku": "ABC-2", "qty": 1}]}');
SELECT * FROM event_log.append('orders', 'o5', 'OrderPlaced', '{"total": -1}');
SELECT * FROM event_log.append_events('orders', 'o5', ARRAY[
  event_log.new_event('Untyped', '{}'),
  event_log.new_event('OrderPlaced', '{"order_id": "6f1c1e4e-3c2a-4b8e-9f0a-2b1c3d4e5f65", "total": 1, "lines": [], "x": 1}')]);
COPY orders (key, type, payload) FROM stdin;
o5	OrderPlaced	{"order_id": "6f1c1e4e-3c2a-4b8e-9f0a-2b1c3d4e5f66", "total": 3, "lines": [{"sku": "abc-2", "qty": 5}]}
\.
DO $$
BEGIN
  INSERT INTO orders (key, type, payload) VALUES ('o5', 'OrderPlaced', '[]');
EXCEPTION WHEN SQLSTATE 'EL020' THEN RAISE WARNING 'caught EL020';
END $$;
SELECT count(*) AS o5_events FROM orders WHERE key = 'o5';
-- validate_event() lists every error, against the latest version or another.
SELECT * FROM event_log.validate_event('orders', 'OrderPlaced',
  '{"order_id": 7, "total": -1, "lines": [{"sku": "A"}, {"qty": 0.5}], "extra": true}');
SELECT count(*) FROM event_log.validate_event('orders', 'OrderPlaced', '{}', 1);
SELECT * FROM event_log.validate_event('orders', 'OrderPlaced', '{}', 9);
SELECT * FROM event_log.validate_event('orders', 'Untyped', '{}');
SELECT * FROM event_log.validate_event('orders', 'OrderPlaced', NULL);

-- Metadata: the version a producer names is the one checked; one that does
-- not exist, or is no positive integer, is refused; metadata that is no
-- object cannot record a version.
-- (Version 2 requires a new property: not BACKWARD compatible, the default
-- mode, so this type's mode is NONE first.)
SELECT event_log.register_schema('orders', 'OrderPlaced', '{"type": "object", "required": ["order_id", "total", "currency"]}') AS v2;
SELECT event_log.set_schema_compatibility('orders', 'OrderPlaced', 'NONE');
SELECT event_log.register_schema('orders', 'OrderPlaced', '{"type": "object", "required": ["order_id", "total", "currency"]}') AS v2;
SELECT * FROM event_log.append('orders', 'o6', 'OrderPlaced',
  '{"order_id": "6f1c1e4e-3c2a-4b8e-9f0a-2b1c3d4e5f67", "total": 1, "lines": [{"sku": "ABC-3", "qty": 1}]}',
  '{"schema_version": 1}');
SELECT * FROM event_log.append('orders', 'o6', 'OrderPlaced', '{"order_id": "x", "total": 1}');
SELECT * FROM event_log.append('orders', 'o6', 'OrderPlaced', '{"order_id": "x", "total": 1, "currency": "EUR"}');
SELECT * FROM event_log.append('orders', 'o6', 'OrderPlaced', '{}', '{"schema_version": 3}');
SELECT * FROM event_log.append('orders', 'o6', 'OrderPlaced', '{}', '{"schema_version": "2"}');
SELECT * FROM event_log.append('orders', 'o6', 'OrderPlaced', '{}', '{"schema_version": 1.5}');
SELECT * FROM event_log.append('orders', 'o6', 'OrderPlaced', '{}', '[1]');
-- Types without a schema keep their metadata untouched, schema_version too.
SELECT * FROM event_log.append('orders', 'o6', 'Untyped', '{}', '{"schema_version": "mine"}');
SELECT version, metadata FROM orders WHERE key = 'o6' ORDER BY version;

-- The history check: does a version accept every event of its type already
-- in the log?  No rows: yes; else the first event it refuses.
SELECT * FROM event_log.check_schema_history('orders', 'OrderPlaced', 1);
SELECT * FROM event_log.check_schema_history('orders', 'OrderPlaced');
SELECT * FROM event_log.check_schema_history('orders', 'Nothing');

-- Compatibility of a new version with the earlier ones (EL022), per stream
-- or per type: BACKWARD (the default: the new version accepts what the old
-- one did), FORWARD (the reverse), FULL (both), each also _TRANSITIVE (against
-- every earlier version), or NONE.
SELECT event_log.create_stream('compat');
SELECT event_log.register_schema('compat', 'Shipped', '{"type": "object", "required": ["id"],
  "additionalProperties": false,
  "properties": {"id": {"type": "integer", "minimum": 1}, "carrier": {"enum": ["ups", "dhl"]}}}');
-- BACKWARD: a new optional property, a wider enum and a looser bound are fine
SELECT event_log.register_schema('compat', 'Shipped', '{"type": "object", "required": ["id"],
  "additionalProperties": false,
  "properties": {"id": {"type": "number", "minimum": 0}, "carrier": {"enum": ["ups", "dhl", "fedex"]},
                 "note": {"type": "string"}}}');
-- a new required property, a narrower type, a tighter bound, a narrower enum are not
SELECT event_log.register_schema('compat', 'Shipped', '{"type": "object", "required": ["id", "note"],
  "properties": {"id": {"type": "number", "minimum": 0}, "note": {"type": "string"}}}');
SELECT event_log.register_schema('compat', 'Shipped', '{"type": "object", "required": ["id"],
  "properties": {"id": {"type": "integer", "minimum": 0}}}');
SELECT event_log.register_schema('compat', 'Shipped', '{"type": "object", "required": ["id"],
  "properties": {"id": {"type": "number", "minimum": 0, "maximum": 100}}}');
SELECT event_log.register_schema('compat', 'Shipped', '{"type": "object", "required": ["id"],
  "properties": {"id": {"type": "number", "minimum": 0}, "carrier": {"enum": ["ups"]}}}');
-- an open content model lets any value through where a property is not
-- described: describing it later is a narrowing (as in Confluent's registry)
SELECT event_log.register_schema('compat', 'Opened', '{"type": "object"}');
SELECT event_log.register_schema('compat', 'Opened', '{"type": "object", "properties": {"x": {"type": "string"}}}');
-- FORWARD: old readers must accept what new writers send
SELECT event_log.set_schema_policy('compat', compatibility => 'FORWARD');
SELECT event_log.register_schema('compat', 'Shipped', '{"type": "object", "required": ["id", "carrier"],
  "additionalProperties": false,
  "properties": {"id": {"type": "integer", "minimum": 1}, "carrier": {"enum": ["ups"]}}}') AS forward_v3;
SELECT event_log.register_schema('compat', 'Shipped', '{"type": "object", "required": ["id"],
  "properties": {"id": {"type": "integer", "minimum": 1}}}');
-- FULL: both ways (the same set of events, written another way);
-- FULL_TRANSITIVE: against every earlier version too (version 2 did not
-- require a carrier)
SELECT event_log.set_schema_policy('compat', compatibility => 'FULL_TRANSITIVE');
SELECT event_log.register_schema('compat', 'Shipped', '{"type": "object", "required": ["id", "carrier"],
  "additionalProperties": false,
  "properties": {"id": {"type": "integer", "minimum": 1}, "carrier": {"const": "ups"}}}');
SELECT event_log.set_schema_policy('compat', compatibility => 'FULL');
SELECT event_log.register_schema('compat', 'Shipped', '{"type": "object", "required": ["id", "carrier"],
  "additionalProperties": false,
  "properties": {"id": {"type": "integer", "minimum": 1}, "carrier": {"const": "ups"}}}') AS same_set;
SELECT event_log.register_schema('compat', 'Shipped', '{"type": "object", "required": ["id", "carrier"],
  "additionalProperties": false,
  "properties": {"id": {"type": "integer", "minimum": 1}, "carrier": {"enum": ["ups", "dhl"]}}}');
-- references, recursion and finite sets are compared too
SELECT event_log.set_schema_policy('compat', compatibility => 'BACKWARD');
SELECT event_log.register_schema('compat', 'Tree', '{"$defs": {"node": {"type": "object",
  "properties": {"v": {"type": "integer"}, "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}},
  "$ref": "#/$defs/node"}');
SELECT event_log.register_schema('compat', 'Tree', '{"$defs": {"node": {"type": "object",
  "properties": {"v": {"type": "number"}, "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}},
  "$ref": "#/$defs/node"}') AS wider_tree;
SELECT event_log.register_schema('compat', 'Tree', '{"$defs": {"node": {"type": "object",
  "properties": {"v": {"type": "number"}, "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
  "required": ["v"]}}, "$ref": "#/$defs/node"}');
-- what cannot be proven is refused, with the keyword named
SELECT event_log.register_schema('compat', 'Opened', '{"oneOf": [{"type": "object"}, {"type": "string"}]}');
-- a type's own mode beats the stream's; NULL removes it
SELECT event_log.set_schema_compatibility('compat', 'Opened', 'NONE');
SELECT event_log.register_schema('compat', 'Opened', '{"type": "object", "properties": {"x": {"type": "string"}}}') AS opened_v2;
SELECT event_log.set_schema_compatibility('compat', 'Opened', NULL);
SELECT * FROM event_log.schema_type_settings;
SELECT stream, unregistered_types, compatibility FROM event_log.schema_settings;
-- with check_history, the events already in the log must pass the new version
INSERT INTO compat (key, type, payload) VALUES ('s1', 'Opened', '{"x": "a"}'), ('s2', 'Opened', '{"x": "bb"}');
SELECT event_log.set_schema_compatibility('compat', 'Opened', 'NONE');
SELECT event_log.register_schema('compat', 'Opened', '{"type": "object", "properties": {"x": {"maxLength": 1}}}', check_history => true);
SELECT event_log.register_schema('compat', 'Opened', '{"type": "object", "properties": {"x": {"maxLength": 2}}}', check_history => true) AS opened_v3;
-- bad modes
SELECT event_log.set_schema_policy('compat', compatibility => 'backward');
SELECT event_log.set_schema_policy('compat');
SELECT event_log.set_schema_compatibility('compat', 'Opened', 'SIDEWAYS');
SELECT event_log.set_schema_compatibility('compat', '', 'NONE');
SELECT event_log.register_schema('compat', 'Opened', '{}', check_history => NULL);
SELECT event_log.drop_stream('compat');

-- Upcasting: an expression per type and version step turns an old payload
-- into the next version's shape; upcast() applies the steps from the version
-- an event recorded up to the latest, for replay(), polls and handlers.
-- Stored events never change.
SELECT event_log.create_stream('acc');
SELECT event_log.register_schema('acc', 'Deposited', '{"type": "object", "required": ["amount"],
  "properties": {"amount": {"type": "number"}}}');
INSERT INTO acc (key, type, payload) VALUES ('a', 'Deposited', '{"amount": 5}'), ('a', 'Deposited', '{"amount": 7}');
SELECT event_log.set_schema_compatibility('acc', 'Deposited', 'NONE');
SELECT event_log.register_schema('acc', 'Deposited', '{"type": "object", "required": ["amount", "currency"],
  "additionalProperties": false,
  "properties": {"amount": {"type": "number"}, "currency": {"enum": ["EUR", "USD"]}}}');
SELECT event_log.register_schema('acc', 'Deposited', '{"type": "object", "required": ["money"],
  "additionalProperties": false, "properties": {"money": {"type": "object", "required": ["amount", "currency"]}}}');
INSERT INTO acc (key, type, payload) VALUES ('a', 'Deposited', '{"money": {"amount": 9, "currency": "USD"}}');
-- without upcasters, an old event cannot be brought to the latest shape
SELECT version, event_log.upcast('acc', type, payload, metadata) FROM event_log.replay('acc', 'a');
-- registering a step runs it on every stored event of that version: the
-- result must match the next version, else the first failure is named
SELECT event_log.register_upcaster('acc', 'Deposited', 1, $$payload || '{"currency": "XXX"}'$$);
SELECT event_log.register_upcaster('acc', 'Deposited', 1, $$payload || '{"currency": "EUR"}'$$);
SELECT event_log.register_upcaster('acc', 'Deposited', 2, $$jsonb_build_object('money', payload)$$);
-- replay() and poll() in the newest shape; the stored payloads are unchanged
SELECT version, event_log.upcast('acc', type, payload, metadata) AS payload, payload AS stored
FROM event_log.replay('acc', 'a');
SELECT seq, event_log.upcast('acc', type, payload, metadata) AS payload FROM event_log.poll('ledger', 'acc');
SELECT from_version, expression FROM event_log.upcasters ORDER BY from_version;
-- bad upcasters: not one expression, an error in it, a version not registered
SELECT event_log.register_upcaster('acc', 'Deposited', 1, $$1; DROP TABLE acc$$);
SELECT event_log.register_upcaster('acc', 'Deposited', 1, $$nosuchcolumn$$);
SELECT event_log.register_upcaster('acc', 'Deposited', 3, $$payload$$);
SELECT event_log.register_upcaster('acc', 'Deposited', 0, $$payload$$);
SELECT event_log.register_upcaster('acc', 'Deposited', 1, NULL);
SELECT event_log.register_upcaster('acc', 'Deposited', 1, $$NULL::jsonb$$);
-- the expression runs as the stream's owner with pg_catalog as its path: a
-- reader's operators change nothing; a reader needs SELECT on the stream
CREATE ROLE regress_el_upcast_reader;
CREATE SCHEMA regress_el_upcast_evil AUTHORIZATION regress_el_upcast_reader;
SET ROLE regress_el_upcast_reader;
SELECT event_log.upcast('acc', 'Deposited', '{"amount": 1}', '{"schema_version": 1}');
RESET ROLE;
GRANT SELECT ON acc TO regress_el_upcast_reader;
SET ROLE regress_el_upcast_reader;
CREATE FUNCTION regress_el_upcast_evil.cat(jsonb, jsonb) RETURNS jsonb LANGUAGE sql AS $$SELECT '{"evil": true}'::jsonb$$;
CREATE OPERATOR regress_el_upcast_evil.|| (LEFTARG = jsonb, RIGHTARG = jsonb, FUNCTION = regress_el_upcast_evil.cat);
SET search_path = regress_el_upcast_evil, pg_catalog, public;
SELECT event_log.upcast('acc', 'Deposited', '{"amount": 1}', '{"schema_version": 1}');
-- no recorded version: as it is; a bad one: an error
SELECT event_log.upcast('acc', 'Deposited', '{"amount": 1}', NULL);
SELECT event_log.upcast('acc', 'Deposited', '{"amount": 1}', '{"schema_version": "one"}');
SELECT event_log.upcast('acc', repeat('T', 300), '{"amount": 1}', '{"schema_version": 1}');
SELECT event_log.upcast('acc', 'Deposited', NULL, '{"schema_version": 1}') IS NULL AS null_payload;
RESET ROLE;
-- settings the expression changes are undone when it returns
SELECT event_log.register_upcaster('acc', 'Deposited', 2,
  $$CASE WHEN pg_catalog.set_config('work_mem', '1234kB', false) IS NOT NULL
         THEN pg_catalog.jsonb_build_object('money', payload) END$$);
SET ROLE regress_el_upcast_reader;
SELECT event_log.upcast('acc', 'Deposited', '{"amount": 1}', '{"schema_version": 1}');
SELECT current_setting('work_mem') <> '1234kB' AS work_mem_kept;
RESET search_path;
RESET ROLE;
DROP SCHEMA regress_el_upcast_evil CASCADE;
SELECT event_log.drop_stream('acc');
SELECT count(*) AS upcasters FROM event_log.upcasters;
DROP ROLE regress_el_upcast_reader;

-- Types without a schema: allowed by default, refused when the stream says so
-- (EL021).
SELECT event_log.set_schema_policy('orders', 'refuse');
INSERT INTO orders (key, type, payload) VALUES ('o7', 'Untyped', '{}');
SELECT event_log.set_schema_policy('orders', 'sometimes');
SELECT event_log.set_schema_policy('orders', NULL, NULL);
SELECT event_log.set_schema_policy('orders', 'allow');
INSERT INTO orders (key, type, payload) VALUES ('o7', 'Untyped', '{}');
-- A stream with no schema at all can refuse every event.
SELECT event_log.create_stream('strict');
SELECT event_log.set_schema_policy('strict', 'refuse');
INSERT INTO strict (key, type, payload) VALUES ('k', 'Anything', '{}');

-- The railway: a stream with a quarantine appends what its schemas refuse
-- there instead, with the errors in the metadata, on INSERT and COPY; the
-- statement goes on with the other rows.  append() and append_events(),
-- which return the event's position in the stream, still refuse.
SELECT event_log.create_stream('ingest', 2);
SELECT event_log.create_stream('ingest_bad');
SELECT event_log.register_schema('ingest', 'Reading', '{"type": "object", "required": ["v"],
  "properties": {"v": {"type": "number", "maximum": 100}}}');
SELECT event_log.set_quarantine('ingest', 'ingest_bad');
SELECT event_log.set_schema_policy('ingest', 'refuse');
INSERT INTO ingest (key, type, payload, metadata) VALUES
  ('a', 'Reading', '{"v": 1}', NULL),
  ('b', 'Reading', '{"v": 101, "w": "x"}', '{"src": "s1"}'),
  ('c', 'Other', '{}', '[1]'),
  ('d', 'Reading', '{"v": 2}', '{"schema_version": 7}');
COPY ingest (key, type, payload, event_id) FROM stdin;
e	Reading	{"v": 1e3}	6f1c1e4e-3c2a-4b8e-9f0a-2b1c3d4e5f60
f	Reading	{"v": 3}	\N
\.
-- the same input again: the quarantine is idempotent by event_id too
COPY ingest (key, type, payload, event_id) FROM stdin;
e	Reading	{"v": 1e3}	6f1c1e4e-3c2a-4b8e-9f0a-2b1c3d4e5f60
\.
SELECT key, payload, metadata FROM ingest ORDER BY key;
SELECT key, type, payload, metadata, event_id = '6f1c1e4e-3c2a-4b8e-9f0a-2b1c3d4e5f60' AS same_id
FROM ingest_bad ORDER BY seq;
SELECT * FROM event_log.append('ingest', 'z', 'Reading', '{"v": 500}');
SELECT count(*) AS z_anywhere FROM (SELECT key FROM ingest UNION ALL SELECT key FROM ingest_bad) e WHERE key = 'z';
-- A retry of an event already in the stream is skipped whatever it holds,
-- by every path, even if the schema refuses it now: not refused, not
-- quarantined.  Its event_id under another key is an error, as always.
INSERT INTO ingest (key, type, payload, event_id)
  VALUES ('r', 'Reading', '{"v": 5}', '0b0e1f3c-8a4d-4c1e-9f2a-7d6b3c9e1a01');
INSERT INTO ingest (key, type, payload, event_id)
  VALUES ('r', 'Reading', '{"v": 500}', '0b0e1f3c-8a4d-4c1e-9f2a-7d6b3c9e1a01');
SELECT version FROM event_log.append('ingest', 'r', 'Reading', '{"v": 500}',
  event_id => '0b0e1f3c-8a4d-4c1e-9f2a-7d6b3c9e1a01');
INSERT INTO ingest (key, type, payload, event_id)
  VALUES ('r2', 'Reading', '{"v": 500}', '0b0e1f3c-8a4d-4c1e-9f2a-7d6b3c9e1a01');
SELECT (SELECT count(*) FROM ingest WHERE event_id = '0b0e1f3c-8a4d-4c1e-9f2a-7d6b3c9e1a01') AS in_stream,
       (SELECT count(*) FROM ingest_bad WHERE event_id = '0b0e1f3c-8a4d-4c1e-9f2a-7d6b3c9e1a01') AS quarantined;
-- an appender needs INSERT on the quarantine too
CREATE ROLE regress_el_ingest;
GRANT INSERT ON ingest TO regress_el_ingest;
SET ROLE regress_el_ingest;
INSERT INTO ingest (key, type, payload) VALUES ('g', 'Reading', '{"v": 4}');
INSERT INTO ingest (key, type, payload) VALUES ('h', 'Reading', '{"v": 400}');
RESET ROLE;
REVOKE ALL ON ingest FROM regress_el_ingest;
DROP ROLE regress_el_ingest;
-- one step only, never the stream itself, NULL removes it; bad input
SELECT event_log.set_quarantine('ingest_bad', 'ingest');
SELECT event_log.set_quarantine('ingest', 'ingest');
SELECT event_log.set_quarantine('ingest', 'pg_class');
SELECT event_log.set_quarantine(NULL, 'ingest_bad');
SELECT event_log.set_quarantine('ingest', NULL);
INSERT INTO ingest (key, type, payload) VALUES ('i', 'Reading', '{"v": 101}');
SELECT event_log.set_quarantine('ingest', 'ingest_bad');
-- dropping the quarantine makes the stream refuse again
SELECT event_log.drop_stream('ingest_bad');
SELECT stream, quarantine FROM event_log.schema_settings WHERE stream = 'ingest'::regclass;
INSERT INTO ingest (key, type, payload) VALUES ('j', 'Reading', '{"v": 101}');
SELECT event_log.drop_stream('ingest');

-- Bad input to register_schema(): nothing registered.
SELECT event_log.register_schema(NULL, 'T', '{}');
SELECT event_log.register_schema('orders', NULL, '{}');
SELECT event_log.register_schema('orders', 'T', NULL);
SELECT event_log.register_schema('orders', '', '{}');
SELECT event_log.register_schema('orders', repeat('t', 257), '{}');
SELECT event_log.register_schema('pg_class', 'T', '{}');
SELECT event_log.register_schema('orders', 'T', '{"maxLenght": 3}');
SELECT count(*) AS schemas FROM event_log.event_schemas WHERE type <> 'OrderPlaced';

-- Privileges: only the stream's owner registers or sets the policy; the
-- history check reads as the caller (SELECT, row-level security).
CREATE ROLE regress_el_schema_appender;
GRANT INSERT ON orders TO regress_el_schema_appender;
SET ROLE regress_el_schema_appender;
SELECT event_log.register_schema('orders', 'OrderPlaced', '{}');
SELECT event_log.set_schema_policy('orders', 'allow');
SELECT * FROM event_log.check_schema_history('orders', 'OrderPlaced');
-- the appender's own schema, operators and functions first on its path
-- change nothing of the check at append
RESET ROLE;
CREATE SCHEMA regress_el_schema_evil AUTHORIZATION regress_el_schema_appender;
-- (the policy call resets the session's cache: the append below reads the
-- registry again, under the hostile path)
SELECT event_log.set_schema_policy('orders', 'allow');
SET ROLE regress_el_schema_appender;
SET search_path = regress_el_schema_evil, public, pg_catalog;
CREATE FUNCTION regress_el_schema_evil.texteq(text, text) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE OPERATOR regress_el_schema_evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = regress_el_schema_evil.texteq);
CREATE FUNCTION regress_el_schema_evil.regeq(regclass, regclass) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE OPERATOR regress_el_schema_evil.= (LEFTARG = regclass, RIGHTARG = regclass, FUNCTION = regress_el_schema_evil.regeq);
INSERT INTO orders (key, type, payload) VALUES ('o8', 'OrderPlaced', '{}');
INSERT INTO orders (key, type, payload) VALUES ('o8', 'Untyped', '{}');
RESET ROLE;
RESET search_path;
DROP SCHEMA regress_el_schema_evil CASCADE;
GRANT SELECT ON orders TO regress_el_schema_appender;
ALTER TABLE orders ENABLE ROW LEVEL SECURITY;
CREATE POLICY only_o4 ON orders FOR SELECT TO regress_el_schema_appender USING (key = 'o4');
CREATE POLICY ins ON orders FOR INSERT TO regress_el_schema_appender WITH CHECK (true);
SET ROLE regress_el_schema_appender;
-- Version 2 refuses o1's event; this role sees only o4's, refused too.
SELECT * FROM event_log.check_schema_history('orders', 'OrderPlaced');
RESET ROLE;
DROP POLICY only_o4 ON orders;
DROP POLICY ins ON orders;
ALTER TABLE orders DISABLE ROW LEVEL SECURITY;

-- drop_stream() takes the stream's schemas and settings with it.
SELECT event_log.drop_stream('orders');
SELECT event_log.drop_stream('strict');
SELECT count(*) AS schemas, (SELECT count(*) FROM event_log.schema_settings) AS settings
FROM event_log.event_schemas;
DROP ROLE regress_el_schema_appender;
DROP EXTENSION event_log;
