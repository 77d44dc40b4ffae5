/*
 * personal_read.c
 *	  Personal fields where events are read: el_personal_reveal_dest()
 *	  wraps the receiver of read.c's plans (read(), replay(), read_event(),
 *	  read_by_time(), and poll() through el_read_shard_types()) and rewrites
 *	  each row's payload; read_all() and reveal() call el_personal_reveal()
 *	  per payload.  A marker is decrypted only when its mac is valid under
 *	  the stream's secret (so a forged one is shown as stored and never makes
 *	  a read fail), for the stream's owner and the roles granted with
 *	  grant_personal(); other readers get {"$personal": "hidden"}, and every
 *	  reader gets {"$personal": "erased"} once the key is gone.  Keys are
 *	  read with the latest snapshot, as the catalog's owner, and kept only
 *	  for the one read (docs/design/erasure.md).
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "catalog.h"
#include "event_log.h"
#include "personal.h"

typedef struct ElRevealKey
{
	uint8		key_id[EL_KEY_ID_LEN];	/* hash key */
	bool		present;
	uint8		key[EL_SUBJECT_KEY_LEN];
} ElRevealKey;

struct ElReveal
{
	Oid			relid;
	uint8		secret[EL_PERSONAL_SECRET_LEN];
	int			allowed;		/* -1 not yet known */
	HTAB	   *keys;			/* the keys this read has used */
	MemoryContext cxt;
};

ElReveal *
el_personal_reveal_begin(Oid relid)
{
	ElReveal   *state;
	uint8		secret[EL_PERSONAL_SECRET_LEN];
	HASHCTL		ctl;

	if (!el_personal_stream_secret(relid, secret))
		return NULL;
	state = palloc0(sizeof(ElReveal));
	state->relid = relid;
	memcpy(state->secret, secret, sizeof(secret));
	explicit_bzero(secret, sizeof(secret));
	state->allowed = -1;
	state->cxt = CurrentMemoryContext;
	ctl.keysize = EL_KEY_ID_LEN;
	ctl.entrysize = sizeof(ElRevealKey);
	ctl.hcxt = CurrentMemoryContext;
	state->keys = hash_create("event_log reveal keys", 16, &ctl,
							  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	return state;
}

/* Whether the current user reads this stream's personal fields in clear. */
static bool
el_reveal_allowed(ElReveal *state)
{
	if (state->allowed < 0)
	{
		bool		ok = has_privs_of_role(GetUserId(), el_rel_owner(state->relid));

		if (!ok)
		{
			Oid			types[2] = {REGCLASSOID, OIDOID};
			Datum		values[2];

			values[0] = ObjectIdGetDatum(state->relid);
			values[1] = ObjectIdGetDatum(GetUserId());
			SPI_connect();
			ok = el_catalog_sql("SELECT FROM event_log.personal_readers r"
								" WHERE r.stream OPERATOR(pg_catalog.=) $1"
								" AND pg_catalog.pg_has_role($2, r.reader::pg_catalog.oid, 'USAGE')",
								2, types, values, NULL, EL_CAT_READ | EL_CAT_LATEST, 1) > 0;
			SPI_finish();
		}
		state->allowed = ok ? 1 : 0;
	}
	return state->allowed == 1;
}

/*
 * What a reader sees of one stored value: NULL when it is not one of our
 * markers (it stays as stored); otherwise *out is the value decrypted, or
 * a marker saying it is hidden or erased.
 */
static bool
el_reveal_value(ElReveal *state, JsonbValue *v, JsonbValue *out, const char **marker)
{
	JsonbValue *msg,
			   *kid,
			   *mac;
	uint8		key_id[EL_KEY_ID_LEN];
	uint8		want[EL_PERSONAL_MAC_LEN];
	uint8		got[EL_PERSONAL_MAC_LEN];
	ElRevealKey *k;
	bool		found;
	bytea	   *plain;
	Jsonb	   *doc;

	*marker = NULL;
	if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data) ||
		JsonContainerSize(v->val.binary.data) != 3)
		return false;
	msg = el_personal_member(v->val.binary.data, EL_PERSONAL_MARK, strlen(EL_PERSONAL_MARK));
	kid = el_personal_member(v->val.binary.data, EL_PERSONAL_KEY_ID, strlen(EL_PERSONAL_KEY_ID));
	mac = el_personal_member(v->val.binary.data, EL_PERSONAL_MAC, strlen(EL_PERSONAL_MAC));
	if (msg == NULL || kid == NULL || mac == NULL ||
		msg->type != jbvString || kid->type != jbvString || mac->type != jbvString ||
		kid->val.string.len != EL_KEY_ID_LEN * 2 ||
		mac->val.string.len != EL_PERSONAL_MAC_LEN * 2)
		return false;
	/* hex_decode() raises an error on a bad digit: check the digits first */
	for (int i = 0; i < kid->val.string.len; i++)
		if (!isxdigit((unsigned char) kid->val.string.val[i]))
			return false;
	for (int i = 0; i < mac->val.string.len; i++)
		if (!isxdigit((unsigned char) mac->val.string.val[i]))
			return false;
	hex_decode(kid->val.string.val, kid->val.string.len, (char *) key_id);
	hex_decode(mac->val.string.val, mac->val.string.len, (char *) got);
	el_personal_marker_mac(state->secret, key_id, msg->val.string.val, msg->val.string.len, want);
	if (memcmp(want, got, EL_PERSONAL_MAC_LEN) != 0)
		return false;			/* not one we wrote: shown as stored */

	if (!el_reveal_allowed(state))
	{
		*marker = EL_PERSONAL_HIDDEN;
		return true;
	}
	k = hash_search(state->keys, key_id, HASH_ENTER, &found);
	if (!found)
		k->present = el_personal_key_by_id(state->relid, key_id, k->key);
	if (!k->present)
	{
		*marker = EL_PERSONAL_ERASED;
		return true;
	}

	plain = el_personal_decrypt(k->key, msg->val.string.val, msg->val.string.len);
	doc = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
											 CStringGetDatum(text_to_cstring((text *) plain))));
	if (JB_ROOT_IS_SCALAR(doc))
		(void) JsonbExtractScalar(&doc->root, out);
	else
	{
		out->type = jbvBinary;
		out->val.binary.data = &doc->root;
		out->val.binary.len = VARSIZE(doc) - VARHDRSZ;
	}
	return true;
}

/*
 * Whether an object holds a marker among its values, at any depth of
 * objects (nested fields are declared as paths of object keys; markers are
 * never written inside arrays).
 */
static bool
el_has_marker(JsonbContainer *c)
{
	JsonbIterator *it = JsonbIteratorInit(c);
	JsonbIteratorToken r;
	JsonbValue	v;

	check_stack_depth();
	while ((r = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		if (r == WJB_VALUE && v.type == jbvBinary && JsonContainerIsObject(v.val.binary.data) &&
			(el_personal_member(v.val.binary.data, EL_PERSONAL_MARK,
								strlen(EL_PERSONAL_MARK)) != NULL ||
			 el_has_marker(v.val.binary.data)))
			return true;
	return false;
}

/* An object pushed with its markers revealed, nested objects' too. */
static JsonbValue *
el_reveal_object(ElReveal *state, JsonbParseState **st, JsonbContainer *c)
{
	JsonbIterator *it = JsonbIteratorInit(c);
	JsonbIteratorToken r;
	JsonbValue	v;
	JsonbValue *res = NULL;

	check_stack_depth();
	while ((r = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (r == WJB_VALUE)
		{
			JsonbValue	out;
			const char *marker;

			if (el_reveal_value(state, &v, &out, &marker))
			{
				if (marker != NULL)
					el_personal_push_marker(st, marker);
				else
					(void) pushJsonbValue(st, WJB_VALUE, &out);
			}
			else if (v.type == jbvBinary && JsonContainerIsObject(v.val.binary.data) &&
					 el_has_marker(v.val.binary.data))
				(void) el_reveal_object(state, st, v.val.binary.data);
			else
				(void) pushJsonbValue(st, WJB_VALUE, &v);
		}
		else
			res = pushJsonbValue(st, r, r < WJB_BEGIN_ARRAY ? &v : NULL);
	}
	return res;
}

Datum
el_personal_reveal(ElReveal *state, Datum payload)
{
	Jsonb	   *doc = DatumGetJsonbP(payload);
	JsonbParseState *st = NULL;

	if (state == NULL || !JB_ROOT_IS_OBJECT(doc))
		return payload;
	/* most events have no marker: look before building anything */
	if (!el_has_marker(&doc->root))
		return payload;
	return JsonbPGetDatum(JsonbValueToJsonb(el_reveal_object(state, &st, &doc->root)));
}

/* The receiver around a read plan's rows. */
typedef struct ElRevealDest
{
	DestReceiver pub;
	DestReceiver *inner;
	ElReveal   *state;
	int			payload_att;	/* 0-based, or -1 */
	TupleTableSlot *slot;
	MemoryContext row_cxt;
} ElRevealDest;

static bool
el_reveal_receive(TupleTableSlot *slot, DestReceiver *self)
{
	ElRevealDest *d = (ElRevealDest *) self;
	int			natts = slot->tts_tupleDescriptor->natts;
	MemoryContext old;

	slot_getallattrs(slot);
	if (d->payload_att < 0 || slot->tts_isnull[d->payload_att])
		return d->inner->receiveSlot(slot, d->inner);

	MemoryContextReset(d->row_cxt);
	old = MemoryContextSwitchTo(d->row_cxt);
	ExecClearTuple(d->slot);
	memcpy(d->slot->tts_values, slot->tts_values, sizeof(Datum) * natts);
	memcpy(d->slot->tts_isnull, slot->tts_isnull, sizeof(bool) * natts);
	d->slot->tts_values[d->payload_att] =
		el_personal_reveal(d->state, slot->tts_values[d->payload_att]);
	ExecStoreVirtualTuple(d->slot);
	MemoryContextSwitchTo(old);
	return d->inner->receiveSlot(d->slot, d->inner);
}

static void
el_reveal_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
	ElRevealDest *d = (ElRevealDest *) self;

	d->payload_att = -1;
	for (int i = 0; i < typeinfo->natts; i++)
		if (strcmp(NameStr(TupleDescAttr(typeinfo, i)->attname), "payload") == 0 &&
			TupleDescAttr(typeinfo, i)->atttypid == JSONBOID)
			d->payload_att = i;
	d->slot = MakeSingleTupleTableSlot(typeinfo, &TTSOpsVirtual);
	d->row_cxt = AllocSetContextCreate(CurrentMemoryContext, "event_log reveal row",
									   ALLOCSET_SMALL_SIZES);
	d->inner->rStartup(d->inner, operation, typeinfo);
}

static void
el_reveal_shutdown(DestReceiver *self)
{
	ElRevealDest *d = (ElRevealDest *) self;

	d->inner->rShutdown(d->inner);
	if (d->slot != NULL)
		ExecDropSingleTupleTableSlot(d->slot);
	d->slot = NULL;
	if (d->row_cxt != NULL)
		MemoryContextDelete(d->row_cxt);
	d->row_cxt = NULL;
}

static void
el_reveal_destroy(DestReceiver *self)
{
	pfree(self);
}

DestReceiver *
el_personal_reveal_dest(Oid relid, DestReceiver *inner)
{
	ElRevealDest *d;
	ElReveal   *state;

	if (inner == NULL || (state = el_personal_reveal_begin(relid)) == NULL)
		return inner;
	d = palloc0(sizeof(ElRevealDest));
	d->pub.receiveSlot = el_reveal_receive;
	d->pub.rStartup = el_reveal_startup;
	d->pub.rShutdown = el_reveal_shutdown;
	d->pub.rDestroy = el_reveal_destroy;
	d->pub.mydest = inner->mydest;	/* SPI reports SELECT unless DestNone */
	d->inner = inner;
	d->state = state;
	return (DestReceiver *) d;
}
