/*
 * key.c
 *	  Event keys: the checks every key passes (append paths, replay()), and
 *	  the stable key-to-shard function.  It is part of the on-disk format:
 *	  an event's shard must never change, so this is spelled out byte by byte
 *	  (no dependence on the server's hash functions, word size or endianness).
 *
 *	  shard = fmix64(fnv1a64(key bytes)) mod shards
 */
#include "postgres.h"

#include "fmgr.h"

#include "event_log.h"
#include "key.h"

PG_FUNCTION_INFO_V1(el_shard_for);

/* FNV-1a, 64 bit, then MurmurHash3's finalizer to spread the low bits. */
static uint64
el_key_hash(const char *key, int len)
{
	uint64		h = UINT64CONST(0xcbf29ce484222325);

	for (int i = 0; i < len; i++)
	{
		h ^= (unsigned char) key[i];
		h *= UINT64CONST(0x100000001b3);
	}
	h ^= h >> 33;
	h *= UINT64CONST(0xff51afd7ed558ccd);
	h ^= h >> 33;
	h *= UINT64CONST(0xc4ceb9fe1a85ec53);
	h ^= h >> 33;
	return h;
}

int
el_shard_for_key(const char *key, int len, int shards)
{
	Assert(shards >= 1);
	return (int) (el_key_hash(key, len) % (uint64) shards);
}

/* event_log.shard_for(key text, shards int): the shard a key lands in. */
Datum
el_shard_for(PG_FUNCTION_ARGS)
{
	text	   *key = PG_GETARG_TEXT_PP(0);
	int32		shards = PG_GETARG_INT32(1);

	if (shards < 1 || shards > EL_MAX_SHARDS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("shard count must be between 1 and %d", EL_MAX_SHARDS)));

	PG_RETURN_INT32(el_shard_for_key(VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key),
									 shards));
}

/* The checks of a key: the append paths' and replay()'s. */
void
el_check_key(text *key)
{
	int			len = VARSIZE_ANY_EXHDR(key);

	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event key must not be empty")));
	if (len > EL_MAX_KEY_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("event key is too long"),
				 errdetail("Keys are limited to %d bytes; this one has %d.",
						   EL_MAX_KEY_BYTES, len)));
}
