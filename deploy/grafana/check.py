#!/usr/bin/env python3
"""Checks the Grafana dashboards beside this file against the metrics the services define.

For every *.json in this folder: it parses; its uid and title are set and unique across the
folder; it has a datasource variable and every panel queries `${datasource}`; every panel (rows
included) has a title and a description; every panel other than a row has targets, each with a
PromQL `expr`; and every metric name in those expressions (and in the query variables) is one the
code defines.

The known names come from the string literals passed to the `metrics` macros (`counter!`,
`gauge!`, `histogram!`, `describe_*!`, ...) in services/**/*.rs. A histogram is exported by
metrics-exporter-prometheus as `<name>_bucket`/`_sum`/`_count` when the recorder gives it buckets
(`set_buckets` or `set_buckets_for_metric` with a matching `Matcher`, read from the same sources),
otherwise as a summary: `<name>{quantile=...}`/`_sum`/`_count`.

Python 3.11 standard library only. Runs from anywhere: `python3 deploy/grafana/check.py`.
Exit status 0 with a one-line summary, or 1 with one line per problem.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SERVICES = REPO / "services"

# --------------------------------------------------------------------------- known metrics

MACRO = re.compile(
    r"\b(counter|gauge|histogram|describe_counter|describe_gauge|describe_histogram|"
    r"register_counter|register_gauge|register_histogram|absolute_counter|increment_counter|"
    r"increment_gauge|decrement_gauge)!\s*\(\s*\"([^\"\\]+)\""
)
MATCHER = re.compile(r"Matcher::(Full|Prefix|Suffix)\(\s*\"([^\"\\]*)\"")
GLOBAL_BUCKETS = re.compile(r"\.set_buckets\s*\(")
BUCKETS_FOR_METRIC = re.compile(r"set_buckets_for_metric\s*\(\s*Matcher::")


def rust_sources(root: Path):
    """Every .rs under `root`, skipping Cargo build directories (they hold a CACHEDIR.TAG) and
    hidden ones."""
    for directory, subdirs, files in os.walk(root):
        if "CACHEDIR.TAG" in files:
            subdirs[:] = []
            continue
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for name in sorted(files):
            if name.endswith(".rs"):
                yield Path(directory) / name


def without_line_comments(source: str) -> str:
    return "\n".join("" if line.lstrip().startswith("//") else line for line in source.splitlines())


def known_metrics(root: Path) -> tuple[dict[str, str], set[str], set[str]]:
    """(exported series name -> what it is, histogram names, summary histogram names)."""
    kinds: dict[str, str] = {}
    histograms: set[str] = set()
    matchers: list[tuple[str, str]] = []
    global_buckets = False
    for path in rust_sources(root):
        source = without_line_comments(path.read_text(encoding="utf-8", errors="replace"))
        for macro, name in MACRO.findall(source):
            kind = macro.rsplit("_", 1)[-1]
            if kind == "histogram":
                histograms.add(name)
            kinds.setdefault(name, kind)
        if GLOBAL_BUCKETS.search(source):
            global_buckets = True
        for call in BUCKETS_FOR_METRIC.finditer(source):
            found = MATCHER.match(source, call.end() - len("Matcher::"))
            if found:
                matchers.append((found.group(1), found.group(2)))

    def bucketed(name: str) -> bool:
        return global_buckets or any(
            (kind == "Full" and name == value)
            or (kind == "Prefix" and name.startswith(value))
            or (kind == "Suffix" and name.endswith(value))
            for kind, value in matchers
        )

    series: dict[str, str] = {}
    summaries: set[str] = set()
    for name, kind in kinds.items():
        if name not in histograms:
            series[name] = kind
            continue
        if bucketed(name):
            series[f"{name}_bucket"] = f"buckets of histogram {name}"
        else:
            summaries.add(name)
            series[name] = f"quantiles of summary {name}"
        series[f"{name}_sum"] = f"sum of {name}"
        series[f"{name}_count"] = f"count of {name}"
    return series, histograms, summaries


# --------------------------------------------------------------------------- PromQL names

AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}
FUNCTIONS = AGGREGATIONS | {
    "abs", "absent", "absent_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min",
    "day_of_month", "day_of_week", "day_of_year", "days_in_month", "delta", "deriv", "exp",
    "floor", "histogram_avg", "histogram_count", "histogram_fraction", "histogram_quantile",
    "histogram_stddev", "histogram_stdvar", "histogram_sum", "double_exponential_smoothing",
    "holt_winters", "hour", "idelta", "increase", "irate", "label_join", "label_replace", "ln",
    "log2", "log10", "minute", "month", "predict_linear", "rate", "resets", "round", "scalar",
    "sgn", "sort", "sort_desc", "sort_by_label", "sort_by_label_desc", "sqrt", "time",
    "timestamp", "vector", "year", "avg_over_time", "min_over_time", "max_over_time",
    "sum_over_time", "count_over_time", "quantile_over_time", "stddev_over_time",
    "stdvar_over_time", "last_over_time", "present_over_time", "mad_over_time", "acos", "acosh",
    "asin", "asinh", "atan", "atanh", "cos", "cosh", "sin", "sinh", "tan", "tanh", "deg", "pi",
    "rad", "info", "start", "end",
}
KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "bool", "offset", "atan2", "inf", "nan",
}
STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
TEMPLATE_VARIABLES = re.compile(r"\$\{[^}]*\}|\$\w+|\[\[[^\]]*\]\]")
MATCHERS = re.compile(r"\{[^{}]*\}")
RANGES = re.compile(r"\[[^\[\]]*\]")
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
IDENTIFIER = re.compile(r"(?<![\w:.])([A-Za-z_:][\w:]*)")


def referenced_names(expr: str) -> list[tuple[str, bool]]:
    """The identifiers of a PromQL expression that are not functions, keywords or label names:
    (name, followed by `(`). Strings, label matchers, ranges, grouping label lists and Grafana
    variables are removed first, so what is left is metric names."""
    text = STRINGS.sub('""', expr)
    text = TEMPLATE_VARIABLES.sub("0", text)
    text = MATCHERS.sub(" ", text)
    text = RANGES.sub(" ", text)
    text = GROUPING.sub(" ", text)
    names = []
    for found in IDENTIFIER.finditer(text):
        name = found.group(1)
        rest = text[found.end():].lstrip()
        call = rest.startswith("(")
        if call and name in FUNCTIONS:
            continue
        if name in KEYWORDS:
            continue
        names.append((name, call))
    return names


def split_last_argument(inner: str) -> tuple[str, str | None]:
    """`a, b` -> (`a`, `b`) at parenthesis/brace depth 0; no top-level comma -> (inner, None)."""
    depth, quote = 0, None
    for i in range(len(inner) - 1, -1, -1):
        c = inner[i]
        if quote:
            if c == quote and (i == 0 or inner[i - 1] != "\\"):
                quote = None
        elif c in "\"'`":
            quote = c
        elif c in ")}]":
            depth += 1
        elif c in "({[":
            depth -= 1
        elif c == "," and depth == 0:
            return inner[:i], inner[i + 1:]
    return inner, None


def variable_expressions(query: str) -> list[str]:
    """The PromQL inside a Grafana Prometheus variable query."""
    query = query.strip()
    call = re.fullmatch(r"(label_values|query_result|label_names|metrics)\s*\((.*)\)", query, re.S)
    if not call:
        return [query] if query else []
    function, inner = call.group(1), call.group(2)
    if function == "label_values":
        series, label = split_last_argument(inner)
        return [series] if label is not None else []
    if function == "query_result":
        return [inner]
    return []


# --------------------------------------------------------------------------- dashboards


def uses_datasource_variable(datasource) -> bool:
    if datasource is None:
        return True  # inherits the panel's (or the dashboard's default)
    uid = datasource.get("uid") if isinstance(datasource, dict) else datasource
    return uid in ("${datasource}", "$datasource")


def all_panels(panels):
    for panel in panels or []:
        yield panel
        if panel.get("type") == "row":
            yield from all_panels(panel.get("panels"))


def main() -> int:
    known, histograms, summaries = known_metrics(SERVICES)
    if not known:
        print(f"check.py: no metric macros found under {SERVICES}; is this the Control Tower repository?",
              file=sys.stderr)
        return 1
    files = sorted(HERE.glob("*.json"))
    if not files:
        print(f"check.py: no dashboards (*.json) in {HERE}", file=sys.stderr)
        return 1

    errors: list[str] = []
    uids: dict[str, str] = {}
    titles: dict[str, str] = {}
    used: set[str] = set()
    panel_count = query_count = 0

    def check_expr(where: str, expr: str) -> None:
        for name, call in referenced_names(expr):
            if name in known:
                used.add(name)
                continue
            if call:
                errors.append(f"{where}: unknown PromQL function or metric {name!r} in {expr!r}")
            elif name.endswith("_bucket") and name[: -len("_bucket")] in summaries:
                errors.append(
                    f"{where}: metric {name!r} does not exist: the exporter has no buckets for histogram "
                    f"{name[:-len('_bucket')]!r}, which it exports as a summary (use its quantile label)"
                )
            elif name in histograms:
                errors.append(
                    f"{where}: metric {name!r} is a histogram with buckets: query {name}_bucket, "
                    f"{name}_sum or {name}_count"
                )
            else:
                errors.append(
                    f"{where}: unknown metric {name!r} (no counter!/gauge!/histogram! in services/**/*.rs "
                    f"defines it)"
                )

    for path in files:
        name = path.name
        try:
            board = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            errors.append(f"{name}: does not parse as JSON: {error}")
            continue
        if not isinstance(board, dict):
            errors.append(f"{name}: is not a dashboard object")
            continue
        uid, title = board.get("uid"), board.get("title")
        for field, value, seen in (("uid", uid, uids), ("title", title, titles)):
            if not isinstance(value, str) or not value.strip():
                errors.append(f"{name}: has no {field}")
            elif value in seen:
                errors.append(f"{name}: {field} {value!r} is also the {field} of {seen[value]}")
            else:
                seen[value] = name
        if not isinstance(board.get("schemaVersion"), int):
            errors.append(f"{name}: has no integer schemaVersion")

        variables = (board.get("templating") or {}).get("list") or []
        if not any(v.get("type") == "datasource" and v.get("name") == "datasource" for v in variables):
            errors.append(f"{name}: has no datasource variable named 'datasource'")
        for variable in variables:
            if variable.get("type") != "query":
                continue
            where = f"{name}: variable {variable.get('name')!r}"
            if not uses_datasource_variable(variable.get("datasource")):
                errors.append(f"{where}: does not query ${{datasource}}")
            query = variable.get("query")
            if isinstance(query, dict):
                query = query.get("query", "")
            for expr in variable_expressions(query or ""):
                query_count += 1
                check_expr(where, expr)

        ids: dict[object, str] = {}
        for panel in all_panels(board.get("panels")):
            panel_title = panel.get("title")
            where = f"{name}: panel {panel_title!r} (id {panel.get('id')})"
            if not isinstance(panel_title, str) or not panel_title.strip():
                errors.append(f"{where}: has no title")
            if not isinstance(panel.get("description"), str) or not panel["description"].strip():
                errors.append(f"{where}: has no description")
            if panel.get("id") in ids:
                errors.append(f"{where}: id also used by panel {ids[panel.get('id')]!r}")
            ids[panel.get("id")] = panel_title
            if panel.get("type") == "row":
                continue
            panel_count += 1
            if not uses_datasource_variable(panel.get("datasource")):
                errors.append(f"{where}: does not query ${{datasource}}")
            targets = panel.get("targets")
            if not isinstance(targets, list) or not targets:
                errors.append(f"{where}: has no targets")
                continue
            for target in targets:
                at = f"{where}, target {target.get('refId', '?')}"
                expr = target.get("expr")
                if not isinstance(expr, str) or not expr.strip():
                    errors.append(f"{at}: has no expr")
                    continue
                if not uses_datasource_variable(target.get("datasource")):
                    errors.append(f"{at}: does not query ${{datasource}}")
                query_count += 1
                check_expr(at, expr)

    if errors:
        for error in errors:
            print(f"check.py: {error}", file=sys.stderr)
        print(f"check.py: {len(errors)} problem(s) in {HERE}", file=sys.stderr)
        return 1
    print(
        f"check.py: {len(files)} dashboards, {panel_count} panels, {query_count} queries OK; "
        f"{len(used)} metric names used, all defined in services/ ({len(known)} exported series known)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
