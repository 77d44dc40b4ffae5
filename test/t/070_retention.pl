# Retention (docs/retention.md, docs/design/retention.md):
#  - the background worker applies a policy every
#    event_log.retention_interval while appenders run, and what stays is
#    exactly each shard from its low watermark on, without a gap;
#  - kill -9 of a backend in the middle of a large removal: after crash
#    recovery the shard is whole and its watermark unchanged, or the
#    removal is complete; nothing is half-removed, and enforcing again
#    finishes the job;
#  - a physical standby holds the same events and the same watermarks.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EventLogTest;

my $node = new_node('retention', logical => 1, conf => qq{
shared_preload_libraries = 'event_log'
event_log.retention_interval = '200ms'
event_log.worker_naptime = '100ms'
restart_after_crash = on
});

$node->safe_psql('postgres', q{
	CREATE EXTENSION event_log;
	SELECT event_log.create_stream('public.ticks', 2);
	SELECT event_log.set_retention('ticks', max_events => 50, keep_unconsumed => false);
});

# Each shard from its watermark on: its events are exactly low .. end, and
# no event below the watermark is left.
my $whole = q{
	SELECT bool_and(n = hi - w.low_seq + 1 AND lo = w.low_seq)
	FROM (SELECT shard, count(*) AS n, min(seq) AS lo, max(seq) AS hi
	        FROM %s GROUP BY shard) s
	JOIN event_log.shard_watermarks w ON w.stream = '%s'::regclass AND w.shard = s.shard
};

# --- the worker, while appenders run ---------------------------------------
# (Each transaction appends 5 events of one key: one shard per transaction.)
my $script = write_script($node, 'append', q{
INSERT INTO ticks (key, type, payload)
SELECT k, 'Tick', '{}' FROM (SELECT 'k' || (random() * 20)::int AS k) x, generate_series(1, 5);
});
my ($bench_out, $bench_err) = ('', '');
my $load = start_pgbench($node, [ '-c', '2', '-j', '2', '-t', '400', '-f', $script ],
	\$bench_out, \$bench_err);
ok($node->poll_query_until('postgres',
		q{SELECT count(DISTINCT shard) = 2 FROM event_log.retention_log}),
	'the worker applies the policy while appenders run');
$load->finish;
is($load->result(0), 0, 'every append succeeded while retention ran')
  or diag("pgbench: $bench_out\n$bench_err");
ok($node->poll_query_until('postgres',
		q{SELECT bool_and(c <= 50) FROM (SELECT count(*) AS c FROM ticks GROUP BY shard) s}),
	'the worker brings each shard down to its last 50 events');
is($node->safe_psql('postgres', sprintf($whole, 'ticks', 'ticks')), 't',
	'each shard is exactly its events from the low watermark on');
is($node->safe_psql('postgres', q{
	SELECT sum(events) = (SELECT sum(removed_events) FROM event_log.shard_watermarks)
	   AND (SELECT sum(removed_events) FROM event_log.shard_watermarks)
	     + (SELECT count(*) FROM ticks) = 4000
	FROM event_log.retention_log}), 't',
	'the report accounts for every removed event, and nothing else is missing');
# Versions go on across removals: each key's events left are consecutive,
# and start right after the last version retention removed of it.
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (
		SELECT t.key FROM ticks t
		LEFT JOIN event_log.retired_keys r ON r.stream = 'ticks'::regclass AND r.key = t.key
		GROUP BY t.key
		HAVING count(*) <> max(t.version) - min(t.version) + 1) bad}), '0',
	'the versions of each key are consecutive');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM event_log.retired_keys r
	JOIN (SELECT key, min(version) AS v FROM ticks GROUP BY key) t ON t.key = r.key
	WHERE r.stream = 'ticks'::regclass AND r.last_version >= t.v}), '0',
	'no key was renumbered below a version retention removed');

# --- kill -9 in the middle of a removal ----------------------------------
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET event_log.retention_interval = 0;
	SELECT pg_reload_conf();
	SELECT event_log.create_stream('public.big', 1);
	INSERT INTO big (key, type, payload)
	SELECT 'k' || i % 1000, 'Tick', '{}' FROM generate_series(1, 300000) i;
	SELECT event_log.set_retention('big', max_events => 10, keep_unconsumed => false);
});
crash_during($node, q{SELECT * FROM event_log.enforce_retention('big');}, 100, 'a large removal');
is($node->safe_psql('postgres', sprintf($whole, 'big', 'big')), 't',
	'after the crash the shard is whole from its watermark on');
is($node->safe_psql('postgres', q{
	SELECT count(*) + (SELECT removed_events FROM event_log.shard_watermarks
	                    WHERE stream = 'big'::regclass) FROM big}), '300000',
	'nothing is lost beyond what the watermark says was removed');
is($node->safe_psql('postgres', q{
	SELECT removed, low_watermark FROM event_log.enforce_retention('big');
	SELECT count(*), min(seq) FROM big}),
	"299990|299991\n10|299991",
	'enforcing again finishes the removal');

# --- a physical standby ----------------------------------------------------
$node->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('retention_standby');
$standby->init_from_backup($node, 'base', has_streaming => 1);
$standby->start;
$node->safe_psql('postgres', q{
	INSERT INTO ticks (key, type, payload)
	SELECT 'k' || i, 'Tick', '{}' FROM generate_series(1, 200) i;
	SELECT count(*) FROM event_log.enforce_retention('ticks');
});
$node->wait_for_catchup($standby);
my $watermarks = q{
	SELECT string_agg(format('%s:%s:%s', shard, low_seq, removed_events), ',' ORDER BY shard)
	FROM event_log.shard_watermarks WHERE stream = 'ticks'::regclass};
is($standby->safe_psql('postgres', $watermarks), $node->safe_psql('postgres', $watermarks),
	'the standby has the same watermarks');
is(stream_positions($standby, 'ticks'), stream_positions($node, 'ticks'),
	'the standby has the same events');
my ($rc, $out, $err) = $standby->psql('postgres', q{SELECT count(*) FROM event_log.read('ticks', 0)});
like($err, qr/below the shard's low watermark/, 'a read below the watermark fails on the standby too');

$standby->stop;
$node->stop;
done_testing();
