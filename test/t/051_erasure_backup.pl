# A base backup taken right after an erasure holds neither the erased
# subject's key nor its personal values, with no VACUUM, WAL switch or
# CHECKPOINT run by anyone (docs/erasure.md, docs/design/erasure.md,
# "Shredding the key").  The subject's key is read before the erasure, as
# superuser, to know the bytes to look for; the key's page has seen
# pruning and earlier erasures, and a checkpoint just before the erasure
# makes its DELETE log a full-page image of the page with the key in it.
# Appends of other subjects run throughout, and a transaction that took
# the victim's key holds the erasure until it commits: nothing is appended
# under the key once it is erased.  The backup, restored, reads the victim
# as erased and everyone else in clear.  An erasure rolled back, whole or
# to a savepoint, shreds nothing.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EventLogTest;
use File::Find;
use Time::HiRes qw(usleep);

my $node = new_node('erasure_backup', logical => 1,
	conf => "autovacuum = off\nmax_prepared_transactions = 5\n");
my $victim = 'victim-bkp@example.org';
my @values = ($victim, 'Vera Bkpname', '203.0.113.99');

$node->safe_psql('postgres', q{
	CREATE EXTENSION event_log;
	CREATE EXTENSION pageinspect;
	SELECT event_log.create_stream('people', 4);
	SELECT event_log.declare_personal('people', '{user,name,ip}', 'user');
	INSERT INTO people (key, type, payload)
	SELECT 'o-' || i, 'Seen', jsonb_build_object('user', 'early' || i || '@example.org',
		'name', 'Early ' || i, 'n', i) FROM generate_series(1, 30) i;
});
$node->safe_psql('postgres', qq{
	INSERT INTO people (key, type, payload)
	SELECT 'p-' || i, 'Seen', jsonb_build_object('user', '$victim', 'name', 'Vera Bkpname',
		'ip', '203.0.113.99', 'n', i) FROM generate_series(1, 20) i;
});
# Earlier erasures, then a VACUUM: the page is pruned and compacted, which
# can move the victim's row and leave a stale copy of it in the free space.
$node->safe_psql('postgres', q{
	SELECT event_log.erase_subject('people', 'early' || i || '@example.org', 'earlier')
	FROM generate_series(1, 10) i;
});
# ANALYZE, which would keep sample keys in pg_statistic if the column's
# statistics were gathered.
$node->safe_psql('postgres', 'VACUUM ANALYZE event_log.subject_keys');

my $key_hex = $node->safe_psql('postgres', qq{
	SELECT encode(k.key, 'hex') FROM event_log.subject_keys k
	WHERE k.subject = decode(event_log.subject_id('people', '$victim'), 'hex')});
like($key_hex, qr/^[0-9a-f]{64}$/, 'the victim has a key');
my $key_bin = pack('H*', $key_hex);
my $in_pages = qq{
	SELECT count(*) FROM generate_series(0, pg_relation_size('event_log.subject_keys') / 8192 - 1) b
	WHERE position('\\x$key_hex'::bytea IN get_raw_page('event_log.subject_keys', b::int)) > 0};
is($node->safe_psql('postgres', $in_pages), '1', 'the key is in the table\'s pages');

# An erasure rolled back, whole or to a savepoint, leaves the key whole.
$node->safe_psql('postgres', qq{
	BEGIN;
	SELECT event_log.erase_subject('people', '$victim', 'rolled back');
	ROLLBACK;
	BEGIN;
	SAVEPOINT s;
	SELECT event_log.erase_subject('people', '$victim', 'rolled back');
	ROLLBACK TO s;
	COMMIT;
});
is($node->safe_psql('postgres', $in_pages), '1', 'an erasure rolled back shreds nothing');
is($node->safe_psql('postgres', q{
	SELECT payload->>'name' FROM event_log.replay('people', 'p-1')}),
	'Vera Bkpname', 'and the victim still reads in clear');

# Appenders of other subjects run throughout.
my $script = write_script($node, 'others', q{
\set u random(1, 50)
SELECT event_log.append('people', 'x-' || :u, 'Seen',
	jsonb_build_object('user', 'user' || :u || '@example.org', 'name', 'Other ' || :u, 'n', :u));
});
my ($out, $err) = ('', '');
my $bench = start_pgbench($node, [ '-c', '2', '-T', '5', '-R', '100', '-f', $script ], \$out, \$err);

# A transaction with an old snapshot, open until after the backup: no
# pruning removes the erased row version from its page meanwhile.
my $holder = $node->background_psql('postgres');
$holder->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM people');

# A checkpoint now: the first change to the key's page after it (the lock
# of the transaction below, or the erasure's DELETE) carries a full-page
# image of the page with the key in its WAL record.
$node->safe_psql('postgres', 'CHECKPOINT');

# A transaction that took the victim's key: the erasure waits for it.
my $late = $node->background_psql('postgres');
$late->query_safe(qq{BEGIN; INSERT INTO people (key, type, payload) VALUES
	('p-late', 'Seen', '{"user": "$victim", "name": "Vera Bkpname", "n": 0}')});
my ($eraser, $waited) = start_blocked_query($node,
	qq{SELECT event_log.erase_subject('people', '$victim', 'ticket GDPR-2');});
ok($waited, 'the erasure waits for the transaction appending with the key');
$late->query_safe(qq{INSERT INTO people (key, type, payload) VALUES
	('p-late', 'Seen', '{"user": "$victim", "name": "Vera Bkpname", "n": 1}')});
$late->query_safe('COMMIT');
$late->quit;
$eraser->quit;
is($node->safe_psql('postgres', qq{
	SELECT key_destroyed FROM event_log.erasures WHERE reason = 'ticket GDPR-2'}),
	't', 'the erasure committed once the appender had');
ok($bench->finish, 'the concurrent appenders all succeeded') or diag($err);
like($out, qr/number of transactions actually processed: [1-9]/, 'they appended');
check_dense($node, 'people', 'after the erasure');

is($node->safe_psql('postgres', $in_pages), '0', 'no page of the table holds the key any more');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM event_log.read_all('people', max_count => 100000)
	WHERE key LIKE 'p-%' AND payload->'name'->>'$personal' = 'erased'}),
	'22', 'the victim\'s 22 events, both late ones included, read as erased');

# The base backup, right away: pg_basebackup's own checkpoint, nothing else.
$node->backup('after');
$holder->query_safe('COMMIT');
$holder->quit;
my $backup = $node->backup_dir . '/after';
my (@found, $files);
File::Find::find(sub {
	return unless -f $_;
	$files++;
	my $data = slurp_file($_);
	for my $s (@values, $key_bin)
	{
		push @found, $File::Find::name if index($data, $s) >= 0;
	}
}, $backup);
ok($files > 100, "the backup has its files ($files)");
ok(-d "$backup/pg_wal" && glob("$backup/pg_wal/0*"), 'and its WAL');
is(join(', ', @found), '', 'no file of the base backup, data or WAL, holds the key or a personal value');

# The backup restored: the victim erased, the others in clear.
my $restored = PostgreSQL::Test::Cluster->new('restored');
$restored->init_from_backup($node, 'after');
$restored->start;
is($restored->safe_psql('postgres', q{
	SELECT count(*) FILTER (WHERE payload->'name'->>'$personal' = 'erased') || ' ' ||
	       count(*) FILTER (WHERE payload->>'name' LIKE 'Other %')
	FROM event_log.read_all('people', max_count => 100000)
	WHERE key LIKE 'p-%' OR key LIKE 'x-%'}),
	'22 ' . $node->safe_psql('postgres',
		q{SELECT count(*) FROM people WHERE key LIKE 'x-%'}),
	'the restored backup reads the victim as erased, the others in clear');
is($restored->safe_psql('postgres', 'SELECT count(*) FROM event_log.subject_keys'),
	$node->safe_psql('postgres', 'SELECT count(*) FROM event_log.subject_keys'),
	'and has the other keys');
$restored->stop;

# A prepared transaction cannot erase: its commit would shred in another
# session.
my ($stdout, $stderr);
$node->psql('postgres', q{
	BEGIN;
	SELECT event_log.erase_subject('people', 'user1@example.org', 'prepared');
	PREPARE TRANSACTION 'e';
}, stdout => \$stdout, stderr => \$stderr);
like($stderr, qr/cannot prepare a transaction that erased a subject/, 'PREPARE TRANSACTION is refused');

$node->stop;
done_testing();
