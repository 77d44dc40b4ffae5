/*
 * key.h
 *	  Event keys (key.c): their checks, and the shard a key belongs to.
 */
#ifndef EL_KEY_H
#define EL_KEY_H

#include "postgres.h"

extern void el_check_key(text *key);
extern int	el_shard_for_key(const char *key, int len, int shards);

#endif							/* EL_KEY_H */
