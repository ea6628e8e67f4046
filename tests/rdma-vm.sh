#!/usr/bin/env bash
# The rdma:// tests, on a real RDMA stack: this machine's kernel has none, so
# they run inside the Soft-RoCE VM of shared/tools/rdma-vm (one boot for all
# of them: tests/rdma-guest.sh is what runs inside).
#
#   tests/rdma-vm.sh [BUILD_DIR]       (default: build)
#
# Exit status: 0 all passed, 1 a test failed, 77 skipped because the VM could
# not start here (no script, no qemu); the caller reports that as SKIPPED.
# $DMAQ_RDMA_VM names run-in-rdma-vm.sh if it is not in ../shared/tools.
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
build=$(cd "${1:-build}" && pwd)
[ -e "$build/libdmaq-rdma.so" ] || { echo "rdma-vm: $build/libdmaq-rdma.so is not built (librdmacm-dev missing?)" >&2; exit 1; }

. tests/deps.sh
if ! vm=$(dmaq_rdma_vm); then
    echo "rdma-vm: SKIPPED: no run-in-rdma-vm.sh (set DMAQ_RDMA_VM)" >&2
    exit 77
fi

# 124: the guest command timed out (a hang: a failure); 125: the VM itself
# failed before the command ended (qemu, kernel, rxe): the VM cannot start.
"$vm" --share "$repo" --share "$build" --timeout 900 -- "$repo/tests/rdma-guest.sh" "$build"
rc=$?
case $rc in
    0) exit 0 ;;
    125) echo "rdma-vm: SKIPPED: the Soft-RoCE VM did not start (rerun $vm --selftest --verbose)" >&2; exit 77 ;;
    124) echo "rdma-vm: the tests timed out in the VM" >&2; exit 1 ;;
    *) exit 1 ;;
esac
