/*
 * wake.h
 *	  Wake-ups when a transaction commits: of the backends waiting for a
 *	  stream's events (poll(), the background worker), of the stream's
 *	  consumers by NOTIFY (a hook consumer_group.c sets), and of the
 *	  background workers' launcher.
 */
#ifndef EL_WAKE_H
#define EL_WAKE_H

#include "postgres.h"

#include "storage/lock.h"

/* The name the launcher has in pg_stat_activity.backend_type. */
#define EL_LAUNCHER_TYPE	"event_log launcher"

extern void el_wake_init(void);

/* Appends: note each stream, and whether this transaction wrote to it. */
extern void el_note_append(Oid relid);
extern bool el_appended_here(Oid relid);

/* The lock a backend waiting for a stream's events holds. */
extern void el_wait_tag(LOCKTAG *tag, Oid relid);

/*
 * Called at pre-commit for each stream the transaction appended to, where
 * it may still fail the transaction (consumer groups NOTIFY their channel).
 */
typedef void (*el_append_commit_hook_type) (Oid relid);
extern PGDLLIMPORT el_append_commit_hook_type el_append_commit_hook;

/* Start the background workers' launcher's round when this transaction commits. */
extern void el_wake_launcher_at_commit(void);

#endif							/* EL_WAKE_H */
