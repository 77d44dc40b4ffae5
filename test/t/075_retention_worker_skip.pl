# Retention attacks (issue 15): the background worker applies each stream's
# policy in a subtransaction of its own.  A stream whose enforcement fails
# (here: a foreign key added after its policy, which removal would leave
# dangling) is reported as a WARNING and keeps its events, and the other
# streams' policies still apply on every run.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EventLogTest;

my $node = new_node('retention_skip', logical => 1, conf => qq{
shared_preload_libraries = 'event_log'
event_log.retention_interval = '200ms'
event_log.worker_naptime = '100ms'
});

# Stream "a" sorts first by OID, so a failure in it used to stop the run
# before "b" was reached.
$node->safe_psql('postgres', q{
	CREATE EXTENSION event_log;
	SELECT event_log.create_stream('public.a', 1);
	SELECT event_log.create_stream('public.b', 1);
	INSERT INTO a (key, type, payload) SELECT 'k', 'T', '{}' FROM generate_series(1, 20);
	INSERT INTO b (key, type, payload) SELECT 'k', 'T', '{}' FROM generate_series(1, 20);
	BEGIN;
	SELECT event_log.set_retention('a', max_events => 5, keep_unconsumed => false);
	CREATE TABLE audit (shard int, seq bigint, FOREIGN KEY (shard, seq) REFERENCES a);
	INSERT INTO audit VALUES (0, 1);
	COMMIT;
});
my $offset = -s $node->logfile;
$node->safe_psql('postgres', q{
	SELECT event_log.set_retention('b', max_events => 5, keep_unconsumed => false);
});

ok($node->poll_query_until('postgres',
		q{SELECT count(*) = 5 FROM b}),
	'the worker applies the policy of a stream after one it cannot apply');
ok($node->wait_for_log(
		qr/WARNING:  event_log: retention of event stream "public.a" skipped: cannot remove events of event stream "public.a": foreign key "audit_shard_seq_fkey"/,
		$offset),
	'the stream it cannot apply is reported as a warning');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM a JOIN audit USING (shard, seq)}), '1',
	'the stream it cannot apply keeps the event its foreign key references');
is($node->safe_psql('postgres', q{SELECT count(*) FROM a}), '20',
	'and every other event');

# Without the foreign key, the next run applies it.
$node->safe_psql('postgres', 'DROP TABLE audit');
ok($node->poll_query_until('postgres', q{SELECT count(*) = 5 FROM a}),
	'once the foreign key is gone, the worker applies the policy');
is($node->safe_psql('postgres', q{
	SELECT string_agg(shard || ':' || low_seq, ',' ORDER BY stream) FROM event_log.shard_watermarks}),
	'0:16,0:16', 'both streams keep their last 5 events, from seq 16');

$node->stop;
done_testing();
