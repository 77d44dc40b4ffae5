-- Consumer groups against a hostile role.  The group catalog is written as
-- the extension's owner (a superuser), so nothing of the caller's may run
-- inside those statements: not its search_path, operators, functions,
-- types or collations.  And poll() reads the stream with the caller's
-- current privileges and row-level security, every time.
CREATE EXTENSION event_log;
SET client_min_messages = notice;
SELECT current_user AS superuser \gset
CREATE ROLE regress_el_hostile LOGIN;
CREATE SCHEMA hostile AUTHORIZATION regress_el_hostile;
SELECT event_log.create_stream('public.hs', 2);
GRANT SELECT, INSERT ON hs TO regress_el_hostile;
INSERT INTO hs (key, type, payload)
SELECT 'k' || i, 'T', '{}' FROM generate_series(1, 6) i;

-- The hostile role shadows every operator, function, type and collation
-- the consumer functions' catalog statements use, in a schema it puts
-- before pg_catalog on its search_path.  Each shadow calls alarm(), which
-- counts its calls in a sequence (that no rollback undoes), says so, and,
-- should it find itself running as a superuser, makes the role one.
\c - regress_el_hostile
SET search_path = hostile;
CREATE SEQUENCE calls;
CREATE FUNCTION alarm(what text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_catalog.nextval('hostile.calls');
    RAISE NOTICE 'hostile % ran as %', what, current_user;
    IF (SELECT rolsuper FROM pg_catalog.pg_roles
        WHERE rolname OPERATOR(pg_catalog.=) current_user) THEN
        EXECUTE 'ALTER ROLE regress_el_hostile SUPERUSER';
    END IF;
    RETURN true;
END $$;
-- Operators whose argument types match exactly: they would beat
-- pg_catalog's, wherever pg_catalog is on the path.
CREATE FUNCTION op(regclass, regclass) RETURNS boolean LANGUAGE sql
    AS $$ SELECT alarm('=(regclass, regclass)') $$;
CREATE OPERATOR = (FUNCTION = op, LEFTARG = regclass, RIGHTARG = regclass);
CREATE FUNCTION op(text, text) RETURNS boolean LANGUAGE sql
    AS $$ SELECT alarm('=(text, text)') $$;
CREATE OPERATOR = (FUNCTION = op, LEFTARG = text, RIGHTARG = text);
CREATE FUNCTION op(int, int) RETURNS boolean LANGUAGE sql
    AS $$ SELECT alarm('=(int, int)') $$;
CREATE OPERATOR = (FUNCTION = op, LEFTARG = int, RIGHTARG = int);
CREATE FUNCTION op(bigint, bigint) RETURNS boolean LANGUAGE sql
    AS $$ SELECT alarm('=(bigint, bigint)') $$;
CREATE OPERATOR = (FUNCTION = op, LEFTARG = bigint, RIGHTARG = bigint);
CREATE FUNCTION lt(bigint, bigint) RETURNS boolean LANGUAGE sql
    AS $$ SELECT alarm('<(bigint, bigint)') $$;
CREATE OPERATOR < (FUNCTION = lt, LEFTARG = bigint, RIGHTARG = bigint);
CREATE FUNCTION lt(timestamptz, timestamptz) RETURNS boolean LANGUAGE sql
    AS $$ SELECT alarm('<(timestamptz, timestamptz)') $$;
CREATE OPERATOR < (FUNCTION = lt, LEFTARG = timestamptz, RIGHTARG = timestamptz);
CREATE FUNCTION gt(timestamptz, timestamptz) RETURNS boolean LANGUAGE sql
    AS $$ SELECT alarm('>(timestamptz, timestamptz)') $$;
CREATE OPERATOR > (FUNCTION = gt, LEFTARG = timestamptz, RIGHTARG = timestamptz);
CREATE FUNCTION ge(timestamptz, timestamptz) RETURNS boolean LANGUAGE sql
    AS $$ SELECT alarm('>=(timestamptz, timestamptz)') $$;
CREATE OPERATOR >= (FUNCTION = ge, LEFTARG = timestamptz, RIGHTARG = timestamptz);
CREATE FUNCTION plus(timestamptz, interval) RETURNS timestamptz LANGUAGE sql
    AS $$ SELECT CASE WHEN alarm('+(timestamptz, interval)') THEN $1 END $$;
CREATE OPERATOR + (FUNCTION = plus, LEFTARG = timestamptz, RIGHTARG = interval);
CREATE FUNCTION times(int, interval) RETURNS interval LANGUAGE sql
    AS $$ SELECT CASE WHEN alarm('*(int, interval)') THEN $2 END $$;
CREATE OPERATOR * (FUNCTION = times, LEFTARG = int, RIGHTARG = interval);
CREATE FUNCTION minus(int, int) RETURNS int LANGUAGE sql
    AS $$ SELECT CASE WHEN alarm('-(int, int)') THEN 0 END $$;
CREATE OPERATOR - (FUNCTION = minus, LEFTARG = int, RIGHTARG = int);
CREATE FUNCTION minus(bigint, int) RETURNS bigint LANGUAGE sql
    AS $$ SELECT CASE WHEN alarm('-(bigint, int)') THEN 0::bigint END $$;
CREATE OPERATOR - (FUNCTION = minus, LEFTARG = bigint, RIGHTARG = int);
-- Functions with pg_catalog's exact signatures: they win when the path
-- names this schema before pg_catalog.
CREATE FUNCTION clock_timestamp() RETURNS timestamptz LANGUAGE sql
    AS $$ SELECT CASE WHEN alarm('clock_timestamp()') THEN now() END $$;
CREATE FUNCTION pg_backend_pid() RETURNS int LANGUAGE sql
    AS $$ SELECT CASE WHEN alarm('pg_backend_pid()') THEN 0 END $$;
CREATE FUNCTION generate_series(int, int) RETURNS SETOF int LANGUAGE sql
    AS $$ SELECT 0 WHERE alarm('generate_series(int, int)') $$;
CREATE FUNCTION unnest(int[]) RETURNS SETOF int LANGUAGE sql
    AS $$ SELECT 0 WHERE alarm('unnest(int[])') $$;
CREATE FUNCTION unnest(bigint[]) RETURNS SETOF bigint LANGUAGE sql
    AS $$ SELECT 0::bigint WHERE alarm('unnest(bigint[])') $$;
CREATE FUNCTION nextval(regclass) RETURNS bigint LANGUAGE sql
    AS $$ SELECT CASE WHEN alarm('nextval(regclass)') THEN 1::bigint END $$;
CREATE FUNCTION agg(bigint, bigint) RETURNS bigint LANGUAGE sql
    AS $$ SELECT CASE WHEN alarm('min/max(bigint)') THEN $2 END $$;
CREATE AGGREGATE min(bigint) (SFUNC = agg, STYPE = bigint);
CREATE AGGREGATE max(bigint) (SFUNC = agg, STYPE = bigint);
-- Types and a collation of the same names as the ones used.
CREATE DOMAIN oid AS pg_catalog.oid CHECK (alarm('type oid'));
CREATE DOMAIN regrole AS pg_catalog.regrole CHECK (alarm('type regrole'));
CREATE DOMAIN regclass AS pg_catalog.regclass CHECK (alarm('type regclass'));
CREATE DOMAIN int4 AS pg_catalog.int4 CHECK (alarm('type int4'));
CREATE DOMAIN "interval" AS pg_catalog.interval CHECK (alarm('type interval'));
CREATE COLLATION "C" FROM pg_catalog."C";

-- A fresh session (the catalog statements are prepared once per backend)
-- with the hostile schema first on its path uses every consumer function.
\c - regress_el_hostile
SET search_path = hostile, pg_catalog, public;
SET client_min_messages = notice;
SELECT shard, seq FROM event_log.poll('g', 'hs', 2) ORDER BY shard, seq;
SELECT event_log.commit_offset('g', 'hs', 0, 1);
SELECT event_log.commit_offset('g', 'hs', 1, 3);
SELECT event_log.committed_offset('g', 'hs', 1);
SELECT * FROM event_log.reset_offsets('g', 'hs', to_time => '2000-01-01');
SELECT * FROM event_log.reset_offsets('g', 'hs', to_position => 'end');
SELECT * FROM event_log.reset_offsets('g', 'hs', to_seq => 1, only_shard => 0);
SELECT count(*) FROM event_log.poll('g', 'hs', auto_commit => true);
SELECT count(*) FROM event_log.poll('g', 'hs', auto_commit => true);
-- Members join, share the shards, expire and are cleaned up.
SET event_log.lease_timeout = '100ms';
SELECT count(*) FROM event_log.poll('g', 'hs', member => 'm1');
SELECT pg_sleep(0.2);
SELECT count(*) FROM event_log.poll('g', 'hs', member => 'm2');
SELECT regexp_replace(member, '^[0-9]+@.*', '<session>') AS member
FROM event_log.consumer_members ORDER BY 1;
-- Kept plans analyzed again after an invalidation (DISCARD PLANS is open to
-- everybody) still mean what they meant.
DISCARD PLANS;
SELECT count(*) FROM event_log.poll('g', 'hs', member => 'm2', wait => '10ms');
SELECT event_log.commit_offset('g', 'hs', 1, 3, member => 'm2');
SELECT event_log.drop_group('g', 'hs');
SELECT event_log.drop_group('g', 'hs');
-- An appending transaction checks at commit whether the stream has groups
-- (the reproducer of the escalation: a fresh session that appends once).
SELECT count(*) FROM event_log.poll('g2', 'hs');
\c - regress_el_hostile
SET search_path = hostile, pg_catalog, public;
INSERT INTO hs (key, type, payload) VALUES ('k7', 'T', '{}');
SELECT shard, seq FROM event_log.append('hs', 'k8', 'T', '{}');
BEGIN;
INSERT INTO hs (key, type, payload) VALUES ('k9', 'T', '{}');
SELECT count(*) FROM event_log.poll('g2', 'hs');
COMMIT;
-- Nothing of the hostile role's ran, and it is no superuser.
\c - :superuser
SELECT rolsuper FROM pg_roles WHERE rolname = 'regress_el_hostile';
SELECT is_called AS hostile_code_ran FROM hostile.calls;

-- poll() reads the stream as its caller, through the executor: SELECT is
-- checked and row-level security applied on every call, also after the
-- group exists and this backend has kept its plans.
CREATE ROLE regress_el_reader;
GRANT SELECT ON hs TO regress_el_reader;
SET ROLE regress_el_reader;
SELECT count(*) FROM event_log.poll('r', 'hs');
RESET ROLE;
ALTER TABLE hs ENABLE ROW LEVEL SECURITY;
CREATE POLICY only_k1 ON hs FOR SELECT TO regress_el_reader USING (key = 'k1');
SET ROLE regress_el_reader;
SELECT key FROM event_log.poll('r', 'hs');
SELECT key FROM event_log.poll('r', 'hs', wait => '10ms');
RESET ROLE;
-- No policy for the role at all: it sees nothing.
DROP POLICY only_k1 ON hs;
SET ROLE regress_el_reader;
SELECT count(*) FROM event_log.poll('r', 'hs');
RESET ROLE;
ALTER TABLE hs DISABLE ROW LEVEL SECURITY;
SET ROLE regress_el_reader;
SELECT count(*) FROM event_log.poll('r', 'hs');
RESET ROLE;
REVOKE SELECT ON hs FROM regress_el_reader;
SET ROLE regress_el_reader;
SELECT count(*) FROM event_log.poll('r', 'hs');
SELECT event_log.commit_offset('r', 'hs', 0, 1);
SELECT * FROM event_log.reset_offsets('r', 'hs', 'start');
RESET ROLE;

-- A reader that squats a group name cannot keep it: the stream's owner may
-- drop any group of its stream (the group's owner may too; others may not).
CREATE ROLE regress_el_streamer;
CREATE ROLE regress_el_nobody;
SELECT event_log.create_stream('public.owned', 1);
ALTER TABLE public.owned OWNER TO regress_el_streamer;
GRANT SELECT ON public.owned TO regress_el_reader, regress_el_hostile;
SET ROLE regress_el_reader;
SELECT count(*) FROM event_log.poll('billing', 'public.owned');
SET ROLE regress_el_hostile;
SELECT event_log.drop_group('billing', 'public.owned');
-- Offsets tell how far the stream goes: not for roles that may not read it.
SET ROLE regress_el_reader;
SELECT event_log.commit_offset('billing', 'public.owned', 0, 0);
SET ROLE regress_el_nobody;
SELECT event_log.committed_offset('billing', 'public.owned', 0);
SELECT shard, committed_seq, committed_at, log_end, lag_events FROM event_log.consumer_lag
 WHERE stream = 'public.owned'::regclass;
SELECT committed_seq FROM event_log.consumer_offsets;
SELECT count(*) AS shards_listed FROM event_log.consumer_offsets o
  JOIN event_log.consumer_groups g ON g.id = o.group_id WHERE g.stream = 'public.owned'::regclass;
SET ROLE regress_el_streamer;
SELECT event_log.drop_group('billing', 'public.owned');
SELECT count(*) AS groups_left FROM event_log.consumer_groups WHERE stream = 'public.owned'::regclass;
RESET ROLE;
SELECT event_log.drop_stream('public.owned');
DROP ROLE regress_el_streamer, regress_el_nobody;

DROP OWNED BY regress_el_hostile, regress_el_reader;
DROP ROLE regress_el_hostile, regress_el_reader;
SELECT event_log.drop_stream('hs');
DROP EXTENSION event_log;
