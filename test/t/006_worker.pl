# The background worker, with event_log in shared_preload_libraries:
#  - it keeps async projections caught up without anybody calling
#    run_projections(), and wakes when appends commit (its naptime is an hour
#    here, so sleeping it out would fail the test);
#  - a handler error stops only that projection's shard, is recorded, and
#    the worker goes on with the rest, then resumes once the handler is fixed;
#  - across an immediate shutdown in the middle of appends, and a clean
#    restart, no event is lost or applied twice.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EventLogTest;

my $node = new_node('worker', logical => 1, conf => qq{
shared_preload_libraries = 'event_log'
event_log.worker_naptime = '1h'
event_log.retry_interval = '100ms'
});
$node->safe_psql('postgres', q{
	CREATE EXTENSION event_log;
	SELECT event_log.create_stream('public.carts', 4);
	SELECT event_log.create_projection('seen', 'carts',
		columns  => 'shard int, seq bigint, PRIMARY KEY (shard, seq)',
		handlers => jsonb_build_object('*', 'INSERT INTO seen VALUES (e.shard, e.seq)'),
		mode     => 'async');
	SELECT event_log.create_projection('fragile', 'carts',
		columns  => 'key text PRIMARY KEY, n int NOT NULL',
		handlers => jsonb_build_object('*',
			'INSERT INTO fragile AS f VALUES (e.key, (e.payload->>''n'')::int)
			   ON CONFLICT (key) DO UPDATE SET n = f.n + excluded.n'),
		mode     => 'async');
});

# Everything appended is applied exactly once: `seen` has each (shard, seq)
# of the stream (its primary key refuses a second application).
my $all_seen = q{
	SELECT (SELECT count(*) FROM seen) = (SELECT count(*) FROM carts)
	   AND NOT EXISTS (SELECT shard, seq FROM carts EXCEPT TABLE seen)
};

$node->safe_psql('postgres', q{
	INSERT INTO carts (key, type, payload)
	SELECT 'cart-' || i % 50, 'ItemAdded', '{"n": 1}' FROM generate_series(1, 500) i;
});
ok($node->poll_query_until('postgres', $all_seen),
	'the worker applies committed events without being asked');
# The worker runs one projection at a time: the second may still be at it
# when the first has caught up.
ok($node->poll_query_until('postgres', 'SELECT sum(n) FROM fragile', '500'),
	'both async projections caught up');

# A poison event: fragile stops at it, seen goes on.
$node->safe_psql('postgres', q{
	INSERT INTO carts (key, type, payload) VALUES ('cart-1', 'ItemAdded', '{"n": "many"}');
	INSERT INTO carts (key, type, payload) VALUES ('cart-2', 'ItemAdded', '{"n": 1}');
});
ok( $node->poll_query_until('postgres', q{
		SELECT count(*) = 1 FROM event_log.projection_lag
		 WHERE projection = 'fragile'::regclass AND error LIKE 'invalid input syntax%'
	}),
	'a handler error is recorded');
ok($node->poll_query_until('postgres', $all_seen),
	'the other projection keeps going');
is( $node->safe_psql('postgres', q{
		SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'event_log worker'
	}),
	'1', 'the worker survives the error');
$node->safe_psql('postgres', q{
	SELECT event_log.alter_projection('fragile',
		handlers => jsonb_build_object('*',
			'INSERT INTO fragile AS f
			 VALUES (e.key, CASE WHEN e.payload->>''n'' ~ ''^\d+$''
			                     THEN (e.payload->>''n'')::int ELSE 0 END)
			 ON CONFLICT (key) DO UPDATE SET n = f.n + excluded.n'));
});
ok( $node->poll_query_until('postgres', q{
		SELECT sum(lag_events) = 0 AND bool_and(error IS NULL)
		  FROM event_log.projection_lag WHERE projection = 'fragile'::regclass
	}),
	'once fixed, the projection resumes at the failed event');
is($node->safe_psql('postgres', 'SELECT sum(n) FROM fragile'), '501',
	'and applies it and what followed once');

# A crash in the middle of appends.
my $script = write_script($node, 'append', <<'EOF');
\set k random(1, 200)
INSERT INTO carts (key, type, payload) VALUES ('cart-' || :k, 'ItemAdded', '{"n": 1}');
EOF
my $load = start_pgbench($node, [ '-c', '3', '-j', '1', '-T', '120', '-f', $script ]);
$node->poll_query_until('postgres', q{
	SELECT (SELECT count(*) FROM carts) >= 3000 AND (SELECT count(*) FROM seen) >= 1500
}) or die "the load did not get going";
$node->stop('immediate');
$load->finish;

$node->start;
ok($node->poll_query_until('postgres', $all_seen),
	'after a crash the worker resumes: every event applied exactly once');

$node->restart;
$node->safe_psql('postgres', q{
	INSERT INTO carts (key, type, payload) VALUES ('cart-9', 'ItemAdded', '{"n": 1}');
});
ok($node->poll_query_until('postgres', $all_seen),
	'after a clean restart the worker resumes');
is( $node->safe_psql('postgres', q{
		SELECT sum(n) FROM fragile
	}),
	$node->safe_psql('postgres',
		q{SELECT sum(CASE WHEN payload->>'n' ~ '^\d+$' THEN (payload->>'n')::int ELSE 0 END) FROM carts}),
	'the second projection agrees with the log too');

$node->stop;
done_testing();
