/* event_log 0.5 -> 0.6 */
\echo Use "ALTER EXTENSION event_log UPDATE TO '0.6'" to load this file. \quit

-- Each capability that changes the catalog in 0.6 has its own section
-- below, in the order they landed.

-- ---------------------------------------------------------------------
-- Readers below a low watermark (docs/retention.md, docs/design/retention.md)
-- ---------------------------------------------------------------------

-- The latest recorded_at of any event retention removed from the shard,
-- kept by every removal: read_by_time() refuses a range that could hold
-- a removed event instead of returning what is left of it.  recorded_at
-- is not ordered by seq, so the shard's oldest remaining event cannot
-- tell.  Removals made before 0.6 did not keep it: their shards get the
-- start of their last removal's transaction, after which only an event
-- whose transaction began while that removal ran could have been recorded
-- (and removed by a count policy): a close bound, not an exact one.
ALTER TABLE event_log.shard_watermarks ADD COLUMN removed_until timestamptz;
UPDATE event_log.shard_watermarks SET removed_until = removed_at
 WHERE removed_events > 0;
