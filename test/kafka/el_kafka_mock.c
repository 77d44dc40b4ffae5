/*
 * el_kafka_mock.c
 *	  A mock Kafka cluster for the bridge's tests and bench (not installed).
 *
 * librdkafka ships a mock cluster that speaks the Kafka protocol on local
 * ports; it lives inside a librdkafka client instance, so this program
 * holds one for as long as the tests need it, across restarts of the
 * bridge.  It prints "bootstrap=HOST:PORT,..." on stdout, then obeys one
 * command per line on stdin, answering each with a line that starts with
 * "ok" (or "error ..."):
 *
 *	topic NAME PARTITIONS		create a topic
 *	errors APIKEY CODE COUNT	the next COUNT requests of that API
 *								(0 = Produce) fail with error CODE
 *	down ID / up ID				take broker ID down or bring it back
 *	dump TOPIC FILE				write every committed message of TOPIC to
 *								FILE, one per line: partition, offset, key,
 *								headers, value, tab-separated; key and
 *								header values in hex (they may hold any
 *								byte), the value as it is; answers "ok N"
 *	quit						exit
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

static rd_kafka_mock_cluster_t *mc;
static const char *bootstraps;

static void
hex(FILE *f, const void *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%02x", ((const unsigned char *) p)[i]);
}

static void
set(rd_kafka_conf_t *conf, const char *k, const char *v)
{
	char		err[512];

	if (rd_kafka_conf_set(conf, k, v, err, sizeof(err)) != RD_KAFKA_CONF_OK)
	{
		fprintf(stderr, "el_kafka_mock: %s: %s\n", k, err);
		exit(1);
	}
}

/* Consume every partition of topic from the start to its end. */
static long
dump(const char *topic, const char *path)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char		err[512];
	rd_kafka_t *rk;
	const struct rd_kafka_metadata *md;
	rd_kafka_topic_t *rkt;
	rd_kafka_topic_partition_list_t *parts;
	FILE	   *f;
	long		n = 0;
	int			open_parts;

	set(conf, "bootstrap.servers", bootstraps);
	set(conf, "group.id", "el_kafka_mock_dump");
	set(conf, "enable.partition.eof", "true");
	set(conf, "enable.auto.commit", "false");
	set(conf, "isolation.level", "read_committed");
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
	if (!rk)
		return -1;
	rkt = rd_kafka_topic_new(rk, topic, NULL);
	if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR ||
		md->topic_cnt != 1 || md->topics[0].err)
	{
		rd_kafka_destroy(rk);
		return -1;
	}
	parts = rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
	for (int i = 0; i < md->topics[0].partition_cnt; i++)
		rd_kafka_topic_partition_list_add(parts, topic, i)->offset = RD_KAFKA_OFFSET_BEGINNING;
	open_parts = md->topics[0].partition_cnt;
	rd_kafka_metadata_destroy(md);
	rd_kafka_topic_destroy(rkt);
	rd_kafka_assign(rk, parts);
	rd_kafka_topic_partition_list_destroy(parts);

	f = fopen(path, "w");
	if (!f)
	{
		rd_kafka_destroy(rk);
		return -1;
	}
	while (open_parts > 0)
	{
		rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 5000);
		rd_kafka_headers_t *hdrs;

		if (!m)
		{
			n = -1;				/* stuck: say so rather than print less */
			break;
		}
		if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
		{
			open_parts--;
			rd_kafka_message_destroy(m);
			continue;
		}
		if (m->err)
		{
			fprintf(stderr, "el_kafka_mock: dump: %s\n", rd_kafka_message_errstr(m));
			rd_kafka_message_destroy(m);
			continue;
		}
		fprintf(f, "%d\t%lld\t", (int) m->partition, (long long) m->offset);
		hex(f, m->key, m->key_len);
		fputc('\t', f);
		if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			const char *name;
			const void *val;
			size_t		len;

			for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &val, &len) == 0; i++)
			{
				fprintf(f, "%s%s=", i ? ";" : "", name);
				hex(f, val, len);
			}
		}
		fputc('\t', f);
		fwrite(m->payload, 1, m->len, f);
		fputc('\n', f);
		n++;
		rd_kafka_message_destroy(m);
	}
	fclose(f);
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	return n;
}

int
main(int argc, char **argv)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char		err[512];
	char		line[4096];
	rd_kafka_t *rk;
	int			brokers = argc > 1 ? atoi(argv[1]) : 1;

	set(conf, "log_level", "3");
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
	if (!rk)
	{
		fprintf(stderr, "el_kafka_mock: %s\n", err);
		return 1;
	}
	mc = rd_kafka_mock_cluster_new(rk, brokers > 0 ? brokers : 1);
	if (!mc)
	{
		fprintf(stderr, "el_kafka_mock: could not create the mock cluster\n");
		return 1;
	}
	bootstraps = rd_kafka_mock_cluster_bootstraps(mc);
	printf("bootstrap=%s\n", bootstraps);
	fflush(stdout);

	while (fgets(line, sizeof(line), stdin))
	{
		char		a[1024],
					b[1024];
		int			x,
					y,
					z;

		if (sscanf(line, "topic %1023s %d", a, &x) == 2)
		{
			rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(mc, a, x, 1);

			printf(e ? "error %s\n" : "ok\n", rd_kafka_err2str(e));
		}
		else if (sscanf(line, "errors %d %d %d", &x, &y, &z) == 3)
		{
			rd_kafka_resp_err_t *errs = calloc(z > 0 ? z : 1, sizeof(rd_kafka_resp_err_t));

			for (int i = 0; i < z; i++)
				errs[i] = (rd_kafka_resp_err_t) y;
			rd_kafka_mock_push_request_errors_array(mc, (int16_t) x, (size_t) z, errs);
			free(errs);
			printf("ok\n");
		}
		else if (sscanf(line, "down %d", &x) == 1)
			printf("%s\n", rd_kafka_mock_broker_set_down(mc, x) ? "error" : "ok");
		else if (sscanf(line, "up %d", &x) == 1)
			printf("%s\n", rd_kafka_mock_broker_set_up(mc, x) ? "error" : "ok");
		else if (sscanf(line, "dump %1023s %1023s", a, b) == 2)
		{
			long		n = dump(a, b);

			if (n < 0)
				printf("error dump %s\n", a);
			else
				printf("ok %ld\n", n);
		}
		else if (strncmp(line, "quit", 4) == 0)
			break;
		else
			printf("error unknown command\n");
		fflush(stdout);
	}
	rd_kafka_mock_cluster_destroy(mc);
	rd_kafka_destroy(rk);
	return 0;
}
