/*
 * schema_compile.c
 *	  Compiling a JSON Schema (draft 2020-12), given as jsonb, into the tree
 *	  of ElSchemaNode that schema_validate.c walks.
 *
 *	  Every keyword of the schema is either compiled or refused: a keyword
 *	  we do not enforce would let events through that the writer of the
 *	  schema meant to stop, so an unknown or unsupported keyword is an error
 *	  at registration (FEATURE_NOT_SUPPORTED), never ignored.  Annotations
 *	  that assert nothing (title, description, default, ...) are accepted.
 *	  Values are checked here once (a "minimum" that is no number, a
 *	  "pattern" that is no regular expression), so that validation at append
 *	  never meets a malformed schema.  "$ref" may name the schema itself
 *	  ("#") or a member of the root's "$defs" ("#/$defs/name"); a cycle of
 *	  references that never descends into the instance is refused, since it
 *	  could only recurse until the stack runs out.
 */
#include "postgres.h"

#include "catalog/pg_collation.h"
#include "miscadmin.h"
#include "regex/regex.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "schema.h"

#define EL_SCHEMA_DIALECT "https://json-schema.org/draft/2020-12/schema"

typedef struct ElCompile
{
	List	   *nodes;			/* every node, for the cycle check */
	List	   *refs;			/* nodes with a "$ref" to resolve */
	List	   *ref_paths;		/* where each of them is, for errors */
} ElCompile;

static ElSchemaNode *el_compile_node(ElCompile *cc, JsonbValue *v,
									 const char *path, bool root,
									 JsonbValue *defs);

/* Keywords that only annotate: accepted, and assert nothing. */
static const char *const el_annotations[] = {
	"title", "description", "default", "examples", "$comment",
	"deprecated", "readOnly", "writeOnly", NULL
};

static void
el_bad_schema(const char *path, const char *fmt, const char *kw)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid JSON Schema: \"%s\" %s", kw, fmt),
			 errdetail("At %s of the schema.", path)));
}

static char *
el_schema_path(const char *path, const char *kw)
{
	return psprintf("%s/%s", path, kw);
}

/* A document as a JsonbValue of its own, a scalar unwrapped. */
static void
el_document_value(Jsonb *doc, JsonbValue *out)
{
	if (JB_ROOT_IS_SCALAR(doc))
	{
		(void) JsonbExtractScalar(&doc->root, out);
		return;
	}
	out->type = jbvBinary;
	out->val.binary.data = &doc->root;
	out->val.binary.len = VARSIZE(doc) - VARHDRSZ;
}

static bool
el_is_object(JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data);
}

static bool
el_is_array(JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data);
}

static Jsonb *
el_value_jsonb(JsonbValue *v)
{
	return JsonbValueToJsonb(v);
}

/* A non-negative integer keyword ("minLength", "maxItems", ...). */
static int64
el_count_value(JsonbValue *v, const char *path, const char *kw)
{
	Numeric		n;
	Datum		floor;

	if (v->type != jbvNumeric)
		el_bad_schema(path, "must be a non-negative integer", kw);
	n = v->val.numeric;
	floor = DirectFunctionCall1(numeric_floor, NumericGetDatum(n));
	if (DatumGetInt32(DirectFunctionCall2(numeric_cmp, floor, NumericGetDatum(n))) != 0 ||
		DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(n),
										  NumericGetDatum(int64_to_numeric(0)))) < 0)
		el_bad_schema(path, "must be a non-negative integer", kw);
	if (DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(n),
										  NumericGetDatum(int64_to_numeric(PG_INT64_MAX)))) > 0)
		return PG_INT64_MAX;
	return DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(n)));
}

static Numeric
el_number_value(JsonbValue *v, const char *path, const char *kw)
{
	if (v->type != jbvNumeric)
		el_bad_schema(path, "must be a number", kw);
	return DatumGetNumericCopy(NumericGetDatum(v->val.numeric));
}

static int
el_type_bit(JsonbValue *v, const char *path)
{
	static const struct
	{
		const char *name;
		int			bit;
	}			names[] = {
		{"null", EL_JT_NULL}, {"boolean", EL_JT_BOOLEAN},
		{"object", EL_JT_OBJECT}, {"array", EL_JT_ARRAY},
		{"number", EL_JT_NUMBER}, {"string", EL_JT_STRING},
		{"integer", EL_JT_INTEGER}
	};

	if (v->type == jbvString)
		for (int i = 0; i < (int) lengthof(names); i++)
			if ((int) strlen(names[i].name) == v->val.string.len &&
				memcmp(names[i].name, v->val.string.val, v->val.string.len) == 0)
				return names[i].bit;
	el_bad_schema(path, "must name JSON types: null, boolean, object, array, number, string or integer", "type");
	return 0;					/* not reached */
}

/* jsonb's order of object keys: shorter first, then bytewise. */
static int
el_key_cmp(const char *a, int alen, const char *b, int blen)
{
	if (alen != blen)
		return alen < blen ? -1 : 1;
	return memcmp(a, b, alen);
}

static int
el_prop_cmp(const void *a, const void *b)
{
	const ElSchemaProp *x = a;
	const ElSchemaProp *y = b;

	return el_key_cmp(x->name, x->len, y->name, y->len);
}

/* The members of an array value, as JsonbValues (scalars unwrapped). */
static List *
el_array_members(JsonbValue *v)
{
	JsonbIterator *it = JsonbIteratorInit(v->val.binary.data);
	JsonbValue	elem;
	JsonbIteratorToken tok;
	List	   *out = NIL;

	while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
		if (tok == WJB_ELEM)
		{
			JsonbValue *copy = palloc(sizeof(JsonbValue));

			*copy = elem;
			out = lappend(out, copy);
		}
	return out;
}

/* A list of subschemas: allOf, anyOf, oneOf (a non-empty array). */
static List *
el_compile_list(ElCompile *cc, JsonbValue *v, const char *path, const char *kw,
				JsonbValue *defs)
{
	List	   *members;
	List	   *out = NIL;
	int			i = 0;
	ListCell   *lc;

	if (!el_is_array(v))
		el_bad_schema(path, "must be a non-empty array of schemas", kw);
	members = el_array_members(v);
	if (members == NIL)
		el_bad_schema(path, "must be a non-empty array of schemas", kw);
	foreach(lc, members)
		out = lappend(out, el_compile_node(cc, lfirst(lc),
										   psprintf("%s/%s/%d", path, kw, i++),
										   false, defs));
	return out;
}

static void
el_compile_properties(ElCompile *cc, ElSchemaNode *node, JsonbValue *v,
					  const char *path, JsonbValue *defs)
{
	JsonbIterator *it;
	JsonbValue	k;
	JsonbValue	val;
	JsonbIteratorToken tok;
	int			n = 0;

	if (!el_is_object(v))
		el_bad_schema(path, "must be an object of schemas", "properties");
	node->props = palloc0(sizeof(ElSchemaProp) *
						  Max(1, JsonContainerSize(v->val.binary.data)));
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		if (tok != WJB_KEY)
			continue;
		tok = JsonbIteratorNext(&it, &val, true);
		node->props[n].name = pnstrdup(k.val.string.val, k.val.string.len);
		node->props[n].len = k.val.string.len;
		node->props[n].schema =
			el_compile_node(cc, &val,
							psprintf("%s/properties/%s", path,
									 pnstrdup(k.val.string.val, k.val.string.len)),
							false, defs);
		n++;
	}
	node->nprops = n;
	/* jsonb keeps keys in this order already; sort anyway, it is cheap */
	qsort(node->props, n, sizeof(ElSchemaProp), el_prop_cmp);
}

static void
el_compile_required(ElSchemaNode *node, JsonbValue *v, const char *path)
{
	List	   *members;
	ListCell   *lc;
	int			n = 0;

	if (!el_is_array(v))
		el_bad_schema(path, "must be an array of strings", "required");
	members = el_array_members(v);
	node->required = palloc0(sizeof(ElSchemaProp) * Max(1, list_length(members)));
	foreach(lc, members)
	{
		JsonbValue *m = lfirst(lc);

		if (m->type != jbvString)
			el_bad_schema(path, "must be an array of strings", "required");
		for (int i = 0; i < n; i++)
			if (el_key_cmp(node->required[i].name, node->required[i].len,
						   m->val.string.val, m->val.string.len) == 0)
				el_bad_schema(path, "must not name a property twice", "required");
		node->required[n].name = pnstrdup(m->val.string.val, m->val.string.len);
		node->required[n].len = m->val.string.len;
		n++;
	}
	node->nrequired = n;
}

static void
el_compile_type(ElSchemaNode *node, JsonbValue *v, const char *path)
{
	if (el_is_array(v))
	{
		List	   *members = el_array_members(v);
		ListCell   *lc;

		if (members == NIL)
			el_bad_schema(path, "must not be an empty array", "type");
		foreach(lc, members)
		{
			int			bit = el_type_bit(lfirst(lc), path);

			if (node->types & bit)
				el_bad_schema(path, "must not name a type twice", "type");
			node->types |= bit;
		}
	}
	else
		node->types = el_type_bit(v, path);
}

static void
el_compile_enum(ElSchemaNode *node, JsonbValue *v, const char *path)
{
	List	   *members;
	ListCell   *lc;
	int			n = 0;

	if (!el_is_array(v))
		el_bad_schema(path, "must be an array", "enum");
	members = el_array_members(v);
	node->enum_values = palloc(sizeof(Jsonb *) * Max(1, list_length(members)));
	foreach(lc, members)
		node->enum_values[n++] = el_value_jsonb(lfirst(lc));
	node->nenum = n;
	node->has_enum = true;
}

static void
el_compile_pattern(ElSchemaNode *node, JsonbValue *v, const char *path)
{
	if (v->type != jbvString)
		el_bad_schema(path, "must be a string", "pattern");
	node->pattern = cstring_to_text_with_len(v->val.string.val, v->val.string.len);
	/* compiling it now reports a bad expression at registration */
	(void) RE_compile_and_cache(node->pattern, REG_ADVANCED, DEFAULT_COLLATION_OID);
}

static void
el_compile_format(ElSchemaNode *node, JsonbValue *v, const char *path)
{
	char	   *name;

	if (v->type != jbvString)
		el_bad_schema(path, "must be a string", "format");
	name = pnstrdup(v->val.string.val, v->val.string.len);
	if (strcmp(name, "date-time") == 0)
		node->format = EL_FORMAT_DATE_TIME;
	else if (strcmp(name, "uuid") == 0)
		node->format = EL_FORMAT_UUID;
	else if (strcmp(name, "email") == 0)
		node->format = EL_FORMAT_EMAIL;
	else
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("unsupported JSON Schema format \"%s\"", name),
				 errdetail("At %s of the schema.", path),
				 errhint("Supported formats are date-time, uuid and email; use \"pattern\" for others.")));
}

/*
 * One subschema.  `root`: the schema itself, where "$defs", "$schema" and
 * "$id" may be.  `defs`: the root's "$defs", whose members are compiled
 * as roots of their own branch (the caller does that).
 */
static ElSchemaNode *
el_compile_node(ElCompile *cc, JsonbValue *v, const char *path, bool root,
				JsonbValue *defs)
{
	ElSchemaNode *node = palloc0(sizeof(ElSchemaNode));
	JsonbIterator *it;
	JsonbValue	k;
	JsonbValue	val;
	JsonbIteratorToken tok;

	check_stack_depth();
	CHECK_FOR_INTERRUPTS();

	node->min_props = node->max_props = -1;
	node->min_items = node->max_items = -1;
	node->min_length = node->max_length = -1;
	cc->nodes = lappend(cc->nodes, node);
	node->source = JsonbValueToJsonb(v);

	if (v->type == jbvBool)
	{
		node->always_valid = v->val.boolean;
		node->always_invalid = !v->val.boolean;
		return node;
	}
	if (!el_is_object(v))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid JSON Schema: a schema must be an object or a boolean"),
				 errdetail("At %s of the schema.", path)));

	if (JsonContainerSize(v->val.binary.data) == 0)
		node->always_valid = true;

	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		char	   *kw;
		bool		annotation = false;

		if (tok != WJB_KEY)
			continue;
		(void) JsonbIteratorNext(&it, &val, true);
		kw = pnstrdup(k.val.string.val, k.val.string.len);

		for (int i = 0; el_annotations[i] != NULL; i++)
			if (strcmp(kw, el_annotations[i]) == 0)
				annotation = true;
		if (annotation)
			continue;

		if (strcmp(kw, "type") == 0)
			el_compile_type(node, &val, path);
		else if (strcmp(kw, "properties") == 0)
			el_compile_properties(cc, node, &val, path, defs);
		else if (strcmp(kw, "required") == 0)
			el_compile_required(node, &val, path);
		else if (strcmp(kw, "additionalProperties") == 0)
			node->additional = el_compile_node(cc, &val, el_schema_path(path, kw), false, defs);
		else if (strcmp(kw, "minProperties") == 0)
			node->min_props = el_count_value(&val, path, kw);
		else if (strcmp(kw, "maxProperties") == 0)
			node->max_props = el_count_value(&val, path, kw);
		else if (strcmp(kw, "items") == 0)
		{
			if (el_is_array(&val))
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("unsupported JSON Schema: \"items\" as an array"),
						 errdetail("At %s of the schema.", path),
						 errhint("Draft 2020-12 spells tuples \"prefixItems\", which is not supported; \"items\" takes one schema for every item.")));
			node->items = el_compile_node(cc, &val, el_schema_path(path, kw), false, defs);
		}
		else if (strcmp(kw, "minItems") == 0)
			node->min_items = el_count_value(&val, path, kw);
		else if (strcmp(kw, "maxItems") == 0)
			node->max_items = el_count_value(&val, path, kw);
		else if (strcmp(kw, "uniqueItems") == 0)
		{
			if (val.type != jbvBool)
				el_bad_schema(path, "must be a boolean", kw);
			node->unique_items = val.val.boolean;
		}
		else if (strcmp(kw, "enum") == 0)
			el_compile_enum(node, &val, path);
		else if (strcmp(kw, "const") == 0)
			node->const_value = el_value_jsonb(&val);
		else if (strcmp(kw, "minimum") == 0)
			node->minimum = el_number_value(&val, path, kw);
		else if (strcmp(kw, "maximum") == 0)
			node->maximum = el_number_value(&val, path, kw);
		else if (strcmp(kw, "exclusiveMinimum") == 0)
			node->exclusive_minimum = el_number_value(&val, path, kw);
		else if (strcmp(kw, "exclusiveMaximum") == 0)
			node->exclusive_maximum = el_number_value(&val, path, kw);
		else if (strcmp(kw, "multipleOf") == 0)
		{
			node->multiple_of = el_number_value(&val, path, kw);
			if (DatumGetInt32(DirectFunctionCall2(numeric_cmp,
												  NumericGetDatum(node->multiple_of),
												  NumericGetDatum(int64_to_numeric(0)))) <= 0)
				el_bad_schema(path, "must be a number greater than 0", kw);
		}
		else if (strcmp(kw, "minLength") == 0)
			node->min_length = el_count_value(&val, path, kw);
		else if (strcmp(kw, "maxLength") == 0)
			node->max_length = el_count_value(&val, path, kw);
		else if (strcmp(kw, "pattern") == 0)
			el_compile_pattern(node, &val, path);
		else if (strcmp(kw, "format") == 0)
			el_compile_format(node, &val, path);
		else if (strcmp(kw, "allOf") == 0)
			node->all_of = el_compile_list(cc, &val, path, kw, defs);
		else if (strcmp(kw, "anyOf") == 0)
			node->any_of = el_compile_list(cc, &val, path, kw, defs);
		else if (strcmp(kw, "oneOf") == 0)
			node->one_of = el_compile_list(cc, &val, path, kw, defs);
		else if (strcmp(kw, "not") == 0)
			node->not = el_compile_node(cc, &val, el_schema_path(path, kw), false, defs);
		else if (strcmp(kw, "$ref") == 0)
		{
			if (val.type != jbvString)
				el_bad_schema(path, "must be a string", kw);
			node->ref = pnstrdup(val.val.string.val, val.val.string.len);
			cc->refs = lappend(cc->refs, node);
			cc->ref_paths = lappend(cc->ref_paths, pstrdup(path));
		}
		else if (root && strcmp(kw, "$defs") == 0)
		{
			if (!el_is_object(&val))
				el_bad_schema(path, "must be an object of schemas", kw);
			/* compiled by el_schema_compile() */
		}
		else if (root && strcmp(kw, "$schema") == 0)
		{
			if (val.type != jbvString ||
				val.val.string.len != (int) strlen(EL_SCHEMA_DIALECT) ||
				memcmp(val.val.string.val, EL_SCHEMA_DIALECT, val.val.string.len) != 0)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("unsupported JSON Schema dialect"),
						 errdetail("\"$schema\" must be \"%s\" (draft 2020-12), or absent.",
								   EL_SCHEMA_DIALECT)));
		}
		else if (root && strcmp(kw, "$id") == 0)
		{
			if (val.type != jbvString)
				el_bad_schema(path, "must be a string", kw);
			/* the root's identifier: references are resolved within it anyway */
		}
		else
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("unsupported JSON Schema keyword \"%s\"", kw),
					 errdetail("At %s of the schema.", path),
					 errhint("Supported keywords are listed in docs/schemas.md; unsupported ones are refused rather than ignored.")));
	}
	node->always_valid = node->always_valid && !node->always_invalid;
	return node;
}

/* "name" of "#/$defs/name", JSON Pointer and percent escapes undone. */
static char *
el_ref_def_name(const char *ref)
{
	const char *p = ref + strlen("#/$defs/");
	StringInfoData buf;

	initStringInfo(&buf);
	for (; *p; p++)
	{
		if (*p == '/')
			return NULL;		/* deeper than a member of $defs */
		if (*p == '~' && (p[1] == '0' || p[1] == '1'))
		{
			appendStringInfoChar(&buf, p[1] == '0' ? '~' : '/');
			p++;
		}
		else if (*p == '%' && isxdigit((unsigned char) p[1]) && isxdigit((unsigned char) p[2]))
		{
			char		hex[3] = {p[1], p[2], 0};

			appendStringInfoChar(&buf, (char) strtol(hex, NULL, 16));
			p += 2;
		}
		else
			appendStringInfoChar(&buf, *p);
	}
	return buf.data;
}

static void
el_resolve_refs(ElCompile *cc, ElSchema *schema)
{
	ListCell   *lc;
	ListCell   *lp;

	forboth(lc, cc->refs, lp, cc->ref_paths)
	{
		ElSchemaNode *node = lfirst(lc);
		char	   *name = NULL;

		if (strcmp(node->ref, "#") == 0)
		{
			node->ref_target = schema->root;
			continue;
		}
		if (strncmp(node->ref, "#/$defs/", strlen("#/$defs/")) == 0)
			name = el_ref_def_name(node->ref);
		if (name == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("unsupported JSON Schema reference \"%s\"", node->ref),
					 errdetail("At %s of the schema.", (char *) lfirst(lp)),
					 errhint("\"$ref\" may be \"#\" or \"#/$defs/name\", a definition in the same schema.")));
		for (int i = 0; i < schema->ndefs; i++)
			if (strcmp(schema->def_names[i], name) == 0)
				node->ref_target = schema->defs[i];
		if (node->ref_target == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid JSON Schema: \"$ref\" \"%s\" names no definition", node->ref),
					 errdetail("At %s of the schema.", (char *) lfirst(lp)),
					 errhint("Define it under the root's \"$defs\".")));
	}
}

/*
 * Whether following allOf/anyOf/oneOf/not/$ref from node, without
 * descending into a property or an item, comes back to a node on the way.
 */
static bool
el_has_cycle(ElSchemaNode *node)
{
	ListCell   *lc;
	List	   *lists[3];

	if (node->mark == 1)
		return true;
	if (node->mark == 2)
		return false;
	check_stack_depth();
	node->mark = 1;
	if (node->ref_target && el_has_cycle(node->ref_target))
		return true;
	if (node->not && el_has_cycle(node->not))
		return true;
	lists[0] = node->all_of;
	lists[1] = node->any_of;
	lists[2] = node->one_of;
	for (int i = 0; i < 3; i++)
		foreach(lc, lists[i])
			if (el_has_cycle(lfirst(lc)))
			return true;
	node->mark = 2;
	return false;
}

ElSchema *
el_schema_compile(Jsonb *doc)
{
	ElCompile	cc = {0};
	ElSchema   *schema = palloc0(sizeof(ElSchema));
	JsonbValue	v;
	JsonbValue *defs = NULL;
	ListCell   *lc;

	el_document_value(doc, &v);
	if (el_is_object(&v))
	{
		JsonbValue	key;

		key.type = jbvString;
		key.val.string.val = "$defs";
		key.val.string.len = 5;
		defs = findJsonbValueFromContainer(v.val.binary.data, JB_FOBJECT, &key);
	}
	schema->root = el_compile_node(&cc, &v, "#", true, defs);

	if (defs != NULL && el_is_object(defs))
	{
		JsonbIterator *it = JsonbIteratorInit(defs->val.binary.data);
		JsonbValue	k;
		JsonbValue	val;
		JsonbIteratorToken tok;
		int			n = JsonContainerSize(defs->val.binary.data);

		schema->def_names = palloc0(sizeof(char *) * Max(1, n));
		schema->defs = palloc0(sizeof(ElSchemaNode *) * Max(1, n));
		while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
		{
			char	   *name;

			if (tok != WJB_KEY)
				continue;
			(void) JsonbIteratorNext(&it, &val, true);
			name = pnstrdup(k.val.string.val, k.val.string.len);
			schema->def_names[schema->ndefs] = name;
			schema->defs[schema->ndefs] =
				el_compile_node(&cc, &val, psprintf("#/$defs/%s", name), false, defs);
			schema->ndefs++;
		}
	}

	el_resolve_refs(&cc, schema);
	foreach(lc, cc.nodes)
		if (el_has_cycle(lfirst(lc)))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid JSON Schema: its references form a cycle"),
					 errdetail("A chain of \"$ref\", \"allOf\", \"anyOf\", \"oneOf\" or \"not\" comes back to where it started without descending into a property or an item."),
					 errhint("Such a schema could never finish checking a value.")));
	return schema;
}
