#!/usr/bin/env python3
"""Check the Docker Compose and Grafana stack offline.

Runs real tools (Compose's `config`, check-jsonschema, yamllint, the lezer
LogQL and PromQL grammars) and cross-file rules over compose.yaml, the
Dockerfile, grafana/ and docs/stack.md. Then runs negative self-tests: each
breaks a copy of the files and expects the matching check to fail.

Exit status 0 means every check and self-test passed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

try:
    import yaml  # noqa: F401
except ImportError:
    sys.exit(
        f"PyYAML is missing for {sys.executable}; install the stack check tools with: "
        f"{sys.executable} -m pip install -r tests/stack/requirements.txt"
    )

from stackcheck import selftest  # noqa: E402
from stackcheck.common import Context  # noqa: E402
from stackcheck.runner import CHECKS, run_check  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="repository root to check")
    parser.add_argument("--src", type=Path, help="the app's Rust source directory (default: ROOT/src)")
    parser.add_argument("--only", action="append", choices=sorted(CHECKS), help="run only this check")
    parser.add_argument("--no-self-test", action="store_true", help="skip the negative self-tests")
    parser.add_argument("--self-test-only", action="store_true", help="run only the negative self-tests")
    args = parser.parse_args()

    root = args.root.resolve()
    ctx = Context(root=root, src=(args.src or root / "src").resolve())
    passed = failed = 0
    if not args.self_test_only:
        for name in args.only or CHECKS:
            problems = run_check(CHECKS[name], ctx)
            if problems:
                failed += 1
                print(f"FAIL {name}")
                for problem in problems:
                    print("  - " + problem.replace("\n", "\n    "))
            else:
                passed += 1
                print(f"ok   {name}")
    if not args.no_self_test:
        for name, problems in selftest.run_all(root):
            if problems:
                failed += 1
                print(f"FAIL self-test {name}")
                for problem in problems:
                    print("  - " + problem.replace("\n", "\n    "))
            else:
                passed += 1
                print(f"ok   self-test {name}")
    print(f"stack checks: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
