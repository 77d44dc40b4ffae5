# Erasure of personal data under concurrent appends, then a search of every
# place the product keeps data for the erased values: the stream (plain
# SELECT, read(), replay(), read_all(), poll()), an inline projection, the
# CDC output, a pg_dump taken afterwards and a base backup taken afterwards
# (docs/erasure.md).  An append that took the subject's key before the
# erasure holds the erasure until it commits, and is erased with the rest.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EventLogTest;
use File::Find;

my $node = new_node('erasure', logical => 1);
my $bindir = $node->config_data('--bindir');
my $tmp = PostgreSQL::Test::Utils::tempdir;
my @conn = ('-h', $node->host, '-p', $node->port);

# The erased subject is an e-mail address, itself declared personal.
my $victim = 'victim-zqx@example.org';
my @secrets = ($victim, 'Vicky Zqxname', '198.51.100.77');

$node->safe_psql('postgres', q{
	CREATE EXTENSION event_log;
	SELECT event_log.create_stream('people', 4);
	SELECT event_log.declare_personal('people', '{user,name,ip}', 'user');
	SELECT 'slot' FROM pg_create_logical_replication_slot('erasure_cdc', 'event_log');
	SELECT event_log.create_projection('people_names', 'people',
		columns  => 'key text PRIMARY KEY, name jsonb',
		handlers => jsonb_build_object('Seen', $$
			INSERT INTO people_names AS p (key, name) VALUES (e.key, e.payload->'name')
			ON CONFLICT (key) DO UPDATE SET name = excluded.name $$));
});
$node->safe_psql('postgres', qq{
	INSERT INTO people (key, type, payload)
	SELECT 'p-' || i, 'Seen', jsonb_build_object('user', '$victim', 'name', 'Vicky Zqxname',
		'ip', '198.51.100.77', 'n', i) FROM generate_series(1, 20) i;
});
my $key_hex = $node->safe_psql('postgres',
	q{SELECT encode(key, 'hex') FROM event_log.subject_keys});
like($key_hex, qr/^[0-9a-f]{64}$/, 'the subject has one key');

# Appenders of other subjects run throughout.
my $script = write_script($node, 'others', q{
\set u random(1, 50)
SELECT event_log.append('people', 'o-' || :u, 'Seen',
	jsonb_build_object('user', 'user' || :u || '@example.org', 'name', 'Other ' || :u, 'n', :u));
});
my ($out, $err) = ('', '');
my $bench = start_pgbench($node, [ '-c', '3', '-T', '4', '-f', $script ], \$out, \$err);

# A transaction that took the victim's key before the erasure: the erasure
# waits for it to commit, and its events are erased with the rest.
my $late = $node->background_psql('postgres');
$late->query_safe(qq{BEGIN; INSERT INTO people (key, type, payload) VALUES
	('p-late', 'Seen', '{"user": "$victim", "name": "Vicky Zqxname", "n": 0}')});

sleep 1;
my ($eraser, $waited) = start_blocked_query($node,
	qq{SELECT event_log.erase_subject('people', '$victim', 'ticket GDPR-1');});
ok($waited, 'the erasure waits for the transaction appending with the key');
$late->query_safe('COMMIT');
$late->quit;
$eraser->quit;
is($node->safe_psql('postgres', q{
	SELECT key_destroyed FROM event_log.erasures WHERE reason = 'ticket GDPR-1'}),
	't', 'erase_subject() destroys the key while appends run');
ok($bench->finish, 'the concurrent appenders all succeeded') or diag($err);
like($out, qr/number of transactions actually processed: [1-9]/, 'they appended');
check_dense($node, 'people', 'after the erasure');

# Every place, read as the owner (who may read personal fields).
my %places = (
	'plain SELECT' => 'SELECT payload::text FROM people',
	'reveal()'     => q{SELECT event_log.reveal('people', payload)::text FROM people},
	'read()'       => q{SELECT payload::text FROM generate_series(0, 3) s,
	                     LATERAL event_log.read('people', s, 0, 100000)},
	'replay()'     => q{SELECT payload::text FROM event_log.replay('people', 'p-late')
	                     UNION ALL SELECT payload::text FROM event_log.replay('people', 'p-1')},
	'read_all()'   => q{SELECT payload::text FROM event_log.read_all('people', max_count => 100000)},
	'poll()'       => q{SELECT payload::text FROM event_log.poll('g', 'people', 100000)},
	'projection'   => q{SELECT name::text FROM people_names},
	'CDC'          => q{SELECT data FROM pg_logical_slot_peek_changes('erasure_cdc', NULL, NULL)},
);
for my $place (sort keys %places)
{
	my $text = $node->safe_psql('postgres', $places{$place});
	isnt($text, '', "$place returns rows");
	for my $s (@secrets, $key_hex)
	{
		unlike($text, qr/\Q$s\E/, "$place holds no \"$s\"");
	}
}
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM event_log.read_all('people', max_count => 100000)
	WHERE key LIKE 'p-%' AND payload->'name'->>'$personal' = 'erased'}),
	'21', 'the victim\'s 21 events, the late one included, read as erased');
like($node->safe_psql('postgres', q{
	SELECT payload->>'name' FROM event_log.read_all('people', max_count => 100000)
	WHERE key LIKE 'o-%' LIMIT 1}), qr/^Other \d+$/, 'other subjects read in clear');
like($node->safe_psql('postgres', q[
	SELECT data FROM pg_logical_slot_peek_changes('erasure_cdc', NULL, NULL)
	WHERE data LIKE '{"erasure"%']),
	qr/^\{"erasure":\{"stream":"public.people","subject":"[0-9a-f]{64}","erased_at":"[^"]+"\}\}$/,
	'CDC consumers are told of the erasure');

# A dump taken afterwards.
command_ok([ "$bindir/pg_dump", @conn, '-f', "$tmp/dump.sql", 'postgres' ], 'pg_dump after the erasure');
my $dump = slurp_file("$tmp/dump.sql");
like($dump, qr/subject_keys/, 'the dump has the keys of other subjects');
for my $s (@secrets, $key_hex)
{
	unlike($dump, qr/\Q$s\E/, "the dump holds no \"$s\"");
}

# A base backup taken afterwards, once the key's old row versions are gone
# (VACUUM FULL) and WAL has moved to a new segment (docs/erasure.md).
$node->safe_psql('postgres', 'VACUUM FULL event_log.subject_keys');
$node->safe_psql('postgres', 'SELECT pg_switch_wal()');
$node->safe_psql('postgres', 'CHECKPOINT');
command_ok([ "$bindir/pg_basebackup", @conn, '-D', "$tmp/backup", '-X', 'stream' ],
	'pg_basebackup after the erasure');
my $key_bin = pack('H*', $key_hex);
my @found;
File::Find::find(sub {
	return unless -f $_;
	my $data = slurp_file($_);
	for my $s (@secrets, $key_bin)
	{
		push @found, $File::Find::name if index($data, $s) >= 0;
	}
}, "$tmp/backup");
is(join(', ', @found), '', 'no file of the base backup holds the key or a personal value');

$node->safe_psql('postgres', q{SELECT pg_drop_replication_slot('erasure_cdc')});
$node->stop;
done_testing();
