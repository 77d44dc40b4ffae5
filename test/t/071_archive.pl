# The archive (docs/retention.md, "The archive"):
#  - kill -9 of a backend in the middle of an archiving removal: after
#    crash recovery every event is in the log or in the archive, once, and
#    enforcing again finishes the job;
#  - the archive exported to a file with psql -At, dropped, and imported
#    back from the file: a checksum over every event (archive and log) is
#    the same as before the removal;
#  - a file with one byte changed, or cut short, is refused and changes
#    nothing.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EventLogTest;

my $node = new_node('archive', conf => "restart_after_crash = on\n");
$node->safe_psql('postgres', q{
	CREATE EXTENSION event_log;
	SELECT event_log.create_stream('public.orders', 2);
	INSERT INTO orders (key, type, payload)
	SELECT 'order-' || i % 5000, 'OrderLine',
	       jsonb_build_object('n', i, 'note', 'line ' || i || E' with "quotes", \\ and \n newlines')
	FROM generate_series(1, 200000) i;
	SELECT event_log.set_retention('orders', max_events => 1000, keep_unconsumed => false, archive => true);
});

# One checksum over every event of the stream, from the archive below each
# watermark and the log above it, in (shard, seq) order.
my $everything = q{
	SELECT md5(string_agg(format('%s/%s/%s/%s/%s/%s/%s', shard, seq, key, version, type, payload, event_id),
	                      ',' ORDER BY shard, seq))
	FROM (SELECT a.* FROM generate_series(0, 1) s,
	           LATERAL event_log.read_archive('orders', s, 0, 1000000) a
	      UNION ALL
	      SELECT l.* FROM generate_series(0, 1) s,
	           LATERAL event_log.read('orders', s, event_log.low_watermark('orders', s) - 1, 1000000) l) e
};
my $before = $node->safe_psql('postgres', q{
	SELECT md5(string_agg(format('%s/%s/%s/%s/%s/%s/%s', shard, seq, key, version, type, payload, event_id),
	                      ',' ORDER BY shard, seq)) FROM orders});

# --- kill -9 in the middle of an archiving removal ------------------------
crash_during($node, q{SELECT * FROM event_log.enforce_retention('orders');}, 200, 'an archiving removal');
is($node->safe_psql('postgres', $everything), $before,
	'after the crash every event is in the log or the archive, once');
$node->safe_psql('postgres', q{SELECT count(*) FROM event_log.enforce_retention('orders')});
is($node->safe_psql('postgres', q{SELECT count(*) FROM orders}), '2000',
	'enforcing again finishes the removal');
is($node->safe_psql('postgres', $everything), $before,
	'archive and log hold every event, unchanged');

# --- export, drop, import ---------------------------------------------------
my $file = $node->basedir . '/orders.archive.jsonl';
my ($stdout, $stderr);
IPC::Run::run(
	[ 'psql', '-X', '-At', '-h', $node->host, '-p', $node->port, '-d', 'postgres',
	  '-c', q{SELECT * FROM event_log.export_archive('orders')} ],
	'>', $file, '2>', \$stderr)
  or die "export failed: $stderr";
my $lines = () = slurp_file($file) =~ /\n/g;
my $chunks = $node->safe_psql('postgres', 'SELECT count(*) FROM event_log.archive_chunks');
is($lines, 198000 + 1 + $chunks + 1, 'the file has a header, each chunk with its events, and a trailer');
is($node->safe_psql('postgres', q{
	SELECT event_log.drop_archive('orders', 0, 1000000) + event_log.drop_archive('orders', 1, 1000000)}),
	'198000', 'the archive is dropped once exported');
my ($rc, $out, $err) = $node->psql('postgres', 'SELECT count(*) FROM event_log.read_archive(\'orders\', 0)');
like($err, qr/has no event with seq 1/, 'reading the dropped archive is an error, not an empty result');

sub import_file
{
	my ($content) = @_;
	my $path = $node->basedir . '/import.jsonl';
	open(my $fh, '>', $path) or die;
	print $fh $content;
	close $fh;
	my ($o, $e) = ('', '');
	IPC::Run::run(
		[ 'psql', '-X', '-At', '-v', 'ON_ERROR_STOP=1', '-h', $node->host, '-p', $node->port,
		  '-d', 'postgres' ],
		'<', \"\\set file `cat $path`\nSELECT * FROM event_log.import_archive('orders', :'file');\n",
		'>', \$o, '2>', \$e);
	chomp $o;
	return ($o, $e);
}

my $content = slurp_file($file);
my ($o, $e) = import_file($content =~ s/"n": 12345,/"n": 12346,/r);
like($e, qr/does not match its checksum/, 'a file with a changed event is refused');
($o, $e) = import_file(substr($content, 0, length($content) - 200));
like($e, qr/trailer|ends inside|checksum/, 'a file cut short is refused');
is($node->safe_psql('postgres', 'SELECT count(*) FROM event_log.archive_chunks'), '0',
	'refused files change nothing');
($o, $e) = import_file($content);
is($o, "$chunks|198000|0", 'the file imports back') or diag($e);
is($node->safe_psql('postgres', $everything), $before,
	'after export, drop and import every event is there, unchanged');

$node->stop;
done_testing();
