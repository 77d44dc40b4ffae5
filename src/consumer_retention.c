/*-------------------------------------------------------------------------
 *
 * consumer_retention.c
 *	  Consumer groups and retention: what a poll does when a group's
 *	  committed offset is below a shard's low watermark, and
 *	  set_offset_reset(), which chooses it.
 *
 *	  Kafka answers a fetch below the log start offset with
 *	  OFFSET_OUT_OF_RANGE, and the client applies auto.offset.reset.  A
 *	  group here has the same choice, kept in consumer_groups.offset_reset:
 *
 *	  - 'error' (the default): poll() raises EL040, naming the group, the
 *	    shard, its offset and the watermark, and changes nothing;
 *	  - 'earliest': the shard's offset jumps to the watermark;
 *	  - 'latest': it jumps to the end of the shard;
 *	  - 'archive': the poll reads the archived events (archive.c) up to the
 *	    watermark, then the log: the group processes every event, as if
 *	    nothing had been removed.
 *
 *	  With 'archive' a shard never committed starts at the first archived
 *	  event.  A jump is committed by the poll itself and what it skipped is added
 *	  to consumer_offsets.skipped_events (shown in consumer_lag), so it is
 *	  never silent.  A shard the group never committed (offset 0) starts
 *	  at the watermark whatever the policy: the group had read nothing of
 *	  what left, as a Kafka group without a committed offset starts where
 *	  auto.offset.reset says; what it never saw is counted as skipped.
 *
 *	  The check uses the poll's snapshot, the one its reads use, so a
 *	  removal that commits during the poll is seen by both or by neither.
 *
 * Copyright (c) 2026, event_log authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"

#include "catalog.h"
#include "consumer.h"
#include "event_log.h"
#include "read.h"
#include "registry.h"

PG_FUNCTION_INFO_V1(el_set_offset_reset);

/*
 * Bring the offsets of the shards a poll holds (shards[i], after[i]) up to
 * their low watermarks by the group's policy.  The caller is connected to
 * SPI and has pushed the poll's snapshot.
 */
void
el_poll_check_watermarks(ElGroup *g, const int32 *shards, int64 *after,
						 int nheld, int64 *archive_low)
{
	char	   *policy = NULL;

	for (int i = 0; i < nheld; i++)
		archive_low[i] = 0;
	if (!el_stream_has_watermarks(g->relid))
		return;
	for (int i = 0; i < nheld; i++)
	{
		int64		low = el_low_watermark(g->relid, shards[i], GetActiveSnapshot());
		int64		to;
		Datum		values[4];

		if (after[i] >= low - 1)
			continue;
		if (policy == NULL)
		{
			values[0] = Int32GetDatum(g->id);
			policy = el_query(Q_GROUP_OFFSET_RESET, values, NULL, 1) == 1 ?
				el_spi_text(0, 1) : pstrdup("error");
		}
		/* 'archive': the poll reads the archive up to the watermark. */
		if (strcmp(policy, "archive") == 0)
		{
			archive_low[i] = low;
			continue;
		}
		if (after[i] > 0 && strcmp(policy, "error") == 0)
			ereport(ERROR,
					(errcode(ERRCODE_EL_OUT_OF_RANGE),
					 errmsg("committed offset %lld of consumer group \"%s\" in shard %d of event stream \"%s\" is below the shard's low watermark %lld",
							(long long) after[i], text_to_cstring(g->name), shards[i],
							el_qualified_name(g->relid), (long long) low),
					 errdetail("Events before seq %lld were removed by the stream's retention policy before the group processed them.",
							   (long long) low),
					 errhint("Move the group on with event_log.reset_offsets(), or choose what its polls do with event_log.set_offset_reset().")));
		to = (after[i] > 0 && strcmp(policy, "latest") == 0) ?
			Max(low - 1, el_shard_end(g->relid, shards[i])) : low - 1;
		values[0] = Int32GetDatum(g->id);
		values[1] = Int32GetDatum(shards[i]);
		values[2] = Int64GetDatum(after[i]);
		values[3] = Int64GetDatum(to);
		if (el_query(Q_OFFSET_JUMP, values, NULL, 0) != 1)
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("could not move consumer group \"%s\" past removed events of shard %d",
							text_to_cstring(g->name), shards[i]),
					 errdetail("Its offset changed concurrently."),
					 errhint("Poll again.")));
		after[i] = to;
	}
}

/*
 * event_log.set_offset_reset(group_name text, stream regclass, policy text)
 *		RETURNS void
 *
 * What the group's polls do when its offset in a shard falls below the
 * low watermark: 'error', 'earliest' or 'latest'.  Creates the group if
 * need be, as its first poll would, so it can be chosen at creation.
 */
Datum
el_set_offset_reset(PG_FUNCTION_ARGS)
{
	ElGroup		g;
	char	   *policy;
	Datum		values[2];

	el_require_arg(fcinfo, 0, "group_name");
	el_require_arg(fcinfo, 1, "stream");
	el_require_arg(fcinfo, 2, "policy");
	policy = text_to_cstring(PG_GETARG_TEXT_PP(2));
	if (strcmp(policy, "error") != 0 && strcmp(policy, "earliest") != 0 &&
		strcmp(policy, "latest") != 0 && strcmp(policy, "archive") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid offset reset policy \"%s\"", policy),
				 errhint("The policy is 'error', 'earliest', 'latest' or 'archive' (docs/retention.md).")));
	if (get_attnum(el_catalog_relid("consumer_groups"), "offset_reset") == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the event_log catalog of this database predates retention"),
				 errhint("Run ALTER EXTENSION event_log UPDATE.")));
	el_group_begin(&g, fcinfo, true);
	values[0] = Int32GetDatum(g.id);
	values[1] = CStringGetTextDatum(policy);
	el_query(Q_GROUP_SET_OFFSET_RESET, values, NULL, 0);
	SPI_finish();
	PG_RETURN_VOID();
}
