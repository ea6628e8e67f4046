#!/usr/bin/env bash
# Build dmaq-bench, run it and draw the plots, installing what it needs from
# Debian (ZeroMQ, NNG and gnuplot) first.
#
#   bench/run.sh           the full run (several minutes)
#   bench/run.sh --quick   under a minute
#
# Writes bench/RESULTS.md (dmaq-bench's report, then the Python, Rust and
# .NET bindings' per-call cost against C's, then tcp:// from dmaq-tcp-bench),
# and bench/results/
# (results.json, the plots' tables, latency.png and throughput.png).
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/deps.sh
dmaq_install_deps libzmq3-dev libnng-dev gnuplot-nox python3-venv
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target dmaq-bench >/dev/null
out=bench/results
mkdir -p "$out"
status=0
quick=""
[[ " $* " == *" --quick "* ]] && quick=1
build/bench/dmaq-bench "$@" --command "bench/run.sh${*:+ $*}" --md bench/RESULTS.md --json "$out/results.json" \
    --plot-data "$out" || status=$?
# The Python binding's per-call cost against C, from a venv holding the
# package (bindings/python/run-tests.sh builds the same way).
cmake --build build -j"$(nproc)" --target dmaq-call-bench >/dev/null
rm -rf build/bench-venv
python3 -m venv --system-site-packages build/bench-venv
DMAQ_LIBRARY="$PWD/build/libdmaq.so" build/bench-venv/bin/pip install -q --no-build-isolation ./bindings/python
build/bench-venv/bin/python bench/python_bench.py --c-bench build/bench/dmaq-call-bench --md bench/RESULTS.md \
    ${quick:+--messages 50000} || status=$?
# The Rust binding's zero-copy calls against C.
(cd bindings/rust && CARGO_TARGET_DIR="$PWD/../../build/rust" cargo run --offline -q --release --example callbench -- \
    "$PWD/../../build/bench/dmaq-call-bench" ${quick:+500000}) >>bench/RESULTS.md || status=$?
# The .NET binding's calls against C.
(cd bindings/dotnet/Dmaq.Bench && dotnet run -c Release -- "$PWD/../../../build/bench/dmaq-call-bench" ${quick:+5}) \
    >>bench/RESULTS.md || status=$?
# tcp:// against ZeroMQ and a plain socket on loopback, and the relay.
cmake --build build -j"$(nproc)" --target dmaq-tcp-bench >/dev/null
build/bench/dmaq-tcp-bench ${quick:+--quick} --md bench/RESULTS.md >/dev/null || status=$?
gnuplot -e "dir='$out'" bench/plot.gp
printf '\n## Plots\n\n![one-way latency per transport](results/latency.png)\n\n![throughput against message size](results/throughput.png)\n' \
    >>bench/RESULTS.md
echo "wrote bench/RESULTS.md, $out/results.json, $out/latency.png and $out/throughput.png"
exit $status
