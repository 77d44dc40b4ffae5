# Backup and restore (issue 14): a database with streams, projections and
# consumer groups, dumped in the three formats (plain into psql, -Fc into
# pg_restore, -Fd into pg_restore -j 4), comes back into an empty database
# with every event identical, appends going on at the next seq and version,
# and the restored stream exactly as guarded as the original, for its owner.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EventLogTest;

my $node = new_node('dump_restore');
my $bindir = $node->config_data('--bindir');
my $tmp = PostgreSQL::Test::Utils::tempdir;
my ($rc, $out, $err);
my @conn = ('-h', $node->host, '-p', $node->port);

$node->safe_psql('postgres', q{
	CREATE DATABASE src;
	CREATE ROLE app LOGIN;
});
$node->safe_psql('src', q{
	CREATE EXTENSION event_log;
	CREATE SCHEMA shop AUTHORIZATION app;
	SET ROLE app;
	SELECT event_log.create_stream('shop.carts', 4);
	SELECT event_log.create_stream('shop.audit', 1);
	SELECT event_log.create_stream('shop.wide', 7);
	INSERT INTO shop.carts (key, type, payload, metadata)
	SELECT 'cart-' || i % 9, 'ItemAdded', jsonb_build_object('sku', 's' || i, 'qty', i),
	       CASE WHEN i % 3 = 0 THEN jsonb_build_object('i', i) END
	  FROM generate_series(1, 60) i;
	SELECT event_log.append('shop.audit', 'a-' || i, 'Seen', jsonb_build_object('i', i))
	  FROM generate_series(1, 5) i;
	SELECT event_log.create_projection('shop.cart_items', 'shop.carts',
		columns  => 'cart text, sku text, qty int, PRIMARY KEY (cart, sku)',
		handlers => jsonb_build_object('ItemAdded',
			$$INSERT INTO cart_items VALUES (e.key, e.payload->>'sku', (e.payload->>'qty')::int)$$));
	SELECT event_log.create_projection('shop.cart_state', 'shop.carts',
		reducer => $$state || jsonb_build_object('n', coalesce((state->>'n')::int, 0) + 1)$$,
		initial => '{}');
	SELECT event_log.create_projection('shop.cart_count', 'shop.carts', mode => 'async',
		columns  => 'cart text PRIMARY KEY, n int',
		handlers => jsonb_build_object('*',
			$$INSERT INTO cart_count AS c VALUES (e.key, 1)
			  ON CONFLICT (cart) DO UPDATE SET n = c.n + 1$$));
	SELECT event_log.run_projections();
	SELECT event_log.commit_offset('mailer', 'shop.carts', 1, 3);
	SELECT event_log.commit_offset('mailer', 'shop.carts', 2, 2);
});
# COPY is an append too; then events the async projection has not seen yet.
$node->safe_psql('src', "SET ROLE app; COPY shop.wide (key, type, payload) FROM STDIN;\n"
	. join('', map { "w-$_\tWide\t{\"n\": $_}\n" } 1 .. 20) . "\\.\n");
$node->safe_psql('src', q{SET ROLE app;
	INSERT INTO shop.carts (key, type, payload) VALUES ('cart-1', 'ItemAdded', '{"sku": "late", "qty": 1}')});

# A checksum of every field of every event of a stream.
sub events_md5
{
	my ($db, $stream) = @_;
	return $node->safe_psql($db, qq{
		SELECT count(*) || ' ' || md5(string_agg(format('%s|%s|%s|%s|%s|%s|%s|%s|%s',
			shard, seq, key, version, type, payload, metadata, event_id, recorded_at),
			',' ORDER BY shard, seq)) FROM $stream});
}

my %before = map { $_ => events_md5('src', $_) } qw(shop.carts shop.audit shop.wide);
my $items_before = $node->safe_psql('src', 'SELECT count(*), sum(qty) FROM shop.cart_items');
my $state_before = $node->safe_psql('src', q{SELECT string_agg(key || version || state::text, ',' ORDER BY key) FROM shop.cart_state});

# The three ways of dumping and restoring.
my %restore = (
	plain => sub {
		my ($db) = @_;
		command_ok([ "$bindir/pg_dump", @conn, '-f', "$tmp/plain.sql", 'src' ], 'plain dump');
		command_ok([ "$bindir/psql", @conn, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', "$tmp/plain.sql", $db ],
			'plain dump restores through psql without an error');
	},
	custom => sub {
		my ($db) = @_;
		command_ok([ "$bindir/pg_dump", @conn, '-Fc', '-f', "$tmp/dump.fc", 'src' ], 'custom dump');
		command_ok([ "$bindir/pg_restore", @conn, '-e', '-d', $db, "$tmp/dump.fc" ],
			'pg_restore of a custom dump succeeds without an error');
	},
	directory => sub {
		my ($db) = @_;
		command_ok([ "$bindir/pg_dump", @conn, '-Fd', '-f', "$tmp/dump.dir", 'src' ], 'directory dump');
		# -j loads the catalog tables in any order: the offsets must not
		# depend on their group's or projection's rows being there first.
		my ($out, $err) = ('', '');
		IPC::Run::run([ "$bindir/pg_restore", @conn, '-j', '4', '-d', $db, "$tmp/dump.dir" ],
			'>', \$out, '2>', \$err);
		unlike($err, qr/event stream|carts|audit|wide|cart_items|cart_state|cart_count|projection|consumer|foreign key/,
			'pg_restore -j 4: no error about streams, projections or consumer groups');
	},
);

for my $format (qw(plain custom directory))
{
	my $db = "dst_$format";
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$restore{$format}->($db);

	for my $stream (sort keys %before)
	{
		is(events_md5($db, $stream), $before{$stream}, "$format: every event of $stream is identical");
		is($node->safe_psql($db, qq{SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef
			WHERE adrelid = '$stream'::regclass AND adnum = 1}),
			"event_log.require_guards('$stream'::regclass)",
			"$format: $stream has its shard default, naming itself");
	}
	is($node->safe_psql($db, 'SELECT count(*), sum(qty) FROM shop.cart_items'), $items_before,
		"$format: the inline projection holds what it held");
	is($node->safe_psql($db, q{SELECT string_agg(key || version || state::text, ',' ORDER BY key) FROM shop.cart_state}),
		$state_before, "$format: the reducer holds every key's state");

	# Appends go on at each shard's next seq and each key's next version,
	# and de-duplication still knows the restored ids.
	my $expect = $node->safe_psql('src', q{
		SELECT event_log.shard_for('cart-1', 4) || '|' || (max(seq) FILTER (WHERE shard = event_log.shard_for('cart-1', 4)) + 1)
		       || '|' || (max(version) FILTER (WHERE key = 'cart-1') + 1) FROM shop.carts});
	is($node->safe_psql($db, q{SET ROLE app;
		SELECT shard || '|' || seq || '|' || version FROM event_log.append('shop.carts', 'cart-1', 'ItemAdded',
			'{"sku": "after", "qty": 2}')}), $expect, "$format: append() goes on at the next seq and version");
	is($node->safe_psql($db, q{SET ROLE app;
		INSERT INTO shop.wide (key, type, payload) VALUES ('w-3', 'Wide', '{}') RETURNING version}),
		'2', "$format: INSERT goes on at the key's next version");
	my $old_id = $node->safe_psql('src', q{SELECT event_id FROM shop.audit WHERE seq = 2});
	is($node->safe_psql($db, qq{SET ROLE app;
		SELECT seq FROM event_log.append('shop.audit', 'a-2', 'Seen', '{"i": 2}', event_id => '$old_id')}),
		'2', "$format: a restored event_id is recognised");
	is($node->safe_psql($db, q{SELECT qty FROM shop.cart_items WHERE sku = 'after'}), '2',
		"$format: the inline projection follows appends");
	is($node->safe_psql($db, q{SELECT state->>'n' FROM shop.cart_state WHERE key = 'cart-1'}),
		$node->safe_psql('src', q{SELECT count(*) + 1 FROM shop.carts WHERE key = 'cart-1'}),
		"$format: the reducer follows appends");

	# The async projection resumes from its checkpoints: the late event and
	# the new one, not the whole stream again.
	is($node->safe_psql($db, 'SELECT event_log.run_projections()'), '2',
		"$format: the async projection resumes from its checkpoints");
	is($node->safe_psql($db, 'SELECT sum(n) FROM shop.cart_count'),
		$node->safe_psql($db, 'SELECT count(*) FROM shop.carts'),
		"$format: the async projection has every event once");

	is($node->safe_psql($db, q{SET ROLE app;
		SELECT event_log.committed_offset('mailer', 'shop.carts', 1) || ','
		    || event_log.committed_offset('mailer', 'shop.carts', 2)}),
		'3,2', "$format: the consumer group keeps its committed offsets");
	is($node->safe_psql($db, q{SET ROLE app;
		SELECT string_agg(shard || ':' || seq, ',' ORDER BY shard, seq) FROM
		(SELECT shard, min(seq) AS seq FROM event_log.poll('mailer', 'shop.carts', 100) GROUP BY shard) p}),
		'0:1,1:4,2:3,3:1', "$format: poll() resumes after the committed offsets");

	# As guarded as the original, for the owner too.
	for my $bad (
		q{UPDATE shop.carts SET type = 'x'},
		q{DELETE FROM shop.carts},
		q{TRUNCATE shop.carts},
		q{ALTER TABLE shop.carts DISABLE TRIGGER event_log_immutable},
		q{ALTER TABLE shop.carts DISABLE TRIGGER event_log_append},
		q{ALTER TABLE shop.carts ENABLE TRIGGER event_log_append},
		q{ALTER TABLE shop.carts ENABLE TRIGGER ALL},
		q{DROP TRIGGER event_log_immutable ON shop.carts},
		q{ALTER TABLE shop.carts DROP CONSTRAINT carts_pkey},
		q{CREATE OR REPLACE TRIGGER event_log_immutable AFTER INSERT ON shop.carts
		  FOR EACH ROW EXECUTE FUNCTION event_log.refuse_change()},
		q{CREATE TRIGGER event_log_projection_1 AFTER INSERT ON shop.carts
		  FOR EACH ROW EXECUTE FUNCTION event_log.project('1')},
		q{DROP TABLE shop.carts})
	{
		($rc, $out, $err) = $node->psql($db, "SET ROLE app; $bad");
		like($err, qr/event stream|cannot drop/, "$format: refused for the owner: " . (split /\n/, $bad)[0]);
	}
	is(events_md5($db, 'shop.audit'), $before{'shop.audit'},
		"$format: a stream only de-duplicated into is unchanged");
	is($node->safe_psql($db, q{SELECT count(*) FROM pg_trigger WHERE tgrelid = 'shop.carts'::regclass
		AND tgname LIKE 'event_log%' AND tgenabled = 'A'}), '4',
		"$format: our four triggers are there, enabled ALWAYS");

	# The projections' own functions work on restored ones.
	is($node->safe_psql($db, q{SET ROLE app; SELECT event_log.rebuild_projection('shop.cart_items')}),
		$node->safe_psql($db, 'SELECT count(*) FROM shop.carts'), "$format: rebuild replays every event");
	$node->safe_psql($db, q{SET ROLE app; SELECT event_log.drop_projection('shop.cart_items')});
	is($node->safe_psql($db, q{SELECT count(*) FROM pg_trigger WHERE tgrelid = 'shop.carts'::regclass
		AND tgname LIKE 'event_log_projection%'}), '1', "$format: drop_projection() drops its restored trigger");
	is($node->safe_psql($db, q{SET ROLE app;
		INSERT INTO shop.carts (key, type, payload) VALUES ('cart-2', 'ItemAdded', '{"sku": "z", "qty": 1}')
		RETURNING version > 1}), 't', "$format: appends go on after the drop");
}

# What a parallel restore may do: the stream's triggers created before the
# catalog's rows are loaded, so no DDL ever sees the restored inline
# triggers on a registered stream.  Done here in a fixed order.
$node->safe_psql('postgres', 'CREATE DATABASE late');
for my $step (['--section=pre-data'], ['--section=data', '-n', 'shop'],
	['--section=post-data'], ['--section=data', '-n', 'event_log'])
{
	command_ok([ "$bindir/pg_restore", @conn, '-e', '-d', 'late', @$step, "$tmp/dump.fc" ],
		"late catalog: pg_restore @$step");
}
is(events_md5('late', 'shop.carts'), $before{'shop.carts'}, 'late catalog: events identical');
$node->safe_psql('late', q{SET ROLE app;
	INSERT INTO shop.carts (key, type, payload) VALUES ('cart-5', 'ItemAdded', '{"sku": "l", "qty": 3}')});
is($node->safe_psql('late', q{SELECT qty FROM shop.cart_items WHERE sku = 'l'}), '3',
	'late catalog: the inline projection follows appends through its unrepaired trigger');
is($node->safe_psql('late', q{SELECT state->>'n' FROM shop.cart_state WHERE key = 'cart-5'}),
	$node->safe_psql('late', q{SELECT count(*) FROM shop.carts WHERE key = 'cart-5'}),
	'late catalog: so does the reducer');
$node->safe_psql('late', q{SET ROLE app; SELECT event_log.drop_projection('shop.cart_state')});
is($node->safe_psql('late', q{SELECT count(*) FROM pg_trigger WHERE tgrelid = 'shop.carts'::regclass
	AND tgname LIKE 'event_log_projection%'}), '1', 'late catalog: drop_projection() finds its trigger');
($rc, $out, $err) = $node->psql('late', 'SET ROLE app; ALTER TABLE shop.carts DISABLE TRIGGER event_log_immutable');
like($err, qr/event stream/, 'late catalog: the stream is guarded');

# A restore interrupted after its data: pre-data (the tables, with the
# default of their shard column) and data (the events and the registry)
# done, post-data (unique indexes, triggers) not.  The streams are
# registered, and every append is refused with an error naming the missing
# trigger and the fix, never PostgreSQL's "null value in column"; after the
# post-data section, everything works and is guarded.
my $pre_data = '';
IPC::Run::run([ "$bindir/pg_restore", '--section=pre-data', '-f', '-', "$tmp/dump.fc" ], '>', \$pre_data);
like($pre_data, qr/shard integer DEFAULT event_log\.require_guards\('shop\.carts'::regclass\) NOT NULL/,
	'the shard default is in pre-data, in CREATE TABLE (a default is analysed once its table exists)');
$node->safe_psql('postgres', 'CREATE DATABASE cut');
for my $step (['--section=pre-data'], ['--section=data'])
{
	command_ok([ "$bindir/pg_restore", @conn, '-e', '-d', 'cut', @$step, "$tmp/dump.fc" ],
		"interrupted: pg_restore @$step");
}
is($node->safe_psql('cut', q{SELECT count(*) FROM event_log.streams}), '3',
	'interrupted: the streams are registered');
for my $append (
	q{INSERT INTO shop.carts (key, type, payload) VALUES ('cart-1', 'ItemAdded', '{}')},
	q{INSERT INTO shop.carts (key, type, payload) SELECT 'k' || i, 'T', '{}' FROM generate_series(1, 3) i},
	"COPY shop.carts (key, type, payload) FROM STDIN;\ncart-1\tItemAdded\t{}\n\\.\n",
	q{SELECT event_log.append('shop.carts', 'cart-1', 'ItemAdded', '{}')},
	q{SELECT event_log.append('shop.carts', 'cart-1', 'ItemAdded', '{}', expected_version => 1)},
	q{SELECT event_log.append('shop.carts', 'cart-1', 'ItemAdded', '{}', event_id => gen_random_uuid())},
	q{SELECT event_log.append_events('shop.carts', 'cart-1', ARRAY[event_log.new_event('ItemAdded', '{}')])})
{
	($rc, $out, $err) = $node->psql('cut', "SET ROLE app; $append");
	like($err, qr/event stream "shop\.carts" is missing its trigger "event_log_append".*HINT:.*pg_restore --section=post-data.*An interrupted restore/s,
		'interrupted: refused, naming the missing trigger and the fix: ' . (split /\n/, $append)[0]);
	unlike($err, qr/null value in column/, 'interrupted: not "null value in column": ' . (split /\n/, $append)[0]);
}
is(events_md5('cut', 'shop.carts'), $before{'shop.carts'}, 'interrupted: nothing was appended');
($rc, $out, $err) = $node->psql('cut', 'SET ROLE app; ALTER TABLE shop.carts ALTER COLUMN shard DROP DEFAULT');
like($err, qr/event stream.*must keep its default/s, 'interrupted: the owner cannot drop the shard default');
command_ok([ "$bindir/pg_restore", @conn, '-e', '-d', 'cut', '--section=post-data', "$tmp/dump.fc" ],
	'interrupted: pg_restore --section=post-data completes it');
is(events_md5('cut', 'shop.carts'), $before{'shop.carts'}, 'completed: events identical');
is($node->safe_psql('cut', q{SET ROLE app;
	SELECT shard || '|' || seq || '|' || version FROM event_log.append('shop.carts', 'cart-1', 'ItemAdded',
		'{"sku": "after", "qty": 2}')}), $node->safe_psql('src', q{
	SELECT event_log.shard_for('cart-1', 4) || '|' || (max(seq) FILTER (WHERE shard = event_log.shard_for('cart-1', 4)) + 1)
	       || '|' || (max(version) FILTER (WHERE key = 'cart-1') + 1) FROM shop.carts}),
	'completed: append() goes on at the next seq and version');
is($node->safe_psql('cut', q{SET ROLE app;
	INSERT INTO shop.carts (key, type, payload) VALUES ('cart-1', 'ItemAdded', '{"sku": "i", "qty": 1}')
	RETURNING version}), $node->safe_psql('src', q{SELECT max(version) + 2 FROM shop.carts WHERE key = 'cart-1'}),
	'completed: INSERT appends');
is($node->safe_psql('cut', q{SELECT count(*) FROM shop.cart_items WHERE sku IN ('after', 'i')}), '2',
	'completed: the inline projection follows appends');
for my $bad (
	q{UPDATE shop.carts SET type = 'x'},
	q{DROP TRIGGER event_log_append ON shop.carts},
	q{ALTER TABLE shop.carts ALTER COLUMN shard DROP DEFAULT},
	q{ALTER TABLE shop.carts ALTER COLUMN shard SET DEFAULT 0})
{
	($rc, $out, $err) = $node->psql('cut', "SET ROLE app; $bad");
	like($err, qr/event stream/, "completed: refused for the owner: $bad");
}

# A stream caught half restored (only a superuser can register one: the
# registry takes rows from its owner alone).  Its owner may add what is
# missing, but nothing that removes or changes a part, and once it is
# complete it is guarded as before.
$node->safe_psql('postgres', 'CREATE DATABASE half');
$node->safe_psql('half', q{
	CREATE EXTENSION event_log;
	CREATE SCHEMA s AUTHORIZATION app;
	CREATE TABLE s.h (shard int NOT NULL, seq bigint NOT NULL, key text NOT NULL,
		version bigint NOT NULL, type text NOT NULL, payload jsonb NOT NULL, metadata jsonb,
		event_id uuid NOT NULL, recorded_at timestamptz NOT NULL);
	ALTER TABLE s.h ALTER COLUMN shard SET DEFAULT event_log.require_guards('s.h');
	ALTER TABLE s.h OWNER TO app;
	INSERT INTO event_log.streams (stream, shards) VALUES ('s.h', 1);
});
($rc, $out, $err) = $node->psql('half', q{SET ROLE app;
	INSERT INTO event_log.streams (stream, shards) VALUES ('s.h', 2)});
like($err, qr/permission denied/, 'a stream owner cannot write the registry');
$node->safe_psql('half', q{SET ROLE app;
	ALTER TABLE ONLY s.h ADD CONSTRAINT h_pkey PRIMARY KEY (shard, seq);
	CREATE UNIQUE INDEX h_event_id ON s.h (event_id);
	CREATE TRIGGER event_log_immutable BEFORE DELETE OR UPDATE OR TRUNCATE ON s.h
		FOR EACH STATEMENT EXECUTE FUNCTION event_log.refuse_change();
	ALTER TABLE s.h ENABLE ALWAYS TRIGGER event_log_immutable;
	CREATE UNIQUE INDEX h_spare ON s.h (key, version);
});
pass('an incomplete stream takes the parts a restore adds');
($rc, $out, $err) = $node->psql('half', q{SET ROLE app; INSERT INTO s.h (key, type, payload) VALUES ('k', 'T', '{}')});
like($err, qr/event stream "s\.h" is missing its trigger "event_log_append"/,
	'incomplete stream: an append names the missing trigger');
for my $bad (
	q{CREATE TRIGGER event_log_append BEFORE INSERT ON s.h FOR EACH ROW
	  EXECUTE FUNCTION event_log.assign_position('2')},
	q{CREATE TRIGGER mine BEFORE INSERT ON s.h FOR EACH ROW EXECUTE FUNCTION event_log.assign_position('1')},
	q{ALTER TABLE s.h DISABLE TRIGGER event_log_immutable},
	q{ALTER TABLE s.h ENABLE TRIGGER ALL},
	q{ALTER TABLE s.h ADD CONSTRAINT again UNIQUE USING INDEX h_spare DEFERRABLE INITIALLY DEFERRED},
	q{DROP INDEX s.h_event_id},
	q{ALTER TABLE s.h ADD COLUMN x int NOT NULL},
	q{ALTER TABLE s.h ALTER COLUMN shard DROP DEFAULT},
	q{ALTER TABLE s.h ALTER COLUMN shard SET DEFAULT NULL},
	q{CREATE RULE r AS ON INSERT TO s.h DO INSTEAD NOTHING})
{
	($rc, $out, $err) = $node->psql('half', "SET ROLE app; $bad");
	like($err, qr/event stream/, 'incomplete stream: refused for the owner: ' . (split /
/, $bad)[0]);
}
$node->safe_psql('half', q{SET ROLE app;
	CREATE TRIGGER event_log_append BEFORE INSERT ON s.h FOR EACH ROW
		EXECUTE FUNCTION event_log.assign_position('1');
	ALTER TABLE s.h ENABLE ALWAYS TRIGGER event_log_append;
	INSERT INTO s.h (key, type, payload) VALUES ('k', 'T', '{}');
});
is($node->safe_psql('half', q{SELECT format('%s%s%s', shard, seq, version) FROM s.h}), '011', 'complete, it appends');
($rc, $out, $err) = $node->psql('half', 'SET ROLE app; DROP INDEX s.h_spare');
like($err, qr/event stream/, 'complete, its parts stay');

# A dump of one schema (pg_dump -n) leaves out the event_log schema, and with
# it the registry: into a database that has the extension, the stream's
# table, events and triggers come back, but it is no stream, and appends
# say so and what to do instead of "null value in column".
command_ok([ "$bindir/pg_dump", @conn, '-Fc', '-n', 'shop', '-f', "$tmp/shop.fc", 'src' ],
	'dump of one schema');
$node->safe_psql('postgres', 'CREATE DATABASE dst_schema');
$node->safe_psql('dst_schema', 'CREATE EXTENSION event_log');
IPC::Run::run([ "$bindir/pg_restore", @conn, '-d', 'dst_schema', "$tmp/shop.fc" ], '>', \$out, '2>', \$err);
is(events_md5('dst_schema', 'shop.carts'), $before{'shop.carts'},
	'-n: the events come back identical');
($rc, $out, $err) = $node->psql('dst_schema', q{INSERT INTO shop.carts (key, type, payload) VALUES ('k', 'T', '{}')});
like($err, qr/"carts" is not a registered event stream.*pg_dump -n.*Restore a dump of the whole database/s,
	'-n: an append names the missing registry and the fix');

done_testing();
