/*
 * event_log.c
 *	  Module entry point: the GUCs and the one-time set-up of the caches and
 *	  transaction callbacks the other files need.
 */
#include "postgres.h"

#include "fmgr.h"
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
