/*-------------------------------------------------------------------------
 *
 * retention.h
 *	  Retention policies and their enforcement (retention.c).  The check
 *	  readers make against a shard's low watermark is in read.c
 *	  (el_check_watermark()), the lookup in registry.c (el_low_watermark()).
 *
 *-------------------------------------------------------------------------
 */
#ifndef EL_RETENTION_H
#define EL_RETENTION_H

#include "postgres.h"

extern int64 el_enforce_all(void);
extern void el_retention_init(void);

#endif							/* EL_RETENTION_H */
