/*
 * worker.h
 *	  The background workers (worker.c): a launcher that starts one worker
 *	  per database, which keeps async projections caught up.
 */
#ifndef EL_WORKER_H
#define EL_WORKER_H

extern void el_register_launcher(void);

#endif							/* EL_WORKER_H */
