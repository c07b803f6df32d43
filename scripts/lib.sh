# Shared by the scripts: what the build needs (ensure_build_deps), and helpers of the
# measurement scripts (below).
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

# --- helpers of the measurement scripts (compare-postgres, ceiling) ----------------------------
# They call `die` and `say`, which each script defines with its own name in the messages.

# A path the caller gave, made absolute against CALLER_DIR (where the script was started).
absolute() {
    case "$1" in /*) echo "$1" ;; *) echo "$CALLER_DIR/$1" ;; esac
}

# Fails unless option $1 was given a non-empty value $2.
need_value() {
    if [ $# -lt 2 ] || [ -z "$2" ]; then
        die "$1 needs a value (see --help)"
    fi
}

# Sets BIN_DIR to an absolute directory holding the binaries named after $1: $1 is what
# --bin-dir said (empty: the release target directory, where missing binaries are built).
# Run from the repository root.
resolve_bin_dir() {
    local given=$1 b
    shift
    if [ -n "$given" ]; then
        BIN_DIR=$(absolute "$given")
        [ -d "$BIN_DIR" ] || die "--bin-dir $BIN_DIR is not a directory"
        BIN_DIR=$(cd "$BIN_DIR" && pwd)
        for b in "$@"; do
            [ -x "$BIN_DIR/$b" ] || die "$BIN_DIR/$b is missing or not executable"
        done
        return 0
    fi
    local target=${CARGO_TARGET_DIR:-target}
    case "$target" in /*) ;; *) target="$(pwd)/$target" ;; esac
    BIN_DIR="$target/release"
    local missing=0 args=()
    for b in "$@"; do
        [ -x "$BIN_DIR/$b" ] || missing=1
        args+=(--bin "$b")
    done
    [ "$missing" -eq 1 ] || return 0
    say "binaries missing in $BIN_DIR: building them (the first build compiles RocksDB, which takes a while)"
    ensure_build_deps
    cargo build --release --workspace "${args[@]}" >&2 || die "cargo build failed"
    for b in "$@"; do
        [ -x "$BIN_DIR/$b" ] || die "$BIN_DIR/$b still missing after the build (is the target directory somewhere else?)"
    done
}

# Starts a server in the background: $1 names it in messages, $2 is a file for its stdout, $3
# for its stderr, the rest is the command, which must print "listening on ADDR". Sets
# SERVER_PID and SERVER_ADDR; fails if it exits or prints nothing within 60 s.
start_server() {
    local name=$1 out=$2 log=$3 i
    shift 3
    "$@" >"$out" 2>"$log" &
    SERVER_PID=$!
    SERVER_ADDR=""
    for ((i = 0; i < 600; i++)); do
        SERVER_ADDR=$(sed -n 's/^.*listening on \([^ ]*\).*$/\1/p' "$out" | head -n 1)
        [ -n "$SERVER_ADDR" ] && return 0
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            tail -n 20 "$log" >&2 || true
            SERVER_PID=""
            die "$name exited before listening (log above)"
        fi
        sleep 0.1
    done
    tail -n 20 "$log" >&2 || true
    die "$name printed no 'listening on' within 60 s"
}

# Stops the server started last with SIGTERM (SIGKILL after 60 s); returns its exit status.
stop_server() {
    local pid=$SERVER_PID i rc=0
    [ -n "$pid" ] || return 0
    SERVER_PID=""
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 600; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "$pid did not stop within 60 s of SIGTERM: killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || rc=$?
    return $rc
}

# 57300 -> 57,300
group_digits() {
    local n=$1 out=""
    while [ ${#n} -gt 3 ]; do
        out=",${n: -3}$out"
        n=${n:0:${#n}-3}
    done
    echo "$n$out"
}

# Microseconds as milliseconds with one decimal.
us_as_ms() {
    awk -v us="$1" 'BEGIN { printf "%.1f", us / 1000 }'
}

# Field $1 of the JSON object line $2 (numbers and booleans only).
json_field() {
    sed -n "s/.*\"$1\":\([-0-9.eE+a-z]*\).*/\1/p" <<<"$2"
}
