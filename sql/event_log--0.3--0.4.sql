/* event_log 0.3 -> 0.4 */
\echo Use "ALTER EXTENSION event_log UPDATE TO '0.4'" to load this file. \quit

-- Each capability that changes the catalog in 0.4 has its own section
-- below, in the order they landed.

-- ---------------------------------------------------------------------
-- Commit modes (docs/streams.md, "Commit modes"; docs/design/offsets.md)
-- ---------------------------------------------------------------------

-- How a stream's appenders commit: 'serial' (every stream until now) holds
-- a shard's lock until the holder's commit is durable; 'grouped' releases
-- it once the commit is visible, so that the shard's appenders share WAL
-- flushes.
ALTER TABLE event_log.streams
    ADD COLUMN commit_mode text NOT NULL DEFAULT 'serial'
    CONSTRAINT streams_commit_mode_check CHECK (commit_mode IN ('serial', 'grouped'));

-- The stream's owner changes it.  A NULL leaves it as it is.
CREATE FUNCTION event_log.alter_stream(stream regclass, commit_mode text DEFAULT NULL)
RETURNS regclass
AS 'MODULE_PATHNAME', 'el_alter_stream'
LANGUAGE C VOLATILE;

-- For raw-SQL readers of a grouped stream: makes every commit visible to
-- the caller durable, and returns the WAL position flushed to.
CREATE FUNCTION event_log.wait_durable()
RETURNS pg_lsn
AS 'MODULE_PATHNAME', 'el_wait_durable_sql'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

-- ---------------------------------------------------------------------
-- Event schemas (docs/schemas.md)
-- ---------------------------------------------------------------------

-- JSON Schemas per stream and event type, numbered 1, 2, 3 ... per type.
-- Rows are written only by register_schema(), which compiles each schema
-- first (an unsupported keyword is refused, never ignored), and deleted
-- with the stream by drop_stream().
CREATE TABLE event_log.event_schemas (
    stream        regclass    NOT NULL,
    type          text        NOT NULL,
    version       integer     NOT NULL CHECK (version >= 1),
    schema        jsonb       NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now(),
    registered_by name        NOT NULL,
    PRIMARY KEY (stream, type, version)
);

-- Per stream: what happens to events of types that have no schema, the
-- compatibility mode a new version of a type must meet, and the stream
-- where refused events go instead (NULL: they are refused).
CREATE TABLE event_log.schema_settings (
    stream             regclass PRIMARY KEY,
    unregistered_types text     NOT NULL DEFAULT 'allow'
                       CHECK (unregistered_types IN ('allow', 'refuse')),
    compatibility      text     NOT NULL DEFAULT 'BACKWARD'
                       CHECK (compatibility IN ('NONE', 'BACKWARD', 'BACKWARD_TRANSITIVE',
                              'FORWARD', 'FORWARD_TRANSITIVE', 'FULL', 'FULL_TRANSITIVE')),
    quarantine         regclass CHECK (quarantine <> stream)
);

-- Per type: a compatibility mode over the stream's.
CREATE TABLE event_log.schema_type_settings (
    stream        regclass NOT NULL,
    type          text     NOT NULL,
    compatibility text     NOT NULL
                  CHECK (compatibility IN ('NONE', 'BACKWARD', 'BACKWARD_TRANSITIVE',
                         'FORWARD', 'FORWARD_TRANSITIVE', 'FULL', 'FULL_TRANSITIVE')),
    PRIMARY KEY (stream, type)
);

SELECT pg_catalog.pg_extension_config_dump('event_log.event_schemas', '');
SELECT pg_catalog.pg_extension_config_dump('event_log.schema_settings', '');
SELECT pg_catalog.pg_extension_config_dump('event_log.schema_type_settings', '');

-- Upcasters: per type and version step, an SQL expression over payload and
-- metadata that returns the payload in the next version's shape.
CREATE TABLE event_log.upcasters (
    stream       regclass NOT NULL,
    type         text     NOT NULL,
    from_version integer  NOT NULL CHECK (from_version >= 1),
    expression   text     NOT NULL,
    PRIMARY KEY (stream, type, from_version)
);
SELECT pg_catalog.pg_extension_config_dump('event_log.upcasters', '');

REVOKE ALL ON event_log.event_schemas, event_log.schema_settings,
    event_log.schema_type_settings, event_log.upcasters FROM PUBLIC;
GRANT SELECT ON event_log.event_schemas, event_log.schema_settings,
    event_log.schema_type_settings, event_log.upcasters TO PUBLIC;

CREATE FUNCTION event_log.register_schema(stream regclass, type text, schema jsonb,
                                          check_history boolean DEFAULT false)
RETURNS integer
AS 'MODULE_PATHNAME', 'el_register_schema'
LANGUAGE C VOLATILE;

CREATE FUNCTION event_log.set_schema_policy(stream regclass,
                                            unregistered_types text DEFAULT NULL,
                                            compatibility text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'el_set_schema_policy'
LANGUAGE C VOLATILE;

CREATE FUNCTION event_log.set_schema_compatibility(stream regclass, type text,
                                                   compatibility text)
RETURNS void
AS 'MODULE_PATHNAME', 'el_set_schema_compatibility'
LANGUAGE C VOLATILE;

CREATE FUNCTION event_log.set_quarantine(stream regclass, quarantine regclass)
RETURNS void
AS 'MODULE_PATHNAME', 'el_set_quarantine'
LANGUAGE C VOLATILE;

CREATE FUNCTION event_log.validate_event(stream regclass, type text, payload jsonb,
                                         version integer DEFAULT NULL)
RETURNS TABLE (path text, keyword text, message text)
AS 'MODULE_PATHNAME', 'el_validate_event'
LANGUAGE C STABLE;

CREATE FUNCTION event_log.check_schema_history(stream regclass, type text,
                                               version integer DEFAULT NULL)
RETURNS TABLE (shard integer, seq bigint, key text, path text, keyword text, message text)
AS 'MODULE_PATHNAME', 'el_check_schema_history'
LANGUAGE C STABLE;

-- A schema that is not registered, checked against a document.
CREATE FUNCTION event_log.json_schema_errors(schema jsonb, instance jsonb)
RETURNS TABLE (path text, keyword text, message text)
AS 'MODULE_PATHNAME', 'el_json_schema_errors'
LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION event_log.json_schema_valid(schema jsonb, instance jsonb)
RETURNS boolean
AS 'MODULE_PATHNAME', 'el_json_schema_valid'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION event_log.register_upcaster(stream regclass, type text,
                                            from_version integer, expression text)
RETURNS void
AS 'MODULE_PATHNAME', 'el_register_upcaster'
LANGUAGE C VOLATILE;

-- An event's payload in its type's latest shape (from metadata's schema_version).
CREATE FUNCTION event_log.upcast(stream regclass, type text, payload jsonb, metadata jsonb)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'el_upcast'
LANGUAGE C STABLE;

-- Upcasting on read.  Readers ask with the setting event_log.upcast (no
-- catalog change); a projection records its choice here, and its handlers
-- then see every event in its type's latest shape, live and in rebuilds.
ALTER TABLE event_log.projections
    ADD COLUMN upcast boolean NOT NULL DEFAULT false;

CREATE FUNCTION event_log.set_projection_upcast(name text, upcast boolean,
                                                rebuild boolean DEFAULT true)
RETURNS bigint
AS 'MODULE_PATHNAME', 'el_set_projection_upcast'
LANGUAGE C VOLATILE;

---------------------------------------------------------------------
-- Failures as data: dead letters and per-key parking of async
-- projections, and the progress of builds (docs/projections.md, "When a
-- handler fails", "Watching a build"; docs/design/dead_letters.md)
-- ---------------------------------------------------------------------

-- What a projection does with an event its handler fails on: 'stop' the
-- shard there (as before 0.4), or 'park' the event and every later event
-- of its key, while the other keys go on.  on_error is for live runs (the
-- worker, run_projections()); on_build_error for create and rebuild.
ALTER TABLE event_log.projections
    ADD COLUMN on_error text NOT NULL DEFAULT 'stop'
        CHECK (on_error IN ('stop', 'park')),
    ADD COLUMN on_build_error text NOT NULL DEFAULT 'stop'
        CHECK (on_build_error IN ('stop', 'park'));

-- Parked events, one row each: the event a handler failed on (error and
-- sqlstate set) and the later events of its key that wait behind it
-- (blocked_by: the seq of the failed one).  A parked event is past its
-- shard's checkpoint; it is applied by retry_dead_letters() or dropped by
-- discard_dead_letters(), never by the run.  Written only by the C code.
CREATE TABLE event_log.projection_dead_letters (
    projection      regclass    NOT NULL,
    stream          regclass    NOT NULL,
    shard           integer     NOT NULL,
    seq             bigint      NOT NULL,
    key             text,
    type            text        NOT NULL,
    error           text,
    sqlstate        text,
    blocked_by      bigint,
    attempts        integer     NOT NULL DEFAULT 1,
    first_failed_at timestamptz NOT NULL DEFAULT now(),
    last_failed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, shard, seq)
);
CREATE INDEX projection_dead_letters_key
    ON event_log.projection_dead_letters (projection, shard, key, seq);

-- Events a consumer group's application could not process (nack()):
-- parked, so that the group's offset can move on past them, until
-- retry_nacked() marks them for the group's polls to deliver again
-- (state 'retry') or discard_nacked() drops them.  Written only by the C
-- code; a group's rows go with it.
CREATE TABLE event_log.consumer_dead_letters (
    group_id        integer     NOT NULL,
    shard           integer     NOT NULL,
    seq             bigint      NOT NULL,
    key             text        NOT NULL,
    type            text        NOT NULL,
    error           text,
    state           text        NOT NULL DEFAULT 'parked' CHECK (state IN ('parked', 'retry')),
    attempts        integer     NOT NULL DEFAULT 1,
    first_failed_at timestamptz NOT NULL DEFAULT now(),
    last_failed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, shard, seq)
);
-- What each poll() looks up: the group's events to deliver again.
CREATE INDEX consumer_dead_letters_retry
    ON event_log.consumer_dead_letters (group_id, shard, seq) WHERE state = 'retry';

-- Who retried or discarded which parked event, and when: of a projection,
-- or of a consumer group (group_name set, projection NULL).
CREATE TABLE event_log.dead_letter_actions (
    action      text        NOT NULL CHECK (action IN ('retried', 'discarded', 'rebuilt')),
    done_by     name        NOT NULL,
    done_at     timestamptz NOT NULL DEFAULT now(),
    projection  regclass,
    group_name  text,
    stream      regclass    NOT NULL,
    shard       integer     NOT NULL,
    seq         bigint      NOT NULL,
    key         text,
    type        text        NOT NULL,
    error       text
);

SELECT pg_catalog.pg_extension_config_dump('event_log.projection_dead_letters', '');
SELECT pg_catalog.pg_extension_config_dump('event_log.consumer_dead_letters', '');
SELECT pg_catalog.pg_extension_config_dump('event_log.dead_letter_actions', '');
REVOKE ALL ON event_log.projection_dead_letters, event_log.consumer_dead_letters,
    event_log.dead_letter_actions FROM PUBLIC;

-- Parked events quote events (their key, a handler's error): only roles
-- that may read the stream's events see them, as in projection_lag.  The
-- views filter rows, so they are security barriers: a reader's own
-- function in a WHERE clause runs only on the rows it may see.
CREATE VIEW event_log.dead_letters WITH (security_barrier = true) AS
SELECT l.* FROM (
    SELECT d.projection, NULL::text AS group_name, d.stream, d.shard, d.seq, d.key, d.type,
           d.error, d.sqlstate, d.blocked_by, 'parked'::text AS state, d.attempts,
           d.first_failed_at, d.last_failed_at
      FROM event_log.projection_dead_letters d
    UNION ALL
    SELECT NULL::regclass, g.group_name, g.stream, c.shard, c.seq, c.key, c.type,
           c.error, NULL::text, NULL::bigint, c.state, c.attempts,
           c.first_failed_at, c.last_failed_at
      FROM event_log.consumer_dead_letters c
      JOIN event_log.consumer_groups g ON g.id OPERATOR(pg_catalog.=) c.group_id) l
 WHERE pg_catalog.has_table_privilege(l.stream, 'SELECT')
   AND pg_catalog.row_security_active(l.stream) IS NOT TRUE;

CREATE VIEW event_log.dead_letter_log WITH (security_barrier = true) AS
SELECT a.action, a.done_by, a.done_at, a.projection, a.group_name, a.stream, a.shard,
       a.seq, a.key, a.type, a.error
  FROM event_log.dead_letter_actions a
 WHERE pg_catalog.has_table_privilege(a.stream, 'SELECT')
   AND pg_catalog.row_security_active(a.stream) IS NOT TRUE;

GRANT SELECT ON event_log.dead_letters, event_log.dead_letter_log TO PUBLIC;

-- projection_lag as in 0.2, with the parked events of each shard at the end.
CREATE OR REPLACE VIEW event_log.projection_lag AS
SELECT p.projection,
       p.stream,
       o.shard,
       CASE WHEN r.ok THEN o.seq END AS applied_seq,
       s.log_end AS last_seq,
       CASE WHEN r.ok THEN s.log_end - o.seq END AS lag_events,
       CASE WHEN NOT r.ok THEN NULL
            WHEN s.log_end > o.seq THEN now() - s.next_recorded_at
            ELSE interval '0' END AS lag_time,
       CASE WHEN r.ok THEN o.applied_at END AS applied_at,
       CASE WHEN r.ok THEN o.error
            WHEN o.error IS NOT NULL
            THEN '(hidden: you may not read this stream''s events)'
       END AS error,
       CASE WHEN r.ok THEN o.error_seq END AS error_seq,
       o.error_at,
       CASE WHEN r.ok THEN
            (SELECT pg_catalog.count(*) FROM event_log.projection_dead_letters d
              WHERE d.projection OPERATOR(pg_catalog.=) p.projection
                AND d.shard OPERATOR(pg_catalog.=) o.shard)
       END AS parked_events
  FROM event_log.projections p
  JOIN event_log.projection_offsets o ON o.projection = p.projection
  CROSS JOIN LATERAL (
        SELECT coalesce(pg_catalog.has_table_privilege(p.stream, 'SELECT')
                        AND pg_catalog.row_security_active(p.stream) IS NOT TRUE,
                        false) AS ok) r
  CROSS JOIN LATERAL event_log.shard_status(p.stream, o.shard, o.seq) s
 WHERE p.mode = 'async';

-- consumer_lag as in 0.3, with the parked events of each shard at the end.
CREATE OR REPLACE VIEW event_log.consumer_lag AS
SELECT g.group_name,
       g.stream,
       o.shard,
       CASE WHEN r.ok THEN o.committed_seq END AS committed_seq,
       s.log_end,
       s.lag_events,
       CASE WHEN s.log_end IS NULL THEN NULL
            WHEN s.next_recorded_at IS NULL THEN interval '0'
            ELSE greatest(now() - s.next_recorded_at, interval '0')
       END AS lag_time,
       CASE WHEN r.ok THEN o.committed_at END AS committed_at,
       o.member,
       m.expires_at AS lease_expires_at,
       CASE WHEN r.ok THEN
            (SELECT pg_catalog.count(*) FROM event_log.consumer_dead_letters d
              WHERE d.group_id OPERATOR(pg_catalog.=) g.id
                AND d.shard OPERATOR(pg_catalog.=) o.shard)
       END AS parked_events
FROM event_log.consumer_groups g
JOIN event_log.consumer_offsets o ON o.group_id = g.id
LEFT JOIN event_log.consumer_members m ON m.group_id = o.group_id AND m.member = o.member
CROSS JOIN LATERAL (
      SELECT coalesce(pg_catalog.has_table_privilege(g.stream, 'SELECT')
                      AND pg_catalog.row_security_active(g.stream) IS NOT TRUE,
                      false) AS ok) r
CROSS JOIN LATERAL event_log.shard_status(g.stream, o.shard, o.committed_seq, g.types) s;

CREATE FUNCTION event_log.set_error_policy(
    projection text,
    on_error text DEFAULT NULL,
    on_build_error text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'el_set_error_policy'
LANGUAGE C VOLATILE;

CREATE FUNCTION event_log.retry_dead_letters(
    projection text DEFAULT NULL,
    key text DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'el_retry_dead_letters'
LANGUAGE C VOLATILE;

CREATE FUNCTION event_log.discard_dead_letters(
    projection text,
    key text DEFAULT NULL,
    seq bigint DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'el_discard_dead_letters'
LANGUAGE C VOLATILE;

-- create_projection() takes the two policies, so that its own build can
-- park.  A new argument changes the signature: replace the function, and
-- carry its ACL over, as the 0.3 update did for read() and poll().
SELECT pg_catalog.set_config('el_upgrade.create_projection_acl',
    coalesce((SELECT proacl::pg_catalog.text FROM pg_catalog.pg_proc
              WHERE oid = 'event_log.create_projection(text, pg_catalog.regclass, text, pg_catalog.jsonb, text, text, pg_catalog.jsonb)'::pg_catalog.regprocedure), ''),
    true);
DROP FUNCTION event_log.create_projection(text, regclass, text, jsonb, text, text, jsonb);
CREATE FUNCTION event_log.create_projection(
    name text,
    stream regclass,
    columns text DEFAULT NULL,
    handlers jsonb DEFAULT NULL,
    mode text DEFAULT 'inline',
    reducer text DEFAULT NULL,
    initial jsonb DEFAULT '{}',
    on_error text DEFAULT NULL,
    on_build_error text DEFAULT NULL)
RETURNS regclass
AS 'MODULE_PATHNAME', 'el_create_projection'
LANGUAGE C VOLATILE;
UPDATE pg_catalog.pg_proc
   SET proacl = NULLIF(pg_catalog.current_setting('el_upgrade.create_projection_acl'), '')::pg_catalog.aclitem[]
 WHERE oid = 'event_log.create_projection(text, pg_catalog.regclass, text, pg_catalog.jsonb, text, text, pg_catalog.jsonb, text, text)'::pg_catalog.regprocedure;

-- The builds running in this database, a row per shard, for the streams
-- the caller may read (src/projection_progress.c).
CREATE FUNCTION event_log.build_progress(
    OUT pid integer,
    OUT projection regclass,
    OUT stream regclass,
    OUT phase text,
    OUT shard integer,
    OUT events_done bigint,
    OUT events_total bigint,
    OUT started_at timestamptz,
    OUT updated_at timestamptz,
    OUT events_per_second double precision,
    OUT time_left interval)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'el_build_progress'
LANGUAGE C VOLATILE;

CREATE VIEW event_log.projection_build_progress AS
SELECT * FROM event_log.build_progress();
GRANT SELECT ON event_log.projection_build_progress TO PUBLIC;

-- Consumer groups: a negative acknowledgement parks an event the
-- application cannot process; retry_nacked() gives the group's events back
-- to its polls; discard_nacked() drops them (docs/consumers.md, "Events you
-- cannot process").
CREATE FUNCTION event_log.nack(
    group_name text,
    stream regclass,
    shard integer,
    seq bigint,
    reason text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'el_nack'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION event_log.retry_nacked(
    group_name text,
    stream regclass,
    key text DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'el_retry_nacked'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION event_log.discard_nacked(
    group_name text,
    stream regclass,
    key text DEFAULT NULL,
    seq bigint DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'el_discard_nacked'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

-- ---------------------------------------------------------------------
-- Erasure of personal data (docs/erasure.md; docs/design/erasure.md)
-- ---------------------------------------------------------------------

-- Per stream with personal fields: the secret that keys its subject ids
-- (HMAC-SHA-256 of the subject) and the MACs of its encrypted fields.
-- Written by declare_personal() on its first call for the stream.
CREATE TABLE event_log.personal_streams (
    stream regclass PRIMARY KEY,
    secret bytea    NOT NULL CHECK (pg_catalog.length(secret) = 32)
);

-- Which top-level payload fields are personal, per stream ('' for every
-- type) or per type (which then replaces the stream's row), and which
-- field names the data subject.
CREATE TABLE event_log.personal_fields (
    stream        regclass    NOT NULL,
    type          text        NOT NULL,
    fields        text[]      NOT NULL,
    subject_field text        NOT NULL,
    declared_at   timestamptz NOT NULL DEFAULT now(),
    declared_by   name        NOT NULL,
    PRIMARY KEY (stream, type)
);

-- Roles that read personal fields in clear, besides the stream's owner.
CREATE TABLE event_log.personal_readers (
    stream regclass NOT NULL,
    reader regrole  NOT NULL,
    PRIMARY KEY (stream, reader)
);

-- One key per stream and data subject (by subject id, never the subject
-- itself), named in the encrypted fields by its random key_id.
-- erase_subject() deletes the row: the subject's fields can no longer be
-- decrypted anywhere; a subject that comes back gets a new key.
CREATE TABLE event_log.subject_keys (
    stream     regclass    NOT NULL,
    subject    bytea       NOT NULL,
    key_id     bytea       NOT NULL UNIQUE CHECK (pg_catalog.length(key_id) = 16),
    key        bytea       NOT NULL CHECK (pg_catalog.length(key) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream, subject)
);

-- The audit of erasures: who, when, which subject (its id), why.
CREATE TABLE event_log.erasures (
    stream        regclass    NOT NULL,
    subject       text        NOT NULL,
    erased_at     timestamptz NOT NULL DEFAULT now(),
    erased_by     name        NOT NULL,
    session_user_name name    NOT NULL,
    reason        text        NOT NULL,
    key_destroyed boolean     NOT NULL
);

SELECT pg_catalog.pg_extension_config_dump('event_log.personal_streams', '');
SELECT pg_catalog.pg_extension_config_dump('event_log.personal_fields', '');
SELECT pg_catalog.pg_extension_config_dump('event_log.personal_readers', '');
SELECT pg_catalog.pg_extension_config_dump('event_log.subject_keys', '');
SELECT pg_catalog.pg_extension_config_dump('event_log.erasures', '');

-- Keys and secrets are for the extension's code alone; the declarations
-- are public, as schemas are; auditors are granted SELECT on erasures.
REVOKE ALL ON event_log.personal_streams, event_log.personal_fields,
    event_log.personal_readers, event_log.subject_keys, event_log.erasures
    FROM PUBLIC;
GRANT SELECT ON event_log.personal_fields, event_log.personal_readers TO PUBLIC;

CREATE FUNCTION event_log.declare_personal(stream regclass, fields text[],
                                           subject_field text, type text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'el_declare_personal'
LANGUAGE C VOLATILE;

CREATE FUNCTION event_log.grant_personal(stream regclass, reader regrole)
RETURNS void
AS 'MODULE_PATHNAME', 'el_grant_personal'
LANGUAGE C VOLATILE;

CREATE FUNCTION event_log.revoke_personal(stream regclass, reader regrole)
RETURNS void
AS 'MODULE_PATHNAME', 'el_revoke_personal'
LANGUAGE C VOLATILE;

-- The id under which a subject's key and erasures are kept (hex).
CREATE FUNCTION event_log.subject_id(stream regclass, subject text)
RETURNS text
AS 'MODULE_PATHNAME', 'el_subject_id'
LANGUAGE C STABLE;

CREATE FUNCTION event_log.erase_subject(stream regclass, subject text, reason text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'el_erase_subject'
LANGUAGE C VOLATILE;

-- A payload as the caller may see it: personal fields decrypted, or markers.
CREATE FUNCTION event_log.reveal(stream regclass, payload jsonb)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'el_reveal'
LANGUAGE C STABLE;
