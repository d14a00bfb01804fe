"""Shared state of one checker run and small helpers."""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

STACK_DIR = Path(__file__).resolve().parent.parent

# Profile sets that `docker compose config` is run for. The last one checks
# that the two fallbacks never ship the same line when both are active.
PROFILE_SETS: list[tuple[str, ...]] = [(), ("promtail",), ("alloy",), ("promtail", "alloy")]

# Structured metadata keys of the native Loki push, each attached only when the
# log event has the field.
NATIVE_METADATA_KEYS = ["user_id", "user_name", "request_id", "route", "level", "event"]

# Keys every JSON log line carries, written by the log formatter.
BASE_LINE_FIELDS = ["timestamp", "level", "target", "message"]

SERVICE_NAME = "nixtla"
DEFAULT_ENV = "dev"
APP_PORT = 7000


class CheckError(Exception):
    """A check could not run, for example because a tool is missing."""


@dataclass
class Context:
    """Paths and cached tool output for one run against one repository root."""

    root: Path
    src: Path
    _cache: dict[str, Any] = field(default_factory=dict)

    def path(self, relative: str) -> Path:
        return self.root / relative

    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def yaml(self, relative: str) -> Any:
        return self.cached(f"yaml:{relative}", lambda: load_yaml(self.path(relative)))

    def dashboards(self) -> dict[str, dict]:
        def load() -> dict[str, dict]:
            result = {}
            for path in sorted(self.path("grafana/dashboards").glob("*.json")):
                try:
                    result[path.name] = json.loads(path.read_text())
                except json.JSONDecodeError as error:
                    raise CheckError(f"grafana/dashboards/{path.name}: invalid JSON: {error}")
            if not result:
                raise CheckError("grafana/dashboards/ contains no *.json dashboard")
            return result

        return self.cached("dashboards", load)

    def compose_model(self, profiles: tuple[str, ...] = ()) -> dict:
        """Return the resolved compose model (`docker compose config --format json`)."""
        from . import tools

        def load() -> dict:
            result = tools.run_compose(self, profiles, ["config", "--format", "json"])
            if result.returncode != 0:
                raise CheckError(
                    f"docker compose config failed for profiles {list(profiles)}: "
                    f"{result.stderr.strip()}"
                )
            return json.loads(result.stdout)

        return self.cached(f"compose:{','.join(profiles)}", load)


def load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise CheckError(f"{path}: file not found")
    except yaml.YAMLError as error:
        raise CheckError(f"{path}: invalid YAML: {error}")


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
    """Run a command and capture its output as text."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, **kwargs)
    except FileNotFoundError:
        raise CheckError(f"command not found: {argv[0]}")
    except subprocess.TimeoutExpired:
        raise CheckError(f"command timed out after 120 s: {' '.join(argv)}")


def clean_env(**extra: str) -> dict[str, str]:
    """Return a minimal environment, so the host's variables cannot leak into compose."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    env.update(extra)
    return env


def expand_shell_default(value: str, env: dict[str, str]) -> str:
    """Expand `${VAR}`, `${VAR:-default}` and `${VAR-default}` as a POSIX shell does."""

    def replace(match: re.Match) -> str:
        name, op, default = match.group(1), match.group(2), match.group(3) or ""
        current = env.get(name)
        if op == ":-":
            return current if current else default
        if op == "-":
            return current if current is not None else default
        return current or ""

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}", replace, value)


def services_by_image(model: dict, prefix: str) -> dict[str, dict]:
    return {
        name: service
        for name, service in model.get("services", {}).items()
        if str(service.get("image", "")).startswith(prefix)
    }


def app_services(model: dict) -> dict[str, dict]:
    """Return the services built from this repository's Dockerfile."""
    return {name: service for name, service in model.get("services", {}).items() if "build" in service}


def bind_mounts(service: dict) -> list[tuple[str, str]]:
    """Return (source, target) of each bind mount, with absolute source paths."""
    mounts = []
    for volume in service.get("volumes", []):
        if volume.get("type") == "bind":
            mounts.append((volume["source"], volume["target"]))
    return mounts


def container_ports(service: dict) -> set[int]:
    ports = {int(port["target"]) for port in service.get("ports", [])}
    ports |= {int(port) for port in service.get("expose", [])}
    return ports
