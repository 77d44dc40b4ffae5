/*
 * event_log.c
 *	  Module entry point: the settings, and the one-time set-up of the
 *	  caches, callbacks and hooks of each module, bottom layer first.
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "consumer.h"
#include "event_log.h"
#include "projection.h"
#include "personal.h"
#include "registry.h"
#include "retention.h"
#include "segment.h"
#include "schema.h"
#include "shard_end.h"
#include "wake.h"
#include "worker.h"

PG_MODULE_MAGIC;

/* The settings, all of them (event_log.h has their boot values). */
int			el_max_payload_size = EL_DEFAULT_MAX_PAYLOAD_SIZE;	/* kB */
int			el_lease_timeout = EL_DEFAULT_LEASE_TIMEOUT;	/* ms */
int			el_retry_interval = EL_DEFAULT_RETRY_INTERVAL;	/* ms */
int			el_handler_timeout = EL_DEFAULT_HANDLER_TIMEOUT;	/* ms */
int			el_worker_naptime = EL_DEFAULT_WORKER_NAPTIME;	/* ms */
int			el_retention_interval = EL_DEFAULT_RETENTION_INTERVAL;	/* ms */
int			el_worker_batch_size = EL_DEFAULT_WORKER_BATCH_SIZE;	/* events */
int			el_shard_lock_spin = EL_DEFAULT_SHARD_LOCK_SPIN;	/* microseconds */
bool		el_upcast_reads = false;
char	   *el_correlation_id = NULL;
char	   *el_causation_id = NULL;

/* A correlation or causation id: at most EL_MAX_CONVERSATION_ID_BYTES. */
static bool
el_check_conversation_id(char **newval, void **extra, GucSource source)
{
	if (*newval != NULL && strlen(*newval) > EL_MAX_CONVERSATION_ID_BYTES)
	{
		GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
		GUC_check_errmsg("correlation and causation ids are limited to %d bytes",
						 EL_MAX_CONVERSATION_ID_BYTES);
		GUC_check_errhint("Use an identifier such as a UUID, not a document.");
		return false;
	}
	return true;
}

void		_PG_init(void);

void
_PG_init(void)
{
	DefineCustomIntVariable("event_log.max_payload_size",
							"Largest payload or metadata document of one event.",
							"Appends whose payload or metadata is larger are refused.",
							&el_max_payload_size,
							EL_DEFAULT_MAX_PAYLOAD_SIZE,
							1,
							MaxAllocSize / 1024,
							PGC_SUSET,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("event_log.retry_interval",
							"How long an async projection stopped by a handler error waits before retrying.",
							"The shard's failing event is tried again by the first run after this interval.",
							&el_retry_interval,
							EL_DEFAULT_RETRY_INTERVAL,
							0,
							24 * 3600 * 1000,
							PGC_SUSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("event_log.handler_timeout",
							"How long a projection's handler may run for one event of an async run.",
							"A handler that runs longer is cancelled and its event stops its shard, as an error would. 0 turns the limit off.",
							&el_handler_timeout,
							EL_DEFAULT_HANDLER_TIMEOUT,
							0,
							INT_MAX,
							PGC_SUSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("event_log.worker_naptime",
							"How long the background worker sleeps when no event is waiting.",
							"Appending transactions wake it when they commit; this bounds the wait otherwise.",
							&el_worker_naptime,
							EL_DEFAULT_WORKER_NAPTIME,
							10,
							3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("event_log.worker_batch_size",
							"Events the background worker applies per async projection and round.",
							NULL,
							&el_worker_batch_size,
							EL_DEFAULT_WORKER_BATCH_SIZE,
							1,
							INT_MAX,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("event_log.retention_interval",
							"How often the background worker applies the streams' retention policies.",
							"0 leaves retention to event_log.enforce_retention(), called from cron.",
							&el_retention_interval,
							EL_DEFAULT_RETENTION_INTERVAL,
							0,
							INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("event_log.lease_timeout",
							"How long a consumer group member keeps its shards without polling.",
							"A member that has not polled for this long loses its shards to the other members.",
							&el_lease_timeout,
							EL_DEFAULT_LEASE_TIMEOUT,
							100,
							24 * 3600 * 1000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("event_log.shard_lock_spin",
							"How long an appender waiting for a busy shard retries before it sleeps, in microseconds.",
							"Retrying spares the wake-up that hands a shard from one appender to the next. 0 sleeps at once.",
							&el_shard_lock_spin,
							EL_DEFAULT_SHARD_LOCK_SPIN,
							0,
							100000,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("event_log.upcast",
							 "Whether readers return payloads upcast to their type's latest schema version.",
							 "read(), read_all(), replay(), read_event(), read_by_time(), conversation() and poll() apply the stream's upcasters; stored events never change.",
							 &el_upcast_reads,
							 false,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("event_log.correlation_id",
							   "correlation_id added to the metadata of appended events that have none.",
							   "Empty: none is added.",
							   &el_correlation_id,
							   "",
							   PGC_USERSET,
							   0,
							   el_check_conversation_id, NULL, NULL);

	DefineCustomStringVariable("event_log.causation_id",
							   "causation_id added to the metadata of appended events that have none.",
							   "Empty: none is added.",
							   &el_causation_id,
							   "",
							   PGC_USERSET,
							   0,
							   el_check_conversation_id, NULL, NULL);

	MarkGUCPrefixReserved("event_log");

	el_stream_cache_init();
	el_wake_init();
	el_schema_init();
	el_personal_init();
	el_segment_init();
	el_retention_init();
	el_projection_init();
	el_consumer_init();
	el_shard_end_init();

	/* The launcher of the background workers needs preloading. */
	if (process_shared_preload_libraries_in_progress)
		el_register_launcher();
}

/* Refuse a NULL argument of a non-strict SQL function. */
void
el_require_arg(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name)));
}
