# Upgrade in place: a database filled under version 0.1 is updated with
# ALTER EXTENSION event_log UPDATE, keeps its data, works, and ends with the
# same catalog as a fresh install of the current version.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EventLogTest;

my $node = new_node('upgrade');
my ($rc, $out, $err);
$node->safe_psql('postgres', 'CREATE DATABASE old_db');
$node->safe_psql('postgres', 'CREATE DATABASE fresh_db');

# Fill a 0.1 database with one of everything.
$node->safe_psql('old_db', q{
	CREATE EXTENSION event_log VERSION '0.1';
	SELECT event_log.create_stream('public.carts', 2);
	INSERT INTO carts (key, type, payload)
	SELECT 'cart-' || i % 5, 'ItemAdded', jsonb_build_object('n', i) FROM generate_series(1, 20) i;
	SELECT event_log.create_projection('cart_state', 'carts',
		reducer => $$CASE WHEN e.type = 'ItemAdded'
		             THEN jsonb_build_object('n', coalesce((state->>'n')::int, 0) + 1) END$$,
		initial => '{}');
	SELECT event_log.create_projection('cart_log', 'carts',
		columns  => 'key text, seq bigint',
		handlers => jsonb_build_object('*', 'INSERT INTO cart_log VALUES (e.key, e.seq)'),
		mode     => 'async');
	SELECT count(*) FROM event_log.poll('mailer', 'carts', 5);
});
is($node->safe_psql('old_db',
		q{SELECT extversion FROM pg_extension WHERE extname = 'event_log'}),
	'0.1', 'installed at 0.1');

# The new library on the 0.1 catalog, before the update: a new stream has
# no shard default (0.1 has no event_log.require_guards()), takes appends
# and the DDL a stream's owner may run.
$node->safe_psql('old_db', q{
	SELECT event_log.create_stream('public.notes', 1);
	ALTER TABLE notes ADD COLUMN note text;
	INSERT INTO notes (key, type, payload, note) VALUES ('n', 'Noted', '{}', 'before');
});
is($node->safe_psql('old_db', q{SELECT count(*) FROM pg_attrdef WHERE adrelid = 'notes'::regclass}),
	'0', 'before the update, a new stream has no shard default');

$node->safe_psql('old_db', 'ALTER EXTENSION event_log UPDATE');
is($node->safe_psql('old_db',
		q{SELECT extversion FROM pg_extension WHERE extname = 'event_log'}),
	'0.8', 'updated to the current version, 0.8');

# Data and behaviour survive.
is($node->safe_psql('old_db', 'SELECT count(*) FROM carts'), '20', 'events kept');
# 0.4: every existing stream is 'serial'; its owner can make it 'grouped'.
is($node->safe_psql('old_db', q{SELECT string_agg(DISTINCT commit_mode, ',') FROM event_log.streams}),
	'serial', 'the 0.4 update makes every existing stream serial');
for my $stream (qw(carts notes))
{
	is($node->safe_psql('old_db', qq{SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef
		WHERE adrelid = '$stream'::regclass AND adnum = 1}),
		"event_log.require_guards('$stream'::regclass)",
		"the update gives existing stream $stream its shard default");
}
is($node->safe_psql('old_db', q{
	INSERT INTO notes (key, type, payload) VALUES ('n', 'Noted', '{}') RETURNING shard || '|' || seq || '|' || version}),
	'0|2|2', 'a stream made before the update appends after it');
($rc, $out, $err) = $node->psql('old_db', 'ALTER TABLE notes ALTER COLUMN shard DROP DEFAULT');
like($err, qr/must keep its default/, 'after the update, the guard keeps the default');
is($node->safe_psql('old_db', q{
	SELECT event_log.alter_stream('notes', commit_mode => 'grouped');
	INSERT INTO notes (key, type, payload) VALUES ('n', 'Noted', '{}') RETURNING seq || '|' || version;
	SELECT event_log.alter_stream('notes', commit_mode => 'serial');
}), "notes\n3|3\nnotes", 'an updated stream appends in grouped mode');
$node->safe_psql('old_db', q{
	INSERT INTO carts (key, type, payload) VALUES ('cart-1', 'ItemAdded', '{}');
	SELECT event_log.run_projections();
});
is($node->safe_psql('old_db', q{SELECT state->>'n' FROM cart_state WHERE key = 'cart-1'}),
	'5', 'the state projection goes on from its 0.1 state');
is($node->safe_psql('old_db', 'SELECT count(*) FROM cart_log'), '21',
	'the async projection catches up');
($rc, $out, $err) = $node->psql('old_db',
	q{INSERT INTO carts (key, type, payload) VALUES ('cart-1', 'Other', '{}')});
like($err, qr/reducer returned null/,
	'a 0.1 state projection gets the 0.2 null check after the update');
$node->safe_psql('old_db', q{SELECT event_log.commit_offset('mailer', 'carts', 0, 1)});
is($node->safe_psql('old_db', q{SELECT event_log.committed_offset('mailer', 'carts', 0)}),
	'1', 'consumer groups work');

# The catalog matches a fresh install: every member object of the
# extension, with its definition, privileges and settings.
$node->safe_psql('fresh_db', 'CREATE EXTENSION event_log');
my $describe = q{
	SELECT pg_describe_object(d.classid, d.objid, d.objsubid) || ' => ' ||
	  CASE d.classid
	    WHEN 'pg_proc'::regclass THEN
	      (SELECT pg_get_functiondef(p.oid) || coalesce(array_to_string(p.proacl, ','), '')
	         FROM pg_proc p WHERE p.oid = d.objid)
	    WHEN 'pg_class'::regclass THEN
	      (SELECT c.relkind::text || ' ' || coalesce(array_to_string(c.relacl, ','), '') || ' ' ||
	              CASE WHEN c.relkind = 'v' THEN pg_get_viewdef(c.oid) ELSE '' END || ' ' ||
	              coalesce((SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
	                                          || ' ' || a.attnotnull::text || ' '
	                                          || a.attstattarget::text || ' '
	                                          || coalesce(array_to_string(a.attacl, ','), ''),
	                                          ', ' ORDER BY a.attnum)
	                          FROM pg_attribute a
	                         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '') || ' ' ||
	              coalesce((SELECT string_agg(pg_get_constraintdef(k.oid), '; ' ORDER BY k.conname)
	                          FROM pg_constraint k WHERE k.conrelid = c.oid), '') || ' ' ||
	              coalesce((SELECT string_agg(pg_get_indexdef(i.indexrelid), '; '
	                                          ORDER BY pg_get_indexdef(i.indexrelid))
	                          FROM pg_index i WHERE i.indrelid = c.oid), '')
	         FROM pg_class c WHERE c.oid = d.objid)
	    WHEN 'pg_event_trigger'::regclass THEN
	      (SELECT e.evtevent || ' ' || e.evtenabled::text || ' ' || e.evtfoid::regproc::text
	         FROM pg_event_trigger e WHERE e.oid = d.objid)
	    ELSE ''
	  END
	  FROM pg_depend d
	 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
	   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'event_log')
	 ORDER BY 1;
};
my $old = $node->safe_psql('old_db', $describe);
my $fresh = $node->safe_psql('fresh_db', $describe);
isnt($fresh, '', 'the description lists the extension\'s objects');
is($old, $fresh, 'the updated catalog matches a fresh install');
is($node->safe_psql('old_db', q{
		SELECT array_to_string(extconfig::regclass[], ',') FROM pg_extension WHERE extname = 'event_log'}),
	$node->safe_psql('fresh_db', q{
		SELECT array_to_string(extconfig::regclass[], ',') FROM pg_extension WHERE extname = 'event_log'}),
	'the same tables are dumped with the extension');

# read() and poll() are created again by the 0.3 update (a new argument):
# what a DBA granted or revoked on them stays.
$node->safe_psql('postgres', 'CREATE DATABASE acl_db');
$node->safe_psql('acl_db', q{
	CREATE EXTENSION event_log VERSION '0.1';
	CREATE ROLE acl_reader;
	CREATE ROLE acl_other;
	REVOKE EXECUTE ON FUNCTION event_log.read(regclass, int, bigint, int) FROM PUBLIC;
	GRANT EXECUTE ON FUNCTION event_log.read(regclass, int, bigint, int) TO acl_reader;
	REVOKE EXECUTE ON FUNCTION event_log.poll(text, regclass, int, text, interval, boolean) FROM PUBLIC;
	REVOKE EXECUTE ON FUNCTION event_log.create_projection(text, regclass, text, jsonb, text, text, jsonb) FROM PUBLIC;
	GRANT EXECUTE ON FUNCTION event_log.create_projection(text, regclass, text, jsonb, text, text, jsonb) TO acl_reader;
	ALTER EXTENSION event_log UPDATE;
});
is($node->safe_psql('acl_db', q{
	SELECT has_function_privilege('acl_reader', 'event_log.create_projection(text, regclass, text, jsonb, text, text, jsonb, text, text)', 'EXECUTE'),
	       has_function_privilege('acl_other', 'event_log.create_projection(text, regclass, text, jsonb, text, text, jsonb, text, text)', 'EXECUTE')}),
	't|f', 'privileges on create_projection() survive its re-creation by the 0.4 update');
is($node->safe_psql('acl_db', q{
	SELECT has_function_privilege('acl_reader', 'event_log.read(regclass, int, bigint, int, text[])', 'EXECUTE'),
	       has_function_privilege('acl_other', 'event_log.read(regclass, int, bigint, int, text[])', 'EXECUTE'),
	       has_function_privilege('acl_reader', 'event_log.poll(text, regclass, int, text, interval, boolean, text[])', 'EXECUTE'),
	       current_setting('el_upgrade.read_acl', true) IS NULL OR current_setting('el_upgrade.read_acl', true) = ''}),
	't|f|f|t', 'privileges on read() and poll() survive their re-creation by the update');
$node->safe_psql('acl_db', 'DROP EXTENSION event_log; DROP ROLE acl_reader; DROP ROLE acl_other');

# drop_stream(..., cascade => true), from 0.3, on the updated database: the
# 0.1 projections and consumer group go with the stream.
is($node->safe_psql('old_db', q{
	SELECT event_log.drop_stream('carts', cascade => true);
	SELECT count(*) FROM event_log.projections;
	SELECT count(*) FROM event_log.consumer_groups;
	SELECT events FROM event_log.dropped_streams WHERE stream = 'public.carts'}),
	"21\n0\n0\n21", 'drop_stream(..., cascade => true) after the update');

# Under a 0.1 catalog the library keeps 0.1's drop_stream(stream): refused
# while projections exist, working once they are gone; the cascade form is
# not there until the update.
$node->safe_psql('postgres', 'CREATE DATABASE v01_db');
$node->safe_psql('v01_db', q{
	CREATE EXTENSION event_log VERSION '0.1';
	SELECT event_log.create_stream('public.s');
	INSERT INTO s (key, type, payload) VALUES ('k', 'T', '{}');
	SELECT event_log.create_projection('s_keys', 's', columns => 'key text',
		handlers => jsonb_build_object('*', 'INSERT INTO s_keys VALUES (e.key)'));
	SELECT count(*) FROM event_log.poll('g', 's');
});
($rc, $out, $err) = $node->psql('v01_db', q{SELECT event_log.drop_stream('s')});
like($err, qr/because projections depend on it/, 'a 0.1 catalog: drop_stream() refused while projections exist');
($rc, $out, $err) = $node->psql('v01_db', q{SELECT event_log.drop_stream('s', true)});
like($err, qr/function event_log.drop_stream\(unknown, boolean\) does not exist/,
	'a 0.1 catalog: no cascade form');
is($node->safe_psql('v01_db', q{
	SELECT event_log.drop_projection('s_keys');
	SELECT event_log.drop_stream('s');
	SELECT count(*) FROM event_log.consumer_groups}),
	"\n1\n0", 'a 0.1 catalog: drop_stream() drops the stream and its groups');

# A group's types (0.3): the library polls a 0.2 catalog (no types column)
# as before, and one session that updates the extension meanwhile records
# the group's types at its next poll; consumer_lag then counts only them.
$node->safe_psql('postgres', 'CREATE DATABASE types_db');
is($node->safe_psql('types_db', q{
	CREATE EXTENSION event_log VERSION '0.2';
	SELECT event_log.create_stream('public.orders', 1);
	INSERT INTO orders (key, type, payload)
	SELECT 'o' || i, CASE WHEN i % 3 = 0 THEN 'Paid' ELSE 'Placed' END, '{}' FROM generate_series(1, 9) i;
	SELECT count(*) FROM event_log.poll('payments', 'orders', 2);
	SELECT count(*) FROM event_log.poll('payments', 'orders', 2);  -- from the backend's cache
	SELECT lag_events FROM event_log.consumer_lag WHERE group_name = 'payments';
	ALTER EXTENSION event_log UPDATE;
	SELECT count(*) FROM event_log.poll('payments', 'orders', 100, types => ARRAY['Paid']);
	SELECT types FROM event_log.consumer_groups WHERE group_name = 'payments';
	SELECT lag_events FROM event_log.consumer_lag WHERE group_name = 'payments';
	SELECT count(*) FROM event_log.poll('payments', 'orders', 100, auto_commit => true);
	SELECT committed_seq || ' ' || lag_events FROM event_log.consumer_lag WHERE group_name = 'payments';
}), "orders\n2\n2\n9\n3\n{Paid}\n3\n0\n9 0",
	'a 0.2 catalog polls as before; after the update the group records its types');

# Event schemas (0.4): on a 0.3 catalog the library appends without any
# schema check, and drop_stream() works; after the update, in the same
# session (whose cache knew the stream had no schemas), a schema
# registered for a stream made at 0.3 is checked at the next append, and
# events appended before the update pass the history check or are named.
$node->safe_psql('postgres', 'CREATE DATABASE schemas_db');
is($node->safe_psql('schemas_db', q{
	CREATE EXTENSION event_log VERSION '0.3';
	SELECT event_log.create_stream('public.payments', 2);
	SELECT event_log.create_stream('public.scratch', 1);
	INSERT INTO payments (key, type, payload) VALUES ('p1', 'Paid', '{"amount": 5}'), ('p2', 'Paid', '{}');
	SELECT count(*) FROM payments WHERE metadata IS NULL;
	SELECT event_log.drop_stream('scratch');
	ALTER EXTENSION event_log UPDATE;
	SELECT event_log.register_schema('payments', 'Paid', '{"type": "object", "required": ["amount"]}');
	INSERT INTO payments (key, type, payload) VALUES ('p3', 'Paid', '{"amount": 7}');
	SELECT metadata FROM payments WHERE key = 'p3';
	SELECT key || ' ' || path || ' ' || keyword FROM event_log.check_schema_history('payments', 'Paid');
}), "payments\nscratch\n2\n0\n1\n{\"schema_version\": 1}\np2 \$ required",
	'a 0.3 catalog appends unchecked; after the update, schemas hold for old streams');
($rc, $out, $err) = $node->psql('schemas_db',
	q{INSERT INTO payments (key, type, payload) VALUES ('p4', 'Paid', '{}')});
like($err, qr/does not match schema version 1 of stream "public.payments"/,
	'after the update, appends are checked');

# Dead letters (0.4): on a 0.3 catalog the library stops a shard at a
# failing event as before (nothing to park into); after the update the
# same projection may park, and its parked events are retried once fixed.
$node->safe_psql('postgres', 'CREATE DATABASE dl_db');
$node->safe_psql('dl_db', q{
	CREATE EXTENSION event_log VERSION '0.3';
	SELECT event_log.create_stream('public.acc', 1);
	SELECT event_log.create_projection('acc_sum', 'acc',
		columns  => 'key text PRIMARY KEY, n int',
		handlers => jsonb_build_object('*', $$INSERT INTO acc_sum AS a VALUES (e.key, (e.payload->>'n')::int)
			ON CONFLICT (key) DO UPDATE SET n = a.n + excluded.n$$),
		mode     => 'async');
	INSERT INTO acc (key, type, payload) VALUES
		('a', 'T', '{"n": 1}'), ('b', 'T', '{"n": "x"}'), ('a', 'T', '{"n": 2}');
});
($rc, $out, $err) = $node->psql('dl_db', 'SELECT event_log.run_projections()');
like($err, qr/stopped at shard 0 seq 2/, 'a 0.3 catalog: a failing event stops its shard');
($rc, $out, $err) = $node->psql('dl_db', q{SELECT event_log.set_error_policy('acc_sum', on_error => 'park')});
like($err, qr/function event_log.set_error_policy\(unknown, on_error => unknown\) does not exist/,
	'a 0.3 catalog: no error policies');
is($node->safe_psql('dl_db', q{
	ALTER EXTENSION event_log UPDATE;
	SELECT on_error FROM event_log.projections;
	SELECT count(*) FROM event_log.dead_letters;
	SELECT event_log.set_error_policy('acc_sum', on_error => 'park');
	SELECT event_log.alter_projection('acc_sum');
	SELECT event_log.run_projections();
	SELECT string_agg(key || '=' || n, ',' ORDER BY key) FROM acc_sum;
	SELECT key || ' ' || sqlstate FROM event_log.dead_letters;
	SELECT parked_events FROM event_log.projection_lag;
	SELECT event_log.alter_projection('acc_sum',
		handlers => jsonb_build_object('*', $$INSERT INTO acc_sum AS a VALUES (e.key, coalesce((e.payload->>'n')::int, 0))
			ON CONFLICT (key) DO UPDATE SET n = a.n + excluded.n$$));
}), "stop\n0\n\n\n2\na=3\nb 22P02\n1\n", 'after the update, the projection parks the failing key');
is($node->safe_psql('dl_db', q{
	SELECT event_log.discard_dead_letters('acc_sum');
	INSERT INTO acc (key, type, payload) VALUES ('b', 'T', '{"n": 5}');
	SELECT event_log.run_projections();
	SELECT string_agg(key || '=' || n, ',' ORDER BY key) FROM acc_sum;
	SELECT action FROM event_log.dead_letter_log;
}), "1\n1\na=3,b=5\ndiscarded", 'discarded after the update, the key goes on');
# Upcasting on read (0.4): on a 0.3 catalog the library reads, polls and
# builds projections with event_log.upcast on as if it were off (no stream
# has schemas there, and projections have no upcast column); after the
# update, a projection made at 0.3 does not upcast until its owner says so,
# and then sees events appended at 0.3 and typed afterwards upcast.
$node->safe_psql('postgres', 'CREATE DATABASE upcast_db');
is($node->safe_psql('upcast_db', q{
	CREATE EXTENSION event_log VERSION '0.3';
	SELECT event_log.create_stream('public.pay', 2);
	INSERT INTO pay (key, type, payload) VALUES ('a', 'Paid', '{"amount": 5}');
	SET event_log.upcast = on;
	SELECT payload FROM event_log.replay('pay', 'a');
	SELECT count(*) FROM event_log.read_all('pay');
	SELECT count(*) FROM event_log.poll('g', 'pay');
	SELECT event_log.create_projection('paid', 'pay', columns => 'key text, cents bigint',
		handlers => jsonb_build_object('Paid',
			$$INSERT INTO paid VALUES (e.key, coalesce((e.payload->>'cents')::bigint, -1))$$));
	RESET event_log.upcast;
	ALTER EXTENSION event_log UPDATE;
	SELECT upcast FROM event_log.projections;
	SELECT event_log.register_schema('pay', 'Paid', '{"type": "object", "required": ["amount"]}');
	INSERT INTO pay (key, type, payload) VALUES ('b', 'Paid', '{"amount": 2}');
	SELECT event_log.set_schema_compatibility('pay', 'Paid', 'NONE');
	SELECT event_log.register_schema('pay', 'Paid', '{"type": "object", "required": ["cents"]}');
	SELECT event_log.register_upcaster('pay', 'Paid', 1,
		$$jsonb_build_object('cents', (payload->>'amount')::int * 100)$$);
	SELECT event_log.set_projection_upcast('paid', true);
	SELECT string_agg(key || ':' || cents, ',' ORDER BY key) FROM paid;
	SET event_log.upcast = on;
	SELECT string_agg(payload::text, ',' ORDER BY key) FROM event_log.read_all('pay');
}), "pay\n{\"amount\": 5}\n1\n1\npaid\nf\n1\n\n2\n\n2\na:-1,b:200\n{\"amount\": 5},{\"cents\": 200}",
	'a 0.3 catalog reads as stored under event_log.upcast; after the update projections opt in');
# Personal fields (0.4): on a 0.3 catalog the library appends and reads as
# before (nothing is declared); after the update, in the same session, a
# stream made at 0.3 gets personal fields: events appended before keep
# their plain payloads, new ones are encrypted, read back, and erased.
$node->safe_psql('postgres', 'CREATE DATABASE personal_db');
is($node->safe_psql('personal_db', q{
	CREATE EXTENSION event_log VERSION '0.3';
	SELECT event_log.create_stream('public.people', 2);
	INSERT INTO people (key, type, payload) VALUES ('u1', 'Joined', '{"user": "u1", "email": "old@example.org"}');
	SELECT payload->>'email' FROM event_log.replay('people', 'u1');
	ALTER EXTENSION event_log UPDATE;
	SELECT event_log.declare_personal('people', '{email}', 'user');
	INSERT INTO people (key, type, payload) VALUES ('u1', 'Moved', '{"user": "u1", "email": "new@example.org"}');
	SELECT count(*) FROM people WHERE payload::text LIKE '%new@example.org%';
	SELECT string_agg(payload->>'email', ',' ORDER BY version) FROM event_log.replay('people', 'u1');
	SELECT event_log.erase_subject('people', 'u1', 'upgrade test');
	SELECT string_agg(payload->'email'->>'$personal', ',' ORDER BY version) FROM event_log.replay('people', 'u1');
	SELECT count(*) FROM event_log.erasures;
}), "people
old\@example.org

0
old\@example.org,new\@example.org
t
erased
1",
	'a 0.3 catalog is unchanged; after the update, personal fields hold for old streams');

# Retention (0.5): on a 0.4 catalog the library reads and polls as before
# (no stream has watermarks); after the update, in the same
# session, a stream and a group made at 0.4 get a policy, the group's
# polls follow its offset_reset, and reads below the watermark fail.
$node->safe_psql('postgres', 'CREATE DATABASE retention_db');
is($node->safe_psql('retention_db', q{
	CREATE EXTENSION event_log VERSION '0.4';
	SELECT event_log.create_stream('public.ticks', 1);
	INSERT INTO ticks (key, type, payload) SELECT 'k' || i, 'T', '{}' FROM generate_series(1, 6) i;
	SELECT count(*) FROM event_log.poll('old_group', 'ticks', auto_commit => true);
	SELECT count(*) FROM event_log.read('ticks', 0);
}), "ticks\n6\n6", 'a 0.4 catalog reads and polls as before');
is($node->safe_psql('retention_db', q{
	ALTER EXTENSION event_log UPDATE;
	SELECT event_log.set_retention('ticks', max_events => 2);
	SELECT removed, low_watermark FROM event_log.enforce_retention('ticks');
	SELECT offset_reset FROM event_log.consumer_groups;
	SELECT event_log.set_offset_reset('old_group', 'ticks', 'earliest');
	SELECT count(*) FROM event_log.read('ticks', 0, 4);
}), "
0|1
error

2",
	'after the update, old streams and groups take policies; keep_unconsumed holds for a group made at 0.4');
my (undef, undef, $retention_err) = $node->psql('retention_db', q{
	SELECT event_log.set_retention('ticks', max_events => 2, keep_unconsumed => false);
	SELECT removed FROM event_log.enforce_retention('ticks');
	SELECT count(*) FROM event_log.read('ticks', 0);
});
like($retention_err, qr/below the shard's low watermark 5/, 'after the update, a read below the watermark is an error');
# Readers after a removal (0.6): on a 0.5 catalog, enforcement and the
# readers work without shard_watermarks.removed_until (read_by_time()
# bounds what was removed by the time of the last removal); the update
# fills it in for shards that lost events, and a removal keeps it.
$node->safe_psql('postgres', 'CREATE DATABASE readers_db');
is($node->safe_psql('readers_db', q{
	CREATE EXTENSION event_log VERSION '0.5';
	SET timezone = 'UTC';
	SELECT event_log.create_stream('public.old', 1);
	SET session_replication_role = replica;
	INSERT INTO old VALUES
	  (0, 1, 'a', 1, 'A', '{}', NULL, '00000000-0000-4000-8000-000000000001', '2026-01-01 10:00:00'),
	  (0, 2, 'a', 2, 'A', '{}', NULL, '00000000-0000-4000-8000-000000000002', '2026-01-01 10:00:05'),
	  (0, 3, 'a', 3, 'A', '{}', NULL, '00000000-0000-4000-8000-000000000003', '2026-01-01 10:00:09');
	RESET session_replication_role;
	SELECT event_log.set_retention('old', max_events => 2, keep_unconsumed => false);
	SELECT stream, shard, removed, low_watermark FROM event_log.enforce_retention();
	SELECT count(*) FROM event_log.read_by_time('old', now() + interval '1 minute');
	SELECT count(*) FROM event_log.read_event('old', '00000000-0000-4000-8000-000000000003');
}), "old\n\nold|0|1|2\n0\n1", 'a 0.5 catalog enforces retention and reads after it');
($rc, $out, $err) = $node->psql('readers_db',
	q{SELECT count(*) FROM event_log.read_by_time('old', '2026-01-01 10:00:06')});
like($err, qr/recorded from .* on may have been removed/,
	'on a 0.5 catalog, read_by_time() before the last removal is EL040');
($rc, $out, $err) = $node->psql('readers_db',
	q{SELECT count(*) FROM event_log.read_event('old', '00000000-0000-4000-8000-000000000001')});
like($err, qr/may have been removed by retention/,
	'on a 0.5 catalog, read_event() of a removed event is EL040');
is($node->safe_psql('readers_db', q{
	ALTER EXTENSION event_log UPDATE;
	SELECT removed_until = removed_at FROM event_log.shard_watermarks;
	SELECT event_log.create_stream('public.new', 1);
	SET session_replication_role = replica;
	INSERT INTO new VALUES
	  (0, 1, 'a', 1, 'A', '{}', NULL, '00000000-0000-4000-8000-000000000011', '2026-01-01 10:00:05'),
	  (0, 2, 'a', 2, 'A', '{}', NULL, '00000000-0000-4000-8000-000000000012', '2026-01-01 10:00:00');
	RESET session_replication_role;
	SELECT event_log.set_retention('new', max_events => 1, keep_unconsumed => false);
	SELECT removed FROM event_log.enforce_retention('new');
	SELECT removed_until AT TIME ZONE 'UTC' FROM event_log.shard_watermarks WHERE stream = 'new'::regclass;
	SELECT count(*) FROM event_log.read_by_time('new', '2026-01-01 10:00:05.000001');
}), "t\nnew\n\n1\n2026-01-01 10:00:05\n0",
	'after the update, old shards have removed_until and removals keep it exactly');
# Segment summaries (0.7): on a 0.6 catalog a segmented stream's removal
# reads the segments it removes; after the update, an enforcement writes
# a summary of each sealed segment and removals check those.
$node->safe_psql('postgres', 'CREATE DATABASE summary_db');
$node->safe_psql('summary_db', q{
	CREATE EXTENSION event_log VERSION '0.6';
	SELECT event_log.create_stream('public.segs', 2, segment_events => 1000);
	INSERT INTO segs (key, type, payload) SELECT 'k' || i % 7, 'T', '{}' FROM generate_series(1, 20) i;
	SELECT event_log.roll_segment('segs');
	INSERT INTO segs (key, type, payload) SELECT 'k' || i % 7, 'T', '{}' FROM generate_series(21, 40) i;
	SELECT event_log.roll_segment('segs');
	INSERT INTO segs (key, type, payload) SELECT 'k' || i % 7, 'T', '{}' FROM generate_series(41, 60) i;
	SELECT event_log.roll_segment('segs');
	SELECT event_log.set_retention('segs', max_events => 1, keep_unconsumed => false);
});
my $expected = $node->safe_psql('summary_db', q{SELECT count(*) FROM segs WHERE segment <= 2});
is($node->safe_psql('summary_db', q{
	SELECT sum(removed) FROM event_log.enforce_retention('segs');
	SELECT count(*) FROM event_log.retired_keys;
	SELECT to_regclass('event_log.segment_summaries') IS NULL;
}), "$expected\n0\nt", 'a 0.6 catalog removes segments by reading them');
$node->safe_psql('summary_db', q{
	ALTER EXTENSION event_log UPDATE;
	INSERT INTO segs (key, type, payload) SELECT 'k' || i % 7, 'T', '{}' FROM generate_series(61, 80) i;
	SELECT event_log.roll_segment('segs');
});
$expected = $node->safe_psql('summary_db', q{
	SELECT count(*) FROM segs WHERE segment = 3;
	SELECT string_agg(shard || ':' || n || ':' || lo || ':' || hi, ',' ORDER BY segment, shard)
	  FROM (SELECT segment, shard, count(*) AS n, min(seq) AS lo, max(seq) AS hi
	          FROM segs WHERE segment IN (3, 4) GROUP BY segment, shard) s;
});
is($node->safe_psql('summary_db', q{
	SELECT sum(removed) FROM event_log.enforce_retention('segs');
	SELECT count(*) FROM event_log.segment_summaries;
	SELECT sum(removed) FROM event_log.enforce_retention('segs');
	SELECT string_agg(shard || ':' || events || ':' || first_seq || ':' || last_seq, ','
	                  ORDER BY segment, shard)
	  FROM event_log.segment_summaries WHERE segment IN (3, 4);
}), "0\n0\n$expected", 'after the update, the detached segments are dropped, then the sealed ones summarized and the oldest removed');
# Shredding erased keys (0.5): on a 0.4 catalog the library already
# overwrites an erased key in its page at commit; the update stops ANALYZE
# from keeping sample keys in pg_statistic and drops those kept before.
$node->safe_psql('postgres', 'CREATE DATABASE shred_db');
is($node->safe_psql('shred_db', q{
	CREATE EXTENSION pageinspect;
	CREATE EXTENSION event_log VERSION '0.4';
	SELECT event_log.create_stream('public.people', 2);
	SELECT event_log.declare_personal('people', '{email}', 'user');
	INSERT INTO people (key, type, payload)
	SELECT 'u' || i, 'Joined', jsonb_build_object('user', 'u' || i, 'email', i || '@example.org')
	FROM generate_series(1, 20) i;
	ANALYZE event_log.subject_keys;
	CREATE TEMP TABLE k AS SELECT key FROM event_log.subject_keys k
	 WHERE k.subject = decode(event_log.subject_id('people', 'u1'), 'hex');
	SELECT count(*) FROM pg_stats WHERE schemaname = 'event_log' AND tablename = 'subject_keys' AND attname = 'key';
	SELECT event_log.erase_subject('people', 'u1', 'at 0.4');
	SELECT position((SELECT key FROM k) IN get_raw_page('event_log.subject_keys', 0));
	SELECT payload->'email'->>'$personal' FROM event_log.replay('people', 'u1');
	SELECT payload->>'email' FROM event_log.replay('people', 'u2');
	ALTER EXTENSION event_log UPDATE;
	SELECT count(*) FROM pg_stats WHERE schemaname = 'event_log' AND tablename = 'subject_keys' AND attname = 'key';
	ANALYZE event_log.subject_keys;
	SELECT count(*) FROM pg_stats WHERE schemaname = 'event_log' AND tablename = 'subject_keys' AND attname = 'key';
	SELECT count(*) FROM pg_stats WHERE schemaname = 'event_log' AND tablename = 'subject_keys' AND attname = 'key_id';
}), "people

1
t
0
erased
2\@example.org
0
0
1",
	'a 0.4 catalog shreds erased keys; after the update no statistics keep keys');

# Segmented streams (0.6): on a 0.5 catalog create_stream() has no
# segment_events and makes plain streams as before, and the library works
# with them; after the update, in the same session, a segmented stream is
# created, rolled and retained, and the plain stream made at 0.5 goes on.
$node->safe_psql('postgres', 'CREATE DATABASE segments_db');
is($node->safe_psql('segments_db', q{
	CREATE EXTENSION event_log VERSION '0.5';
	SELECT event_log.create_stream('public.plain', 2);
	INSERT INTO plain (key, type, payload) SELECT 'k' || i, 'T', '{}' FROM generate_series(1, 6) i;
	SELECT count(*) FROM event_log.read_all('plain', NULL, 100);
	SELECT relkind FROM pg_class WHERE oid = 'plain'::regclass;
}), "plain\n6\nr", 'a 0.5 catalog makes plain streams, as before');
my (undef, undef, $segments_err) = $node->psql('segments_db', q{
	SELECT event_log.create_stream('public.seg', 1, segment_events => 10)});
like($segments_err, qr/function event_log.create_stream\(unknown, integer, segment_events => integer\) does not exist/,
	'a 0.5 catalog has no segmented streams');
is($node->safe_psql('segments_db', q{
	ALTER EXTENSION event_log UPDATE;
	SELECT event_log.create_stream('public.seg', 1, segment_events => 10);
	INSERT INTO seg (key, type, payload) SELECT 'k' || i, 'T', '{}' FROM generate_series(1, 4) i;
	SELECT event_log.roll_segment('seg');
	INSERT INTO seg (key, type, payload) SELECT 'k' || i, 'T', '{}' FROM generate_series(5, 8) i;
	SELECT event_log.set_retention('seg', max_events => 2, keep_unconsumed => false);
	SELECT removed FROM event_log.enforce_retention('seg');
	SELECT removed FROM event_log.enforce_retention('seg');
	SELECT string_agg(segment::text, ',') FROM event_log.segments;
	SELECT version FROM event_log.append('plain', 'k1', 'T', '{}');
}), "seg
2

4
0
2
2",
	'after the update, segmented streams are created, rolled and retained; old streams go on');

$node->stop;
done_testing();
