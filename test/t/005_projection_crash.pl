# Projections across a crash.  While clients append, one session runs an
# async projection in small batches and another rebuilds an inline one over
# and over; then the server stops with an immediate shutdown.  After
# recovery:
#  - the inline projection matches the log exactly (no event lost or
#    counted twice, whatever the rebuilds were doing), through a view over a
#    build table that exists, with no leftover build tables;
#  - the async projection's applied events are exactly seq 1..checkpoint of
#    each shard, and catching up applies every other event once.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EventLogTest;

my $node = new_node('projections', logical => 1);
$node->safe_psql('postgres', q{
	CREATE EXTENSION event_log;
	SELECT event_log.create_stream('public.carts', 4);
	SELECT event_log.create_projection('counts', 'carts',
		columns  => 'key text PRIMARY KEY, n int NOT NULL',
		handlers => jsonb_build_object('*',
			'INSERT INTO counts AS c VALUES (e.key, 1)
			   ON CONFLICT (key) DO UPDATE SET n = c.n + 1'));
	SELECT event_log.create_projection('seen', 'carts',
		columns  => 'shard int, seq bigint, PRIMARY KEY (shard, seq)',
		handlers => jsonb_build_object('*', 'INSERT INTO seen VALUES (e.shard, e.seq)'),
		mode     => 'async');
});

my $append = write_script($node, 'append', <<'EOF');
\set k random(1, 300)
INSERT INTO carts (key, type, payload) VALUES ('cart-' || :k, 'ItemAdded', '{"qty": 1}');
EOF
my $run = write_script($node, 'run', "SELECT event_log.run_projections(max_events => 50);\n");
my $rebuild = write_script($node, 'rebuild', "SELECT event_log.rebuild_projection('counts');\n");

my @load;
for my $job ([ $append, 3 ], [ $run, 1 ], [ $rebuild, 1 ])
{
	push @load,
	  start_pgbench($node, [ '-c', $job->[1], '-j', '1', '-T', '120', '-f', $job->[0] ]);
}

# Crash once there is history, some of it applied by the async runner and
# some rebuilds have swapped.
$node->poll_query_until('postgres', q{
	SELECT (SELECT count(*) FROM carts) >= 3000
	   AND (SELECT sum(seq) FROM event_log.projection_offsets) > 200
	   AND (SELECT generation FROM event_log.projections
	         WHERE projection = 'counts'::regclass) > 3
}) or die "the load did not get going";
$node->stop('immediate');
$_->finish for @load;    # the clients fail once the server is gone

$node->start;
my $events = $node->safe_psql('postgres', 'SELECT count(*) FROM carts');
cmp_ok($events, '>=', 3000, 'committed events survive the crash');

is( $node->safe_psql('postgres', q{
		SELECT count(*) FROM (
			(SELECT key, count(*)::int FROM carts GROUP BY key EXCEPT TABLE counts)
			UNION ALL
			(TABLE counts EXCEPT SELECT key, count(*)::int FROM carts GROUP BY key)) d
	}),
	'0',
	'the inline projection matches the log after the crash');

is( $node->safe_psql('postgres', q{
		SELECT p.build_table = (SELECT d.refobjid FROM pg_depend d
		                          JOIN pg_rewrite r ON r.oid = d.objid
		                         WHERE r.ev_class = p.projection
		                           AND d.refobjid <> p.projection
		                           AND d.classid = 'pg_rewrite'::regclass
		                         LIMIT 1)
		   AND (SELECT count(*) FROM pg_class WHERE relname LIKE 'counts$%' AND relkind = 'r') = 1
		  FROM event_log.projections p WHERE p.projection = 'counts'::regclass
	}),
	't',
	'the view reads the recorded build table, and no other build table is left');

is( $node->safe_psql('postgres', q{
		SELECT count(*) FROM event_log.projection_offsets o
		 WHERE o.projection = 'seen'::regclass
		   AND (SELECT count(*) FROM seen s WHERE s.shard = o.shard)
		       <> o.seq
		    OR (SELECT coalesce(max(seq), 0) FROM seen s WHERE s.shard = o.shard)
		       <> o.seq
	}),
	'0',
	'the async projection applied exactly seq 1..checkpoint of each shard');

$node->poll_query_until('postgres', 'SELECT event_log.run_projections() = 0')
  or die "the async projection did not catch up";
is( $node->safe_psql('postgres', q{
		SELECT (SELECT count(*) FROM seen) = (SELECT count(*) FROM carts)
		   AND NOT EXISTS (SELECT shard, seq FROM carts EXCEPT TABLE seen)
		   AND NOT EXISTS (SELECT 1 FROM event_log.projection_lag
		                    WHERE error IS NOT NULL OR lag_events <> 0)
	}),
	't',
	'catching up applies every remaining event once');

# A rebuild after recovery still agrees with the log.
$node->safe_psql('postgres', "SELECT event_log.rebuild_projection('counts')");
is( $node->safe_psql('postgres',
		'SELECT sum(n) FROM counts'),
	$events, 'a rebuild after recovery counts every event');

$node->stop;
done_testing();
