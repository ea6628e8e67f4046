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

# The bindings' peers, built here: the guest has the host's /usr but none
# of its build caches. The Rust crate's cross-language tests (their rdma://
# cases run there) and the .NET peer (driven by the Python cross tests).
rust_cross=$(cd bindings/rust && CARGO_TARGET_DIR="$build/rust" cargo test --offline --no-run --test cross 2>&1 |
    sed -n 's|.*Executable tests/cross.rs (\(.*\))$|\1|p')
[ -x "$rust_cross" ] || { echo "rdma-vm: could not build the Rust crate's tests (cargo test --no-run)" >&2; exit 1; }
dotnet build bindings/dotnet/Dmaq.Peer --nologo -v q -c Release -o "$build/dotnet-peer" >/dev/null ||
    { echo "rdma-vm: could not build the .NET peer (bindings/dotnet/Dmaq.Peer)" >&2; exit 1; }

# 124: the guest command timed out (a hang: a failure); 125: the VM itself
# failed before the command ended (qemu, kernel, rxe): the VM cannot start.
"$vm" --share "$repo" --share "$build" --timeout 900 -e DMAQ_RUST_CROSS="$rust_cross" \
    -e DMAQ_DOTNET_PEER="$build/dotnet-peer/Dmaq.Peer.dll" -- "$repo/tests/rdma-guest.sh" "$build"
rc=$?
case $rc in
    0) exit 0 ;;
    125) echo "rdma-vm: SKIPPED: the Soft-RoCE VM did not start (rerun $vm --selftest --verbose)" >&2; exit 77 ;;
    124) echo "rdma-vm: the tests timed out in the VM" >&2; exit 1 ;;
    *) exit 1 ;;
esac
