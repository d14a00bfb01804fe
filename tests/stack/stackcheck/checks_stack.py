"""Checks of compose.yaml, the Dockerfile and the service configs."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

from . import tools
from .common import (
    APP_PORT,
    PROFILE_SETS,
    Context,
    app_services,
    bind_mounts,
    container_ports,
    services_by_image,
)

IMAGE_PINS = {
    "grafana/loki": r"3\.7\.\d+",
    "grafana/grafana": r"1[23]\.\d+\.\d+",
    "grafana/promtail": r"3\.6\.\d+",
    "grafana/alloy": r"v\d+\.\d+\.\d+",
    "prom/prometheus": r"v\d+\.\d+\.\d+",
}
# Services that only a fallback profile may start.
PROFILE_ONLY_IMAGES = {"grafana/promtail": "promtail", "grafana/alloy": "alloy"}


def yaml_files(ctx: Context) -> list[Path]:
    files = [ctx.path("compose.yaml")]
    files += sorted(p for p in ctx.path("grafana").rglob("*") if p.suffix in (".yaml", ".yml"))
    files += [path for path in [ctx.path("tests/stack/yamllint.yaml")] if path.is_file()]
    return files


def check_compose_config(ctx: Context) -> list[str]:
    """`docker compose config -q` accepts every profile set."""
    problems = []
    for profiles in PROFILE_SETS:
        result = tools.run_compose(ctx, profiles, ["config", "-q"])
        if result.returncode != 0:
            problems.append(f"profiles {list(profiles)}: {result.stderr.strip()}")
    return problems


def check_compose_schema(ctx: Context) -> list[str]:
    """compose.yaml validates against the Compose specification's JSON schema."""
    argv = tools.python_tool("check_jsonschema", "check-jsonschema")
    result = tools.run(argv + ["--builtin-schema", "vendor.compose-spec", str(ctx.path("compose.yaml"))])
    if result.returncode != 0:
        return [(result.stdout + result.stderr).strip()]
    return []


def check_yamllint(ctx: Context) -> list[str]:
    """yamllint passes on every YAML file of the stack."""
    argv = tools.python_tool("yamllint", "yamllint")
    config = tools.STACK_DIR / "yamllint.yaml"
    files = [str(path) for path in yaml_files(ctx)]
    result = tools.run(argv + ["--strict", "-f", "parsable", "-c", str(config)] + files)
    if result.returncode != 0:
        return [(result.stdout + result.stderr).strip()]
    return []


def _image_name_and_tag(image: str) -> tuple[str, str]:
    name, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
    return name, tag


def _seconds(duration: str) -> float:
    total = 0.0
    for amount, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", str(duration)):
        total += float(amount) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


def check_compose_services(ctx: Context) -> list[str]:
    """Pinned images, the Loki healthcheck, Grafana's start order and the app's settings."""
    problems = []
    default = ctx.compose_model(())
    everything = ctx.compose_model(PROFILE_SETS[-1])
    for name, service in everything["services"].items():
        image = service.get("image", "")
        if "build" in service:
            continue
        base, tag = _image_name_and_tag(image)
        if not tag or tag == "latest":
            problems.append(f"service {name}: image {image!r} is not pinned to a version tag")
        pattern = IMAGE_PINS.get(base)
        if pattern and not re.fullmatch(pattern, tag):
            problems.append(f"service {name}: {image} does not match the pinned series {pattern}")
        if base in PROFILE_ONLY_IMAGES and name in default["services"]:
            problems.append(f"service {name} ({base}) runs without its profile {PROFILE_ONLY_IMAGES[base]!r}")
    for base in ("grafana/loki", "grafana/grafana", "prom/prometheus"):
        if not services_by_image(default, base):
            problems.append(f"the default profile has no {base} service")
    for base, profile in PROFILE_ONLY_IMAGES.items():
        if not services_by_image(ctx.compose_model((profile,)), base):
            problems.append(f"profile {profile!r} starts no {base} service")

    for name, service in services_by_image(default, "grafana/loki").items():
        health = service.get("healthcheck", {})
        if health.get("test") != ["CMD", "/usr/bin/loki", "-health"]:
            problems.append(f"service {name}: healthcheck must be [CMD, /usr/bin/loki, -health]")
        if _seconds(health.get("start_period", "0s")) < 20:
            problems.append(f"service {name}: healthcheck start_period must be at least 20 s")
    for name, service in services_by_image(default, "grafana/grafana").items():
        environment = service.get("environment", {})
        if str(environment.get("GF_AUTH_ANONYMOUS_ENABLED")).lower() != "true":
            problems.append(f"service {name}: GF_AUTH_ANONYMOUS_ENABLED must be true")
        if environment.get("GF_AUTH_ANONYMOUS_ORG_ROLE") != "Viewer":
            problems.append(f"service {name}: anonymous users must get the Viewer role")
        for loki_name in services_by_image(default, "grafana/loki"):
            condition = service.get("depends_on", {}).get(loki_name, {}).get("condition")
            if condition != "service_healthy":
                problems.append(f"service {name}: must start after {loki_name} is healthy")

    apps = app_services(default)
    if not apps:
        problems.append("the default profile has no service built from the Dockerfile")
    for name, service in app_services(everything).items():
        environment = service.get("environment", {})
        if environment.get("NIXTLA_LISTEN") != f"0.0.0.0:{APP_PORT}":
            problems.append(f"service {name}: NIXTLA_LISTEN must be 0.0.0.0:{APP_PORT}")
        if APP_PORT not in container_ports(service):
            problems.append(f"service {name}: container port {APP_PORT} is not published")
        dockerfile = Path(service["build"].get("context", ".")) / service["build"].get("dockerfile", "Dockerfile")
        if not dockerfile.is_file():
            problems.append(f"service {name}: build file {dockerfile} does not exist")
    for name, service in apps.items():
        if "7000" not in {str(port.get("published")) for port in service.get("ports", [])}:
            problems.append(f"service {name}: the app must be published on host port 7000")
    known = app_env_vars(ctx)
    for name, service in app_services(everything).items():
        for key in sorted(set(service.get("environment", {})) - known):
            problems.append(f"service {name}: the app reads no environment variable {key}")
    return problems


def app_env_vars(ctx: Context) -> set[str]:
    """Return the environment variables the app reads: every clap `env = "..."` plus RUST_LOG."""
    names = {"RUST_LOG"}
    for path in ctx.src.rglob("*.rs"):
        names.update(re.findall(r'\benv\s*=\s*"([A-Z0-9_]+)"', path.read_text()))
    return names


def _docker_instructions(path: Path) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", path.read_text())
    instructions = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def check_dockerfile(ctx: Context) -> list[str]:
    """A multi-stage build with a non-root runtime and a HEALTHCHECK by the binary."""
    path = ctx.path("Dockerfile")
    if not path.is_file():
        return ["Dockerfile is missing"]
    instructions = _docker_instructions(path)
    stages: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions:
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, rest))
    if len(stages) < 2:
        return ["Dockerfile must have a build stage and a runtime stage"]

    problems = []
    if not any(rest.startswith("rust:1.95") for stage in stages for key, rest in stage if key == "FROM"):
        problems.append("no stage builds FROM rust:1.95")
    runtime = stages[-1]
    if runtime[0][1].startswith("rust:"):
        problems.append("the runtime stage must not be the Rust toolchain image")

    users = [rest for key, rest in runtime if key == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append("the runtime stage must switch to a non-root USER")
    health = [rest for key, rest in runtime if key == "HEALTHCHECK"]
    if not health or not re.search(r"CMD.*nixtla.*healthcheck", health[-1]):
        problems.append("the runtime stage needs HEALTHCHECK ... CMD [nixtla, healthcheck]")
    if not any(key == "EXPOSE" and str(APP_PORT) in rest for key, rest in runtime):
        problems.append(f"the runtime stage must EXPOSE {APP_PORT}")
    if not any(key == "ENV" and f"NIXTLA_LISTEN=0.0.0.0:{APP_PORT}" in rest for key, rest in runtime):
        problems.append(f"the runtime stage must set NIXTLA_LISTEN=0.0.0.0:{APP_PORT}")

    builds = [rest for stage in stages for key, rest in stage if key == "RUN" and "cargo build" in rest]
    if not builds or not all("--locked" in rest for rest in builds):
        problems.append("every cargo build must use --locked, so the image builds Cargo.lock's versions")

    ignore = ctx.path(".dockerignore")
    ignored = ignore.read_text().split() if ignore.is_file() else []
    for entry in ("target", ".git"):
        if not any(line.strip("/") == entry for line in ignored):
            problems.append(f".dockerignore must exclude {entry}/")
    return problems


def check_loki_config(ctx: Context) -> list[str]:
    """Single binary, tsdb schema v13 on the filesystem, structured metadata, retention."""
    config = ctx.yaml("grafana/loki/config.yaml")
    problems = []
    schemas = config.get("schema_config", {}).get("configs", [])
    latest = schemas[-1] if schemas else {}
    if latest.get("store") != "tsdb" or latest.get("schema") != "v13":
        problems.append("the newest schema_config entry must use store tsdb with schema v13")
    if latest.get("object_store") != "filesystem":
        problems.append("the newest schema_config entry must use the filesystem object store")
    limits = config.get("limits_config", {})
    if limits.get("allow_structured_metadata") is not True:
        problems.append("limits_config.allow_structured_metadata must be true")
    if not limits.get("retention_period"):
        problems.append("limits_config.retention_period must be set")
    compactor = config.get("compactor", {})
    if compactor.get("retention_enabled") is not True or not compactor.get("delete_request_store"):
        problems.append("retention needs compactor.retention_enabled and compactor.delete_request_store")
    if config.get("server", {}).get("http_listen_port", 3100) != 3100:
        problems.append("`loki -health` requests port 3100, so http_listen_port must stay 3100")
    if config.get("auth_enabled", True) is not False:
        problems.append("auth_enabled must be false: the app and the scrapers send no tenant")
    return problems


def check_env_example(ctx: Context) -> list[str]:
    """Every variable compose.yaml reads is documented in .env.example."""
    compose_text = ctx.path("compose.yaml").read_text()
    used = set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", compose_text))
    # A key without a value passes the variable through from the shell or .env.
    for service in ctx.compose_model(PROFILE_SETS[-1])["services"].values():
        used |= {name for name, value in (service.get("environment") or {}).items() if value is None}
    example = ctx.path(".env.example")
    if not example.is_file():
        return [".env.example is missing"]
    documented = set(re.findall(r"^#?\s*([A-Z_][A-Z0-9_]*)=", example.read_text(), re.M))
    return [f"compose.yaml reads ${{{name}}}, which .env.example does not document"
            for name in sorted(used - documented)]


def url_host_port(url: str) -> tuple[str, int]:
    parsed = urlparse(url)
    default = 443 if parsed.scheme == "https" else 80
    return parsed.hostname or "", parsed.port or default


def check_service_urls(ctx: Context, urls: dict[str, str], model: dict) -> list[str]:
    """Each URL names a compose service and a port that service's container listens on."""
    problems = []
    services = model["services"]
    for where, url in urls.items():
        host, port = url_host_port(url)
        if host not in services:
            problems.append(f"{where}: {url} names no compose service (have {sorted(services)})")
            continue
        ports = container_ports(services[host]) | _listen_ports(ctx, host, services[host])
        if port not in ports:
            problems.append(f"{where}: {url} uses port {port}, but service {host} listens on {sorted(ports)}")
    return problems


def _listen_ports(ctx: Context, name: str, service: dict) -> set[int]:
    image = service.get("image", "")
    if image.startswith("grafana/loki"):
        return {int(ctx.yaml("grafana/loki/config.yaml").get("server", {}).get("http_listen_port", 3100))}
    if image.startswith("prom/prometheus"):
        return {9090}
    listen = service.get("environment", {}).get("NIXTLA_LISTEN", "")
    return {int(listen.rsplit(":", 1)[1])} if ":" in listen else set()


def check_prometheus_targets(ctx: Context) -> list[str]:
    """Prometheus scrapes /metrics of app services, on the port each one listens on."""
    model = ctx.compose_model(PROFILE_SETS[-1])
    apps = app_services(model)
    config = ctx.yaml("grafana/prometheus/prometheus.yml")
    problems = []
    scraped = set()
    for job in config.get("scrape_configs", []):
        if job.get("metrics_path", "/metrics") != "/metrics":
            problems.append(f"job {job.get('job_name')}: the app serves its metrics at /metrics")
        for static in job.get("static_configs", []):
            for target in static.get("targets", []):
                host, port = url_host_port(f"http://{target}")
                scraped.add(host)
                where = f"prometheus target {target}"
                if host not in apps:
                    problems.append(f"{where} names no app service (have {sorted(apps)})")
                else:
                    problems += check_service_urls(ctx, {where: f"http://{target}"}, model)
    for name in sorted(set(app_services(ctx.compose_model(()))) - scraped):
        problems.append(f"prometheus does not scrape service {name}")
    return problems


def mounted_file(service: dict, target: str) -> Path | None:
    for source, mount_target in bind_mounts(service):
        if mount_target == target:
            return Path(source)
    return None


def check_mounted_configs(ctx: Context) -> list[str]:
    """Each service's config flag names a path where the repository's file is mounted."""
    model = ctx.compose_model(PROFILE_SETS[-1])
    problems = []
    expected = {
        "grafana/loki": ("-config.file=", "grafana/loki/config.yaml"),
        "prom/prometheus": ("--config.file=", "grafana/prometheus/prometheus.yml"),
        "grafana/promtail": ("-config.file=", "grafana/promtail/config.yaml"),
        "grafana/alloy": ("", "grafana/alloy/config.alloy"),
    }
    for base, (flag, repo_file) in expected.items():
        for name, service in services_by_image(model, base).items():
            command = service.get("command", [])
            if flag:
                targets = [arg[len(flag):] for arg in command if arg.startswith(flag)]
            else:
                targets = [arg for arg in command if arg.startswith("/")][-1:]
            if not targets:
                problems.append(f"service {name}: no config file in its command")
                continue
            source = mounted_file(service, targets[0])
            if source is None or source.resolve() != ctx.path(repo_file).resolve():
                problems.append(f"service {name}: {targets[0]} is not a mount of ./{repo_file}")
    return problems
