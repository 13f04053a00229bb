#!/usr/bin/env bash
# Builds the libFuzzer targets in Fuzz/ and runs each for SECONDS (default 60), one after
# another (the machine is shared: one fuzzing process at a time), then prints executions and
# crashes per target. Usage: scripts/fuzz.sh [SECONDS] [TARGET...]  (targets: PNG JPEG EXIF Mask IDX
# COCO Tags HDF5; default all). Inputs that crash, time out (10 s) or exceed 2 GB of memory
# are kept in Fuzz/.build/artifacts/TARGET/; the growing corpus in Fuzz/.build/corpus/TARGET
# starts from the committed seeds in Fuzz/Corpus/TARGET. Exits 1 when any target crashed.
#
# Coverage guidance sees only Swift code (Percept's readers): libpng, libhdf5 and zlib are the
# system's uninstrumented builds, so the fuzzer mutates blindly inside them.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(PNG JPEG EXIF Mask IDX COCO Tags HDF5)

# swift build reports compile errors on stdout: keep it, and show it when the build fails.
mkdir -p Fuzz/.build
swift build --package-path Fuzz -c release --sanitize=fuzzer -Xswiftc -enable-testing >Fuzz/.build/build.log 2>&1 \
    || { cat Fuzz/.build/build.log; echo "fuzz.sh: the fuzz targets did not build" >&2; exit 1; }
bin="$(swift build --package-path Fuzz -c release --show-bin-path)"
state=Fuzz/.build
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

printf '%-6s %12s %10s %8s %8s %6s  %s\n' target executions "exec/s" crashes timeouts ooms artifacts
status=0
for target in "${targets[@]}"; do
    corpus="$state/corpus/$target" artifacts="$state/artifacts/$target" log="$state/logs/$target.log"
    mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
    cp -n Fuzz/Corpus/"$target"/* "$corpus"/
    marker="$scratch/start-$target"
    touch "$marker"
    # Fork mode keeps fuzzing after a crash, so that one run counts every failure it finds.
    TMPDIR="$scratch" "$bin/Fuzz$target" "$corpus" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 -artifact_prefix="$artifacts/" >"$log" 2>&1 || true
    executions=$(grep -E '^#[0-9]+: cov:' "$log" | tail -1 | sed -E 's/^#([0-9]+):.*exec\/s: ([0-9]+).*/\1 \2/')
    # Failures are counted from the inputs libFuzzer kept during this run.
    count() { find "$artifacts" -name "$1-*" -newer "$marker" | wc -l; }
    crashes=$(count crash) timeouts=$(count timeout) ooms=$(count oom)
    printf '%-6s %12s %10s %8s %8s %6s  %s\n' "$target" ${executions:-? ?} "$crashes" "$timeouts" "$ooms" "$artifacts"
    if [ $((crashes + timeouts + ooms)) -gt 0 ]; then status=1; fi
done
exit $status
