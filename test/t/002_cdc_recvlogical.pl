# CDC through the replication protocol: pg_recvlogical consumes the
# event_log output plugin, the server restarts (fast, then immediate), and
# consumption resumes from the confirmed position: every event arrives, in
# seq order per shard, and the only repeats are an unconfirmed tail re-sent
# at the start of the next session.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);
use EventLogTest;

my $node = new_node('cdc', logical => 1);

$node->safe_psql('postgres', q{
	CREATE EXTENSION event_log;
	SELECT event_log.create_stream('public.carts', 3);
	SELECT pg_create_logical_replication_slot('cdc', 'event_log');
});

my $total = 0;

# Append $n events in transactions of 10.
sub append_events
{
	my ($n, $tag) = @_;
	$node->safe_psql('postgres', qq{
		DO \$\$
		BEGIN
		  FOR i IN 1..$n LOOP
		    INSERT INTO carts (key, type, payload)
		    VALUES ('cart-' || (i % 37), '$tag', jsonb_build_object('i', i));
		    IF i % 10 = 0 THEN COMMIT; END IF;
		  END LOOP;
		END \$\$;
	});
	$total += $n;
}

# Start pg_recvlogical writing to $file; it confirms flushes every second.
sub start_consumer
{
	my ($file) = @_;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[
			'pg_recvlogical', '-d', $node->connstr('postgres'),
			'-S', 'cdc', '--start', '--no-loop', '-F', '1', '-s', '1',
			'-f', $file
		],
		'>', \$out, '2>', \$err);
	return $h;
}

sub lines_of
{
	my ($file) = @_;
	open(my $fh, '<', $file) or return ();
	my @lines = grep { /\S/ } <$fh>;
	close $fh;
	return @lines;
}

# Wait until the consumer's file holds events up to the count appended so far.
sub wait_for_events
{
	my ($file, $want) = @_;
	for (my $i = 0; $i < 600; $i++)
	{
		my %seen = map { my ($s, $q) = /"shard":(\d+),"seq":(\d+)/; ("$s/$q" => 1) } lines_of($file);
		return 1 if scalar(keys %seen) >= $want;
		usleep(100_000);
	}
	return 0;
}

my $dir = $node->basedir;
my @files;

# Session 1: consume, then a fast restart.
push @files, "$dir/cdc1.jsonl";
my $consumer = start_consumer($files[-1]);
append_events(200, 'First');
ok(wait_for_events($files[-1], 200), 'first session receives the first events');
sleep 2;    # let a flush confirmation reach the server
$node->restart('fast');
$consumer->finish;

# Session 2: events appended while nobody listened arrive; then a crash.
append_events(150, 'WhileDown');
push @files, "$dir/cdc2.jsonl";
$consumer = start_consumer($files[-1]);
append_events(150, 'Second');
ok(wait_for_events($files[-1], 300), 'second session receives what was appended meanwhile');
append_events(100, 'BeforeCrash');
ok(wait_for_events($files[-1], 400), 'second session receives events up to the crash');
$node->stop('immediate');
$consumer->finish;
$node->start;

# Session 3: after the crash.
push @files, "$dir/cdc3.jsonl";
$consumer = start_consumer($files[-1]);
append_events(100, 'AfterCrash');
my $session3_new = 100;
my $ok3 = 0;
for (my $i = 0; $i < 600 && !$ok3; $i++)
{
	my @l = grep { /"AfterCrash"/ } lines_of($files[-1]);
	$ok3 = 1 if scalar(@l) >= $session3_new;
	usleep(100_000) unless $ok3;
}
ok($ok3, 'third session receives events appended after the crash');
$node->stop('fast');
$consumer->finish;

# Every event exactly once after dropping re-sent tails; seq increasing per shard.
my %seen;
my %last_seq;
my ($dups, $misplaced_dups, $order_errors, $bad_json) = (0, 0, 0, 0);
foreach my $file (@files)
{
	my $new_started = 0;
	foreach my $line (lines_of($file))
	{
		my ($shard, $seq) = $line =~ /^\{"stream":"public\.carts","shard":(\d+),"seq":(\d+),/;
		if (!defined $seq)
		{
			$bad_json++;
			next;
		}
		my $id = "$shard/$seq";
		if ($seen{$id})
		{
			# A repeat is only allowed before the session's first new event.
			$dups++;
			$misplaced_dups++ if $new_started;
			next;
		}
		$new_started = 1;
		$seen{$id} = 1;
		$order_errors++ if defined $last_seq{$shard} && $seq != $last_seq{$shard} + 1;
		$last_seq{$shard} = $seq;
	}
}
is($bad_json, 0, 'every line is an event message');
is(scalar(keys %seen), $total, "all $total events were received");
is($misplaced_dups, 0, "repeats ($dups) are only the re-sent unconfirmed tail");
is($order_errors, 0, 'events arrive in seq order per shard, without gaps');

done_testing();
