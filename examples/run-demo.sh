#!/usr/bin/env bash
# Build dmaq and run the demo: one publisher and two subscribers, each its
# own process, on a broadcast channel in shared memory.
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/deps.sh
dmaq_install_deps
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target dmaq-example-publisher dmaq-example-subscriber >/dev/null
uri="shm://demo-$$"
build/examples/dmaq-example-subscriber "$uri" alice &
a=$!
build/examples/dmaq-example-subscriber "$uri" bob &
b=$!
build/examples/dmaq-example-publisher "$uri" 10 2
wait "$a" "$b"
