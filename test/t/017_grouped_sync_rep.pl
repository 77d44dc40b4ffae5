# Commit mode 'grouped' with synchronous replication configured and no
# standby ever connecting (synchronous_standby_names = 'nobody'), so that a
# commit that waits for the standby waits until we cancel it.  That makes
# observable what happens inside the commit callback (src/commit.c):
#  - COMMIT of a grouped append does not return to the client before the
#    standby confirms (the durability promise), for the session's setting and
#    for a SET LOCAL one, while the event is already visible and the shard
#    already free (docs/design/offsets.md, "What it costs");
#  - pg_cancel_backend() during that wait: the client gets PostgreSQL's
#    usual warning and the commit, and its synchronous_commit is what it was;
#  - a loop of exception blocks that takes and loses the shard lock more
#    times than the array of grouped locks holds still commits grouped;
#  - a transaction that also appends to a serial stream, and one over more
#    than 64 grouped shards (the overflow path),
#    commits as a serial one: invisible and holding its shards until the
#    standby confirms;
#  - pg_terminate_backend() and kill -9 of an appender waiting in the
#    callback: its commit record was flushed before the wait, so the event
#    is there, after a crash restart too, and every shard is dense.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EventLogTest;

my $node = new_node('grouped_syncrep', logical => 1,
	conf => "synchronous_standby_names = 'nobody'\nrestart_after_crash = on\n");

# Our own statements commit with synchronous_commit = local, which does not
# wait for the (absent) standby.
sub local_sql
{
	my ($sql) = @_;
	return $node->safe_psql('postgres',
		"SET synchronous_commit = local;\n$sql");
}

local_sql(q{
	CREATE EXTENSION event_log;
	SELECT event_log.create_stream('public.ev', 2);
	SELECT event_log.alter_stream('public.ev', commit_mode => 'grouped');
	SELECT event_log.create_stream('public.sv', 1);
	SELECT event_log.create_stream('public.many', 80);
	SELECT event_log.alter_stream('public.many', commit_mode => 'grouped');
});

# Wait until backend PID waits for the synchronous standby.
sub wait_syncrep
{
	my ($pid, $what) = @_;
	ok( $node->poll_query_until('postgres',
			"SELECT wait_event = 'SyncRep' FROM pg_stat_activity WHERE pid = $pid"),
		"$what: COMMIT waits for the standby");
	return;
}

# Advisory (shard) locks PID holds.
sub shard_locks
{
	my ($pid) = @_;
	return local_sql(
		"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = $pid AND granted");
}

my $s1 = $node->background_psql('postgres', on_error_stop => 0);
my $pid1 = $s1->query_safe('SELECT pg_backend_pid()');

# A grouped append with synchronous_commit = on.
$s1->query_safe('SET synchronous_commit = on');
start_query($s1, q{INSERT INTO ev (key, type, payload) VALUES ('a', 'Opened', '{}');});
wait_syncrep($pid1, 'grouped, synchronous_commit on');
is(local_sql("SELECT count(*) FROM ev WHERE key = 'a'"), '1',
	'grouped: the event is visible while its appender waits for the standby');
is(shard_locks($pid1), '0', 'grouped: the waiting appender holds no shard lock');
is(local_sql(q{SELECT seq || '/' || version FROM event_log.append('ev', 'a', 'Next', '{}')}),
	'2/2', 'grouped: the next appender of the shard numbers after it at once');
$node->safe_psql('postgres', "SELECT pg_cancel_backend($pid1)");
my ($out, $ret) = $s1->query('SHOW synchronous_commit');
like($s1->{stderr}, qr/canceling wait for synchronous replication/,
	'cancel: the client is told the wait was canceled');
like($out, qr/^on$/m, 'cancel: synchronous_commit is on again');
$s1->{stderr} = '';

# SET LOCAL: the transaction's value is honoured, the session's comes back.
$s1->query_safe('SET synchronous_commit = local');
start_query($s1, q{BEGIN; SET LOCAL synchronous_commit = remote_apply;
	INSERT INTO ev (key, type, payload) VALUES ('b', 'Opened', '{}'); COMMIT;});
wait_syncrep($pid1, 'grouped, SET LOCAL synchronous_commit remote_apply');
$node->safe_psql('postgres', "SELECT pg_cancel_backend($pid1)");
($out, $ret) = $s1->query('SHOW synchronous_commit');
like($out, qr/^local$/m, 'SET LOCAL: the session keeps local');
$s1->{stderr} = '';

# With synchronous_commit = local a grouped commit returns at once.
is($s1->query_safe(q{INSERT INTO ev (key, type, payload) VALUES ('b', 'Local', '{}') RETURNING version}),
	'2', 'grouped, synchronous_commit local: COMMIT does not wait');

# Exception blocks that append and fail 70 times, then one append that
# stays: one shard lock, taken 71 times.
$s1->query_safe('SET synchronous_commit = on');
start_query($s1, q{DO $$
BEGIN
	FOR i IN 1 .. 70 LOOP
		BEGIN
			INSERT INTO ev (key, type, payload) VALUES ('c', 'Tried', '{}');
			RAISE EXCEPTION 'undo';
		EXCEPTION WHEN raise_exception THEN NULL;
		END;
	END LOOP;
	INSERT INTO ev (key, type, payload) VALUES ('c', 'Kept', '{}');
END $$;});
wait_syncrep($pid1, 'exception blocks');
is(local_sql("SELECT string_agg(type || version, ',') FROM ev WHERE key = 'c'"), 'Kept1',
	'exception blocks: the kept event is visible while its appender waits (still grouped)');
is(shard_locks($pid1), '0', 'exception blocks: no shard lock held while waiting');
$node->safe_psql('postgres', "SELECT pg_cancel_backend($pid1)");
($out, $ret) = $s1->query('SHOW synchronous_commit');
like($out, qr/^on$/m, 'exception blocks: synchronous_commit is on again');
$s1->{stderr} = '';

# A transaction that appends to a grouped and a serial stream: the serial
# stream's readers (read(), poll()) do not wait for durability, so its
# events must not be visible before the commit is durable and confirmed.
start_query($s1, q{BEGIN;
	INSERT INTO ev (key, type, payload) VALUES ('f', 'Opened', '{}');
	INSERT INTO sv (key, type, payload) VALUES ('f', 'Opened', '{}');
	COMMIT;});
wait_syncrep($pid1, 'grouped and serial');
is(local_sql(q{SELECT count(*) FROM event_log.read('sv', 0)}), '0',
	'grouped and serial: the serial stream shows nothing before the standby confirms');
$node->safe_psql('postgres', "SELECT pg_cancel_backend($pid1)");
($out, $ret) = $s1->query('SHOW synchronous_commit');
like($out, qr/^on$/m, 'grouped and serial: synchronous_commit is on again');
is(local_sql(q{SELECT count(*) FROM event_log.read('sv', 0)}), '1',
	'grouped and serial: committed');
$s1->{stderr} = '';

# More than 64 grouped shards in one transaction: committed as serial.
start_query($s1, q{INSERT INTO many (key, type, payload)
	SELECT 'm-' || i, 'Made', '{}' FROM generate_series(1, 2000) i;});
wait_syncrep($pid1, 'over 64 shards');
is(local_sql('SELECT count(*) FROM many'), '0',
	'over 64 shards: nothing is visible before the standby confirms');
cmp_ok(shard_locks($pid1), '>', 64, 'over 64 shards: the shard locks are held');
$node->safe_psql('postgres', "SELECT pg_cancel_backend($pid1)");
($out, $ret) = $s1->query('SHOW synchronous_commit');
like($out, qr/^on$/m, 'over 64 shards: synchronous_commit is on again');
is(local_sql('SELECT count(*) FROM many'), '2000', 'over 64 shards: committed');
cmp_ok(local_sql('SELECT count(DISTINCT shard) FROM many'), '>', 64,
	'over 64 shards: the transaction did cover more than 64 shards');
$s1->quit;

# pg_terminate_backend() while the appender waits: the connection goes, the
# commit stays (it was flushed before the wait), as for any commit.
my $s2 = $node->background_psql('postgres', on_error_stop => 0);
my $pid2 = $s2->query_safe('SELECT pg_backend_pid()');
start_query($s2, q{INSERT INTO ev (key, type, payload) VALUES ('d', 'Opened', '{}');});
wait_syncrep($pid2, 'terminate');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid2)");
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $pid2"),
	'terminate: the appender is gone');
$s2->{run}->finish;
is(local_sql("SELECT count(*) FROM ev WHERE key = 'd'"), '1',
	'terminate: the event is committed');
like(slurp_file($node->logfile),
	qr/canceling the wait for synchronous replication and terminating connection/,
	'terminate: the server log says the wait was canceled');

# kill -9 while waiting: a crash restart; the commit record was flushed
# before the wait, so the event is there after recovery.
my $s3 = $node->background_psql('postgres', on_error_stop => 0);
my $pid3 = $s3->query_safe('SELECT pg_backend_pid()');
start_query($s3, q{INSERT INTO ev (key, type, payload) VALUES ('e', 'Opened', '{}');});
wait_syncrep($pid3, 'kill -9');
kill 'KILL', $pid3;
$s3->{run}->finish;
ok(wait_until_ready($node), 'kill -9: the server restarts');
ok($node->poll_query_until('postgres', "SELECT count(*) = 1 FROM ev WHERE key = 'e'"),
	'kill -9: after the crash restart, the event is there');
like(slurp_file($node->logfile), qr/all server processes terminated; reinitializing/,
	'kill -9: the server went through a crash restart');
check_dense($node, 'ev', 'after the crash restart');
is(local_sql(q{SELECT seq FROM event_log.append('ev', 'e', 'Next', '{}')}),
	local_sql(q{SELECT max(seq) FROM ev WHERE shard = (SELECT shard FROM ev WHERE key = 'e' LIMIT 1)}),
	'after the crash restart: the next append continues the shard');

$node->stop;
done_testing();
