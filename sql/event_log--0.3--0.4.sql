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
