/* event_log 0.1 -> 0.2 (issue 11: security and robustness) */
\echo Use "ALTER EXTENSION event_log UPDATE TO '0.2'" to load this file. \quit

-- Each change below says which part of docs/security.md it belongs to.
