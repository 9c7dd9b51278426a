# shellcheck shell=bash
# Shared by scripts/test and scripts/broker: finding or installing the tansu broker, starting it,
# and bringing up the local PostgreSQL cluster. Sourced, not run; the caller sets -euo pipefail.
#
# Why tansu: no Kafka distribution can be fetched on our machines and there is no Docker engine,
# so the Kafka-protocol broker for tests is tansu, built from crates.io. It is our test broker, not
# a product decision: deployments use Apache Kafka.

# The one version we test against. `--locked` is required (a newer dependency breaks the build)
# and so are the features (the default build has no storage engine).
TANSU_VERSION=0.6.0
TANSU_FEATURES=dynostore,postgres
HYBRID_TENANCY_CACHE="${HOME}/.cache/hybrid-tenancy"
TANSU_ROOT="${HYBRID_TENANCY_CACHE}/tansu"

log() {
    printf '%s: %s\n' "${0##*/}" "$*" >&2
}

die() {
    log "error: $*"
    exit 1
}

# Runs a command as root: directly when we are root (CI, our machines), through sudo otherwise.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "'$*' needs root and sudo is not installed"
    fi
}

# A fresh login shell may not have rustup's directory on PATH yet.
ensure_cargo() {
    if ! command -v cargo >/dev/null 2>&1 && [ -f "${HOME}/.cargo/env" ]; then
        # shellcheck disable=SC1091
        . "${HOME}/.cargo/env"
    fi
    command -v cargo >/dev/null 2>&1 || die "cargo is not on PATH (install the Rust toolchain)"
}

# Installs the Debian packages that are missing, and nothing when all are there, so a warm machine
# never waits for `apt-get update`. Off Debian we cannot check, so we only warn.
ensure_apt_packages() {
    local missing=() package
    if ! command -v dpkg >/dev/null 2>&1; then
        log "warning: no dpkg here; make sure these are installed: $*"
        return 0
    fi
    for package in "$@"; do
        # `dpkg -s` also succeeds for a removed package whose config files remain: read Status.
        dpkg -s "$package" 2>/dev/null | grep -q '^Status: install ok installed' ||
            missing+=("$package")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0

    log "installing Debian packages: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
}

# C build dependencies: rdkafka's bundled librdkafka (our code) and tansu both link the system
# zlib found through pkg-config.
ensure_build_dependencies() {
    ensure_apt_packages zlib1g-dev pkg-config
}

# Prints the path of a usable tansu binary, or returns 1. Order: $TANSU_BIN, `tansu` on PATH, our
# cache.
find_tansu() {
    if [ -n "${TANSU_BIN:-}" ] && [ -x "$TANSU_BIN" ]; then
        printf '%s\n' "$TANSU_BIN"
    elif command -v tansu >/dev/null 2>&1; then
        command -v tansu
    elif [ -x "${TANSU_ROOT}/bin/tansu" ]; then
        printf '%s\n' "${TANSU_ROOT}/bin/tansu"
    else
        return 1
    fi
}

# Sets and exports TANSU_BIN, building tansu into our cache when no binary is found.
ensure_tansu() {
    local found
    # A TANSU_BIN that points nowhere is a mistake worth stopping for, not a reason to install.
    if [ -n "${TANSU_BIN:-}" ] && [ ! -x "$TANSU_BIN" ]; then
        die "TANSU_BIN=$TANSU_BIN is not an executable file"
    fi
    if found=$(find_tansu); then
        export TANSU_BIN="$found"
        return 0
    fi

    ensure_cargo
    ensure_build_dependencies
    mkdir -p "$TANSU_ROOT"
    (
        # Two runs starting at once would build twice and race on the same bin/; the second one
        # waits here, then finds the first one's binary.
        exec 9>"${TANSU_ROOT}/.install.lock"
        flock 9
        [ -x "${TANSU_ROOT}/bin/tansu" ] && exit 0

        log "tansu (the Kafka-compatible test broker) is not installed: building tansu" \
            "${TANSU_VERSION} with cargo install into ${TANSU_ROOT}."
        log "This takes about 11 minutes on 2 cores, once; later runs reuse the binary."
        # Unset CARGO_TARGET_DIR so tansu's ~500 crates stay out of the project's target dir.
        env -u CARGO_TARGET_DIR cargo install tansu --locked --version "$TANSU_VERSION" \
            --features "$TANSU_FEATURES" --root "$TANSU_ROOT"
    ) || die "cargo install tansu ${TANSU_VERSION} failed (output above)"

    [ -x "${TANSU_ROOT}/bin/tansu" ] ||
        die "cargo install finished but ${TANSU_ROOT}/bin/tansu is missing"
    export TANSU_BIN="${TANSU_ROOT}/bin/tansu"
}

# The broker's command line. Listen and advertise the same loopback address: the advertised one is
# what clients connect to after their first metadata request, and tansu would bind a host *name*
# such as `localhost` on every interface, so we give it an IP. Memory storage keeps nothing between
# runs, which is what tests want. tansu does not auto-create topics: our services create theirs.
tansu_broker_command() {
    local port="$1" storage="${2:-memory://tansu/}"
    printf '%s\n' "$TANSU_BIN" broker \
        --listener-url "tcp://127.0.0.1:${port}" \
        --advertised-listener-url "tcp://127.0.0.1:${port}" \
        --storage-engine "$storage"
}

# tansu reads a `.env` file from its working directory (and its parents) before parsing flags, and
# its variables (RUST_LOG, SCHEMA_REGISTRY, ...) would change the broker. Run it from our cache
# directory, where no such file lives, rather than from whatever directory the caller is in.
tansu_working_directory() {
    mkdir -p "$HYBRID_TENANCY_CACHE"
    printf '%s\n' "$HYBRID_TENANCY_CACHE"
}

# True when something accepts TCP connections on 127.0.0.1:PORT. Loopback refuses at once, so no
# timeout is needed. Bash's /dev/tcp needs no extra tool.
port_is_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# True when process PID itself listens on 127.0.0.1:PORT. With ss we check the owner, so another
# broker that happens to hold the port cannot pass for ours; without ss, open port + live process.
process_listens_on() {
    local pid="$1" port="$2"
    kill -0 "$pid" 2>/dev/null || return 1
    if command -v ss >/dev/null 2>&1; then
        ss -Hltnp "sport = :${port}" 2>/dev/null | grep -q "pid=${pid},"
    else
        port_is_open "$port"
    fi
}

# Prints a TCP port that is free right now. The kernel picks it (port 0) so two runs on one machine
# do not both try the same number; without python3 we scan upward from 19092.
pick_free_port() {
    local port
    if port=$(python3 - 2>/dev/null <<'PYTHON'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
PYTHON
    ); then
        printf '%s\n' "$port"
        return 0
    fi
    for port in $(seq 19092 19191); do
        if ! port_is_open "$port"; then
            printf '%s\n' "$port"
            return 0
        fi
    done
    die "no free TCP port between 19092 and 19191"
}

# Starts tansu in the background on a free port, logging to LOG_FILE, and waits (bounded) until it
# listens. Sets BROKER_PID and BROKER_PORT. A port taken between our pick and tansu's bind makes
# tansu exit at once; we then try another port, three times in all.
start_background_broker() {
    local log_file="$1" attempt port pid command=()
    for attempt in 1 2 3; do
        port=$(pick_free_port)
        mapfile -t command < <(tansu_broker_command "$port")
        log "starting tansu on 127.0.0.1:${port} (log: ${log_file})"
        # Keep the broker quiet unless asked (TANSU_LOG), whatever RUST_LOG the tests use.
        (cd "$(tansu_working_directory)" && RUST_LOG="${TANSU_LOG:-warn}" exec "${command[@]}") \
            >>"$log_file" 2>&1 </dev/null &
        pid=$!

        # It listens ~60 ms after launch; 20 s is generous even on a loaded machine.
        for _ in $(seq 1 200); do
            if process_listens_on "$pid" "$port"; then
                BROKER_PID="$pid"
                # shellcheck disable=SC2034 # read by the caller
                BROKER_PORT="$port"
                return 0
            fi
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done

        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
            log "tansu did not listen on port ${port} within 20 s; last lines of ${log_file}:"
            tail -n 20 "$log_file" >&2 || true
            die "the broker did not start"
        fi
        wait "$pid" 2>/dev/null || true
        log "tansu exited at start (attempt ${attempt}, port ${port}); last lines of its log:"
        tail -n 5 "$log_file" >&2 || true
    done
    die "tansu failed to start three times; see ${log_file}"
}

# Stops the background broker, if any: SIGTERM, then SIGKILL after 5 s. Never fails, because it
# runs from an EXIT trap where a failure would replace the script's exit status.
stop_background_broker() {
    local pid="${BROKER_PID:-}"
    [ -n "$pid" ] || return 0
    BROKER_PID=
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    return 0
}

# Makes sure the local PostgreSQL cluster answers on 127.0.0.1:5432, starting it when it is down
# (our machines start it before a session, but CI or a restarted machine may find it stopped).
ensure_local_postgres() {
    local version
    command -v pg_isready >/dev/null 2>&1 ||
        die "pg_isready not found: install PostgreSQL 15 (apt-get install postgresql)"
    pg_isready -q -h 127.0.0.1 -p 5432 && return 0

    # shellcheck disable=SC2012 # cluster versions are plain numbers
    [ -d /etc/postgresql ] && version=$(ls /etc/postgresql | head -n 1)
    [ -n "${version:-}" ] ||
        die "PostgreSQL is down and no cluster is configured under /etc/postgresql"
    log "PostgreSQL is down: starting cluster ${version}/main"
    # It fails when the cluster is already starting; the wait below is the real check.
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true

    for _ in $(seq 1 60); do
        pg_isready -q -h 127.0.0.1 -p 5432 && return 0
        sleep 1
    done
    log "PostgreSQL did not accept connections on 127.0.0.1:5432 within 60 s"
    if command -v pg_lsclusters >/dev/null 2>&1; then
        pg_lsclusters >&2 || true
    fi
    tail -n 20 "/var/log/postgresql/postgresql-${version}-main.log" >&2 2>/dev/null || true
    die "PostgreSQL is not available"
}
