"""Dashboard queries: collection, variable substitution and semantic rules.

The lezer grammars catch syntax errors. The rules here catch what the grammar
accepts but Loki rejects or evaluates to a misleading result, and names the app never emits.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Iterator

# Values substituted for Grafana's interval variables before parsing.
BUILTIN_VALUES = {
    "__auto": "1m",
    "__interval": "1m",
    "__interval_ms": "60000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
    "__rate_interval": "1m",
    "__rate_interval_ms": "60000",
}
# Other built-ins a dashboard may mention. `$__all` is the value of the "All" option.
OTHER_BUILTINS = {"__all", "__from", "__to", "__dashboard", "__user", "__org", "__name", "__timeFilter"}

VARIABLE_USE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)(?::\w+)?\]\]")

RANGE_OPS_WITHOUT_GROUPING = {"CountOverTime", "Rate", "SumOverTime", "BytesOverTime", "BytesRate"}
RANGE_OPS_FORBIDDING_UNWRAP = {"CountOverTime", "BytesOverTime", "BytesRate", "AbsentOverTime"}
RANGE_OPS_NEEDING_UNWRAP = {
    "SumOverTime", "AvgOverTime", "MaxOverTime", "MinOverTime", "StdvarOverTime",
    "StddevOverTime", "QuantileOverTime", "FirstOverTime", "LastOverTime", "RateCounter",
}
PARSER_NODES = {"LabelParser", "JsonExpressionParser", "LogfmtParser", "LogfmtExpressionParser"}
FILTER_NODES = {"Matcher", "NumberFilter", "IpLabelFilter", "DurationFilter", "BytesFilter"}
LOKI_INTERNAL_LABELS = {"__error__", "__error_details__"}


@dataclass
class Query:
    """One query of a dashboard, with the context the rules need."""

    id: str
    dashboard: str
    panel: str
    panel_type: str
    lang: str
    expr: str
    instant: bool = False
    is_variable: bool = False


@dataclass
class Names:
    """Names a query may refer to."""

    stream_labels: set[str]
    metadata_keys: set[str]
    line_fields: set[str]
    event_names: set[str]
    source_literals: set[str] = field(default_factory=set)
    metric_labels: set[str] = field(default_factory=set)


def collect(dashboards: dict[str, dict], datasource_types: dict[str, str]) -> list[Query]:
    """Collect every panel target and variable query whose data source is Loki or Prometheus."""
    queries: list[Query] = []
    for file_name, dashboard in dashboards.items():
        for panel in iter_panels(dashboard.get("panels", [])):
            for target in panel.get("targets", []):
                datasource = target.get("datasource") or panel.get("datasource") or {}
                kind = datasource_types.get(datasource.get("uid", ""), datasource.get("type"))
                lang = {"loki": "logql", "prometheus": "promql"}.get(kind)
                if lang is None or "expr" not in target:
                    continue
                instant = target.get("queryType") == "instant" or target.get("instant") is True
                queries.append(Query(
                    id=f"{file_name}#panel{panel.get('id')}/{target.get('refId')}",
                    dashboard=file_name, panel=str(panel.get("title")),
                    panel_type=panel.get("type", ""), lang=lang, expr=target["expr"],
                    instant=instant,
                ))
        for variable in dashboard.get("templating", {}).get("list", []):
            query = variable.get("query")
            if variable.get("type") == "query" and isinstance(query, dict) and query.get("stream"):
                queries.append(Query(
                    id=f"{file_name}#variable:{variable.get('name')}", dashboard=file_name,
                    panel=f"variable {variable.get('name')}", panel_type="variable",
                    lang="logql", expr=query["stream"], is_variable=True,
                ))
    return queries


def iter_panels(panels: list[dict]) -> Iterator[dict]:
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels", []))


def variable_values(variable: dict) -> list[str]:
    """Return the values a template variable can take that matter to the rules.

    These are the "All" value when the variable offers one, and one concrete
    value, so a query is checked both ways.
    """
    values = []
    if variable.get("includeAll"):
        values.append(variable.get("allValue") or ".*")
    current = variable.get("current", {}).get("value")
    if isinstance(current, list):
        current = current[0] if current else None
    if current and current != "$__all":
        values.append(str(current))
    if variable.get("type") == "textbox" and variable.get("query"):
        values.append(str(variable["query"]))
    values.append("sample")
    return list(dict.fromkeys(values))


def substitutions(dashboard: dict) -> list[dict[str, str]]:
    variables = dashboard.get("templating", {}).get("list", [])
    names = [variable["name"] for variable in variables]
    choices = [variable_values(variable) for variable in variables]
    return [dict(zip(names, combination)) for combination in itertools.product(*choices)]


def substitute(expr: str, values: dict[str, str]) -> str:
    def replace(match: re.Match) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        if name in BUILTIN_VALUES:
            return BUILTIN_VALUES[name]
        return values.get(name, match.group(0))

    return VARIABLE_USE.sub(replace, expr)


def used_variables(text: str) -> set[str]:
    return {a or b or c for a, b, c in VARIABLE_USE.findall(text)}


# ---------------------------------------------------------------------------
# Syntax tree helpers. Nodes are {"name", "from", "to", "children"}.


def walk(node: dict) -> Iterator[dict]:
    yield node
    for child in node["children"]:
        yield from walk(child)


def child(node: dict, name: str) -> dict | None:
    return next((item for item in node["children"] if item["name"] == name), None)


def text(expr: str, node: dict) -> str:
    return expr[node["from"] : node["to"]]


def unquote(literal: str) -> str:
    """Decode a LogQL string literal: a Go quoted string or a raw backtick string."""
    if literal.startswith("`"):
        return literal[1:-1]
    body = literal[1:-1]
    escapes = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
    return re.sub(r"\\(.)", lambda match: escapes.get(match.group(1), match.group(1)), body)


def can_match_empty(operator: str, value: str) -> bool:
    if operator == "Eq":
        return value == ""
    if operator == "Re":
        try:
            return re.fullmatch(value, "") is not None
        except re.error:
            return False
    # `!=` and `!~` match every stream that lacks the label.
    return True


# ---------------------------------------------------------------------------
# Rules


@dataclass
class Usage:
    """Names a query refers to, for the field consistency check."""

    json_paths: set[str] = field(default_factory=set)
    event_values: set[str] = field(default_factory=set)
    metric_names: set[str] = field(default_factory=set)


def check_logql(query: Query, expr: str, tree: dict, names: Names, usage: Usage) -> list[str]:
    problems: list[str] = []
    root_expr = child(tree, "Expr")
    is_log_query = root_expr is not None and child(root_expr, "LogExpr") is not None
    if query.is_variable:
        if child(tree, "Expr") is None or not is_log_query:
            problems.append("a variable's stream must be a plain stream selector")
    elif is_log_query:
        if query.instant:
            problems.append("a log query is marked instant; Loki serves log lines only to range queries")
        if query.panel_type != "logs":
            problems.append(f"a log query sits in a {query.panel_type} panel; use a logs panel")
    elif query.panel_type == "logs":
        problems.append("a metric query sits in a logs panel")

    for node in walk(tree):
        if node["name"] == "Selector":
            problems += _check_selector(expr, node, names)
        elif node["name"] in ("LogExpr", "LogRangeExpr"):
            problems += _check_pipeline(expr, node, names, usage)
        elif node["name"] == "RangeAggregationExpr":
            problems += _check_range_aggregation(expr, node)
    problems += _check_grouping(expr, tree, names)
    return problems


def _check_selector(expr: str, selector: dict, names: Names) -> list[str]:
    problems = []
    for matcher in walk(selector):
        if matcher["name"] != "Matcher":
            continue
        label = text(expr, matcher["children"][0])
        operator = matcher["children"][1]["name"]
        value = unquote(text(expr, matcher["children"][2]))
        if label not in names.stream_labels:
            problems.append(
                f"stream selector uses label {label!r}, but the app's streams carry only "
                f"{sorted(names.stream_labels)}"
            )
        if can_match_empty(operator, value):
            problems.append(f"stream selector matcher {text(expr, matcher)} can match an empty value")
    return problems


def _pipeline_stages(expr_node: dict) -> list[dict]:
    """Return the pipeline and unwrap stages of a log expression in text order."""
    stages = []
    for node in walk(expr_node):
        if node["name"] == "PipelineStage":
            stages.append(node)
        elif node["name"] == "UnwrapExpr" and child(node, "Unwrap") is not None:
            stages.append(node)
        elif node["name"] == "UnwrapExpr" and child(node, "LabelFilter") is not None:
            stages.append(child(node, "LabelFilter"))
    return sorted(stages, key=lambda node: node["from"])


def _check_pipeline(expr: str, expr_node: dict, names: Names, usage: Usage) -> list[str]:
    problems = []
    available = set(names.stream_labels) | set(names.metadata_keys) | LOKI_INTERNAL_LABELS
    parsed_all = False
    parsers_seen = False
    extracted: set[str] = set()
    event_values: set[str] = set()
    for stage in _pipeline_stages(expr_node):
        parsers = [node for node in walk(stage) if node["name"] in PARSER_NODES]
        parsers_seen = parsers_seen or bool(parsers)
        for parser in parsers:
            extractions = [node for node in walk(parser) if node["name"] == "LabelExtractionExpression"]
            if not extractions:
                parsed_all = True
                available |= names.line_fields
            for extraction in extractions:
                target = text(expr, extraction["children"][0])
                path = unquote(text(expr, extraction["children"][2]))
                usage.json_paths.add(path)
                if path not in names.line_fields:
                    problems.append(f"`| json {target}=\"{path}\"` reads field {path!r}, which the app never emits")
                available.add(target)
                extracted.add(target)
        if stage["name"] == "UnwrapExpr":
            identifier = child(stage, "Identifier")
            field_name = text(expr, identifier) if identifier else ""
            if field_name not in available:
                problems.append(f"unwrap {field_name!r} names no field extracted before it")
            continue
        for node in walk(stage):
            if node["name"] not in FILTER_NODES or not node["children"]:
                continue
            label = text(expr, node["children"][0])
            if node["name"] == "Matcher" and label == "event":
                event_values.add(unquote(text(expr, node["children"][2])))
            if parsers_seen and label in names.metadata_keys and label not in extracted:
                problems.append(
                    f"filter on structured metadata key {label!r} after a parser: move it right "
                    "after the stream selector, so Loki skips lines before parsing them"
                )
            if label not in available:
                where = "after the parser" if parsed_all else "before any parser"
                problems.append(
                    f"label filter on {label!r} {where}: it is no stream label, structured "
                    f"metadata key{' or JSON field' if parsed_all else ''} the app sends"
                )
    usage.event_values |= event_values
    for value in sorted(event_values):
        if value and value not in names.event_names:
            problems.append(f"filter event={value!r} names an event the activity module never emits")
    return problems


def _check_range_aggregation(expr: str, node: dict) -> list[str]:
    problems = []
    range_op = child(node, "RangeOp")
    op_name = range_op["children"][0]["name"] if range_op and range_op["children"] else ""
    op_text = text(expr, range_op) if range_op else "?"
    log_range = child(node, "LogRangeExpr")
    has_unwrap = log_range is not None and any(item["name"] == "Unwrap" for item in walk(log_range))
    if child(node, "Grouping") is not None and op_name in RANGE_OPS_WITHOUT_GROUPING:
        problems.append(f"{op_text}(...) by (...) is invalid; group in an outer sum by (...) instead")
    if has_unwrap and op_name in RANGE_OPS_FORBIDDING_UNWRAP:
        problems.append(f"{op_text} counts lines and takes no unwrap")
    if not has_unwrap and op_name in RANGE_OPS_NEEDING_UNWRAP:
        problems.append(f"{op_text} needs `| unwrap FIELD` to have values to aggregate")
    return problems


def _extracted_names(expr: str, tree: dict, names: Names) -> set[str]:
    available = set(names.stream_labels) | set(names.metadata_keys)
    for node in walk(tree):
        if node["name"] in PARSER_NODES:
            extractions = [item for item in walk(node) if item["name"] == "LabelExtractionExpression"]
            if not extractions:
                available |= names.line_fields
            available |= {text(expr, item["children"][0]) for item in extractions}
    return available


def _check_grouping(expr: str, tree: dict, names: Names) -> list[str]:
    available = _extracted_names(expr, tree, names)
    problems = []
    for node in walk(tree):
        if node["name"] == "Grouping":
            for identifier in walk(node):
                label = text(expr, identifier)
                if identifier["name"] == "Identifier" and label not in available:
                    problems.append(f"grouping by {label!r}, which the query never has as a label")
    return problems


def check_promql(expr: str, tree: dict, names: Names, usage: Usage) -> list[str]:
    problems = []
    for node in walk(tree):
        if node["name"] == "VectorSelector":
            identifier = child(node, "Identifier")
            if identifier is not None:
                metric = text(expr, identifier)
                usage.metric_names.add(metric)
                if not metric_in_source(metric, names.source_literals):
                    problems.append(f"metric {metric!r} is not exported by the app's source")
        if node["name"] == "GroupingLabels":
            for label_node in node["children"]:
                label = text(expr, label_node)
                if label_node["name"] == "LabelName" and label not in names.metric_labels:
                    problems.append(f"grouping by {label!r}, a label no scraped metric carries")
    return problems


def metric_in_source(metric: str, literals: set[str]) -> bool:
    """Return whether the app's source names a metric.

    A histogram's `_bucket`, `_sum` and `_count` series count as its base name.
    The source may also spell the name without the `nixtla_loki_` or
    `nixtla_http_` prefix and add the prefix when rendering.
    """
    base = re.sub(r"_(bucket|sum|count)$", "", metric)
    candidates = {metric, base}
    for prefix in ("nixtla_loki_", "nixtla_http_", "nixtla_"):
        if base.startswith(prefix):
            candidates.add(base[len(prefix):])
    return any(literal in candidates or base in literal for literal in literals)
