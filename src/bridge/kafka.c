/*-------------------------------------------------------------------------
 *
 * kafka.c
 *	  The bridge's side of Kafka: the producer, topics, delivery reports.
 *
 * One librdkafka producer, idempotent (enable.idempotence: the broker drops
 * its own retries' duplicates and keeps each partition in produce order)
 * and gapless (enable.gapless.guarantee: a message that cannot be written
 * stops the producer, rather than letting later messages of its partition
 * through).  Each event becomes one message: topic from the stream's name
 * through the topic template, partition = shard, key = the event's key,
 * value = the plugin's line, headers event_id, type, version, seq and
 * recorded_at.  Each message carries its ledger ticket (positions.c); its
 * delivery report marks the ticket acknowledged.  A failed delivery is
 * remembered, and the main loop stops: the slot is confirmed only up to
 * what Kafka has, so a restart sends the rest again.
 *
 * A topic is checked when first used: it must exist (the bridge does not
 * create topics, so that partition counts are a human's decision) and have
 * at least as many partitions as the stream has shards.
 *
 * With a transactional.id the producer is transactional: events go out in
 * Kafka transactions that end at Postgres transaction boundaries, and a
 * transaction's messages count as acknowledged only once it is committed
 * (docs/kafka.md, "Delivery modes").
 *
 *-------------------------------------------------------------------------
 */
#include "bridge.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

/* An event's place in the slot's order: its commit, then its insert. */
typedef struct BrPosition
{
	br_lsn		commit_lsn;
	br_lsn		lsn;
} BrPosition;

struct BrTopic
{
	rd_kafka_topic_t *rkt;
	char	   *name;
	int			partitions;
	BrPosition *tails;			/* transactional: the last event of each
								 * partition in Kafka at start; NULL if none */
};

struct BrKafka
{
	rd_kafka_t *rk;
	BrLedger   *ledger;
	bool		transactional;
	bool		txn_open;
	bool		failed;
	char		error[1024];
	uint64_t	acked;			/* messages acknowledged */
	uint64_t	bytes;			/* their values' bytes */
	int			backlog_limit;	/* 90% of queue.buffering.max.messages */
};

/* Properties the bridge sets before the user's -X ones. */
static const char *const br_kafka_defaults[][2] = {
	{"enable.idempotence", "true"},
	{"enable.gapless.guarantee", "true"},
	{"message.timeout.ms", "0"},
	{"max.in.flight.requests.per.connection", "1"},
	{"allow.auto.create.topics", "false"},
	{"client.id", "event_log_kafka"},
};

static void
set_prop(rd_kafka_conf_t *conf, const char *name, const char *value)
{
	char		err[512];

	if (rd_kafka_conf_set(conf, name, value, err, sizeof(err)) != RD_KAFKA_CONF_OK)
		br_fatal(BR_EXIT_USAGE, "Kafka property \"%s\": %s", name, err);
}

static void
on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
	BrKafka    *kafka = opaque;

	if (msg->err)
	{
		if (!kafka->failed)
			snprintf(kafka->error, sizeof(kafka->error),
					 "delivery to topic \"%s\" partition %d failed: %s",
					 rd_kafka_topic_name(msg->rkt), (int) msg->partition,
					 rd_kafka_err2str(msg->err));
		kafka->failed = true;
		return;
	}
	br_ledger_ack(kafka->ledger, (uint64_t) (uintptr_t) msg->_private);
	kafka->acked++;
	kafka->bytes += msg->len;
}

static void
on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	BrKafka    *kafka = opaque;
	char		fatal[512];

	if (err == RD_KAFKA_RESP_ERR__FATAL)
	{
		rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
		if (!kafka->failed)
			snprintf(kafka->error, sizeof(kafka->error), "fatal Kafka error: %s", fatal);
		kafka->failed = true;
		return;
	}
	/* Broker connections come and go; librdkafka retries them itself. */
	br_log("Kafka: %s", reason);
}

/*
 * librdkafka's log lines, to stderr like ours.  It warns at every start
 * that enable.gapless.guarantee is experimental; we set it on purpose
 * (docs/design/kafka.md), so that warning is dropped.
 */
static void
on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	if (strcmp(fac, "CONFWARN") == 0 && strstr(buf, "enable.gapless.guarantee") != NULL)
		return;
	br_log("Kafka: %s: %s", fac, buf);
}

BrKafka *
br_kafka_create(char **props, int nprops, const char *transactional_id,
				BrLedger *ledger)
{
	BrKafka    *kafka = br_malloc(sizeof(BrKafka));
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char		err[512];
	char		value[64];
	size_t		vsize = sizeof(value);

	memset(kafka, 0, sizeof(BrKafka));
	kafka->ledger = ledger;
	for (size_t i = 0; i < sizeof(br_kafka_defaults) / sizeof(br_kafka_defaults[0]); i++)
		set_prop(conf, br_kafka_defaults[i][0], br_kafka_defaults[i][1]);
	for (int i = 0; i < nprops; i++)
	{
		char	   *eq = strchr(props[i], '=');
		char	   *name = br_strndup(props[i], (size_t) (eq - props[i]));

		set_prop(conf, name, eq + 1);
		free(name);
	}
	if (transactional_id)
	{
		set_prop(conf, "transactional.id", transactional_id);
		kafka->transactional = true;

	}

	/* The guarantees rest on these two; refuse a configuration without. */
	if (rd_kafka_conf_get(conf, "enable.idempotence", value, &vsize) != RD_KAFKA_CONF_OK ||
		strcmp(value, "true") != 0)
		br_fatal(BR_EXIT_USAGE, "enable.idempotence cannot be turned off\n"
				 "DETAIL:  Without it a broker's retries can duplicate or reorder events "
				 "within a partition.");
	vsize = sizeof(value);
	if (rd_kafka_conf_get(conf, "bootstrap.servers", value, &vsize) != RD_KAFKA_CONF_OK ||
		value[0] == '\0')
	{
		vsize = sizeof(value);
		if (rd_kafka_conf_get(conf, "test.mock.num.brokers", value, &vsize) != RD_KAFKA_CONF_OK ||
			value[0] == '\0')
			br_fatal(BR_EXIT_USAGE, "no Kafka brokers given\n"
					 "HINT:  Use -b host:port or -X bootstrap.servers=host:port.");
	}

	vsize = sizeof(value);
	if (rd_kafka_conf_get(conf, "queue.buffering.max.messages", value, &vsize) == RD_KAFKA_CONF_OK)
		kafka->backlog_limit = atoi(value) / 10 * 9;
	if (kafka->backlog_limit < 1)
		kafka->backlog_limit = 1;

	rd_kafka_conf_set_opaque(conf, kafka);
	rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
	rd_kafka_conf_set_error_cb(conf, on_error);
	rd_kafka_conf_set_log_cb(conf, on_log);
	kafka->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
	if (kafka->rk == NULL)
		br_fatal(BR_EXIT_USAGE, "could not create the Kafka producer: %s", err);

	if (kafka->transactional)
	{
		rd_kafka_error_t *e = rd_kafka_init_transactions(kafka->rk, 60000);

		if (e)
			br_fatal(BR_EXIT_TEMPFAIL, "could not initialise Kafka transactions: %s",
					 rd_kafka_error_string(e));
	}
	return kafka;
}

/*
 * The topic name for a stream: the template with {schema}, {table} and
 * {stream} (schema.table) replaced.  False, with *error, if the result is
 * not a legal Kafka topic name.
 */
bool
br_topic_name(const char *template, const char *schema, const char *table,
			  char **topic, const char **error)
{
	/* each template byte becomes at most schema.table: a bound, not a guess */
	size_t		size = strlen(template) * (strlen(schema) + strlen(table) + 2) + 1;
	char	   *out = br_malloc(size);
	char	   *o = out;
	const char *p = template;

	while (*p)
	{
		const char *sub = NULL;
		size_t		skip = 0;

		if (strncmp(p, "{schema}", 8) == 0)
			sub = schema, skip = 8;
		else if (strncmp(p, "{table}", 7) == 0)
			sub = table, skip = 7;
		else if (strncmp(p, "{stream}", 8) == 0)
			skip = 8;
		if (skip == 8 && sub == NULL)
			o += sprintf(o, "%s.%s", schema, table);
		else if (sub)
			o += sprintf(o, "%s", sub);
		else
			*o++ = *p++;
		p += skip;
	}
	*o = '\0';
	*topic = out;

	if (o == out || o - out > 249)
	{
		*error = "a Kafka topic name has 1 to 249 characters";
		return false;
	}
	if (strcmp(out, ".") == 0 || strcmp(out, "..") == 0)
	{
		*error = "\".\" and \"..\" are not Kafka topic names";
		return false;
	}
	for (o = out; *o; o++)
	{
		if (!((*o >= 'a' && *o <= 'z') || (*o >= 'A' && *o <= 'Z') ||
			  (*o >= '0' && *o <= '9') || *o == '.' || *o == '_' || *o == '-'))
		{
			*error = "a Kafka topic name has only ASCII letters, digits, \".\", \"_\" and \"-\"";
			return false;
		}
	}
	return true;
}

/*
 * The topic of a stream, checked: it exists and has at least
 * needed_partitions partitions.
 */
BrTopic *
br_kafka_topic(BrKafka *kafka, const BrStreamInfo *stream, const char *template,
			   int needed_partitions)
{
	BrTopic    *topic = br_malloc(sizeof(BrTopic));
	const char *error;
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_resp_err_t err;

	if (!br_topic_name(template, stream->schema, stream->table, &topic->name, &error))
		br_fatal(BR_EXIT_CONFIG, "topic name \"%s\" for stream %s is not valid: %s\n"
				 "HINT:  Choose another --topic-template.", topic->name, stream->name, error);
	topic->tails = NULL;
	topic->rkt = rd_kafka_topic_new(kafka->rk, topic->name, NULL);
	if (topic->rkt == NULL)
		br_fatal(BR_EXIT_CONFIG, "topic \"%s\": %s", topic->name,
				 rd_kafka_err2str(rd_kafka_last_error()));

	err = rd_kafka_metadata(kafka->rk, 0, topic->rkt, &md, 30000);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		br_fatal(BR_EXIT_TEMPFAIL, "could not read the metadata of topic \"%s\": %s",
				 topic->name, rd_kafka_err2str(err));
	if (md->topic_cnt != 1 ||
		md->topics[0].err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
		md->topics[0].err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC)
		br_fatal(BR_EXIT_CONFIG, "Kafka topic \"%s\" for stream %s does not exist\n"
				 "HINT:  Create it with %d partitions (one per shard): the bridge does not create topics.",
				 topic->name, stream->name, needed_partitions);
	if (md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR)
		br_fatal(BR_EXIT_TEMPFAIL, "Kafka topic \"%s\": %s", topic->name,
				 rd_kafka_err2str(md->topics[0].err));
	topic->partitions = md->topics[0].partition_cnt;
	rd_kafka_metadata_destroy(md);
	if (topic->partitions < needed_partitions)
		br_fatal(BR_EXIT_CONFIG, "Kafka topic \"%s\" has %d partitions, fewer than the %d shards of stream %s\n"
				 "DETAIL:  Partition = shard: every shard needs its own partition.\n"
				 "HINT:  Add partitions to the topic (kafka-topics.sh --alter --partitions %d) before the bridge starts.",
				 topic->name, topic->partitions, needed_partitions, stream->name,
				 needed_partitions);
	br_debug("topic \"%s\" for stream %s: %d partitions", topic->name, stream->name,
			 topic->partitions);
	return topic;
}

/*
 * Send one event; blocks (serving delivery reports) while the queue is
 * full.  False if a stop was requested meanwhile: the event was not sent,
 * and its ledger entry stays unacknowledged, so nothing at or after it is
 * confirmed.
 */
bool
br_kafka_produce(BrKafka *kafka, BrTopic *topic, const BrLine *line,
				 const char *value, size_t value_len)
{
	char		version[24];
	char		seq[24];
	uint64_t	ticket;
	rd_kafka_resp_err_t err;

	if (line->shard >= topic->partitions)
		br_fatal(BR_EXIT_CONFIG, "event of stream %s in shard %d, but topic \"%s\" has %d partitions",
				 line->stream, line->shard, topic->name, topic->partitions);
	if (kafka->transactional && !kafka->txn_open)
	{
		rd_kafka_error_t *e = rd_kafka_begin_transaction(kafka->rk);

		if (e)
			br_fatal(BR_EXIT_TEMPFAIL, "could not begin a Kafka transaction: %s",
					 rd_kafka_error_string(e));
		kafka->txn_open = true;
	}
	snprintf(version, sizeof(version), "%" PRId64, line->version);
	snprintf(seq, sizeof(seq), "%" PRId64, line->seq);
	ticket = br_ledger_add_event(kafka->ledger);
	for (;;)
	{
		err = rd_kafka_producev(kafka->rk,
								RD_KAFKA_V_RKT(topic->rkt),
								RD_KAFKA_V_PARTITION(line->shard),
								RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
								RD_KAFKA_V_KEY(line->key, line->key_len),
								RD_KAFKA_V_VALUE((void *) value, value_len),
								RD_KAFKA_V_HEADER("event_id", line->event_id, -1),
								RD_KAFKA_V_HEADER("type", line->type, (ssize_t) line->type_len),
								RD_KAFKA_V_HEADER("version", version, -1),
								RD_KAFKA_V_HEADER("seq", seq, -1),
								RD_KAFKA_V_HEADER("recorded_at", line->recorded_at, -1),
								RD_KAFKA_V_OPAQUE((void *) (uintptr_t) ticket),
								RD_KAFKA_V_END);
		if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
			break;
		if (br_stop_requested)
			return false;
		rd_kafka_poll(kafka->rk, 100);
	}
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		br_fatal(BR_EXIT_TEMPFAIL, "could not produce to topic \"%s\" partition %d: %s",
				 topic->name, line->shard, rd_kafka_err2str(err));
	return true;
}

void
br_kafka_poll(BrKafka *kafka, int timeout_ms)
{
	rd_kafka_poll(kafka->rk, timeout_ms);
}

/*
 * True when librdkafka's queue is nearly full (a slow or absent broker):
 * the main loop then stops reading the slot, and keeps sending status
 * updates, so that the walsender does not time the connection out while
 * produce() would block.
 */
bool
br_kafka_backlogged(BrKafka *kafka)
{
	return rd_kafka_outq_len(kafka->rk) >= kafka->backlog_limit;
}

bool
br_kafka_failed(BrKafka *kafka, const char **error)
{
	*error = kafka->error;
	return kafka->failed;
}

/* Wait up to timeout_ms for every message sent to be acknowledged. */
void
br_kafka_flush(BrKafka *kafka, int timeout_ms)
{
	if (kafka->transactional)
	{
		if (kafka->txn_open && !kafka->failed)
			br_kafka_txn_commit(kafka);
		return;
	}
	(void) rd_kafka_flush(kafka->rk, timeout_ms);
	rd_kafka_poll(kafka->rk, 0);
}

/*
 * Abort the open Kafka transaction: it holds part of a Postgres transaction
 * only (the bridge stops in the middle of one).  Committing that part would
 * make a restart believe the whole transaction is in Kafka.
 */
void
br_kafka_txn_abort(BrKafka *kafka)
{
	rd_kafka_error_t *e;

	if (!kafka->txn_open)
		return;
	e = rd_kafka_abort_transaction(kafka->rk, 30000);
	if (e)
	{
		br_log("could not abort the Kafka transaction: %s (the next start aborts it)",
			   rd_kafka_error_string(e));
		rd_kafka_error_destroy(e);
	}
	kafka->txn_open = false;
	rd_kafka_poll(kafka->rk, 0);
}

bool
br_kafka_txn_open(BrKafka *kafka)
{
	return kafka->txn_open;
}

/*
 * Commit the open Kafka transaction.  Its delivery reports are served
 * right after, so its events are acknowledged in the ledger only once the
 * transaction is committed.  A failure stops the bridge: the slot was not
 * confirmed past the transaction, so a restart sends it again.
 */
void
br_kafka_txn_commit(BrKafka *kafka)
{
	rd_kafka_error_t *e;

	if (!kafka->txn_open)
		return;
	e = rd_kafka_commit_transaction(kafka->rk, 60000);
	if (e)
	{
		if (!kafka->failed)
			snprintf(kafka->error, sizeof(kafka->error),
					 "could not commit a Kafka transaction: %s", rd_kafka_error_string(e));
		kafka->failed = true;
		if (rd_kafka_error_txn_requires_abort(e))
			(void) rd_kafka_abort_transaction(kafka->rk, 30000);
		rd_kafka_error_destroy(e);
		kafka->txn_open = false;
		return;
	}
	kafka->txn_open = false;
	rd_kafka_poll(kafka->rk, 0);
}

/* An event line's position; false if it lacks one. */
static bool
line_position(const BrLine *line, BrPosition *pos)
{
	return line->kind == BR_LINE_EVENT && line->commit_lsn && line->lsn &&
		br_parse_lsn(line->commit_lsn, &pos->commit_lsn) &&
		br_parse_lsn(line->lsn, &pos->lsn);
}

/*
 * The position of the last committed message of one partition, zero if it
 * has none.  Under read_committed the partition ends at its last stable
 * offset; the last records before it may be transaction markers, which a
 * consumer never sees, so the read starts a few offsets back and goes
 * further back until it finds a message.
 */
static BrPosition
partition_tail(rd_kafka_t *consumer, const char *topic, int partition)
{
	int64_t		low,
				high,
				back = 16;
	rd_kafka_resp_err_t err;
	BrPosition	tail = {0, 0};
	BrLine		line = {0};

	err = rd_kafka_query_watermark_offsets(consumer, topic, partition, &low, &high, 30000);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		br_fatal(BR_EXIT_TEMPFAIL, "could not read the offsets of topic \"%s\" partition %d: %s",
				 topic, partition, rd_kafka_err2str(err));
	while (high > low)
	{
		int64_t		start = high - back > low ? high - back : low;
		rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
		bool		found = false;

		rd_kafka_topic_partition_list_add(parts, topic, partition)->offset = start;
		rd_kafka_assign(consumer, parts);
		rd_kafka_topic_partition_list_destroy(parts);
		for (;;)
		{
			rd_kafka_message_t *m = rd_kafka_consumer_poll(consumer, 30000);
			const char *error;

			if (m == NULL)
				br_fatal(BR_EXIT_TEMPFAIL, "timed out reading topic \"%s\" partition %d",
						 topic, partition);
			if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
			{
				rd_kafka_message_destroy(m);
				break;
			}
			if (m->err)
				br_fatal(BR_EXIT_TEMPFAIL, "could not read topic \"%s\" partition %d: %s",
						 topic, partition, rd_kafka_message_errstr(m));
			if (!br_parse_line(m->payload, m->len, &line, &error) ||
				!line_position(&line, &tail))
				br_fatal(BR_EXIT_CONFIG, "topic \"%s\" partition %d offset %" PRId64
						 " holds a message the bridge did not write\n"
						 "DETAIL:  In transactional mode the bridge resumes from the last event in Kafka, "
						 "and needs the topics to itself.", topic, partition, m->offset);
			found = true;
			rd_kafka_message_destroy(m);
		}
		rd_kafka_assign(consumer, NULL);
		if (found || start == low)
			break;
		back *= 4;
	}
	free(line.buf);
	return tail;
}

/*
 * Transactional: read the last event of every partition of the topics
 * given, as Kafka has it (read_committed).  The slot sends events in one
 * order, by commit and then by insert (the plugin's commit_lsn and lsn),
 * and each partition holds them in that order without gaps; so an event
 * the slot sends again is in Kafka exactly when its position is not after
 * its partition's tail (br_kafka_has_event).  The test is per partition,
 * not per transaction: it holds whatever part of a transaction a reader
 * can see.
 */
void
br_kafka_read_tails(BrKafka *kafka, BrTopic **topics, int ntopics)
{
	rd_kafka_conf_t *conf;
	rd_kafka_t *consumer;
	char		errstr[512];
	char		servers[4096];
	size_t		size = sizeof(servers);

	if (!kafka->transactional || ntopics == 0)
		return;

	/* A consumer of the producer's brokers, reading committed data only. */
	if (rd_kafka_conf_get(rd_kafka_conf(kafka->rk), "bootstrap.servers", servers, &size) !=
		RD_KAFKA_CONF_OK)
		servers[0] = '\0';
	conf = rd_kafka_conf_new();
	set_prop(conf, "bootstrap.servers", servers);
	set_prop(conf, "group.id", "event_log_kafka.resume");
	set_prop(conf, "enable.auto.commit", "false");
	set_prop(conf, "enable.partition.eof", "true");
	set_prop(conf, "isolation.level", "read_committed");
	rd_kafka_conf_set_log_cb(conf, on_log);
	consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	if (consumer == NULL)
		br_fatal(BR_EXIT_USAGE, "could not create a Kafka consumer: %s", errstr);

	for (int i = 0; i < ntopics; i++)
	{
		BrTopic    *t = topics[i];

		t->tails = br_malloc(sizeof(BrPosition) * t->partitions);
		for (int p = 0; p < t->partitions; p++)
		{
			t->tails[p] = partition_tail(consumer, t->name, p);
			br_debug("topic \"%s\" partition %d ends at %X/%X, %X/%X", t->name, p,
					 (unsigned) (t->tails[p].commit_lsn >> 32), (unsigned) t->tails[p].commit_lsn,
					 (unsigned) (t->tails[p].lsn >> 32), (unsigned) t->tails[p].lsn);
		}
	}
	rd_kafka_consumer_close(consumer);
	rd_kafka_destroy(consumer);
}

/* Transactional: is this event in Kafka already (see br_kafka_read_tails)? */
bool
br_kafka_has_event(BrTopic *topic, const BrLine *line)
{
	BrPosition	pos;
	BrPosition *tail;

	if (topic->tails == NULL)
		return false;
	if (!line_position(line, &pos))
		br_fatal(BR_EXIT_SOFTWARE, "event of stream %s lacks commit_lsn or lsn", line->stream);
	tail = &topic->tails[line->shard];
	return pos.commit_lsn < tail->commit_lsn ||
		(pos.commit_lsn == tail->commit_lsn && pos.lsn <= tail->lsn);
}

uint64_t
br_kafka_acked(BrKafka *kafka)
{
	return kafka->acked;
}

uint64_t
br_kafka_bytes(BrKafka *kafka)
{
	return kafka->bytes;
}

void
br_kafka_destroy(BrKafka *kafka)
{
	rd_kafka_destroy(kafka->rk);
	free(kafka);
}
