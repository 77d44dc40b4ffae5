/*-------------------------------------------------------------------------
 *
 * main.c
 *	  event_log_kafka: stream the events of an event_log slot into Kafka.
 *
 * The program reads a logical replication slot of the event_log output
 * plugin and produces each event to Kafka: one topic per stream, partition
 * = shard, key = the event's key, value = the plugin's line.  The loop is
 * single-threaded: read what the server sent, hand events to librdkafka
 * (which sends them from its own threads), serve delivery reports, and
 * confirm to the slot the position the ledger allows (positions.c): the
 * end of the last transaction all of whose events, and all events before
 * them, Kafka has acknowledged.  A crash anywhere therefore loses nothing:
 * the slot restarts at or before the first event Kafka lacks, and only
 * events after the confirmed position can come twice.
 *
 * Options come from the command line and from a configuration file
 * (--config), applied in command-line order, so that later ones override
 * earlier ones.  Progress goes to stderr every --status-interval seconds
 * and on SIGUSR1, and to --status-file if given.  SIGTERM and SIGINT stop
 * cleanly: wait for Kafka's acknowledgements (bounded), confirm, exit 0.
 * Exit codes are in bridge.h and docs/kafka.md.
 *
 *-------------------------------------------------------------------------
 */
#include "bridge.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int			br_verbose = 0;
volatile int br_stop_requested = 0;
volatile int br_status_requested = 0;

static const char *progname = "event_log_kafka";

typedef struct BrOptions
{
	char	   *dbname;
	char	   *slot;
	char	   *topic_template;
	char	   *status_file;
	char	   *transactional_id;
	int			status_interval;	/* seconds; 0: only on SIGUSR1 */
	int			txn_ms;			/* transactional: longest Kafka transaction */
	int			flush_timeout;	/* seconds to wait for Kafka when stopping */
	br_lsn		endpos;
	char	  **streams;
	int			nstreams;
	char	  **props;			/* librdkafka name=value */
	int			nprops;
	char	  **plugin_options; /* output plugin name=value */
	int			noptions;
} BrOptions;

/* The topic of each stream met so far (few streams: a list). */
typedef struct BrRoute
{
	char	   *stream;
	BrTopic    *topic;
	struct BrRoute *next;
} BrRoute;

/* One line to stderr: the program's name, a prefix, the message. */
static void
vlog(const char *prefix, const char *fmt, va_list ap)
{
	fprintf(stderr, "%s: %s", progname, prefix);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

void
br_log(const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vlog("", fmt, ap);
	va_end(ap);
}

void
br_debug(const char *fmt,...)
{
	va_list		ap;

	if (!br_verbose)
		return;
	va_start(ap, fmt);
	vlog("", fmt, ap);
	va_end(ap);
}

void
br_fatal(int code, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vlog("error: ", fmt, ap);
	va_end(ap);
	exit(code);
}

void *
br_malloc(size_t size)
{
	void	   *p = malloc(size);

	if (p == NULL)
		br_fatal(BR_EXIT_SOFTWARE, "out of memory");
	return p;
}

char *
br_strdup(const char *s)
{
	return br_strndup(s, strlen(s));
}

char *
br_strndup(const char *s, size_t n)
{
	char	   *p = br_malloc(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

static void
usage(void)
{
	printf("%s streams the events of an event_log replication slot into Kafka.\n\n"
		   "Usage:\n  %s [OPTION]...\n\n"
		   "Options:\n"
		   "  -d, --dbname=CONNSTR         database to connect to (a name or a connection string)\n"
		   "  -S, --slot=SLOTNAME          logical replication slot (plugin event_log) to read\n"
		   "  -b, --bootstrap-servers=LIST Kafka brokers (same as -X bootstrap.servers=LIST)\n"
		   "  -s, --stream=NAME            carry only this stream (schema.table; repeatable)\n"
		   "  -t, --topic-template=TPL     topic per stream, from {schema} {table} {stream}\n"
		   "                               (default: {stream}, i.e. schema.table)\n"
		   "  -X NAME=VALUE                librdkafka producer property (repeatable)\n"
		   "  -o NAME=VALUE                output plugin option, such as types=A,B (repeatable)\n"
		   "  -c, --config=FILE            read options from FILE (name = value lines)\n"
		   "      --transactional-id=ID    exactly-once mode: a transactional producer\n"
		   "      --transaction-ms=MS      longest Kafka transaction (default 100)\n"
		   "      --status-interval=SECS   progress to stderr every SECS (default 10, 0: off)\n"
		   "      --status-file=PATH       also write progress to PATH (replaced atomically)\n"
		   "      --flush-timeout=SECS     wait for Kafka when stopping (default 30)\n"
		   "  -E, --endpos=LSN             stop once everything up to LSN is confirmed\n"
		   "  -v, --verbose                more messages\n"
		   "  -?, --help                   show this help, then exit\n\n"
		   "SIGUSR1 prints progress now.  Exit codes: 0 stopped, 64 usage, 70 internal error,\n"
		   "75 temporary failure (restart me), 78 configuration (fix it first).\n"
		   "Documentation: docs/kafka.md\n", progname, progname);
}

/* "name=value" with a non-empty name, or an error naming where it came from */
static char *
name_value(const char *arg, const char *what, const char *where)
{
	const char *eq = strchr(arg, '=');

	if (eq == NULL || eq == arg)
		br_fatal(BR_EXIT_USAGE, "%s: %s \"%s\" is not NAME=VALUE", where, what, arg);
	return br_strdup(arg);
}

static char **
push(char **list, int *n, char *item)
{
	list = realloc(list, sizeof(char *) * (*n + 1));
	if (list == NULL)
		br_fatal(BR_EXIT_SOFTWARE, "out of memory");
	list[(*n)++] = item;
	return list;
}

static int
int_value(const char *value, const char *name, const char *where, int min, int max)
{
	char	   *end;
	long		v;

	errno = 0;
	v = strtol(value, &end, 10);
	if (errno != 0 || end == value || *end != '\0' || v < min || v > max)
		br_fatal(BR_EXIT_USAGE, "%s: %s must be an integer from %d to %d, not \"%s\"",
				 where, name, min, max, value);
	return (int) v;
}

static void read_config(BrOptions *o, const char *path);

/* Apply one option by its long name (command line and file alike). */
static void
apply_option(BrOptions *o, const char *name, const char *value, const char *where)
{
	if (strcmp(name, "dbname") == 0)
		o->dbname = br_strdup(value);
	else if (strcmp(name, "slot") == 0)
	{
		size_t		n = strlen(value);

		if (n == 0 || n > 63 || strspn(value, "abcdefghijklmnopqrstuvwxyz0123456789_") != n)
			br_fatal(BR_EXIT_USAGE, "%s: replication slot name \"%s\" is not valid\n"
					 "HINT:  Slot names have 1 to 63 lower case letters, digits and underscores.",
					 where, value);
		o->slot = br_strdup(value);
	}
	else if (strcmp(name, "bootstrap-servers") == 0)
	{
		char	   *p = br_malloc(strlen(value) + 32);

		sprintf(p, "bootstrap.servers=%s", value);
		o->props = push(o->props, &o->nprops, p);
	}
	else if (strcmp(name, "stream") == 0)
	{
		if (value[0] == '\0')
			br_fatal(BR_EXIT_USAGE, "%s: an empty stream name", where);
		o->streams = push(o->streams, &o->nstreams, br_strdup(value));
	}
	else if (strcmp(name, "topic-template") == 0)
		o->topic_template = br_strdup(value);
	else if (strcmp(name, "status-interval") == 0)
		o->status_interval = int_value(value, name, where, 0, 86400);
	else if (strcmp(name, "status-file") == 0)
		o->status_file = br_strdup(value);
	else if (strcmp(name, "transactional-id") == 0)
	{
		if (value[0] == '\0')
			br_fatal(BR_EXIT_USAGE, "%s: an empty transactional id", where);
		o->transactional_id = br_strdup(value);
	}
	else if (strcmp(name, "transaction-ms") == 0)
		o->txn_ms = int_value(value, name, where, 1, 600000);
	else if (strcmp(name, "flush-timeout") == 0)
		o->flush_timeout = int_value(value, name, where, 0, 86400);
	else if (strcmp(name, "endpos") == 0)
	{
		if (!br_parse_lsn(value, &o->endpos))
			br_fatal(BR_EXIT_USAGE, "%s: endpos \"%s\" is not an LSN such as 0/16B3748", where, value);
	}
	else if (strcmp(name, "plugin-option") == 0)
	{
		char	   *nv = name_value(value, "plugin option", where);

		if (strncmp(nv, "include-transaction=", 20) == 0 || strncmp(nv, "streams=", 8) == 0)
			br_fatal(BR_EXIT_USAGE, "%s: plugin option \"%s\" is set by the bridge\n"
					 "HINT:  Choose streams with --stream.", where, nv);
		o->plugin_options = push(o->plugin_options, &o->noptions, nv);
	}
	else if (strcmp(name, "config") == 0)
		read_config(o, value);
	else if (strcmp(name, "verbose") == 0)
		br_verbose = strcmp(value, "0") != 0 && strcmp(value, "off") != 0 &&
			strcmp(value, "false") != 0;
	else if (strncmp(name, "kafka.", 6) == 0 && name[6] != '\0')
	{
		char	   *p = br_malloc(strlen(name) + strlen(value) + 2);

		sprintf(p, "%s=%s", name + 6, value);
		o->props = push(o->props, &o->nprops, p);
	}
	else
		br_fatal(BR_EXIT_USAGE, "%s: unknown option \"%s\"\n"
				 "HINT:  Kafka properties go in the file as kafka.NAME = VALUE.", where, name);
}

/*
 * The configuration file: "name = value" lines, names as the long options
 * (dbname, slot, stream, ...) or kafka.PROPERTY; # starts a comment line.
 */
static void
read_config(BrOptions *o, const char *path)
{
	FILE	   *f = fopen(path, "r");
	char		line[8192];
	int			lineno = 0;

	if (f == NULL)
		br_fatal(BR_EXIT_USAGE, "could not open configuration file \"%s\": %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f))
	{
		char		where[1024];
		char	   *p = line,
				   *eq,
				   *end;
		size_t		n = strlen(line);

		lineno++;
		snprintf(where, sizeof(where), "%s:%d", path, lineno);
		if (n == sizeof(line) - 1 && line[n - 1] != '\n')
			br_fatal(BR_EXIT_USAGE, "%s: line too long", where);
		while (n > 0 && isspace((unsigned char) line[n - 1]))
			line[--n] = '\0';
		while (isspace((unsigned char) *p))
			p++;
		if (*p == '\0' || *p == '#')
			continue;
		eq = strchr(p, '=');
		if (eq == NULL)
			br_fatal(BR_EXIT_USAGE, "%s: expected name = value", where);
		end = eq;
		while (end > p && isspace((unsigned char) end[-1]))
			end--;
		*end = '\0';
		eq++;
		while (isspace((unsigned char) *eq))
			eq++;
		if (strcmp(p, "config") == 0)
			br_fatal(BR_EXIT_USAGE, "%s: a configuration file cannot include another", where);
		apply_option(o, p, eq, where);
	}
	if (ferror(f))
		br_fatal(BR_EXIT_USAGE, "could not read configuration file \"%s\"", path);
	fclose(f);
}

static void
parse_options(BrOptions *o, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"dbname", required_argument, NULL, 'd'},
		{"slot", required_argument, NULL, 'S'},
		{"bootstrap-servers", required_argument, NULL, 'b'},
		{"stream", required_argument, NULL, 's'},
		{"topic-template", required_argument, NULL, 't'},
		{"config", required_argument, NULL, 'c'},
		{"endpos", required_argument, NULL, 'E'},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, '?'},
		{"transactional-id", required_argument, NULL, 1},
		{"transaction-ms", required_argument, NULL, 2},
		{"status-interval", required_argument, NULL, 3},
		{"status-file", required_argument, NULL, 4},
		{"flush-timeout", required_argument, NULL, 5},
		{NULL, 0, NULL, 0}
	};
	int			c;
	int			index;

	memset(o, 0, sizeof(BrOptions));
	o->topic_template = "{stream}";
	o->status_interval = 10;
	o->txn_ms = 100;
	o->flush_timeout = 30;

	if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-?") == 0))
	{
		usage();
		exit(BR_EXIT_OK);
	}
	while ((c = getopt_long(argc, argv, "d:S:b:s:t:c:E:X:o:v", longopts, &index)) != -1)
	{
		const char *name;

		switch (c)
		{
			case 'X':
				o->props = push(o->props, &o->nprops, name_value(optarg, "Kafka property", "-X"));
				continue;
			case 'o':
				apply_option(o, "plugin-option", optarg, "-o");
				continue;
			case 'v':
				br_verbose = 1;
				continue;
			case '?':
				fprintf(stderr, "Try \"%s --help\" for more information.\n", progname);
				exit(BR_EXIT_USAGE);
			default:
				break;
		}
		name = NULL;
		for (int i = 0; longopts[i].name; i++)
			if (longopts[i].val == c)
				name = longopts[i].name;
		if (name == NULL)
			br_fatal(BR_EXIT_USAGE, "unknown option");
		{
			char		where[64];

			snprintf(where, sizeof(where), "--%s", name);
			apply_option(o, name, optarg, where);
		}
	}
	if (optind < argc)
		br_fatal(BR_EXIT_USAGE, "too many command-line arguments (first is \"%s\")", argv[optind]);
	if (o->slot == NULL)
		br_fatal(BR_EXIT_USAGE, "no slot given\nHINT:  Use --slot=NAME.");
	if (o->dbname == NULL)
		o->dbname = "";			/* libpq's defaults: PGDATABASE and friends */
}

static void
on_stop(int sig)
{
	br_stop_requested = 1;
}

static void
on_usr1(int sig)
{
	br_status_requested = 1;
}

static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The topic for a stream name the plugin wrote, checked on first use. */
static BrTopic *
route(BrRoute **routes, BrPg *pg, BrKafka *kafka, const BrOptions *o, const BrLine *line)
{
	BrRoute    *r;
	BrStreamInfo info;

	for (r = *routes; r; r = r->next)
		if (strcmp(r->stream, line->stream) == 0)
			return r->topic;

	/*
	 * A stream created (or renamed) since the start; or one dropped since
	 * this event was written, which the catalog no longer knows: then its
	 * topic must at least hold this shard.
	 */
	if (!br_pg_lookup_stream(pg, line->stream, &info))
	{
		info.name = line->stream;
		info.shards = 0;
		if (!br_split_stream_name(line->stream, &info.schema, &info.table))
			br_fatal(BR_EXIT_SOFTWARE, "cannot read stream name %s in the plugin's output", line->stream);
		br_log("stream %s is no longer in the catalog; its topic must have more than %d partitions",
			   line->stream, line->shard);
	}
	r = br_malloc(sizeof(BrRoute));
	r->stream = br_strdup(line->stream);
	r->topic = br_kafka_topic(kafka, &info, o->topic_template,
							  info.shards > 0 ? info.shards : line->shard + 1);
	r->next = *routes;
	*routes = r;
	return r->topic;
}

typedef struct BrProgress
{
	uint64_t	received;		/* events read from the slot */
	uint64_t	last_acked;		/* acknowledged at the last report */
	double		last_time;
	br_lsn		received_lsn;
	br_lsn		confirmed;
} BrProgress;

static void
report(BrProgress *p, BrPg *pg, BrKafka *kafka, BrLedger *ledger, const BrOptions *o)
{
	double		now = now_seconds();
	uint64_t	acked = br_kafka_acked(kafka);
	double		rate = now > p->last_time ? (acked - p->last_acked) / (now - p->last_time) : 0;
	br_lsn		current = br_pg_current_lsn(pg);
	char		lag_bytes[32];
	char		text[1024];

	if (current != BR_INVALID_LSN)
		snprintf(lag_bytes, sizeof(lag_bytes), "%" PRIu64,
				 current > p->confirmed ? current - p->confirmed : 0);
	else
		strcpy(lag_bytes, "unknown");
	snprintf(text, sizeof(text),
			 "events_received=%" PRIu64 " events_acked=%" PRIu64
			 " events_per_second=%.1f lag_events=%" PRIu64 " lag_bytes=%s"
			 " received_lsn=%X/%X confirmed_lsn=%X/%X",
			 p->received, acked, rate, br_ledger_pending(ledger), lag_bytes,
			 (unsigned) (p->received_lsn >> 32), (unsigned) p->received_lsn,
			 (unsigned) (p->confirmed >> 32), (unsigned) p->confirmed);
	br_log("status: %s", text);
	if (o->status_file)
	{
		char	   *tmp = br_malloc(strlen(o->status_file) + 8);
		FILE	   *f;

		sprintf(tmp, "%s.tmp", o->status_file);
		f = fopen(tmp, "w");
		if (f == NULL || fprintf(f, "%s\n", text) < 0 || fclose(f) != 0 ||
			rename(tmp, o->status_file) != 0)
			br_log("could not write status file \"%s\": %s", o->status_file, strerror(errno));
		free(tmp);
	}
	p->last_acked = acked;
	p->last_time = now;
}

int
main(int argc, char **argv)
{
	BrOptions	o;
	BrPg	   *pg;
	BrLedger   *ledger;
	BrKafka    *kafka;
	BrStreamInfo *streams;
	int			nstreams;
	BrRoute    *routes = NULL;
	BrLine		line = {0};
	BrProgress	progress = {0};
	char	   *streams_option = NULL;
	br_lsn		sent_confirmed = BR_INVALID_LSN;
	br_lsn		server_sent = BR_INVALID_LSN;
	bool		in_txn = false;
	uint64_t	skipped = 0;	/* events Kafka had already */
	bool		force_feedback = false;
	bool		idle = true;
	uint64_t	iterations = 0;
	double		last_feedback,
				last_status,
				txn_started = 0;
	int			exit_code = BR_EXIT_OK;
	const char *error;
	struct sigaction sa;

	parse_options(&o, argc, argv);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	pg = br_pg_connect(o.dbname);
	br_pg_check_slot(pg, o.slot);
	nstreams = br_pg_list_streams(pg, o.streams, o.nstreams, &streams);

	ledger = br_ledger_create();
	kafka = br_kafka_create(o.props, o.nprops, o.transactional_id, ledger);

	/* Every topic is checked before the first event is read. */
	for (int i = 0; i < nstreams; i++)
	{
		BrRoute    *r = br_malloc(sizeof(BrRoute));

		r->stream = streams[i].name;
		r->topic = br_kafka_topic(kafka, &streams[i], o.topic_template, streams[i].shards);
		r->next = routes;
		routes = r;
	}
	if (o.nstreams > 0)
	{
		size_t		size = 1;

		for (int i = 0; i < o.nstreams; i++)
			size += strlen(o.streams[i]) + 2;
		streams_option = br_malloc(size);
		streams_option[0] = '\0';
		for (int i = 0; i < o.nstreams; i++)
		{
			if (i > 0)
				strcat(streams_option, ", ");
			strcat(streams_option, o.streams[i]);
		}
	}
	/*
	 * Transactional: Kafka may hold events past the slot's confirmed
	 * position (the bridge stopped between the Kafka commit and the
	 * confirmation); those are skipped, not sent twice.
	 */
	if (o.transactional_id)
	{
		BrTopic   **topics = br_malloc(sizeof(BrTopic *) * (nstreams > 0 ? nstreams : 1));
		int			n = 0;

		for (BrRoute *r = routes; r; r = r->next)
			topics[n++] = r->topic;
		br_kafka_read_tails(kafka, topics, n);
		br_log("read where each of the %d topic(s) ends in Kafka", n);
		free(topics);
	}
	br_pg_start(pg, o.slot, streams_option, o.plugin_options, o.noptions);
	br_log("streaming slot \"%s\" (%d stream%s checked) into Kafka%s",
		   o.slot, nstreams, nstreams == 1 ? "" : "s",
		   o.transactional_id ? ", transactional" : "");

	last_feedback = last_status = progress.last_time = now_seconds();
	for (;;)
	{
		const char *data;
		size_t		len;
		br_lsn		lsn;
		bool		reply = false;
		br_lsn		confirmable;
		double		now;
		BrPgResult	r;

		if (br_stop_requested)
			break;
		/* Delivery reports: when idle, and every 256 messages while busy. */
		if (idle || (++iterations & 255) == 0)
			br_kafka_poll(kafka, 0);
		idle = false;
		if (br_kafka_failed(kafka, &error))
		{
			br_log("error: %s", error);
			exit_code = BR_EXIT_TEMPFAIL;
			break;
		}

		now = now_seconds();
		/* Transactional: close the Kafka transaction at a Postgres boundary. */
		if (o.transactional_id && br_kafka_txn_open(kafka) && !in_txn &&
			now - txn_started >= o.txn_ms / 1000.0)
			br_kafka_txn_commit(kafka);

		/*
		 * What may be confirmed: see positions.c.  Not while a Kafka
		 * transaction is open (its events count once it commits), and not
		 * after a failure (an aborted transaction's events were delivered
		 * but are not in Kafka).
		 */
		if (!br_kafka_txn_open(kafka) && !br_kafka_failed(kafka, &error))
		{
			confirmable = br_ledger_confirmable(ledger);
			if (confirmable > progress.confirmed)
				progress.confirmed = confirmable;
			/* Idle: all received is in Kafka; the server's position is done. */
			if (!in_txn && br_ledger_empty(ledger) && server_sent > progress.confirmed)
				progress.confirmed = server_sent;
		}
		if (force_feedback ||
			(progress.confirmed > sent_confirmed && now - last_feedback >= 0.2) ||
			now - last_feedback >= 10)
		{
			br_pg_feedback(pg, progress.received_lsn, progress.confirmed);
			sent_confirmed = progress.confirmed;
			last_feedback = now;
			force_feedback = false;
		}
		if (o.endpos != BR_INVALID_LSN && progress.confirmed >= o.endpos)
		{
			br_log("reached endpos %X/%X", (unsigned) (o.endpos >> 32), (unsigned) o.endpos);
			break;
		}
		if (br_status_requested ||
			(o.status_interval > 0 && now - last_status >= o.status_interval))
		{
			br_status_requested = 0;
			report(&progress, pg, kafka, ledger, &o);
			last_status = now;
		}

		if (br_kafka_backlogged(kafka))
		{
			br_kafka_poll(kafka, 100);
			continue;
		}
		r = br_pg_read(pg, &data, &len, &lsn, &reply);
		if (r == BR_PG_NOTHING)
		{
			idle = true;
			br_pg_wait(pg, 50);
			continue;
		}
		if (r == BR_PG_END)
		{
			exit_code = BR_EXIT_TEMPFAIL;
			break;
		}
		if (r == BR_PG_KEEPALIVE)
		{
			if (lsn > server_sent)
				server_sent = lsn;
			if (lsn > progress.received_lsn && !in_txn && br_ledger_empty(ledger))
				progress.received_lsn = lsn;
			force_feedback = force_feedback || reply;
			continue;
		}

		if (lsn > progress.received_lsn)
			progress.received_lsn = lsn;
		if (!br_parse_line(data, len, &line, &error))
			br_fatal(BR_EXIT_SOFTWARE, "cannot read the plugin's output at %X/%X: %s: %.*s",
					 (unsigned) (lsn >> 32), (unsigned) lsn, error,
					 (int) (len > 200 ? 200 : len), data);
		switch (line.kind)
		{
			case BR_LINE_BEGIN:
				in_txn = true;
				break;
			case BR_LINE_COMMIT:
				/* the commit message's position is the end of the commit record */
				br_ledger_add_commit(ledger, lsn);
				in_txn = false;
				break;
			case BR_LINE_EVENT:
				{
					BrTopic    *topic = route(&routes, pg, kafka, &o, &line);

					if (o.transactional_id && br_kafka_has_event(topic, &line))
					{
						if (skipped++ == 0)
							br_log("skipping events Kafka already has, from %s shard %d seq %" PRId64,
								   line.stream, line.shard, line.seq);
						break;
					}

					if (o.transactional_id && !br_kafka_txn_open(kafka))
						txn_started = now;
					if (!br_kafka_produce(kafka, topic, &line, data, len))
						break;	/* stopping; the loop's test sees it */
					progress.received++;
					break;
				}
		}
	}

	/*
	 * Stopping: give Kafka the time to acknowledge what it has (not after a
	 * delivery failure: nothing after it may be confirmed anyway), confirm
	 * what the ledger allows, and say where we stopped.
	 */
	if (exit_code == BR_EXIT_OK)
	{
		/*
		 * Transactional, stopped inside a Postgres transaction: the open
		 * Kafka transaction holds part of it, so it is aborted, and nothing
		 * in it may be confirmed (its events were delivered, then aborted).
		 */
		if (o.transactional_id && in_txn)
			br_kafka_txn_abort(kafka);
		else
			br_kafka_flush(kafka, o.flush_timeout * 1000);
		if (!(o.transactional_id && in_txn) && !br_kafka_txn_open(kafka) &&
			!br_kafka_failed(kafka, &error))
		{
			br_lsn		c = br_ledger_confirmable(ledger);

			if (c > progress.confirmed)
				progress.confirmed = c;
		}
		br_pg_feedback(pg, progress.received_lsn, progress.confirmed);
	}
	else if (progress.confirmed > sent_confirmed)
		br_pg_feedback(pg, progress.received_lsn, progress.confirmed);
	report(&progress, pg, kafka, ledger, &o);
	if (progress.confirmed != BR_INVALID_LSN)
		br_log("stopped; slot \"%s\" confirmed up to %X/%X", o.slot,
			   (unsigned) (progress.confirmed >> 32), (unsigned) progress.confirmed);
	else
		br_log("stopped; nothing confirmed to slot \"%s\" in this run", o.slot);
	br_pg_finish(pg);
	br_kafka_destroy(kafka);
	return exit_code;
}
