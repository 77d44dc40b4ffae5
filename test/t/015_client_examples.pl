# The client-language examples of docs/ run as written, with psycopg 3,
# psycopg2 and node-postgres, and do what the docs say (docs/testing.md,
# "Client examples"):
#  - every ```python and ```js block in docs/*.md is preceded by a line
#    <!-- example: test/clients/FILE --> and is FILE's text, exactly; every
#    file of test/clients/ is shown somewhere;
#  - shard_for() in Python gives event_log.shard_for()'s shard;
#  - the append examples take the EL001 path when another append commits
#    between their load and their append, and then append on the new version;
#  - append_command() appends all or none and reports duplicates;
#  - follow() delivers every event of every shard once, in seq order;
#  - the consumer loops commit their offsets (with their effects, or by
#    auto-commit one poll later); commit_polled() commits the last batch of
#    a consumer stopped by SIGTERM, exactly what it handled;
#  - place_order() puts the correlation and causation ids into the metadata
#    of its event only, and conversation() returns it;
#  - follow_all() delivers every event once, late ones too, and resumes
#    from its saved position;
#  - the CDC reader prints its stream's events and moves the slot's
#    confirmed_flush_lsn at once, so a restart sends nothing again.
# The programs get the node from PGHOST, PGPORT, PGUSER and PGDATABASE, as
# their comments say; Python is Debian's (python3-psycopg, python3-psycopg2),
# node-postgres comes from NODE_PATH (test/deps.sh).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time usleep);
use Cwd qw(getcwd);
use EventLogTest;

my $top     = getcwd();    # prove runs in the top directory of the tree
my $clients = "$top/test/clients";
my $python  = $ENV{EVENT_LOG_PYTHON} // '/usr/bin/python3';
$ENV{NODE_PATH} = join(':', grep { defined && $_ ne '' }
	  "$clients/node_modules", '/usr/share/nodejs', $ENV{NODE_PATH});
$ENV{PYTHONDONTWRITEBYTECODE} = 1;

# node-postgres is installed by test/deps.sh (Debian's node-pg, or npm where
# Debian's cannot go with the machine's Node.js); without it, say so and run
# the Python examples only.
my $have_node_pg = system(q{node -e 'require("pg")' >/dev/null 2>&1}) == 0;
my @libs = ('psycopg3', 'psycopg2', ($have_node_pg ? ('node') : ()));
diag('node-postgres cannot be loaded: the node-postgres examples are not run')
  unless $have_node_pg;

# ---------------------------------------------------------------------
# The docs show the files, exactly.
my %shown;
foreach my $md (sort glob("$top/docs/*.md"))
{
	my @lines = split /\n/, slurp_file($md), -1;
	for (my $i = 0; $i < @lines; $i++)
	{
		# A fence, and the block up to the same fence; other fences inside a
		# longer one (````) are its text.
		next unless $lines[$i] =~ /^(`{3,})(\S*)\s*$/;
		my ($fence, $lang) = ($1, $2);
		my $end = $i + 1;
		$end++ while $end < @lines && $lines[$end] ne $fence;
		if ($fence eq '```' && $lang =~ /^(python|js|javascript)$/)
		{
			my $where = ($md =~ s{.*/}{}r) . ':' . ($i + 1);
			my ($file) = ($i > 0 ? $lines[ $i - 1 ] : '')
			  =~ /^<!-- example: test\/clients\/(\S+) -->$/;
			my $block = join('', map { "$_\n" } @lines[ $i + 1 .. $end - 1 ]);
			if (!defined $file)
			{
				fail("$where: a client example without an example marker");
			}
			elsif (!-f "$clients/$file")
			{
				fail("$where: test/clients/$file does not exist");
			}
			else
			{
				is($block, slurp_file("$clients/$file"),
					"$where is test/clients/$file");
				$shown{$file}++;
			}
		}
		$i = $end;
	}
}
foreach my $file (map { s{.*/}{}r } sort glob("$clients/*.py $clients/*.js"))
{
	ok($shown{$file}, "test/clients/$file is shown in docs/");
}

# ---------------------------------------------------------------------
my $node = new_node('clients', logical => 1);
my $user = $node->safe_psql('postgres', 'SELECT current_user');
$ENV{PGHOST} = $node->host;
$ENV{PGPORT} = $node->port;
$ENV{PGUSER} = $user;
delete $ENV{$_} for qw(PGSERVICE PGOPTIONS PGPASSWORD PGSSLMODE PGAPPNAME);

# One database per client library, each with what docs/streams.md and
# docs/consumers.md set up.
my %db = (psycopg3 => 'psycopg3', psycopg2 => 'psycopg2', node => 'node');
foreach my $db (sort values %db)
{
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, q{
		CREATE EXTENSION event_log;
		CREATE SCHEMA shop;
		SELECT event_log.create_stream('shop.cart_events', 4);
		SELECT event_log.create_stream('shop.orders', 2);
		INSERT INTO shop.orders (key, type, payload)
		SELECT 'order-' || i, 'Placed', jsonb_build_object('n', i) FROM generate_series(1, 8) i;
		CREATE TABLE invoices (order_key text PRIMARY KEY, n int);
	});
}

# The command that runs a file of test/clients/ (or a driver script) with
# its library's language.
sub command
{
	my ($lib, $file, @args) = @_;
	return $lib eq 'node'
	  ? [ 'node', $file, @args ]
	  : [ $python, $file, @args ];
}

# Run to the end; returns (exit status, stdout, stderr).
sub run_client
{
	my ($db, $cmd) = @_;
	local $ENV{PGDATABASE} = $db;
	my ($out, $err) = ('', '');
	IPC::Run::run($cmd, '<', \undef, '>', \$out, '2>', \$err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	return ($? >> 8, $out, $err);
}

# Start in the background; returns the handle, output in $$out and $$err.
sub start_client
{
	my ($db, $cmd, $out, $err) = @_;
	local $ENV{PGDATABASE} = $db;
	return IPC::Run::start($cmd, '<', \undef, '>', $out, '2>', $err);
}

# Wait until CHECK returns true (pumping HANDLE's output), at most SECONDS
# (30: what the examples wait for takes well under a second).
sub wait_for
{
	my ($handle, $check, $seconds) = @_;
	my $deadline = time() + ($seconds // 30);
	while (time() < $deadline)
	{
		$handle->pump_nb if $handle && $handle->pumpable;
		return 1 if $check->();
		usleep(50_000);
	}
	return 0;
}

sub stop_client
{
	my ($handle) = @_;
	$handle->signal('TERM') if $handle->pumpable;
	eval { $handle->finish };
	return;
}

# A Python driver that loads an example with exec(), as written, and gives
# it a connection of the library named by argv[1].
sub python_driver
{
	my ($name, $body) = @_;
	return EventLogTest::write_script($node, $name, qq{import json, sys
if sys.argv[1] == "psycopg3":
    import psycopg
    conn = psycopg.connect()
    Error, code = psycopg.Error, lambda e: e.sqlstate
else:
    import psycopg2
    conn = psycopg2.connect("")
    Error, code = psycopg2.Error, lambda e: e.pgcode
example = sys.argv[2]
exec(compile(open(example).read(), example, "exec"))
$body});
}

# ---------------------------------------------------------------------
# shard_for() in Python and in SQL.
{
	my $keys = q{['cart-1', 'cart-2', 'cart-3', 'ünïcødé', 'x', 'a' * 1024] + [f'key-{i}' for i in range(300)]};
	my $script = EventLogTest::write_script($node, 'shard_for', qq{import json, sys
example = sys.argv[1]
exec(compile(open(example).read(), example, "exec"))
keys = $keys
print(json.dumps([[k, n, shard_for(k, n)] for k in keys for n in (1, 4, 7, 1024)]))
});
	my ($rc, $out, $err) = run_client('postgres',
		[ $python, $script, "$clients/shard_for.py" ]);
	is($rc, 0, 'shard_for.py runs') or diag($err);
	my $mismatches = $node->safe_psql($db{psycopg3}, qq{
		SELECT count(*) FILTER (WHERE event_log.shard_for(e->>0, (e->>1)::int) <> (e->>2)::int),
		       count(*)
		FROM jsonb_array_elements(\$j\$$out\$j\$) e});
	is($mismatches, '0|1224', 'shard_for() in Python gives the shard of event_log.shard_for()');
}

# ---------------------------------------------------------------------
# Appends with expected_version: once without a conflict, then with another
# append committing while the example waits for the shard's lock.
foreach my $lib (@libs)
{
	my $db   = $db{$lib};
	my $file = "$clients/append_retry." . ($lib eq 'node' ? 'node.js' : "$lib.py");

	my ($rc, $out, $err) = run_client($db, command($lib, $file));
	is($rc, 0, "$lib: append_retry runs") or diag($err);
	is($out, "cart-7: appended version 1\n", "$lib: appends version 1 of a new cart");

	my $other = $node->background_psql($db);
	$other->query_safe(q{BEGIN;
		INSERT INTO shop.cart_events (key, type, payload) VALUES ('cart-7', 'ItemRemoved', '{}')});
	my ($pout, $perr) = ('', '');
	my $h = start_client($db, command($lib, $file), \$pout, \$perr);
	ok( wait_for(undef, sub {
				$node->safe_psql($db, q{SELECT count(*) FROM pg_locks
					WHERE locktype = 'advisory' AND objsubid = 17740 AND NOT granted}) eq '1';
			}),
		"$lib: the example waits for the shard's lock");
	$other->query_safe('COMMIT');
	$other->quit;
	ok($h->finish, "$lib: append_retry ends well after a conflict") or diag($perr);
	is( $pout,
		"cart-7: version conflict, retrying (Expected version 1, but the current version is 2.)\n"
		  . "cart-7: appended version 3\n",
		"$lib: it took the EL001 path, reloaded and appended on the new version");
	is( $node->safe_psql($db, q{SELECT string_agg(version || ':' || type || ':' || payload, ',' ORDER BY version)
		FROM event_log.replay('shop.cart_events', 'cart-7')}),
		'1:ItemAdded:{"qty": 1, "sku": "fig"},2:ItemRemoved:{},3:ItemAdded:{"qty": 1, "sku": "fig"}',
		"$lib: cart-7 holds both appends, the example's after the other one");
}
like(slurp_file($node->logfile),
	qr/ERROR:  version conflict on key "cart-7" of event stream "shop.cart_events"/,
	'the server raised the version conflict');

# ---------------------------------------------------------------------
# append_command() and follow(), with psycopg 3 and psycopg2.
foreach my $lib (qw(psycopg3 psycopg2))
{
	my $db     = $db{$lib};
	my $driver = python_driver('append_events', q{
ids = ["5b0e1f3c-8a4d-4c1e-9f2a-7d6b3c9e1a06", "5b0e1f3c-8a4d-4c1e-9f2a-7d6b3c9e1a07"]
events = [{"type": "ItemAdded", "payload": {"sku": "lime", "qty": 1}, "id": ids[0]},
          {"type": "CheckedOut", "payload": {}, "id": ids[1]}]
print(json.dumps(append_command(conn, "cart-6", 0, events)))
print(json.dumps(append_command(conn, "cart-6", 0, events)))
try:
    append_command(conn, "cart-6", 0, [{"type": "ItemAdded", "payload": {}}])
except Error as e:
    conn.rollback()
    print(code(e))
});
	my ($rc, $out, $err) = run_client($db,
		[ $python, $driver, $lib, "$clients/append_events.py" ]);
	is($rc, 0, "$lib: append_command() runs") or diag($err);
	is( $out,
		qq{[["cart-6", 1, 1, false], ["cart-6", 2, 2, false]]\n}
		  . qq{[["cart-6", 1, 1, true], ["cart-6", 2, 2, true]]\n}
		  . "EL001\n",
		"$lib: append_command() appends, reports duplicates, and raises EL001");
	is( $node->safe_psql($db, q{SELECT string_agg(version || ':' || type, ',' ORDER BY version)
		FROM event_log.replay('shop.cart_events', 'cart-6')}),
		'1:ItemAdded,2:CheckedOut', "$lib: the command's two events, once");

	# follow(): 250 events over 3 shards (pages of 100), and 5 more that are
	# appended once it has handled the first 250.
	$node->safe_psql($db, q{
		SELECT event_log.create_stream('shop.ledger', 3);
		INSERT INTO shop.ledger (key, type, payload)
		SELECT 'k' || i, 'Booked', '{}' FROM generate_series(1, 250) i});
	$driver = python_driver('follow', q{
class Done(Exception):
    pass
seen = []
other = psycopg2.connect("") if sys.argv[1] == "psycopg2" else psycopg.connect()
def handle(shard, seq, key, type_, payload):
    seen.append([shard, seq])
    if len(seen) == 250:
        other.cursor().execute("INSERT INTO shop.ledger (key, type, payload)"
                               " SELECT 'late' || i, 'Booked', '{}' FROM generate_series(1, 5) i")
        other.commit()
    if len(seen) == 255:
        raise Done
last = {0: 0, 1: 0, 2: 0}
try:
    follow(conn, "shop.ledger", 3, last, handle)
except Done:
    print(json.dumps(seen))
});
	($rc, $out, $err) = run_client($db,
		[ $python, $driver, $lib, "$clients/read_loop.py" ]);
	is($rc, 0, "$lib: follow() runs") or diag($err);
	is( $node->safe_psql($db, qq{
		SELECT count(*), count(DISTINCT (e->>0, e->>1)),
		       bool_and((e->>1)::bigint = n)
		FROM (SELECT e, row_number() OVER (PARTITION BY e->>0 ORDER BY o) AS n
		      FROM jsonb_array_elements(\$j\$$out\$j\$) WITH ORDINALITY AS t(e, o)) s
		JOIN (SELECT shard, max(seq) FROM shop.ledger GROUP BY shard) l ON l.shard = (e->>0)::int}),
		'255|255|t',
		"$lib: follow() delivers every event once, in seq order per shard, late ones too");
}

# ---------------------------------------------------------------------
# Consumer loops: commit_offset() with the effects, then auto-commit.
sub log_end    # "shard:last seq,..." of shop.orders
{
	my ($db) = @_;
	return $node->safe_psql($db, q{SELECT string_agg(shard || ':' || s, ',' ORDER BY shard)
		FROM (SELECT shard, max(seq) AS s FROM shop.orders GROUP BY shard) e});
}

sub committed
{
	my ($db, $group) = @_;
	return $node->safe_psql($db, qq{SELECT string_agg(shard || ':' || committed_seq, ',' ORDER BY shard)
		FROM event_log.consumer_lag WHERE group_name = '$group'});
}

sub append_orders
{
	my ($db, $from, $to) = @_;
	$node->safe_psql($db, qq{INSERT INTO shop.orders (key, type, payload)
		SELECT 'order-' || i, 'Placed', jsonb_build_object('n', i) FROM generate_series($from, $to) i});
	return;
}

foreach my $lib (@libs)
{
	my $db  = $db{$lib};
	my $ext = $lib eq 'node' ? 'node.js' : "$lib.py";

	my ($out, $err) = ('', '');
	my $h = start_client($db, command($lib, "$clients/consumer_commit.$ext"), \$out, \$err);
	my $end = log_end($db);
	ok(wait_for($h, sub { committed($db, 'billing') eq $end }),
		"$lib: consumer_commit commits its offsets") or diag($err);
	append_orders($db, 9, 12);
	$end = log_end($db);
	ok(wait_for($h, sub { committed($db, 'billing') eq $end }),
		"$lib: and those of events appended while it waits");
	stop_client($h);
	is( $node->safe_psql($db, q{SELECT count(*), min(n), max(n) FROM invoices}),
		'12|1|12', "$lib: its effects committed with them, once per event");

	# auto_commit: a poll commits what the previous one returned.
	($out, $err) = ('', '');
	$h = start_client($db, command($lib, "$clients/consumer_autocommit.$ext"), \$out, \$err);
	ok(wait_for($h, sub { ($out =~ tr/\n//) == 12 }),
		"$lib: consumer_autocommit handles the events") or diag($err);
	my $first = log_end($db);
	is(committed($db, 'audit'), '0:0,1:0', "$lib: nothing is committed before the next poll");
	append_orders($db, 13, 14);
	ok(wait_for($h, sub { committed($db, 'audit') eq $first }),
		"$lib: the next poll commits the first batch") or diag($err);
	ok(wait_for($h, sub { ($out =~ tr/\n//) == 14 }), "$lib: and returns the new events");
	my $second = log_end($db);
	append_orders($db, 15, 15);
	ok(wait_for($h, sub { committed($db, 'audit') eq $second }),
		"$lib: the poll after that commits the second batch") or diag($err);
	stop_client($h);
	my %n = map { $_ => 1 } $out =~ /^Placed \{["']n["']: ?(\d+)\}$/mg;
	is(join(',', sort { $a <=> $b } keys %n), join(',', 1 .. 15),
		"$lib: handle() printed every event");
}

# ---------------------------------------------------------------------
# Stopping cleanly (psycopg 3): the polls auto-commit on an autocommit
# connection, and commit_polled() in `finally` commits the last batch.
{
	my $db = $db{psycopg3};
	$node->safe_psql($db, q{SELECT * FROM event_log.reset_offsets('audit', 'shop.orders', 'start')});
	my ($out, $err) = ('', '');
	my $h = start_client($db, [ $python, "$clients/consumer_shutdown.psycopg3.py" ], \$out, \$err);
	my $first = log_end($db);
	ok(wait_for($h, sub { ($out =~ tr/\n//) == 15 }),
		'consumer_shutdown handles the events') or diag($err);
	append_orders($db, 16, 17);
	ok(wait_for($h, sub { ($out =~ tr/\n//) == 17 }), 'and those appended while it waits')
	  or diag($err);
	is(committed($db, 'audit'), $first,
		'its polls commit while it runs (an autocommit connection), one batch behind');
	# Wait until it is in its next poll, so that the event appended after the
	# signal is the last batch.
	ok( wait_for($h, sub {
				$node->safe_psql($db, q{SELECT count(*) FROM pg_stat_activity
					WHERE datname = current_database() AND state = 'active'
					  AND query LIKE '%event_log.poll(%' AND pid <> pg_backend_pid()}) eq '1';
			}),
		'consumer_shutdown waits in poll()');
	$h->signal('TERM');
	append_orders($db, 18, 18);
	ok(eval { $h->finish }, 'consumer_shutdown ends on SIGTERM when its poll returns')
	  or diag($err);
	my @n = $out =~ /^Placed \{'n': (\d+)\}$/mg;
	is(join(',', sort { $a <=> $b } @n), join(',', 1 .. 18), 'it handled every event, once');
	is($n[-1], 18, 'the last one after the signal');
	is( committed($db, 'audit'),
		$node->safe_psql($db, qq{SELECT string_agg(shard || ':' || s, ',' ORDER BY shard)
			FROM (SELECT shard, max(seq) AS s FROM shop.orders
			      WHERE (payload->>'n')::int IN (@{[ join(',', @n) ]}) GROUP BY shard) e}),
		'commit_polled() committed exactly what it handled, the last batch included');
	is(committed($db, 'audit'), log_end($db), 'so the group is at the end of the stream');
}

# ---------------------------------------------------------------------
# Correlation and causation ids (psycopg 3), set for one transaction.
{
	my $db = $db{psycopg3};
	$node->safe_psql($db, q{SELECT event_log.track_conversations('shop.orders')});
	my $driver = python_driver('correlation_ids', q{
print(place_order(conn, "req-42", "cmd-place-order-42", "order-42", {"n": 42}))
conn.execute("SELECT event_log.append('shop.orders', 'order-43', 'OrderPlaced', '{\"n\": 43}')")
conn.commit()
conn.autocommit = True
print(place_order(conn, "req-42", "cmd-place-order-44", "order-42", {"n": 44}))
conn.execute("SELECT event_log.append('shop.orders', 'order-45', 'OrderPlaced', '{\"n\": 45}')")
});
	my ($rc, $out, $err) = run_client($db,
		[ $python, $driver, 'psycopg3', "$clients/correlation_ids.psycopg3.py" ]);
	is($rc, 0, 'place_order() runs') or diag($err);
	is($out, "1\n2\n", 'place_order() returns the versions it appended');
	is( $node->safe_psql($db, q{SELECT string_agg(key || ':' || version || ':' || payload || ':' || coalesce(metadata::text, 'null'), ',' ORDER BY seq)
		FROM shop.orders WHERE key IN ('order-42', 'order-43', 'order-45')}),
		'order-42:1:{"n": 42}:{"causation_id": "cmd-place-order-42", "correlation_id": "req-42"},'
		  . 'order-43:1:{"n": 43}:null,'
		  . 'order-42:2:{"n": 44}:{"causation_id": "cmd-place-order-44", "correlation_id": "req-42"},'
		  . 'order-45:1:{"n": 45}:null',
		'the events carry the ids in their metadata, and later transactions do not');
	is( $node->safe_psql($db, q{SELECT string_agg(stream || ':' || key || ':' || version || ':' || (metadata->>'causation_id'), ',')
		FROM event_log.conversation('req-42')}),
		'shop.orders:order-42:1:cmd-place-order-42,shop.orders:order-42:2:cmd-place-order-44',
		'conversation() returns them');
}

# ---------------------------------------------------------------------
# follow_all(): read_all() from a saved position, with psycopg 3 and psycopg2.
foreach my $lib (qw(psycopg3 psycopg2))
{
	my $db = $db{$lib};
	$node->safe_psql($db, q{
		SELECT event_log.create_stream('shop.feed', 3);
		INSERT INTO shop.feed (key, type, payload)
		SELECT 'k' || i, 'Booked', '{}' FROM generate_series(1, 250) i;
		CREATE TABLE feed_seen (key text PRIMARY KEY);
		CREATE TABLE feed_position (id int PRIMARY KEY, position bigint[])});
	# Effects (feed_seen) and position in one transaction; 5 events appended
	# and committed by another session while the 150th is handled; the run
	# ends when follow_all() is caught up.
	my $driver = python_driver('read_all_loop', q{
class Stop(Exception):
    pass
other = psycopg2.connect("") if sys.argv[1] == "psycopg2" else psycopg.connect()
with conn.cursor() as cur:
    cur.execute("SELECT position FROM feed_position")
    row = cur.fetchone()
conn.commit()
seen = []
def handle(key, type_, payload):
    seen.append(key)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO feed_seen VALUES (%s)", (key,))
    if len(seen) == 150 and row is None:
        with other.cursor() as cur:
            cur.execute("INSERT INTO shop.feed (key, type, payload)"
                        " SELECT 'late' || i, 'Booked', '{}' FROM generate_series(1, 5) i")
        other.commit()
def save_position(position):
    with conn.cursor() as cur:
        cur.execute("INSERT INTO feed_position VALUES (1, %s)"
                    " ON CONFLICT (id) DO UPDATE SET position = excluded.position", (position,))
class Clock:
    def sleep(self, seconds):
        raise Stop
time = Clock()
try:
    follow_all(conn, "shop.feed", row[0] if row else None, handle, save_position)
except Stop:
    print(json.dumps(seen))
});
	my ($rc, $out, $err) = run_client($db, [ $python, $driver, $lib, "$clients/read_all_loop.py" ]);
	is($rc, 0, "$lib: follow_all() runs") or diag($err);
	is( $node->safe_psql($db, qq{
		SELECT count(*), count(DISTINCT key), count(*) = (SELECT count(*) FROM shop.feed),
		       bool_and(seq = n)
		FROM (SELECT f.key, f.seq, row_number() OVER (PARTITION BY f.shard ORDER BY o) AS n
		      FROM jsonb_array_elements_text(\$j\$$out\$j\$) WITH ORDINALITY AS t(k, o)
		      JOIN shop.feed f ON f.key = t.k) s}),
		'255|255|t|t',
		"$lib: follow_all() delivers every event once, in seq order per shard, late ones too");
	is( $node->safe_psql($db, q{SELECT (SELECT count(*) FROM feed_seen),
		(SELECT position FROM feed_position) = (SELECT array_agg(s ORDER BY shard)
			FROM (SELECT shard, max(seq) AS s FROM shop.feed GROUP BY shard) e)}),
		'255|t', "$lib: its effects and its position committed together");

	# A new run resumes from the saved position: only what came since.
	$node->safe_psql($db, q{INSERT INTO shop.feed (key, type, payload)
		SELECT 'more' || i, 'Booked', '{}' FROM generate_series(1, 7) i});
	($rc, $out, $err) = run_client($db, [ $python, $driver, $lib, "$clients/read_all_loop.py" ]);
	is($rc, 0, "$lib: follow_all() runs again") or diag($err);
	is( join(',', sort $out =~ /"(more\d+)"/g) . ' ' . ($out =~ tr/"//) / 2,
		join(',', map { "more$_" } 1 .. 7) . ' 7',
		"$lib: resumed from the saved position, it delivers the new events only");
	is($node->safe_psql($db, q{SELECT count(*) FROM feed_seen}), '262',
		"$lib: every event handled once over both runs");
}

# ---------------------------------------------------------------------
# The CDC reader, psycopg2 (psycopg 3 and node-postgres have no replication
# protocol client).
{
	my $db = 'postgres';
	$node->safe_psql($db, q{
		CREATE EXTENSION event_log;
		SELECT event_log.create_stream('public.carts', 4);
		SELECT event_log.create_stream('public.other', 1)});
	$node->safe_psql($db,
		q{SELECT pg_create_logical_replication_slot('carts_feed', 'event_log')});
	$node->safe_psql($db, q{
		INSERT INTO other (key, type, payload) VALUES ('x', 'Ignored', '{}');
		INSERT INTO carts (key, type, payload) VALUES ('cart-1', 'ItemAdded', '{}'), ('cart-2', 'ItemAdded', '{}')});
	my $before_commit = $node->safe_psql($db, q{
		BEGIN;
		INSERT INTO carts (key, type, payload) VALUES ('cart-3', 'CheckedOut', '{}');
		SELECT pg_current_wal_insert_lsn();
		COMMIT});

	my ($out, $err) = ('', '');
	my $h = start_client($db, [ $python, "$clients/cdc_reader.psycopg2.py" ], \$out, \$err);
	ok(wait_for($h, sub { ($out =~ tr/\n//) >= 3 }), 'cdc_reader prints the events')
	  or diag($err);
	is( $out,
		"public.carts 2 1 cart-1 ItemAdded\npublic.carts 0 1 cart-2 ItemAdded\n"
		  . "public.carts 3 1 cart-3 CheckedOut\n",
		'cdc_reader prints the events of its stream, in commit order');
	# force=True: the feedback goes out at once, not after status_interval (10 s).
	ok( wait_for($h, sub {
				$node->safe_psql($db, qq{SELECT confirmed_flush_lsn > '$before_commit'
					FROM pg_replication_slots WHERE slot_name = 'carts_feed'}) eq 't';
			}, 5),
		"cdc_reader's feedback moves confirmed_flush_lsn past the last commit at once");
	stop_client($h);
	$node->poll_query_until($db,
		q{SELECT NOT active FROM pg_replication_slots WHERE slot_name = 'carts_feed'})
	  or die 'the slot stays active';
	is($node->safe_psql($db, q{SELECT count(*) FROM pg_logical_slot_peek_changes('carts_feed', NULL, NULL)}),
		'0', 'the slot holds nothing the reader has processed');

	$node->safe_psql($db, q{INSERT INTO carts (key, type, payload) VALUES ('cart-4', 'ItemAdded', '{}')});
	($out, $err) = ('', '');
	$h = start_client($db, [ $python, "$clients/cdc_reader.psycopg2.py" ], \$out, \$err);
	ok(wait_for($h, sub { ($out =~ tr/\n//) >= 1 }), 'a restarted cdc_reader goes on')
	  or diag($err);
	usleep(300_000);
	$h->pump_nb if $h->pumpable;
	is($out, "public.carts 0 2 cart-4 ItemAdded\n", 'from where it had confirmed, with nothing again');
	stop_client($h);
}

done_testing();
