/*
 * event_log.c
 *	  Module entry point: the GUCs and the one-time set-up of the caches and
 *	  transaction callbacks the other files need.
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "event_log.h"

PG_MODULE_MAGIC;

/* Largest payload or metadata document accepted in one event, in kB. */
int			el_max_payload_size = 16 * 1024;

/* How long a consumer group member's lease lasts without a poll, in ms. */
int			el_lease_timeout = 30000;

void		_PG_init(void);

void
_PG_init(void)
{
	DefineCustomIntVariable("event_log.max_payload_size",
							"Largest payload or metadata document of one event.",
							"Appends whose payload or metadata is larger are refused.",
							&el_max_payload_size,
							16 * 1024,
							1,
							MaxAllocSize / 1024,
							PGC_SUSET,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("event_log.retry_interval",
							"How long an async projection stopped by a handler error waits before retrying.",
							"The shard's failing event is tried again by the first run after this interval.",
							&el_retry_interval,
							10000,
							0,
							24 * 3600 * 1000,
							PGC_SUSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("event_log.handler_timeout",
							"How long a projection's handler may run for one event of an async run.",
							"A handler that runs longer is cancelled and its event stops its shard, as an error would. 0 turns the limit off.",
							&el_handler_timeout,
							5000,
							0,
							INT_MAX,
							PGC_SUSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("event_log.worker_naptime",
							"How long the background worker sleeps when no event is waiting.",
							"Appending transactions wake it when they commit; this bounds the wait otherwise.",
							&el_worker_naptime,
							1000,
							10,
							3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("event_log.worker_batch_size",
							"Events the background worker applies per async projection and round.",
							NULL,
							&el_worker_batch_size,
							10000,
							1,
							INT_MAX,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("event_log.lease_timeout",
							"How long a consumer group member keeps its shards without polling.",
							"A member that has not polled for this long loses its shards to the other members.",
							&el_lease_timeout,
							30000,
							100,
							24 * 3600 * 1000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("event_log");

	el_stream_cache_init();
	el_consumer_init();

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
