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
