-- Dead letters: an async projection's error policy, per-key parking,
-- retry and discard (docs/projections.md, "When a handler fails").
CREATE EXTENSION event_log;
CREATE SCHEMA bank;
SELECT event_log.create_stream('bank.accounts', 2);

-- A read model that depends on the order of each key's events: the trail
-- of amounts, in order.  An amount that is not a number fails the handler.
SELECT event_log.create_projection('bank.trails', 'bank.accounts',
    columns  => 'account text PRIMARY KEY, trail text NOT NULL',
    handlers => jsonb_build_object('Op', $$
        INSERT INTO trails AS t VALUES (e.key, ((e.payload->>'n')::int)::text)
        ON CONFLICT (account) DO UPDATE SET trail = t.trail || ',' || excluded.trail $$),
    mode => 'async');
SELECT projection, on_error, on_build_error FROM event_log.projections;

-- Bad policies are refused, and so is parking where it cannot work.
SELECT event_log.set_error_policy('bank.trails', on_error => 'skip');
SELECT event_log.set_error_policy('bank.trails', on_build_error => 'parc');
SELECT event_log.set_error_policy('bank.nope', on_error => 'park');
SELECT event_log.set_error_policy(NULL, on_error => 'park');
SELECT event_log.create_projection('bank.inline_trails', 'bank.accounts',
    columns  => 'account text PRIMARY KEY',
    handlers => '{"Op": "INSERT INTO inline_trails VALUES (e.key) ON CONFLICT DO NOTHING"}');
SELECT event_log.set_error_policy('bank.inline_trails', on_error => 'park');
SELECT event_log.set_error_policy('bank.inline_trails', on_build_error => 'park');
SELECT event_log.create_projection('bank.inline_parked', 'bank.accounts',
    columns  => 'account text PRIMARY KEY',
    handlers => '{"Op": "INSERT INTO inline_parked VALUES (e.key) ON CONFLICT DO NOTHING"}',
    on_error => 'park');
SELECT to_regclass('bank.inline_parked');
SELECT event_log.set_error_policy('bank.inline_trails', on_error => 'stop');
SELECT event_log.drop_projection('bank.inline_trails');

SELECT event_log.set_error_policy('bank.trails', on_error => 'park');
SELECT on_error, on_build_error FROM event_log.projections;

-- Account b has a poison event (n = "x"); a, c and b's other events are good.
CREATE FUNCTION bank.op(account text, n text) RETURNS void
LANGUAGE sql AS $$
    SELECT FROM event_log.append('bank.accounts', account, 'Op', jsonb_build_object('n', n)) $$;
SELECT bank.op('a', '1'), bank.op('b', '1'), bank.op('a', '2'), bank.op('b', 'x'),
       bank.op('c', '1'), bank.op('b', '3'), bank.op('a', '3'), bank.op('b', '4');
SELECT shard, key FROM bank.accounts GROUP BY shard, key ORDER BY key;

-- The run parks b's poison event and b's later events; a and c go on, in
-- the same shard as b too.
SELECT event_log.run_projections();
SELECT * FROM bank.trails ORDER BY account;
SELECT projection, shard, seq, key, type, error, sqlstate, blocked_by, attempts,
       first_failed_at = last_failed_at AS once
  FROM event_log.dead_letters ORDER BY shard, seq;
SELECT shard, lag_events, error, parked_events
  FROM event_log.projection_lag ORDER BY shard;

-- A later event of b is parked behind the others, whatever comes between.
SELECT bank.op('b', '5'), bank.op('c', '2');
SELECT event_log.run_projections();
SELECT * FROM bank.trails ORDER BY account;
SELECT key, seq, blocked_by IS NOT NULL AS waits FROM event_log.dead_letters ORDER BY seq;

-- Retrying before the fix applies nothing: the event fails again, counted.
SELECT event_log.retry_dead_letters('bank.trails');
SELECT seq, error IS NOT NULL AS failed, attempts, last_failed_at > first_failed_at AS again
  FROM event_log.dead_letters ORDER BY seq;

-- Fix the handler, then retry the key: its events apply in order, once.
SELECT event_log.alter_projection('bank.trails',
    handlers => jsonb_build_object('Op', $$
        INSERT INTO trails AS t VALUES (e.key,
            CASE WHEN e.payload->>'n' ~ '^[0-9]+$' THEN e.payload->>'n' ELSE '?' END)
        ON CONFLICT (account) DO UPDATE SET trail = t.trail || ',' || excluded.trail $$));
SELECT event_log.retry_dead_letters('bank.trails', key => 'nobody');
SELECT event_log.retry_dead_letters('bank.trails', key => 'b');
SELECT * FROM bank.trails ORDER BY account;
SELECT count(*) AS parked FROM event_log.dead_letters;
SELECT action, done_by = current_user AS by_me, seq, key, error IS NOT NULL AS had_error
  FROM event_log.dead_letter_log ORDER BY seq;
SELECT event_log.retry_dead_letters('bank.trails');

-- b is no longer parked: its next events apply as they come.
SELECT bank.op('b', '6');
SELECT event_log.run_projections();
SELECT * FROM bank.trails WHERE account = 'b';
SELECT sum(parked_events) AS parked FROM event_log.projection_lag;

-- Discarding gives up on a key's parked events, recorded; the key goes on.
SELECT event_log.alter_projection('bank.trails',
    handlers => jsonb_build_object('Op', $$
        INSERT INTO trails AS t VALUES (e.key, ((e.payload->>'n')::int)::text)
        ON CONFLICT (account) DO UPDATE SET trail = t.trail || ',' || excluded.trail $$));
SELECT bank.op('d', '1'), bank.op('d', 'y'), bank.op('d', '2');
SELECT event_log.run_projections();
SELECT key, seq, error IS NOT NULL AS failed FROM event_log.dead_letters ORDER BY seq;
SELECT event_log.discard_dead_letters('bank.trails', key => 'nobody');
SELECT event_log.discard_dead_letters('bank.trails', key => 'd');
SELECT bank.op('d', '3');
SELECT event_log.run_projections();
SELECT * FROM bank.trails WHERE account = 'd';
SELECT action, key, seq FROM event_log.dead_letter_log WHERE action = 'discarded' ORDER BY seq;

-- One event alone: the first of the key goes, the rest stay parked.
SELECT bank.op('e', 'z'), bank.op('e', '7');
SELECT event_log.run_projections();
SELECT event_log.discard_dead_letters('bank.trails', key => 'e',
    seq => (SELECT min(seq) FROM event_log.dead_letters WHERE key = 'e'));
SELECT key, error IS NOT NULL AS failed, blocked_by IS NOT NULL AS waits
  FROM event_log.dead_letters;
SELECT event_log.retry_dead_letters('bank.trails', key => 'e');
SELECT * FROM bank.trails WHERE account = 'e';

-- The 'stop' policy stops the shard again, and keys already parked stay
-- parked until retried.
SELECT bank.op('f', 'q'), bank.op('f', '8');
SELECT event_log.run_projections();
SELECT event_log.set_error_policy('bank.trails', on_error => 'stop');
SELECT bank.op('f', '9'), bank.op('g', 'w'), bank.op('g', '1');
SELECT event_log.run_projections();
SELECT key, blocked_by IS NOT NULL AS waits FROM event_log.dead_letters ORDER BY seq;
SELECT count(*) AS stopped_shards FROM event_log.projection_lag WHERE error IS NOT NULL;
SELECT event_log.set_error_policy('bank.trails', on_error => 'park');

-- A rebuild replays every event, parked ones too, so it forgets them.
SELECT event_log.rebuild_projection('bank.trails',
    handlers => jsonb_build_object('Op', $$
        INSERT INTO trails AS t VALUES (e.key,
            CASE WHEN e.payload->>'n' ~ '^[0-9]+$' THEN e.payload->>'n' ELSE '?' END)
        ON CONFLICT (account) DO UPDATE SET trail = t.trail || ',' || excluded.trail $$));
SELECT count(*) AS parked FROM event_log.dead_letters;
SELECT count(*) AS rebuilt FROM event_log.dead_letter_log WHERE action = 'rebuilt';
SELECT event_log.run_projections();
SELECT * FROM bank.trails ORDER BY account;

-- Builds park too, under on_build_error => 'park': create_projection()
-- over a history with poison events parks their keys and builds the rest,
-- set-based (sql/dead_letter_builds.sql has more).
SELECT event_log.create_projection('bank.trails2', 'bank.accounts',
    columns  => 'account text PRIMARY KEY, trail text NOT NULL',
    handlers => jsonb_build_object('Op', $$
        INSERT INTO trails2 AS t VALUES (e.key, ((e.payload->>'n')::int)::text)
        ON CONFLICT (account) DO UPDATE SET trail = t.trail || ',' || excluded.trail $$),
    mode => 'async', on_error => 'park', on_build_error => 'park');
SELECT on_error, on_build_error, build_method FROM event_log.projections
 WHERE projection = 'bank.trails2'::regclass;
SELECT key, count(*) AS parked, count(error) AS failed, min(sqlstate) AS sqlstate
  FROM event_log.dead_letters WHERE projection = 'bank.trails2'::regclass
 GROUP BY key ORDER BY key;
SELECT * FROM bank.trails2 ORDER BY account;
SELECT sum(parked_events) AS parked, sum(lag_events) AS lag FROM event_log.projection_lag
 WHERE projection = 'bank.trails2'::regclass;

-- Under 'stop' the same build fails, and changes nothing.
SELECT event_log.set_error_policy('bank.trails2', on_build_error => 'stop');
SELECT event_log.rebuild_projection('bank.trails2');
SELECT count(*) AS parked FROM event_log.dead_letters WHERE projection = 'bank.trails2'::regclass;

-- A retry after the fix completes the build's parked keys, in order: the
-- same as the projection whose events never failed.
SELECT event_log.alter_projection('bank.trails2',
    handlers => jsonb_build_object('Op', $$
        INSERT INTO trails2 AS t VALUES (e.key,
            CASE WHEN e.payload->>'n' ~ '^[0-9]+$' THEN e.payload->>'n' ELSE '?' END)
        ON CONFLICT (account) DO UPDATE SET trail = t.trail || ',' || excluded.trail $$));
SELECT event_log.retry_dead_letters('bank.trails2') > 0 AS retried;
(SELECT * FROM bank.trails EXCEPT SELECT * FROM bank.trails2)
UNION ALL (SELECT * FROM bank.trails2 EXCEPT SELECT * FROM bank.trails);
SELECT event_log.drop_projection('bank.trails2');

-- A handler may not retry (or discard) dead letters: it would apply its
-- key's later events before its own.  Its event is parked with the error.
SELECT event_log.alter_projection('bank.trails',
    handlers => jsonb_build_object('Op', $$
        INSERT INTO trails AS t VALUES (e.key,
            CASE WHEN e.payload->>'n' ~ '^[0-9]+$' THEN e.payload->>'n' ELSE '?' END)
        ON CONFLICT (account) DO UPDATE SET trail = t.trail || ',' || excluded.trail $$,
        'Retry', 'SELECT event_log.retry_dead_letters()'));
SELECT event_log.append('bank.accounts', 'r', 'Retry', '{}') IS NOT NULL AS appended;
SELECT event_log.run_projections();
SELECT key, type, error, sqlstate FROM event_log.dead_letters WHERE key = 'r';
SELECT event_log.discard_dead_letters('bank.trails', key => 'r');

-- Who may see and act on dead letters: the projection's owner acts; only
-- roles that may read the stream see them.
SELECT bank.op('h', 'v');
SELECT event_log.alter_projection('bank.trails',
    handlers => jsonb_build_object('Op', $$
        INSERT INTO trails AS t VALUES (e.key, ((e.payload->>'n')::int)::text)
        ON CONFLICT (account) DO UPDATE SET trail = t.trail || ',' || excluded.trail $$));
SELECT event_log.run_projections();
CREATE ROLE dl_stranger;
GRANT USAGE ON SCHEMA bank TO dl_stranger;
-- A cheap function of the reader's own that would show what it is given.
CREATE FUNCTION bank.peek(text) RETURNS boolean LANGUAGE plpgsql COST 0.0001
AS $$ BEGIN RAISE NOTICE 'peeked at %', $1; RETURN true; END $$;
SET ROLE dl_stranger;
SELECT count(*) AS visible FROM event_log.dead_letters WHERE bank.peek(key);
SELECT count(*) AS visible FROM event_log.dead_letter_log WHERE bank.peek(key);
SELECT count(*) AS visible FROM event_log.dead_letters;
SELECT count(*) AS visible FROM event_log.dead_letter_log;
SELECT count(*) AS visible FROM event_log.projection_dead_letters;
SELECT parked_events FROM event_log.projection_lag LIMIT 1;
SELECT event_log.retry_dead_letters('bank.trails');
SELECT event_log.discard_dead_letters('bank.trails');
SELECT event_log.set_error_policy('bank.trails', on_error => 'stop');
SELECT event_log.retry_dead_letters();
RESET ROLE;
SELECT count(*) AS still_parked FROM event_log.dead_letters;
SELECT event_log.discard_dead_letters(NULL);
SELECT event_log.discard_dead_letters('bank.trails', seq => 1);
SELECT count(*) AS still_parked FROM event_log.dead_letters;

-- Dropping the projection drops its dead letters and their log.
SELECT event_log.drop_projection('bank.trails');
SELECT count(*) FROM event_log.projection_dead_letters;
SELECT count(*) FROM event_log.dead_letter_actions;
-- Consumer groups: nack() parks an event the application cannot process,
-- and the group commits past it; retry_nacked() gives it back to the
-- group's next poll, before new events; discard_nacked() drops it.
SELECT event_log.create_stream('bank.mail', 1);
INSERT INTO bank.mail (key, type, payload) VALUES
    ('a', 'Mail', '{}'), ('b', 'Mail', '{"to": "nobody"}'), ('c', 'Mail', '{}');
SELECT key, seq FROM event_log.poll('mailer', 'bank.mail');
SELECT event_log.nack('mailer', 'bank.mail', 0, 2, 'smtp: no such user');
SELECT event_log.commit_offset('mailer', 'bank.mail', 0, 3);
SELECT count(*) AS new_events FROM event_log.poll('mailer', 'bank.mail');
SELECT projection, group_name, stream, shard, seq, key, type, error, state, attempts
  FROM event_log.dead_letters WHERE group_name IS NOT NULL;
SELECT shard, committed_seq, lag_events, parked_events FROM event_log.consumer_lag
 WHERE group_name = 'mailer';
SELECT event_log.retry_nacked('mailer', 'bank.mail', key => 'nobody');
SELECT event_log.retry_nacked('mailer', 'bank.mail');
SELECT state FROM event_log.dead_letters WHERE group_name = 'mailer';
INSERT INTO bank.mail (key, type, payload) VALUES ('d', 'Mail', '{}');
SELECT key, seq FROM event_log.poll('mailer', 'bank.mail');
-- Delivered, it stays on the list, to retry, until the group commits it
-- (test/t/060_nack_retry_crash.pl): nothing is logged yet.
SELECT state, count(*) AS parked FROM event_log.dead_letters WHERE group_name = 'mailer'
 GROUP BY state;
SELECT action, group_name, seq, key FROM event_log.dead_letter_log WHERE group_name IS NOT NULL;
-- Still failing: parked again, one more attempt each time.
SELECT event_log.nack('mailer', 'bank.mail', 0, 2, 'smtp: still no such user');
SELECT event_log.nack('mailer', 'bank.mail', 0, 2, 'smtp: gave up');
SELECT error, state, attempts FROM event_log.dead_letters WHERE group_name = 'mailer';
SELECT event_log.discard_nacked('mailer', 'bank.mail', seq => 2);
SELECT event_log.discard_nacked('mailer', 'bank.mail', key => 'b');
SELECT action, seq, key, error FROM event_log.dead_letter_log
 WHERE group_name = 'mailer' AND action = 'discarded';
SELECT sum(parked_events) FROM event_log.consumer_lag WHERE group_name = 'mailer';
-- Bad input changes nothing.
SELECT event_log.nack('nobody', 'bank.mail', 0, 1);
SELECT event_log.nack('mailer', 'bank.mail', 1, 1);
SELECT event_log.nack('mailer', 'bank.mail', 0, 99);
SELECT event_log.nack('mailer', 'bank.mail', 0, NULL);
SELECT event_log.nack('mailer', 'bank.mail', 0, 1, repeat('x', 9000));
SELECT event_log.retry_nacked(NULL, 'bank.mail');
SET ROLE dl_stranger;
SELECT event_log.nack('mailer', 'bank.mail', 0, 1);
SELECT event_log.retry_nacked('mailer', 'bank.mail');
RESET ROLE;
SELECT count(*) AS parked FROM event_log.consumer_dead_letters;
-- A group's dead letters go with it.
SELECT event_log.nack('mailer', 'bank.mail', 0, 1);
SELECT event_log.drop_group('mailer', 'bank.mail');
SELECT count(*) AS parked FROM event_log.consumer_dead_letters;
SELECT event_log.drop_stream('bank.mail');

-- SELECT on a stream in a schema without USAGE is not reading it: every
-- read fails, so the views that quote events leave the stream out, and the
-- lag views show its rows without what needs reading, instead of failing.
CREATE SCHEMA vault;
SELECT event_log.create_stream('vault.pay', 1);
INSERT INTO vault.pay (key, type, payload) VALUES ('alice@example.com', 'Paid', '{}');
SELECT count(*) FROM event_log.poll('billing', 'vault.pay');
SELECT event_log.nack('billing', 'vault.pay', 0, 1, 'card 4111 declined');
SELECT event_log.create_projection('vault.totals', 'vault.pay',
    columns => 'k text PRIMARY KEY', handlers => '{"Paid": "INSERT INTO totals VALUES (e.key)"}',
    mode => 'async');
GRANT SELECT ON vault.pay TO dl_stranger;
SET ROLE dl_stranger;
SELECT count(*) FROM vault.pay;
SELECT count(*) FROM event_log.dead_letters WHERE stream::text LIKE 'vault.%';
SELECT group_name, shard, committed_seq, log_end, lag_events FROM event_log.consumer_lag
 WHERE group_name = 'billing';
SELECT projection, shard, applied_seq, last_seq, lag_events FROM event_log.projection_lag
 WHERE projection::text = 'vault.totals';
RESET ROLE;
GRANT USAGE ON SCHEMA vault TO dl_stranger;
SET ROLE dl_stranger;
SELECT key, error FROM event_log.dead_letters WHERE stream::text LIKE 'vault.%';
SELECT group_name, shard, committed_seq, log_end, lag_events FROM event_log.consumer_lag
 WHERE group_name = 'billing';
SELECT projection, shard, applied_seq, last_seq, lag_events FROM event_log.projection_lag
 WHERE projection::text = 'vault.totals';
RESET ROLE;
SELECT event_log.drop_stream('vault.pay', cascade => true);
REVOKE ALL ON SCHEMA vault FROM dl_stranger;
DROP SCHEMA vault CASCADE;

REVOKE USAGE ON SCHEMA bank FROM dl_stranger;
DROP ROLE dl_stranger;
SELECT event_log.drop_stream('bank.accounts');
DROP SCHEMA bank CASCADE;
DROP EXTENSION event_log;
