# Consumer group members whose client goes away, and member names reused:
#  - a client killed while its poll(wait => ...) waits ends its session at
#    once (the backend notices the closed connection), so its member lock
#    and shards go to another member within seconds, not after the wait or
#    the lease;
#  - a member name taken over by a new session names that session: the
#    consumer_members row's pid, and the EL005 detail given to a third
#    session while the new one waits in an open transaction;
#  - a hung member (alive, out of lease) whose name a new session takes
#    over is refused with EL005 when it polls again, instead of acting as
#    the same member as the new session.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use EventLogTest;

my $node = new_node('dead_client');
$node->safe_psql('postgres', q{
	CREATE EXTENSION event_log;
	SELECT event_log.create_stream('public.jobs', 2);
	INSERT INTO jobs (key, type, payload)
	SELECT 'job-' || i, 'Queued', '{}' FROM generate_series(1, 10) i;
});

# a takes both shards, catches up, and waits an hour for new events.
my $a = $node->background_psql('postgres');
my $a_pid = $a->query_safe('SELECT pg_backend_pid()');
is(poll_shards($a, 'jobs', 'a'), '0,1', 'a holds both shards');
$a->query_safe(q{
	SELECT event_log.commit_offset('g', 'jobs', shard, max(seq), member => 'a')
	FROM event_log.poll('g', 'jobs', 1000, member => 'a') GROUP BY shard});
start_query($a,
	"SELECT count(*) FROM event_log.poll('g', 'jobs', member => 'a', wait => '1 hour');");
$node->poll_query_until('postgres', qq{
	SELECT count(*) > 0 FROM pg_locks
	WHERE locktype = 'advisory' AND objsubid = 17751 AND pid = $a_pid})
  or die 'the poll is not waiting';

# Kill a's client (psql) with SIGKILL: the kernel closes its connection.
my $t0 = time();
$a->{run}->signal('KILL');
eval { $a->{run}->finish; };

$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $a_pid")
  or die 'the backend of the killed client is still there';
my $gone = time() - $t0;
cmp_ok($gone, '<', 10, 'the backend of a client killed in poll(wait) ends at once');
like(slurp_file($node->logfile), qr/connection to client lost/,
	'it ends because its client is gone');

# b gets a's shards at its next poll: a's member lock went with its session.
my $b = $node->background_psql('postgres');
my $got = '';
while (time() - $t0 < 60)
{
	poll_shards($b, 'jobs', 'b');
	$got = $b->query_safe(q{
		SELECT coalesce(string_agg(shard::text, ',' ORDER BY shard), '')
		FROM event_log.consumer_lag WHERE group_name = 'g' AND member = 'b'});
	last if $got eq '0,1';
	select(undef, undef, undef, 0.2);
}
is($got, '0,1', 'another member takes the dead member\'s shards');
cmp_ok(time() - $t0, '<', 10,
	'within seconds, not after the wait (1 hour) or the lease (30 s)');

# A new session reuses the name a.  It waits in poll(wait), so its change to
# a's member row is not committed yet; a third session is told which backend
# really holds the member, not the dead one that the row still names.
my $c = $node->background_psql('postgres');
my $c_pid = $c->query_safe('SELECT pg_backend_pid()');
start_query($c,
	"SELECT 'c done', count(*) FROM event_log.poll('g', 'jobs', member => 'a', wait => '3s');");
$node->poll_query_until('postgres', qq{
	SELECT count(*) > 0 FROM pg_locks
	WHERE locktype = 'advisory' AND objsubid = 17751 AND pid = $c_pid})
  or die 'the poll of c is not waiting';
my ($ret, $out, $err) = $node->psql('postgres',
	"SELECT count(*) FROM event_log.poll('g', 'jobs', member => 'a')",
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/EL005/, 'a member name in use by a live session is refused');
like($err, qr/Backend $c_pid holds the member's lock/,
	'the error names the backend that holds the member now');
$c->{run}->pump until $c->{stdout} =~ /c done/;
is($node->safe_psql('postgres', q{
	SELECT pid FROM event_log.consumer_members WHERE member = 'a'}),
	$c_pid, 'consumer_members names the session that took the name over');

# A hung member: h stops polling but stays connected; its lease runs out and
# k takes its name over.  The row names k, with a lock of k's own, and h is
# refused when it comes back instead of acting as the same member as k.
my $h = $node->background_psql('postgres', on_error_stop => 0);
my $k = $node->background_psql('postgres');
my $k_pid = $k->query_safe('SELECT pg_backend_pid()');
$h->query_safe("SET event_log.lease_timeout = '300ms'");
$h->query_safe("SELECT count(*) FROM event_log.poll('g', 'jobs', member => 'h')");
my $old_lock = $node->safe_psql('postgres',
	"SELECT lock_id FROM event_log.consumer_members WHERE member = 'h'");
select(undef, undef, undef, 0.6);
$k->query_safe("SELECT count(*) FROM event_log.poll('g', 'jobs', member => 'h')");
is($node->safe_psql('postgres', q{
	SELECT pid FROM event_log.consumer_members WHERE member = 'h'}),
	$k_pid, 'a hung member\'s name taken over names the new session');
isnt($node->safe_psql('postgres',
	"SELECT lock_id FROM event_log.consumer_members WHERE member = 'h'"),
	$old_lock, 'with a member lock of its own');
$h->query("SELECT count(*) FROM event_log.poll('g', 'jobs', member => 'h')");
like($h->{stderr}, qr/member "h" of consumer group "g" is in use by another session/,
	'the hung session is refused when it polls again');

$b->quit;
$h->quit;
$k->quit;
$c->quit;
$node->stop;
done_testing();
