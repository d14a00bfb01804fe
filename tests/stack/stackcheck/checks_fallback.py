"""Checks that the Promtail and Alloy fallbacks ship like the native push.

The scraper configs are read and their stages run on sample app lines, so a
key missing from one config, or a label spelled differently, fails the check.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from . import alloy, rustsrc
from .checks_stack import check_service_urls
from .common import (
    DEFAULT_ENV,
    NATIVE_METADATA_KEYS,
    PROFILE_SETS,
    SERVICE_NAME,
    CheckError,
    Context,
    app_services,
    expand_shell_default,
    services_by_image,
)

PROMTAIL_CONFIG = "grafana/promtail/config.yaml"
ALLOY_CONFIG = "grafana/alloy/config.alloy"
TIMESTAMP = "2026-01-02T03:04:05.123456789Z"


@dataclass
class Entry:
    """A log entry on its way through a scraper pipeline."""

    line: str
    labels: dict[str, str]
    extracted: dict = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    dropped: bool = False


@dataclass
class Scraper:
    """What a scraper config selects and how it processes each line."""

    name: str
    label_filters: list[str]
    push_urls: list[str]
    relabel: list[dict]
    stages: list[tuple[str, dict]]
    references: list[tuple[str, str]]


# ---------------------------------------------------------------------------
# Reading the configs


def read_promtail(ctx: Context) -> Scraper:
    config = ctx.yaml(PROMTAIL_CONFIG)
    jobs = config.get("scrape_configs", [])
    if len(jobs) != 1:
        raise CheckError(f"{PROMTAIL_CONFIG}: expected one scrape config, found {len(jobs)}")
    job = jobs[0]
    filters = []
    for sd in job.get("docker_sd_configs", []):
        for item in sd.get("filters", []) or []:
            if item.get("name") == "label":
                filters += item.get("values", [])
    stages = []
    references = []
    for stage in job.get("pipeline_stages", []):
        (kind, options), = stage.items()
        options = options if options is not None else {}
        if kind == "json":
            for name, path in options.get("expressions", {}).items():
                references.append((f"{PROMTAIL_CONFIG} json stage", path or name))
        stages.append((kind, options))
    relabel = [
        {"source_labels": rule.get("source_labels", []), "target_label": rule.get("target_label"),
         "action": rule.get("action", "replace")}
        for rule in job.get("relabel_configs", [])
    ]
    urls = [client.get("url", "") for client in config.get("clients", [])]
    return Scraper("promtail", filters, urls, relabel, stages, references)


_ALLOY_STAGES = {
    "stage.match": "match", "stage.json": "json", "stage.timestamp": "timestamp",
    "stage.structured_metadata": "structured_metadata", "stage.static_labels": "static_labels",
    "stage.label_drop": "labeldrop", "stage.labels": "labels",
}


def read_alloy(ctx: Context, env: dict[str, str]) -> Scraper:
    root = alloy.parse(ctx.path(ALLOY_CONFIG).read_text())
    parts = alloy.components(root)
    problems = _alloy_wiring(parts)
    if problems:
        raise CheckError("\n".join(problems))

    filters = []
    for block in parts.values():
        if block.name == "discovery.docker":
            for item in block.children("filter"):
                if item.attributes.get("name") == "label":
                    filters += item.attributes.get("values", [])

    relabel = []
    for block in parts.values():
        if block.name == "discovery.relabel":
            for rule in block.children("rule"):
                relabel.append({"source_labels": rule.attributes.get("source_labels", []),
                                "target_label": rule.attributes.get("target_label"),
                                "action": rule.attributes.get("action", "replace")})

    stages, references = [], []
    for block in parts.values():
        if block.name != "loki.process":
            continue
        for stage in block.blocks:
            kind = _ALLOY_STAGES.get(stage.name)
            if kind is None:
                raise CheckError(f"{ALLOY_CONFIG}: the check cannot simulate {stage.name}")
            options = alloy.evaluate(stage.attributes, env)
            if kind in ("structured_metadata", "static_labels", "labels"):
                options = options.get("values", {})
            elif kind == "labeldrop":
                options = options.get("values", [])
            elif kind == "json":
                for name, path in options.get("expressions", {}).items():
                    references.append((f"{ALLOY_CONFIG} stage.json", path or name))
            stages.append((kind, options))

    urls = [endpoint.attributes.get("url", "") for block in parts.values() if block.name == "loki.write"
            for endpoint in block.children("endpoint")]
    return Scraper("alloy", filters, urls, relabel, stages, references)


def _alloy_wiring(parts: dict[str, alloy.Block]) -> list[str]:
    """Every reference names a defined component with that export."""
    exports = {"targets": ("discovery.",), "rules": ("discovery.relabel",), "receiver": ("loki.",)}
    problems = []

    def visit(value, where: str) -> None:
        if isinstance(value, alloy.Reference):
            component, _, export = value.path.rpartition(".")
            if component not in parts:
                problems.append(f"{ALLOY_CONFIG}: {where} refers to undefined component {component}")
            elif not parts[component].name.startswith(exports.get(export, ("?",))):
                problems.append(f"{ALLOY_CONFIG}: {where} refers to {value.path}, which is no export")
        elif isinstance(value, list):
            for item in value:
                visit(item, where)
        elif isinstance(value, dict):
            for item in value.values():
                visit(item, where)

    for key, block in parts.items():
        for name, value in block.attributes.items():
            visit(value, f"{key}.{name}")
    return problems


def scraper_field_references(ctx: Context) -> list[tuple[str, str]]:
    return read_promtail(ctx).references + read_alloy(ctx, {}).references


# ---------------------------------------------------------------------------
# Running the stages


def _selector_matches(selector: str, labels: dict[str, str]) -> bool:
    matchers = re.findall(r'(\w+)\s*(=|!=)\s*"([^"]*)"', selector)
    if not matchers:
        raise CheckError(f"the check cannot evaluate match selector {selector!r}")
    return all((labels.get(name, "") == value) == (op == "=") for name, op, value in matchers)


def _go_string(value) -> str | None:
    """Convert an extracted JSON value to a label value the way Promtail's getString does."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return format(value, "g") if isinstance(value, float) and not value.is_integer() else str(int(value))
    if isinstance(value, str):
        return value
    return None


def run_stages(scraper: Scraper, line: str, stream: str) -> Entry:
    labels: dict[str, str] = {}
    meta = {"__meta_docker_container_log_stream": stream}
    for rule in scraper.relabel:
        if rule["action"] != "replace":
            raise CheckError(f"{scraper.name}: the check cannot simulate relabel action {rule['action']}")
        value = ";".join(meta.get(name, labels.get(name, "")) for name in rule["source_labels"])
        if value:
            labels[rule["target_label"]] = value
    entry = Entry(line=line, labels=labels)
    for kind, options in scraper.stages:
        if entry.dropped:
            break
        if kind == "match":
            if options.get("action") == "drop" and _selector_matches(options["selector"], entry.labels):
                entry.dropped = True
            elif options.get("action", "keep") != "drop":
                raise CheckError(f"{scraper.name}: the check simulates only match stages with action drop")
        elif kind == "json":
            try:
                data = json.loads(entry.line)
            except json.JSONDecodeError:
                data = None
            if not isinstance(data, dict):
                entry.dropped = bool(options.get("drop_malformed"))
                continue
            for name, path in options.get("expressions", {}).items():
                path = path or name
                if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", path):
                    raise CheckError(f"{scraper.name}: the check reads only plain JSON keys, not {path!r}")
                entry.extracted[name] = data.get(path)
        elif kind == "timestamp":
            continue
        elif kind in ("structured_metadata", "labels"):
            target = entry.metadata if kind == "structured_metadata" else entry.labels
            for name, source in options.items():
                value = _go_string(entry.extracted.get(source or name))
                if value is not None:
                    target[name] = value
        elif kind == "static_labels":
            entry.labels.update({name: str(value) for name, value in options.items()})
        elif kind == "labeldrop":
            for name in options:
                entry.labels.pop(name, None)
        else:
            raise CheckError(f"{scraper.name}: the check cannot simulate stage {kind}")
    return entry


def native_push(line: str, app_env: dict[str, str]) -> Entry:
    """What the app's native push sends for one stdout line."""
    data = json.loads(line)
    labels = {"service_name": SERVICE_NAME, "env": app_env.get("NIXTLA_ENV") or DEFAULT_ENV}
    for pair in (app_env.get("LOKI_LABELS") or "").split(","):
        if "=" in pair:
            key, value = pair.split("=", 1)
            labels[key.strip()] = value.strip()
    metadata = {key: _go_string(data[key]) for key in NATIVE_METADATA_KEYS if key in data}
    return Entry(line=line, labels={k: v for k, v in labels.items() if v}, metadata=metadata)


def sample_lines(ctx: Context) -> list[str]:
    """Lines shaped like the app's stdout, built from the activity module's fields."""
    fields = rustsrc.read_activity_module(ctx.src).fields
    base = {"timestamp": TIMESTAMP, "level": "INFO", "target": "nixtla::activity"}
    full = dict(base, message="signed in", event="login", user_id="u-1", user_name="Ada Lovelace",
                email_domain="example.com", provider="oidc", request_id="r-1", route="/auth/callback")
    request = dict(base, message="request", event="http_request", method="GET", path="/nixtla",
                   route="/nixtla", status=200, latency_ms=3.5, request_id="r-2")
    plain = {"timestamp": TIMESTAMP, "level": "WARN", "target": "nixtla::config", "message": "note"}
    lines = []
    for sample in (full, request, plain):
        emitted = {key: value for key, value in sample.items() if key in fields or key in base or key == "message"}
        lines.append(json.dumps(emitted))
    return lines


# ---------------------------------------------------------------------------
# Checks


def _scraper_service(model: dict, base: str) -> tuple[str, dict] | None:
    services = services_by_image(model, base)
    return next(iter(services.items())) if services else None


def _scrapers(ctx: Context, model: dict) -> list[tuple[str, Scraper]]:
    """Return (service name, scraper) for each scraper service in a compose model."""
    found = []
    promtail = _scraper_service(model, "grafana/promtail")
    if promtail:
        found.append((promtail[0], read_promtail(ctx)))
    alloy_service = _scraper_service(model, "grafana/alloy")
    if alloy_service:
        found.append((alloy_service[0], read_alloy(ctx, alloy_service[1].get("environment", {}))))
    return found


def _selects(scraper: Scraper, service: dict) -> bool:
    """Return whether a scraper's docker discovery selects a service's container."""
    labels = {key: str(value) for key, value in service.get("labels", {}).items()}
    for item in scraper.label_filters:
        key, _, value = item.partition("=")
        if key not in labels or (value and labels[key] != value):
            return False
    return True


def check_single_delivery(ctx: Context) -> list[str]:
    """In every profile set, each app instance's lines reach Loki by exactly one path."""
    problems = []
    for profiles in PROFILE_SETS:
        model = ctx.compose_model(profiles)
        scrapers = _scrapers(ctx, model)
        for name, service in app_services(model).items():
            paths = []
            if service.get("environment", {}).get("LOKI_URL"):
                paths.append("native push (LOKI_URL is set)")
            paths += [scraper_name for scraper_name, scraper in scrapers if _selects(scraper, service)]
            if len(paths) != 1:
                problems.append(
                    f"profiles {list(profiles)}: service {name} ships by {len(paths)} paths "
                    f"({', '.join(paths) or 'none'}); each line must reach Loki exactly once"
                )
    return problems


def check_fallback_equivalence(ctx: Context) -> list[str]:
    """Promtail and Alloy produce the native push's labels and structured metadata."""
    problems = []
    model = ctx.compose_model(PROFILE_SETS[-1])
    apps = app_services(ctx.compose_model(()))
    if not apps:
        return ["the default profile has no app service to compare with"]
    app_env = next(iter(apps.values())).get("environment", {})
    scrapers = _scrapers(ctx, model)
    if {scraper.name for _, scraper in scrapers} != {"promtail", "alloy"}:
        problems.append("compose.yaml must define a promtail and an alloy service")
    for service_name, scraper in scrapers:
        service = model["services"][service_name]
        env = service.get("environment", {})
        if scraper.name == "promtail":
            # Promtail runs with -config.expand-env=true.
            scraper.stages = [
                (kind, {k: expand_shell_default(str(v), env) for k, v in options.items()})
                if kind == "static_labels" else (kind, options)
                for kind, options in scraper.stages
            ]
        urls = {f"{scraper.name} push URL": url for url in scraper.push_urls}
        if not urls:
            problems.append(f"{scraper.name}: no Loki push URL")
        problems += check_service_urls(ctx, {k: v.split("/loki/")[0] for k, v in urls.items()}, model)
        for where, url in urls.items():
            if not url.endswith("/loki/api/v1/push"):
                problems.append(f"{where} {url} must end with /loki/api/v1/push")
        for line in sample_lines(ctx):
            expected = native_push(line, app_env)
            got = run_stages(scraper, line, "stdout")
            if got.dropped:
                problems.append(f"{scraper.name} drops the stdout line {line}")
                continue
            if got.labels != expected.labels:
                problems.append(f"{scraper.name}: stream labels {got.labels} differ from native {expected.labels}")
            if got.metadata != expected.metadata:
                problems.append(
                    f"{scraper.name}: structured metadata {got.metadata} differs from native "
                    f"{expected.metadata} for {line}"
                )
        for line, stream in ((sample_lines(ctx)[0], "stderr"), ("plain text, not JSON", "stdout")):
            if not run_stages(scraper, line, stream).dropped:
                problems.append(f"{scraper.name} ships {stream} line {line!r}, which the native push never sends")
    return list(dict.fromkeys(problems))
