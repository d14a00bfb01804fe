"""Fault plans for the test receiver's pushes, set through `/control/fault`."""

import threading

FAULT_MODES = ("none", "status", "hang", "slow", "refuse", "partial")


class Fault:
    """The fault plan for the next pushes. Every method is thread-safe."""

    def __init__(self):
        self._lock = threading.Lock()
        self._plan = {"mode": "none"}
        self._remaining = None
        self._release = threading.Event()

    def configure(self, plan):
        with self._lock:
            self._release.set()
            self._release = threading.Event()
            self._plan = plan
            self._remaining = plan.get("count")

    def take(self):
        """Return the fault for one push, with the event that ends a hang."""
        with self._lock:
            plan, release = self._plan, self._release
            if plan["mode"] != "none" and self._remaining is not None:
                self._remaining -= 1
                if self._remaining <= 0:
                    self._plan = {"mode": "none"}
                    self._remaining = None
            return plan, release


def parse_fault_plan(document):
    """Validate a `/control/fault` body and return the plan, or raise ValueError."""
    if not isinstance(document, dict):
        raise ValueError("the fault must be a JSON object")
    mode = document.get("mode")
    if mode not in FAULT_MODES:
        raise ValueError(f"invalid mode {mode!r}: expected one of {', '.join(FAULT_MODES)}")
    plan = {"mode": mode}
    count = document.get("count")
    if count is not None:
        plan["count"] = _positive_int(count, "count")
    if mode == "status":
        status = document.get("status")
        if not isinstance(status, int) or not 200 <= status <= 599:
            raise ValueError("mode 'status' needs an integer 'status' from 200 to 599")
        plan["status"] = status
    if mode == "slow":
        plan["delay_ms"] = _positive_int(document.get("delay_ms"), "delay_ms")
    if mode == "partial":
        plan["reject_every"] = _positive_int(document.get("reject_every", 2), "reject_every")
    return plan


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name!r} must be a positive integer, got {value!r}")
    return value


def partial_rejecter(plan):
    """Return the entry filter of a `partial` fault plan, or None for other modes."""
    if plan["mode"] != "partial":
        return None
    every = plan["reject_every"]

    def reject(position):
        if (position + 1) % every == 0:
            return f"entry {position} rejected by the partial fault"
        return None

    return reject
