/*
 * schema_compat.c
 *	  Whether one compiled schema includes another: every instance that
 *	  `narrow` accepts, `wide` accepts too.  register_schema() asks it to
 *	  enforce the compatibility modes (BACKWARD: the new version includes
 *	  the old one; FORWARD: the old one includes the new; FULL: both).
 *
 *	  Inclusion between JSON Schemas is not decidable in general, so this
 *	  is a proof search that is sound but not complete: it says "included"
 *	  only when the rules below show it, and otherwise names the first
 *	  keyword where it could not, with the path of the value concerned.  A
 *	  change it cannot prove compatible is refused; the user may set the
 *	  mode to NONE for that type and rely on check_schema_history(), which
 *	  tests the new version against the events themselves.
 *
 *	  The rules, for wide ⊇ narrow:
 *	  - true on the wide side, or false on the narrow side: included;
 *		identical subschemas (same text, no "$ref" inside): included.
 *	  - narrow with enum or const is a finite set: each of its values must
 *		pass the wide schema (exact).
 *	  - narrow's applicators only narrow it further: it is included when
 *		its "$ref" target, one of its allOf, or every one of its anyOf or
 *		oneOf branches is; otherwise its own keywords must be.  Wide's
 *		"$ref" and allOf must each include narrow, one anyOf branch must;
 *		wide's oneOf and not are compared only when identical.
 *	  - types: narrow's types must be among wide's (an integer is a number).
 *	  - per type narrow allows: each bound of wide must be matched by an
 *		equal or tighter bound of narrow; wide's required properties must
 *		be required by narrow; each property schema (and additionalProperties,
 *		items) must include narrow's for the same values; pattern and format
 *		must be the same.
 *	  Recursive references are handled coinductively: a pair of subschemas
 *	  already under comparison is assumed included.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "schema.h"

typedef struct ElIncl
{
	List	   *assumed;		/* pairs (wide, narrow) under comparison */
} ElIncl;

static char *el_incl(ElIncl *cx, ElSchemaNode *w, ElSchemaNode *n, const char *path);

static ElSchemaNode *
el_true_node(void)
{
	ElSchemaNode *node = palloc0(sizeof(ElSchemaNode));

	node->always_valid = true;
	node->min_props = node->max_props = -1;
	node->min_items = node->max_items = -1;
	node->min_length = node->max_length = -1;
	return node;
}

static bool
el_has_ref(ElSchemaNode *node)
{
	ListCell   *lc;
	List	   *lists[3];

	if (node == NULL)
		return false;
	if (node->ref != NULL || el_has_ref(node->additional) ||
		el_has_ref(node->items) || el_has_ref(node->not))
		return true;
	for (int i = 0; i < node->nprops; i++)
		if (el_has_ref(node->props[i].schema))
			return true;
	lists[0] = node->all_of;
	lists[1] = node->any_of;
	lists[2] = node->one_of;
	for (int i = 0; i < 3; i++)
		foreach(lc, lists[i])
			if (el_has_ref(lfirst(lc)))
			return true;
	return false;
}

static int
el_ncmp(Numeric a, Numeric b)
{
	return DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(a),
											 NumericGetDatum(b)));
}

static const char *
el_nstr(Numeric n)
{
	return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(n)));
}

static char *
el_why(const char *path, const char *fmt, const char *a, const char *b)
{
	return psprintf("at %s, %s", path, psprintf(fmt, a, b));
}

/* Lower bounds: wide's minimum/exclusiveMinimum against narrow's. */
static char *
el_incl_bounds(ElSchemaNode *w, ElSchemaNode *n, const char *path)
{
	if (w->minimum &&
		!((n->minimum && el_ncmp(n->minimum, w->minimum) >= 0) ||
		  (n->exclusive_minimum && el_ncmp(n->exclusive_minimum, w->minimum) >= 0)))
		return el_why(path, "<W> requires a minimum of %s that <N> does not%s",
					  el_nstr(w->minimum), "");
	if (w->exclusive_minimum &&
		!((n->minimum && el_ncmp(n->minimum, w->exclusive_minimum) > 0) ||
		  (n->exclusive_minimum && el_ncmp(n->exclusive_minimum, w->exclusive_minimum) >= 0)))
		return el_why(path, "<W> requires values greater than %s, <N> does not%s",
					  el_nstr(w->exclusive_minimum), "");
	if (w->maximum &&
		!((n->maximum && el_ncmp(n->maximum, w->maximum) <= 0) ||
		  (n->exclusive_maximum && el_ncmp(n->exclusive_maximum, w->maximum) <= 0)))
		return el_why(path, "<W> requires a maximum of %s that <N> does not%s",
					  el_nstr(w->maximum), "");
	if (w->exclusive_maximum &&
		!((n->maximum && el_ncmp(n->maximum, w->exclusive_maximum) < 0) ||
		  (n->exclusive_maximum && el_ncmp(n->exclusive_maximum, w->exclusive_maximum) <= 0)))
		return el_why(path, "<W> requires values less than %s, <N> does not%s",
					  el_nstr(w->exclusive_maximum), "");
	if (w->multiple_of)
	{
		if (n->multiple_of == NULL ||
			el_ncmp(DatumGetNumeric(DirectFunctionCall2(numeric_mod,
														NumericGetDatum(n->multiple_of),
														NumericGetDatum(w->multiple_of))),
					int64_to_numeric(0)) != 0)
			return el_why(path, "<W> requires multiples of %s, <N> does not%s",
						  el_nstr(w->multiple_of), "");
	}
	return NULL;
}

/* A count bound (lengths, items, properties): -1 is none. */
static char *
el_incl_counts(int64 wmin, int64 wmax, int64 nmin, int64 nmax, const char *path,
			   const char *what)
{
	if (wmin > 0 && nmin < wmin)
		return el_why(path, "<W> requires at least %s %s, <N> does not",
					  psprintf(INT64_FORMAT, wmin), what);
	if (wmax >= 0 && (nmax < 0 || nmax > wmax))
		return el_why(path, "<W> allows at most %s %s, <N> allows more",
					  psprintf(INT64_FORMAT, wmax), what);
	return NULL;
}

static char *
el_incl_strings(ElSchemaNode *w, ElSchemaNode *n, const char *path)
{
	char	   *why = el_incl_counts(w->min_length, w->max_length,
									 n->min_length, n->max_length, path, "characters");

	if (why)
		return why;
	if (w->pattern &&
		(n->pattern == NULL || strcmp(text_to_cstring(w->pattern), text_to_cstring(n->pattern)) != 0))
		return el_why(path, "<W> requires the pattern %s, <N> has %s",
					  text_to_cstring(w->pattern),
					  n->pattern ? psprintf("the pattern %s", text_to_cstring(n->pattern)) : "no pattern");
	if (w->format != EL_FORMAT_NONE && w->format != n->format)
		return el_why(path, "<W> requires a string format that <N> does not%s%s", "", "");
	return NULL;
}

static ElSchemaNode *
el_prop_of(ElSchemaNode *node, const char *name, int len, ElSchemaNode *dflt)
{
	for (int i = 0; i < node->nprops; i++)
		if (node->props[i].len == len && memcmp(node->props[i].name, name, len) == 0)
			return node->props[i].schema;
	return node->additional ? node->additional : dflt;
}

static bool
el_requires(ElSchemaNode *node, const char *name, int len)
{
	for (int i = 0; i < node->nrequired; i++)
		if (node->required[i].len == len && memcmp(node->required[i].name, name, len) == 0)
			return true;
	return false;
}

static char *
el_incl_objects(ElIncl *cx, ElSchemaNode *w, ElSchemaNode *n, const char *path)
{
	ElSchemaNode *any = el_true_node();
	char	   *why;

	for (int i = 0; i < w->nrequired; i++)
		if (!el_requires(n, w->required[i].name, w->required[i].len))
			return el_why(path, "<W> requires the property %s, <N> does not%s",
						  quote_literal_cstr(w->required[i].name), "");
	why = el_incl_counts(w->min_props, w->max_props, n->min_props, n->max_props,
						 path, "properties");
	if (why)
		return why;
	for (int i = 0; i < w->nprops; i++)
	{
		ElSchemaProp *p = &w->props[i];

		why = el_incl(cx, p->schema, el_prop_of(n, p->name, p->len, any),
					  psprintf("%s.%s", path, quote_identifier(p->name)));
		if (why)
			return why;
	}
	if (w->additional)
	{
		for (int i = 0; i < n->nprops; i++)
		{
			ElSchemaProp *p = &n->props[i];

			if (el_prop_of(w, p->name, p->len, NULL) != w->additional)
				continue;		/* one of wide's own, compared above */
			why = el_incl(cx, w->additional, p->schema,
						  psprintf("%s.%s", path, quote_identifier(p->name)));
			if (why)
				return why;
		}
		why = el_incl(cx, w->additional, n->additional ? n->additional : any,
					  psprintf("%s.*", path));
		if (why)
			return why;
	}
	return NULL;
}

static char *
el_incl_arrays(ElIncl *cx, ElSchemaNode *w, ElSchemaNode *n, const char *path)
{
	char	   *why = el_incl_counts(w->min_items, w->max_items, n->min_items,
									 n->max_items, path, "items");

	if (why)
		return why;
	if (w->unique_items && !n->unique_items)
		return el_why(path, "<W> requires unique items, <N> does not%s%s", "", "");
	if (w->items)
		return el_incl(cx, w->items, n->items ? n->items : el_true_node(),
					   psprintf("%s[*]", path));
	return NULL;
}

/* "string or null", for messages */
static char *
el_type_list(int types)
{
	static const char *const names[] = {"null", "boolean", "object", "array",
	"number", "string", "integer"};
	StringInfoData buf;

	initStringInfo(&buf);
	if (types & EL_JT_NUMBER)
		types &= ~EL_JT_INTEGER;
	for (int i = 0; i < 7; i++)
		if (types & (1 << i))
			appendStringInfo(&buf, "%s%s", buf.len ? " or " : "", names[i]);
	return buf.data;
}

/* A node with a "$ref" and nothing else that asserts. */
static bool
el_bare_ref(ElSchemaNode *n)
{
	return n->types == 0 && n->nprops == 0 && n->nrequired == 0 &&
		n->additional == NULL && n->min_props < 0 && n->max_props < 0 &&
		n->items == NULL && n->min_items < 0 && n->max_items < 0 &&
		!n->unique_items && !n->has_enum && n->const_value == NULL &&
		n->minimum == NULL && n->maximum == NULL && n->exclusive_minimum == NULL &&
		n->exclusive_maximum == NULL && n->multiple_of == NULL &&
		n->min_length < 0 && n->max_length < 0 && n->pattern == NULL &&
		n->format == EL_FORMAT_NONE && n->all_of == NIL && n->any_of == NIL &&
		n->one_of == NIL && n->not == NULL;
}

static int
el_norm_types(int types)
{
	if (types == 0)
		types = EL_JT_NULL | EL_JT_BOOLEAN | EL_JT_OBJECT | EL_JT_ARRAY |
			EL_JT_NUMBER | EL_JT_STRING;
	if (types & EL_JT_NUMBER)
		types |= EL_JT_INTEGER;
	return types;
}

static char *
el_incl_keywords(ElIncl *cx, ElSchemaNode *w, ElSchemaNode *n, const char *path);

/*
 * One comparison.  A pair already under comparison further up is assumed
 * included (a recursive reference comes back to it); the assumption holds
 * only while that comparison runs, so a failed attempt leaves none behind.
 */
static char *
el_incl(ElIncl *cx, ElSchemaNode *w, ElSchemaNode *n, const char *path)
{
	ListCell   *lc;
	ElSchemaNode **pair;
	int			depth = list_length(cx->assumed);
	char	   *why;

	check_stack_depth();
	CHECK_FOR_INTERRUPTS();

	if (w->always_valid || n->always_invalid)
		return NULL;
	if (w->source && n->source && !el_has_ref(w) && !el_has_ref(n) &&
		compareJsonbContainers(&w->source->root, &n->source->root) == 0)
		return NULL;
	foreach(lc, cx->assumed)
	{
		pair = lfirst(lc);
		if (pair[0] == w && pair[1] == n)
			return NULL;
	}
	pair = palloc(2 * sizeof(ElSchemaNode *));
	pair[0] = w;
	pair[1] = n;
	cx->assumed = lappend(cx->assumed, pair);
	why = el_incl_keywords(cx, w, n, path);
	cx->assumed = list_truncate(cx->assumed, depth);
	return why;
}

static char *
el_incl_keywords(ElIncl *cx, ElSchemaNode *w, ElSchemaNode *n, const char *path)
{
	ListCell   *lc;
	int			wt,
				nt;
	char	   *why;
	bool		all;

	if (w->always_invalid)
		return el_why(path, "<W> accepts no value, <N> does%s%s", "", "");

	/* a finite narrow side: test its values */
	if (n->has_enum || n->const_value)
	{
		int			count = n->const_value ? 1 : n->nenum;

		for (int i = 0; i < count; i++)
		{
			Jsonb	   *v = n->const_value ? n->const_value : n->enum_values[i];

			if (el_schema_node_accepts(n, v) && !el_schema_node_accepts(w, v))
				return el_why(path, "<N> accepts the value %s, <W> does not%s",
							  JsonbToCString(NULL, &v->root, VARSIZE(v)), "");
		}
		return NULL;
	}

	/* the narrow side's applicators can only narrow it */
	if (n->ref_target && (why = el_incl(cx, w, n->ref_target, path)) == NULL)
		return NULL;
	/* a bare reference is its target: what failed there is the reason */
	if (n->ref_target && el_bare_ref(n))
		return why;
	foreach(lc, n->all_of)
		if (el_incl(cx, w, lfirst(lc), path) == NULL)
		return NULL;
	for (int k = 0; k < 2; k++)
	{
		List	   *branches = k == 0 ? n->any_of : n->one_of;

		if (branches == NIL)
			continue;
		all = true;
		foreach(lc, branches)
			if (el_incl(cx, w, lfirst(lc), path) != NULL)
			all = false;
		if (all)
			return NULL;
	}

	/* the wide side's */
	if (w->ref_target && (why = el_incl(cx, w->ref_target, n, path)) != NULL)
		return why;
	foreach(lc, w->all_of)
		if ((why = el_incl(cx, lfirst(lc), n, path)) != NULL)
		return why;
	if (w->any_of)
	{
		all = false;
		foreach(lc, w->any_of)
			if (el_incl(cx, lfirst(lc), n, path) == NULL)
			all = true;
		if (!all)
			return el_why(path, "values <N> accepts need not match any branch of <W>'s \"anyOf\"%s%s", "", "");
	}
	if (w->one_of)
		return el_why(path, "<W> has a \"oneOf\" that is not identical to <N>'s, and is compared only then%s%s", "", "");
	if (w->not)
		return el_why(path, "<W> has a \"not\" that is not identical to <N>'s, and is compared only then%s%s", "", "");

	/* types */
	wt = el_norm_types(w->types);
	nt = el_norm_types(n->types);
	if ((nt & ~wt) != 0)
		return el_why(path, "<W> allows only %s, <N> also %s",
					  el_type_list(w->types), el_type_list(nt & ~wt));
	if (w->has_enum || w->const_value)
		return el_why(path, "<W> allows only listed values (\"enum\" or \"const\"), <N> does not%s%s", "", "");

	if ((nt & (EL_JT_NUMBER | EL_JT_INTEGER)) && (why = el_incl_bounds(w, n, path)) != NULL)
		return why;
	if ((nt & EL_JT_STRING) && (why = el_incl_strings(w, n, path)) != NULL)
		return why;
	if ((nt & EL_JT_OBJECT) && (why = el_incl_objects(cx, w, n, path)) != NULL)
		return why;
	if ((nt & EL_JT_ARRAY) && (why = el_incl_arrays(cx, w, n, path)) != NULL)
		return why;
	return NULL;
}

/* s with each <W> and <N> replaced by the names of the two sides */
static char *
el_name_sides(const char *s, const char *wide_name, const char *narrow_name)
{
	StringInfoData buf;

	initStringInfo(&buf);
	while (*s)
	{
		if (strncmp(s, "<W>", 3) == 0 || strncmp(s, "<N>", 3) == 0)
		{
			appendStringInfoString(&buf, s[1] == 'W' ? wide_name : narrow_name);
			s += 3;
		}
		else
			appendStringInfoChar(&buf, *s++);
	}
	return buf.data;
}

char *
el_schema_includes(ElSchema *wide, ElSchema *narrow, const char *wide_name,
				   const char *narrow_name)
{
	ElIncl		cx = {NIL};
	char	   *why = el_incl(&cx, wide->root, narrow->root, "$");

	return why ? el_name_sides(why, wide_name, narrow_name) : NULL;
}
