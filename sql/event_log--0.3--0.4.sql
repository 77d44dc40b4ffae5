/* event_log 0.3 -> 0.4 */
\echo Use "ALTER EXTENSION event_log UPDATE TO '0.4'" to load this file. \quit

-- Each capability that changes the catalog in 0.4 has its own section
-- below, in the order they landed.
