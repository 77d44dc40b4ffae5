/*-------------------------------------------------------------------------
 *
 * positions.c
 *	  The bridge's ledger: which slot position may be confirmed.
 *
 * The slot may be told "done up to here" only when Kafka has acknowledged
 * every event before that position.  Kafka acknowledges per partition, in
 * order within a partition but in any order across partitions, so the
 * ledger keeps every entry the slot sent, in the slot's order: an event
 * (acknowledged or not) or the end of a transaction (with the WAL position
 * its commit message carries, the end of the commit record).  The front of
 * the ledger moves past acknowledged entries; each transaction end it
 * passes becomes the confirmable position.  Only transaction ends are
 * confirmable: after a restart the slot sends again every transaction that
 * ended after the confirmed position, whole.
 *
 * An entry is named by its ticket, a counter that starts at 0 and never
 * wraps; the ring holds tickets [head, tail).  The ring grows when full.
 * Its size is bounded in practice by librdkafka's queue
 * (queue.buffering.max.messages): produce() blocks when that is full.
 *
 *-------------------------------------------------------------------------
 */
#include "bridge.h"

#include <stdlib.h>
#include <string.h>

typedef struct BrEntry
{
	br_lsn		end_lsn;		/* a transaction end's position; 0: an event */
	bool		acked;
} BrEntry;

struct BrLedger
{
	BrEntry    *ring;
	uint64_t	capacity;		/* a power of two */
	uint64_t	head;			/* oldest ticket not yet passed */
	uint64_t	tail;			/* next ticket */
	uint64_t	events;			/* events in [head, tail) */
	br_lsn		confirmable;
};

#define ENTRY(l, t) (&(l)->ring[(t) & ((l)->capacity - 1)])

BrLedger *
br_ledger_create(void)
{
	BrLedger   *l = br_malloc(sizeof(BrLedger));

	memset(l, 0, sizeof(BrLedger));
	l->capacity = 1024;
	l->ring = br_malloc(l->capacity * sizeof(BrEntry));
	return l;
}

static uint64_t
add(BrLedger *l, br_lsn end_lsn, bool acked)
{
	uint64_t	t;

	if (l->tail - l->head == l->capacity)
	{
		BrEntry    *ring = br_malloc(2 * l->capacity * sizeof(BrEntry));

		/* Re-lay the live tickets for the larger mask. */
		for (t = l->head; t < l->tail; t++)
			ring[t & (2 * l->capacity - 1)] = *ENTRY(l, t);
		free(l->ring);
		l->ring = ring;
		l->capacity *= 2;
	}
	t = l->tail++;
	ENTRY(l, t)->end_lsn = end_lsn;
	ENTRY(l, t)->acked = acked;
	return t;
}

/* A new event, not yet acknowledged; its ticket goes with the message. */
uint64_t
br_ledger_add_event(BrLedger *l)
{
	l->events++;
	return add(l, BR_INVALID_LSN, false);
}

/* The end of a transaction whose events were all added before. */
void
br_ledger_add_commit(BrLedger *l, br_lsn end_lsn)
{
	add(l, end_lsn, true);
}

/* Kafka acknowledged the event of this ticket. */
void
br_ledger_ack(BrLedger *l, uint64_t ticket)
{
	if (ticket < l->head || ticket >= l->tail)
		br_fatal(BR_EXIT_SOFTWARE, "delivery report for an unknown message (ticket %llu)",
				 (unsigned long long) ticket);
	ENTRY(l, ticket)->acked = true;
}

/*
 * Move the front past acknowledged entries; the position of the last
 * transaction end passed (or the one before, if none was passed now).
 */
br_lsn
br_ledger_confirmable(BrLedger *l)
{
	while (l->head < l->tail && ENTRY(l, l->head)->acked)
	{
		BrEntry    *e = ENTRY(l, l->head);

		if (e->end_lsn != BR_INVALID_LSN)
			l->confirmable = e->end_lsn;
		else
			l->events--;
		l->head++;
	}
	return l->confirmable;
}

/* Events sent to Kafka and not yet passed (acknowledged or not). */
uint64_t
br_ledger_pending(const BrLedger *l)
{
	return l->events;
}

bool
br_ledger_empty(const BrLedger *l)
{
	return l->head == l->tail;
}
