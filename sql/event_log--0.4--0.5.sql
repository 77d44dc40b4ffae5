/* event_log 0.4 -> 0.5 */
\echo Use "ALTER EXTENSION event_log UPDATE TO '0.5'" to load this file. \quit

-- Each capability that changes the catalog in 0.5 has its own section
-- below, in the order they landed.
