/*
 * stream.h
 *	  Creating and dropping streams (stream.c): where the subsystems built
 *	  on streams learn that one is being dropped.
 */
#ifndef EL_STREAM_H
#define EL_STREAM_H

#include "postgres.h"

/*
 * cascade: the caller asked drop_stream(..., cascade => true) to drop what
 * is built on the stream with it, rather than refuse while it exists.
 */
typedef void (*el_stream_drop_callback) (Oid relid, const char *qname, bool cascade);

extern void el_on_stream_drop(el_stream_drop_callback callback);

#endif							/* EL_STREAM_H */
