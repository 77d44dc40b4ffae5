# Segmented streams (docs/retention.md, "Segmented streams"):
#  - the worker rolls segments by size and applies the policy by dropping
#    whole segments while appenders run; every append succeeds, nothing is
#    lost beyond what the watermarks say, and the dropped segments' files
#    are gone (the disk space is back);
#  - kill -9 in the middle of an archiving removal: after crash recovery
#    every event is in the log or the archive, once, and the segment is
#    still there or gone with its watermark;
#  - a session idle in a transaction after an append holds up the worker's
#    retention of that stream only, for at most 2 s a round;
#  - a physical standby holds the same events and segments;
#  - pg_dump and pg_restore (custom, plain, directory with -j 4) bring a
#    segmented stream back with every event, guarded, appending, rolling
#    and removing segments as before; a segment whose rows a restore did
#    not load is not taken for an empty one.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EventLogTest;

my $node = new_node('segments', logical => 1, conf => qq{
shared_preload_libraries = 'event_log'
event_log.retention_interval = '200ms'
event_log.worker_naptime = '100ms'
restart_after_crash = on
});
my ($rc, $out, $err);

# --- the worker, while appenders run ---------------------------------------
$node->safe_psql('postgres', q{
	CREATE EXTENSION event_log;
	SELECT event_log.create_stream('public.ticks', 2, segment_events => 500);
	SELECT event_log.set_retention('ticks', max_events => 300, keep_unconsumed => false);
});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'event_log worker' AND datname = 'postgres'}),
	'the policy starts the database\'s worker');
my $script = write_script($node, 'append', q{
INSERT INTO ticks (key, type, payload)
SELECT k, 'Tick', '{}' FROM (SELECT 'k' || (random() * 20)::int AS k) x, generate_series(1, 5);
});
my ($bench_out, $bench_err) = ('', '');
# A roll that commits between an appender's segment default and its shard
# lock fails that append with 40001: pgbench retries it, as a client would.
# For 8 s, so that the worker rolls and removes many times meanwhile.
my $load = start_pgbench($node, [ '-c', '2', '-j', '2', '-T', '8', '--max-tries', '20', '-f', $script ],
	\$bench_out, \$bench_err);
$load->finish;
is($load->result(0), 0, 'every append succeeded (retried after a roll race) while retention ran')
  or diag("pgbench: $bench_out\n$bench_err");
my ($appended) = $bench_out =~ /number of transactions actually processed: (\d+)/;
$appended *= 5;
ok($node->safe_psql('postgres',
		q{SELECT count(*) > 0 FROM event_log.retention_log WHERE stream = 'ticks'::regclass}),
	'the worker rolled segments and dropped old ones while appenders ran');
ok($node->poll_query_until('postgres', q{
	SELECT count(*) <= 2 FROM event_log.segments WHERE stream = 'ticks'::regclass}),
	'the worker keeps few segments once appends stop');
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 0 FROM event_log.segments s
	 WHERE s.stream = 'ticks'::regclass AND s.detached_at IS NULL
	   AND s.segment < (SELECT max(segment) FROM event_log.segments WHERE stream = 'ticks'::regclass)
	   AND (SELECT count(*) FROM event_log.segment_summaries m
	         WHERE m.stream = s.stream AND m.segment = s.segment) <> 2}),
	'the worker summarizes every sealed segment');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM event_log.segment_summaries m
	  JOIN event_log.segments s USING (stream, segment)
	  LEFT JOIN (SELECT segment, shard, count(*) AS n, min(seq) AS lo, max(seq) AS hi,
	                    max(recorded_at) AS at FROM ticks GROUP BY 1, 2) t USING (segment, shard)
	 WHERE m.stream = 'ticks'::regclass AND s.detached_at IS NULL
	   AND (m.events <> coalesce(t.n, 0) OR m.first_seq IS DISTINCT FROM t.lo
	        OR m.last_seq IS DISTINCT FROM t.hi OR m.newest_recorded_at IS DISTINCT FROM t.at)}), '0',
	'each summary matches its segment\'s rows');
is($node->safe_psql('postgres', q{
	SELECT count(*) + (SELECT sum(removed_events) FROM event_log.shard_watermarks
	                    WHERE stream = 'ticks'::regclass) FROM ticks}), $appended,
	'nothing is lost beyond what the watermarks say was removed');
is($node->safe_psql('postgres', q{
	SELECT bool_and(n = hi - w.low_seq + 1 AND lo = w.low_seq)
	FROM (SELECT shard, count(*) AS n, min(seq) AS lo, max(seq) AS hi FROM ticks GROUP BY shard) s
	JOIN event_log.shard_watermarks w ON w.stream = 'ticks'::regclass AND w.shard = s.shard}), 't',
	'each shard is exactly its events from the low watermark on');
is($node->safe_psql('postgres', q{
	SELECT sum(events) = (SELECT sum(removed_events) FROM event_log.shard_watermarks
	                       WHERE stream = 'ticks'::regclass)
	FROM event_log.retention_log WHERE stream = 'ticks'::regclass}), 't',
	'the report accounts for every removed event');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (SELECT key FROM ticks GROUP BY key
	                      HAVING count(*) <> max(version) - min(version) + 1) bad}), '0',
	'the versions of each key left are consecutive');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM event_log.retired_keys r
	JOIN (SELECT key, min(version) AS v FROM ticks GROUP BY key) t ON t.key = r.key
	WHERE r.stream = 'ticks'::regclass AND r.last_version >= t.v}), '0',
	'no key was renumbered below a version retention removed');

# --- a session idle in a transaction holds up its own stream only ---------
# An appender that leaves its transaction open (INSERT alone is enough)
# makes a removal from that stream wait for it: the worker waits at most
# 2 s, skips the stream with a WARNING and goes on with the others; the
# removal follows once the transaction ends.
$node->safe_psql('postgres', q{
	SELECT event_log.create_stream('public.held', 1, segment_events => 1000000);
	INSERT INTO held (key, type, payload) SELECT 'h', 'T', '{}' FROM generate_series(1, 10);
	SELECT event_log.set_retention('held', max_age => '1 microsecond', keep_unconsumed => false);
	SELECT event_log.create_stream('public.other', 1, segment_events => 1000000);
	INSERT INTO other (key, type, payload) SELECT 'o', 'T', '{}' FROM generate_series(1, 10);
	SELECT event_log.set_retention('other', max_age => '1 microsecond', keep_unconsumed => false);
});
# The idle session's event is in segment 1, which the roll then seals (it
# also holds its shard's lock: no other event can follow it meanwhile).
my $idle = $node->background_psql('postgres');
$idle->query_safe('BEGIN');
$idle->query_safe(q{INSERT INTO held (key, type, payload) VALUES ('h', 'T', '{}')});
my $log_offset = -s $node->logfile;
$node->safe_psql('postgres', q{
	SELECT event_log.roll_segment('held');
	SELECT event_log.roll_segment('other');
});
ok($node->poll_query_until('postgres', q{
	SELECT coalesce(sum(removed_events), 0) = 10 FROM event_log.shard_watermarks
	 WHERE stream = 'other'::regclass}),
	'the worker goes on with other streams while a session idles in a transaction');
$node->wait_for_log(qr/retention of event stream "public\.held" skipped: canceling statement due to lock timeout/,
	$log_offset);
is($node->safe_psql('postgres', q{
	SELECT coalesce(sum(removed_events), 0) FROM event_log.shard_watermarks
	 WHERE stream = 'held'::regclass}), '0',
	'the stream the idle session appended to is skipped, with a WARNING');
$idle->query_safe('COMMIT');
$idle->quit;
ok($node->poll_query_until('postgres', q{
	SELECT coalesce(sum(removed_events), 0) = 11 FROM event_log.shard_watermarks
	 WHERE stream = 'held'::regclass}),
	'its removal follows once the transaction ended, with the idle session\'s event');
$node->safe_psql('postgres', q{
	SELECT event_log.drop_stream('held');
	SELECT event_log.drop_stream('other');
});

# --- disk space: a dropped segment's file is gone at commit -----------------
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET event_log.retention_interval = 0;
	SELECT pg_reload_conf();
	SELECT event_log.create_stream('public.big', 2, segment_events => 1000000);
	INSERT INTO big (key, type, payload)
	SELECT 'k' || i % 5000, 'Line', jsonb_build_object('n', i, 'note', 'line ' || i)
	  FROM generate_series(1, 150000) i;
	SELECT event_log.roll_segment('big');
	INSERT INTO big (key, type, payload)
	SELECT 'k' || i % 5000, 'Line', jsonb_build_object('n', i, 'note', 'line ' || i)
	  FROM generate_series(150001, 200000) i;
	SELECT event_log.roll_segment('big');
	INSERT INTO big (key, type, payload)
	SELECT 'k' || i % 5000, 'Line', jsonb_build_object('n', i, 'note', 'line ' || i)
	  FROM generate_series(200001, 210000) i;
	SELECT event_log.set_retention('big', max_events => 4000, keep_unconsumed => false, archive => true);
});
my $datadir = $node->data_dir;
my @files = split /\n/, $node->safe_psql('postgres', q{
	SELECT pg_relation_filepath(segment_table) FROM event_log.segments
	 WHERE stream = 'big'::regclass AND segment < 3 ORDER BY segment});
ok(-e "$datadir/$files[0]" && -e "$datadir/$files[1]", 'the old segments have their files');
my $everything = q{
	SELECT md5(string_agg(format('%s/%s/%s/%s/%s/%s/%s', shard, seq, key, version, type, payload, event_id),
	                      ',' ORDER BY shard, seq))
	FROM (SELECT a.* FROM generate_series(0, 1) s,
	           LATERAL event_log.read_archive('big', s, 0, 1000000) a
	      UNION ALL
	      SELECT l.* FROM generate_series(0, 1) s,
	           LATERAL event_log.read('big', s, event_log.low_watermark('big', s) - 1, 1000000) l) e
};
my $before = $node->safe_psql('postgres', q{
	SELECT md5(string_agg(format('%s/%s/%s/%s/%s/%s/%s', shard, seq, key, version, type, payload, event_id),
	                      ',' ORDER BY shard, seq)) FROM big});

# --- kill -9 in the middle of an archiving removal ------------------------
crash_during($node, q{SELECT * FROM event_log.enforce_retention('big');}, 200,
	'an archiving removal of two segments');
is($node->safe_psql('postgres', $everything), $before,
	'after the crash every event is in the log or the archive, once');
is($node->safe_psql('postgres', q{
	SELECT count(*) + (SELECT sum(removed_events) FROM event_log.shard_watermarks
	                    WHERE stream = 'big'::regclass) FROM big}), '210000',
	'the watermarks say exactly what left');
is($node->safe_psql('postgres', q{
	SELECT sum(removed) FROM event_log.enforce_retention('big');
	SELECT string_agg(segment::text, ',' ORDER BY segment) FROM event_log.segments
	 WHERE stream = 'big'::regclass AND detached_at IS NULL}),
	"200000\n3", 'enforcing again removes both old segments, in one go');
ok(-s "$datadir/$files[0]", 'the removed segments are detached, their tables still there');
is($node->safe_psql('postgres', q{
	SELECT sum(removed) FROM event_log.enforce_retention('big');
	SELECT string_agg(segment::text, ',' ORDER BY segment) FROM event_log.segments
	 WHERE stream = 'big'::regclass}),
	"0\n3", 'the next enforcement drops them');
# PostgreSQL truncates a dropped table's first file to zero bytes at commit
# and unlinks it at the next checkpoint.
ok(!-s "$datadir/$files[0]" && !-s "$datadir/$files[1]",
	"the dropped segments' files are emptied when the removal commits");
is($node->safe_psql('postgres', $everything), $before, 'archive and log hold every event, unchanged');
is($node->safe_psql('postgres', q{SELECT count(*) FROM big}), '10000', 'the newest segment stays');

# --- a physical standby -----------------------------------------------------
$node->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('segments_standby');
$standby->init_from_backup($node, 'base', has_streaming => 1);
$standby->start;
$node->safe_psql('postgres', q{
	SELECT event_log.roll_segment('big');
	INSERT INTO big (key, type, payload) SELECT 'k' || i, 'Line', '{}' FROM generate_series(1, 5000) i;
	SELECT event_log.set_retention('big', max_events => 100, keep_unconsumed => false);
	SELECT count(*) FROM event_log.enforce_retention('big');
	SELECT count(*) FROM event_log.enforce_retention('big');
});
$node->wait_for_catchup($standby);
my $shape = q{SELECT string_agg(segment::text, ',' ORDER BY segment) FROM event_log.segments
	WHERE stream = 'big'::regclass};
is($standby->safe_psql('postgres', $shape), $node->safe_psql('postgres', $shape),
	'the standby has the same segments');
is(stream_positions($standby, 'big'), stream_positions($node, 'big'), 'the standby has the same events');
($rc, $out, $err) = $standby->psql('postgres', q{SELECT count(*) FROM event_log.read('big', 0)});
like($err, qr/below the shard's low watermark/, 'a read below the watermark fails on the standby too');
$standby->stop;

# --- pg_dump and pg_restore ---------------------------------------------------
my $bindir = $node->config_data('--bindir');
my $tmp = PostgreSQL::Test::Utils::tempdir;
my @conn = ('-h', $node->host, '-p', $node->port);
$node->safe_psql('postgres', q{
	CREATE DATABASE src;
	CREATE ROLE app LOGIN;
});
$node->safe_psql('src', q{
	CREATE EXTENSION event_log;
	CREATE SCHEMA shop AUTHORIZATION app;
	SET ROLE app;
	SELECT event_log.create_stream('shop.orders', 3, segment_events => 1000);
	INSERT INTO shop.orders (key, type, payload)
	SELECT 'o-' || i % 40, 'Placed', jsonb_build_object('n', i) FROM generate_series(1, 300) i;
	SELECT event_log.roll_segment('shop.orders');
	INSERT INTO shop.orders (key, type, payload)
	SELECT 'o-' || i % 40, 'Placed', jsonb_build_object('n', i) FROM generate_series(301, 400) i;
	SELECT event_log.create_projection('shop.per_key', 'shop.orders',
		columns  => 'key text PRIMARY KEY, n int',
		handlers => jsonb_build_object('Placed',
			$$INSERT INTO per_key AS c VALUES (e.key, 1) ON CONFLICT (key) DO UPDATE SET n = c.n + 1$$));
});
sub events_md5
{
	my ($db) = @_;
	return $node->safe_psql($db, q{
		SELECT count(*) || ' ' || md5(string_agg(format('%s|%s|%s|%s|%s|%s|%s|%s',
			shard, seq, key, version, type, payload, event_id, segment), ',' ORDER BY shard, seq))
		FROM shop.orders});
}
my $src_md5 = events_md5('src');
my %restore = (
	custom => sub {
		my ($db) = @_;
		command_ok([ "$bindir/pg_dump", @conn, '-Fc', '-f', "$tmp/dump.fc", 'src' ], 'custom dump');
		command_ok([ "$bindir/pg_restore", @conn, '-e', '-d', $db, "$tmp/dump.fc" ],
			'pg_restore of a custom dump succeeds without an error');
	},
	plain => sub {
		my ($db) = @_;
		command_ok([ "$bindir/pg_dump", @conn, '-f', "$tmp/plain.sql", 'src' ], 'plain dump');
		command_ok([ "$bindir/psql", @conn, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', "$tmp/plain.sql", $db ],
			'plain dump restores through psql without an error');
	},
	directory => sub {
		my ($db) = @_;
		command_ok([ "$bindir/pg_dump", @conn, '-Fd', '-f', "$tmp/dump.dir", 'src' ], 'directory dump');
		my ($o, $e) = ('', '');
		IPC::Run::run([ "$bindir/pg_restore", @conn, '-j', '4', '-d', $db, "$tmp/dump.dir" ],
			'>', \$o, '2>', \$e);
		is($e, '', 'pg_restore -j 4 reports no error');
	},
);
for my $format (qw(custom plain directory))
{
	my $db = "dst_$format";
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$restore{$format}->($db);
	is(events_md5($db), $src_md5, "$format: every event is identical, in the same segments");
	is($node->safe_psql($db, q{SELECT count(*) FROM event_log.segments s
		JOIN pg_inherits i ON i.inhrelid = s.segment_table AND i.inhparent = s.stream}), '2',
		"$format: the segments are listed and attached");
	is($node->safe_psql($db, q{SET ROLE app;
		INSERT INTO shop.orders (key, type, payload) VALUES ('o-1', 'Placed', '{}')
		RETURNING seq > 0 AND version = 11 AND segment = 2}), 't',
		"$format: appends go on at the key's next version, in the newest segment");
	is($node->safe_psql($db, q{SELECT n FROM shop.per_key WHERE key = 'o-1'}), '11',
		"$format: the inline projection follows appends");
	for my $bad (
		q{DELETE FROM shop.orders},
		q{ALTER TABLE shop.orders DETACH PARTITION %s},
		q{DROP TABLE %s},
		q{ALTER TABLE %s DISABLE TRIGGER event_log_immutable})
	{
		my $seg = $node->safe_psql($db, q{SELECT segment_table FROM event_log.segments WHERE segment = 1});
		(my $cmd = $bad) =~ s/%s/$seg/;
		(my $what = $bad) =~ s/%s/segment 1/;
		($rc, $out, $err) = $node->psql($db, "SET ROLE app; $cmd");
		like($err, qr/event stream|segment/, "$format: refused for the owner: $what");
	}
	is($node->safe_psql($db, q{SET ROLE app; SELECT event_log.roll_segment('shop.orders')}), '3',
		"$format: a new segment can be started");
	is($node->safe_psql($db, q{SET ROLE app;
		SELECT event_log.set_retention('shop.orders', max_events => 5, keep_unconsumed => false);
		INSERT INTO shop.orders (key, type, payload)
		SELECT 'o-' || i % 40, 'Placed', '{}' FROM generate_series(1, 60) i;
		SELECT sum(removed) FROM event_log.enforce_retention('shop.orders');
		SELECT sum(removed) FROM event_log.enforce_retention('shop.orders');
		SELECT string_agg(segment::text, ',' ORDER BY segment) FROM event_log.segments}),
		"\n401\n0\n3", "$format: retention detaches, then drops, the restored segments");
}

# pg_restore -j may create the stream's row triggers (cloned onto every
# segment) before it has loaded every segment's rows; here, in the worst
# order, deterministically: the triggers right after pre-data.  The rows
# go in as they were, and the inline projection does not count them again.
{
	my @list = split(/\n/, `$bindir/pg_restore -l $tmp/dump.fc`);
	my @triggers = grep { / TRIGGER shop orders / } @list;
	my @rest = grep { !/ TRIGGER shop orders / } @list;
	my ($first_data) = grep { $rest[$_] =~ / TABLE DATA / } 0 .. $#rest;
	splice(@rest, $first_data, 0, @triggers);
	PostgreSQL::Test::Utils::append_to_file("$tmp/early.list", join("\n", @rest) . "\n");
	ok(scalar(@triggers) >= 2, 'the dump has the stream\'s triggers');
	$node->safe_psql('postgres', 'CREATE DATABASE dst_early');
	command_ok([ "$bindir/pg_restore", @conn, '-e', '-L', "$tmp/early.list", '-d', 'dst_early', "$tmp/dump.fc" ],
		'a restore that creates the triggers before the segments\' rows succeeds');
	is(events_md5('dst_early'), $src_md5, 'every event is restored as it was');
	is($node->safe_psql('dst_early', q{SELECT n FROM shop.per_key WHERE key = 'o-1'}),
		$node->safe_psql('src', q{SELECT n FROM shop.per_key WHERE key = 'o-1'}),
		'the inline projection is restored, not fed the restored rows again');
	is($node->safe_psql('dst_early', q{SET ROLE app;
		INSERT INTO shop.orders (key, type, payload) VALUES ('o-1', 'Placed', '{}')
		RETURNING version = 11 AND segment = 2}), 't', 'appends go on after such a restore');
	($rc, $out, $err) = $node->psql('dst_early', q{SET ROLE app;
		INSERT INTO shop.orders (shard, seq, key, version, type, payload, event_id, recorded_at)
		VALUES (0, 1000, 'x', 1, 'Placed', '{}', gen_random_uuid(), now())});
	like($err, qr/cannot insert a value into column "shard"/,
		'once restored, a row with its own positions is refused again');
}

# A segment whose rows a restore has not loaded looks empty; retention
# must not take it for one (its rows would go with it, behind watermarks
# that never moved).  Restored here without segment 1's data, then the
# post-data section: the stream is complete but for those rows.
{
	my $list = `$bindir/pg_restore -l $tmp/dump.fc`;
	my $partial = join("\n", grep { !/TABLE DATA event_log segment_\d+_1 / } split(/\n/, $list)) . "\n";
	PostgreSQL::Test::Utils::append_to_file("$tmp/partial.list", $partial);
	$node->safe_psql('postgres', 'CREATE DATABASE dst_partial');
	command_ok([ "$bindir/pg_restore", @conn, '-L', "$tmp/partial.list", '-d', 'dst_partial', "$tmp/dump.fc" ],
		'a restore without segment 1\'s rows');
	is($node->safe_psql('dst_partial', q{SET ROLE app;
		SELECT event_log.set_retention('shop.orders', max_events => 5, keep_unconsumed => false);
		SELECT sum(removed), max(low_watermark) FROM event_log.enforce_retention('shop.orders');
		RESET ROLE;
		SELECT string_agg(segment || ':' || (detached_at IS NOT NULL), ',' ORDER BY segment)
		  FROM event_log.segments}),
		"\n0|1\n1:false,2:false", 'a segment that only looks empty is not removed');
}

$node->stop;
done_testing();
