#!/usr/bin/env bash
# Runs every test of the project. Installs what the tests need first: a Python venv
# for the Loki stand-in and the stack checks, the npm packages for the OpenID
# provider and the browser driver (from the committed lockfiles), and Debian's
# chromium. Extra arguments go to `cargo test`. Last, every fuzz target runs for
# NIXTLA_FUZZ_SECONDS (default 5), see docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
venv="$root/target/test-venv"
stamps="$root/target/test-stamps"
mkdir -p "$stamps"

# Runs "$@" unless the stamp named $1 matches the hash of file $2.
run_once_per_hash() {
    local name=$1 input=$2
    shift 2
    local hash
    hash=$(sha256sum "$input" | cut -d' ' -f1)
    if [[ "$(cat "$stamps/$name" 2>/dev/null)" != "$hash" ]]; then
        "$@"
        echo "$hash" >"$stamps/$name"
    fi
}

echo "==> Python packages"
[[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
while IFS= read -r requirements; do
    run_once_per_hash "pip-${requirements//\//_}" "$requirements" \
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
done < <(find tests -name requirements.txt -not -path '*/node_modules/*' | sort)

echo "==> npm packages"
while IFS= read -r lockfile; do
    dir=$(dirname "$lockfile")
    if [[ ! -d "$dir/node_modules" ]]; then rm -f "$stamps/npm-${dir//\//_}"; fi
    run_once_per_hash "npm-${dir//\//_}" "$lockfile" \
        npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
done < <(find tests -name package-lock.json -not -path '*/node_modules/*' | sort)

echo "==> Chromium"
if ! command -v chromium >/dev/null; then
    sudo_cmd=()
    [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq chromium >/dev/null
fi

export NIXTLA_TEST_PYTHON="$venv/bin/python"
export NIXTLA_TEST_CHROMIUM
NIXTLA_TEST_CHROMIUM=$(command -v chromium)

if [[ -f tests/support/loki_receiver/test_receiver.py ]]; then
    echo "==> Loki stand-in self-test"
    "$NIXTLA_TEST_PYTHON" -m unittest discover -s tests/support/loki_receiver -p 'test_*.py'
fi
if compgen -G 'tests/support/node/*.test.mjs' >/dev/null; then
    echo "==> OpenID provider and browser driver self-test"
    (cd tests/support/node && node --test)
fi

echo "==> cargo test"
cargo test --all-targets "$@"

echo "==> Fuzz targets, ${NIXTLA_FUZZ_SECONDS:=5} s each"
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --version 0.13.2
fi
# The independent decoders the targets compare against have their own unit
# tests. They share this project's target directory to reuse its builds, so
# they run without the RUSTC_BOOTSTRAP=1 that fuzz/run.sh sets, because build
# scripts such as proc-macro2's rerun when it changes, which would rebuild both.
CARGO_TARGET_DIR="$root/target" cargo test --manifest-path fuzz/Cargo.toml --lib
fuzz/run.sh "$NIXTLA_FUZZ_SECONDS"
