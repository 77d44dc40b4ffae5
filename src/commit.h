/*
 * commit.h
 *	  Shard locks and the commit modes of a stream (commit.c).
 */
#ifndef EL_COMMIT_H
#define EL_COMMIT_H

#include "postgres.h"

#include "access/xlogdefs.h"

/* Take a shard's lock; grouped: released as soon as our commit is visible. */
extern void el_lock_shard(Oid relid, int32 shard, bool grouped);

/* Make every commit visible to us durable (readers of grouped streams). */
extern XLogRecPtr el_wait_durable(void);

#endif							/* EL_COMMIT_H */
