# Per-key parking under load, with the background worker: an async
# projection whose handler fails on poison events of some keys parks those
# keys while 4 appenders run and the worker keeps the other keys current;
# after the handler is fixed, a retry (racing more appends) applies the
# parked events, and the projection equals a clean replay of the log.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EventLogTest;

my $node = new_node('dead_letters', conf => qq{
shared_preload_libraries = 'event_log'
event_log.worker_naptime = '1h'
event_log.retry_interval = '100ms'
});

# The trail of each key's amounts, in the order of the log: any event
# applied out of order, twice or not at all shows.  Poison amounts ('p..')
# fail the first handler; the fixed one writes them as '?'.
my $handler = q{INSERT INTO %s AS t VALUES (e.key, %s)
	ON CONFLICT (key) DO UPDATE SET trail = t.trail || ',' || excluded.trail, n = t.n + 1};
my $strict = sprintf($handler, 'trails', q{((e.payload->>'n')::int)::text, 1});
my $fixed_expr = q{CASE WHEN e.payload->>'n' ~ '^[0-9]+$' THEN e.payload->>'n' ELSE '?' END, 1};
my $fixed = sprintf($handler, 'trails', $fixed_expr);
$node->safe_psql('postgres', qq{
	CREATE EXTENSION event_log;
	SELECT event_log.create_stream('public.accounts', 4);
	SELECT event_log.create_projection('trails', 'accounts',
		columns  => 'key text PRIMARY KEY, trail text NOT NULL, n int NOT NULL',
		handlers => jsonb_build_object('Op', \$h\$$strict\$h\$),
		mode     => 'async');
	SELECT event_log.set_error_policy('trails', on_error => 'park');
});

# 4 appenders; keys k0..k4 get a poison event now and then (10%).
my $script = write_script($node, 'append', q{
\set k random(0, 39)
\set r random(1, 100)
SELECT event_log.append('accounts', 'k' || :k, 'Op',
	jsonb_build_object('n', CASE WHEN :k < 5 AND :r <= 10 THEN 'p' || :r ELSE :r::text END));
});
my $load = start_pgbench($node, [ '-c', '4', '-j', '1', '-t', '300', '-f', $script ]);
$load->finish;
is($node->safe_psql('postgres', 'SELECT count(*) FROM accounts'), '1200', '4 appenders appended');

my $caught_up = q{
	SELECT bool_and(lag_events = 0) FROM event_log.projection_lag WHERE projection = 'trails'::regclass
};
ok($node->poll_query_until('postgres', $caught_up), 'the worker caught up past the poison events');
my $poisoned = $node->safe_psql('postgres', q{
	SELECT string_agg(DISTINCT key, ',' ORDER BY key) FROM accounts WHERE payload->>'n' LIKE 'p%'});
isnt($poisoned, '', "some keys have poison events ($poisoned)");
is($node->safe_psql('postgres', q{
	SELECT string_agg(DISTINCT key, ',' ORDER BY key) FROM event_log.dead_letters
	 WHERE error IS NOT NULL}),
	$poisoned, 'each poisoned key is parked at a failed event');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM event_log.dead_letters d
	  JOIN accounts a USING (shard, seq)
	 WHERE d.seq < (SELECT min(seq) FROM accounts p
	                 WHERE p.shard = d.shard AND p.key = d.key AND p.payload->>'n' LIKE 'p%')}),
	'0', 'nothing before a key\'s first poison event is parked');
is($node->safe_psql('postgres', q{
	SELECT (SELECT sum(parked_events) FROM event_log.projection_lag) = count(*)
	   AND count(*) = (SELECT count(*) FROM accounts a
	                    WHERE a.seq >= (SELECT min(seq) FROM accounts p WHERE p.shard = a.shard
	                                     AND p.key = a.key AND p.payload->>'n' LIKE 'p%'))
	  FROM event_log.dead_letters}),
	't', 'a parked key\'s later events are all parked, and projection_lag counts them');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM event_log.projection_lag WHERE error IS NOT NULL}),
	'0', 'no shard stopped');

# The keys without poison are current: the same as a clean replay.
$node->safe_psql('postgres', sprintf(q{
	SELECT event_log.create_projection('clean', 'accounts',
		columns  => 'key text PRIMARY KEY, trail text NOT NULL, n int NOT NULL',
		handlers => jsonb_build_object('Op', $h$%s$h$), mode => 'async');
}, sprintf($handler, 'clean', $fixed_expr)));
my $differ = q{
	SELECT count(*) FROM (
		(SELECT * FROM trails EXCEPT SELECT * FROM clean)
		UNION ALL (SELECT * FROM clean EXCEPT SELECT * FROM trails)) d
};
is($node->safe_psql('postgres', $differ . qq{ WHERE key NOT IN ('} . join("','", split(/,/, $poisoned)) . q{')}),
	'0', 'the other keys are what a clean replay gives');

# Fix the handler, and retry while the appenders run again.
$load = start_pgbench($node, [ '-c', '4', '-j', '1', '-t', '200', '-f', $script ]);
$node->safe_psql('postgres', qq{
	SELECT event_log.alter_projection('trails', handlers => jsonb_build_object('Op', \$h\$$fixed\$h\$));
});
my $retried = $node->safe_psql('postgres', 'SELECT event_log.retry_dead_letters()');
ok($retried > 0, "the retry applied the parked events ($retried)");
$load->finish;
is($node->safe_psql('postgres', 'SELECT count(*) FROM accounts'), '2000', 'the appenders appended again');
ok($node->poll_query_until('postgres', $caught_up), 'the worker caught up again');
# A run may have parked events of a key just before the retry took the
# projection; the retry applied them.  Nothing is left parked.
is($node->safe_psql('postgres', 'SELECT count(*) FROM event_log.dead_letters'), '0',
	'no event is left parked');
$node->safe_psql('postgres', q{SELECT event_log.rebuild_projection('clean')});
is($node->safe_psql('postgres', $differ), '0',
	'after the retry, the projection equals a clean replay of the log');
is($node->safe_psql('postgres', q{
	SELECT sum(n) = (SELECT count(*) FROM accounts) FROM trails}),
	't', 'every event applied once');
is($node->safe_psql('postgres', q{
	SELECT count(*) > 0 AND bool_and(action = 'retried' AND done_by = current_user)
	  FROM event_log.dead_letter_log}),
	't', 'the retries are in the log, with who ran them');

$node->stop;
done_testing();
