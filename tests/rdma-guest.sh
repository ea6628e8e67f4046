#!/usr/bin/env bash
# Inside the Soft-RoCE VM (tests/rdma-vm.sh boots it): every rdma:// test,
# against the rxe0 device at $RDMA_VM_IP.
#   tests/rdma-guest.sh BUILD_DIR
# with DMAQ_RUST_CROSS (the Rust crate's tests/cross.rs, built) and
# DMAQ_DOTNET_PEER (Dmaq.Peer.dll, built) from tests/rdma-vm.sh.
set -euo pipefail
build=$1
cd "$(dirname "$0")/.."
echo "== rdma:// in the VM: $(uname -r), device ${RDMA_VM_DEV:-?} at ${RDMA_VM_IP:-?}"
export DMAQ_SHM_DIR=/dev/shm
echo "-- channel creation on this kernel (Debian 12's, where a signal interrupts tmpfs's fallocate)"
"$build/tests/test_lifecycle" --jobs 1 --verbose=0 --filter 'lifecycle/channels_are_created_whole_while_signals_arrive'
echo "-- test_rdma (errors, keys, leases, killed and stopped peers), rings on huge pages"
echo 64 > /proc/sys/vm/nr_hugepages
"$build/tests/test_rdma" --jobs 1 --verbose=0
echo "-- test_stress_rdma (the shm matrix over rdma://), rings on ordinary pages"
echo 0 > /proc/sys/vm/nr_hugepages
"$build/tests/test_stress_rdma" --jobs 1 --verbose=0
echo "-- Python and .NET subscribers and publishers with C peers over rdma://"
# The guest has the host's /usr but not its Python environments: Debian's
# python3 with the package from the source tree and the library just built.
: "${DMAQ_DOTNET_PEER:?the .NET peer is not built (tests/rdma-vm.sh builds it)}"
(cd bindings/python/tests && PYTHONPATH="$PWD/../src" DMAQ_LIBRARY="$build/libdmaq.so" \
    DMAQ_TEST_PEER="$build/tests/dmaq-test-peer" DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 \
    /usr/bin/python3 -m unittest -k rdma test_cross)
echo "-- Rust subscribers and publishers with C peers over rdma:// (the crate links libdmaq-rdma.a)"
: "${DMAQ_RUST_CROSS:?the Rust cross-language tests are not built (tests/rdma-vm.sh builds them)}"
DMAQ_TEST_PEER="$build/tests/dmaq-test-peer" "$DMAQ_RUST_CROSS" --ignored --test-threads 1 rdma::
echo "== rdma:// in the VM: all passed"
