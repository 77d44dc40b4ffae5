/*
 * personal_shred.c
 *	  Shredding erased keys: the bytes of a subject key that erase_subject()
 *	  (or drop_stream()) deleted are overwritten with zeros in the page of
 *	  event_log.subject_keys that holds them, right after the deleting
 *	  transaction commits, and the scrubbed page is WAL-logged as a full
 *	  page image.  A DELETE alone leaves the key's row version, bytes and
 *	  all, in the table's data file until VACUUM FULL, and a base backup
 *	  taken in between copies it: the subject's data could be decrypted
 *	  again from the backup (docs/design/erasure.md, "Shredding the key").
 *
 *	  Why after the commit and not at the DELETE: the overwrite is not
 *	  transactional.  Done before the commit, an abort (an error later in
 *	  the transaction, a serialization failure at commit, a cancel) would
 *	  leave the key's row alive with zeros for a key and no audit row: the
 *	  subject erased without record, and the events its appenders committed
 *	  meanwhile unreadable.  Done after, the erasure and its audit row are
 *	  durable first; an abort shreds nothing.  The cost is a window: a crash
 *	  between the commit record and the shred leaves the deleted row's bytes
 *	  in the file (docs/erasure.md says what to run then).
 *
 *	  How: erase_subject() deletes with RETURNING ctid, key and hands the
 *	  rows to el_personal_shred_later(), which pins each row's block (so the
 *	  commit does no I/O, where an error would be a PANIC) and keeps a copy
 *	  of the key.  At XACT_EVENT_COMMIT, per page: every occurrence of each
 *	  key's 32 bytes in the tuple area is zeroed (by content, not by offset:
 *	  pruning may have moved the row, and a compacted page can hold stale
 *	  copies of it), the free space between the line pointers and the tuples
 *	  is zeroed too (where such stale copies lie), and log_newpage_buffer()
 *	  writes the page image, whose redo on a standby or in recovery gives the
 *	  same scrubbed page.  The key's insert record, and full-page images of
 *	  its page taken before the shred, stay in the WAL written before it: a
 *	  base backup started later does not ship them, because starting a
 *	  backup ends the current WAL segment before its checkpoint
 *	  (do_pg_backup_start()), and the checkpoint writes the scrubbed page.
 *
 *	  Readers: keys are read through SPI, which copies the row from the page
 *	  with a pin but no lock.  The page is scrubbed under a cleanup lock when
 *	  nobody else has it pinned, so nobody reads half a key; when that is
 *	  not to be had at once (the commit must not wait, a reader may wait on
 *	  our transaction while holding a pin), under the exclusive lock, and a
 *	  reader that copied the key at that moment gets zeros, which
 *	  personal.c reads as an erased key.  A subtransaction rolled back
 *	  drops what it registered; PREPARE TRANSACTION is refused, since the
 *	  commit would happen in another session.
 */
#include "postgres.h"

#include "access/relation.h"
#include "access/xact.h"
#include "access/xloginsert.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "storage/bufpage.h"
#include "storage/itemptr.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"

#include "catalog.h"
#include "personal.h"

/* A key to shred, in the block of subject_keys that held its row. */
typedef struct ElShredKey
{
	BlockNumber block;
	SubTransactionId subid;		/* the subtransaction that deleted it */
	uint8		key[EL_SUBJECT_KEY_LEN];
} ElShredKey;

/* A pinned block, once per block, and who pinned it; hashed by block. */
typedef struct ElShredPin
{
	BlockNumber block;			/* hash key */
	Buffer		buffer;
	SubTransactionId subid;
} ElShredPin;

static ElShredKey *el_shred_keys = NULL;
static int	el_shred_nkeys = 0;
static int	el_shred_maxkeys = 0;
static HTAB *el_shred_pins = NULL;

/* Pins are the top transaction's: a statement's resource owner ends first. */
static void
el_shred_unpin(ElShredPin *pin)
{
	ResourceOwner save = CurrentResourceOwner;

	CurrentResourceOwner = TopTransactionResourceOwner;
	ReleaseBuffer(pin->buffer);
	CurrentResourceOwner = save;
}

static void
el_shred_reset(void)
{
	if (el_shred_pins != NULL)
	{
		HASH_SEQ_STATUS seq;
		ElShredPin *pin;

		hash_seq_init(&seq, el_shred_pins);
		while ((pin = hash_seq_search(&seq)) != NULL)
			el_shred_unpin(pin);
		hash_destroy(el_shred_pins);
	}
	if (el_shred_keys != NULL)
	{
		explicit_bzero(el_shred_keys, sizeof(ElShredKey) * el_shred_maxkeys);
		pfree(el_shred_keys);
	}
	el_shred_keys = NULL;
	el_shred_pins = NULL;
	el_shred_nkeys = el_shred_maxkeys = 0;
}

static void
el_shred_pin(Relation rel, BlockNumber block)
{
	ResourceOwner save = CurrentResourceOwner;
	ElShredPin *pin;
	Buffer		buffer;

	if (el_shred_pins == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(BlockNumber);
		ctl.entrysize = sizeof(ElShredPin);
		ctl.hcxt = TopMemoryContext;
		el_shred_pins = hash_create("event_log keys to shred", 16, &ctl,
									HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	if (hash_search(el_shred_pins, &block, HASH_FIND, NULL) != NULL)
		return;
	/* pinned first: an entry never holds a buffer it has not pinned */
	CurrentResourceOwner = TopTransactionResourceOwner;
	buffer = ReadBuffer(rel, block);
	CurrentResourceOwner = save;
	pin = hash_search(el_shred_pins, &block, HASH_ENTER, NULL);
	pin->buffer = buffer;
	pin->subid = GetCurrentSubTransactionId();
}

/*
 * The rows a DELETE ... RETURNING ctid, key on event_log.subject_keys left
 * in SPI_tuptable: their keys are shredded when the transaction commits.
 */
void
el_personal_shred_later(uint64 nrows)
{
	Relation	rel;

	if (nrows == 0)
		return;
	rel = relation_open(el_catalog_relid("subject_keys"), RowExclusiveLock);
	for (uint64 i = 0; i < nrows; i++)
	{
		bool		isnull;
		ItemPointer tid = (ItemPointer) DatumGetPointer(el_spi_value(i, 1, &isnull));
		bytea	   *key = DatumGetByteaPP(el_spi_value(i, 2, &isnull));
		ElShredKey *k;

		if (VARSIZE_ANY_EXHDR(key) != EL_SUBJECT_KEY_LEN)
			elog(ERROR, "malformed key in event_log.subject_keys");
		el_shred_pin(rel, ItemPointerGetBlockNumber(tid));
		if (el_shred_nkeys == el_shred_maxkeys)
		{
			el_shred_maxkeys = Max(16, el_shred_maxkeys * 2);
			if (el_shred_keys == NULL)
				el_shred_keys = MemoryContextAlloc(TopMemoryContext,
												   sizeof(ElShredKey) * el_shred_maxkeys);
			else
			{
				/* grow by hand, so that no copy of a key is left unwiped */
				ElShredKey *grown = MemoryContextAlloc(TopMemoryContext,
													   sizeof(ElShredKey) * el_shred_maxkeys);

				memcpy(grown, el_shred_keys, sizeof(ElShredKey) * el_shred_nkeys);
				explicit_bzero(el_shred_keys, sizeof(ElShredKey) * el_shred_nkeys);
				pfree(el_shred_keys);
				el_shred_keys = grown;
			}
		}
		k = &el_shred_keys[el_shred_nkeys++];
		k->block = ItemPointerGetBlockNumber(tid);
		k->subid = GetCurrentSubTransactionId();
		memcpy(k->key, VARDATA_ANY(key), EL_SUBJECT_KEY_LEN);
	}
	relation_close(rel, NoLock);
}

/*
 * Zero every copy of keys[lo..hi) (this page's, the keys being sorted by
 * block) in the page; true if the page changed.
 */
static bool
el_shred_page(Page page, int lo, int hi)
{
	PageHeader	ph = (PageHeader) page;
	bool		changed = false;

	if (PageIsNew(page) || ph->pd_lower < SizeOfPageHeaderData ||
		ph->pd_lower > ph->pd_upper || ph->pd_upper > ph->pd_special ||
		ph->pd_special > BLCKSZ)
		return false;			/* not a heap page we know: leave it be */
	for (int i = lo; i < hi; i++)
	{
		char	   *p = (char *) page + ph->pd_upper;
		char	   *end = (char *) page + ph->pd_special - EL_SUBJECT_KEY_LEN;

		while (p <= end &&
			   (p = memchr(p, el_shred_keys[i].key[0], end - p + 1)) != NULL)
		{
			if (memcmp(p, el_shred_keys[i].key, EL_SUBJECT_KEY_LEN) == 0)
			{
				memset(p, 0, EL_SUBJECT_KEY_LEN);
				changed = true;
			}
			p++;
		}
	}
	/* stale copies of moved or pruned rows lie in the free space */
	for (char *p = (char *) page + ph->pd_lower; p < (char *) page + ph->pd_upper; p++)
		if (*p != 0)
		{
			memset((char *) page + ph->pd_lower, 0, ph->pd_upper - ph->pd_lower);
			changed = true;
			break;
		}
	return changed;
}

static int
el_shred_key_cmp(const void *a, const void *b)
{
	BlockNumber x = ((const ElShredKey *) a)->block;
	BlockNumber y = ((const ElShredKey *) b)->block;

	return x < y ? -1 : x > y ? 1 : 0;
}

/*
 * At the commit: every registered page scrubbed and WAL-logged.  Nothing
 * here may fail: the transaction has committed.  The keys are sorted by
 * block, so each page looks only at its own (a bulk erasure in one
 * transaction may register many).
 */
static void
el_shred_now(void)
{
	HASH_SEQ_STATUS seq;
	ElShredPin *pin;

	if (el_shred_pins == NULL)
		return;
	if (el_shred_nkeys > 1)
		qsort(el_shred_keys, el_shred_nkeys, sizeof(ElShredKey), el_shred_key_cmp);
	hash_seq_init(&seq, el_shred_pins);
	while ((pin = hash_seq_search(&seq)) != NULL)
	{
		int			lo = 0;
		int			hi = el_shred_nkeys;
		Page		page;

		/* the first key of this block, then the end of its run */
		while (lo < hi)
		{
			int			mid = lo + (hi - lo) / 2;

			if (el_shred_keys[mid].block < pin->block)
				lo = mid + 1;
			else
				hi = mid;
		}
		for (hi = lo; hi < el_shred_nkeys && el_shred_keys[hi].block == pin->block; hi++)
			;
		if (!ConditionalLockBufferForCleanup(pin->buffer))
			LockBuffer(pin->buffer, BUFFER_LOCK_EXCLUSIVE);
		page = BufferGetPage(pin->buffer);
		START_CRIT_SECTION();
		if (el_shred_page(page, lo, hi))
		{
			MarkBufferDirty(pin->buffer);
			(void) log_newpage_buffer(pin->buffer, true);
		}
		END_CRIT_SECTION();
		LockBuffer(pin->buffer, BUFFER_LOCK_UNLOCK);
	}
}

static void
el_shred_xact_callback(XactEvent event, void *arg)
{
	if (el_shred_nkeys == 0 && el_shred_pins == NULL)
		return;
	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot prepare a transaction that erased a subject"),
					 errdetail("The erased key is shredded when the erasing transaction commits, in its own session."),
					 errhint("Erase subjects in a transaction that is not prepared.")));
			break;
		case XACT_EVENT_COMMIT:
			el_shred_now();
			el_shred_reset();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
			el_shred_reset();
			break;
		default:
			break;
	}
}

static void
el_shred_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						  SubTransactionId parentSubid, void *arg)
{
	HASH_SEQ_STATUS seq;
	ElShredPin *pin;
	int			n;

	if (el_shred_pins == NULL ||
		(event != SUBXACT_EVENT_COMMIT_SUB && event != SUBXACT_EVENT_ABORT_SUB))
		return;
	if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		for (int i = 0; i < el_shred_nkeys; i++)
			if (el_shred_keys[i].subid == mySubid)
				el_shred_keys[i].subid = parentSubid;
		hash_seq_init(&seq, el_shred_pins);
		while ((pin = hash_seq_search(&seq)) != NULL)
			if (pin->subid == mySubid)
				pin->subid = parentSubid;
		return;
	}

	/* rolled back: its DELETE is undone, those keys live on */
	n = 0;
	for (int i = 0; i < el_shred_nkeys; i++)
		if (el_shred_keys[i].subid < mySubid)
			el_shred_keys[n++] = el_shred_keys[i];
	if (n < el_shred_nkeys)
		explicit_bzero(&el_shred_keys[n], sizeof(ElShredKey) * (el_shred_nkeys - n));
	el_shred_nkeys = n;
	hash_seq_init(&seq, el_shred_pins);
	while ((pin = hash_seq_search(&seq)) != NULL)
		if (pin->subid >= mySubid)
		{
			el_shred_unpin(pin);
			(void) hash_search(el_shred_pins, &pin->block, HASH_REMOVE, NULL);
		}
}

void
el_personal_shred_init(void)
{
	RegisterXactCallback(el_shred_xact_callback, NULL);
	RegisterSubXactCallback(el_shred_subxact_callback, NULL);
}
