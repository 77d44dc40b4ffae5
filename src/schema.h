/*
 * schema.h
 *	  Event schemas (schema.c, schema_registry.c, schema_compile.c,
 *	  schema_validate.c, schema_compat.c, schema_upcast.c): a
 *	  registry of JSON Schemas per stream and event type, compiled once per
 *	  backend and checked on every append (docs/schemas.md,
 *	  docs/design/schemas.md).  Layer 3: it reads its catalog through
 *	  catalog.c and knows nothing of projections or consumers.
 */
#ifndef EL_SCHEMA_H
#define EL_SCHEMA_H

#include "postgres.h"

#include "nodes/pg_list.h"
#include "tcop/dest.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/relcache.h"

#include "event_log.h"

/* ----------------------------------------------------------------
 * What the rest of the extension uses
 * ----------------------------------------------------------------
 */

/* The metadata key that records the schema version an event was checked against. */
#define EL_SCHEMA_VERSION_KEY	"schema_version"

extern void el_schema_init(void);
extern void el_upcast_init(void);

/* What the append trigger does with the row after el_schema_check_event(). */
typedef enum ElSchemaCheck
{
	EL_SCHEMA_PASSED,			/* append it as it is */
	EL_SCHEMA_RECORDED,			/* append it with *metadata, which records the version */
	EL_SCHEMA_DIVERTED,			/* skip it: it went to the stream's quarantine */
	EL_SCHEMA_KNOWN				/* skip it: refused, but its event_id is in the stream */
} ElSchemaCheck;

/*
 * The append trigger's one call: check the event (the row's contract
 * columns) against its type's schema, or apply the stream's policy for
 * types without one.  A refused event raises its error, or, when the stream
 * has a quarantine and may_divert (a plain INSERT or COPY, not append(),
 * which returns the event's position in the stream), is appended there;
 * but first, when known is given, it is asked whether the stream already
 * has the event (its event_id): a retry of an appended event is skipped,
 * whatever it holds, as when it passes (EL_SCHEMA_KNOWN).
 */
typedef bool (*ElKnownEvent) (void *arg);
extern ElSchemaCheck el_schema_check_event(Relation rel, Datum *values, bool *isnull,
										   Datum *metadata, bool *metadata_null,
										   bool may_divert, ElKnownEvent known,
										   void *known_arg);

/*
 * schema_upcast.c, for the readers: upcast an event (its EL_NATTS columns,
 * in place) to its type's latest version when it was recorded at an older
 * one; false if it is left as it is.  A DestReceiver that does the same to
 * each row of a stream's read plan before passing it on.
 */
extern bool el_schema_stream_has_schemas(Oid relid);

/*
 * What one read remembers across its rows, so that rows at the latest
 * version cost next to nothing: whether the stream has schemas, and the
 * latest version of the last type seen.  el_upcast_memo_init() before the
 * first row; NULL when there is no such read (a projection's event).
 */
typedef struct ElUpcastMemo
{
	int			has_schemas;	/* -1: not looked up yet */
	int			typelen;		/* -1: no type yet */
	int32		latest;
	char		type[EL_MAX_TYPE_BYTES];
} ElUpcastMemo;

extern void el_upcast_memo_init(ElUpcastMemo *memo);
extern bool el_upcast_event(ElUpcastMemo *memo, Oid relid, Datum *values, bool *nulls);
extern DestReceiver *el_upcast_dest(Oid relid, DestReceiver *inner);

/* drop_stream(): the stream's schemas and settings go with it. */
extern void el_schema_forget(Oid relid);

/* schema.c, for the registry's functions and upcasting */
typedef struct ElSchema ElSchema;
extern void el_schema_require_owner(Oid relid);
extern int32 el_schema_metadata_version(Jsonb *meta);
extern int32 el_schema_latest_version(Oid relid, text *type);
extern ElSchema *el_schema_require(Oid relid, text *type, int32 version, int32 *got);
extern ElSchema *el_schema_private_copy(Oid relid, text *type, int32 version);
extern HTAB *el_schema_hash(HTAB **hash, MemoryContext *cxt, bool *stale,
							const char *name, Size keysize, Size entrysize);

/* ----------------------------------------------------------------
 * What the schema files share
 * ----------------------------------------------------------------
 */

/* JSON types, as a bit set ("integer" is a number with no fraction). */
#define EL_JT_NULL		0x01
#define EL_JT_BOOLEAN	0x02
#define EL_JT_OBJECT	0x04
#define EL_JT_ARRAY		0x08
#define EL_JT_NUMBER	0x10
#define EL_JT_STRING	0x20
#define EL_JT_INTEGER	0x40

typedef enum ElFormat
{
	EL_FORMAT_NONE = 0,
	EL_FORMAT_DATE_TIME,
	EL_FORMAT_UUID,
	EL_FORMAT_EMAIL
} ElFormat;

typedef struct ElSchemaNode ElSchemaNode;

/* A property of "properties", its name as jsonb stores keys. */
typedef struct ElSchemaProp
{
	const char *name;
	int			len;
	ElSchemaNode *schema;
} ElSchemaProp;

/*
 * One compiled (sub)schema.  Absent keywords are NULL, 0 or -1; a boolean
 * schema is always_valid or always_invalid with nothing else set.
 */
struct ElSchemaNode
{
	bool		always_valid;	/* true, or {} */
	bool		always_invalid; /* false */
	int			types;			/* EL_JT_* bits; 0: any */

	/* objects */
	int			nprops;
	ElSchemaProp *props;		/* sorted as jsonb sorts keys */
	int			nrequired;
	ElSchemaProp *required;		/* names only */
	ElSchemaNode *additional;	/* additionalProperties; NULL: any */
	int64		min_props;
	int64		max_props;

	/* arrays */
	ElSchemaNode *items;
	int64		min_items;
	int64		max_items;
	bool		unique_items;

	/* any type */
	bool		has_enum;		/* "enum", maybe empty: then nothing is valid */
	int			nenum;
	Jsonb	  **enum_values;
	Jsonb	   *const_value;

	/* numbers */
	Numeric		minimum;
	Numeric		maximum;
	Numeric		exclusive_minimum;
	Numeric		exclusive_maximum;
	Numeric		multiple_of;

	/* strings */
	int64		min_length;
	int64		max_length;
	text	   *pattern;
	ElFormat	format;

	/* applicators */
	List	   *all_of;
	List	   *any_of;
	List	   *one_of;
	ElSchemaNode *not;
	char	   *ref;			/* "$ref" as written */
	ElSchemaNode *ref_target;	/* resolved after the whole schema compiled */

	int			mark;			/* compile-time cycle check */
	Jsonb	   *source;			/* the subschema as written */
};

/* A compiled schema: its root and its "$defs". */
struct ElSchema
{
	ElSchemaNode *root;
	int			ndefs;
	char	  **def_names;
	ElSchemaNode **defs;
};

/* One way an instance breaks a schema. */
typedef struct ElSchemaError
{
	char	   *path;			/* "$", "$.lines[0].sku" */
	const char *keyword;		/* the rule broken: "minimum", "required" */
	char	   *message;
} ElSchemaError;

/* schema_compile.c: refuses what it does not support, never ignores it. */
extern ElSchema *el_schema_compile(Jsonb *schema);

/* schema_validate.c: the errors of an instance, at most max_errors (0: all). */
extern List *el_schema_validate(ElSchema *schema, Jsonb *instance, int max_errors);
extern List *el_schema_validate_ext(ElSchema *schema, Jsonb *instance,
									int max_errors, bool markers_pass);
extern bool el_schema_node_accepts(ElSchemaNode *node, Jsonb *value);

/*
 * schema_compat.c: whether every instance `narrow` accepts, `wide` accepts
 * too.  NULL when that is proven; else why not (or why it could not be
 * proven), with the path of the value concerned, naming the sides as given.
 */
extern char *el_schema_includes(ElSchema *wide, ElSchema *narrow,
								const char *wide_name, const char *narrow_name);

#endif							/* EL_SCHEMA_H */
