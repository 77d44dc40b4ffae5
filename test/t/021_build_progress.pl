# Build progress: while create_projection() or rebuild_projection() runs,
# another session sees in event_log.projection_build_progress how many
# events are done of how many, per shard, the rate and the time left; a
# cancel of the build leaves nothing of it behind, and the view empties.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EventLogTest;

my $node = new_node('build_progress');
$node->safe_psql('postgres', q{
	CREATE EXTENSION event_log;
	SELECT event_log.create_stream('public.orders', 2);
	INSERT INTO orders (key, type, payload)
	SELECT 'o' || i, 'Placed', '{}' FROM generate_series(1, 20000) i;
	SELECT event_log.create_projection('fast', 'orders',
		columns  => 'key text PRIMARY KEY',
		handlers => jsonb_build_object('*', 'INSERT INTO fast VALUES (e.key)'),
		mode     => 'async');
	CREATE ROLE watcher;
});
is($node->safe_psql('postgres', 'SELECT count(*) FROM event_log.projection_build_progress'),
	'0', 'no build, no row');

# A slow handler (1 ms an event): the build takes about 20 s.
my $slow = q{jsonb_build_object('*', 'INSERT INTO slow SELECT e.key FROM pg_catalog.pg_sleep(0.001)')};
my $builder = $node->background_psql('postgres');
my $pid = $builder->query_safe('SELECT pg_backend_pid()');
start_query($builder, qq{
	SELECT event_log.create_projection('slow', 'orders', columns => 'key text', handlers => $slow,
		mode => 'async');
});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 2 AND sum(events_done) > 0 FROM event_log.projection_build_progress}),
	'another session sees the build');
# The projection being created is not visible to others before it commits:
# its column is the view's oid.
my $row = $node->safe_psql('postgres', q{
	SELECT count(*), count(DISTINCT shard), min(pid), sum(events_total),
	       bool_and(events_done <= events_total), bool_and(phase = 'replaying'),
	       bool_and(stream = 'orders'::regclass), count(DISTINCT projection)
	  FROM event_log.projection_build_progress});
is($row, "2|2|$pid|20000|t|t|t|1", 'a row per shard: done of all 20000 events, the stream, the projection');
ok($node->poll_query_until('postgres', q{
	SELECT bool_and(events_per_second > 0 AND time_left > interval '0')
	  FROM event_log.projection_build_progress}),
	'the rate and the time left');
my $first = $node->safe_psql('postgres', 'SELECT sum(events_done) FROM event_log.projection_build_progress');
ok($node->poll_query_until('postgres', qq{
	SELECT sum(events_done) > $first FROM event_log.projection_build_progress}),
	'the count goes up');
is($node->safe_psql('postgres', q{
	SET ROLE watcher;
	SELECT count(*) FROM event_log.projection_build_progress}),
	'0', 'a role that may not read the stream sees nothing of its builds');

# Cancel: the build ends with the cancel's error, and leaves nothing.
# (pg_cancel_backend() is how Ctrl-C or a statement_timeout ends it too.)
sub cancel_build
{
	my ($session, $pid) = @_;
	my $t0 = time();
	$node->safe_psql('postgres', "SELECT pg_cancel_backend($pid)");
	$session->{run}->pump
	  until $session->{stderr} =~ /canceling statement due to user request/ || time() - $t0 > 60;
	my $seen = $session->{stderr} =~ /canceling statement due to user request/;
	$session->{stderr} = '';
	return $seen;
}
ok(cancel_build($builder, $pid), 'the build ends with the cancel');
is($node->safe_psql('postgres', 'SELECT count(*) FROM event_log.projection_build_progress'),
	'0', 'after the cancel the view is empty');
is($node->safe_psql('postgres', q{
	SELECT (SELECT count(*) FROM event_log.projections WHERE projection::text LIKE 'slow%'),
	       to_regclass('slow') IS NULL, to_regclass('"slow$1"') IS NULL}),
	'0|t|t', 'the cancelled build left no projection, view or build table');
my $files = () = glob($node->data_dir . '/pg_stat_tmp/event_log_build.*');
is($files, 0, 'and no progress file');
eval { $builder->quit };	# psql ended at the error

# A rebuild is watched the same way; its view keeps the old contents meanwhile.
$builder = $node->background_psql('postgres');
$pid = $builder->query_safe('SELECT pg_backend_pid()');
my $slow_fast = $slow =~ s/INTO slow/INTO fast/r;
start_query($builder, qq{SELECT event_log.rebuild_projection('fast', handlers => $slow_fast);});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 2 AND sum(events_done) > 0 FROM event_log.projection_build_progress
	 WHERE projection = 'fast'::regclass}),
	'a rebuild is seen too');
is($node->safe_psql('postgres', 'SELECT count(*) FROM fast'), '20000', 'readers keep the old contents');
ok(cancel_build($builder, $pid), 'the rebuild ends with the cancel');
is($node->safe_psql('postgres', 'SELECT count(*) FROM event_log.projection_build_progress'),
	'0', 'the cancelled rebuild is gone from the view');
is($node->safe_psql('postgres', q{SELECT generation FROM event_log.projections WHERE projection = 'fast'::regclass}),
	'1', 'the cancelled rebuild changed nothing');
eval { $builder->quit };	# psql ended at the error

$node->stop;
done_testing();
