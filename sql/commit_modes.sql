-- Commit modes: 'serial' (the default) and 'grouped' (docs/streams.md).
CREATE EXTENSION event_log;
SET client_min_messages = warning;

SELECT event_log.create_stream('ledger', 2);
SELECT stream, shards, commit_mode FROM event_log.streams;

-- The owner switches a stream to grouped commits, and back.
SELECT event_log.alter_stream('ledger', commit_mode => 'grouped');
SELECT commit_mode FROM event_log.streams WHERE stream = 'ledger'::regclass;
-- NULL leaves the mode as it is.
SELECT event_log.alter_stream('ledger', NULL);
SELECT commit_mode FROM event_log.streams WHERE stream = 'ledger'::regclass;

-- Every append path works the same in a grouped stream.
INSERT INTO ledger (key, type, payload) VALUES ('acct-1', 'Opened', '{}'), ('acct-2', 'Opened', '{}');
SELECT shard, seq, version FROM event_log.append('ledger', 'acct-1', 'Deposited', '{"amount": 5}');
SELECT count(*) FROM event_log.append_events('ledger', 'acct-2',
    ARRAY[event_log.new_event('Deposited', '{"amount": 1}'), event_log.new_event('Deposited', '{"amount": 2}')]);
BEGIN;
INSERT INTO ledger (key, type, payload) VALUES ('acct-1', 'Withdrawn', '{"amount": 1}');
SAVEPOINT s;
INSERT INTO ledger (key, type, payload) VALUES ('acct-1', 'Withdrawn', '{"amount": 2}');
ROLLBACK TO SAVEPOINT s;
INSERT INTO ledger (key, type, payload) VALUES ('acct-1', 'Closed', '{}');
COMMIT;
BEGIN;
INSERT INTO ledger (key, type, payload) VALUES ('acct-2', 'Lost', '{}');
ROLLBACK;
-- Dense shards and keys, in commit order; read() and replay() see them.
SELECT shard, seq, key, version, type FROM ledger ORDER BY shard, seq;
SELECT key, version, type FROM event_log.replay('ledger', 'acct-1');
SELECT count(*) FROM event_log.read('ledger', 0) r JOIN ledger l USING (shard, seq);
SELECT event_log.wait_durable() <= pg_current_wal_insert_lsn() AS flushed_up_to_the_insert_position;
SELECT pg_current_wal_flush_lsn() >= event_log.wait_durable() AS durable;

-- Consumer groups and projections read grouped streams as any other.
SELECT count(*) FROM event_log.poll('auditors', 'ledger', 100);
SELECT event_log.create_projection('balances', 'ledger',
    reducer => $$coalesce(state, '{}') || jsonb_build_object('events', coalesce((state->>'events')::int, 0) + 1)$$);
SELECT key, state FROM balances ORDER BY key;

SELECT event_log.alter_stream('ledger', commit_mode => 'serial');
INSERT INTO ledger (key, type, payload) VALUES ('acct-1', 'Reopened', '{}');
SELECT key, state FROM balances ORDER BY key;

-- A grouped commit lowers synchronous_commit for its commit alone: the
-- session's setting is back after every way a transaction can end.
SELECT event_log.create_stream('gl', 4);
SELECT event_log.alter_stream('gl', commit_mode => 'grouped');
SET synchronous_commit = remote_write;
INSERT INTO gl (key, type, payload) VALUES ('g-1', 'A', '{}');
SHOW synchronous_commit;
BEGIN;
INSERT INTO gl (key, type, payload) VALUES ('g-1', 'Gone', '{}');
ROLLBACK;
SHOW synchronous_commit;
-- SET LOCAL: the transaction's value is used and then dropped.
BEGIN;
SET LOCAL synchronous_commit = on;
INSERT INTO gl (key, type, payload) VALUES ('g-1', 'B', '{}');
COMMIT;
SHOW synchronous_commit;
-- A deferred constraint failing at COMMIT.
CREATE TABLE gl_deferred (id int UNIQUE DEFERRABLE INITIALLY DEFERRED);
BEGIN;
INSERT INTO gl (key, type, payload) VALUES ('g-1', 'Gone', '{}');
INSERT INTO gl_deferred VALUES (1), (1);
COMMIT;
SHOW synchronous_commit;
-- NOTIFY, a savepoint that took the only append back, a WITH HOLD cursor
-- that appends when COMMIT materializes it.
BEGIN;
INSERT INTO gl (key, type, payload) VALUES ('g-1', 'C', '{}');
NOTIFY gl_channel;
COMMIT;
BEGIN;
SAVEPOINT s;
INSERT INTO gl (key, type, payload) VALUES ('g-1', 'Gone', '{}');
ROLLBACK TO SAVEPOINT s;
COMMIT;
SHOW synchronous_commit;
BEGIN;
DECLARE held CURSOR WITH HOLD FOR
    SELECT a.version FROM generate_series(1, 2) i,
        LATERAL event_log.append('gl', 'g-1', 'Held' || i, '{}') a;
COMMIT;
FETCH ALL FROM held;
CLOSE held;
SHOW synchronous_commit;
-- Prepared: nothing lowered, the locks go with the prepared transaction.
BEGIN;
INSERT INTO gl (key, type, payload) VALUES ('g-1', 'Prepared', '{}');
PREPARE TRANSACTION 'gl_prepared';
SHOW synchronous_commit;
COMMIT PREPARED 'gl_prepared';
-- A procedure that appends and commits twice; a grouped and a serial stream
-- in one transaction.
CREATE PROCEDURE gl_twice() LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO gl (key, type, payload) VALUES ('g-1', 'Proc1', '{}');
    COMMIT;
    INSERT INTO gl (key, type, payload) VALUES ('g-1', 'Proc2', '{}');
END $$;
CALL gl_twice();
SHOW synchronous_commit;
BEGIN;
INSERT INTO gl (key, type, payload) VALUES ('g-1', 'Mixed', '{}');
INSERT INTO ledger (key, type, payload) VALUES ('acct-1', 'Mixed', '{}');
COMMIT;
SHOW synchronous_commit;
SET synchronous_commit = off;
INSERT INTO gl (key, type, payload) VALUES ('g-1', 'Async', '{}');
SHOW synchronous_commit;
RESET synchronous_commit;
SELECT version, type FROM gl ORDER BY version;
SELECT count(*) AS gaps FROM (SELECT shard FROM gl GROUP BY shard HAVING count(*) <> max(seq)) s;
SELECT event_log.drop_stream('gl');
DROP TABLE gl_deferred;
DROP PROCEDURE gl_twice();

-- Bad input: clear errors, nothing changes.
SELECT event_log.alter_stream('ledger', commit_mode => 'fast');
SELECT event_log.alter_stream('ledger', commit_mode => 'Grouped');
SELECT event_log.alter_stream(NULL, commit_mode => 'grouped');
CREATE TABLE not_a_stream (id int);
SELECT event_log.alter_stream('not_a_stream', commit_mode => 'grouped');
SELECT commit_mode FROM event_log.streams WHERE stream = 'ledger'::regclass;

-- Only the stream's owner may change it, and nobody writes the registry.
CREATE ROLE regress_ledger_writer;
GRANT INSERT, SELECT ON ledger TO regress_ledger_writer;
SET ROLE regress_ledger_writer;
SELECT event_log.alter_stream('ledger', commit_mode => 'grouped');
UPDATE event_log.streams SET commit_mode = 'grouped';
-- wait_durable() is for everyone: it reveals nothing but a WAL position.
SELECT event_log.wait_durable() IS NOT NULL AS ok;
RESET ROLE;
SELECT commit_mode FROM event_log.streams WHERE stream = 'ledger'::regclass;
-- The registry refuses a mode it does not know even from its owner.
\set VERBOSITY terse
UPDATE event_log.streams SET commit_mode = 'fast';
\set VERBOSITY default

SELECT event_log.drop_stream('ledger', cascade => true);
DROP TABLE not_a_stream;
DROP ROLE regress_ledger_writer;
DROP EXTENSION event_log;
