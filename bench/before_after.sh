#!/usr/bin/env bash
# The shm hot path before and after a change: builds libdmaq at revision
# BEFORE (in a temporary worktree) and at the working tree, and runs this
# tree's dmaq-call-bench against each library in turn (LD_LIBRARY_PATH
# overrides the bench's RUNPATH), ROUNDS times (default 10). The bench code
# is the same on both sides, so only the library differs, and figures the
# older bench did not print yet are measured too: the ABI is stable, and an
# older library accepts the newer, larger options struct. Prints a Markdown
# table of the medians and of the median ratio of each pair.
#
#   bench/before_after.sh BEFORE [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
before=${1:?usage: bench/before_after.sh BEFORE-REVISION [ROUNDS]}
rounds=${2:-10}
work=$(mktemp -d)
trap 'git worktree remove --force "$work/src" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git worktree add -f -q "$work/src" "$before"
cmake -S "$work/src" -B "$work/b" -DCMAKE_BUILD_TYPE=Release -DDMAQ_BUILD_TESTS=OFF >/dev/null
cmake --build "$work/b" --target dmaq -j"$(nproc)" >/dev/null
cmake -S . -B build-rel -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-rel --target dmaq dmaq-call-bench -j"$(nproc)" >/dev/null
bin=build-rel/bench/dmaq-call-bench
for side in "$work/b" build-rel; do # each side must really load its own library
  loaded=$(LD_LIBRARY_PATH=$side ldd "$bin" | awk '/libdmaq\.so/ {print $3}')
  [ "$(realpath "$loaded")" = "$(realpath "$side"/libdmaq.so.0)" ] || { echo "loads $loaded, not $side's" >&2; exit 1; }
done
log="$work/log"
for ((r = 1; r <= rounds; r++)); do
  for side in before after; do
    lib=$([ $side = before ] && echo "$work/b" || echo build-rel)
    { LD_LIBRARY_PATH=$lib "$bin" 2000000; LD_LIBRARY_PATH=$lib "$bin" --stream 5000000; } | sed "s/^/$r $side /" >>"$log"
  done
done
python3 - "$log" "$before" "$(git rev-parse --short HEAD)" "$rounds" <<'PY'
import collections, statistics, sys
runs = collections.defaultdict(dict)
for line in open(sys.argv[1]):
    r, side, *name, value = line.split()
    runs[" ".join(name)].setdefault(side, {})[r] = float(value)
print(f"| 64 B, msg/s (millions) | before ({sys.argv[2]}) | after ({sys.argv[3]}+working tree) | after/before, median of {sys.argv[4]} paired rounds | middle half of the ratios |")
print("|---|---:|---:|---:|---:|")
for name, sides in runs.items():
    b, a = sides["before"], sides["after"]
    ratios = [a[r] / b[r] for r in b]
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    print(f"| {name} | {statistics.median(b.values()) / 1e6:.1f} | {statistics.median(a.values()) / 1e6:.1f} "
          f"| {statistics.median(ratios):.2f}x | {q1:.2f}-{q3:.2f}x |")
PY
