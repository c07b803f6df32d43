# Shared by scripts/demo and scripts/test: make sure what the build needs is installed.
# RocksDB's C++ is compiled from source by the rocksdb crate; its bindings need libclang.

ensure_build_deps() {
    if ! command -v cargo >/dev/null 2>&1; then
        echo "cargo is not installed: install Rust (https://rustup.rs) first" >&2
        exit 1
    fi
    local missing=()
    command -v clang >/dev/null 2>&1 || missing+=(clang)
    compgen -G '/usr/lib/llvm-*/lib/libclang*.so*' >/dev/null || compgen -G '/usr/lib/*/libclang*.so*' >/dev/null \
        || missing+=(libclang-dev)
    command -v c++ >/dev/null 2>&1 || missing+=(g++)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing build dependencies: ${missing[*]}" >&2
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}
