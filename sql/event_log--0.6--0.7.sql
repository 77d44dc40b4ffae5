/* event_log 0.6 -> 0.7 */
\echo Use "ALTER EXTENSION event_log UPDATE TO '0.7'" to load this file. \quit

-- Each capability that changes the catalog in 0.7 has its own section
-- below, in the order they landed.

-- ---------------------------------------------------------------------
-- Segment summaries (docs/design/segments.md, "A removal that reads no event")
-- ---------------------------------------------------------------------

-- What a sealed segment holds of each shard: its first and last seq, how
-- many events, and the latest recorded_at.  Written once per segment, by
-- the first enforcement after the segment stopped taking events (the
-- worker's, soon after the roll), from one sequential scan; a removal then
-- checks the policy and moves the watermarks from these rows instead of
-- reading the events.  Derived from the segment, so not dumped: a
-- restored stream's segments are summarized again.  Readable by the
-- extension's owner only (counts and times of events the reader may not
-- be allowed to see).  Only the extension's C code writes it.
CREATE TABLE event_log.segment_summaries (
    stream      regclass    NOT NULL,
    segment     integer     NOT NULL,
    shard       integer     NOT NULL CHECK (shard >= 0),
    events      bigint      NOT NULL CHECK (events >= 0),
    -- NULL when the segment holds no event of the shard
    first_seq   bigint,
    last_seq    bigint,
    newest_recorded_at timestamptz,
    summarized_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream, segment, shard),
    FOREIGN KEY (stream, segment) REFERENCES event_log.segments ON DELETE CASCADE,
    CHECK ((events = 0) = (first_seq IS NULL)),
    CHECK ((first_seq IS NULL) = (last_seq IS NULL)),
    CHECK ((first_seq IS NULL) = (newest_recorded_at IS NULL)),
    CHECK (first_seq <= last_seq)
) WITH (user_catalog_table = true);
