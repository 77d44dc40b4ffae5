# Commit mode 'grouped' across a crash, on a standby and through logical
# decoding (docs/design/offsets.md, "Commit modes"):
#  - readers poll every shard with read() during a durable-commit append
#    load, and one of them crashes the server (an immediate shutdown) the
#    moment it has been handed its 300th event: every event a reader was
#    handed is still there after recovery, with the same event_id, no reader
#    ever saw a gap, and every shard is dense;
#  - a physical standby replays the same dense log;
#  - the CDC slot, created before the load, emits every shard's events in
#    seq order, each exactly once, 1..n.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EventLogTest;

my $shards = 2;
# commit_delay makes every WAL flush wait 100 ms for company, so the load
# runs in large flush groups and grouped commits wait in their commit
# callback.  (An immediate shutdown kills processes, not the kernel: WAL
# already written but not yet fsynced survives it, so this test cannot
# show a reader being handed an event before it is durable; the argument
# for that is in docs/design/offsets.md.)
my $primary = new_node('grouped', logical => 1,
	conf => "commit_delay = 100000\ncommit_siblings = 1\n");
$primary->safe_psql('postgres', qq{
	CREATE EXTENSION event_log;
	SELECT event_log.create_stream('public.ev', $shards);
	SELECT event_log.alter_stream('public.ev', commit_mode => 'grouped');
	SELECT pg_create_logical_replication_slot('cdc', 'event_log');
});

$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('grouped_standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->start;

# Appenders: single events, several events per transaction, rollbacks.
my $script = write_script($primary, 'append', <<'EOF_SQL');
\set k random(1, 100)
\set r random(1, 10)
INSERT INTO ev (key, type, payload) VALUES ('k-' || :k, 'One', '{}');
BEGIN;
SELECT * FROM event_log.append('ev', 'k-' || :k, 'Two', '{}');
INSERT INTO ev (key, type, payload) VALUES ('k-' || :k, 'Three', '{}');
\if :r = 1
ROLLBACK;
\else
COMMIT;
\endif
EOF_SQL

# A reader per shard: read() after the last seq it has been handed, printing
# "seq event_id" lines to a file as the events arrive, until the server
# goes away.
my @readers;
my $psql = join(' ', 'psql', '-X', '-At', '-h', $primary->host, '-p', $primary->port, 'postgres');
my $postmaster = $primary->{_pid};
for my $shard (0 .. $shards - 1)
{
	my $file = $primary->basedir . "/seen_$shard";
	# Shard 0's reader crashes the server (an immediate shutdown: SIGQUIT
	# to the postmaster) the moment it has been handed its 300th event, so
	# that the newest events it holds were committed moments ago.
	my $crash = $shard == 0
	  ? "[ \$(wc -l < $file) -ge 300 ] && { kill -QUIT $postmaster; exit 0; }"
	  : ':';
	my $reader = write_script($primary, "reader_$shard", <<"EOF_SH");
last=0
while :; do
	rows=\$($psql -F ' ' -c "SELECT seq, event_id FROM event_log.read('ev', $shard, after_seq => \$last, max_count => 50)") || exit 0
	[ -n "\$rows" ] || { sleep 0.01; continue; }
	printf '%s\\n' "\$rows" >> $file
	$crash
	last=\$(printf '%s\\n' "\$rows" | tail -n 1 | cut -d ' ' -f 1)
done
EOF_SH
	push @readers, IPC::Run::start([ 'bash', $reader ], '>', \my $out, '2>', \my $err);
}

my ($load_out, $load_err) = ('', '');
my $load = start_pgbench($primary,
	[ '-c', '6', '-j', '2', '-T', '120', '-f', $script ], \$load_out, \$load_err);
$_->finish for @readers;
# The server is gone; let the test framework know.
$primary->stop('immediate', fail_ok => 1);
$load->finish;

$primary->start;
check_dense($primary, 'ev', 'after an immediate shutdown');

# What the readers were handed is still there, gap-free from 1.
my $handed = 0;
for my $shard (0 .. $shards - 1)
{
	my @lines = slurp_file($primary->basedir . "/seen_$shard") =~ /^(\d+ \S+)$/mg;
	my ($gaps, $prev) = (0, 0);
	for my $line (@lines)
	{
		my ($seq) = split / /, $line;
		$gaps++ if $seq != $prev + 1;
		$prev = $seq;
	}
	is($gaps, 0, "shard $shard: the reader never saw a gap or a step back");
	my $values = join(',', map { my ($s, $id) = split / /; "($s,'$id'::uuid)" } @lines);
	my $missing = @lines ? $primary->safe_psql('postgres', qq{
		SELECT count(*) FROM (VALUES $values) v(seq, event_id)
		WHERE NOT EXISTS (SELECT FROM ev WHERE shard = $shard AND ev.seq = v.seq AND ev.event_id = v.event_id)}) : 0;
	is($missing, '0', "shard $shard: every event read() handed out survived the crash");
	$handed += @lines;
}
cmp_ok($handed, '>', 100, "the readers were handed events during the load ($handed)");

# Appends resume after the last durable seq.
$primary->safe_psql('postgres', q{INSERT INTO ev (key, type, payload) VALUES ('after', 'Recovered', '{}')});
check_dense($primary, 'ev', 'after the first append past recovery');

# The standby has the same log.
$primary->wait_for_catchup($standby);
is( $standby->safe_psql('postgres', 'SELECT count(*), sum(seq) FROM ev'),
	$primary->safe_psql('postgres', 'SELECT count(*), sum(seq) FROM ev'),
	'the standby has the same log');
check_dense($standby, 'ev', 'on the standby');

# The CDC slot: per shard 1..n in order, each once, all of them.
check_cdc_order($primary, 'cdc', '[^"]*', 'ev');

$standby->stop;
$primary->stop;
done_testing();
