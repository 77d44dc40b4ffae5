# CDC's "streams" option means the same through SQL and through the
# replication protocol (pg_recvlogical), for every name create_stream()
# accepts: quoted and mixed-case names, commas, dots, blanks and quotes
# inside quotes, non-ASCII names, names of the maximum length.  Bad names get
# the same error both ways.  The consuming role is a non-superuser with
# REPLICATION whose search_path starts with a schema of its own holding a
# decoy stream and operators and functions that shadow pg_catalog's: nothing
# the plugin does may resolve through them.  Last, a look-alike registry in a
# database without the extension must not make the plugin crash the server.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use EventLogTest;

my $node = new_node('cdc_streams', logical => 1,
	extra => [ '--encoding=UTF8', '--locale=C' ],
	conf  => "max_replication_slots = 20\n");

# Streams, as create_stream() is given them; the i-th gets i events.
my @streams = (
	'public.carts',
	'app."My Stream"',
	'app."c,d"',
	'app."a.b c"',
	q{app."O'Brien"},
	'app."Événements ✓"',
	'app.MixedCase',
	'app."MixedCase"',
	'app.' . ('x' x 63),
	'app."say ""hi"""',
	'app."select"',
	'secret.ledger',
	'evil.carts');

$node->safe_psql('postgres', q{
	CREATE EXTENSION event_log;
	CREATE SCHEMA app;
	CREATE SCHEMA secret;
	CREATE ROLE feeder LOGIN REPLICATION;
	CREATE SCHEMA evil AUTHORIZATION feeder;
	CREATE TABLE public.plain (key text, type text, payload jsonb);
});
foreach my $s (@streams)
{
	$node->safe_psql('postgres', "SELECT event_log.create_stream(\$n\$$s\$n\$)");
}

# The consumer's traps: any operator or function resolved through its
# search_path raises instead of answering.
$node->safe_psql('postgres', q{
	SET ROLE feeder;
	CREATE FUNCTION evil.trap() RETURNS bool LANGUAGE plpgsql
		AS $$BEGIN RAISE EXCEPTION 'evil trap called'; END$$;
	CREATE FUNCTION evil.eq(oid, oid) RETURNS bool LANGUAGE sql AS 'SELECT evil.trap()';
	CREATE FUNCTION evil.eq(name, name) RETURNS bool LANGUAGE sql AS 'SELECT evil.trap()';
	CREATE FUNCTION evil.eq(text, text) RETURNS bool LANGUAGE sql AS 'SELECT evil.trap()';
	CREATE FUNCTION evil.eq(regclass, regclass) RETURNS bool LANGUAGE sql AS 'SELECT evil.trap()';
	CREATE OPERATOR evil.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = evil.eq);
	CREATE OPERATOR evil.= (LEFTARG = name, RIGHTARG = name, FUNCTION = evil.eq);
	CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.eq);
	CREATE OPERATOR evil.= (LEFTARG = regclass, RIGHTARG = regclass, FUNCTION = evil.eq);
	CREATE FUNCTION evil.oideq(oid, oid) RETURNS bool LANGUAGE sql AS 'SELECT evil.trap()';
	CREATE FUNCTION evil.texteq(text, text) RETURNS bool LANGUAGE sql AS 'SELECT evil.trap()';
	CREATE FUNCTION evil.nameeq(name, name) RETURNS bool LANGUAGE sql AS 'SELECT evil.trap()';
	CREATE FUNCTION evil.lower(text) RETURNS text LANGUAGE sql AS 'SELECT evil.trap()::text';
	CREATE FUNCTION evil.quote_ident(text) RETURNS text LANGUAGE sql AS 'SELECT evil.trap()::text';
	CREATE FUNCTION evil.to_regclass(text) RETURNS regclass LANGUAGE sql AS 'SELECT evil.trap()::text::regclass';
	CREATE FUNCTION evil.current_database() RETURNS name LANGUAGE sql AS 'SELECT evil.trap()::text::name';
	RESET ROLE;
	ALTER ROLE feeder SET search_path = evil, pg_catalog, public;
	SELECT 'made' FROM pg_create_logical_replication_slot('feed', 'event_log');
});

my ($rc, $out, $err) = $node->psql('postgres', 'SELECT 1::oid = 1::oid',
	extra_params => [ '-U', 'feeder' ]);
like($err, qr/evil trap called/, "the traps are armed in feeder's sessions");

# The walsender runs with the same hostile path.
$out = '';
IPC::Run::run(
	[
		'psql', '-XAtq', '-d',
		$node->connstr('postgres') . ' user=feeder replication=database',
		'-c', 'SHOW search_path'
	],
	'>', \$out, '2>', \$err);
chomp $out;
is($out, 'evil, pg_catalog, public', "feeder's walsender has the hostile search_path");

my $i = 0;
foreach my $s (@streams)
{
	$i++;
	$node->safe_psql('postgres', qq{
		INSERT INTO $s (key, type, payload)
		SELECT 'k' || i, 'T$i', jsonb_build_object('i', i) FROM generate_series(1, $i) i;
	});
}
$node->safe_psql('postgres',
	q{INSERT INTO public.plain VALUES ('k', 'NotAnEvent', '{}')});
my $end = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');

# Released 15.x pg_recvlogical versions differ: newer ones double a single
# quote in an option value themselves, older ones send it as given.  Ask it.
my $probe = '';
IPC::Run::run(
	[
		'pg_recvlogical', '-d', $node->connstr('postgres'), '-S', 'no_such_slot',
		'--start', '--no-loop', '-f', '-', '-o', q{streams=a'b}
	],
	'>', \$out, '2>', \$probe, IPC::Run::timeout(60));
my $recvlogical_quotes = ($probe =~ /'a''b'/) ? 1 : 0;
note("pg_recvlogical doubles quotes itself: $recvlogical_quotes");

# The feed through SQL, as feeder: (lines, first error line).
sub sql_feed
{
	my ($value) = @_;
	my ($rc, $out, $err) = $node->psql('postgres',
		"SELECT data FROM pg_logical_slot_peek_changes('feed', '$end', NULL, 'streams', \$v\$$value\$v\$)",
		extra_params => [ '-U', 'feeder' ]);
	my ($error) = $err =~ /ERROR:\s+([^\n]*)/;
	return ([ grep { $_ ne '' } split /\n/, $out ], $error);
}

# The same through pg_recvlogical, as feeder, from a copy of the slot (it
# confirms what it received): (lines, first error line, exit code).
my $copies = 0;
sub protocol_feed
{
	my ($value) = @_;
	my $slot = 'copy_' . ++$copies;
	my ($out, $err) = ('', '');

	$value =~ s/'/''/g unless $recvlogical_quotes;
	$node->safe_psql('postgres',
		"SELECT 'copied' FROM pg_copy_logical_replication_slot('feed', '$slot')");
	IPC::Run::run(
		[
			'pg_recvlogical', '-d', $node->connstr('postgres') . ' user=feeder',
			'-S', $slot, '--start', '--no-loop', '-E', $end, '-f', '-',
			'-o', "streams=$value"
		],
		'>', \$out, '2>', \$err, IPC::Run::timeout(120));
	my $rc = $?;
	$node->safe_psql('postgres', "SELECT pg_drop_replication_slot('$slot')");
	my ($error) = $err =~ /ERROR:\s+([^\n]*)/;
	return ([ grep { $_ ne '' } split /\n/, $out ], $error, $rc);
}

sub stream_of
{
	my ($line) = @_;
	my ($s) = $line =~ /^\{"stream":("(?:[^"\\]|\\.)*")/;
	return undef unless defined $s;
	$s =~ s/^"|"$//g;
	$s =~ s/\\(.)/$1/g;
	return $s;
}

# Unfiltered, for reference: every stream's events and nothing else.
my ($all_rc, $all_out, $all_err) = $node->psql('postgres',
	"SELECT data FROM pg_logical_slot_peek_changes('feed', '$end', NULL)",
	extra_params => [ '-U', 'feeder' ]);
my @all = grep { $_ ne '' } split /\n/, $all_out;
my %by_stream;
push @{ $by_stream{ stream_of($_) // 'unparsed' } }, $_ foreach @all;
is(scalar(@all), scalar(@streams) * (scalar(@streams) + 1) / 2,
	'the unfiltered feed has every event, and nothing from the plain table');
is(scalar(keys %by_stream), scalar(@streams), 'one "stream" value per stream');

# Check one option value both ways against the events it should select.
sub check_selects
{
	my ($value, $want, $what) = @_;
	my ($sql, $sql_error) = sql_feed($value);
	my ($proto, $proto_error, $proto_rc) = protocol_feed($value);

	is($sql_error, undef, "$what: no error through SQL");
	is($proto_error, undef, "$what: no error through pg_recvlogical");
	is($proto_rc, 0, "$what: pg_recvlogical succeeds");
	is_deeply($sql, $want, "$what: SQL delivers exactly the stream's events")
	  or diag("got " . scalar(@$sql) . ", wanted " . scalar(@$want));
	is_deeply($proto, $sql, "$what: pg_recvlogical delivers the same messages")
	  or diag("got " . scalar(@$proto) . ", wanted " . scalar(@$sql));
}

# Each stream, selected by the name its messages carry.
foreach my $s (sort keys %by_stream)
{
	check_selects($s, $by_stream{$s}, "streams=$s");
}

# Names as people write them.
sub events_of { return [ grep { my $s = stream_of($_); grep { $s eq $_ } @_ } @all ]; }
check_selects('APP.MixedCase', events_of('app.mixedcase'), 'unquoted names fold to lower case');
check_selects(' public.carts , app."c,d",app."a.b c" ',
	events_of('public.carts', 'app."c,d"', 'app."a.b c"'), 'a list with blanks and quoted commas');
check_selects(join(',', sort keys %by_stream), \@all, 'every stream named at once');
check_selects('"secret"."ledger"', events_of('secret.ledger'),
	'a stream in a schema the consumer has no USAGE on');

# Bad names: the same error both ways, and nothing delivered.
my @bad = (
	[ 'carts',                 qr/must be schema-qualified/ ],
	[ 'public.nope',           qr/event stream "public\.nope" does not exist/ ],
	[ 'nope.carts',            qr/schema "nope" does not exist/ ],
	[ 'public.plain',          qr/"public\.plain" is not an event stream/ ],
	[ 'app."My Stream',        qr/could not parse value/ ],
	[ 'app.My Stream',         qr/could not parse value/ ],
	[ 'public.carts,',         qr/could not parse value/ ],
	[ 'app.' . ('x' x 64),     qr/is too long/ ],
	[ 'otherdb.public.carts',  qr/cross-database references are not implemented/ ],
	[ q{app."O'Brien",app.nope}, qr/event stream "app\.nope" does not exist/ ]);
foreach my $case (@bad)
{
	my ($value, $pattern) = @$case;
	my ($sql, $sql_error) = sql_feed($value);
	my ($proto, $proto_error, $proto_rc) = protocol_feed($value);

	like($sql_error // '', $pattern, "streams=$value: refused through SQL");
	is($proto_error, $sql_error, "streams=$value: same error through pg_recvlogical");
	isnt($proto_rc, 0, "streams=$value: pg_recvlogical fails");
	is(scalar(@$proto) + scalar(@$sql), 0, "streams=$value: nothing delivered");
}

# A database without the extension, where a role with REPLICATION and CREATE
# makes a look-alike registry naming a table of other column types: decoding
# it is an error, both ways, not a crash.
$node->safe_psql('postgres', q{
	CREATE DATABASE lookalike;
	GRANT CREATE ON DATABASE lookalike TO feeder;
});
$node->safe_psql('lookalike', q{
	SET ROLE feeder;
	CREATE SCHEMA evil;
	CREATE SCHEMA event_log;
	CREATE TABLE event_log.streams (stream regclass PRIMARY KEY, shards int)
		WITH (user_catalog_table = true);
	CREATE TABLE evil.t (shard text, seq text, key int, version text, type int,
		payload text, metadata text, event_id text, recorded_at text);
	INSERT INTO event_log.streams VALUES ('evil.t', 1);
	SELECT 'made' FROM pg_create_logical_replication_slot('fake', 'event_log');
	INSERT INTO evil.t VALUES ('a', 'b', 1, 'c', 2, 'd', 'e', 'f', 'g');
});
$end = $node->safe_psql('lookalike', 'SELECT pg_current_wal_lsn()');
($rc, $out, $err) = $node->psql('lookalike',
	"SELECT data FROM pg_logical_slot_peek_changes('fake', NULL, NULL)",
	extra_params => [ '-U', 'feeder' ]);
like($err, qr/relation "evil\.t" is registered as an event stream but lacks its columns/,
	'a look-alike registry is refused through SQL');
($out, $err) = ('', '');
IPC::Run::run(
	[
		'pg_recvlogical', '-d', $node->connstr('lookalike') . ' user=feeder',
		'-S', 'fake', '--start', '--no-loop', '-E', $end, '-f', '-'
	],
	'>', \$out, '2>', \$err, IPC::Run::timeout(120));
like($err, qr/relation "evil\.t" is registered as an event stream but lacks its columns/,
	'a look-alike registry is refused through pg_recvlogical');
is($node->safe_psql('postgres', 'SELECT 1'), '1', 'the server did not crash');
unlike(slurp_file($node->logfile), qr/terminated by signal/, 'no backend died');

done_testing();
