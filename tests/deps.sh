#!/usr/bin/env bash
# Install the Debian packages dmaq builds and tests with, if any is missing.
# Sourced by examples/run-demo.sh, tests/run-all.sh and bench/run.sh.
dmaq_install_deps() {
    local want=(cmake gcc make pkg-config libxxhash-dev libsodium-dev libzstd-dev libibverbs-dev librdmacm-dev libcriterion-dev valgrind "$@")
    local missing=()
    for p in "${want[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing: ${missing[*]}"
        local sudo=""
        [ "$(id -u)" -ne 0 ] && sudo=sudo
        $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# Print the path of shared/tools/rdma-vm/run-in-rdma-vm.sh ($DMAQ_RDMA_VM, else
# next to the repository, else /work/shared); fail when there is none.
dmaq_rdma_vm() {
    local vm
    for vm in "${DMAQ_RDMA_VM:-}" "$PWD/../shared/tools/rdma-vm/run-in-rdma-vm.sh" \
              /work/shared/tools/rdma-vm/run-in-rdma-vm.sh; do
        [ -n "$vm" ] && [ -x "$vm" ] && { echo "$vm"; return 0; }
    done
    return 1
}
