# Density and commit order under real concurrency.
#
# pgbench appends to one 4-shard stream with a mix of transactions (single
# INSERTs, append(), multi-row INSERT ... SELECT, savepoints rolled back,
# INSERT ... ON CONFLICT DO NOTHING that skips rows, two-shard transactions
# that may deadlock, explicit rollbacks, PL/pgSQL exception blocks in
# REPEATABLE READ, prepared transactions), while two consumers poll every
# shard with event_log.read(after_seq => last): one in a single READ COMMITTED
# session, one in a new REPEATABLE READ transaction per round.  A consumer
# must always get exactly last+1, last+2, ...: a gap, or a seq at or below
# one it has already seen, means an event became visible out of commit order.
# Afterwards every shard and every key must be dense, shards must match
# shard_for(), and seq order must agree with commit timestamps.
#
# The server preloads event_log, so appenders also take the shard's end
# from shared memory (src/shard_end.c).
#
# EVENT_LOG_STRESS_SECONDS sets pgbench's duration (default 15).
# Script (j) runs append() from a cursor whose later FETCH fails inside an
# exception block: a shard lock taken under the cursor's resource owner used
# to be released then, while the transaction's earlier append was still
# uncommitted (fixed: the lock is owned by the transaction).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use EventLogTest;

my $duration = $ENV{EVENT_LOG_STRESS_SECONDS} || 15;
my $shards = 4;

my $node = new_node('stress', logical => 1, conf => qq{
shared_preload_libraries = 'event_log'
max_prepared_transactions = 10
track_commit_timestamp = on
deadlock_timeout = '50ms'
log_lock_waits = off
});

$node->safe_psql(
	'postgres', qq{
	CREATE EXTENSION event_log;
	SELECT event_log.create_stream('public.ev', $shards);
	-- A user unique index, so that ON CONFLICT DO NOTHING skips rows after
	-- the trigger has numbered them.
	CREATE UNIQUE INDEX ev_ref ON ev ((payload ->> 'ref'));

	-- Keys k1..k80 by shard, so a transaction can pick two keys that are
	-- certainly in different shards.
	CREATE TABLE keypool AS
	  SELECT key, shard, row_number() OVER (PARTITION BY shard ORDER BY key) AS idx
	  FROM (SELECT 'k' || i AS key, event_log.shard_for('k' || i, $shards) AS shard
	        FROM generate_series(1, 80) i) k;
	CREATE UNIQUE INDEX ON keypool (shard, idx);

	-- Consumers stop when this says so, and leave what they saw here.
	CREATE TABLE ctl (stop boolean NOT NULL);
	INSERT INTO ctl VALUES (false);
	CREATE TABLE poll_result (poller text, shard int, last_seq bigint,
	                          rounds int, rounds_with_events int);

	-- (h) A PL/pgSQL exception block whose subtransaction appended to a
	-- second key and then fails: its appends must vanish without a trace.
	CREATE FUNCTION h_step(k1 text, k2 text) RETURNS void LANGUAGE plpgsql AS \$\$
	BEGIN
	  PERFORM event_log.append('ev', k1, 'H1', '{}');
	  BEGIN
	    PERFORM event_log.append('ev', k2, 'H2', '{}');
	    -- k2 has at least the event just appended: always a conflict.
	    PERFORM event_log.append('ev', k2, 'H3', '{}', expected_version => 0);
	  EXCEPTION WHEN SQLSTATE 'EL001' THEN
	    NULL;
	  END;
	  PERFORM event_log.append('ev', k2, 'H4', '{}');
	END \$\$;

	-- (j) A cursor appends at top level, then fails in an exception block.
	CREATE FUNCTION j_step(k text) RETURNS void LANGUAGE plpgsql AS \$\$
	DECLARE
	  c CURSOR FOR
	    SELECT (event_log.append('ev', k, 'J', '{}',
	            expected_version => CASE WHEN i = 2 THEN 999999999 END)).seq
	    FROM generate_series(1, 2) i;
	  r record;
	BEGIN
	  OPEN c;
	  FETCH c INTO r;
	  BEGIN
	    FETCH c INTO r;
	  EXCEPTION WHEN SQLSTATE 'EL001' THEN
	    NULL;
	  END;
	  PERFORM pg_sleep(0.02);
	  CLOSE c;
	END \$\$;
});

my $per_shard = $node->safe_psql('postgres',
	'SELECT min(n) FROM (SELECT count(*) AS n FROM keypool GROUP BY shard) s');
cmp_ok($per_shard, '>=', 5, 'every shard has keys in the pool');
is($node->safe_psql('postgres', 'SELECT count(DISTINCT shard) FROM keypool'),
	$shards, 'the key pool covers every shard');

# --- the pgbench scripts -------------------------------------------------

my $dir = $node->basedir;
my %scripts = (

	# (a) a single INSERT
	a_insert => [
		3, q{
\set k random(1, 80)
INSERT INTO ev (key, type, payload) VALUES ('k' || :k, 'A', '{}');
}
	],

	# (b) append() without an expected version
	b_append => [
		3, q{
\set k random(1, 80)
SELECT * FROM event_log.append('ev', 'k' || :k, 'B', '{}', expected_version => NULL);
}
	],

	# (c) 20 events over three keys in one INSERT ... SELECT
	c_batch => [
		2, q{
\set x random(1, 80)
\set y random(1, 80)
\set z random(1, 80)
INSERT INTO ev (key, type, payload)
SELECT 'k' || (ARRAY[:x, :y, :z])[1 + i % 3], 'C', jsonb_build_object('i', i)
FROM generate_series(1, 20) i;
}
	],

	# (d) a savepoint rolled back between two appends; its key may be in a
	# shard the transaction has not locked yet (the lock goes with it) or
	# in one it already holds.
	d_savepoint => [
		2, q{
\set k1 random(1, 80)
\set k2 random(1, 80)
\set k3 random(1, 80)
BEGIN;
SELECT * FROM event_log.append('ev', 'k' || :k1, 'D1', '{}');
SAVEPOINT sp;
SELECT * FROM event_log.append('ev', 'k' || :k2, 'D2', '{}');
INSERT INTO ev (key, type, payload) VALUES ('k' || :k2, 'D2', '{}');
ROLLBACK TO SAVEPOINT sp;
SELECT * FROM event_log.append('ev', 'k' || :k3, 'D3', '{}');
COMMIT;
}
	],

	# (e) ON CONFLICT DO NOTHING: a new ref, refs from a small range (soon
	# all taken), a repeat of the new ref within the statement (always
	# skipped), then another new ref after the skips.
	e_on_conflict => [
		2, q{
\set k1 random(1, 80)
\set k2 random(1, 80)
\set n random(1, 1000000000)
\set r1 random(1, 150)
\set r2 random(1, 150)
INSERT INTO ev (key, type, payload) VALUES
  ('k' || :k1, 'E', jsonb_build_object('ref', 'n-' || :n || '-' || :client_id)),
  ('k' || :k1, 'E', jsonb_build_object('ref', 's-' || :r1)),
  ('k' || :k2, 'E', jsonb_build_object('ref', 'n-' || :n || '-' || :client_id)),
  ('k' || :k2, 'E', jsonb_build_object('ref', 's-' || :r2)),
  ('k' || :k1, 'E', jsonb_build_object('ref', 'm-' || :n || '-' || :client_id)),
  ('k' || :k2, 'E', '{}')
ON CONFLICT DO NOTHING;
}
	],

	# (f) two keys in two different shards, in random order: deadlocks
	f_two_shards => [
		2, qq{
\\set s1 random(0, @{[$shards - 1]})
\\set s2 (:s1 + random(1, @{[$shards - 1]})) % $shards
\\set i1 random(1, $per_shard)
\\set i2 random(1, $per_shard)
BEGIN;
SELECT * FROM event_log.append('ev', (SELECT key FROM keypool WHERE shard = :s1 AND idx = :i1), 'F1', '{}');
SELECT * FROM event_log.append('ev', (SELECT key FROM keypool WHERE shard = :s2 AND idx = :i2), 'F2', '{}');
COMMIT;
}
	],

	# (g) appends rolled back
	g_rollback => [
		1, q{
\set k random(1, 80)
BEGIN;
INSERT INTO ev (key, type, payload) VALUES ('k' || :k, 'G', '{}');
SELECT * FROM event_log.append('ev', 'k' || :k, 'G', '{}');
ROLLBACK;
}
	],

	# (h) REPEATABLE READ with an old snapshot and an exception block
	h_exception_rr => [
		1, q{
\set k1 random(1, 80)
\set k2 random(1, 80)
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT count(*) FROM ev;
SELECT h_step('k' || :k1, 'k' || :k2);
COMMIT;
}
	],

	# (i) prepared transactions, committed or rolled back
	i_prepared => [
		1, q{
\set k random(1, 80)
\set g random(1, 1000000000)
\set commit random(0, 3)
BEGIN;
SELECT * FROM event_log.append('ev', 'k' || :k, 'P', '{}');
INSERT INTO ev (key, type, payload) VALUES ('k' || :k, 'P', '{}');
PREPARE TRANSACTION 'stress-:client_id-:g';
\if :commit
COMMIT PREPARED 'stress-:client_id-:g';
\else
ROLLBACK PREPARED 'stress-:client_id-:g';
\endif
}
	],);

{
	$scripts{j_cursor} = [
		1, q{
\set k random(1, 80)
\set commit random(0, 1)
BEGIN;
SELECT j_step('k' || :k);
\if :commit
COMMIT;
\else
ROLLBACK;
\endif
}
	];
}

my @script_args;
foreach my $name (sort keys %scripts)
{
	my ($weight, $body) = @{ $scripts{$name} };
	my $file = write_script($node, $name, $body);
	push @script_args, '-f', "$file\@$weight";
}

# pgbench 15 retries deadlocked transactions; older ones count them as
# failed clients.
my $pgbench_help = `pgbench --help 2>&1`;
my $has_max_tries = $pgbench_help =~ /--max-tries/;
my @retry_args = $has_max_tries ? ('--max-tries=10') : ();

# --- the consumers -------------------------------------------------------

# One DO block: poll every shard after the last seq seen, insist on exactly
# the next seqs, stop after a final round that started once ctl.stop was set.
# With $rr, each round is its own REPEATABLE READ transaction.
sub poller_sql
{
	my ($name, $rr) = @_;
	my $set = $rr ? "SET default_transaction_isolation = 'repeatable read';" : '';
	my $check_iso =
	  $rr
	  ? q{IF current_setting('transaction_isolation') <> 'repeatable read' THEN
	      RAISE EXCEPTION 'poller %: round % is not REPEATABLE READ', pname, rounds;
	    END IF;}
	  : '';
	my $end_round = $rr ? 'COMMIT;' : '';
	return qq{
$set
DO \$\$
DECLARE
  pname text := '$name';
  nshards int := $shards;
  last bigint[] := array_fill(0::bigint, ARRAY[$shards]);
  stopping boolean;
  rounds int := 0;
  rounds_with_events int := 0;
  got int;
  got_round int;
  r record;
  started timestamptz := clock_timestamp();
BEGIN
  LOOP
    rounds := rounds + 1;
    $check_iso
    -- Read the flag first: a round that began after it was set sees
    -- everything that was ever committed.
    SELECT stop INTO stopping FROM ctl;
    got_round := 0;
    FOR sh IN 0 .. nshards - 1 LOOP
      LOOP
        got := 0;
        FOR r IN SELECT seq FROM event_log.read('ev', sh, after_seq => last[sh + 1],
                                               max_count => 1000) LOOP
          IF r.seq <> last[sh + 1] + 1 THEN
            RAISE EXCEPTION 'poller %: shard % returned seq % right after seq % (round %)',
              pname, sh, r.seq, last[sh + 1], rounds;
          END IF;
          last[sh + 1] := r.seq;
          got := got + 1;
        END LOOP;
        got_round := got_round + got;
        EXIT WHEN got < 1000;
      END LOOP;
    END LOOP;
    IF got_round > 0 THEN
      rounds_with_events := rounds_with_events + 1;
    END IF;
    EXIT WHEN stopping;
    IF clock_timestamp() - started > interval '300 seconds' THEN
      RAISE EXCEPTION 'poller %: never told to stop', pname;
    END IF;
    $end_round
    PERFORM pg_sleep(0.005);
  END LOOP;
  INSERT INTO poll_result
    SELECT pname, s - 1, last[s], rounds, rounds_with_events
    FROM generate_series(1, nshards) s;
END \$\$;
};
}

my %pollers;
foreach my $p ([ 'read_committed', 0 ], [ 'repeatable_read', 1 ])
{
	my ($name, $rr) = @$p;
	my $file = write_script($node, "poller_$name", poller_sql($name, $rr));
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[
			'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1',
			'-d', $node->connstr('postgres'),
			'-f', $file
		],
		'>', \$out, '2>', \$err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default + $duration));
	$pollers{$name} = { h => $h, out => \$out, err => \$err };
}

# --- the load ------------------------------------------------------------

my ($bench_out, $bench_err) = ('', '');
my $bench = start_pgbench(
	$node, [ '-c', '6', '-j', '2', '-T', $duration, @retry_args, @script_args ],
	\$bench_out, \$bench_err,
	IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default + $duration));
$bench->finish;    # its exit status may be non-zero; judged by its output
note "pgbench stdout:\n$bench_out";
note "pgbench stderr:\n$bench_err" if $bench_err ne '';

# pgbench is gone; wait until its backends are too, then settle anything a
# client left prepared, so that the consumers' last round sees the end.
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name = 'pgbench'")
  or die 'pgbench backends did not go away';
my $leftover = $node->safe_psql('postgres',
	"SELECT string_agg(gid, ' ') FROM pg_prepared_xacts WHERE gid LIKE 'stress-%'");
if ($leftover ne '')
{
	note "rolling back prepared transactions pgbench left behind: $leftover";
	$node->safe_psql('postgres', "ROLLBACK PREPARED '$_'")
	  foreach split / /, $leftover;
}
$node->safe_psql('postgres', 'UPDATE ctl SET stop = true');

foreach my $name (sort keys %pollers)
{
	my $p = $pollers{$name};
	my $ok = eval { $p->{h}->finish; 1 };
	my $rc = $ok ? $p->{h}->result(0) : "timed out: $@";
	is($rc, 0, "poller $name finished without a violation")
	  or diag "poller $name stderr:\n${ $p->{err} }";
}

# --- what pgbench reports --------------------------------------------------

my ($processed) = $bench_out =~ /number of transactions actually processed: (\d+)/;
cmp_ok($processed // 0, '>', 200, 'pgbench committed transactions');
foreach my $name (sort keys %scripts)
{
	my ($n) = $bench_out =~ /SQL script \d+: \Q$dir\E\/\Q$name\E\.sql\n - weight: \d+ \([^)]*\)\n - (\d+) transactions/;
	cmp_ok($n // 0, '>', 0, "pgbench ran script $name");
}
unlike($bench_err, qr/duplicate key value/, 'no append hit a unique violation');
unlike(
	$bench_err,
	qr/server closed the connection|terminating connection|connection to server .* lost/,
	'no backend died under pgbench');
unlike($bench_err, qr/aborted in command/,
	'no pgbench client aborted on an error')
  if $has_max_tries;

# --- the log, and what the consumers saw ------------------------------------

my $table_total = $node->safe_psql('postgres', 'SELECT count(*) FROM ev');
cmp_ok($table_total, '>', 500, "the stream has $table_total events");

foreach my $name (sort keys %pollers)
{
	is( $node->safe_psql(
			'postgres', qq{
			SELECT count(*) FROM poll_result p
			FULL JOIN (SELECT shard, max(seq) AS m FROM ev GROUP BY shard) e USING (shard)
			WHERE p.poller = '$name' AND p.last_seq IS DISTINCT FROM e.m
			   OR p.poller IS NULL}),
		'0',
		"poller $name ended at every shard's last seq");
	is( $node->safe_psql('postgres',
			"SELECT sum(last_seq) FROM poll_result WHERE poller = '$name'"),
		$table_total,
		"poller $name saw as many events as the table holds");
	my ($rounds, $busy) = split /\|/,
	  $node->safe_psql('postgres',
		"SELECT coalesce(max(rounds), 0), coalesce(max(rounds_with_events), 0) FROM poll_result WHERE poller = '$name'");
	cmp_ok($busy, '>=', 10,
		"poller $name saw new events in $busy of $rounds rounds, while appends ran");
}

is( $node->safe_psql(
		'postgres', q{
		SELECT count(*) FROM (SELECT shard FROM ev GROUP BY shard
		                      HAVING count(*) <> max(seq) OR min(seq) <> 1) s}),
	'0',
	'every shard holds seq 1..n');
is($node->safe_psql('postgres', 'SELECT count(DISTINCT shard) FROM ev'),
	$shards, 'every shard has events');
is( $node->safe_psql(
		'postgres', q{
		SELECT count(*) FROM (SELECT key FROM ev GROUP BY key
		                      HAVING count(*) <> max(version) OR min(version) <> 1) k}),
	'0',
	'every key holds versions 1..n');
is( $node->safe_psql(
		'postgres', q{
		SELECT count(*) FROM (
		  SELECT version, lag(version) OVER (PARTITION BY key ORDER BY seq) AS prev
		  FROM ev) v
		WHERE prev IS NOT NULL AND version <> prev + 1}),
	'0',
	'a key\'s versions follow seq order');
is($node->safe_psql('postgres', 'SELECT count(*) - count(DISTINCT event_id) FROM ev'),
	'0', 'event_ids are unique');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM ev WHERE shard <> event_log.shard_for(key, $shards)"),
	'0',
	'every event is in its key\'s shard');
is( $node->safe_psql(
		'postgres', q{
		SELECT count(*) FROM (
		  SELECT pg_xact_commit_timestamp(xmin) AS ts,
		         lag(pg_xact_commit_timestamp(xmin)) OVER (PARTITION BY shard ORDER BY seq) AS prev
		  FROM ev) c
		WHERE ts IS NULL OR ts < prev}),
	'0',
	'seq order follows commit order (commit timestamps)');
is( $node->safe_psql(
		'postgres', "SELECT count(*) FROM ev WHERE type IN ('D2', 'G', 'H2', 'H3')"),
	'0',
	'nothing rolled back (savepoint, ROLLBACK, exception block) is in the log');
my $skipped = $node->safe_psql(
	'postgres', q{
	SELECT count(*) FILTER (WHERE payload ->> 'ref' LIKE 'n-%'),
	       count(*) FILTER (WHERE payload ->> 'ref' LIKE 'm-%'),
	       count(*) FILTER (WHERE type = 'E')
	FROM ev});
my ($n_new, $m_new, $e_rows) = split /\|/, $skipped;
cmp_ok($e_rows, '<', 6 * $n_new, "ON CONFLICT DO NOTHING skipped rows ($e_rows of " . 6 * $n_new . ' kept)');
is($n_new, $m_new, 'a row after skipped ones in the same statement was kept each time');

# No crash, no assertion failure, no backend killed.
my $log = slurp_file($node->logfile);
unlike($log, qr/PANIC|TRAP:|server process .* was terminated|terminated by signal/,
	'the server log shows no crash');

$node->stop;
done_testing();
