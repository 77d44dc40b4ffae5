# A nacked event handed back by retry_nacked() is delivered again until the
# group commits it, as any event after a committed offset is: a consumer
# that auto-commits and dies while it processes a retried event gets it
# back from its next poll, and so does one after a server crash.  Only the
# commit that covers it (the next poll(auto_commit => true), commit_polled()
# or commit_offset() at or past its seq) takes it off the dead letter list.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EventLogTest;

my $node = new_node('nack_retry_crash');
$node->safe_psql('postgres', q{
	CREATE EXTENSION event_log;
	SELECT event_log.create_stream('public.mail', 1);
	INSERT INTO mail (key, type, payload)
	SELECT k, 'Send', '{}' FROM unnest(ARRAY['a', 'b', 'c']) k;
	-- The group processed all three, but b failed: it is nacked and the
	-- offset moved past it.  Then the cause is fixed, and b retried.
	SELECT event_log.commit_offset('mailer', 'mail', 0, 3, member => 'm1');
	SELECT event_log.nack('mailer', 'mail', 0, 2, 'smtp down');
	SELECT event_log.retry_nacked('mailer', 'mail');
});

my $in_list = q{SELECT state || ' ' || attempts FROM event_log.dead_letters
	WHERE group_name = 'mailer' AND seq = 2};
my $poll = q{SELECT coalesce(string_agg(key, ',' ORDER BY seq), '')
	FROM event_log.poll('mailer', 'mail', member => 'm1', auto_commit => true)};

# A consumer that auto-commits polls the retried event, in a transaction of
# its own that commits, and its client is killed while it processes it.
my $c1 = $node->background_psql('postgres');
my $c1_pid = $c1->query_safe('SELECT pg_backend_pid()');
is($c1->query_safe($poll), 'b', 'the poll delivers the retried event');
is($node->safe_psql('postgres', $in_list), 'retry 1',
	'delivered, it stays on the list until it is committed');
$c1->{run}->signal('KILL');
eval { $c1->{run}->finish; };
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $c1_pid")
  or die 'the backend of the killed client is still there';

# The consumer starts again, as the same member: it gets the event back.
my $c2 = $node->background_psql('postgres');
is($c2->query_safe($poll), 'b',
	'after the consumer died, its next poll delivers the retried event again');

# The server crashes before the consumer's next poll: still there after.
$node->stop('immediate');
$node->start;
is($node->safe_psql('postgres', $in_list), 'retry 1',
	'a crash of the server keeps it to retry');
$c2 = $node->background_psql('postgres');
is($c2->query_safe($poll), 'b', 'and the first poll after the crash delivers it');

# The next poll with auto-commit commits it: it leaves the list, recorded
# once as retried, and is not delivered again.
is($c2->query_safe($poll), '', 'the next auto-committing poll delivers nothing more');
is($node->safe_psql('postgres', $in_list), '', 'and took it off the list');
is($node->safe_psql('postgres', q{SELECT string_agg(action || ' ' || seq, ',')
	FROM event_log.dead_letter_log WHERE group_name = 'mailer'}),
	'retried 2', 'recorded once, as retried');

# Without auto-commit: delivered by every poll until commit_polled(), or
# commit_offset() of its seq (below the offset, which stays where it is).
$node->safe_psql('postgres', q{
	SELECT event_log.nack('mailer', 'mail', 0, 2, 'smtp down again');
	SELECT event_log.nack('mailer', 'mail', 0, 1, 'smtp down again');
	SELECT event_log.retry_nacked('mailer', 'mail');
});
my $plain = q{SELECT coalesce(string_agg(key, ',' ORDER BY seq), '')
	FROM event_log.poll('mailer', 'mail', member => 'm1')};
is($c2->query_safe($plain), 'a,b', 'a poll without auto-commit delivers both');
is($c2->query_safe($plain), 'a,b', 'and so does the next one');
$c2->query_safe(q{SELECT event_log.commit_offset('mailer', 'mail', 0, 1, member => 'm1')});
is($node->safe_psql('postgres', q{SELECT string_agg(key || ' ' || state, ',' ORDER BY seq)
	FROM event_log.dead_letters WHERE group_name = 'mailer'}),
	'b retry', 'commit_offset() of seq 1 commits a, not b');
is($node->safe_psql('postgres',
	q{SELECT event_log.committed_offset('mailer', 'mail', 0)}),
	'3', 'and leaves the offset where it was');
is($c2->query_safe($plain), 'b', 'the next poll delivers b');
is($c2->query_safe(q{SELECT event_log.commit_polled('mailer', 'mail', member => 'm1')}),
	'0', 'commit_polled() moves no offset');
is($node->safe_psql('postgres', $in_list), '', 'but commits b');
is($c2->query_safe($plain), '', 'which is not delivered again');

# A retried event nacked again before the commit stays, parked.
$node->safe_psql('postgres', q{
	SELECT event_log.nack('mailer', 'mail', 0, 2, 'smtp down once more');
	SELECT event_log.retry_nacked('mailer', 'mail');
});
is($c2->query_safe($poll), 'b', 'delivered once more');
$c2->query_safe(q{SELECT event_log.nack('mailer', 'mail', 0, 2, 'still failing')});
is($c2->query_safe($poll), '', 'the next poll commits what it delivered');
is($node->safe_psql('postgres', $in_list), 'parked 2',
	'but b, nacked again meanwhile, stays parked');

$c2->quit;
$node->stop;
done_testing();
