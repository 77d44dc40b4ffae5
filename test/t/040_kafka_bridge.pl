# The Kafka bridge (event_log_kafka) against librdkafka's mock cluster
# (test/kafka/el_kafka_mock, which outlives every bridge process): its
# refusals and exit codes, then two bridges on two slots of the same
# database (at-least-once and transactional) under a 4-client append load
# while the bridges are killed (SIGKILL), Postgres stops immediately, the
# broker fails Produce requests and goes down.  Read back from the mock:
# every event of every shard is in its partition, in seq order, with the
# right key and headers; at-least-once repeats only re-sent runs, the
# transactional bridge repeats nothing.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);
use File::Basename qw(dirname);
use EventLogTest;

my $bridge_bin = 'event_log_kafka';    # installed in the bindir, on PATH
my $mock_bin = dirname(__FILE__) . '/../kafka/el_kafka_mock';
plan skip_all => "$mock_bin not built (make kafka-mock)" unless -x $mock_bin;

my $node = new_node('kafka', logical => 1);
my $dir = $node->basedir;

# --- the mock cluster: one process for the whole test ---------------------
my ($mock_in, $mock_out, $mock_err) = ('', '', '');
my $mock = IPC::Run::start([$mock_bin, '1'],
	'<', \$mock_in, '>', \$mock_out, '2>', \$mock_err);
$mock->pump until $mock_out =~ /^bootstrap=(\S+)\n/m;
my $bootstrap = $1;
$mock_out = '';

# A command to the mock; returns its answer line.
sub mock_cmd
{
	my ($cmd) = @_;
	$mock_in .= "$cmd\n";
	my $t = IPC::Run::timer(60);
	$t->start;
	$mock->pump until $mock_out =~ /\n/ || $t->is_expired;
	die "mock did not answer \"$cmd\"" unless $mock_out =~ s/^([^\n]*)\n//;
	return $1;
}

$node->safe_psql('postgres', q{
	CREATE EXTENSION event_log;
	CREATE SCHEMA app;
	SELECT event_log.create_stream('public.carts', 4);
	SELECT event_log.create_stream('app.orders', 2);
	SELECT event_log.create_stream('app."Odd Stream"', 1);
	SELECT pg_create_logical_replication_slot('kafka_a', 'event_log');
	SELECT pg_create_logical_replication_slot('kafka_tx', 'event_log');
	SELECT pg_create_logical_replication_slot('kafka_tx_behind', 'event_log');
});
is(mock_cmd("topic public.carts 4"), 'ok', 'topic public.carts created');
is(mock_cmd("topic app.orders 2"), 'ok', 'topic app.orders created');
is(mock_cmd("topic tx.public.carts 4"), 'ok', 'topic tx.public.carts created');
is(mock_cmd("topic tx.app.orders 3"), 'ok', 'topic tx.app.orders created (more partitions than shards)');
is(mock_cmd("topic short.carts 3"), 'ok', 'topic short.carts created');

my $connstr = $node->connstr('postgres');
my $slots_sql = q{SELECT string_agg(slot_name || ' ' || confirmed_flush_lsn, ', ' ORDER BY slot_name)
	FROM pg_replication_slots};
my $slots_before = $node->safe_psql('postgres', $slots_sql);

# Run the bridge to its end; returns (exit code, stderr).
sub run_bridge
{
	my (@args) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([$bridge_bin, @args], '>', \$out, '2>', \$err,
		IPC::Run::timeout(120));
	return ($? >> 8, $err);
}

# --- refusals, each with its exit code --------------------------------------
my ($rc, $err);
($rc, $err) = run_bridge('-d', $connstr, '-b', $bootstrap);
is($rc, 64, 'no slot: exit 64');
like($err, qr/no slot given/, 'no slot: says so');

($rc, $err) = run_bridge('-d', $connstr, '-S', 'Bad-Slot', '-b', $bootstrap);
is($rc, 64, 'bad slot name: exit 64');

($rc, $err) = run_bridge('-d', $connstr, '-S', 'kafka_a', '-b', $bootstrap,
	'-X', 'enable.idempotence=false');
is($rc, 64, 'idempotence off: exit 64');
like($err, qr/enable\.idempotence cannot be turned off/, 'idempotence off: says why');

($rc, $err) = run_bridge('-d', $connstr, '-S', 'kafka_a', '-b', $bootstrap,
	'-X', 'no.such.property=1');
is($rc, 64, 'unknown librdkafka property: exit 64');

($rc, $err) = run_bridge('-d', $connstr, '-S', 'kafka_a', '-b', $bootstrap,
	'-o', 'streams=public.carts');
is($rc, 64, 'plugin option streams given with -o: exit 64');

($rc, $err) = run_bridge('-d', $connstr, '-S', 'no_such_slot', '-b', $bootstrap);
is($rc, 78, 'missing slot: exit 78');
like($err, qr/replication slot "no_such_slot" does not exist/, 'missing slot: says so');

($rc, $err) = run_bridge('-d', $connstr, '-S', 'kafka_a', '-b', $bootstrap,
	'-s', 'public.nothing');
is($rc, 78, 'stream that does not exist: exit 78');
like($err, qr/event stream "public.nothing" does not exist/, 'missing stream: says so');

($rc, $err) = run_bridge('-d', $connstr, '-S', 'kafka_a', '-b', $bootstrap,
	'-s', 'public.carts', '-t', 'short.{table}');
is($rc, 78, 'topic with fewer partitions than shards: exit 78');
like($err, qr/topic "short\.carts" has 3 partitions, fewer than the 4 shards of stream public\.carts/,
	'fewer partitions: says which topic and how many');

($rc, $err) = run_bridge('-d', $connstr, '-S', 'kafka_a', '-b', $bootstrap,
	'-s', 'app."Odd Stream"');
is($rc, 78, 'stream name that makes no topic name: exit 78');
like($err, qr/topic name "app\.Odd Stream" for stream app\."Odd Stream" is not valid/,
	'bad topic name: says which');

# Functions of the same names as the catalog's, first on search_path: the
# bridge's catalog queries do not call them.
$node->safe_psql('postgres', q{
	CREATE FUNCTION public.quote_ident(text) RETURNS text LANGUAGE sql AS $$SELECT 'hijacked'$$;
	CREATE FUNCTION public.to_regclass(text) RETURNS regclass LANGUAGE sql
		AS $$SELECT 'pg_catalog.pg_class'::pg_catalog.regclass$$;
	ALTER DATABASE postgres SET search_path = public, pg_catalog;
});
($rc, $err) = run_bridge('-d', $connstr, '-S', 'kafka_a', '-b', $bootstrap,
	'-s', 'public.carts', '-E', $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()'));
is($rc, 0, 'look-alike functions first on search_path: the bridge runs');
like($err, qr/streaming slot "kafka_a" \(1 stream checked\)/, 'and finds the stream');
$node->safe_psql('postgres', q{
	ALTER DATABASE postgres RESET search_path;
	DROP FUNCTION public.quote_ident(text), public.to_regclass(text);
});
$slots_before = $node->safe_psql('postgres', $slots_sql);

# A role without REPLICATION.
$node->safe_psql('postgres', q{CREATE ROLE "plain role" LOGIN});
($rc, $err) = run_bridge('-d', $node->connstr('postgres') . q{ user='plain role'},
	'-S', 'kafka_a', '-b', $bootstrap);
is($rc, 78, 'role without REPLICATION: exit 78');
like($err, qr/role "plain role" may not read replication slots/, 'no REPLICATION: says so');

# 63-byte names and a template that repeats them: a topic name too long.
my ($long_schema, $long_table) = ('s' x 63, 't' x 63);
$node->safe_psql('postgres', qq{
	CREATE SCHEMA $long_schema;
	SELECT event_log.create_stream('$long_schema.$long_table', 2);
});
($rc, $err) = run_bridge('-d', $connstr, '-S', 'kafka_a', '-b', $bootstrap,
	'-s', "$long_schema.$long_table", '-t', '{stream}.{stream}.{schema}{table}{stream}');
is($rc, 78, 'topic name over 249 characters: exit 78');
like($err, qr/a Kafka topic name has 1 to 249 characters/, 'long topic name: says why');
$node->safe_psql('postgres', qq{SELECT event_log.drop_stream('$long_schema.$long_table')});

# A configuration file with an unknown option, and one that is fine.
my $conf = "$dir/bridge.conf";
open(my $fh, '>', $conf) or die;
print $fh "# comment\nslot = kafka_a\nno_such_option = 1\n";
close $fh;
($rc, $err) = run_bridge('-c', $conf);
is($rc, 64, 'config file with an unknown option: exit 64');
like($err, qr/bridge\.conf:3: unknown option "no_such_option"/, 'config file error names the line');

# Nothing was confirmed by the refused runs.
is($node->safe_psql('postgres', $slots_sql), $slots_before,
	'the refused runs confirmed nothing');

# The odd stream goes: the bridges below carry every stream of the database.
$node->safe_psql('postgres', q{SELECT event_log.drop_stream('app."Odd Stream"')});

open($fh, '>', $conf) or die;
print $fh "dbname = $connstr\nslot = kafka_a\nbootstrap-servers = $bootstrap\n"
  . "kafka.linger.ms = 2\nstatus-interval = 1\nstatus-file = $dir/status_a\n";
close $fh;

# --- the bridges under load ------------------------------------------------
my %bridge;    # name => IPC::Run handle
my %log;       # name => stderr so far (all runs)

sub start_bridge
{
	my ($name) = @_;
	my @args =
	  $name eq 'a'
	  ? ('-c', $conf)
	  : ('-d', $connstr, '-S', 'kafka_tx', '-b', $bootstrap,
		'-t', 'tx.{stream}', '--transactional-id', 'bridge_tx',
		'--status-interval', '0');
	$log{$name} //= '';
	$bridge{$name} = IPC::Run::start([$bridge_bin, @args],
		'>', \my $out, '2>>', "$dir/bridge_$name.log");
	return;
}

# Wait for a bridge to exit; its exit code.
sub wait_bridge
{
	my ($name) = @_;
	$bridge{$name}->finish;
	return $bridge{$name}->full_result >> 8;
}

sub slurp
{
	my ($file) = @_;
	open(my $f, '<', $file) or return '';
	local $/;
	my $c = <$f>;
	close $f;
	return $c;
}

my $script = write_script($node, 'kafka_load', <<'EOS');
\set k random(1, 300)
INSERT INTO carts (key, type, payload) VALUES ('cart-' || :k, 'Added', jsonb_build_object('k', :k));
\set o random(1, 60)
INSERT INTO app.orders (key, type, payload) VALUES (E'order\t"ключ" ' || :o, E'Pla"ced', '{"x": [1, {"y": "}"}]}');
EOS

sub load
{
	my ($seconds) = @_;
	return start_pgbench($node, [ '-c', '4', '-R', '150', '-T', $seconds, '-f', $script ]);
}

start_bridge('a');
start_bridge('tx');
my $pgbench = load(8);

sleep 2;
# SIGUSR1: progress now (the transactional bridge has no periodic reports).
$bridge{tx}->signal('USR1');
sleep 1;
# Crash the at-least-once bridge and the transactional one.
$bridge{$_}->signal('KILL') for qw(a tx);
wait_bridge($_) for qw(a tx);
start_bridge($_) for qw(a tx);

# Wait for both to stream again before the broker misbehaves: a
# transactional restart whose resume overlaps broker failures is what the
# mock cluster gets wrong (docs/design/kafka.md, "Testing against a mock
# cluster"), and that is not what this test is about.
sub wait_streaming
{
	my ($name, $count) = @_;
	# A transactional restart waits for the killed instance's transaction
	# to be fenced off: seconds here, a minute and more on a loaded machine.
	for (my $i = 0; $i < 1800; $i++)
	{
		my $n = () = slurp("$dir/bridge_$name.log") =~ /^event_log_kafka: streaming slot/mg;
		return 1 if $n >= $count;
		usleep(100_000);
	}
	return 0;
}
ok(wait_streaming('a', 2), 'at-least-once bridge streams again after SIGKILL');
ok(wait_streaming('tx', 2), 'transactional bridge streams again after SIGKILL');

# A stream created while the bridges run: its topic is found at its first
# event. Its keys need JSON escapes the bridge must undo (a control
# character comes as \u0001) or carry as they are (UTF-8, backslash).
is(mock_cmd("topic public.odd_keys 1"), 'ok', 'topic public.odd_keys created');
is(mock_cmd("topic tx.public.odd_keys 1"), 'ok', 'topic tx.public.odd_keys created');
$node->safe_psql('postgres', q{
	SELECT event_log.create_stream('public.odd_keys', 1);
	INSERT INTO odd_keys (key, type, payload)
	VALUES ('ctl' || chr(1) || 'end', 'T', '{}'), ('emoji ' || chr(128512), 'T', '{}'),
	       ('back\slash "q"', 'T', '{}');
});

# The broker fails Produce requests (retriable: NOT_LEADER_OR_FOLLOWER,
# then REQUEST_TIMED_OUT), then goes down for a while.
sleep 1;
is(mock_cmd("errors 0 6 10"), 'ok', 'Produce errors injected');
is(mock_cmd("errors 0 7 5"), 'ok', 'Produce timeouts injected');
sleep 1;
is(mock_cmd("down 1"), 'ok', 'broker down');
sleep 2;
is(mock_cmd("up 1"), 'ok', 'broker up');
$pgbench->finish;

# The transactional bridge dies again with a Kafka transaction open, the
# broker up: its restart aborts that transaction and resumes after the
# last committed one.
$pgbench = load(4);
sleep 2;
$bridge{tx}->signal('KILL');
wait_bridge('tx');
start_bridge('tx');
ok(wait_streaming('tx', 3), 'transactional bridge streams again after its second SIGKILL');
$pgbench->finish;

# Postgres stops immediately under load; the bridges exit 75 (restart me).
$pgbench = load(30);
sleep 2;
$node->stop('immediate');
$pgbench->finish;
is(wait_bridge('a'), 75, 'at-least-once bridge exits 75 when Postgres goes away');
is(wait_bridge('tx'), 75, 'transactional bridge exits 75 when Postgres goes away');
$node->start;
start_bridge($_) for qw(a tx);
$pgbench = load(3);
$pgbench->finish;

# SIGTERM: a clean stop, exit 0.
sleep 2;
$bridge{a}->signal('TERM');
is(wait_bridge('a'), 0, 'SIGTERM: exit 0');
like(slurp("$dir/status_a"),
	qr/^events_received=\d+ events_acked=\d+ events_per_second=[\d.]+ lag_events=\d+ lag_bytes=\d+ received_lsn=\S+ confirmed_lsn=\S+$/m,
	'status file written');
like(slurp("$dir/bridge_a.log"), qr/status: events_received=/, 'status lines on stderr');
{
	my $txlog = slurp("$dir/bridge_tx.log");
	my $reports = () = $txlog =~ /status: events_received=/g;
	my $stops = () = $txlog =~ /stopped; /g;
	cmp_ok($reports, '>', $stops, 'SIGUSR1 prints a status line');
}

# Run both to the end of the WAL written so far (--endpos).
my $endpos = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
$bridge{tx}->signal('TERM');
is(wait_bridge('tx'), 0, 'transactional bridge: SIGTERM, exit 0');
($rc, $err) = run_bridge('-c', $conf, '-E', $endpos, '--status-file', "$dir/status_end");
is($rc, 0, 'at-least-once bridge reaches endpos: exit 0') or diag($err);
($rc, $err) = run_bridge('-d', $connstr, '-S', 'kafka_tx', '-b', $bootstrap,
	'-t', 'tx.{stream}', '--transactional-id', 'bridge_tx', '-E', $endpos);
is($rc, 0, 'transactional bridge reaches endpos: exit 0') or diag($err);
like($err, qr/read where each of the 3 topic\(s\) ends in Kafka/, 'transactional bridge read where Kafka ends');

# A slot far behind Kafka (created with the other, never read): with the
# same transactional id and topics, everything it sends is in Kafka
# already, and nothing goes twice (checked with the dumps below).
($rc, $err) = run_bridge('-d', $connstr, '-S', 'kafka_tx_behind', '-b', $bootstrap,
	'-t', 'tx.{stream}', '--transactional-id', 'bridge_tx', '-E', $endpos);
is($rc, 0, 'transactional bridge on a slot behind Kafka: exit 0') or diag($err);
like($err, qr/skipping events Kafka already has, from public\.carts shard \d+ seq 1\n|skipping events Kafka already has, from app\.orders shard \d+ seq 1\n/,
	'it skips from the first event');
like($err, qr/status: events_received=0 /, 'and sends none');

# --- what Kafka has --------------------------------------------------------
my %db_count;    # "stream/shard" => events
foreach my $row (split /\n/, $node->safe_psql('postgres', q{
	SELECT 'public.carts', shard, count(*), max(seq) FROM carts GROUP BY shard
	UNION ALL
	SELECT 'app.orders', shard, count(*), max(seq) FROM app.orders GROUP BY shard}))
{
	my ($s, $shard, $n, $max) = split /\|/, $row;
	$db_count{"$s/$shard"} = $n;
}
my $total = 0;
$total += $_ for values %db_count;
cmp_ok($total, '>', 500, "the load appended events ($total)");

sub unhex { my ($h) = @_; return pack('H*', $h); }

# Check one topic's dump against the database; returns the repeats.
sub check_topic
{
	my ($topic, $stream, $partitions) = @_;
	my $file = "$dir/dump_$topic";
	like(mock_cmd("dump $topic $file"), qr/^ok \d+$/, "dump of $topic");
	my (%last, %max, %seen);
	my ($bad, $gaps, $repeats, $misplaced) = (0, 0, 0, 0);
	foreach my $line (split /\n/, slurp($file))
	{
		my ($part, $offset, $key, $headers, $value) = split /\t/, $line, 5;
		my %h = map { my ($n, $v) = split /=/, $_, 2; ($n => unhex($v)) } split /;/, $headers;
		my ($vstream, $shard, $seq) =
		  $value =~ /^\{"stream":"([^"]+)","shard":(\d+),"seq":(\d+),/;
		my ($vversion) = $value =~ /,"version":(\d+),/;
		my ($vid) = $value =~ /,"event_id":"([^"]+)"/;
		my ($vrec) = $value =~ /,"recorded_at":"([^"]+)"/;
		my $kraw = unhex($key);
		my ($vkey) = $value =~ /,"key":"((?:[^"\\]|\\.)*)"/;
		$vkey =~ s/\\(["\\t])/$1 eq 't' ? "\t" : $1/ge if defined $vkey;
		my $k = $kraw;    # bytes, as the script's literals
		my $expect_key = $stream eq 'public.carts' ? qr/^cart-\d+$/ : qr/^order\t"ключ" \d+$/;
		my $expect_type = $stream eq 'public.carts' ? 'Added' : 'Pla"ced';
		if (!defined $seq || !defined $vkey || $vstream ne $stream || $shard != $part
			|| $k !~ $expect_key || $vkey ne $kraw
			|| $h{seq} ne $seq || $h{version} ne $vversion || $h{event_id} ne $vid
			|| $h{recorded_at} ne $vrec || $h{type} ne $expect_type)
		{
			diag("bad message in $topic: $line") if $bad++ < 3;
			next;
		}
		my $m = $max{$part} // 0;
		if ($seq > $m + 1)
		{
			$gaps++;
			diag("gap in $topic partition $part: $m then $seq") if $gaps < 3;
		}
		if ($seq <= $m)
		{
			$repeats++;
			# A repeat starts a re-sent run: it goes on from where it begins.
			$misplaced++
			  if defined $last{$part} && $seq != $last{$part} + 1 && $seq > $last{$part};
		}
		$seen{"$part/$seq"} = 1;
		$last{$part} = $seq;
		$max{$part} = $seq if $seq > $m;
	}
	is($bad, 0, "$topic: partition = shard, key, headers and value agree");
	is($gaps, 0, "$topic: no gap in any partition");
	is($misplaced, 0, "$topic: repeats are whole re-sent runs");
	foreach my $shard (0 .. $partitions - 1)
	{
		my $want = $db_count{"$stream/$shard"} // 0;
		my $got = scalar grep { m{^$shard/} } keys %seen;
		is($got, $want, "$topic: partition $shard holds all $want events of shard $shard");
		is($max{$shard} // 0, $want, "$topic: partition $shard ends at seq $want");
	}
	return $repeats;
}

# The keys of the stream created at run time, byte for byte.
foreach my $topic ('public.odd_keys', 'tx.public.odd_keys')
{
	like(mock_cmd("dump $topic $dir/dump_$topic"), qr/^ok \d+$/, "dump of $topic");
	my %keys;
	foreach my $line (split /\n/, slurp("$dir/dump_$topic"))
	{
		my (undef, undef, $key) = split /\t/, $line;
		$keys{ unhex($key) } = 1;
	}
	is(join('|', sort keys %keys), join('|', sort ("ctl\x01end", "emoji \xF0\x9F\x98\x80", 'back\slash "q"')),
		"$topic: keys unescaped to their bytes");
}

my $rep = check_topic('public.carts', 'public.carts', 4);
$rep += check_topic('app.orders', 'app.orders', 2);
note("at-least-once: $rep repeated messages (re-sent after crashes)");
my $rep_tx = check_topic('tx.public.carts', 'public.carts', 4);
$rep_tx += check_topic('tx.app.orders', 'app.orders', 2);
is($rep_tx, 0, 'transactional: no event twice in Kafka (read_committed)');

$mock_in .= "quit\n";
$mock->finish;
$node->stop;
done_testing();
