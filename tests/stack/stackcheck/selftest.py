"""Negative self-tests: break a copy of the stack files and expect a failure.

Each mutation applies to a fresh copy of the repository's stack files, with
the stand-in app source from tests/stack/fixtures/src. The targeted check must
pass on the unbroken copy and fail on the broken one with the expected text,
which shows that the check can fail for that reason.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .common import STACK_DIR, Context
from .runner import CHECKS, run_check

STACK_FILES = ["compose.yaml", "Dockerfile", ".dockerignore", ".env.example", "grafana", "docs/stack.md"]
FIXTURE_SRC = STACK_DIR / "fixtures" / "src"
ACTIVITY = "grafana/dashboards/user-activity.json"
HEALTH = "grafana/dashboards/log-shipping-health.json"
S = '{service_name="nixtla", env=~"$env"}'


class MutationDidNotApply(Exception):
    """The text a mutation replaces is gone: the self-test needs updating."""


@dataclass
class Mutation:
    name: str
    check: str
    expect: str
    apply: Callable[[Path], None]


def replace(relative: str, old: str, new: str) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        path = root / relative
        text = path.read_text()
        if old not in text:
            raise MutationDidNotApply(f"{relative} no longer contains {old!r}")
        path.write_text(text.replace(old, new, 1))

    return apply


def edit_json(relative: str, change: Callable[[dict], None]) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        path = root / relative
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data, indent=2))

    return apply


def panel(data: dict, panel_id: int) -> dict:
    for item in data["panels"]:
        if item["id"] == panel_id:
            return item
    raise MutationDidNotApply(f"no panel with id {panel_id}")


def set_expr(relative: str, panel_id: int, expr: str, **target_fields) -> Callable[[Path], None]:
    def change(data: dict) -> None:
        target = panel(data, panel_id)["targets"][0]
        target["expr"] = expr
        target.update(target_fields)

    return edit_json(relative, change)


def set_field(relative: str, panel_id: int, key: str, value) -> Callable[[Path], None]:
    return edit_json(relative, lambda data: panel(data, panel_id).__setitem__(key, value))


MUTATIONS = [
    # Compose, through the real tools.
    Mutation("compose rejects unknown key", "compose-config", "bogus_key",
             replace("compose.yaml", "\n  loki:\n    image:", "\n  loki:\n    bogus_key: 1\n    image:")),
    Mutation("schema rejects unknown key", "compose-schema", "bogus_key",
             replace("compose.yaml", "\n  loki:\n    image:", "\n  loki:\n    bogus_key: 1\n    image:")),
    Mutation("yamllint finds duplicate key", "yamllint", "duplicat",
             replace("grafana/loki/config.yaml", "auth_enabled: false\n", "auth_enabled: false\nauth_enabled: false\n")),
    Mutation("yamllint finds trailing spaces", "yamllint", "trailing",
             replace("grafana/promtail/config.yaml", "job_name: nixtla", "job_name: nixtla   ")),
    # Compose semantics.
    Mutation("unpinned Loki image", "compose-services", "not pinned",
             replace("compose.yaml", "grafana/loki:3.7.8", "grafana/loki:latest")),
    Mutation("Loki 3.6 lacks -health", "compose-services", "pinned series",
             replace("compose.yaml", "grafana/loki:3.7.8", "grafana/loki:3.6.4")),
    Mutation("short Loki start period", "compose-services", "start_period",
             replace("compose.yaml", "start_period: 30s", "start_period: 5s")),
    Mutation("Promtail without profile", "compose-services", "without its profile",
             replace("compose.yaml", "    image: grafana/promtail:3.6.11\n    profiles: [promtail]\n",
                     "    image: grafana/promtail:3.6.11\n")),
    Mutation("anonymous access off", "compose-services", "ANONYMOUS_ENABLED",
             replace("compose.yaml", 'GF_AUTH_ANONYMOUS_ENABLED: "true"', 'GF_AUTH_ANONYMOUS_ENABLED: "false"')),
    Mutation("Grafana starts before Loki is healthy", "compose-services", "healthy",
             replace("compose.yaml", "    depends_on:\n      loki:\n        condition: service_healthy\n      prometheus:",
                     "    depends_on:\n      loki:\n        condition: service_started\n      prometheus:")),
    Mutation("app variable the binary ignores", "compose-services", "reads no environment variable",
             replace("compose.yaml", "  LOG_FORMAT: json\n", "  NIXTLA_LOG_FORMAT: json\n")),
    Mutation("config flag misses mount", "mounted-configs", "not a mount",
             replace("compose.yaml", "-config.file=/etc/promtail/config.yaml", "-config.file=/etc/promtail/other.yaml")),
    Mutation("Prometheus scrapes a missing service", "prometheus-targets", "names no app service",
             replace("grafana/prometheus/prometheus.yml", '"app:7000"', '"nixtla:7000"')),
    Mutation("Prometheus scrapes the wrong port", "prometheus-targets", "uses port",
             replace("grafana/prometheus/prometheus.yml", '"app:7000"', '"app:8080"')),
    Mutation("home dashboard missing", "grafana-provisioning", "home dashboard",
             replace("compose.yaml", "/etc/grafana/dashboards/user-activity.json", "/etc/grafana/dashboards/home.json")),
    Mutation("Dockerfile runs as root", "dockerfile", "non-root",
             replace("Dockerfile", "USER 10001:10001\n", "")),
    Mutation("Dockerfile lacks healthcheck", "dockerfile", "HEALTHCHECK",
             replace("Dockerfile", 'CMD ["nixtla", "healthcheck"]', 'CMD ["true"]')),
    Mutation("Loki schema v12", "loki-config", "v13", replace("grafana/loki/config.yaml", "schema: v13", "schema: v12")),
    Mutation("Loki without structured metadata", "loki-config", "allow_structured_metadata",
             replace("grafana/loki/config.yaml", "allow_structured_metadata: true", "allow_structured_metadata: false")),
    Mutation("undocumented variable", "env-example", "OAUTH_CLIENT_ID",
             replace(".env.example", "# OAUTH_CLIENT_ID=\n", "")),
    # Grafana provisioning and dashboard structure.
    Mutation("data source uid changed", "dashboard-structure", "not provisioned",
             replace("grafana/provisioning/datasources/datasources.yaml", "uid: nixtla-loki", "uid: nixtla-logs")),
    Mutation("provider path differs from mount", "grafana-provisioning", "is mounted at",
             replace("grafana/provisioning/dashboards/dashboards.yaml", "path: /etc/grafana/dashboards",
                     "path: /var/lib/grafana/dashboards")),
    Mutation("data source URL names no service", "grafana-provisioning", "names no compose service",
             replace("grafana/provisioning/datasources/datasources.yaml", "url: http://loki:3100",
                     "url: http://loki-server:3100")),
    Mutation("data source URL wrong port", "grafana-provisioning", "uses port",
             replace("grafana/provisioning/datasources/datasources.yaml", "url: http://loki:3100",
                     "url: http://loki:3000")),
    Mutation("dashboard uid over 40 characters", "dashboard-structure", "1-40 characters",
             edit_json(ACTIVITY, lambda data: data.__setitem__("uid", "x" * 41))),
    Mutation("duplicate dashboard uid", "dashboard-structure", "also used by",
             edit_json(HEALTH, lambda data: data.__setitem__("uid", "nixtla-user-activity"))),
    Mutation("duplicate panel id", "dashboard-structure", "used twice", set_field(ACTIVITY, 2, "id", 1)),
    Mutation("panel wider than the grid", "dashboard-structure", "24-column",
             set_field(ACTIVITY, 3, "gridPos", {"x": 18, "y": 0, "w": 12, "h": 8})),
    Mutation("undefined variable", "dashboard-structure", "not defined",
             set_expr(ACTIVITY, 2, S.replace("$env", "$environment") + ' | event="login"')),
    Mutation("datasource input", "dashboard-structure", "DS_",
             set_field(ACTIVITY, 2, "datasource", {"type": "loki", "uid": "${DS_LOKI}"})),
    # LogQL and PromQL.
    Mutation("LogQL syntax error", "dashboard-queries", "syntax error",
             set_expr(ACTIVITY, 2, f'sum(count_over_time({S} | event="login" [$__auto])')),
    Mutation("grouping inside count_over_time", "dashboard-queries", "by (...) is invalid",
             set_expr(ACTIVITY, 4, f'count_over_time({S} | event="page_view" [$__auto]) by (route)')),
    Mutation("sum_over_time without unwrap", "dashboard-queries", "needs `| unwrap",
             set_expr(ACTIVITY, 4, f'sum(sum_over_time({S} | event="page_view" [$__auto]))')),
    Mutation("count_over_time with unwrap", "dashboard-queries", "takes no unwrap",
             set_expr(ACTIVITY, 6, f'sum(count_over_time({S} | json latency_ms="latency_ms" | unwrap latency_ms [$__auto]))')),
    Mutation("selector matches empty", "dashboard-queries", "can match an empty value",
             set_expr(ACTIVITY, 8, '{service_name=~".*"} | event!=""')),
    Mutation("All value matches empty", "dashboard-queries", "can match an empty value",
             edit_json(ACTIVITY, lambda data: data["templating"]["list"][0].__setitem__("allValue", ".*"))),
    Mutation("log query marked instant", "dashboard-queries", "marked instant",
             set_expr(ACTIVITY, 8, f'{S} | event!=""', queryType="instant")),
    Mutation("log query in a time series", "dashboard-queries", "use a logs panel",
             set_expr(ACTIVITY, 2, f'{S} | event="login"')),
    Mutation("unknown stream label", "dashboard-queries", "stream selector uses label",
             set_expr(ACTIVITY, 4, 'sum by (route) (count_over_time({app="nixtla"} | event="page_view" [$__auto]))')),
    Mutation("JSON field filtered before parser", "dashboard-queries", "before any parser",
             set_expr(ACTIVITY, 5, f'sum by (reason) (count_over_time({S} | reason="x" | json reason="reason" [$__auto]))')),
    Mutation("unknown JSON field", "dashboard-queries", "never emits",
             set_expr(ACTIVITY, 5, f'sum by (reason) (count_over_time({S} | json reason="why" [$__auto]))')),
    Mutation("unknown event name", "dashboard-queries", "never emits",
             set_expr(ACTIVITY, 2, f'sum(count_over_time({S} | event="sign_in" [$__auto]))')),
    Mutation("metadata filter after parser", "dashboard-queries", "after a parser",
             set_expr(ACTIVITY, 4, f'sum by (route) (count_over_time({S} | json | event="page_view" [$__auto]))')),
    Mutation("grouping by a missing label", "dashboard-queries", "never has as a label",
             set_expr(ACTIVITY, 4, f'sum by (page) (count_over_time({S} | event="page_view" [$__auto]))')),
    Mutation("unknown metric", "dashboard-queries", "not exported",
             set_expr(HEALTH, 1, "min(nixtla_loki_alive)")),
    Mutation("PromQL syntax error", "dashboard-queries", "syntax error",
             set_expr(HEALTH, 3, "sum(rate(nixtla_loki_retries_total[$__rate_interval])")),
    # Names the app emits, read from the (stand-in) source.
    Mutation("activity module lacks a field", "app-fields", "'reason'",
             replace("src/activity.rs", "event = \"login_failed\", reason,", "event = \"login_failed\",")),
    Mutation("native code lacks a metadata key", "app-fields", "native Loki code",
             replace("src/loki/mod.rs", '"request_id", ', "")),
    # The fallbacks.
    Mutation("Promtail lacks a metadata key", "fallback-equivalence", "differs from native",
             replace("grafana/promtail/config.yaml", "          request_id:\n", "")),
    Mutation("Alloy sets another env label", "fallback-equivalence", "stream labels",
             replace("grafana/alloy/config.alloy", 'coalesce(sys.env("NIXTLA_ENV"), "dev")', '"production"')),
    Mutation("Alloy adds a label", "fallback-equivalence", "stream labels",
             replace("grafana/alloy/config.alloy", 'service_name = "nixtla",', 'service_name = "nixtla",\n      job = "x",')),
    Mutation("Alloy refers to a missing component", "fallback-equivalence", "undefined component",
             replace("grafana/alloy/config.alloy", "[loki.write.local.receiver]", "[loki.write.remote.receiver]")),
    Mutation("Promtail ships stderr", "fallback-equivalence", "ships stderr",
             replace("grafana/promtail/config.yaml",
                     "      - match:\n          selector: '{log_stream=\"stderr\"}'\n          action: drop\n"
                     "          drop_counter_reason: stderr\n", "")),
    Mutation("Promtail pushes to another host", "fallback-equivalence", "names no compose service",
             replace("grafana/promtail/config.yaml", "http://loki:3100/", "http://logs:3100/")),
    Mutation("scraped instance also pushes", "single-delivery", "2 paths",
             replace("compose.yaml", "      NIXTLA_PUBLIC_URL: http://localhost:7001\n",
                     "      NIXTLA_PUBLIC_URL: http://localhost:7001\n      LOKI_URL: http://loki:3100\n")),
    Mutation("scraper without filter", "single-delivery", "2 paths",
             replace("grafana/alloy/config.alloy",
                     '  filter {\n    name   = "label"\n    values = ["io.nixtla.log-scraper=alloy"]\n  }\n', "")),
    Mutation("native push turned off", "single-delivery", "0 paths",
             replace("compose.yaml", "      LOKI_URL: http://loki:3100\n", "")),
    Mutation("docs miss a panel", "docs", "Top users",
             replace("docs/stack.md", "| Top users |", "| Most active |")),
]


def make_copy(repo_root: Path, destination: Path) -> Path:
    for relative in STACK_FILES:
        source = repo_root / relative
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        elif source.exists():
            shutil.copy2(source, target)
    shutil.copytree(FIXTURE_SRC, destination / "src")
    return destination


def run_all(repo_root: Path) -> list[tuple[str, list[str]]]:
    """Run every mutation and return (name, problems) pairs. No problems means it passed."""
    results = []
    with tempfile.TemporaryDirectory(prefix="stack-selftest-") as temp:
        baseline_root = make_copy(repo_root, Path(temp) / "baseline")
        baseline_ctx = Context(root=baseline_root, src=baseline_root / "src")
        baselines: dict[str, list[str]] = {}
        for index, mutation in enumerate(MUTATIONS):
            if mutation.check not in baselines:
                baselines[mutation.check] = run_check(CHECKS[mutation.check], baseline_ctx)
            if baselines[mutation.check]:
                results.append((mutation.name, [
                    f"check {mutation.check} already fails on the unbroken copy, so this "
                    "self-test proves nothing:", *baselines[mutation.check]]))
                continue
            root = make_copy(repo_root, Path(temp) / f"mutation{index}")
            try:
                mutation.apply(root)
            except MutationDidNotApply as error:
                results.append((mutation.name, [f"the mutation did not apply: {error}"]))
                continue
            problems = run_check(CHECKS[mutation.check], Context(root=root, src=root / "src"))
            if not problems:
                results.append((mutation.name, [f"check {mutation.check} passed on the broken copy"]))
            elif not any(mutation.expect in problem for problem in problems):
                results.append((mutation.name, [
                    f"check {mutation.check} failed, but not with {mutation.expect!r}:", *problems]))
            else:
                results.append((mutation.name, []))
    return results
