-- Projections attacked by hostile roles (docs/security.md, "Projections").
-- Each section says what a role tries and what must hold.
CREATE EXTENSION event_log;
SET client_min_messages = warning;
CREATE ROLE regress_hp_owner;		-- owns the stream
CREATE ROLE regress_hp_proj;		-- owns projections of it
CREATE ROLE regress_hp_app;		-- may only append
CREATE ROLE regress_hp_nobody;		-- may read nothing
CREATE SCHEMA hp AUTHORIZATION regress_hp_owner;
CREATE SCHEMA hp_proj AUTHORIZATION regress_hp_proj;
CREATE SCHEMA evil AUTHORIZATION regress_hp_app;
CREATE SCHEMA hp_private AUTHORIZATION regress_hp_proj;	-- no USAGE for others
GRANT USAGE ON SCHEMA hp, hp_proj TO PUBLIC;
GRANT USAGE ON SCHEMA evil TO PUBLIC;
RESET client_min_messages;

SET ROLE regress_hp_owner;
SELECT event_log.create_stream('hp.orders', 2);
GRANT INSERT ON hp.orders TO regress_hp_app;
GRANT SELECT, TRIGGER ON hp.orders TO regress_hp_proj;
INSERT INTO hp.orders (key, type, payload) VALUES
    ('o1', 'Placed', '{"total": 10}'),
    ('o2', 'Placed', '{"total": 20}');

-- An inline and an async projection, owned by another role.
SET ROLE regress_hp_proj;
SELECT event_log.create_projection('hp_proj.totals', 'hp.orders',
    columns  => 'id text PRIMARY KEY, total int',
    handlers => jsonb_build_object('Placed',
        $$INSERT INTO totals VALUES (e.key, (e.payload->>'total')::int)$$));
SELECT event_log.create_projection('hp_proj.placed', 'hp.orders',
    columns  => 'id text PRIMARY KEY',
    handlers => jsonb_build_object('Placed', $$INSERT INTO placed VALUES (e.key)$$),
    mode => 'async');

-- 1. The appender shadows the operators and functions the extension's own
-- SQL uses, in a schema first on its search_path.  Each hostile version
-- tries to make its author superuser and says that it ran.  Appends (with
-- inline projections firing), and the owner's and a superuser's runs,
-- rebuilds and drops with that search_path, must run none of them.
SET ROLE regress_hp_app;
CREATE FUNCTION evil.hostile(what text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    RAISE WARNING 'hostile % ran as %', what, current_user;
    IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
        EXECUTE 'ALTER ROLE regress_hp_app SUPERUSER';
    END IF;
    RETURN false;
END $$;
CREATE FUNCTION evil.eq_oid(oid, oid) RETURNS boolean
    LANGUAGE sql AS $$SELECT evil.hostile('=(oid, oid)')$$;
CREATE OPERATOR evil.= (FUNCTION = evil.eq_oid, LEFTARG = oid, RIGHTARG = oid);
CREATE FUNCTION evil.eq_regclass(regclass, regclass) RETURNS boolean
    LANGUAGE sql AS $$SELECT evil.hostile('=(regclass, regclass)')$$;
CREATE OPERATOR evil.= (FUNCTION = evil.eq_regclass, LEFTARG = regclass, RIGHTARG = regclass);
CREATE FUNCTION evil.eq_text(text, text) RETURNS boolean
    LANGUAGE sql AS $$SELECT evil.hostile('=(text, text)')$$;
CREATE OPERATOR evil.= (FUNCTION = evil.eq_text, LEFTARG = text, RIGHTARG = text);
CREATE FUNCTION evil.eq_int4(int4, int4) RETURNS boolean
    LANGUAGE sql AS $$SELECT evil.hostile('=(int4, int4)')$$;
CREATE OPERATOR evil.= (FUNCTION = evil.eq_int4, LEFTARG = int4, RIGHTARG = int4);
CREATE FUNCTION evil.eq_int8(int8, int8) RETURNS boolean
    LANGUAGE sql AS $$SELECT evil.hostile('=(int8, int8)')$$;
CREATE OPERATOR evil.= (FUNCTION = evil.eq_int8, LEFTARG = int8, RIGHTARG = int8);
CREATE FUNCTION evil.gt_ts(timestamptz, timestamptz) RETURNS boolean
    LANGUAGE sql AS $$SELECT evil.hostile('>(timestamptz, timestamptz)')$$;
CREATE OPERATOR evil.> (FUNCTION = evil.gt_ts, LEFTARG = timestamptz, RIGHTARG = timestamptz);
CREATE FUNCTION evil.now() RETURNS timestamptz
    LANGUAGE sql AS $$SELECT CASE WHEN evil.hostile('now()') THEN NULL END::timestamptz$$;
CREATE FUNCTION evil.count(anyelement) RETURNS bigint
    LANGUAGE sql AS $$SELECT CASE WHEN evil.hostile('count()') THEN 0 END::bigint$$;
CREATE FUNCTION evil.string_agg(text, text) RETURNS text
    LANGUAGE sql AS $$SELECT CASE WHEN evil.hostile('string_agg()') THEN '' END$$;
CREATE FUNCTION evil.jsonb(text) RETURNS jsonb
    LANGUAGE sql AS $$SELECT CASE WHEN evil.hostile('jsonb()') THEN NULL END::jsonb$$;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA evil TO PUBLIC;
SET search_path = evil, pg_catalog, public;
INSERT INTO hp.orders (key, type, payload) VALUES ('o3', 'Placed', '{"total": 30}');
SELECT shard, version FROM event_log.append('hp.orders', 'o4', 'Placed', '{"total": 40}');
RESET ROLE;
SET search_path = evil, pg_catalog, public;
SET ROLE regress_hp_proj;
SET search_path = evil, pg_catalog, public;
SELECT event_log.run_projections();
SELECT event_log.rebuild_projection('hp_proj.totals');
SELECT event_log.rebuild_projection('hp_proj.placed');
RESET ROLE;
SELECT event_log.run_projections();
SELECT event_log.rebuild_projection('hp_proj.totals');
SELECT event_log.alter_projection('hp_proj.placed',
    handlers => jsonb_build_object('Placed', 'INSERT INTO placed VALUES (e.key) ON CONFLICT DO NOTHING'));
RESET search_path;
SELECT rolname, rolsuper FROM pg_roles WHERE rolname LIKE 'regress_hp%' ORDER BY 1;
SELECT * FROM hp_proj.totals ORDER BY id;
SELECT * FROM hp_proj.placed ORDER BY id;

-- 2. Handlers give the same rows whatever the appending session has set:
-- an inline handler run under odd settings stores what a rebuild stores.
SET ROLE regress_hp_proj;
SELECT event_log.create_projection('hp_proj.rendered', 'hp.orders',
    columns  => 'id text PRIMARY KEY, at text, lit text, num text, span text, d text',
    handlers => jsonb_build_object('Rendered', $$
        INSERT INTO rendered VALUES (e.key,
            '2024-03-01 12:00:00+00'::timestamptz::text, 'a\b',
            (0.1::float8 + 0.2::float8)::text, '1 day 02:00:00'::interval::text,
            to_char(1234.5, '9G999D9') || quote_ident('q'))$$));
SET ROLE regress_hp_owner;
SET standard_conforming_strings = off;
SET escape_string_warning = off;
SET TimeZone = 'America/New_York';
SET DateStyle = 'German, DMY';
SET IntervalStyle = 'sql_standard';
SET extra_float_digits = -3;
SET quote_all_identifiers = on;
INSERT INTO hp.orders (key, type, payload) VALUES ('r1', 'Rendered', '{}');
RESET standard_conforming_strings;
RESET escape_string_warning;
RESET TimeZone;
RESET DateStyle;
RESET IntervalStyle;
RESET extra_float_digits;
RESET quote_all_identifiers;
SET ROLE regress_hp_proj;
CREATE TABLE hp_proj.before AS SELECT * FROM hp_proj.rendered;
SELECT event_log.rebuild_projection('hp_proj.rendered');
SELECT * FROM hp_proj.rendered;
SELECT count(*) AS same_after_rebuild
  FROM hp_proj.rendered r JOIN hp_proj.before b USING (id, at, lit, num, span, d);
DROP TABLE hp_proj.before;
SELECT event_log.drop_projection('hp_proj.rendered');

-- 3. Privileges are checked on every read, not only at creation.  After
-- the stream's owner revokes SELECT, the projection owner's inline
-- projection stops appends (as a foreign key would), its async one records
-- the refusal without reading, and neither can be rebuilt.
SET ROLE regress_hp_owner;
REVOKE SELECT ON hp.orders FROM regress_hp_proj;
INSERT INTO hp.orders (key, type, payload) VALUES ('o5', 'Placed', '{"total": 50}');
SET ROLE regress_hp_proj;
SELECT event_log.rebuild_projection('hp_proj.totals');
SELECT event_log.run_projections();
SELECT shard, error FROM event_log.projection_lag
 WHERE projection = 'hp_proj.placed'::regclass ORDER BY shard;
SET ROLE regress_hp_owner;
GRANT SELECT ON hp.orders TO regress_hp_proj;
INSERT INTO hp.orders (key, type, payload) VALUES ('o5', 'Placed', '{"total": 50}');
SET ROLE regress_hp_proj;
SELECT event_log.alter_projection('hp_proj.placed');
SELECT event_log.run_projections();
SELECT * FROM hp_proj.placed ORDER BY id;

-- 4. Row-level security that restricts the projection's owner: refused
-- clearly (a projection cannot be complete under a filter), on creation,
-- rebuild and every run.
SET ROLE regress_hp_owner;
ALTER TABLE hp.orders ENABLE ROW LEVEL SECURITY;
CREATE POLICY only_o1 ON hp.orders FOR SELECT TO regress_hp_proj USING (key = 'o1');
CREATE POLICY owner_all ON hp.orders FOR ALL TO regress_hp_owner USING (true);
CREATE POLICY app_insert ON hp.orders FOR INSERT TO regress_hp_app WITH CHECK (true);
SET ROLE regress_hp_proj;
SELECT count(*) AS rows_the_policy_shows FROM hp.orders;
SELECT event_log.create_projection('hp_proj.all_orders', 'hp.orders',
    columns  => 'id text PRIMARY KEY',
    handlers => jsonb_build_object('*', $$INSERT INTO all_orders VALUES (e.key) ON CONFLICT DO NOTHING$$),
    mode => 'async');
SELECT event_log.rebuild_projection('hp_proj.placed');
SET ROLE regress_hp_owner;
INSERT INTO hp.orders (key, type, payload) VALUES ('o6', 'Placed', '{"total": 60}');
SET ROLE regress_hp_proj;
SELECT event_log.run_projections();
SELECT count(*) AS placed_rows FROM hp_proj.placed;
SET ROLE regress_hp_owner;
DROP POLICY only_o1 ON hp.orders;
DROP POLICY owner_all ON hp.orders;
DROP POLICY app_insert ON hp.orders;
ALTER TABLE hp.orders DISABLE ROW LEVEL SECURITY;
SET ROLE regress_hp_proj;
SELECT event_log.alter_projection('hp_proj.placed');
SELECT event_log.run_projections();

-- 5. The error that stopped a shard may quote an event: only roles that
-- may read the stream see it.
SET ROLE regress_hp_proj;
SELECT event_log.create_projection('hp_proj.ssn', 'hp.orders',
    columns  => 'id text PRIMARY KEY, ssn int',
    handlers => jsonb_build_object('Registered',
        $$INSERT INTO ssn VALUES (e.key, (e.payload->>'ssn')::int)$$),
    mode => 'async');
SET ROLE regress_hp_owner;
INSERT INTO hp.orders (key, type, payload) VALUES ('p1', 'Registered', '{"ssn": "SSN 078-05-1120"}');
SET ROLE regress_hp_proj;
SET client_min_messages = error;
SELECT event_log.run_projections('hp_proj.ssn');
RESET client_min_messages;
SELECT error FROM event_log.projection_lag
 WHERE projection = 'hp_proj.ssn'::regclass AND error IS NOT NULL;
SET ROLE regress_hp_nobody;
SELECT error FROM event_log.projection_lag
 WHERE projection = 'hp_proj.ssn'::regclass AND error IS NOT NULL;
SELECT error FROM event_log.projection_offsets;
SELECT error_seq FROM event_log.projection_offsets;
SELECT count(*) > 0 AS offsets_listed FROM event_log.projection_offsets
 WHERE projection = 'hp_proj.ssn'::regclass;
SET ROLE regress_hp_proj;
SELECT event_log.drop_projection('hp_proj.ssn');

-- 6. An inline projection whose handler always fails cannot hold the
-- stream hostage: its stream's owner may drop it.  Nobody else may.
SET ROLE regress_hp_proj;
SELECT event_log.create_projection('hp_proj.hostage', 'hp.orders',
    columns  => 'id text',
    handlers => jsonb_build_object('*',
        $$SELECT 1 / (SELECT count(*) FROM (SELECT WHERE e.key NOT LIKE 'h%') x)::int$$));
SET ROLE regress_hp_owner;
INSERT INTO hp.orders (key, type, payload) VALUES ('h1', 'Placed', '{"total": 70}');
SET ROLE regress_hp_app;
SELECT event_log.drop_projection('hp_proj.hostage');
SET ROLE regress_hp_owner;
SELECT event_log.drop_projection('hp_proj.hostage');
INSERT INTO hp.orders (key, type, payload) VALUES ('h1', 'Placed', '{"total": 70}');
SELECT to_regclass('hp_proj.hostage') AS view_left, to_regclass('hp_proj."hostage$1"') AS table_left;

-- 7. Handlers are plain DML: SELECT ... INTO (which creates a table), empty
-- handlers and session-level advisory locks (which would outlive the
-- handler in the appender's session) are refused at creation.
SET ROLE regress_hp_proj;
SELECT event_log.create_projection('hp_proj.bad', 'hp.orders', columns => 'id text',
    handlers => jsonb_build_object('Placed', $$SELECT e.key INTO hp_proj.sneaky$$));
SELECT event_log.create_projection('hp_proj.bad', 'hp.orders', columns => 'id text',
    handlers => jsonb_build_object('Placed', ''));
SELECT event_log.create_projection('hp_proj.bad', 'hp.orders', columns => 'id text',
    handlers => jsonb_build_object('Placed', '  ; -- nothing'));
SELECT event_log.create_projection('hp_proj.bad', 'hp.orders', columns => 'id text',
    handlers => jsonb_build_object('Placed', $$SELECT pg_advisory_lock(42)$$));
SELECT event_log.create_projection('hp_proj.bad', 'hp.orders', columns => 'id text',
    handlers => jsonb_build_object('Placed',
        $$INSERT INTO bad SELECT e.key FROM (SELECT pg_try_advisory_lock(1, 2)) l$$));
SELECT event_log.create_projection('hp_proj.bad', 'hp.orders', columns => 'id text',
    handlers => jsonb_build_object('Placed', $$SELECT pg_advisory_unlock_all()$$));
SELECT to_regclass('hp_proj.sneaky') AS sneaky, to_regclass('hp_proj.bad') AS bad;
-- Transaction-level locks are fine.
SELECT event_log.create_projection('hp_proj.good', 'hp.orders', columns => 'id text',
    handlers => jsonb_build_object('Placed',
        $$SELECT pg_advisory_xact_lock(42); INSERT INTO good VALUES (e.key)$$));
SELECT count(*) FROM hp_proj.good;
SELECT event_log.drop_projection('hp_proj.good');

-- 8. A reducer that returns NULL is an error, not a silent reset.
SELECT event_log.create_projection('hp_proj.state', 'hp.orders',
    reducer => $$CASE WHEN e.type <> 'Shipped' THEN state || jsonb_build_object('v', e.version) END$$,
    initial => '{}');
SET ROLE regress_hp_owner;
INSERT INTO hp.orders (key, type, payload) VALUES ('o1', 'Shipped', '{}');
INSERT INTO hp.orders (key, type, payload) VALUES ('o1', 'Noted', '{}');
SET ROLE regress_hp_proj;
SELECT key, version, state FROM hp_proj.state WHERE key = 'o1';
SELECT event_log.drop_projection('hp_proj.state');

-- 9. A handler that runs too long for one event is stopped by
-- event_log.handler_timeout in async runs: its event stops its shard,
-- recorded with SQLSTATE EL010, and other projections go on.
SELECT event_log.create_projection('hp_proj.slow', 'hp.orders',
    columns  => 'id text',
    handlers => jsonb_build_object('Slow', $$SELECT pg_sleep(5)$$),
    mode => 'async');
SET ROLE regress_hp_owner;
INSERT INTO hp.orders (key, type, payload) VALUES ('s1', 'Slow', '{}'), ('o8', 'Placed', '{"total": 80}');
RESET ROLE;
SET event_log.handler_timeout = '200ms';
SET client_min_messages = error;
SELECT event_log.run_projections() >= 1 AS others_went_on;
RESET client_min_messages;
SELECT shard, error FROM event_log.projection_lag
 WHERE projection = 'hp_proj.slow'::regclass AND error IS NOT NULL;
SELECT * FROM hp_proj.placed WHERE id = 'o8';
RESET event_log.handler_timeout;

-- 10. Streams with columns after the contract's (added, and added then
-- dropped) feed inline, async and rebuilt projections alike.
SET ROLE regress_hp_owner;
ALTER TABLE hp.orders ADD COLUMN note text, ADD COLUMN gone int, ADD COLUMN extra numeric DEFAULT 1.5;
ALTER TABLE hp.orders DROP COLUMN gone;
INSERT INTO hp.orders (key, type, payload, note) VALUES ('o9', 'Placed', '{"total": 90}', 'wide');
SET ROLE regress_hp_proj;
SELECT event_log.run_projections('hp_proj.placed');
SELECT * FROM hp_proj.placed WHERE id = 'o9';
SELECT * FROM hp_proj.totals WHERE id = 'o9';
SELECT event_log.rebuild_projection('hp_proj.placed') AS replayed;
SELECT event_log.rebuild_projection('hp_proj.totals') AS replayed;
SELECT count(*) FROM hp_proj.totals;

-- 11. The owner's code reachable from a build table's DDL (a generated
-- column's expression) runs restricted: it cannot queue a trigger that
-- would fire at commit as whoever ran the build, so such columns can never
-- be stored for a superuser's routine rebuild to run.
SET ROLE regress_hp_proj;
CREATE TABLE hp_proj.armed (x int);
CREATE FUNCTION hp_proj.up() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
        EXECUTE 'ALTER ROLE regress_hp_proj SUPERUSER';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER armed AFTER INSERT ON hp_proj.armed
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION hp_proj.up();
CREATE FUNCTION hp_proj.arm() RETURNS int LANGUAGE plpgsql AS $$
BEGIN INSERT INTO hp_proj.armed VALUES (1); RETURN 0; END $$;
CREATE FUNCTION hp_proj.k(int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN RETURN hp_proj.arm(); END $$;
SELECT event_log.create_projection('hp_proj.trap', 'hp.orders',
    columns  => 'id text',
    handlers => jsonb_build_object('Placed', 'INSERT INTO trap VALUES (e.key)'),
    mode => 'async');
SELECT event_log.rebuild_projection('hp_proj.trap',
    columns => 'id text, g int GENERATED ALWAYS AS (hp_proj.k(1)) STORED');
RESET ROLE;
SELECT event_log.rebuild_projection('hp_proj.trap');
SELECT rolname, rolsuper FROM pg_roles WHERE rolname = 'regress_hp_proj';

-- 12. An inline handler's error shown to an appender that does not act as
-- the projection's owner names the projection and event type, not the
-- owner's data (a constraint's failing row); the server log has it all.
SET ROLE regress_hp_proj;
SELECT event_log.create_projection('hp_proj.balances', 'hp.orders',
    columns  => 'id text PRIMARY KEY, address text, balance int CHECK (balance >= 0)',
    handlers => jsonb_build_object(
        'Deposit', $$INSERT INTO balances VALUES (e.key, e.payload->>'address', (e.payload->>'amount')::int)$$,
        'Withdraw', $$UPDATE balances SET balance = balance - (e.payload->>'amount')::int WHERE id = e.key$$));
SET ROLE regress_hp_owner;
INSERT INTO hp.orders (key, type, payload) VALUES ('alice', 'Deposit', '{"address": "12 Secret Lane", "amount": 100}');
SET ROLE regress_hp_app;
INSERT INTO hp.orders (key, type, payload) VALUES ('alice', 'Withdraw', '{"amount": 1000000}');
SET ROLE regress_hp_proj;
SELECT event_log.drop_projection('hp_proj.balances');

-- 13. A handler that raises a "circumstance" SQLSTATE itself (serialization
-- failure) stops its own shard like any handler error; the run goes on with
-- the other projections.
SET ROLE regress_hp_proj;
CREATE FUNCTION hp_proj.boom() RETURNS int LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'not really a conflict' USING ERRCODE = '40001'; END $$;
SELECT event_log.create_projection('hp_proj.boom', 'hp.orders',
    columns  => 'id text',
    handlers => jsonb_build_object('Boom', 'SELECT hp_proj.boom()'),
    mode => 'async');
SET ROLE regress_hp_owner;
INSERT INTO hp.orders (key, type, payload) VALUES ('b1', 'Boom', '{}'), ('o10', 'Placed', '{"total": 100}');
SET ROLE regress_hp_proj;
SET client_min_messages = error;
SELECT event_log.run_projections() >= 1 AS others_went_on;
RESET client_min_messages;
SELECT error FROM event_log.projection_lag
 WHERE projection = 'hp_proj.boom'::regclass AND error IS NOT NULL;
SELECT * FROM hp_proj.placed WHERE id = 'o10';
-- Nor does an internal error of a function PostgreSQL raises for it.
SET ROLE regress_hp_proj;
CREATE TABLE hp_proj.x (a int, b int, c int, d int, e int CONSTRAINT hp_xe CHECK (e > 0));
SELECT event_log.alter_projection('hp_proj.boom', handlers => jsonb_build_object(
    'Boom', $$SELECT pg_get_expr(conbin, 'pg_am'::regclass) FROM pg_constraint WHERE conname = 'hp_xe'$$));
SET ROLE regress_hp_owner;
INSERT INTO hp.orders (key, type, payload) VALUES ('o11', 'Placed', '{"total": 110}');
SET ROLE regress_hp_proj;
SET client_min_messages = error;
SELECT event_log.run_projections() >= 1 AS others_went_on;
RESET client_min_messages;
SELECT error FROM event_log.projection_lag
 WHERE projection = 'hp_proj.boom'::regclass AND error IS NOT NULL;
SELECT * FROM hp_proj.placed WHERE id = 'o11';
SELECT event_log.drop_projection('hp_proj.boom');

-- 14. The stream's owner can drop a projection of its stream that lives in
-- a schema it may not use, by the oid event_log.projections lists, also
-- after the view was moved to another schema; and a projection's owner
-- needs USAGE on the stream's schema, as a query would.
SET ROLE regress_hp_proj;
SELECT event_log.create_projection('hp_proj.stuck', 'hp.orders',
    columns  => 'id text',
    handlers => jsonb_build_object('*', $$SELECT 1 / (SELECT count(*) FROM (SELECT WHERE e.key NOT LIKE 'z%') x)::int$$));
ALTER VIEW hp_proj.stuck SET SCHEMA hp_private;
SET ROLE regress_hp_owner;
INSERT INTO hp.orders (key, type, payload) VALUES ('z1', 'Placed', '{"total": 1}');
SELECT event_log.drop_projection('hp_private.stuck');
SELECT event_log.drop_projection(projection) FROM event_log.projections
 WHERE stream = 'hp.orders'::regclass AND build_table::text LIKE '%stuck%';
INSERT INTO hp.orders (key, type, payload) VALUES ('z1', 'Placed', '{"total": 1}');
SELECT count(*) AS stuck_left FROM pg_class WHERE relname LIKE 'stuck%';
RESET ROLE;
REVOKE USAGE ON SCHEMA hp FROM PUBLIC;
GRANT USAGE ON SCHEMA hp TO regress_hp_app;
SET ROLE regress_hp_proj;
SELECT event_log.rebuild_projection('hp_proj.placed');
RESET ROLE;
GRANT USAGE ON SCHEMA hp TO PUBLIC;

-- 15. The extension's trigger functions run only as the triggers it made:
-- attached by anybody to a table of its own (with the contract's names but
-- other types, or with the right types), they refuse to run, so they can
-- neither crash the server nor feed made-up events into a projection.
SET ROLE regress_hp_nobody;
CREATE TEMP TABLE fake (shard int, seq bigint, key text, version bigint, type int8,
    payload jsonb, metadata jsonb, event_id uuid, recorded_at timestamptz);
DO $$ BEGIN EXECUTE format('CREATE TRIGGER t AFTER INSERT ON fake FOR EACH ROW EXECUTE FUNCTION event_log.project(%L)',
                            'hp_proj.totals'::regclass::oid); END $$;
INSERT INTO fake VALUES (0, 1, 'k', 1, 12345678, '{}', NULL, gen_random_uuid(), now());
CREATE TEMP TABLE fake2 (shard int, seq bigint, key text, version bigint, type text,
    payload jsonb, metadata jsonb, event_id uuid, recorded_at timestamptz);
GRANT SELECT ON fake2 TO PUBLIC;
DO $$ BEGIN EXECUTE format('CREATE TRIGGER t AFTER INSERT ON fake2 FOR EACH ROW EXECUTE FUNCTION event_log.project(%L)',
                            'hp_proj.totals'::regclass::oid); END $$;
INSERT INTO fake2 VALUES (0, 1, 'eve', 1, 'Placed', '{"total": 777}', NULL, gen_random_uuid(), now());
CREATE TEMP TABLE fake3 (shard int, seq bigint, key int8, version bigint, type text,
    payload jsonb, metadata jsonb, event_id uuid, recorded_at timestamptz);
CREATE TRIGGER a BEFORE INSERT ON fake3 FOR EACH ROW EXECUTE FUNCTION event_log.assign_position('1');
INSERT INTO fake3 (key, type, payload) VALUES (123456789, 'T', '{}');
RESET ROLE;
SELECT count(*) AS eve_rows FROM hp_proj.totals WHERE id = 'eve';
DROP TABLE pg_temp.fake, pg_temp.fake2, pg_temp.fake3;

-- 16. DDL the extension runs as the stream's owner (the inline trigger's
-- ENABLE ALWAYS, its DROP) resolves nothing in the projection owner's
-- schema, even for a DBA's event trigger that compares an oid with a
-- regclass unqualified (pg_catalog has no exact =(oid, regclass)).  The
-- trap may run as its own author (for the build table's CREATE TABLE,
-- which resolves column types in the projection's schema), never as
-- anybody else.
SET ROLE regress_hp_proj;
CREATE FUNCTION hp_proj.oidtrap(oid, regclass) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    RAISE WARNING 'oid trap ran as %', current_user;
    IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) current_user) THEN
        EXECUTE 'ALTER ROLE regress_hp_proj SUPERUSER';
    END IF;
    RETURN $1 OPERATOR(pg_catalog.=) $2::oid;
END $$;
CREATE OPERATOR hp_proj.= (LEFTARG = oid, RIGHTARG = regclass, FUNCTION = hp_proj.oidtrap);
RESET ROLE;
CREATE FUNCTION public.regress_audit() RETURNS event_trigger LANGUAGE plpgsql AS $$
DECLARE n int;
BEGIN
    SELECT count(*) INTO n FROM pg_event_trigger_ddl_commands() WHERE classid = 'pg_class'::regclass;
END $$;
CREATE EVENT TRIGGER regress_audit ON ddl_command_end EXECUTE FUNCTION public.regress_audit();
SET ROLE regress_hp_proj;
SELECT event_log.create_projection('hp_proj.audited', 'hp.orders',
    columns  => 'id text',
    handlers => jsonb_build_object('Placed', 'INSERT INTO audited VALUES (e.key)'));
SELECT event_log.drop_projection('hp_proj.audited');
RESET ROLE;
DROP EVENT TRIGGER regress_audit;
DROP FUNCTION public.regress_audit();
SELECT rolname, rolsuper FROM pg_roles WHERE rolname = 'regress_hp_proj';

-- 17. A projection's owner cannot keep a failing inline projection in
-- place with a view that depends on it: the stream's owner drops the
-- projection (its trigger goes, the stream is free), and the view and
-- table that others depend on stay as plain relations of their owner; the
-- projection's owner gets the usual refusal.
SET ROLE regress_hp_proj;
SELECT event_log.create_projection('hp_proj.clingy', 'hp.orders',
    columns  => 'id text',
    handlers => jsonb_build_object('*', $$SELECT 1 / (SELECT count(*) FROM (SELECT WHERE e.key NOT LIKE 'y%') x)::int$$));
CREATE VIEW hp_proj.clingy_dep AS SELECT * FROM hp_proj.clingy;
SELECT event_log.drop_projection('hp_proj.clingy');
SET ROLE regress_hp_owner;
SELECT event_log.drop_projection('hp_proj.clingy');
INSERT INTO hp.orders (key, type, payload) VALUES ('y1', 'Placed', '{"total": 1}');
SELECT to_regclass('hp_proj.clingy_dep') AS dependent_left;
SET ROLE regress_hp_proj;
DROP VIEW hp_proj.clingy_dep, hp_proj.clingy;
DROP TABLE hp_proj."clingy$1";
-- Nor by taking away its own USAGE on the projection's schema, which the
-- drop of the view and table (run as their owner) needs.
SELECT event_log.create_projection('hp_private.locked_in', 'hp.orders',
    columns  => 'id text',
    handlers => jsonb_build_object('*', $$SELECT 1 / (SELECT count(*) FROM (SELECT WHERE e.key NOT LIKE 'x%') x)::int$$));
REVOKE USAGE ON SCHEMA hp_private FROM regress_hp_proj;
SET ROLE regress_hp_owner;
INSERT INTO hp.orders (key, type, payload) VALUES ('x1', 'Placed', '{"total": 1}');
SELECT event_log.drop_projection(projection) FROM event_log.projections
 WHERE build_table::text LIKE '%locked_in%';
INSERT INTO hp.orders (key, type, payload) VALUES ('x1', 'Placed', '{"total": 1}');
RESET ROLE;
GRANT USAGE ON SCHEMA hp_private TO regress_hp_proj;
SET ROLE regress_hp_proj;
DROP VIEW hp_private.locked_in;
DROP TABLE hp_private."locked_in$1";
-- Objects of a third role that depend on a projection are not the stream
-- owner's to drop: the projection goes, its view and table stay as plain
-- relations of their owner.
SET ROLE regress_hp_proj;
SELECT event_log.create_projection('hp_proj.shared', 'hp.orders',
    columns  => 'id text',
    handlers => jsonb_build_object('Placed', 'INSERT INTO shared VALUES (e.key)'));
GRANT SELECT ON hp_proj.shared TO regress_hp_nobody;
SET ROLE regress_hp_nobody;
CREATE VIEW pg_temp.nobody_view AS SELECT * FROM hp_proj.shared;
SET ROLE regress_hp_owner;
SELECT event_log.drop_projection('hp_proj.shared');
SELECT count(*) AS still_a_projection FROM event_log.projections
 WHERE projection::text = 'hp_proj.shared';
INSERT INTO hp.orders (key, type, payload) VALUES ('o12', 'Placed', '{"total": 1}');
SET ROLE regress_hp_nobody;
SELECT count(*) > 0 AS third_party_view_works FROM pg_temp.nobody_view;
RESET ROLE;
DROP VIEW pg_temp.nobody_view;
DROP VIEW hp_proj.shared;
DROP TABLE hp_proj."shared$1";

-- 18a. Trigger names of inline projections are reserved on streams: a role
-- with TRIGGER cannot squat the name of a future projection.
SET ROLE regress_hp_proj;
CREATE FUNCTION hp_proj.noop() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$;
CREATE TRIGGER event_log_projection_999999 AFTER TRUNCATE ON hp.orders
    FOR EACH STATEMENT EXECUTE FUNCTION hp_proj.noop();

-- 18. Checkpoints and their times tell how many events a shard has and
-- when: roles that may not read the stream see none of them.
SET ROLE regress_hp_nobody;
SELECT shard, applied_seq, lag_events, lag_time, applied_at, error_seq
  FROM event_log.projection_lag WHERE projection = 'hp_proj.placed'::regclass ORDER BY shard;
SELECT seq FROM event_log.projection_offsets;
SET ROLE regress_hp_proj;
SELECT shard, applied_seq > 0 AS has_applied FROM event_log.projection_lag
 WHERE projection = 'hp_proj.placed'::regclass ORDER BY shard;

RESET ROLE;
SET client_min_messages = warning;
SELECT event_log.drop_projection(p.projection::text) FROM event_log.projections p;
SELECT event_log.drop_stream('hp.orders');
DROP SCHEMA hp, hp_proj, hp_private, evil CASCADE;
DROP ROLE regress_hp_owner, regress_hp_proj, regress_hp_app, regress_hp_nobody;
DROP EXTENSION event_log;
