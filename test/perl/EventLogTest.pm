# The set-up the event_log TAP tests (test/t/*.pl) share: nodes configured
# for the extension, and the helpers several scripts need. Test assertions
# stay in the scripts; nothing here calls ok(), is() or the like.
#
# `make installcheck` (PGXS) puts this directory on prove's include path
# (PROVE_FLAGS in the Makefile); see docs/testing.md.
package EventLogTest;

use strict;
use warnings;
use Exporter 'import';
use File::Basename qw(dirname);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;

our @EXPORT = qw(new_node write_script start_pgbench poll_shards start_query start_blocked_query
  check_dense stream_positions check_cdc_order crash_during wait_until_ready);

# Sanitizer mode (`make test-sanitize`, EVENT_LOG_SANITIZE=1): the installed
# event_log.so is a SANITIZE=1 build, which loads only into a server started
# with the AddressSanitizer runtime preloaded. test/cluster.sh writes a
# pg_ctl wrapper that does so (EVENT_LOG_PG_CTL); PostgreSQL::Test::Cluster
# runs pg_ctl from PATH, and PGXS's prove puts the plain bindir first in
# PATH, so the wrapper's directory goes in front here, before any node is
# started.
if (($ENV{EVENT_LOG_SANITIZE} // '0') eq '1')
{
	my $pg_ctl = $ENV{EVENT_LOG_PG_CTL};
	die "EVENT_LOG_SANITIZE=1 needs EVENT_LOG_PG_CTL, the pg_ctl wrapper "
	  . "written by test/cluster.sh\n"
	  unless defined $pg_ctl && -x $pg_ctl;
	$ENV{PATH} = dirname($pg_ctl) . ":$ENV{PATH}";
}

# The output plugins a logical node lets logical decoding load, where the
# server knows output_plugin_libraries (Debian's 15.19+ serve only listed
# plugins).
my $output_plugins = 'pgoutput, test_decoding, event_log';

# 1 if the node's server has the output_plugin_libraries parameter.
# postgres -C fails with "unrecognized configuration parameter" on older
# ones (test/cluster.sh asks the same way).
sub has_output_plugin_libraries
{
	my ($node) = @_;
	my ($out, $err) = ('', '');
	return IPC::Run::run(
		[
			'postgres', '-D', $node->data_dir,
			'-C', 'output_plugin_libraries'
		],
		'>', \$out, '2>', \$err) ? 1 : 0;
}

=pod

=item new_node(NAME, %params)

A PostgreSQL::Test::Cluster node named NAME, initialised and started.

=over

=item logical => 1

wal_level = logical, with WAL senders and replication slots
(C<allows_streaming =E<gt> 'logical'>), and the event_log output plugin
allowed where the server has output_plugin_libraries.

=item extra => [ ... ]

Extra initdb options.

=item conf => TEXT

Lines for postgresql.conf (e.g. shared_preload_libraries for the worker).

=back

=cut

sub new_node
{
	my ($name, %params) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	my %init;
	$init{allows_streaming} = 'logical' if $params{logical};
	$init{extra} = $params{extra} if $params{extra};
	$node->init(%init);

	my $conf = $params{conf} // '';
	$conf .= "output_plugin_libraries = '$output_plugins'\n"
	  if $params{logical} && has_output_plugin_libraries($node);
	$node->append_conf('postgresql.conf', $conf) if $conf ne '';
	$node->start;
	return $node;
}

# Write BODY to NAME.sql in the node's base directory (a pgbench or psql
# script); returns its path.
sub write_script
{
	my ($node, $name, $body) = @_;
	my $path = $node->basedir . "/$name.sql";
	open(my $fh, '>', $path) or die "could not write $path: $!";
	print $fh $body;
	close $fh;
	return $path;
}

# Start `pgbench -n ARGS` against the node's postgres database in the
# background and return its IPC::Run handle. Its output goes to the scalars
# OUT and ERR refer to (dropped when undef); MORE are further IPC::Run
# arguments, such as a timeout.
sub start_pgbench
{
	my ($node, $args, $out, $err, @more) = @_;
	my ($drop_out, $drop_err) = ('', '');
	return IPC::Run::start(
		[
			'pgbench', '-n', @$args,
			'-h', $node->host, '-p', $node->port, 'postgres'
		],
		'>', $out // \$drop_out, '2>', $err // \$drop_err, @more);
}

# The shards a consumer group member got from one poll of STREAM in group
# "g" through SESSION (a background_psql), as "0,2".
sub poll_shards
{
	my ($session, $stream, $member) = @_;
	return $session->query_safe(qq{
		SELECT coalesce(string_agg(DISTINCT shard::text, ',' ORDER BY shard::text), '')
		FROM event_log.poll('g', '$stream', 1000, member => '$member')});
}

# One test: in STREAM (of the postgres database) every shard holds seq 1..n,
# every key versions 1..n, and event_ids are unique.
sub check_dense
{
	my ($node, $stream, $what) = @_;
	my $bad = $node->safe_psql('postgres', qq{
		SELECT
		  (SELECT count(*) FROM (SELECT shard FROM $stream GROUP BY shard
		                         HAVING count(*) <> max(seq) OR min(seq) <> 1) s)
		+ (SELECT count(*) FROM (SELECT key FROM $stream GROUP BY key
		                         HAVING count(*) <> max(version) OR min(version) <> 1) k)
		+ (SELECT count(*) - count(DISTINCT event_id) FROM $stream)
	});
	Test::More::is($bad, '0', "$what: shards and keys are dense, event_ids unique");
	return;
}

# Start SQL in a background_psql session without waiting for its result.
sub start_query
{
	my ($session, $sql) = @_;
	$session->{stdin} .= "$sql\n";
	$session->{run}->pump_nb;
	return;
}

# Start SQL in a new background_psql session of NODE's postgres database
# and wait until it waits for a lock; returns the session (quit it to wait
# for the result) and whether it was seen waiting.
sub start_blocked_query
{
	my ($node, $sql) = @_;
	my $session = $node->background_psql('postgres');
	my $pid = $session->query_safe('SELECT pg_backend_pid()');
	start_query($session, $sql);
	my $waiting = $node->poll_query_until('postgres',
		qq{SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $pid});
	return ($session, $waiting);
}

# One string for every event of STREAM (of the postgres database) with its
# position and identity, to compare two copies of a stream.
sub stream_positions
{
	my ($node, $stream) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT md5(string_agg(format('%s/%s/%s/%s/%s', shard, seq, key, version, event_id), ','
		                      ORDER BY shard, seq)) FROM $stream});
}

# Two tests: the logical slot SLOT (event_log plugin) emits each shard of the
# stream whose name matches the regex NAME in seq order without a gap, and
# as many events as STREAM holds.  Consumes the slot's changes.
sub check_cdc_order
{
	my ($node, $slot, $name, $stream) = @_;
	my $cdc = $node->safe_psql('postgres',
		"SELECT data FROM pg_logical_slot_get_changes('$slot', NULL, NULL)");
	my %last;
	my ($out_of_order, $emitted) = (0, 0);
	for my $line (split /\n/, $cdc)
	{
		my ($shard, $seq) = $line =~ /"stream":"$name","shard":(\d+),"seq":(\d+)/
		  or next;
		$out_of_order++ if $seq != ($last{$shard} // 0) + 1;
		$last{$shard} = $seq;
		$emitted++;
	}
	Test::More::is($out_of_order, 0,
		'the CDC stream emits each shard in seq order without a gap');
	Test::More::is($emitted,
		$node->safe_psql('postgres', "SELECT count(*) FROM $stream"),
		'the CDC stream emits every committed event once');
	return;
}

# Three tests: start SQL in a session of NODE's postgres database, wait
# until it has run for MS milliseconds (WHAT is under way), kill -9 its
# backend, and wait for the server to restart after the crash
# (restart_after_crash must be on).
sub crash_during
{
	my ($node, $sql, $ms, $what) = @_;
	my $session = $node->background_psql('postgres', on_error_stop => 0);
	my $pid = $session->query_safe('SELECT pg_backend_pid()');
	start_query($session, $sql);
	Test::More::ok($node->poll_query_until('postgres', qq{
		SELECT state = 'active' AND now() - query_start > interval '$ms ms'
		FROM pg_stat_activity WHERE pid = $pid}),
		"$what is under way");
	kill 'KILL', $pid;
	$session->{run}->kill_kill;
	Test::More::ok(wait_until_ready($node),
		"the server restarts after kill -9 during $what");
	return;
}

# Wait until NODE's postgres database answers a query again (after a crash
# restart), for up to the TAP timeout.  psql gets its query with -c and no
# pipe on stdin: poll_query_until() writes the query to psql's stdin, and a
# psql that could not connect yet may have exited before it reads it, which
# makes IPC::Run die ("ack Broken pipe") instead of trying again.
sub wait_until_ready
{
	my ($node) = @_;
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	while (time() < $deadline)
	{
		my ($out, $err) = ('', '');
		IPC::Run::run(
			[
				$node->installed_command('psql'), '-XAt', '-c', 'SELECT true',
				'-d', $node->connstr('postgres')
			],
			'<', '/dev/null', '>', \$out, '2>', \$err);
		return 1 if $out =~ /^t$/m;
		select(undef, undef, undef, 0.1);
	}
	return 0;
}

1;
