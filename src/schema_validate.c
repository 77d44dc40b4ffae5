/*
 * schema_validate.c
 *	  Checking a jsonb instance against a compiled schema (schema_compile.c),
 *	  collecting each failure with the JSON path of the failing value and
 *	  the keyword it broke.
 *
 *	  The append path asks for the first error only, and pays for the path
 *	  of a value only when that value fails: the path is a chain of
 *	  segments on the C stack, rendered as an SQL/JSON path ("$.lines[0].sku",
 *	  usable with jsonb_path_query) only for an error.  The applicators that
 *	  try subschemas (anyOf, oneOf, not) check them quietly: a branch stops at
 *	  its first failure and records nothing.
 *
 *	  Nothing here reads the catalog or takes a lock, so no invalidation can
 *	  arrive while a compiled schema is in use.
 */
#include "postgres.h"

#include "catalog/pg_collation.h"
#include "common/jsonapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "regex/regex.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "personal.h"
#include "schema.h"

/* Where a value is: a key of an object or an index of an array. */
typedef struct ElPathSeg
{
	const struct ElPathSeg *up;
	const char *key;			/* NULL: an array index */
	int			keylen;
	int			index;
} ElPathSeg;

typedef struct ElValidate
{
	List	   *errors;
	int			max_errors;		/* 0: all */
	int			quiet;			/* > 0: inside anyOf/oneOf/not, record nothing */
	bool		markers_pass;	/* a personal-data marker matches anything */
} ElValidate;

static bool el_check(ElSchemaNode *node, JsonbValue *v, const ElPathSeg *path,
					 ElValidate *cx);

/* "$.a[0]", with keys that are not identifiers quoted: $."odd key" */
static void
el_render_path(StringInfo buf, const ElPathSeg *seg)
{
	bool		plain = true;

	if (seg == NULL)
	{
		appendStringInfoChar(buf, '$');
		return;
	}
	el_render_path(buf, seg->up);
	if (seg->key == NULL)
	{
		appendStringInfo(buf, "[%d]", seg->index);
		return;
	}
	for (int i = 0; i < seg->keylen; i++)
	{
		unsigned char c = seg->key[i];

		if (!(isalpha(c) || c == '_' || (i > 0 && isdigit(c))))
			plain = false;
	}
	appendStringInfoChar(buf, '.');
	if (plain && seg->keylen > 0)
		appendBinaryStringInfo(buf, seg->key, seg->keylen);
	else
		escape_json(buf, pnstrdup(seg->key, seg->keylen));
}

static bool
el_stop(ElValidate *cx)
{
	return cx->quiet > 0 ||
		(cx->max_errors > 0 && list_length(cx->errors) >= cx->max_errors);
}

static bool el_fail(ElValidate *cx, const ElPathSeg *path, const char *keyword,
					const char *fmt,...) pg_attribute_printf(4, 5);

/* Record a failure (unless quiet); false, for the caller to return. */
static bool
el_fail(ElValidate *cx, const ElPathSeg *path, const char *keyword,
		const char *fmt,...)
{
	ElSchemaError *err;
	StringInfoData buf;
	va_list		args;

	if (cx->quiet > 0)
		return false;
	err = palloc(sizeof(ElSchemaError));
	initStringInfo(&buf);
	el_render_path(&buf, path);
	err->path = buf.data;
	err->keyword = keyword;
	initStringInfo(&buf);
	for (;;)
	{
		int			needed;

		va_start(args, fmt);
		needed = appendStringInfoVA(&buf, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(&buf, needed);
	}
	err->message = buf.data;
	cx->errors = lappend(cx->errors, err);
	return false;
}

static const char *
el_num_str(Numeric n)
{
	return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(n)));
}

static int
el_num_cmp(Numeric a, Numeric b)
{
	return DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(a),
											 NumericGetDatum(b)));
}

static bool
el_is_integral(Numeric n)
{
	if (DatumGetInt32(DirectFunctionCall1(numeric_scale, NumericGetDatum(n))) == 0)
		return true;
	return el_num_cmp(DatumGetNumeric(DirectFunctionCall1(numeric_floor,
														  NumericGetDatum(n))), n) == 0;
}

static int
el_type_of(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return EL_JT_NULL;
		case jbvBool:
			return EL_JT_BOOLEAN;
		case jbvNumeric:
			return EL_JT_NUMBER;
		case jbvString:
			return EL_JT_STRING;
		case jbvBinary:
			return JsonContainerIsObject(v->val.binary.data) ? EL_JT_OBJECT : EL_JT_ARRAY;
		default:
			elog(ERROR, "unexpected jsonb value type %d", v->type);
	}
	return 0;
}

static const char *
el_type_name(int bit)
{
	switch (bit)
	{
		case EL_JT_NULL:
			return "null";
		case EL_JT_BOOLEAN:
			return "boolean";
		case EL_JT_OBJECT:
			return "object";
		case EL_JT_ARRAY:
			return "array";
		case EL_JT_NUMBER:
			return "number";
		case EL_JT_STRING:
			return "string";
		case EL_JT_INTEGER:
			return "integer";
	}
	return "?";
}

static char *
el_type_names(int bits)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int bit = 1; bit <= EL_JT_INTEGER; bit <<= 1)
		if (bits & bit)
			appendStringInfo(&buf, "%s%s", buf.len ? " or " : "", el_type_name(bit));
	return buf.data;
}

/* Equality as JSON Schema defines it (1 = 1.0; false <> 0). */
static bool
el_json_equal(JsonbValue *v, Jsonb *target)
{
	Jsonb	   *j = JsonbValueToJsonb(v);

	return compareJsonbContainers(&j->root, &target->root) == 0;
}

/* ----------------------------------------------------------------
 * Formats
 * ----------------------------------------------------------------
 */

static bool
el_digits(const char *s, int n, int *out)
{
	*out = 0;
	for (int i = 0; i < n; i++)
	{
		if (!isdigit((unsigned char) s[i]))
			return false;
		*out = *out * 10 + (s[i] - '0');
	}
	return true;
}

/* RFC 3339 date-time: 1985-04-12T23:20:50.52Z, 1996-12-19T16:39:57-08:00 */
static bool
el_is_date_time(const char *s, int len)
{
	static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int			y,
				mo,
				d,
				h,
				mi,
				sec,
				oh = 0,
				om = 0;
	int			i = 19;
	bool		leap;

	if (len < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') ||
		s[13] != ':' || s[16] != ':')
		return false;
	if (!el_digits(s, 4, &y) || !el_digits(s + 5, 2, &mo) || !el_digits(s + 8, 2, &d) ||
		!el_digits(s + 11, 2, &h) || !el_digits(s + 14, 2, &mi) ||
		!el_digits(s + 17, 2, &sec))
		return false;
	leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] ||
		(mo == 2 && d == 29 && !leap))
		return false;
	if (h > 23 || mi > 59 || sec > 60)
		return false;
	if (s[i] == '.')
	{
		i++;
		if (i >= len || !isdigit((unsigned char) s[i]))
			return false;
		while (i < len && isdigit((unsigned char) s[i]))
			i++;
	}
	if (i == len - 1 && (s[i] == 'Z' || s[i] == 'z'))
		;
	else if (i == len - 6 && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':' &&
			 el_digits(s + i + 1, 2, &oh) && el_digits(s + i + 4, 2, &om))
	{
		if (oh > 23 || om > 59)
			return false;
		if (s[i] == '-')
		{
			oh = -oh;
			om = -om;
		}
	}
	else
		return false;
	/* a leap second only at 23:59:60 UTC */
	if (sec == 60)
	{
		int			utc = ((h * 60 + mi - (oh * 60 + om)) % 1440 + 1440) % 1440;

		if (utc != 23 * 60 + 59)
			return false;
	}
	return true;
}

/* 8-4-4-4-12 hexadecimal digits */
static bool
el_is_uuid(const char *s, int len)
{
	if (len != 36)
		return false;
	for (int i = 0; i < 36; i++)
	{
		if (i == 8 || i == 13 || i == 18 || i == 23)
		{
			if (s[i] != '-')
				return false;
		}
		else if (!isxdigit((unsigned char) s[i]))
			return false;
	}
	return true;
}

/* A host name: labels of letters, digits and inner hyphens, dot-separated. */
static bool
el_is_hostname(const char *s, int len)
{
	int			label = 0;

	if (len == 0 || len > 253)
		return false;
	for (int i = 0; i <= len; i++)
	{
		if (i == len || s[i] == '.')
		{
			if (label == 0 || label > 63 || s[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!(isalnum((unsigned char) s[i]) || s[i] == '-') ||
			(label == 0 && s[i] == '-'))
			return false;
		label++;
	}
	return true;
}

static bool
el_is_ipv4(const char *s, int len)
{
	int			parts = 0;
	int			i = 0;

	while (i < len)
	{
		int			start = i;
		int			val = 0;

		while (i < len && isdigit((unsigned char) s[i]))
			val = val * 10 + (s[i++] - '0');
		if (i == start || i - start > 3 || val > 255 ||
			(i - start > 1 && s[start] == '0'))
			return false;
		parts++;
		if (i < len && s[i++] != '.')
			return false;
		if (i == len && s[len - 1] == '.')
			return false;
	}
	return parts == 4;
}

/*
 * An address of RFC 5321's mailbox form: a dot-atom or quoted local part,
 * then a host name or a bracketed IPv4 or IPv6 literal.
 */
static bool
el_is_email(const char *s, int len)
{
	const char *at = NULL;
	int			local;

	for (int i = len - 1; i >= 0; i--)
		if (s[i] == '@')
		{
			at = s + i;
			break;
		}
	if (at == NULL)
		return false;
	local = at - s;
	if (local == 0 || local > 64)
		return false;
	if (s[0] == '"')
	{
		if (local < 2 || s[local - 1] != '"')
			return false;
	}
	else
	{
		for (int i = 0; i < local; i++)
		{
			unsigned char c = s[i];

			if (c == '.')
			{
				if (i == 0 || i == local - 1 || s[i + 1] == '.')
					return false;
			}
			else if (!isalnum(c) && strchr("!#$%&'*+/=?^_`{|}~-", c) == NULL)
				return false;
		}
	}
	s = at + 1;
	len -= local + 1;
	if (len >= 2 && s[0] == '[' && s[len - 1] == ']')
	{
		if (len > 7 && pg_strncasecmp(s + 1, "IPv6:", 5) == 0)
		{
			for (int i = 6; i < len - 1; i++)
				if (!isxdigit((unsigned char) s[i]) && s[i] != ':' && s[i] != '.')
					return false;
			return true;
		}
		return el_is_ipv4(s + 1, len - 2);
	}
	return el_is_hostname(s, len);
}

static bool
el_check_format(ElFormat format, const char *s, int len)
{
	switch (format)
	{
		case EL_FORMAT_DATE_TIME:
			return el_is_date_time(s, len);
		case EL_FORMAT_UUID:
			return el_is_uuid(s, len);
		case EL_FORMAT_EMAIL:
			return el_is_email(s, len);
		case EL_FORMAT_NONE:
			break;
	}
	return true;
}

static const char *
el_format_name(ElFormat format)
{
	switch (format)
	{
		case EL_FORMAT_DATE_TIME:
			return "date-time (RFC 3339)";
		case EL_FORMAT_UUID:
			return "uuid";
		case EL_FORMAT_EMAIL:
			return "email";
		case EL_FORMAT_NONE:
			break;
	}
	return "?";
}

/* ----------------------------------------------------------------
 * Keywords, by the type they apply to
 * ----------------------------------------------------------------
 */

static bool
el_check_number(ElSchemaNode *node, Numeric n, const ElPathSeg *path, ElValidate *cx)
{
	bool		ok = true;

	if (node->minimum && el_num_cmp(n, node->minimum) < 0)
	{
		ok = el_fail(cx, path, "minimum", "%s is less than the minimum %s",
					 el_num_str(n), el_num_str(node->minimum));
		if (el_stop(cx))
			return false;
	}
	if (node->maximum && el_num_cmp(n, node->maximum) > 0)
	{
		ok = el_fail(cx, path, "maximum", "%s is greater than the maximum %s",
					 el_num_str(n), el_num_str(node->maximum));
		if (el_stop(cx))
			return false;
	}
	if (node->exclusive_minimum && el_num_cmp(n, node->exclusive_minimum) <= 0)
	{
		ok = el_fail(cx, path, "exclusiveMinimum", "%s is not greater than %s",
					 el_num_str(n), el_num_str(node->exclusive_minimum));
		if (el_stop(cx))
			return false;
	}
	if (node->exclusive_maximum && el_num_cmp(n, node->exclusive_maximum) >= 0)
	{
		ok = el_fail(cx, path, "exclusiveMaximum", "%s is not less than %s",
					 el_num_str(n), el_num_str(node->exclusive_maximum));
		if (el_stop(cx))
			return false;
	}
	if (node->multiple_of)
	{
		Numeric		rem = DatumGetNumeric(DirectFunctionCall2(numeric_mod,
															  NumericGetDatum(n),
															  NumericGetDatum(node->multiple_of)));

		if (el_num_cmp(rem, int64_to_numeric(0)) != 0)
			ok = el_fail(cx, path, "multipleOf", "%s is not a multiple of %s",
						 el_num_str(n), el_num_str(node->multiple_of));
	}
	return ok;
}

static bool
el_check_string(ElSchemaNode *node, JsonbValue *v, const ElPathSeg *path, ElValidate *cx)
{
	bool		ok = true;
	char	   *s = v->val.string.val;
	int			len = v->val.string.len;

	if (node->min_length >= 0 || node->max_length >= 0)
	{
		int64		chars = pg_mbstrlen_with_len(s, len);

		if (node->min_length >= 0 && chars < node->min_length)
		{
			ok = el_fail(cx, path, "minLength",
						 "string has " INT64_FORMAT " characters, fewer than minLength " INT64_FORMAT,
						 chars, node->min_length);
			if (el_stop(cx))
				return false;
		}
		if (node->max_length >= 0 && chars > node->max_length)
		{
			ok = el_fail(cx, path, "maxLength",
						 "string has " INT64_FORMAT " characters, more than maxLength " INT64_FORMAT,
						 chars, node->max_length);
			if (el_stop(cx))
				return false;
		}
	}
	if (node->pattern &&
		!RE_compile_and_execute(node->pattern, s, len, REG_ADVANCED,
								DEFAULT_COLLATION_OID, 0, NULL))
	{
		ok = el_fail(cx, path, "pattern", "string does not match the pattern %s",
					 text_to_cstring(node->pattern));
		if (el_stop(cx))
			return false;
	}
	if (node->format != EL_FORMAT_NONE && !el_check_format(node->format, s, len))
		ok = el_fail(cx, path, "format", "string is not a valid %s",
					 el_format_name(node->format));
	return ok;
}

/* An array item for uniqueItems: the item, and where it was. */
typedef struct ElItem
{
	Jsonb	   *doc;
	int			pos;
} ElItem;

static int
el_item_cmp(const void *a, const void *b)
{
	const ElItem *x = (const ElItem *) a;
	const ElItem *y = (const ElItem *) b;
	int			c = compareJsonbContainers(&x->doc->root, &y->doc->root);

	if (c != 0)
		return c;
	return (x->pos > y->pos) - (x->pos < y->pos);
}

/* minProperties/maxProperties, minItems/maxItems: -1 is no bound. */
static bool
el_check_count(ElValidate *cx, const ElPathSeg *path, const char *what,
			   const char *unit, const char *min_kw, const char *max_kw,
			   int size, int64 min, int64 max)
{
	bool		ok = true;

	if (min >= 0 && size < min)
	{
		ok = el_fail(cx, path, min_kw, "%s has %d %s, fewer than %s " INT64_FORMAT,
					 what, size, unit, min_kw, min);
		if (el_stop(cx))
			return false;
	}
	if (max >= 0 && size > max)
		ok = el_fail(cx, path, max_kw, "%s has %d %s, more than %s " INT64_FORMAT,
					 what, size, unit, max_kw, max);
	return ok;
}

static int
el_find_prop(ElSchemaNode *node, const char *key, int len)
{
	int			lo = 0,
				hi = node->nprops - 1;

	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;
		ElSchemaProp *p = &node->props[mid];
		int			c = p->len != len ? (p->len < len ? -1 : 1) : memcmp(p->name, key, len);

		if (c == 0)
			return mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return -1;
}

static bool
el_check_object(ElSchemaNode *node, JsonbContainer *obj, const ElPathSeg *path,
				ElValidate *cx)
{
	bool		ok = true;
	int			size = JsonContainerSize(obj);

	for (int i = 0; i < node->nrequired; i++)
	{
		JsonbValue	k;

		k.type = jbvString;
		k.val.string.val = unconstify(char *, node->required[i].name);
		k.val.string.len = node->required[i].len;
		if (findJsonbValueFromContainer(obj, JB_FOBJECT, &k) == NULL)
		{
			ok = el_fail(cx, path, "required", "required property %s is missing",
						 quote_literal_cstr(node->required[i].name));
			if (el_stop(cx))
				return false;
		}
	}
	if (!el_check_count(cx, path, "object", "properties", "minProperties",
						"maxProperties", size, node->min_props, node->max_props))
	{
		ok = false;
		if (el_stop(cx))
			return false;
	}
	if (node->nprops > 0 || node->additional != NULL)
	{
		JsonbIterator *it = JsonbIteratorInit(obj);
		JsonbValue	k;
		JsonbValue	val;
		JsonbIteratorToken tok;

		while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
		{
			ElPathSeg	seg;
			int			p;

			if (tok != WJB_KEY)
				continue;
			(void) JsonbIteratorNext(&it, &val, true);
			seg.up = path;
			seg.key = k.val.string.val;
			seg.keylen = k.val.string.len;
			seg.index = 0;
			p = el_find_prop(node, k.val.string.val, k.val.string.len);
			if (p >= 0)
			{
				if (!el_check(node->props[p].schema, &val, &seg, cx))
				{
					ok = false;
					if (el_stop(cx))
						return false;
				}
			}
			else if (node->additional != NULL)
			{
				bool		good;

				if (node->additional->always_invalid)
					good = el_fail(cx, &seg, "additionalProperties",
								   "property %s is not allowed",
								   quote_literal_cstr(pnstrdup(k.val.string.val,
															   k.val.string.len)));
				else
					good = el_check(node->additional, &val, &seg, cx);
				if (!good)
				{
					ok = false;
					if (el_stop(cx))
						return false;
				}
			}
		}
	}
	return ok;
}

static bool
el_check_array(ElSchemaNode *node, JsonbContainer *arr, const ElPathSeg *path,
			   ElValidate *cx)
{
	bool		ok = true;
	int			size = JsonContainerSize(arr);

	if (!el_check_count(cx, path, "array", "items", "minItems", "maxItems",
						size, node->min_items, node->max_items))
	{
		ok = false;
		if (el_stop(cx))
			return false;
	}
	if (node->items != NULL)
	{
		for (int i = 0; i < size; i++)
		{
			JsonbValue *elem = getIthJsonbValueFromContainer(arr, i);
			ElPathSeg	seg = {path, NULL, 0, i};

			if (!el_check(node->items, elem, &seg, cx))
			{
				ok = false;
				if (el_stop(cx))
					return false;
			}
		}
	}
	if (node->unique_items && size > 1)
	{
		ElItem	   *items = palloc(sizeof(ElItem) * size);
		int			first = -1;
		int			second = -1;

		/*
		 * Sorted (jsonb's own total order, whose "equal" is the equality
		 * compared before), equal items are neighbours: n log n, where
		 * comparing every pair took minutes for an array of 100,000 items.
		 * Ties sort by position, so the pair reported is the one a
		 * pairwise scan finds first: the lowest item that has an equal one
		 * after it, and the nearest such.
		 */
		for (int i = 0; i < size; i++)
		{
			CHECK_FOR_INTERRUPTS();
			items[i].doc = JsonbValueToJsonb(getIthJsonbValueFromContainer(arr, i));
			items[i].pos = i;
		}
		qsort(items, size, sizeof(ElItem), el_item_cmp);
		for (int i = 0; i + 1 < size; i++)
			if (compareJsonbContainers(&items[i].doc->root, &items[i + 1].doc->root) == 0 &&
				(first < 0 || items[i].pos < first))
			{
				first = items[i].pos;
				second = items[i + 1].pos;
			}
		pfree(items);
		if (first >= 0)
			return el_fail(cx, path, "uniqueItems",
						   "items %d and %d are equal", first, second);
	}
	return ok;
}

/* anyOf, oneOf and not: how many of the subschemas the value matches. */
static int
el_count_matches(List *schemas, JsonbValue *v, const ElPathSeg *path,
				 ElValidate *cx, int stop_at, int *first, int *second)
{
	ListCell   *lc;
	int			n = 0;
	int			i = 0;

	cx->quiet++;
	foreach(lc, schemas)
	{
		if (el_check(lfirst(lc), v, path, cx))
		{
			if (n == 0)
				*first = i;
			else
				*second = i;
			if (++n >= stop_at)
				break;
		}
		i++;
	}
	cx->quiet--;
	return n;
}

static bool
el_check(ElSchemaNode *node, JsonbValue *v, const ElPathSeg *path, ElValidate *cx)
{
	bool		ok = true;
	int			type;
	ListCell   *lc;

	if (node->always_valid)
		return true;

	/*
	 * Upcasting checks payloads as stored or as the reader may see them: a
	 * personal field there is a marker ({"$personal": ...}: encrypted,
	 * hidden or erased), whose plain value was checked at append.
	 */
	if (cx->markers_pass && v->type == jbvBinary &&
		JsonContainerIsObject(v->val.binary.data))
	{
		JsonbValue	k;

		k.type = jbvString;
		k.val.string.val = EL_PERSONAL_MARK;
		k.val.string.len = strlen(EL_PERSONAL_MARK);
		if (findJsonbValueFromContainer(v->val.binary.data, JB_FOBJECT, &k) != NULL)
			return true;
	}
	if (node->always_invalid)
		return el_fail(cx, path, "false", "no value is allowed here");
	check_stack_depth();
	CHECK_FOR_INTERRUPTS();

	type = el_type_of(v);
	if (node->types != 0 && (node->types & type) == 0 &&
		!(type == EL_JT_NUMBER && (node->types & EL_JT_INTEGER) &&
		  el_is_integral(v->val.numeric)))
	{
		ok = el_fail(cx, path, "type", "value is of type %s, not %s",
					 el_type_name(type), el_type_names(node->types));
		/* the other keywords would only repeat it */
		return false;
	}

	if (node->const_value && !el_json_equal(v, node->const_value))
	{
		ok = el_fail(cx, path, "const", "value is not the one \"const\" allows");
		if (el_stop(cx))
			return false;
	}
	if (node->has_enum)
	{
		bool		found = false;

		for (int i = 0; i < node->nenum && !found; i++)
			found = el_json_equal(v, node->enum_values[i]);
		if (!found)
		{
			ok = el_fail(cx, path, "enum", "value is not one of the %d values \"enum\" allows",
						 node->nenum);
			if (el_stop(cx))
				return false;
		}
	}

	switch (type)
	{
		case EL_JT_NUMBER:
			if (!el_check_number(node, v->val.numeric, path, cx))
				ok = false;
			break;
		case EL_JT_STRING:
			if (!el_check_string(node, v, path, cx))
				ok = false;
			break;
		case EL_JT_OBJECT:
			if (!el_check_object(node, v->val.binary.data, path, cx))
				ok = false;
			break;
		case EL_JT_ARRAY:
			if (!el_check_array(node, v->val.binary.data, path, cx))
				ok = false;
			break;
	}
	if (!ok && el_stop(cx))
		return false;

	if (node->ref_target && !el_check(node->ref_target, v, path, cx))
	{
		ok = false;
		if (el_stop(cx))
			return false;
	}
	foreach(lc, node->all_of)
	{
		if (!el_check(lfirst(lc), v, path, cx))
		{
			ok = false;
			if (el_stop(cx))
				return false;
		}
	}
	if (node->any_of)
	{
		int			first = -1,
					second = -1;

		if (el_count_matches(node->any_of, v, path, cx, 1, &first, &second) == 0)
		{
			ok = el_fail(cx, path, "anyOf", "value matches none of the %d schemas of \"anyOf\"",
						 list_length(node->any_of));
			if (el_stop(cx))
				return false;
		}
	}
	if (node->one_of)
	{
		int			first = -1,
					second = -1;
		int			n = el_count_matches(node->one_of, v, path, cx, 2, &first, &second);

		if (n == 0)
			ok = el_fail(cx, path, "oneOf", "value matches none of the %d schemas of \"oneOf\"",
						 list_length(node->one_of));
		else if (n > 1)
			ok = el_fail(cx, path, "oneOf",
						 "value matches schemas %d and %d of \"oneOf\", not exactly one",
						 first, second);
		if (!ok && el_stop(cx))
			return false;
	}
	if (node->not)
	{
		int			first = -1,
					second = -1;

		if (el_count_matches(list_make1(node->not), v, path, cx, 1, &first, &second) > 0)
			ok = el_fail(cx, path, "not", "value matches the schema of \"not\"");
	}
	return ok;
}

/* Whether a subschema accepts a value (quietly: no error is built). */
bool
el_schema_node_accepts(ElSchemaNode *node, Jsonb *value)
{
	ElValidate	cx = {NIL, 1, 1, false};
	JsonbValue	v;

	if (JB_ROOT_IS_SCALAR(value))
		(void) JsonbExtractScalar(&value->root, &v);
	else
	{
		v.type = jbvBinary;
		v.val.binary.data = &value->root;
		v.val.binary.len = VARSIZE(value) - VARHDRSZ;
	}
	return el_check(node, &v, NULL, &cx);
}

List *
el_schema_validate(ElSchema *schema, Jsonb *instance, int max_errors)
{
	return el_schema_validate_ext(schema, instance, max_errors, false);
}

/*
 * el_schema_validate(), where markers_pass lets a personal field's marker
 * (personal.h) stand for its value (upcast payloads: schema_upcast.c).
 */
List *
el_schema_validate_ext(ElSchema *schema, Jsonb *instance, int max_errors,
					   bool markers_pass)
{
	ElValidate	cx = {NIL, max_errors, 0, markers_pass};
	JsonbValue	v;

	if (JB_ROOT_IS_SCALAR(instance))
		(void) JsonbExtractScalar(&instance->root, &v);
	else
	{
		v.type = jbvBinary;
		v.val.binary.data = &instance->root;
		v.val.binary.len = VARSIZE(instance) - VARHDRSZ;
	}
	(void) el_check(schema->root, &v, NULL, &cx);
	return cx.errors;
}
