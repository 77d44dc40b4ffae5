/*-------------------------------------------------------------------------
 *
 * bridge.h
 *	  What the files of event_log_kafka, the Kafka bridge, share.
 *
 * The bridge is a client program, not backend code: it links libpq and
 * librdkafka and nothing of the extension.  Its files, bottom up:
 *
 *	event_json.c	reading one line of the output plugin (the fields the
 *					bridge needs, without building a JSON tree)
 *	positions.c		the ledger of positions: which WAL position may be
 *					confirmed to the slot, given what Kafka acknowledged
 *	pgstream.c		Postgres: the catalog lookups, the replication
 *					connection, standby status updates
 *	kafka.c			Kafka: the producer, topics and their partitions,
 *					delivery reports
 *	main.c			options, the configuration file, the main loop,
 *					signals, progress reports, exit codes
 *
 * docs/kafka.md is the user guide; docs/design/kafka.md says why it works
 * this way.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EL_BRIDGE_H
#define EL_BRIDGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Exit codes, from sysexits.h, so that a supervisor can tell "restart me"
 * from "a human must fix the configuration" (docs/kafka.md, "Exit codes").
 */
#define BR_EXIT_OK			0	/* stopped by SIGTERM/SIGINT, or --endpos reached */
#define BR_EXIT_USAGE		64	/* bad command line or configuration file */
#define BR_EXIT_SOFTWARE	70	/* a bug, or the plugin sent what we cannot read */
#define BR_EXIT_TEMPFAIL	75	/* lost Postgres or Kafka: restart later */
#define BR_EXIT_CONFIG		78	/* slot, stream or topic not as required */

typedef uint64_t br_lsn;

#define BR_INVALID_LSN ((br_lsn) 0)

/* Logging: to stderr, one line each, prefixed with the program name. */
extern int	br_verbose;
extern void br_log(const char *fmt,...) __attribute__((format(printf, 1, 2)));
extern void br_debug(const char *fmt,...) __attribute__((format(printf, 1, 2)));
extern void br_fatal(int code, const char *fmt,...) __attribute__((format(printf, 2, 3), noreturn));
extern void *br_malloc(size_t size);
extern char *br_strdup(const char *s);
extern char *br_strndup(const char *s, size_t n);

/* Raised by signal handlers, read by the main loop. */
extern volatile int br_stop_requested;
extern volatile int br_status_requested;

/* --- event_json.c ---------------------------------------------------- */

typedef enum BrLineKind
{
	BR_LINE_EVENT,
	BR_LINE_BEGIN,
	BR_LINE_COMMIT
} BrLineKind;

/*
 * One line of the output plugin.  String fields point into buffers owned by
 * the caller's BrLine (key and type are unescaped; the others are copied as
 * they are, since the plugin never escapes anything in them).
 */
typedef struct BrLine
{
	BrLineKind	kind;
	char	   *stream;			/* as in the message: quoted SQL name */
	int			shard;
	int64_t		seq;
	int64_t		version;
	char	   *key;
	size_t		key_len;
	char	   *type;
	size_t		type_len;
	char	   *event_id;
	char	   *recorded_at;
	char	   *commit_lsn;		/* where the transaction's commit record starts */
	char	   *lsn;			/* events: where the event's insert is */
	char	   *buf;			/* storage of the strings above */
	size_t		bufsize;
} BrLine;

extern bool br_parse_line(const char *data, size_t len, BrLine *line,
						  const char **error);
extern bool br_split_stream_name(const char *name, char **schema, char **table);

/* --- positions.c ----------------------------------------------------- */

/*
 * The ledger: every event sent to Kafka and every transaction end, in the
 * order the slot sent them.  A transaction end's position becomes
 * confirmable when everything before it was acknowledged.
 */
typedef struct BrLedger BrLedger;

extern BrLedger *br_ledger_create(void);
extern uint64_t br_ledger_add_event(BrLedger *ledger);
extern void br_ledger_add_commit(BrLedger *ledger, br_lsn end_lsn);
extern void br_ledger_ack(BrLedger *ledger, uint64_t ticket);
extern br_lsn br_ledger_confirmable(BrLedger *ledger);
extern uint64_t br_ledger_pending(const BrLedger *ledger);
extern bool br_ledger_empty(const BrLedger *ledger);

/* --- pgstream.c ------------------------------------------------------ */

typedef struct BrStreamInfo
{
	char	   *name;			/* quoted, as the plugin writes it */
	char	   *schema;
	char	   *table;
	int			shards;			/* 0: no longer in the catalog */
} BrStreamInfo;

typedef struct BrPg BrPg;

extern BrPg *br_pg_connect(const char *conninfo);
extern void br_pg_check_slot(BrPg *pg, const char *slot);
extern int	br_pg_list_streams(BrPg *pg, char **names, int nnames,
							   BrStreamInfo **streams);
extern bool br_pg_lookup_stream(BrPg *pg, const char *name, BrStreamInfo *info);
extern br_lsn br_pg_current_lsn(BrPg *pg);
extern void br_pg_start(BrPg *pg, const char *slot, const char *streams_option,
						char **plugin_options, int noptions);

typedef enum BrPgResult
{
	BR_PG_NOTHING,				/* nothing to read now */
	BR_PG_DATA,					/* an XLogData message: data, len, lsn */
	BR_PG_KEEPALIVE,			/* a keepalive: lsn is the server's sent position */
	BR_PG_END					/* the stream ended */
} BrPgResult;

extern BrPgResult br_pg_read(BrPg *pg, const char **data, size_t *len,
							 br_lsn *lsn, bool *reply_requested);
extern void br_pg_wait(BrPg *pg, int timeout_ms);
extern void br_pg_feedback(BrPg *pg, br_lsn received, br_lsn confirmed);
extern void br_pg_finish(BrPg *pg);
extern bool br_parse_lsn(const char *s, br_lsn *lsn);

/* --- kafka.c --------------------------------------------------------- */

typedef struct BrKafka BrKafka;
typedef struct BrTopic BrTopic;

extern BrKafka *br_kafka_create(char **props, int nprops,
								const char *transactional_id, BrLedger *ledger);
extern BrTopic *br_kafka_topic(BrKafka *kafka, const BrStreamInfo *stream,
							   const char *template, int needed_partitions);
extern bool br_topic_name(const char *template, const char *schema,
						  const char *table, char **topic, const char **error);
extern bool br_kafka_produce(BrKafka *kafka, BrTopic *topic, const BrLine *line,
							 const char *value, size_t value_len);
extern void br_kafka_poll(BrKafka *kafka, int timeout_ms);
extern bool br_kafka_failed(BrKafka *kafka, const char **error);
extern bool br_kafka_backlogged(BrKafka *kafka);
extern void br_kafka_flush(BrKafka *kafka, int timeout_ms);
extern void br_kafka_txn_commit(BrKafka *kafka);
extern void br_kafka_txn_abort(BrKafka *kafka);
extern void br_kafka_read_tails(BrKafka *kafka, BrTopic **topics, int ntopics);
extern bool br_kafka_has_event(BrTopic *topic, const BrLine *line);
extern bool br_kafka_txn_open(BrKafka *kafka);
extern void br_kafka_destroy(BrKafka *kafka);
extern uint64_t br_kafka_acked(BrKafka *kafka);
extern uint64_t br_kafka_bytes(BrKafka *kafka);

#endif							/* EL_BRIDGE_H */
