# Consumer groups across member failures and a restart:
#  - two members split a group's shards;
#  - a member whose session ends loses its shards at once, and the other
#    member receives the events it had polled but not committed (at least
#    once delivery);
#  - a member that stops polling (hung) keeps its shards until its lease
#    expires, then loses them;
#  - a commit for a shard leased to another live member is refused, and so
#    is a commit naming a live member from another session;
#  - poll(wait => ...) returns as soon as an append commits, and a LISTEN on
#    the stream's channel gets one notification per appending transaction;
#  - committed offsets survive a restart.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use EventLogTest;

my $node = new_node('consumers');
$node->safe_psql('postgres', q{
	CREATE EXTENSION event_log;
	SELECT event_log.create_stream('public.orders', 4);
	INSERT INTO orders (key, type, payload)
	SELECT 'order-' || i, 'Placed', jsonb_build_object('n', i) FROM generate_series(1, 40) i;
	CREATE FUNCTION event_log_test_try(sql text) RETURNS text LANGUAGE plpgsql AS
	$$BEGIN EXECUTE sql; RETURN 'ok'; EXCEPTION WHEN OTHERS THEN RETURN SQLERRM; END$$;
});

my $a = $node->background_psql('postgres');
my $b = $node->background_psql('postgres');

is(poll_shards($a, 'orders', 'a'), '0,1,2,3', 'the first member gets every shard');
is(poll_shards($b, 'orders', 'b'), '', 'a second member waits for shards to be given up');
is(poll_shards($a, 'orders', 'a'), '0,1', 'the first member keeps its share');
is(poll_shards($b, 'orders', 'b'), '2,3', 'the second member takes the rest');

# b cannot commit for a's shard 0 while a lives.
my ($ret, $out, $err) = $node->psql('postgres',
	"SELECT event_log.commit_offset('g', 'orders', 0, 1, member => 'b')");
like($err, qr/shard 0 of event stream "public.orders" is leased to another member/,
	'a commit for a shard leased to a live member is refused');

# a processes shard 0 up to seq 2 and commits, then polls (receiving the
# rest of its shards' events) and dies without committing them.
$a->query_safe("SELECT event_log.commit_offset('g', 'orders', 0, 2, member => 'a')");
my $uncommitted = $a->query_safe(q{
	SELECT string_agg(shard || ':' || seq, ' ' ORDER BY shard, seq)
	FROM event_log.poll('g', 'orders', 1000, member => 'a')});
$a->quit;
$node->poll_query_until('postgres', q{
	SELECT count(*) = 0 FROM pg_locks
	WHERE locktype = 'advisory' AND objsubid = 17741 AND mode = 'AccessExclusiveLock'
	  AND classid = (SELECT lock_id FROM event_log.consumer_members WHERE member = 'a')})
  or die 'the member lock of a dead session was not released';

# b takes a's shards at its next poll, without waiting for the lease, and
# gets exactly what a had polled but not committed.
my $redelivered = $b->query_safe(q{
	SELECT string_agg(shard || ':' || seq, ' ' ORDER BY shard, seq)
	FROM event_log.poll('g', 'orders', 1000, member => 'b') WHERE shard IN (0, 1)});
is($redelivered, $uncommitted,
	'a dead member\'s shards go to another member at once, uncommitted events again');
is(poll_shards($b, 'orders', 'b'), '0,1,2,3', 'the surviving member holds every shard');
# (b's session is member b; its background psql stops at an error, so the
# error comes back as a value.)
like($b->query_safe(q{SELECT event_log_test_try(
		$$SELECT event_log.commit_offset('g', 'orders', 0, 1, member => 'b')$$)}),
	qr/backwards/, 'the dead member\'s committed offset stays');

# Only b's session is member b: another session naming b is refused.
($ret, $out, $err) = $node->psql('postgres',
	"SELECT event_log.commit_offset('g', 'orders', 0, 5, member => 'b')");
like($err, qr/member "b" of consumer group "g" is in use by another session/,
	'another session cannot commit as a live member');
is($node->safe_psql('postgres', q{SELECT event_log.committed_offset('g', 'orders', 0)}),
	'2', 'and the offset stays');

# A hung member: c joins with a short lease and then stops polling.  Its
# session lives (it holds its lock), so only the lease frees its shards.
my $c = $node->background_psql('postgres');
$c->query_safe("SET event_log.lease_timeout = '2s'");
$b->query_safe("SET event_log.lease_timeout = '2s'");
poll_shards($c, 'orders', 'c');
poll_shards($b, 'orders', 'b');    # b gives up its excess
is(poll_shards($c, 'orders', 'c'), '2,3', 'a new member gets its share');
my $t0 = time();
is(poll_shards($b, 'orders', 'b'), '0,1', 'within its lease, a hung member keeps its shards');
my $took;
while (time() - $t0 < 30)
{
	$took = poll_shards($b, 'orders', 'b');
	last if $took eq '0,1,2,3';
	select(undef, undef, undef, 0.2);
}
is($took, '0,1,2,3', 'after the lease expires, its shards go to a live member');
cmp_ok(time() - $t0, '>=', 1.5, 'not before the lease expired');

# The hung member wakes up: its shards are gone, and its commits are refused.
($ret, $out, $err) = $node->psql('postgres',
	"SELECT event_log.commit_offset('g', 'orders', 2, 1, member => 'c')");
like($err, qr/leased to another member/, 'the hung member cannot commit anymore');
$c->quit;

# Waiting poll: returns as soon as an append commits, not at the timeout.
# Catch up first.
$b->query_safe(q{
	SELECT event_log.commit_offset('g', 'orders', shard, max(seq), member => 'b')
	FROM event_log.poll('g', 'orders', 1000, member => 'b') GROUP BY shard});
is($b->query_safe(q{SELECT count(*) FROM event_log.poll('g', 'orders', member => 'b')}),
	'0', 'caught up');
start_query($b,
	q{SELECT 'woke', key FROM event_log.poll('g', 'orders', member => 'b', wait => '60s');});
$t0 = time();
$node->poll_query_until('postgres', q{
	SELECT count(*) > 0 FROM pg_locks
	WHERE locktype = 'advisory' AND objsubid = 17751
	  AND classid = 'orders'::regclass::oid})
  or die 'the poll is not waiting';
$node->safe_psql('postgres',
	"INSERT INTO orders (key, type, payload) VALUES ('order-late', 'Placed', '{}')");
$b->{run}->pump until $b->{stdout} =~ /woke\|order-late/ || time() - $t0 > 50;
like($b->{stdout}, qr/woke\|order-late/, 'a waiting poll returns the new event');
cmp_ok(time() - $t0, '<', 30, 'it returns when the append commits, not at its timeout');
$b->{stdout} = '';

# LISTEN: one notification per appending transaction, whatever its size.
my $channel = $node->safe_psql('postgres', "SELECT event_log.channel('orders')");
my $l = $node->background_psql('postgres');
$l->query_safe("LISTEN $channel");
$node->safe_psql('postgres', q{
	BEGIN;
	INSERT INTO orders (key, type, payload)
	SELECT 'batch-' || i, 'Placed', '{}' FROM generate_series(1, 50) i;
	SELECT event_log.append('orders', 'single', 'Placed', '{}');
	COMMIT;
});
$node->safe_psql('postgres', "INSERT INTO orders (key, type, payload) VALUES ('x', 'Placed', '{}')");
my $notes = $l->query_safe('SELECT 1');
my @got = ($notes =~ /Asynchronous notification "\Q$channel\E"/g);
# psql reports notifications it reads with the next command's result.
is(scalar(@got), 2, 'one notification per appending transaction');
$l->quit;

# Offsets are durable: they survive a restart, and a new member resumes there.
my $before = $node->safe_psql('postgres', q{
	SELECT string_agg(shard || ':' || committed_seq, ' ' ORDER BY shard)
	FROM event_log.consumer_lag WHERE group_name = 'g'});
$b->quit;
$node->restart;
my $after = $node->safe_psql('postgres', q{
	SELECT string_agg(shard || ':' || event_log.committed_offset('g', 'orders', shard), ' '
	                  ORDER BY shard)
	FROM generate_series(0, 3) shard});
is($after, $before, 'committed offsets survive a restart');
my $resumed = $node->safe_psql('postgres', q{
	SELECT count(*) = (SELECT count(*) FROM orders) - (SELECT sum(committed_seq) FROM event_log.consumer_offsets)
	       AND min(seq) FILTER (WHERE shard = 0) = event_log.committed_offset('g', 'orders', 0) + 1
	FROM event_log.poll('g', 'orders', 1000, member => 'd')});
is($resumed, 't', 'a new member resumes after the committed offsets');

$node->stop;
done_testing();
