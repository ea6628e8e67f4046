#!/usr/bin/env bash
# The whole test suite: builds dmaq twice (plain, and with ASan+UBSan) and
# runs every test in both, then the single-process tests under valgrind.
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/deps.sh
dmaq_install_deps
jobs=$(nproc)
rm -f /dev/shm/dmaq.test-* 2>/dev/null || true

echo "== plain build"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs" >/dev/null
(cd build && ctest --output-on-failure)

echo "== ASan + UBSan build"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DDMAQ_SANITIZE=address -DDMAQ_BUILD_BENCH=OFF >/dev/null
cmake --build build-asan -j"$jobs" >/dev/null
# A quarter of the stress messages: ASan makes each several times dearer.
(cd build-asan && DMAQ_TEST_MESSAGES=250000 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure)

echo "== valgrind (memcheck) on the single-process tests"
# (the 100,000-message wrap-around tests are left to the two builds above)
valgrind -q --error-exitcode=99 --trace-children=yes build/tests/test_errors --jobs 1
valgrind -q --error-exitcode=99 --trace-children=yes build/tests/test_ring --jobs 1 --filter 'ring/*'
valgrind -q --error-exitcode=99 --trace-children=yes build/tests/test_wait --jobs 1
echo "all test runs passed"
