/*
 * segment.h
 *	  Segmented streams (segment.c): a stream stored as a list-partitioned
 *	  table whose partitions, the segments, each hold a prefix of every
 *	  shard, so that retention removes old events by dropping a table.
 */
#ifndef EL_SEGMENT_H
#define EL_SEGMENT_H

#include "postgres.h"

#include "access/sdir.h"
#include "access/skey.h"
#include "executor/tuptable.h"
#include "utils/relcache.h"
#include "utils/snapshot.h"

/* The tenth column of a segmented stream. */
#define Anum_el_segment		(EL_NATTS + 1)
#define EL_SEGMENT_COLUMN	"segment"

/* Segments of a stream, oldest first. */
typedef struct ElSegments
{
	int			n;
	Oid		   *relids;
	int32	   *numbers;
} ElSegments;

extern void el_segment_init(void);
extern bool el_is_segmented(Relation rel);
extern Oid	el_segment_stream(Oid relid);
extern ElSegments *el_segments(Relation stream);
extern int64 el_segment_events(Oid stream);
extern bool el_segments_catalog(void);
extern bool el_segment_unfinished(Relation rel);

/* Creating, rolling and removing segments (as the extension). */
extern void el_segment_first(Oid stream);
extern int32 el_segment_roll(Oid stream);
extern void el_segment_detach(Oid stream, const Oid *segrelids, int n);
extern int	el_segment_drop_detached(Oid stream);
extern bool el_segment_full(Oid stream);

/*
 * A forward scan of a stream's (shard, seq) index: on a segmented stream,
 * each segment's in turn, oldest first, which reads each shard in seq order.
 */
typedef struct ElStreamScan ElStreamScan;

extern ElStreamScan *el_stream_scan_begin(Relation stream, Snapshot snap,
										  ScanKey keys, int nkeys);
extern bool el_stream_scan_next(ElStreamScan *scan, TupleTableSlot *slot);
extern void el_stream_scan_end(ElStreamScan *scan);

/* The (shard, seq) index of a plain stream; NULL on a segmented one. */
extern Relation el_stream_pk_open(Relation stream);
extern void el_stream_pk_close(Relation pk);

/*
 * A shard's first (Forward) or last (Backward) seq in one table with the
 * stream's indexes (a plain stream or a segment) as snap sees it; 0 if none.
 */
extern int64 el_table_shard_edge(Relation rel, int32 shard, Snapshot snap,
								 ScanDirection dir);

/* The same over a stream's segments from..n-1. */
extern int64 el_segments_shard_edge(const ElSegments *segs, int from, int32 shard,
									Snapshot snap, ScanDirection dir);

/* A shard's last seq seen by snap (0 if none), on any stream. */
extern int64 el_stream_shard_end(Relation stream, int32 shard, Snapshot snap);

#endif							/* EL_SEGMENT_H */
