#!/usr/bin/env bash
# rdma:// against the verbs stack and UCX on Soft-RoCE, in one boot of the
# VM of shared/tools/rdma-vm (this kernel has no RDMA): perftest's
# ib_write_lat/ib_write_bw, ucx_perftest over rc_verbs, and dmaq's rdma://
# latency and streams for 64 B, 4 KiB and 64 KiB; prints the ratios as a
# Markdown section (appended to FILE with --md FILE).
#   bench/rdma-vm-bench.sh [--md FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/deps.sh
dmaq_install_deps libzmq3-dev ucx-utils perftest
md=""
[ "${1:-}" = "--md" ] && md=$2
cmake -S . -B build-rel -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-rel -j"$(nproc)" --target dmaq-tcp-bench dmaq-rdma >/dev/null
vm=$(dmaq_rdma_vm) || { echo "rdma-vm-bench: no run-in-rdma-vm.sh (set DMAQ_RDMA_VM)" >&2; exit 1; }
out=$PWD/build-rel/rdma-bench.txt
"$vm" --share "$PWD" --timeout 1200 -- "$PWD/bench/rdma-guest-bench.sh" "$PWD/build-rel" "$out" >&2
when=$(date -u '+%Y-%m-%d %H:%M UTC')
rev=$(git rev-parse --short HEAD 2>/dev/null || echo "?")
python3 - "$out" "$when" "$rev" <<'PY' | tee -a "${md:-/dev/null}"
import sys
v = {}
for line in open(sys.argv[1]):
    k, _, x = line.strip().partition(" ")
    try:
        v[k] = float(x)
    except ValueError:
        pass
def g(k):
    return v.get(k, float("nan"))
mib = 1 << 20
lat_floor = g("ib_write_lat_64_typical_us")
lat_ucx = g("ucx_am_lat_64_typical_us")
lat_dmaq = g("dmaq_latency_ns") / 1e3
lat_busy = g("dmaq_latency_busy_ns") / 1e3
print(f"\n## rdma:// on Soft-RoCE (bench/rdma-vm-bench.sh, {sys.argv[2]}, {sys.argv[3]})\n")
print("One boot of the VM of shared/tools/rdma-vm (TCG emulation, 2 vCPUs, rxe0, RoCE MTU 1024): every figure")
print("below is from the same boot. Latency is one-way (half the round trip, as perftest reports it);")
print("bandwidth in MiB/s.\n")
print("| one-way latency, 64 B | µs | vs ib_write_lat |\n|---|---:|---:|")
print(f"| perftest ib_write_lat (typical; the floor) | {lat_floor:.1f} | 1.00x |")
print(f"| UCX ucx_perftest am_lat, rc_verbs (typical) | {lat_ucx:.1f} | {lat_ucx / lat_floor:.2f}x |")
print(f"| dmaq rdma:// ping-pong (p50), default waits (spin 50 us, then sleep) | {lat_dmaq:.1f} | {lat_dmaq / lat_floor:.2f}x |")
print(f"| dmaq rdma:// ping-pong (p50), busy-polling (spin_ns = INT64_MAX) | {lat_busy:.1f} | {lat_busy / lat_floor:.2f}x |\n")
best = min(lat_dmaq, lat_busy)
print("| stream | ib_write_bw MiB/s | dmaq rdma:// msg/s | dmaq MiB/s | dmaq vs ib_write_bw | dmaq through a relay to shm msg/s |")
print("|---|---:|---:|---:|---:|---:|")
for size in (64, 4096, 65536):
    bw = g(f"ib_write_bw_{size}_MBps")
    rate = g(f"dmaq_stream_{size}")
    mbs = rate * size / mib
    print(f"| {size} B | {bw:.1f} | {rate:.0f} | {mbs:.1f} | {mbs / bw:.2f}x | {g(f'dmaq_relay_{size}'):.0f} |")
print(f"\nUCX ucx_perftest put_bw, 64 KiB: {g('ucx_put_bw_65536_MBps'):.1f} MiB/s.")
big = g("dmaq_stream_65536") * 65536 / mib / g("ib_write_bw_65536_MBps")
print(f"\nTargets (issue 10): one-way latency within 1.2x ib_write_lat's ({best / lat_floor:.2f}x: "
      f"{'met' if best / lat_floor <= 1.2 else 'missed'}); 64 KiB throughput at least 0.8x ib_write_bw's "
      f"({big:.2f}x: {'met' if big >= 0.8 else 'missed'}).")
print("\nCommand: `bench/rdma-vm-bench.sh --md bench/RESULTS.md`.")
PY
