/* event_log--0.1.sql: streams (sharded append-only logs with commit-order offsets) */

\echo Use "CREATE EXTENSION event_log" to load this file. \quit

-- The registry of streams.  user_catalog_table lets the logical decoding
-- output plugin read it under a historic snapshot.  Rows are written only by
-- the extension's C code; everybody may read it.
CREATE TABLE event_log.streams (
    stream      regclass    PRIMARY KEY,
    shards      integer     NOT NULL CHECK (shards BETWEEN 1 AND 1024),
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  name        NOT NULL DEFAULT current_user
) WITH (user_catalog_table = true);

-- Streams removed with event_log.drop_stream(): the record of what went.
CREATE TABLE event_log.dropped_streams (
    stream      text        NOT NULL,
    shards      integer     NOT NULL,
    events      bigint      NOT NULL,
    dropped_at  timestamptz NOT NULL DEFAULT now(),
    dropped_by  name        NOT NULL DEFAULT current_user
);

SELECT pg_catalog.pg_extension_config_dump('event_log.streams', '');
SELECT pg_catalog.pg_extension_config_dump('event_log.dropped_streams', '');

REVOKE ALL ON event_log.streams, event_log.dropped_streams FROM PUBLIC;
GRANT SELECT ON event_log.streams, event_log.dropped_streams TO PUBLIC;

-- The row type every stream shares: what read() and replay() return.
CREATE TYPE event_log.event AS (
    shard       integer,
    seq         bigint,
    key         text,
    version     bigint,
    type        text,
    payload     jsonb,
    metadata    jsonb,
    event_id    uuid,
    recorded_at timestamptz
);

CREATE FUNCTION event_log.shard_for(key text, shards integer)
RETURNS integer
AS 'MODULE_PATHNAME', 'el_shard_for'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION event_log.create_stream(stream text, shards integer DEFAULT 1)
RETURNS regclass
AS 'MODULE_PATHNAME', 'el_create_stream'
LANGUAGE C VOLATILE;

CREATE FUNCTION event_log.drop_stream(stream regclass)
RETURNS bigint
AS 'MODULE_PATHNAME', 'el_drop_stream'
LANGUAGE C VOLATILE;

CREATE FUNCTION event_log.append(
    stream regclass,
    key text,
    type text,
    payload jsonb,
    metadata jsonb DEFAULT NULL,
    expected_version bigint DEFAULT NULL,
    event_id uuid DEFAULT NULL,
    OUT shard integer,
    OUT seq bigint,
    OUT version bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'el_append'
LANGUAGE C VOLATILE;

CREATE FUNCTION event_log.read(
    stream regclass,
    shard integer,
    after_seq bigint DEFAULT 0,
    max_count integer DEFAULT 1000)
RETURNS SETOF event_log.event
AS 'MODULE_PATHNAME', 'el_read'
LANGUAGE C STABLE;

CREATE FUNCTION event_log.replay(
    stream regclass,
    key text,
    after_version bigint DEFAULT 0)
RETURNS SETOF event_log.event
AS 'MODULE_PATHNAME', 'el_replay'
LANGUAGE C STABLE;

-- Trigger functions installed on every stream by create_stream().
CREATE FUNCTION event_log.assign_position()
RETURNS trigger
AS 'MODULE_PATHNAME', 'el_assign_position'
LANGUAGE C;

CREATE FUNCTION event_log.refuse_change()
RETURNS trigger
AS 'MODULE_PATHNAME', 'el_refuse_change'
LANGUAGE C;

-- Event triggers: the DDL guard that keeps stream tables append-only even
-- for their owners.  Event triggers fire for every role, superusers too.
CREATE FUNCTION event_log.guard_ddl()
RETURNS event_trigger
AS 'MODULE_PATHNAME', 'el_guard_ddl'
LANGUAGE C;

CREATE FUNCTION event_log.guard_rewrite()
RETURNS event_trigger
AS 'MODULE_PATHNAME', 'el_guard_rewrite'
LANGUAGE C;

CREATE FUNCTION event_log.guard_drop()
RETURNS event_trigger
AS 'MODULE_PATHNAME', 'el_guard_drop'
LANGUAGE C;

CREATE EVENT TRIGGER event_log_guard_ddl ON ddl_command_end
    EXECUTE FUNCTION event_log.guard_ddl();
CREATE EVENT TRIGGER event_log_guard_rewrite ON table_rewrite
    EXECUTE FUNCTION event_log.guard_rewrite();
CREATE EVENT TRIGGER event_log_guard_drop ON sql_drop
    EXECUTE FUNCTION event_log.guard_drop();

-- Also under session_replication_role = replica, which a superuser can grant.
ALTER EVENT TRIGGER event_log_guard_ddl ENABLE ALWAYS;
ALTER EVENT TRIGGER event_log_guard_rewrite ENABLE ALWAYS;
ALTER EVENT TRIGGER event_log_guard_drop ENABLE ALWAYS;

GRANT USAGE ON SCHEMA event_log TO PUBLIC;

-- ==========================================================================
-- Consumer groups (docs/consumers.md, docs/design/consumers.md)
-- ==========================================================================

-- One row per (stream, group name).  A group belongs to the role that
-- created it (by its first poll, commit_offset or reset_offsets); only that
-- role and its members may use it.  Rows are written only by the extension's
-- C code, which runs those statements as the extension's owner.
CREATE SEQUENCE event_log.consumer_group_ids AS integer;
CREATE TABLE event_log.consumer_groups (
    id          integer     PRIMARY KEY DEFAULT nextval('event_log.consumer_group_ids'),
    stream      regclass    NOT NULL,
    group_name  text        NOT NULL CHECK (group_name <> '' AND octet_length(group_name) <= 200),
    owner       regrole     NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream, group_name)
);
ALTER SEQUENCE event_log.consumer_group_ids OWNED BY event_log.consumer_groups.id;

-- Committed offset and current lease holder of each shard of each group.
CREATE TABLE event_log.consumer_offsets (
    group_id      integer     NOT NULL REFERENCES event_log.consumer_groups (id) ON DELETE CASCADE,
    shard         integer     NOT NULL CHECK (shard >= 0),
    committed_seq bigint      NOT NULL DEFAULT 0 CHECK (committed_seq >= 0),
    committed_at  timestamptz,
    member        text,
    PRIMARY KEY (group_id, shard)
);

-- The live members of each group.  A member holds a session-level lock on
-- ('event_log.consumer_members'::regclass, lock_id) while its session lives,
-- and renews expires_at when it polls.
CREATE SEQUENCE event_log.consumer_member_locks AS integer CYCLE;
CREATE TABLE event_log.consumer_members (
    group_id    integer     NOT NULL REFERENCES event_log.consumer_groups (id) ON DELETE CASCADE,
    member      text        NOT NULL,
    lock_id     integer     NOT NULL DEFAULT nextval('event_log.consumer_member_locks'),
    pid         integer     NOT NULL,
    joined_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (group_id, member)
);
ALTER SEQUENCE event_log.consumer_member_locks OWNED BY event_log.consumer_members.lock_id;

SELECT pg_catalog.pg_extension_config_dump('event_log.consumer_groups', '');
SELECT pg_catalog.pg_extension_config_dump('event_log.consumer_group_ids', '');
SELECT pg_catalog.pg_extension_config_dump('event_log.consumer_offsets', '');

REVOKE ALL ON event_log.consumer_groups, event_log.consumer_offsets,
              event_log.consumer_members FROM PUBLIC;
GRANT SELECT ON event_log.consumer_groups, event_log.consumer_offsets,
                event_log.consumer_members TO PUBLIC;

CREATE FUNCTION event_log.poll(
    group_name text,
    stream regclass,
    max_count integer DEFAULT 100,
    member text DEFAULT NULL,
    wait interval DEFAULT NULL,
    auto_commit boolean DEFAULT false)
RETURNS SETOF event_log.event
AS 'MODULE_PATHNAME', 'el_poll'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION event_log.commit_offset(
    group_name text,
    stream regclass,
    shard integer,
    seq bigint,
    member text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'el_commit_offset'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION event_log.committed_offset(
    group_name text,
    stream regclass,
    shard integer)
RETURNS bigint
AS 'MODULE_PATHNAME', 'el_committed_offset'
LANGUAGE C STABLE
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION event_log.reset_offsets(
    group_name text,
    stream regclass,
    to_position text DEFAULT NULL,
    to_seq bigint DEFAULT NULL,
    to_time timestamptz DEFAULT NULL,
    only_shard integer DEFAULT NULL)
RETURNS TABLE (shard integer, old_seq bigint, new_seq bigint)
AS 'MODULE_PATHNAME', 'el_reset_offsets'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION event_log.drop_group(group_name text, stream regclass)
RETURNS boolean
AS 'MODULE_PATHNAME', 'el_drop_group'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

-- The LISTEN channel of a stream: notified once per committed transaction
-- that appended to it, while the stream has at least one consumer group.
CREATE FUNCTION event_log.channel(stream regclass)
RETURNS text
AS 'MODULE_PATHNAME', 'el_channel'
LANGUAGE C STABLE STRICT;

-- For consumer_lag: a shard's last seq and the recorded_at of the first
-- event after after_seq.  NULLs when the caller may not read the stream.
CREATE FUNCTION event_log.shard_status(
    stream regclass,
    shard integer,
    after_seq bigint,
    OUT log_end bigint,
    OUT next_recorded_at timestamptz)
RETURNS record
AS 'MODULE_PATHNAME', 'el_shard_status'
LANGUAGE C STABLE STRICT
SET search_path = pg_catalog, pg_temp;

CREATE VIEW event_log.consumer_lag AS
SELECT g.group_name,
       g.stream,
       o.shard,
       o.committed_seq,
       s.log_end,
       s.log_end - o.committed_seq AS lag_events,
       CASE WHEN s.log_end IS NULL THEN NULL
            WHEN s.next_recorded_at IS NULL THEN interval '0'
            ELSE greatest(now() - s.next_recorded_at, interval '0')
       END AS lag_time,
       o.committed_at,
       o.member,
       m.expires_at AS lease_expires_at
FROM event_log.consumer_groups g
JOIN event_log.consumer_offsets o ON o.group_id = g.id
LEFT JOIN event_log.consumer_members m ON m.group_id = o.group_id AND m.member = o.member
CROSS JOIN LATERAL event_log.shard_status(g.stream, o.shard, o.committed_seq) s;

GRANT SELECT ON event_log.consumer_lag TO PUBLIC;

-- ==========================================================================
-- Projections (docs/projections.md, docs/design/projections.md)
-- ==========================================================================

-- Projections: read models kept from a stream, queried through a view of
-- the projection's name over its current build table.  Rows are written only
-- by the extension's C functions; everybody may read them.
CREATE TABLE event_log.projections (
    projection  regclass    PRIMARY KEY,
    stream      regclass    NOT NULL,
    mode        text        NOT NULL CHECK (mode IN ('inline', 'async')),
    columns     text        NOT NULL,
    handlers    jsonb       NOT NULL,
    reducer     text,
    initial     jsonb,
    build_table regclass    NOT NULL,
    generation  integer     NOT NULL,
    events      bigint      NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    rebuilt_at  timestamptz,
    -- how the last build replayed the stream: 'set-based', or 'event by
    -- event: ' and the reason (docs/projections.md, "Fast builds")
    build_method text
);

-- Checkpoints of async projections: the last seq applied per shard, and the
-- error that stopped a shard, if any.
CREATE TABLE event_log.projection_offsets (
    projection  regclass    NOT NULL
                REFERENCES event_log.projections ON DELETE CASCADE,
    shard       integer     NOT NULL,
    seq         bigint      NOT NULL,
    applied_at  timestamptz,
    error       text,
    error_seq   bigint,
    error_at    timestamptz,
    PRIMARY KEY (projection, shard)
);

SELECT pg_catalog.pg_extension_config_dump('event_log.projections', '');
SELECT pg_catalog.pg_extension_config_dump('event_log.projection_offsets', '');
REVOKE ALL ON event_log.projections, event_log.projection_offsets FROM PUBLIC;
GRANT SELECT ON event_log.projections, event_log.projection_offsets TO PUBLIC;

CREATE FUNCTION event_log.create_projection(
    name text,
    stream regclass,
    columns text DEFAULT NULL,
    handlers jsonb DEFAULT NULL,
    mode text DEFAULT 'inline',
    reducer text DEFAULT NULL,
    initial jsonb DEFAULT '{}')
RETURNS regclass
AS 'MODULE_PATHNAME', 'el_create_projection'
LANGUAGE C VOLATILE;

CREATE FUNCTION event_log.rebuild_projection(
    name text,
    columns text DEFAULT NULL,
    handlers jsonb DEFAULT NULL,
    reducer text DEFAULT NULL,
    initial jsonb DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'el_rebuild_projection'
LANGUAGE C VOLATILE;

CREATE FUNCTION event_log.alter_projection(
    name text,
    handlers jsonb DEFAULT NULL,
    reducer text DEFAULT NULL,
    initial jsonb DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'el_alter_projection'
LANGUAGE C VOLATILE;

CREATE FUNCTION event_log.drop_projection(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'el_drop_projection'
LANGUAGE C VOLATILE;

CREATE FUNCTION event_log.run_projections(
    projection text DEFAULT NULL,
    max_events integer DEFAULT 10000)
RETURNS bigint
AS 'MODULE_PATHNAME', 'el_run_projections'
LANGUAGE C VOLATILE;

-- The trigger create_projection() puts on a stream for an inline projection.
CREATE FUNCTION event_log.project()
RETURNS trigger
AS 'MODULE_PATHNAME', 'el_project'
LANGUAGE C;

-- Where each async projection stands, per shard.
CREATE VIEW event_log.projection_lag AS
SELECT p.projection,
       p.stream,
       o.shard,
       o.seq AS applied_seq,
       s.log_end AS last_seq,
       s.log_end - o.seq AS lag_events,
       CASE WHEN s.log_end > o.seq THEN now() - s.next_recorded_at
            ELSE interval '0' END AS lag_time,
       o.applied_at,
       o.error,
       o.error_seq,
       o.error_at
  FROM event_log.projections p
  JOIN event_log.projection_offsets o ON o.projection = p.projection
  CROSS JOIN LATERAL event_log.shard_status(p.stream, o.shard, o.seq) s
 WHERE p.mode = 'async';

GRANT SELECT ON event_log.projection_lag TO PUBLIC;
