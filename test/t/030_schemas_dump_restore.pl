# Event schemas survive pg_dump and a parallel pg_restore (-j): the
# registry, the per-stream and per-type settings, the quarantine and the
# upcasters come back naming the restored streams, restored events are not
# checked again (their triggers come with the post-data section), and after
# the restore appends are checked, diverted and upcast as before.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EventLogTest;

my $node = new_node('schemas_restore');
my $bindir = $node->config_data('--bindir');
my $tmp = PostgreSQL::Test::Utils::tempdir;
my @conn = ('-h', $node->host, '-p', $node->port);

$node->safe_psql('postgres', 'CREATE DATABASE src');
$node->safe_psql('src', q{
	CREATE EXTENSION event_log;
	CREATE SCHEMA "Shop ""1""";
	SELECT event_log.create_stream('"Shop ""1""".orders', 2);
	SELECT event_log.create_stream('"Shop ""1""".orders_bad');
	SELECT event_log.register_schema('"Shop ""1""".orders', 'Placed',
		'{"type": "object", "required": ["total"], "properties": {"total": {"type": "number"}}}');
	INSERT INTO "Shop ""1""".orders (key, type, payload) VALUES ('o1', 'Placed', '{"total": 1}');
	SELECT event_log.set_schema_compatibility('"Shop ""1""".orders', 'Placed', 'NONE');
	SELECT event_log.register_schema('"Shop ""1""".orders', 'Placed',
		'{"type": "object", "required": ["total", "currency"]}');
	SELECT event_log.register_upcaster('"Shop ""1""".orders', 'Placed', 1,
		$$payload || '{"currency": "EUR"}'$$);
	SELECT event_log.set_schema_policy('"Shop ""1""".orders', 'refuse', 'FULL');
	SELECT event_log.set_quarantine('"Shop ""1""".orders', '"Shop ""1""".orders_bad');
	INSERT INTO "Shop ""1""".orders (key, type, payload) VALUES
		('o2', 'Placed', '{"total": 2, "currency": "USD"}'), ('o3', 'Placed', '{"total": 3}');
});

my $catalog = q{
	SELECT string_agg(x, E'\n' ORDER BY x) FROM (
		SELECT format('schema %s %s %s %s', stream, type, version, schema) AS x FROM event_log.event_schemas
		UNION ALL SELECT format('settings %s %s %s %s', stream, unregistered_types, compatibility, quarantine)
			FROM event_log.schema_settings
		UNION ALL SELECT format('type %s %s %s', stream, type, compatibility) FROM event_log.schema_type_settings
		UNION ALL SELECT format('upcaster %s %s %s %s', stream, type, from_version, expression)
			FROM event_log.upcasters
		UNION ALL SELECT format('event %s %s %s %s', key, version, payload, metadata)
			FROM "Shop ""1""".orders
		UNION ALL SELECT format('bad %s %s', key, metadata->'quarantine'->>'sqlstate')
			FROM "Shop ""1""".orders_bad) c};
my $before = $node->safe_psql('src', $catalog);
like($before, qr/bad o3 EL020/, 'the source quarantined an event');

command_ok([ "$bindir/pg_dump", @conn, '-Fd', '-f', "$tmp/dump.dir", 'src' ], 'directory dump');
$node->safe_psql('postgres', 'CREATE DATABASE dst');
my ($out, $err) = ('', '');
IPC::Run::run([ "$bindir/pg_restore", @conn, '-j', '4', '-d', 'dst', "$tmp/dump.dir" ],
	'>', \$out, '2>', \$err);
is($err, '', 'pg_restore -j 4 reports no error');
is($node->safe_psql('dst', $catalog), $before,
	'schemas, settings, upcasters, events and the quarantine come back as they were');

# After the restore, the restored registry holds.
my ($rc, $o, $e) = $node->psql('dst',
	q{SELECT * FROM event_log.append('"Shop ""1""".orders', 'o4', 'Placed', '{"total": 4}')});
like($e, qr/does not match schema version 2 of stream ""Shop ""1""".orders"/,
	'appends are checked against the restored schema');
is($node->safe_psql('dst', q{
	INSERT INTO "Shop ""1""".orders (key, type, payload) VALUES ('o5', 'Other', '{}');
	SELECT count(*) FROM "Shop ""1""".orders_bad WHERE key = 'o5'}),
	'1', 'the restored quarantine takes refused events');
is($node->safe_psql('dst', q{
	SELECT event_log.upcast('"Shop ""1""".orders', type, payload, metadata)
	FROM "Shop ""1""".orders WHERE key = 'o1'}),
	'{"total": 1, "currency": "EUR"}', 'the restored upcaster applies');
# The type's own mode (NONE) came back, and the stream's (FULL) under it.
($rc, $o, $e) = $node->psql('dst', q{
	SELECT event_log.set_schema_compatibility('"Shop ""1""".orders', 'Placed', NULL);
	SELECT event_log.register_schema('"Shop ""1""".orders', 'Placed', '{"type": "object"}')});
like($e, qr/not FORWARD compatible with version 2/,
	'the restored compatibility modes hold');

$node->stop;
done_testing();
