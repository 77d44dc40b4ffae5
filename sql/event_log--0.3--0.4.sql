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
