#!/usr/bin/env bash
# Inside the Soft-RoCE VM (bench/rdma-vm-bench.sh boots it): what the verbs
# stack itself reaches on rxe0 (perftest's ib_write_lat and ib_write_bw),
# what UCX reaches over rc_verbs (ucx_perftest), and dmaq's rdma:// cells
# (dmaq-tcp-bench --rdma), all in this one boot, as "key value" lines in OUT.
#   bench/rdma-guest-bench.sh BUILD_DIR OUT
set -uo pipefail
build=$1 out=$2
ip=$RDMA_VM_IP dev=${RDMA_VM_DEV:-rxe0} gid=${RDMA_VM_GID_INDEX:-1}
: > "$out"
put() { echo "$1 $2" | tee -a "$out"; }

# perftest: server in the background, client prints the table.
perf() { # perftest-binary size column
    local bin=$1 size=$2 col=$3
    $bin -d "$dev" -x "$gid" -s "$size" -n 3000 -F >/dev/null 2>&1 &
    sleep 1
    $bin -d "$dev" -x "$gid" -s "$size" -n 3000 -F "$ip" 2>/dev/null | awk -v s="$size" -v c="$col" '$1 == s {print $c; exit}'
    wait
}
put ib_write_lat_64_typical_us "$(perf ib_write_lat 64 5)"
for size in 64 4096 65536; do
    put "ib_write_bw_${size}_MBps" "$(perf ib_write_bw $size 4)"
done

# UCX's active-message latency over rc_verbs (its "typical" one-way latency).
# Its "Final:" row: iterations, latency 50th percentile/average/overall (us),
# bandwidth average/overall (MB/s), message rate average/overall.
ucx() { # test size [ucx_perftest options]
    local t=$1 size=$2
    shift 2
    ucx_perftest -d "$dev:1" -x rc_verbs -t "$t" -s "$size" -n 3000 "$@" >/dev/null 2>&1 &
    sleep 1
    ucx_perftest -d "$dev:1" -x rc_verbs -t "$t" -s "$size" -n 3000 "$@" "$ip" 2>/dev/null | awk '/Final:/ {print; exit}'
    wait
}
line=$(ucx am_lat 64) && put ucx_am_lat_64_typical_us "$(echo "$line" | awk '{print $3}')"
# Large puts need zero-copy (rc_verbs' short puts stop at 80 bytes).
line=$(ucx put_bw 65536 -D zcopy) && put ucx_put_bw_65536_MBps "$(echo "$line" | awk '{print $6}')"

"$build/bench/dmaq-tcp-bench" --rdma "$ip" | tee -a "$out"
