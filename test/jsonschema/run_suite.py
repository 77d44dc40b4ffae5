#!/usr/bin/env python3
"""Run the official JSON Schema test suite (draft 2020-12) against
event_log.json_schema_valid(), and print the pass rate per keyword file.

Usage (against the server that PGHOST/PGPORT/PGUSER name, which has the
extension installed; `make jsonschema-suite` starts a throwaway one):

    test/jsonschema/run_suite.py [SUITE_GIT_DIR]

SUITE_GIT_DIR is a git directory of json-schema-org/JSON-Schema-Test-Suite
(default: $JSON_SCHEMA_SUITE, else /work/.mirror/...). Files are read from
its HEAD with `git show`, so a bare repository does.

A case whose schema the extension refuses (an unsupported keyword, SQLSTATE
0A000, or a pattern PostgreSQL's regular expressions cannot compile, 2201B)
counts as "refused", not as passed or failed: refusing is the
documented behaviour for what is not supported. The rate is passed / (passed
+ failed). Output is a Markdown table, as docs/schemas.md shows it.
"""
import json
import os
import subprocess
import sys

DEFAULT_GIT = "/work/.mirror/json-schema-org+JSON-Schema-Test-Suite/repo"
# The keyword files of what event_log supports (docs/schemas.md), and the
# optional format files of the formats it asserts.
FILES = [
    "type", "properties", "required", "additionalProperties", "items",
    "enum", "const", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "multipleOf", "minLength", "maxLength", "pattern",
    "minItems", "maxItems", "uniqueItems", "minProperties", "maxProperties",
    "allOf", "anyOf", "oneOf", "not", "ref", "defs", "boolean_schema",
    "default", "infinite-loop-detection",
    "optional/format/date-time", "optional/format/uuid",
    "optional/format/email",
]


def git_show(gitdir, path):
    return subprocess.run(["git", "--git-dir", gitdir, "show", "HEAD:" + path],
                          check=True, capture_output=True, text=True).stdout


def main():
    gitdir = (sys.argv[1] if len(sys.argv) > 1
              else os.environ.get("JSON_SCHEMA_SUITE", DEFAULT_GIT))
    commit = subprocess.run(["git", "--git-dir", gitdir, "rev-parse", "HEAD"],
                            check=True, capture_output=True, text=True).stdout.strip()
    cases = []
    skipped = 0
    for name in FILES:
        for group in json.loads(git_show(gitdir, "tests/draft2020-12/%s.json" % name)):
            for test in group["tests"]:
                case = {"file": name, "schema": group["schema"],
                        "data": test["data"], "valid": test["valid"]}
                # jsonb cannot hold a NUL character: such cases cannot reach us
                if "\\u0000" in json.dumps(case):
                    skipped += 1
                    continue
                cases.append(case)
    sql = """
\\set ON_ERROR_STOP 1
CREATE EXTENSION IF NOT EXISTS event_log;
CREATE TEMP TABLE cases AS
  SELECT (c->>'file') AS file, c->'schema' AS schema, c->'data' AS data,
         (c->>'valid')::boolean AS valid, ord
  FROM jsonb_array_elements($CASES$%s$CASES$::jsonb) WITH ORDINALITY AS t(c, ord);
CREATE FUNCTION pg_temp.outcome(s jsonb, d jsonb, v boolean) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
  RETURN CASE WHEN event_log.json_schema_valid(s, d) = v THEN 'pass' ELSE 'fail' END;
EXCEPTION WHEN feature_not_supported OR invalid_regular_expression THEN RETURN 'refused';
          WHEN others THEN RETURN 'error';
END $$;
CREATE TEMP TABLE outcomes AS
  SELECT file, ord, pg_temp.outcome(schema, data, valid) AS outcome FROM cases;
\\pset format unaligned
\\pset tuples_only on
\\pset fieldsep '|'
SELECT file, count(*) FILTER (WHERE outcome = 'pass'), count(*) FILTER (WHERE outcome = 'fail'),
       count(*) FILTER (WHERE outcome = 'refused'), count(*) FILTER (WHERE outcome = 'error')
FROM outcomes GROUP BY file;
SELECT '#fail', c.file, c.schema, c.data, c.valid FROM outcomes o JOIN cases c USING (file, ord)
WHERE o.outcome IN ('fail', 'error');
""" % json.dumps(cases).replace("$CASES$", "")
    res = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1"], input=sql,
                         capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit("psql failed: " + res.stderr)
    out = res.stdout
    rows = {}
    failures = []
    for line in out.splitlines():
        parts = line.split("|")
        if parts[0] == "#fail":
            failures.append(parts[1:])
        elif len(parts) == 5:
            rows[parts[0]] = [int(x) for x in parts[1:]]
    print("JSON-Schema-Test-Suite %s, tests/draft2020-12\n" % commit[:12])
    print("| file | passed | failed | refused | errors | pass rate |")
    print("|---|---:|---:|---:|---:|---:|")
    total = [0, 0, 0, 0]
    for name in FILES:
        p, f, r, e = rows.get(name, [0, 0, 0, 0])
        total = [a + b for a, b in zip(total, [p, f, r, e])]
        rate = "%.0f%%" % (100.0 * p / (p + f + e)) if p + f + e else "-"
        print("| %s | %d | %d | %d | %d | %s |" % (name, p, f, r, e, rate))
    p, f, r, e = total
    print("| **all** | %d | %d | %d | %d | %.1f%% |" % (p, f, r, e, 100.0 * p / (p + f + e)))
    print("\n%d cases left out: they hold \\u0000, which jsonb cannot store." % skipped)
    if os.environ.get("VERBOSE"):
        for fl in failures:
            print("FAIL", *fl, file=sys.stderr)


if __name__ == "__main__":
    main()
