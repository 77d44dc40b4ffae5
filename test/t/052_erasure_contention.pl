# Data subjects' keys and shard locks under load (src/personal.c,
# docs/design/erasure.md, "Where encryption runs").
#
# pgbench clients append events of a few hot subjects and of brand-new ones,
# with INSERT, append() and append() with an event_id, while other clients
# erase hot subjects in the same transaction as an append: first erase then
# append, then (a second run) append then erase.  Single appends must never
# fail: no deadlock (40P01) and no statement timeout, which is what a convoy
# on a subject's lock looked like (waiters that queued for the lock kept the
# others' requests without waiting from ever succeeding).  The erasing
# transactions must not fail either: each waits for shards holding only its
# subject, or for its subject holding only shards, never both against one
# another in the same run.  Afterwards shards and keys are dense, no event
# is readable once its subject's erasure committed after it, and every
# subject has at most one key.
#
# Both commit modes: serial for the first run, grouped for the second.
# EVENT_LOG_STRESS_SECONDS sets each run's duration (default 6).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EventLogTest;

my $duration = $ENV{EVENT_LOG_STRESS_SECONDS} || 6;

my $node = new_node('erasure_load', conf => qq{
shared_preload_libraries = 'event_log'
deadlock_timeout = '20ms'
statement_timeout = '60s'
log_lock_waits = off
});

$node->safe_psql(
	'postgres', q{
	CREATE EXTENSION event_log;
	SELECT event_log.create_stream('public.ld', 4);
	SELECT event_log.declare_personal('ld', ARRAY['email'], 'customer');
	-- A subject: one of five hot ones half the time, else a new one.
	CREATE FUNCTION subj(r int, h int, n int) RETURNS text LANGUAGE sql
	  AS $$ SELECT CASE WHEN r <= 50 THEN 'hot' || h ELSE 'new' || n END $$;
});

my $vars = q{\set r random(1, 100)
\set h random(1, 5)
\set n random(1, 1000000000)
\set k random(1, 200)
};
my %scripts = (
	insert => $vars
	  . q{INSERT INTO ld (key, type, payload) VALUES ('k' || :k, 'Placed', jsonb_build_object('customer', subj(:r, :h, :n), 'email', 'e' || :n));
},
	append => $vars
	  . q{SELECT 1 FROM event_log.append('ld', 'k' || :k, 'Placed', jsonb_build_object('customer', subj(:r, :h, :n), 'email', 'e' || :n));
},
	append_id => $vars
	  . q{SELECT 1 FROM event_log.append('ld', 'k' || :k, 'Placed', jsonb_build_object('customer', subj(:r, :h, :n), 'email', 'e' || :n), event_id => gen_random_uuid());
},
	erase_then_append => $vars . q{BEGIN;
SELECT event_log.erase_subject('ld', 'hot' || :h, 'request');
INSERT INTO ld (key, type, payload) VALUES ('k' || :k, 'SubjectErased', jsonb_build_object('note', 'erased'));
COMMIT;
},
	append_then_erase => $vars . q{BEGIN;
INSERT INTO ld (key, type, payload) VALUES ('k' || :k, 'ErasureRequested', jsonb_build_object('note', 'erasing'));
SELECT event_log.erase_subject('ld', 'hot' || :h, 'request');
COMMIT;
},);
my %path;
$path{$_} = write_script($node, $_, $scripts{$_}) for keys %scripts;

# One run: single appends with the erasing script ERASER; the transactions
# and failures pgbench reports.
sub run_load
{
	my ($eraser) = @_;
	my ($out, $err) = ('', '');
	my $h = start_pgbench(
		$node,
		[
			'-c', '10', '-j', '2', '-T', $duration,
			'--max-tries=1', '--failures-detailed',
			'-f', "$path{insert}\@4", '-f', "$path{append}\@2",
			'-f', "$path{append_id}\@2", '-f', "$path{$eraser}\@2"
		],
		\$out, \$err, IPC::Run::timeout($duration + 120));
	$h->finish;
	my ($txns) = $out =~ /number of transactions actually processed: (\d+)/;
	my ($failed) = $out =~ /number of failed transactions: (\d+)/;
	note("$eraser: " . ($txns // '?') . " transactions, " . ($failed // '?') . " failed");
	ok(defined $txns && $txns > 0, "$eraser: pgbench ran")
	  or diag("stdout:\n$out\nstderr:\n$err");
	is($failed // 'none', '0', "$eraser: no transaction failed (no deadlock, no timeout)")
	  or diag("stdout:\n$out\nstderr:\n$err");
	return;
}

run_load('erase_then_append');
$node->safe_psql('postgres',
	"SELECT event_log.alter_stream('ld', commit_mode => 'grouped')");
run_load('append_then_erase');

check_dense($node, 'ld', 'after both runs');

# Every subject's events: readable under its current key, or erased; a
# subject erased and never appended to since has no readable event.
is( $node->safe_psql(
		'postgres', q{
	SELECT count(*) FROM ld l
	WHERE l.payload ? 'email'
	  AND event_log.reveal('ld', l.payload)->'email' <> '{"$personal": "erased"}'::jsonb
	  AND NOT EXISTS (SELECT 1 FROM event_log.subject_keys k
	                  WHERE k.stream = 'ld'::regclass
	                    AND k.key_id = decode(l.payload->'email'->>'key', 'hex'))}),
	'0',
	'no event is readable without its subject\'s key');
is( $node->safe_psql(
		'postgres', q{
	SELECT count(*) FROM (SELECT subject FROM event_log.subject_keys
	                      WHERE stream = 'ld'::regclass
	                      GROUP BY subject HAVING count(*) > 1) s}),
	'0',
	'one key per subject at most');

# An erasure as the last thing: the hot subjects' events all read as erased.
$node->safe_psql('postgres',
	"SELECT event_log.erase_subject('ld', 'hot' || i, 'final') FROM generate_series(1, 5) i"
);
is( $node->safe_psql(
		'postgres', q{
	SELECT count(*) FROM ld l
	WHERE l.payload->>'customer' LIKE 'hot%'
	  AND event_log.reveal('ld', l.payload)->'email' <> '{"$personal": "erased"}'::jsonb}),
	'0',
	'after a last erasure of the hot subjects none of their events is readable');
isnt($node->safe_psql('postgres',
		q{SELECT count(*) FROM ld WHERE payload->>'customer' LIKE 'hot%'}),
	'0', 'the hot subjects had events');

done_testing();
