/*
 * stream.h
 *	  Creating and dropping streams (stream.c): where the subsystems built
 *	  on streams learn that one is being dropped.
 */
#ifndef EL_STREAM_H
#define EL_STREAM_H

#include "postgres.h"

typedef void (*el_stream_drop_callback) (Oid relid, const char *qname);

extern void el_on_stream_drop(el_stream_drop_callback callback);

#endif							/* EL_STREAM_H */
