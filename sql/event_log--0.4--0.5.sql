/* event_log 0.4 -> 0.5 */
\echo Use "ALTER EXTENSION event_log UPDATE TO '0.5'" to load this file. \quit

-- Each capability that changes the catalog in 0.5 has its own section
-- below, in the order they landed.

-- ---------------------------------------------------------------------
-- Retention (docs/retention.md, docs/design/retention.md)
-- ---------------------------------------------------------------------

-- A stream's retention policy: events leave the log once they are older
-- than max_age, or once a shard holds more than max_events newer ones,
-- and with keep_unconsumed never before every consumer group, async
-- projection and parked event of the stream is past them.  Only the
-- extension's C code writes these tables.
CREATE TABLE event_log.retention_policies (
    stream          regclass    PRIMARY KEY,
    max_age         interval    CHECK (max_age > interval '0'),
    max_events      bigint      CHECK (max_events > 0),
    keep_unconsumed boolean     NOT NULL DEFAULT true,
    archive         boolean     NOT NULL DEFAULT false,
    set_by          name        NOT NULL,
    set_at          timestamptz NOT NULL DEFAULT now(),
    CHECK (max_age IS NOT NULL OR max_events IS NOT NULL)
);

-- Each shard's low watermark: the first seq still in the log.  A stream
-- has these rows from its first policy on, and keeps them for its life.
CREATE TABLE event_log.shard_watermarks (
    stream          regclass    NOT NULL,
    shard           integer     NOT NULL CHECK (shard >= 0),
    low_seq         bigint      NOT NULL DEFAULT 1 CHECK (low_seq >= 1),
    removed_events  bigint      NOT NULL DEFAULT 0 CHECK (removed_events >= 0),
    removed_at      timestamptz,
    PRIMARY KEY (stream, shard)
);

-- What each enforcement removed: a report, and the record that retention
-- is the one path that removes events.
CREATE TABLE event_log.retention_log (
    stream      regclass    NOT NULL,
    shard       integer     NOT NULL,
    from_seq    bigint      NOT NULL,
    to_seq      bigint      NOT NULL,
    events      bigint      NOT NULL,
    removed_at  timestamptz NOT NULL DEFAULT now(),
    removed_by  name        NOT NULL,
    CHECK (to_seq >= from_seq AND events = to_seq - from_seq + 1)
);
CREATE INDEX ON event_log.retention_log (stream, shard, removed_at);

-- The last version of each key whose every event was removed, so that the
-- key's next event goes on from it: versions are never renumbered.
CREATE TABLE event_log.retired_keys (
    stream          regclass    NOT NULL,
    key             text        COLLATE "C" NOT NULL,
    last_version    bigint      NOT NULL CHECK (last_version >= 1),
    PRIMARY KEY (stream, key)
);

SELECT pg_catalog.pg_extension_config_dump('event_log.retention_policies', '');
SELECT pg_catalog.pg_extension_config_dump('event_log.retired_keys', '');
SELECT pg_catalog.pg_extension_config_dump('event_log.shard_watermarks', '');
SELECT pg_catalog.pg_extension_config_dump('event_log.retention_log', '');

REVOKE ALL ON event_log.retention_policies, event_log.shard_watermarks,
    event_log.retention_log, event_log.retired_keys FROM PUBLIC;
GRANT SELECT ON event_log.retention_policies, event_log.shard_watermarks,
    event_log.retention_log TO PUBLIC;

-- A consumer group whose committed offset fell below a low watermark:
-- 'error' (the default), 'earliest' (jump to the watermark), 'latest'
-- (jump to the end; what a jump skipped is counted per shard) or
-- 'archive' (read the archived events, then the log).
ALTER TABLE event_log.consumer_groups
    ADD COLUMN offset_reset text NOT NULL DEFAULT 'error'
        CHECK (offset_reset IN ('error', 'earliest', 'latest', 'archive'));
ALTER TABLE event_log.consumer_offsets
    ADD COLUMN skipped_events bigint NOT NULL DEFAULT 0 CHECK (skipped_events >= 0);

-- The archive (docs/retention.md, "The archive"): events retention
-- removed under a policy with archive => true, in chunks of consecutive
-- events of one shard, as JSON lines (compressed by TOAST) with the
-- SHA-256 of the text.  Only the extension's code writes it; only
-- read_archive() and export_archive() read the events, with the reader's
-- privileges on the stream checked.
CREATE TABLE event_log.archive (
    stream            regclass    NOT NULL,
    shard             integer     NOT NULL CHECK (shard >= 0),
    first_seq         bigint      NOT NULL CHECK (first_seq >= 1),
    last_seq          bigint      NOT NULL,
    events            integer     NOT NULL,
    first_recorded_at timestamptz NOT NULL,
    last_recorded_at  timestamptz NOT NULL,
    checksum          text        NOT NULL,
    data              text        NOT NULL,
    archived_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream, shard, first_seq),
    CHECK (last_seq >= first_seq AND events = last_seq - first_seq + 1)
);
SELECT pg_catalog.pg_extension_config_dump('event_log.archive', '');
REVOKE ALL ON event_log.archive FROM PUBLIC;

-- The archive's chunks without their events, for everyone.
CREATE VIEW event_log.archive_chunks AS
SELECT stream, shard, first_seq, last_seq, events, first_recorded_at,
       last_recorded_at, checksum, pg_catalog.pg_column_size(data) AS stored_bytes,
       archived_at
FROM event_log.archive;
GRANT SELECT ON event_log.archive_chunks TO PUBLIC;

-- Every shard of every stream that has had a policy, with the policy.
CREATE VIEW event_log.retention AS
SELECT w.stream,
       w.shard,
       w.low_seq AS low_watermark,
       w.removed_events,
       w.removed_at,
       p.max_age,
       p.max_events,
       p.keep_unconsumed,
       p.archive
FROM event_log.shard_watermarks w
LEFT JOIN event_log.retention_policies p ON p.stream = w.stream;
GRANT SELECT ON event_log.retention TO PUBLIC;

CREATE FUNCTION event_log.set_retention(
    stream regclass,
    max_age interval DEFAULT NULL,
    max_events bigint DEFAULT NULL,
    keep_unconsumed boolean DEFAULT true,
    archive boolean DEFAULT false)
RETURNS void
AS 'MODULE_PATHNAME', 'el_set_retention'
LANGUAGE C VOLATILE;

CREATE FUNCTION event_log.enforce_retention(stream regclass DEFAULT NULL)
RETURNS TABLE (stream regclass, shard integer, removed bigint, low_watermark bigint)
AS 'MODULE_PATHNAME', 'el_enforce_retention'
LANGUAGE C VOLATILE;

CREATE FUNCTION event_log.read_archive(
    stream regclass,
    shard integer,
    after_seq bigint DEFAULT 0,
    max_count integer DEFAULT 1000)
RETURNS SETOF event_log.event
AS 'MODULE_PATHNAME', 'el_read_archive'
LANGUAGE C STABLE;

CREATE FUNCTION event_log.export_archive(stream regclass, shard integer DEFAULT NULL)
RETURNS SETOF text
AS 'MODULE_PATHNAME', 'el_export_archive'
LANGUAGE C STABLE;

CREATE FUNCTION event_log.import_archive(stream regclass, data text)
RETURNS TABLE (imported_chunks integer, imported_events bigint, skipped_chunks integer)
AS 'MODULE_PATHNAME', 'el_import_archive'
LANGUAGE C VOLATILE;

CREATE FUNCTION event_log.drop_archive(stream regclass, shard integer, through_seq bigint)
RETURNS bigint
AS 'MODULE_PATHNAME', 'el_drop_archive'
LANGUAGE C VOLATILE;

CREATE FUNCTION event_log.low_watermark(stream regclass, shard integer)
RETURNS bigint
AS 'MODULE_PATHNAME', 'el_low_watermark_sql'
LANGUAGE C STABLE;

CREATE FUNCTION event_log.set_offset_reset(group_name text, stream regclass, policy text)
RETURNS void
AS 'MODULE_PATHNAME', 'el_set_offset_reset'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

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
       END AS parked_events,
       CASE WHEN r.ok THEN o.skipped_events END AS skipped_events
FROM event_log.consumer_groups g
JOIN event_log.consumer_offsets o ON o.group_id = g.id
LEFT JOIN event_log.consumer_members m ON m.group_id = o.group_id AND m.member = o.member
CROSS JOIN LATERAL (
      SELECT coalesce(pg_catalog.has_table_privilege(g.stream, 'SELECT')
                      AND pg_catalog.row_security_active(g.stream) IS NOT TRUE,
                      false) AS ok) r
CROSS JOIN LATERAL event_log.shard_status(g.stream, o.shard, o.committed_seq, g.types) s;

-- ---------------------------------------------------------------------
-- Erasure of personal data, continued (docs/erasure.md; docs/design/erasure.md)
-- ---------------------------------------------------------------------

-- erase_subject() overwrites a deleted key's bytes in its page at commit
-- (personal_shred.c); ANALYZE must not have copied them elsewhere first:
-- a column's statistics keep sample values (the histogram of a bytea), in
-- pg_statistic, out of the erasure's reach.  None are gathered for the
-- keys, and those gathered before 0.5 go.
ALTER TABLE event_log.subject_keys ALTER COLUMN key SET STATISTICS 0;
DELETE FROM pg_catalog.pg_statistic s
 WHERE s.starelid OPERATOR(pg_catalog.=) 'event_log.subject_keys'::pg_catalog.regclass
   AND s.staattnum OPERATOR(pg_catalog.=)
       (SELECT a.attnum FROM pg_catalog.pg_attribute a
         WHERE a.attrelid OPERATOR(pg_catalog.=) 'event_log.subject_keys'::pg_catalog.regclass
           AND a.attname OPERATOR(pg_catalog.=) 'key');

-- Fields taken out of a declaration, for events appended afterwards;
-- returns the fields that stay declared.
CREATE FUNCTION event_log.undeclare_personal(stream regclass, fields text[],
                                             type text DEFAULT NULL)
RETURNS text[]
AS 'MODULE_PATHNAME', 'el_undeclare_personal'
LANGUAGE C VOLATILE;
