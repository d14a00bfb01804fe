#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 5) and prints one summary
# line per target. Exits non-zero on the first target that finds a failure;
# libFuzzer then leaves the failing input under fuzz/artifacts/TARGET/.
#
# Usage: fuzz/run.sh [SECONDS] [TARGET...]
# The corpus grows in fuzz/corpus/TARGET (not committed); the committed seeds
# in fuzz/seeds/TARGET and the dictionary fuzz/dicts/TARGET.dict are read when
# they exist.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
shift || true
# cargo-fuzz passes -Z flags to rustc, which a stable toolchain accepts only
# with RUSTC_BOOTSTRAP=1.
export RUSTC_BOOTSTRAP=1

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build

mkdir -p target/fuzz-logs
for target in "${targets[@]}"; do
    corpus=(fuzz/corpus/"$target")
    mkdir -p "${corpus[0]}"
    [[ -d fuzz/seeds/$target ]] && corpus+=(fuzz/seeds/"$target")
    options=(-max_total_time="$seconds" -print_final_stats=1)
    [[ -f fuzz/dicts/$target.dict ]] && options+=(-dict="fuzz/dicts/$target.dict")
    log=target/fuzz-logs/$target.log
    if ! cargo fuzz run "$target" "${corpus[@]}" -- "${options[@]}" >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz target $target failed; full output in $log" >&2
        exit 1
    fi
    # libFuzzer's last status line, e.g. "#7025 DONE cov: 718 ft: 2296 corp: 548/104Kb ...".
    final=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1)
    runs=$(sed -E 's/^#([0-9]+).*/\1/' <<<"$final")
    stats=$(sed -E 's/^#[0-9]+[[:space:]]+DONE[[:space:]]+//' <<<"$final")
    echo "$target: $runs runs in $seconds s, $stats"
done
