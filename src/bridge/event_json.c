/*-------------------------------------------------------------------------
 *
 * event_json.c
 *	  Reading the lines of the event_log output plugin in the bridge.
 *
 * The plugin writes one JSON object per event, and with include-transaction
 * a begin and a commit object around each transaction (docs/cdc.md).  The
 * bridge needs a handful of top-level fields of each (stream, shard, seq,
 * key, version, type, event_id, recorded_at) and forwards the line itself
 * untouched as the Kafka message's value.  So this is no JSON library: it
 * walks the top-level members once, skips the values it does not need
 * (payload and metadata, whatever their nesting) and unescapes the strings
 * it keeps.  Anything that is not the object it expects is an error, with
 * a message saying where: the bridge stops rather than send a guess.
 *
 *-------------------------------------------------------------------------
 */
#include "bridge.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct JsonCursor
{
	const char *p;
	const char *end;
	const char *error;
} JsonCursor;

static void
skip_ws(JsonCursor *c)
{
	while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' ||
							 *c->p == '\n' || *c->p == '\r'))
		c->p++;
}

static int
hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Four hex digits at p (the caller checked there are four bytes). */
static long
hex4(const char *p)
{
	long		v = 0;

	for (int i = 0; i < 4; i++)
	{
		int			h = hexval(p[i]);

		if (h < 0)
			return -1;
		v = v * 16 + h;
	}
	return v;
}

static char *
put_utf8(char *out, unsigned long cp)
{
	if (cp < 0x80)
		*out++ = (char) cp;
	else if (cp < 0x800)
	{
		*out++ = (char) (0xC0 | (cp >> 6));
		*out++ = (char) (0x80 | (cp & 0x3F));
	}
	else if (cp < 0x10000)
	{
		*out++ = (char) (0xE0 | (cp >> 12));
		*out++ = (char) (0x80 | ((cp >> 6) & 0x3F));
		*out++ = (char) (0x80 | (cp & 0x3F));
	}
	else
	{
		*out++ = (char) (0xF0 | (cp >> 18));
		*out++ = (char) (0x80 | ((cp >> 12) & 0x3F));
		*out++ = (char) (0x80 | ((cp >> 6) & 0x3F));
		*out++ = (char) (0x80 | (cp & 0x3F));
	}
	return out;
}

/*
 * A string at the cursor.  With out, its unescaped bytes are written there
 * (never more than the escaped form's length) and *outlen set; without,
 * it is only skipped.
 */
static bool
read_string(JsonCursor *c, char *out, size_t *outlen)
{
	char	   *o = out;

	if (c->p >= c->end || *c->p != '"')
	{
		c->error = "a string was expected";
		return false;
	}
	c->p++;
	while (c->p < c->end && *c->p != '"')
	{
		char		ch = *c->p++;

		if (ch != '\\')
		{
			if (o)
				*o++ = ch;
			continue;
		}
		if (c->p >= c->end)
			break;
		ch = *c->p++;
		switch (ch)
		{
			case '"':
			case '\\':
			case '/':
				break;
			case 'b':
				ch = '\b';
				break;
			case 'f':
				ch = '\f';
				break;
			case 'n':
				ch = '\n';
				break;
			case 'r':
				ch = '\r';
				break;
			case 't':
				ch = '\t';
				break;
			case 'u':
				{
					long		cp;

					if (c->end - c->p < 4 || (cp = hex4(c->p)) < 0)
					{
						c->error = "a bad \\u escape";
						return false;
					}
					c->p += 4;
					if (cp >= 0xD800 && cp <= 0xDBFF)
					{
						long		lo;

						if (c->end - c->p < 6 || c->p[0] != '\\' || c->p[1] != 'u' ||
							(lo = hex4(c->p + 2)) < 0xDC00 || lo > 0xDFFF)
						{
							c->error = "a lone surrogate in a \\u escape";
							return false;
						}
						c->p += 6;
						cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
					}
					if (o)
						o = put_utf8(o, (unsigned long) cp);
					continue;
				}
			default:
				c->error = "a bad escape in a string";
				return false;
		}
		if (o)
			*o++ = ch;
	}
	if (c->p >= c->end)
	{
		c->error = "an unterminated string";
		return false;
	}
	c->p++;						/* the closing quote */
	if (outlen)
		*outlen = (size_t) (o - out);
	return true;
}

/* Skip one value of any kind: a string, an object or array, or a scalar. */
static bool
skip_value(JsonCursor *c)
{
	int			depth = 0;

	skip_ws(c);
	if (c->p >= c->end)
	{
		c->error = "a value was expected";
		return false;
	}
	if (*c->p == '"')
		return read_string(c, NULL, NULL);
	if (*c->p != '{' && *c->p != '[')
	{
		const char *start = c->p;

		while (c->p < c->end && *c->p != ',' && *c->p != '}' && *c->p != ']' &&
			   *c->p != ' ' && *c->p != '\n')
			c->p++;
		if (c->p == start)
		{
			c->error = "a value was expected";
			return false;
		}
		return true;
	}
	while (c->p < c->end)
	{
		char		ch = *c->p;

		if (ch == '"')
		{
			if (!read_string(c, NULL, NULL))
				return false;
			continue;
		}
		c->p++;
		if (ch == '{' || ch == '[')
			depth++;
		else if (ch == '}' || ch == ']')
		{
			if (--depth == 0)
				return true;
		}
	}
	c->error = "an unterminated object or array";
	return false;
}

/* A JSON integer at the cursor, into *v. */
static bool
read_int(JsonCursor *c, int64_t *v)
{
	char		tmp[32];
	size_t		n = 0;
	char	   *endp;

	while (c->p + n < c->end && n < sizeof(tmp) - 1 &&
		   (c->p[n] == '-' || (c->p[n] >= '0' && c->p[n] <= '9')))
		n++;
	if (n == 0 || n == sizeof(tmp) - 1)
	{
		c->error = "an integer was expected";
		return false;
	}
	memcpy(tmp, c->p, n);
	tmp[n] = '\0';
	errno = 0;
	*v = strtoll(tmp, &endp, 10);
	if (errno != 0 || *endp != '\0')
	{
		c->error = "an integer was expected";
		return false;
	}
	c->p += n;
	return true;
}

/* A string member's value, unescaped into the line's buffer at *pos. */
static bool
keep_string(JsonCursor *c, BrLine *line, size_t *pos, char **dst, size_t *dstlen)
{
	size_t		n;

	if (!read_string(c, line->buf + *pos, &n))
		return false;
	*dst = line->buf + *pos;
	(*dst)[n] = '\0';
	if (dstlen)
		*dstlen = n;
	*pos += n + 1;
	return true;
}

/*
 * Read one line of the plugin into *line.  Returns false, with *error set,
 * when it is not an object the plugin writes.
 */
bool
br_parse_line(const char *data, size_t len, BrLine *line, const char **error)
{
	JsonCursor	c = {data, data + len, NULL};
	size_t		pos = 0;
	bool		first = true;
	bool		have_shard = false,
				have_seq = false,
				have_version = false;

	/* Every unescaped string is no longer than its escaped form, plus NUL. */
	if (line->bufsize < len + 16)
	{
		free(line->buf);
		line->bufsize = len + 16;
		line->buf = br_malloc(line->bufsize);
	}
	line->stream = line->key = line->type = line->event_id = line->recorded_at = NULL;
	line->commit_lsn = line->lsn = NULL;
	line->key_len = line->type_len = 0;
	line->kind = BR_LINE_EVENT;

	skip_ws(&c);
	if (c.p >= c.end || *c.p != '{')
	{
		*error = "the line is not a JSON object";
		return false;
	}
	c.p++;
	for (;;)
	{
		char		name[32];
		size_t		nlen;
		int64_t		v;

		skip_ws(&c);
		if (c.p < c.end && *c.p == '}' && first)
			break;
		/* Member names of the plugin are short; a longer one is skipped. */
		if (c.p < c.end && *c.p == '"')
		{
			const char *q = memchr(c.p + 1, '"', (size_t) (c.end - c.p - 1));

			nlen = q ? (size_t) (q - c.p - 1) : 0;
			if (q && nlen < sizeof(name) && memchr(c.p + 1, '\\', nlen) == NULL)
			{
				memcpy(name, c.p + 1, nlen);
				name[nlen] = '\0';
				c.p = q + 1;
			}
			else
			{
				name[0] = '\0';
				if (!read_string(&c, NULL, NULL))
					goto bad;
			}
		}
		else
		{
			c.error = "a member name was expected";
			goto bad;
		}
		skip_ws(&c);
		if (c.p >= c.end || *c.p != ':')
		{
			c.error = "a colon was expected";
			goto bad;
		}
		c.p++;
		skip_ws(&c);

		if (first && strcmp(name, "begin") == 0)
			line->kind = BR_LINE_BEGIN;
		else if (first && strcmp(name, "commit") == 0)
			line->kind = BR_LINE_COMMIT;
		first = false;

		if (line->kind != BR_LINE_COMMIT && strcmp(name, "commit_lsn") == 0)
		{
			if (!keep_string(&c, line, &pos, &line->commit_lsn, NULL))
				goto bad;
		}
		else if (line->kind == BR_LINE_EVENT && strcmp(name, "lsn") == 0)
		{
			if (!keep_string(&c, line, &pos, &line->lsn, NULL))
				goto bad;
		}
		else if (line->kind != BR_LINE_EVENT)
		{
			if (!skip_value(&c))
				goto bad;
		}
		else if (strcmp(name, "stream") == 0)
		{
			if (!keep_string(&c, line, &pos, &line->stream, NULL))
				goto bad;
		}
		else if (strcmp(name, "key") == 0)
		{
			if (!keep_string(&c, line, &pos, &line->key, &line->key_len))
				goto bad;
		}
		else if (strcmp(name, "type") == 0)
		{
			if (!keep_string(&c, line, &pos, &line->type, &line->type_len))
				goto bad;
		}
		else if (strcmp(name, "event_id") == 0)
		{
			if (!keep_string(&c, line, &pos, &line->event_id, NULL))
				goto bad;
		}
		else if (strcmp(name, "recorded_at") == 0)
		{
			if (!keep_string(&c, line, &pos, &line->recorded_at, NULL))
				goto bad;
		}
		else if (strcmp(name, "shard") == 0)
		{
			if (!read_int(&c, &v))
				goto bad;
			if (v < 0 || v > INT32_MAX)
			{
				c.error = "shard is out of range";
				goto bad;
			}
			line->shard = (int) v;
			have_shard = true;
		}
		else if (strcmp(name, "seq") == 0)
		{
			if (!read_int(&c, &line->seq))
				goto bad;
			have_seq = true;
		}
		else if (strcmp(name, "version") == 0)
		{
			if (!read_int(&c, &line->version))
				goto bad;
			have_version = true;
		}
		else if (!skip_value(&c))
			goto bad;

		skip_ws(&c);
		if (c.p < c.end && *c.p == ',')
		{
			c.p++;
			continue;
		}
		if (c.p < c.end && *c.p == '}')
			break;
		c.error = "a comma or the end of the object was expected";
		goto bad;
	}
	if (line->kind == BR_LINE_EVENT &&
		(!line->stream || !line->key || !line->type || !line->event_id ||
		 !line->recorded_at || !have_shard || !have_seq || !have_version))
	{
		*error = "an event line lacks one of stream, shard, seq, key, version, type, event_id, recorded_at";
		return false;
	}
	if (line->kind == BR_LINE_BEGIN && line->commit_lsn == NULL)
	{
		*error = "a begin line lacks commit_lsn";
		return false;
	}
	return true;

bad:
	*error = c.error ? c.error : "malformed JSON";
	return false;
}

/* One part of a quoted SQL name at *p, unquoted, into a new string. */
static char *
name_part(const char **p)
{
	const char *s = *p;
	char	   *out = br_malloc(strlen(s) + 1);
	char	   *o = out;

	if (*s == '"')
	{
		s++;
		for (;;)
		{
			if (*s == '\0')
			{
				free(out);
				return NULL;
			}
			if (*s == '"')
			{
				if (s[1] != '"')
					break;
				s++;
			}
			*o++ = *s++;
		}
		s++;
	}
	else
	{
		/* quote_identifier leaves only lower case, digits, _ and $ unquoted */
		while (*s && *s != '.')
			*o++ = *s++;
	}
	*o = '\0';
	*p = s;
	if (o == out)
	{
		free(out);
		return NULL;
	}
	return out;
}

/*
 * Split a stream name as the plugin writes it (quote_qualified_identifier:
 * schema.table, each part double-quoted when needed) into its two parts.
 */
bool
br_split_stream_name(const char *name, char **schema, char **table)
{
	const char *p = name;

	*schema = name_part(&p);
	if (*schema == NULL || *p != '.')
	{
		free(*schema);
		return false;
	}
	p++;
	*table = name_part(&p);
	if (*table == NULL || *p != '\0')
	{
		free(*schema);
		free(*table);
		return false;
	}
	return true;
}
