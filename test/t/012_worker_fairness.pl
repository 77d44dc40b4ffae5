# One slow async projection cannot hold back the others (issue 11, item 5).
#  - A handler that sleeps 20 s per event: the background worker gives each
#    projection its own transaction and a time slice, and
#    event_log.handler_timeout stops the slow handler, so another role's
#    projection keeps up within seconds.
#  - While the slow one is running, a manual run_projections() of the other
#    projection is not blocked by the worker.
#  - A handler that catches the cancel and goes on ends the worker at twice
#    the timeout; the next worker records the projection as failed.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use EventLogTest;

my $node = new_node('fair', conf => qq{
shared_preload_libraries = 'event_log'
event_log.worker_naptime = '200ms'
event_log.handler_timeout = '3s'
event_log.retry_interval = '1h'
});
$node->safe_psql('postgres', q{
	CREATE EXTENSION event_log;
	CREATE ROLE slowpoke;
	CREATE ROLE quick;
	CREATE SCHEMA s AUTHORIZATION slowpoke;
	CREATE SCHEMA q AUTHORIZATION quick;
	SELECT event_log.create_stream('public.ev', 2);
	GRANT SELECT ON ev TO slowpoke, quick;
	SET ROLE slowpoke;
	SELECT event_log.create_projection('s.slow', 'ev',
		columns  => 'key text',
		handlers => jsonb_build_object('Slow', 'SELECT pg_sleep(20)'),
		mode     => 'async');
	SET ROLE quick;
	SELECT event_log.create_projection('q.fast', 'ev',
		columns  => 'key text, seq bigint',
		handlers => jsonb_build_object('*', 'INSERT INTO fast VALUES (e.key, e.seq)'),
		mode     => 'async');
});

# Slow events first on both shards, then ordinary ones.
$node->safe_psql('postgres', q{
	INSERT INTO ev (key, type, payload)
	SELECT 'k' || i, 'Slow', '{}' FROM generate_series(1, 4) i;
	INSERT INTO ev (key, type, payload)
	SELECT 'k' || i, 'Fast', '{}' FROM generate_series(1, 20) i;
});
my $start = time();
ok($node->poll_query_until('postgres',
		q{SELECT count(*) = 24 FROM q.fast}),
	'the quick projection catches up while the slow one runs');
my $took = time() - $start;
cmp_ok($took, '<', 15, "within seconds (took ${took}s), not after 20 s per slow event");

ok( $node->poll_query_until('postgres', q{
		SELECT count(*) > 0 FROM event_log.projection_lag
		 WHERE projection = 's.slow'::regclass
		   AND error LIKE 'handler ran longer than event_log.handler_timeout%'
	}),
	'the slow handler is stopped by handler_timeout and its shard recorded');

# While the worker is inside a slow handler again (errors retried at once
# after alter_projection()), a manual run of the quick projection is not
# blocked by the worker: each projection has its own transaction.
$node->safe_psql('postgres', q{SET ROLE slowpoke; SELECT event_log.alter_projection('s.slow')});
$node->safe_psql('postgres', q{INSERT INTO ev (key, type, payload) VALUES ('late', 'Fast', '{}')});
$start = time();
my $n = $node->safe_psql('postgres', q{
	SET ROLE quick;
	SELECT event_log.run_projections('q.fast');
	SELECT count(*) FROM q.fast;
});
$took = time() - $start;
ok($n =~ /25$/ || $node->poll_query_until('postgres', q{SELECT count(*) = 25 FROM q.fast}),
	'the quick projection has the late event');
cmp_ok($took, '<', 3, "a manual run did not wait for the worker's slow handler (took ${took}s)");

# A handler that catches the timeout's cancel and goes on: the worker ends
# itself at twice the timeout, the next worker records the projection as
# failed, and the other projections go on.
$node->safe_psql('postgres', q{
	SET ROLE slowpoke;
	CREATE FUNCTION s.stubborn() RETURNS int LANGUAGE plpgsql AS $$
	BEGIN
		LOOP
			BEGIN
				PERFORM pg_sleep(3600);
			EXCEPTION WHEN query_canceled THEN
				NULL;
			END;
		END LOOP;
	END $$;
	SELECT event_log.create_projection('s.stubborn', 'ev',
		columns  => 'key text',
		handlers => jsonb_build_object('Stubborn', 'SELECT s.stubborn()'),
		mode     => 'async');
});
$node->safe_psql('postgres', q{
	INSERT INTO ev (key, type, payload) VALUES ('st', 'Stubborn', '{}');
	INSERT INTO ev (key, type, payload) VALUES ('after', 'Fast', '{}');
});
ok( $node->poll_query_until('postgres', q{
		SELECT count(*) > 0 FROM event_log.projection_lag
		 WHERE projection = 's.stubborn'::regclass
		   AND error LIKE 'a handler ignored the cancel of event_log.handler_timeout%'
	}),
	'a handler that ignores the cancel ends the worker, and the next one records it');
ok($node->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM q.fast WHERE key = 'after'}),
	'the other projection goes on');
ok($node->log_contains('terminating background worker "event_log worker"'),
	'the worker was ended, not left spinning');

$node->stop;
done_testing();
