# Streams across crashes and replication:
#  - an immediate shutdown in the middle of concurrent appends loses no
#    committed event and leaves every shard dense, and appends resume after
#    the last committed seq;
#  - a physical standby serves the same dense log;
#  - a logical replication subscriber whose table is a stream keeps the
#    publisher's positions (shard, seq, version, event_id) unchanged.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EventLogTest;

my $primary = new_node('primary', logical => 1,
	conf => "max_prepared_transactions = 10\n");
$primary->safe_psql('postgres', q{
	CREATE EXTENSION event_log;
	SELECT event_log.create_stream('public.orders', 4);
});

# --- crash in the middle of concurrent appends --------------------------

my $script = write_script($primary, 'append', <<'EOF');
\set k random(1, 200)
BEGIN;
INSERT INTO orders (key, type, payload) VALUES ('order-' || :k, 'Placed', '{"n": 1}');
SELECT * FROM event_log.append('orders', 'order-' || :k, 'Paid', '{"n": 2}');
COMMIT;
EOF
my $load = start_pgbench($primary, [ '-c', '4', '-j', '2', '-T', '60', '-f', $script ]);

# Let some transactions commit, then crash.
$primary->poll_query_until('postgres', 'SELECT count(*) >= 400 FROM orders')
  or die "appends did not start";
$primary->stop('immediate');
$load->finish;    # pgbench fails once the server is gone; that is expected

$primary->start;
my $after_crash = $primary->safe_psql('postgres', 'SELECT count(*) FROM orders');
cmp_ok($after_crash, '>=', 400, 'committed events survive the crash');
check_dense($primary, 'orders', 'after crash recovery');

# Appends resume right after each shard's last committed seq.
my $resumed = $primary->safe_psql('postgres', q{
	WITH before AS (SELECT shard, max(seq) AS last FROM orders GROUP BY shard),
	     a AS (SELECT * FROM event_log.append('orders', 'order-1', 'Shipped', '{}'))
	SELECT a.seq = before.last + 1 FROM a JOIN before USING (shard)
});
is($resumed, 't', 'the first append after recovery takes the next seq');

# A prepared append survives the crash and still holds its shard.
$primary->safe_psql('postgres', q{
	BEGIN;
	SELECT * FROM event_log.append('orders', 'order-2', 'Prepared', '{}');
	PREPARE TRANSACTION 'before_crash';
});
$primary->stop('immediate');
$primary->start;
my ($rc, $stdout, $stderr) = $primary->psql('postgres', q{
	SET lock_timeout = '200ms';
	SELECT * FROM event_log.append('orders', 'order-2', 'Blocked', '{}');
});
like($stderr, qr/lock timeout/, 'a recovered prepared append still holds its shard');
$primary->safe_psql('postgres', "COMMIT PREPARED 'before_crash'");
is( $primary->safe_psql('postgres',
		"SELECT array_agg(type ORDER BY version) FROM orders WHERE key = 'order-2' AND type IN ('Prepared', 'After')"
	),
	'{Prepared}',
	'the prepared append is committed after recovery');
$primary->safe_psql('postgres', "SELECT event_log.append('orders', 'order-2', 'After', '{}')");
check_dense($primary, 'orders', 'after COMMIT PREPARED');

# --- physical standby ----------------------------------------------------

$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->start;
$primary->safe_psql('postgres', q{
	INSERT INTO orders (key, type, payload)
	SELECT 'order-' || i, 'Placed', '{}' FROM generate_series(1, 500) i;
});
$primary->wait_for_catchup($standby);
is( $standby->safe_psql('postgres', 'SELECT count(*), sum(seq) FROM orders'),
	$primary->safe_psql('postgres', 'SELECT count(*), sum(seq) FROM orders'),
	'the standby has the same log');
check_dense($standby, 'orders', 'on the standby');
is( $standby->safe_psql('postgres',
		"SELECT count(*) FROM event_log.read('orders', 0, after_seq => 0, max_count => 100000)"),
	$primary->safe_psql('postgres', 'SELECT count(*) FROM orders WHERE shard = 0'),
	'read() works on the standby');
($rc, $stdout, $stderr) = $standby->psql('postgres',
	"SELECT event_log.append('orders', 'x', 'T', '{}')");
like($stderr, qr/read-only/, 'the standby refuses appends');

# --- logical replication into a stream ------------------------------------

my $subscriber = new_node('subscriber');
$subscriber->safe_psql('postgres', q{
	CREATE EXTENSION event_log;
	SELECT event_log.create_stream('public.orders', 4);
});
$primary->safe_psql('postgres', 'CREATE PUBLICATION orders_pub FOR TABLE orders');
my $connstr = $primary->connstr . ' dbname=postgres';
$subscriber->safe_psql('postgres',
	"CREATE SUBSCRIPTION orders_sub CONNECTION '$connstr' PUBLICATION orders_pub");
$subscriber->wait_for_subscription_sync($primary, 'orders_sub');
$primary->safe_psql('postgres', q{
	SELECT event_log.append('orders', 'order-7', 'Refunded', '{"amount": 5}');
	INSERT INTO orders (key, type, payload) VALUES ('order-8', 'Placed', '{}');
});
$primary->wait_for_catchup('orders_sub');

is( stream_positions($subscriber, 'orders'),
	stream_positions($primary, 'orders'),
	'the subscriber keeps the publisher\'s positions');
check_dense($subscriber, 'orders', 'on the subscriber');

# The subscriber's copy is append-only too.
($rc, $stdout, $stderr) = $subscriber->psql('postgres', 'DELETE FROM orders');
like($stderr, qr/cannot DELETE event stream/, 'the subscriber refuses DELETE');

$subscriber->stop;
$standby->stop;
$primary->stop;
done_testing();
