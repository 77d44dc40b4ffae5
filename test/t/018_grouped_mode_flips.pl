# Commit modes switched back and forth while the stream is in use
# (docs/design/offsets.md, "Changing the mode"), and a grouped stream as the
# target of logical replication:
#  - pgbench appends to a stream with single events, transactions that also
#    append to a serial stream, and rolled-back savepoints, while another
#    client flips the stream between 'serial' and 'grouped' (alter_stream()
#    under a lock_timeout) and a reader per shard polls read(): no reader
#    ever sees a gap or a step back, both streams stay dense, and the
#    commit modes did change during the load;
#  - a logical replication subscriber whose copy of the stream is grouped,
#    applying with synchronous_commit = on: it keeps the publisher's
#    positions and stays dense;
#  - the CDC slot emits each shard in seq order, each event once.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EventLogTest;

my $shards = 2;
my $primary = new_node('flips', logical => 1);
$primary->safe_psql('postgres', qq{
	CREATE EXTENSION event_log;
	SELECT event_log.create_stream('public.ev', $shards);
	SELECT event_log.create_stream('public.sv', 1);
	CREATE TABLE flips (mode text, at timestamptz DEFAULT clock_timestamp());
	SELECT pg_create_logical_replication_slot('cdc', 'event_log');
	CREATE PUBLICATION ev_pub FOR TABLE ev;
});

my $subscriber = new_node('flips_sub');
$subscriber->safe_psql('postgres', qq{
	CREATE EXTENSION event_log;
	SELECT event_log.create_stream('public.ev', $shards);
	SELECT event_log.alter_stream('public.ev', commit_mode => 'grouped');
});
my $connstr = $primary->connstr . ' dbname=postgres';
$subscriber->safe_psql('postgres',
	"CREATE SUBSCRIPTION ev_sub CONNECTION '$connstr' PUBLICATION ev_pub WITH (synchronous_commit = on)");
$subscriber->wait_for_subscription_sync($primary, 'ev_sub');

my $append = write_script($primary, 'append', <<'EOF_SQL');
\set k random(1, 50)
\set r random(1, 4)
INSERT INTO ev (key, type, payload) VALUES ('k-' || :k, 'One', '{}');
BEGIN;
SELECT * FROM event_log.append('ev', 'k-' || :k, 'Two', '{}');
SAVEPOINT s;
INSERT INTO ev (key, type, payload) VALUES ('k-' || :k, 'Gone', '{}');
ROLLBACK TO SAVEPOINT s;
\if :r = 1
INSERT INTO sv (key, type, payload) VALUES ('k-' || :k, 'Both', '{}');
\endif
COMMIT;
EOF_SQL

my $flip = write_script($primary, 'flip', <<'EOF_SQL');
DO $$
DECLARE
	m text := CASE WHEN random() < 0.5 THEN 'grouped' ELSE 'serial' END;
BEGIN
	SET LOCAL lock_timeout = '200ms';
	PERFORM event_log.alter_stream('ev', commit_mode => m);
	INSERT INTO flips (mode) VALUES (m);
EXCEPTION WHEN lock_not_available THEN NULL;
END $$;
SELECT pg_sleep(0.05);
EOF_SQL

my @readers;
my $psql = join(' ', 'psql', '-X', '-At', '-h', $primary->host, '-p', $primary->port, 'postgres');
my $stop = $primary->basedir . '/stop';
for my $shard (0 .. $shards - 1)
{
	my $file = $primary->basedir . "/seen_$shard";
	my $reader = write_script($primary, "reader_$shard", <<"EOF_SH");
last=0
: > $file
while [ ! -e $stop ]; do
	rows=\$($psql -c "SELECT seq FROM event_log.read('ev', $shard, after_seq => \$last, max_count => 50)") || exit 1
	[ -n "\$rows" ] || { sleep 0.01; continue; }
	printf '%s\\n' "\$rows" >> $file
	last=\$(printf '%s\\n' "\$rows" | tail -n 1)
done
EOF_SH
	push @readers, IPC::Run::start([ 'bash', $reader ], '>', \my $out, '2>', \my $err);
}

my ($out1, $err1, $out2, $err2) = ('', '', '', '');
my $load = start_pgbench($primary, [ '-c', '4', '-j', '2', '-T', '12', '-f', $append ], \$out1, \$err1);
my $flipper = start_pgbench($primary, [ '-c', '1', '-T', '12', '-f', $flip ], \$out2, \$err2);
$load->finish;
$flipper->finish;
is($load->result(0), 0, 'the appenders ran without errors') or diag($err1);
is($flipper->result(0), 0, 'the mode switcher ran without errors') or diag($err2);
open(my $fh, '>', $stop) or die;
close $fh;
$_->finish for @readers;

cmp_ok($primary->safe_psql('postgres', 'SELECT count(DISTINCT mode) FROM flips'), '==', 2,
	'the stream was switched both ways during the load');
cmp_ok($primary->safe_psql('postgres', 'SELECT count(*) FROM flips'), '>', 4,
	'the stream was switched several times');

for my $shard (0 .. $shards - 1)
{
	my @seqs = slurp_file($primary->basedir . "/seen_$shard") =~ /^(\d+)$/mg;
	my ($gaps, $prev) = (0, 0);
	for my $seq (@seqs)
	{
		$gaps++ if $seq != $prev + 1;
		$prev = $seq;
	}
	is($gaps, 0, "shard $shard: the reader never saw a gap or a step back");
	cmp_ok(scalar(@seqs), '>', 10, "shard $shard: the reader was handed events");
}
check_dense($primary, 'ev', 'the flipped stream');
check_dense($primary, 'sv', 'the serial stream appended in the same transactions');
is($primary->safe_psql('postgres', "SELECT count(*) FROM ev WHERE type = 'Gone'"), '0',
	'no rolled-back event survived');

$primary->wait_for_catchup('ev_sub');
is(stream_positions($subscriber, 'ev'), stream_positions($primary, 'ev'),
	'the grouped subscriber keeps the publisher\'s positions');
check_dense($subscriber, 'ev', 'on the grouped subscriber');
is($subscriber->safe_psql('postgres', 'SHOW synchronous_commit'), 'on',
	'the subscriber\'s own setting is untouched');

check_cdc_order($primary, 'cdc', '[^"]*\\bev', 'ev');

$subscriber->stop;
$primary->stop;
done_testing();
