#!/usr/bin/env bash
# Build the libFuzzer targets with clang (ASan + UBSan) and run each for
# DMAQ_FUZZ_SECONDS (default 10) from the corpus in tests/fuzz/corpus/TARGET.
# The run works on a copy, so the repository's corpus only changes when you
# say so:  tests/fuzz/run.sh --update-corpus  (merges what was found).
# Exits non-zero on the first crash, leak, hang (10 s) or sanitizer report,
# leaving the input that caused it in build-fuzz/.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${DMAQ_FUZZ_SECONDS:-10}
update=${1:-}
clang=$(command -v clang-14 || command -v clang)
out=build-fuzz
mkdir -p "$out"
core=(core/util/*.c core/transport/*.c core/shm/*.c) # every source of libdmaq, as CMakeLists.txt lists them
for target in open ring frame; do
  srcs=("${core[@]}")
  [ "$target" = frame ] && srcs=(core/tcp/frame.c) # the tcp:// frame parser alone
  "$clang" -g -O1 -std=gnu11 -mcx16 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -D_GNU_SOURCE -DDMAQ_BUILDING -DCREATE_WAIT_NS=0 -Icore/include \
    "${srcs[@]}" "tests/fuzz/fuzz_$target.c" -o "$out/fuzz_$target" -lpthread
  work="$out/corpus-$target"
  rm -rf "$work" && mkdir -p "$work" && cp -r "tests/fuzz/corpus/$target/." "$work/" 2>/dev/null || true
  echo "== fuzz_$target for ${seconds}s ($(ls "$work" | wc -l) corpus inputs)"
  (cd "$out" && ASAN_OPTIONS=detect_leaks=1 ./"fuzz_$target" -max_total_time="$seconds" -timeout=10 \
      -max_len=32768 -print_final_stats=1 "corpus-$target" 2>&1 | tail -n 12)
  if [ "$update" = --update-corpus ]; then
    mkdir -p "tests/fuzz/corpus/$target.new"
    "$out/fuzz_$target" -merge=1 "tests/fuzz/corpus/$target.new" "$work" >/dev/null 2>&1
    rm -rf "tests/fuzz/corpus/$target" && mv "tests/fuzz/corpus/$target.new" "tests/fuzz/corpus/$target"
  fi
done
