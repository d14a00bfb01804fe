"""Checks of Grafana provisioning, the dashboards and their queries."""

from __future__ import annotations

import json
import re
from pathlib import Path

from . import queries as q
from . import rustsrc, tools
from .checks_stack import check_service_urls, mounted_file
from .common import (
    BASE_LINE_FIELDS,
    NATIVE_METADATA_KEYS,
    CheckError,
    Context,
    app_services,
    services_by_image,
)

PROVISIONING_TARGET = "/etc/grafana/provisioning"
UID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


def provisioned_datasources(ctx: Context) -> dict[str, dict]:
    datasources = {}
    for path in sorted(ctx.path("grafana/provisioning/datasources").glob("*.y*ml")):
        for item in ctx.yaml(str(path.relative_to(ctx.root))).get("datasources", []):
            datasources[item.get("uid")] = item
    return datasources


def _grafana_service(ctx: Context) -> tuple[str, dict]:
    services = services_by_image(ctx.compose_model(()), "grafana/grafana")
    if not services:
        raise CheckError("compose.yaml has no grafana/grafana service")
    return next(iter(services.items()))


def check_provisioning(ctx: Context) -> list[str]:
    """Provisioning and dashboards are mounted where Grafana and the provider look."""
    name, grafana = _grafana_service(ctx)
    problems = []

    source = mounted_file(grafana, PROVISIONING_TARGET)
    if source is None or source.resolve() != ctx.path("grafana/provisioning").resolve():
        problems.append(f"service {name}: ./grafana/provisioning must be mounted at {PROVISIONING_TARGET}")

    dashboard_dir = ctx.path("grafana/dashboards").resolve()
    mount_targets = [target for src, target in _binds(grafana) if Path(src).resolve() == dashboard_dir]
    providers = []
    for path in sorted(ctx.path("grafana/provisioning/dashboards").glob("*.y*ml")):
        providers += ctx.yaml(str(path.relative_to(ctx.root))).get("providers", [])
    if not providers:
        problems.append("grafana/provisioning/dashboards/ defines no dashboard provider")
    for provider in providers:
        path = provider.get("options", {}).get("path")
        if path not in mount_targets:
            problems.append(
                f"dashboard provider {provider.get('name')!r} reads {path}, but ./grafana/dashboards "
                f"is mounted at {mount_targets or 'no path'}"
            )

    home = grafana.get("environment", {}).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        matching = [t for t in mount_targets if home.startswith(t + "/")]
        if not matching or not (dashboard_dir / home[len(matching[0]) + 1 :]).is_file():
            problems.append(f"home dashboard {home} is not a file of ./grafana/dashboards")

    urls = {f"data source {uid}": item.get("url", "") for uid, item in provisioned_datasources(ctx).items()}
    problems += check_service_urls(ctx, urls, ctx.compose_model(()))
    for uid, item in provisioned_datasources(ctx).items():
        if not uid or not UID_PATTERN.match(str(uid)):
            problems.append(f"data source {item.get('name')!r} needs a fixed uid of at most 40 characters")
        if "$" in json.dumps(item).replace("$$", ""):
            problems.append(f"data source {uid}: a literal $ must be written $$ in provisioning files")
    return problems


def _binds(service: dict) -> list[tuple[str, str]]:
    return [(v["source"], v["target"]) for v in service.get("volumes", []) if v.get("type") == "bind"]


def check_dashboard_structure(ctx: Context) -> list[str]:
    """Fixed unique uids, unique panel ids, 24-column layout, known data sources and variables."""
    problems = []
    datasources = provisioned_datasources(ctx)
    seen_uids: dict[str, str] = {}
    for file_name, dashboard in ctx.dashboards().items():
        where = f"grafana/dashboards/{file_name}"
        uid = dashboard.get("uid")
        if not isinstance(uid, str) or not UID_PATTERN.match(uid):
            problems.append(f"{where}: uid {uid!r} must be 1-40 characters of [A-Za-z0-9_-]")
        elif uid in seen_uids:
            problems.append(f"{where}: uid {uid!r} is also used by {seen_uids[uid]}")
        else:
            seen_uids[uid] = file_name
        if dashboard.get("id") is not None:
            problems.append(f"{where}: remove the numeric id; Grafana assigns it on provisioning")
        raw = json.dumps(dashboard)
        if "${DS_" in raw or "__inputs" in dashboard:
            problems.append(f"{where}: uses ${{DS_...}} inputs, which provisioning never resolves")
        panel_ids: set = set()
        for panel in q.iter_panels(dashboard.get("panels", [])):
            problems += _check_panel(where, panel, panel_ids, datasources)
        for variable in dashboard.get("templating", {}).get("list", []):
            problems += _check_datasource_ref(f"{where} variable {variable.get('name')}",
                                              variable.get("datasource"), datasources)
        defined = {variable.get("name") for variable in dashboard.get("templating", {}).get("list", [])}
        known = defined | set(q.BUILTIN_VALUES) | q.OTHER_BUILTINS
        for name in sorted(q.used_variables(raw) - known):
            problems.append(f"{where}: variable ${name} is used but not defined")
    return problems


def _check_panel(where: str, panel: dict, panel_ids: set, datasources: dict) -> list[str]:
    problems = []
    title = f"{where} panel {panel.get('title')!r}"
    panel_id = panel.get("id")
    if not isinstance(panel_id, int):
        problems.append(f"{title}: needs an integer id")
    elif panel_id in panel_ids:
        problems.append(f"{title}: id {panel_id} is used twice")
    panel_ids.add(panel_id)
    grid = panel.get("gridPos", {})
    x, w, h = grid.get("x", -1), grid.get("w", 0), grid.get("h", 0)
    if not (isinstance(x, int) and isinstance(w, int) and x >= 0 and w >= 1 and x + w <= 24 and h >= 1):
        problems.append(f"{title}: gridPos {grid} does not fit the 24-column grid")
    if panel.get("type") != "row":
        problems += _check_datasource_ref(title, panel.get("datasource"), datasources)
        for target in panel.get("targets", []):
            problems += _check_datasource_ref(f"{title} query {target.get('refId')}",
                                              target.get("datasource", panel.get("datasource")), datasources)
    return problems


def _check_datasource_ref(where: str, ref, datasources: dict) -> list[str]:
    if ref is None:
        return []
    if not isinstance(ref, dict) or "uid" not in ref:
        return [f"{where}: reference the data source as {{\"type\", \"uid\"}}, not {ref!r}"]
    provisioned = datasources.get(ref["uid"])
    if provisioned is None:
        return [f"{where}: data source uid {ref['uid']!r} is not provisioned (have {sorted(datasources)})"]
    if ref.get("type") and ref["type"] != provisioned.get("type"):
        return [f"{where}: data source {ref['uid']} has type {provisioned.get('type')}, not {ref['type']}"]
    return []


def stream_labels(ctx: Context) -> set[str]:
    """Labels of the native push: service_name, env and the keys of LOKI_LABELS."""
    labels = {"service_name", "env"}
    for service in app_services(ctx.compose_model(())).values():
        extra = service.get("environment", {}).get("LOKI_LABELS") or ""
        labels |= {pair.split("=", 1)[0].strip() for pair in extra.split(",") if "=" in pair}
    return labels


def app_names(ctx: Context) -> q.Names:
    activity = rustsrc.read_activity_module(ctx.src)
    literals = rustsrc.string_literals(ctx.src)
    base = {name for name in BASE_LINE_FIELDS if name in literals}
    return q.Names(
        stream_labels=stream_labels(ctx),
        metadata_keys=set(NATIVE_METADATA_KEYS),
        line_fields=activity.fields | base,
        event_names=activity.events,
        source_literals=literals,
        metric_labels=_metric_labels(ctx),
    )


def _metric_labels(ctx: Context) -> set[str]:
    labels = {"job", "instance", "le", "reason", "method", "route", "status"}
    config = ctx.yaml("grafana/prometheus/prometheus.yml")
    for job in config.get("scrape_configs", []):
        for static in job.get("static_configs", []):
            labels |= set(static.get("labels", {}))
    return labels


def analyse_queries(ctx: Context) -> tuple[list[str], q.Usage]:
    datasource_types = {uid: item.get("type") for uid, item in provisioned_datasources(ctx).items()}
    names = app_names(ctx)
    collected = q.collect(ctx.dashboards(), datasource_types)
    if not collected:
        return ["the dashboards contain no Loki or Prometheus query"], q.Usage()
    requests, variants = [], []
    for query in collected:
        for index, values in enumerate(q.substitutions(ctx.dashboards()[query.dashboard])):
            expr = q.substitute(query.expr, values)
            variant_id = f"{query.id}@{index}"
            requests.append({"id": variant_id, "lang": query.lang, "expr": expr})
            variants.append((query, variant_id, expr, values))
    parsed = tools.parse_queries(requests)
    problems: list[str] = []
    usage = q.Usage()
    for query, variant_id, expr, values in variants:
        result = parsed[variant_id]
        found = []
        if result["errors"]:
            positions = ", ".join(f"{expr[e['from']:e['from'] + 20]!r} at {e['from']}" for e in result["errors"])
            found.append(f"{query.lang} syntax error near {positions}")
        elif query.lang == "logql":
            found += q.check_logql(query, expr, result["tree"], names, usage)
        else:
            found += q.check_promql(expr, result["tree"], names, usage)
        for problem in found:
            problems.append(f"{query.id} ({query.panel}) with {values or 'no variables'}: {problem}\n    {expr}")
    return list(dict.fromkeys(problems)), usage


def check_dashboard_queries(ctx: Context) -> list[str]:
    """Every LogQL and PromQL query parses and passes the semantic rules."""
    problems, _ = analyse_queries(ctx)
    return problems


def check_app_fields(ctx: Context) -> list[str]:
    """Every field, event and metadata key the stack refers to is emitted by the app."""
    problems = []
    activity = rustsrc.read_activity_module(ctx.src)
    literals = rustsrc.string_literals(ctx.src, exclude=("activity", "activity.rs"))
    module_files = ", ".join(str(path.relative_to(ctx.src.parent)) for path in activity.files)
    for name in BASE_LINE_FIELDS:
        if name not in literals and name not in activity.fields:
            problems.append(f"log line key {name!r} appears nowhere in the app's source")
    for key in NATIVE_METADATA_KEYS:
        if key not in literals:
            problems.append(f"structured metadata key {key!r} is not named in the native Loki code")
    for key in NATIVE_METADATA_KEYS:
        if key not in activity.fields and key not in BASE_LINE_FIELDS:
            problems.append(f"structured metadata key {key!r} is no field of {module_files}")
    _, usage = analyse_queries(ctx)
    for path in sorted(usage.json_paths):
        if path not in activity.fields and path not in BASE_LINE_FIELDS:
            problems.append(f"dashboards read JSON field {path!r}, which {module_files} never emits")
    for value in sorted(usage.event_values - {""}):
        if value not in activity.events:
            problems.append(f"dashboards filter on event {value!r}, which {module_files} never emits")
    from .checks_fallback import scraper_field_references

    for where, name in scraper_field_references(ctx):
        if name not in activity.fields and name not in BASE_LINE_FIELDS:
            problems.append(f"{where} reads field {name!r}, which {module_files} never emits")
    return problems


def check_docs(ctx: Context) -> list[str]:
    """docs/stack.md names every dashboard panel, URL and profile."""
    path = ctx.path("docs/stack.md")
    if not path.is_file():
        return ["docs/stack.md is missing"]
    text = path.read_text()
    problems = []
    for file_name, dashboard in ctx.dashboards().items():
        if dashboard.get("title") not in text:
            problems.append(f"docs/stack.md does not describe dashboard {dashboard.get('title')!r}")
        for panel in q.iter_panels(dashboard.get("panels", [])):
            if panel.get("type") != "row" and panel.get("title") not in text:
                problems.append(f"docs/stack.md does not say what panel {panel.get('title')!r} answers")
    for needle in ("localhost:7000", "localhost:3000", "localhost:3100", "--profile promtail", "--profile alloy"):
        if needle not in text:
            problems.append(f"docs/stack.md does not mention {needle}")
    return problems

