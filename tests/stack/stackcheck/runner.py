"""The list of checks and the code that runs them."""

from __future__ import annotations

import traceback
from typing import Callable

from . import checks_fallback as fallback
from . import checks_grafana as grafana
from . import checks_stack as stack
from .common import CheckError, Context

Check = Callable[[Context], list[str]]

CHECKS: dict[str, Check] = {
    "compose-config": stack.check_compose_config,
    "compose-schema": stack.check_compose_schema,
    "yamllint": stack.check_yamllint,
    "compose-services": stack.check_compose_services,
    "mounted-configs": stack.check_mounted_configs,
    "prometheus-targets": stack.check_prometheus_targets,
    "dockerfile": stack.check_dockerfile,
    "loki-config": stack.check_loki_config,
    "env-example": stack.check_env_example,
    "grafana-provisioning": grafana.check_provisioning,
    "dashboard-structure": grafana.check_dashboard_structure,
    "dashboard-queries": grafana.check_dashboard_queries,
    "app-fields": grafana.check_app_fields,
    "single-delivery": fallback.check_single_delivery,
    "fallback-equivalence": fallback.check_fallback_equivalence,
    "docs": grafana.check_docs,
}


def run_check(check: Check, ctx: Context) -> list[str]:
    """Run one check. A CheckError or a crash counts as a failure with its message."""
    try:
        return check(ctx)
    except CheckError as error:
        return [str(error)]
    except Exception:  # noqa: BLE001 - a crash in a check must fail it, not abort the run
        return ["the check crashed:\n" + traceback.format_exc()]
