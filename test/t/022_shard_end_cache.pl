# The shard's end in shared memory (src/shard_end.c, docs/design/offsets.md,
# "The shard's end in shared memory"), with event_log in
# shared_preload_libraries:
#  - single-event transactions take the shard's end from it, without probing
#    the (shard, seq) index, and probe again with event_log.shard_end_cache
#    off; sessions taking turns on a shard take their keys' last versions
#    from it, without probing the (key, version) index;
#  - every way a transaction's last numbered row can fail to be the shard's
#    end leaves the next appender, in another session, numbering without a
#    gap: a row skipped by ON CONFLICT DO NOTHING, a savepoint rolled back,
#    a rollback, PREPARE TRANSACTION then COMMIT or ROLLBACK PREPARED, a
#    row a logical replication apply inserted with its positions, retention
#    removing the newest events and VACUUM truncating their pages, the
#    setting switched off in one session while others append, kill -9 and
#    crash recovery.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EventLogTest;

my $node = new_node('shard_end', conf => qq{
shared_preload_libraries = 'event_log'
max_prepared_transactions = 5
restart_after_crash = on
autovacuum = off
});

$node->safe_psql('postgres', q{
	CREATE EXTENSION event_log;
	SELECT event_log.create_stream('public.ev', 2);
	-- ON CONFLICT DO NOTHING can skip a row after the trigger numbered it.
	CREATE UNIQUE INDEX ev_ref ON ev ((payload ->> 'ref'));
	-- k0/k1: a key of each shard
	CREATE TABLE keys AS
	  SELECT DISTINCT ON (shard) shard, 'k' || i AS key
	  FROM (SELECT i, event_log.shard_for('k' || i, 2) AS shard
	        FROM generate_series(1, 50) i) s ORDER BY shard, i;
});
my $k0 = $node->safe_psql('postgres', 'SELECT key FROM keys WHERE shard = 0');
my $k1 = $node->safe_psql('postgres', 'SELECT key FROM keys WHERE shard = 1');
my $k0b = $node->safe_psql('postgres', qq{
	SELECT 'k' || i FROM generate_series(1, 50) i
	WHERE event_log.shard_for('k' || i, 2) = 0 AND 'k' || i <> '$k0' LIMIT 1});

# Index scans of the (shard, seq) index so far (a session's counts reach
# the shared statistics when it ends; each safe_psql is a session).
sub pk_scans
{
	return $node->safe_psql('postgres',
		q{SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = 'ev_pkey'});
}

# N single-event transactions in one session, alternating the two shards.
sub appends
{
	my ($n, $setting) = @_;
	my $sql = $setting ? "SET event_log.shard_end_cache = $setting;\n" : '';
	$sql .= "INSERT INTO ev (key, type, payload) VALUES ('"
	  . ($_ % 2 ? $k1 : $k0) . "', 'T', '{}');\n"
	  for 1 .. $n;
	$node->safe_psql('postgres', $sql);
	return;
}

# --- the cache is used, and the setting turns it off ----------------------
appends(2);
my $before = pk_scans();
appends(100);
my $with_cache = pk_scans() - $before;
cmp_ok($with_cache, '<=', 2,
	"100 single-event transactions probe the shard's end at most once per shard ($with_cache)");
$before = pk_scans();
appends(100, 'off');
my $without = pk_scans() - $before;
cmp_ok($without, '>=', 100,
	"with event_log.shard_end_cache off each one probes ($without)");
check_dense($node, 'ev', 'single-event transactions');

# Two sessions taking turns on a 1-shard stream, each with keys of its own: each
# finds the other's row at the shard's end, so its own cache of versions is
# stale every time, and takes its key's last version from the key's entry
# instead of probing the (key, version) index.  With the setting off, every
# append probes.  Each round's sessions end before the statistics are read.
sub version_scans
{
	return $node->safe_psql('postgres',
		q{SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = 'one_key_version_key'});
}

sub take_turns
{
	my ($rounds, $setting) = @_;
	my @s = map { $node->background_psql('postgres') } 1 .. 2;
	for my $session (@s)
	{
		$session->query_safe("SET event_log.shard_end_cache = $setting");
	}
	for my $i (1 .. $rounds)
	{
		for my $j (0 .. 1)
		{
			my $key = "t${j}_" . ($i % 3);
			$s[$j]->query_safe(
				"INSERT INTO one (key, type, payload) VALUES ('$key', 'T', '{}')");
		}
	}
	$_->quit for @s;
	return;
}
$node->safe_psql('postgres', q{SELECT event_log.create_stream('public.one', 1)});
take_turns(3, 'on');    # every key has an entry
$before = version_scans();
take_turns(30, 'on');
my $key_probes = version_scans() - $before;
cmp_ok($key_probes, '<=', 6,
	"keys whose last row another session left take their version from it ($key_probes probes for 60 appends)");
$before = version_scans();
take_turns(30, 'off');
$key_probes = version_scans() - $before;
cmp_ok($key_probes, '>=', 30,
	"with event_log.shard_end_cache off they probe ($key_probes probes for 60 appends)");
check_dense($node, 'one', 'two sessions taking turns on a shard');

my $a = $node->background_psql('postgres');
my $b = $node->background_psql('postgres');
for (1 .. 20)
{
	$a->query_safe("INSERT INTO ev (key, type, payload) VALUES ('$k0', 'A', '{}')");
	$b->query_safe("INSERT INTO ev (key, type, payload) VALUES ('$k0', 'B', '{}')");
	$b->query_safe("INSERT INTO ev (key, type, payload) VALUES ('$k0', 'B', '{}')");
}
check_dense($node, 'ev', 'two sessions taking turns on one key');

# Each case: SQL in session a whose last numbered row of shard 0 is not
# the shard's end (or is, in an unusual way), then an append in session b.
my @cases = (
	[
		'a row skipped by ON CONFLICT DO NOTHING last',
		qq{BEGIN;
		   INSERT INTO ev (key, type, payload) VALUES ('$k0', 'T', '{"ref": "d1"}');
		   INSERT INTO ev (key, type, payload) VALUES ('$k0', 'T', '{"ref": "c1"}');
		   INSERT INTO ev (key, type, payload) VALUES ('$k0', 'T', '{"ref": "d1"}')
		     ON CONFLICT DO NOTHING;
		   COMMIT;}
	],
	[
		'a single row skipped by ON CONFLICT DO NOTHING',
		qq{INSERT INTO ev (key, type, payload) VALUES ('$k0', 'T', '{"ref": "c1"}')
		     ON CONFLICT DO NOTHING;}
	],
	[
		'a savepoint rolled back last',
		qq{BEGIN;
		   INSERT INTO ev (key, type, payload) VALUES ('$k0', 'T', '{}');
		   SAVEPOINT s;
		   INSERT INTO ev (key, type, payload) VALUES ('$k0', 'T', '{}');
		   ROLLBACK TO s;
		   COMMIT;}
	],
	[
		'the key, then another key of its shard',
		qq{BEGIN;
		   INSERT INTO ev (key, type, payload) VALUES ('$k0', 'T', '{}');
		   INSERT INTO ev (key, type, payload) VALUES ('$k0b', 'T', '{}');
		   COMMIT;
		   INSERT INTO ev (key, type, payload) VALUES ('$k0b', 'T', '{}');}
	],
	[
		'the key again from the session that left its entry, then another key',
		qq{INSERT INTO ev (key, type, payload) VALUES ('$k0', 'T', '{}');
		   BEGIN;
		   INSERT INTO ev (key, type, payload) VALUES ('$k0', 'T', '{}');
		   INSERT INTO ev (key, type, payload) VALUES ('$k0b', 'T', '{}');
		   COMMIT;}
	],
	[
		'a rollback',
		qq{BEGIN;
		   INSERT INTO ev (key, type, payload) VALUES ('$k0', 'T', '{}');
		   ROLLBACK;}
	],
	[
		'a transaction that appended to both shards, then a savepoint of shard 0 rolled back',
		qq{BEGIN;
		   INSERT INTO ev (key, type, payload) VALUES ('$k0', 'T', '{}');
		   SAVEPOINT s;
		   INSERT INTO ev (key, type, payload) VALUES ('$k1', 'T', '{}');
		   INSERT INTO ev (key, type, payload) VALUES ('$k0', 'T', '{}');
		   ROLLBACK TO s;
		   INSERT INTO ev (key, type, payload) VALUES ('$k1', 'T', '{}');
		   COMMIT;}
	],
	[
		'a batch that ends in the other shard',
		qq{INSERT INTO ev (key, type, payload)
		   SELECT CASE WHEN i % 2 = 0 THEN '$k0' ELSE '$k1' END, 'T', '{}'
		   FROM generate_series(1, 500) i;}
	],
	[
		'the setting off in the appending session',
		qq{SET event_log.shard_end_cache = off;
		   INSERT INTO ev (key, type, payload) VALUES ('$k0', 'T', '{}');
		   INSERT INTO ev (key, type, payload) VALUES ('$k0', 'T', '{}');
		   RESET event_log.shard_end_cache;}
	],
	[
		'a replicated row inserted with its positions',
		qq{SET session_replication_role = replica;
		   INSERT INTO ev (shard, seq, key, version, type, payload, event_id, recorded_at)
		   SELECT 0, (SELECT max(seq) + 1 FROM ev WHERE shard = 0), '$k0',
		          (SELECT max(version) + 1 FROM ev WHERE key = '$k0'),
		          'R', '{}', gen_random_uuid(), now();
		   RESET session_replication_role;}
	]);
for my $case (@cases)
{
	my ($what, $sql) = @$case;
	# b leaves the shard's end in shared memory first
	$b->query_safe("INSERT INTO ev (key, type, payload) VALUES ('$k0', 'T', '{}')");
	$a->query_safe($sql);
	$b->query_safe("INSERT INTO ev (key, type, payload) VALUES ('$k0', 'T', '{}')");
	$a->query_safe("INSERT INTO ev (key, type, payload) VALUES ('$k0', 'T', '{}')");
	check_dense($node, 'ev', $what);
}

# A transaction whose last row has a key stored out of line (1024
# incompressible bytes in a row over the TOAST threshold): its commit, whose
# callbacks have no snapshot to read TOAST with, publishes nothing for it
# and commits; the next appenders probe.
$node->safe_psql('postgres', q{
	SELECT event_log.create_stream('public.big', 1);
	BEGIN;
	INSERT INTO big (key, type, payload)
	SELECT (SELECT string_agg(md5(i::text || '/' || j::text), '') FROM generate_series(1, 32) j), 'T',
	       jsonb_build_object('p', (SELECT string_agg(md5(j::text || '-' || i::text), '')
	                                FROM generate_series(1, 31) j))
	FROM generate_series(1, 3) i;
	COMMIT;
	INSERT INTO big (key, type, payload) SELECT key, 'U', payload FROM big;
	INSERT INTO big (key, type, payload) VALUES ('small', 'S', '{}');
});
is($node->safe_psql('postgres', q{
	SELECT (SELECT pg_relation_size(reltoastrelid) > 0 FROM pg_class WHERE oid = 'big'::regclass)
	       || ' ' || count(*) FROM big}),
	'true 7', 'a transaction ending in a key stored out of line commits');
check_dense($node, 'big', 'keys stored out of line');

# Prepared transactions: the next appender waits for the shard, then
# numbers after a committed prepared row, or in its place after a rollback.
for my $end ('COMMIT PREPARED', 'ROLLBACK PREPARED')
{
	$b->query_safe("INSERT INTO ev (key, type, payload) VALUES ('$k0', 'T', '{}')");
	$a->query_safe(qq{BEGIN;
		INSERT INTO ev (key, type, payload) VALUES ('$k0', 'P', '{}');
		PREPARE TRANSACTION 'p'});
	my ($blocked, $waiting) = start_blocked_query($node,
		"INSERT INTO ev (key, type, payload) VALUES ('$k0', 'T', '{}');");
	ok($waiting, "an append waits for the prepared transaction's shard ($end)");
	$a->query_safe("$end 'p'");
	$blocked->quit;
	$b->query_safe("INSERT INTO ev (key, type, payload) VALUES ('$k0', 'T', '{}')");
	check_dense($node, 'ev', "a prepared transaction, then $end");
}

# Retention removes every event of the stream, VACUUM truncates the pages
# the entries point into: the next appends go on after the watermark.
$node->safe_psql('postgres', q{
	SELECT event_log.set_retention('ev', max_age => '1 microsecond', keep_unconsumed => false);
	SELECT pg_sleep(0.01);
	SELECT count(*) FROM event_log.enforce_retention('ev');
});
$node->safe_psql('postgres', 'VACUUM ev');
is($node->safe_psql('postgres', 'SELECT count(*) FROM ev'), '0',
	'retention removed every event');
is($node->safe_psql('postgres', q{SELECT pg_relation_size('ev')}), '0',
	'VACUUM truncated the stream');
$b->query_safe("INSERT INTO ev (key, type, payload) VALUES ('$k0', 'T', '{}')");
$a->query_safe("INSERT INTO ev (key, type, payload) VALUES ('$k1', 'T', '{}')");
is($node->safe_psql('postgres', q{
	SELECT bool_and(seq = w.low_seq)
	FROM ev JOIN event_log.shard_watermarks w ON w.stream = 'ev'::regclass AND w.shard = ev.shard}),
	't', 'after retention, each shard goes on at its watermark');
$node->safe_psql('postgres', q{
	SELECT event_log.set_retention('ev');
});
$a->quit;
$b->quit;

# --- kill -9: the table starts empty again ---------------------------------
$node->safe_psql('postgres', q{
	SELECT event_log.drop_stream('ev');
	SELECT event_log.create_stream('public.ev', 2);
});
appends(20);
crash_during($node, q{
	INSERT INTO ev (key, type, payload)
	SELECT 'k' || (i % 50), 'T', '{}' FROM generate_series(1, 5000000) i;},
	300, 'a large batch');
appends(20);
check_dense($node, 'ev', 'after crash recovery');
is($node->safe_psql('postgres', 'SELECT count(*) FROM ev'), '40',
	'the batch is gone, the appends before and after it are there');

done_testing();
