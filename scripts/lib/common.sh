# shellcheck shell=bash
# Helpers shared by the ModelFleet scripts. Source it; it defines functions and a few variables
# and has no side effects. Messages go to stderr so that a script's stdout stays machine-readable
# (postgres-instance prints its URL there).

# Repository root, derived from this file's location so scripts work from any directory.
MF_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export MF_REPO_ROOT

# Debian packages the scripts and the Swift build need (libmosquitto-dev for the CMosquitto
# system-library target, curl for the stack's health checks, haproxy for the load-balancer, wrk
# for its benchmark).
MF_PACKAGES=(mosquitto mosquitto-clients libmosquitto-dev zlib1g-dev postgresql curl haproxy wrk prometheus)

mf_log() {
    printf '%s: %s\n' "${MF_LOG_PREFIX:-$(basename "$0")}" "$*" >&2
}

mf_die() {
    mf_log "error: $*"
    exit 1
}

# Runs a command as root: directly when root, through sudo otherwise.
mf_as_root() {
    if [[ ${EUID} -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        mf_die "need root (or sudo) to run: $*"
    fi
}

# Installs the missing packages of MF_PACKAGES. Quiet when nothing is missing; apt's output goes
# to stderr so callers' stdout stays clean.
mf_install_packages() {
    local missing=() pkg
    for pkg in "${MF_PACKAGES[@]}"; do
        # dpkg -s also succeeds for removed packages whose config files remain: check the status.
        if ! dpkg -s "${pkg}" 2>/dev/null | grep -qx 'Status: install ok installed'; then
            missing+=("${pkg}")
        fi
    done
    # mf_free_port needs python3; it may come from outside Debian (pyenv), so check the command.
    if ! command -v python3 >/dev/null 2>&1; then
        missing+=(python3)
    fi
    ((${#missing[@]} == 0)) && return 0

    mf_log "installing missing packages: ${missing[*]}"
    mf_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    mf_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${missing[@]}" >&2
}

# Prints the first port of the kernel's ephemeral range: outgoing connections take their local
# ports from there, so a server port chosen by a script stays below it.
mf_ephemeral_start() {
    local start
    read -r start _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || start=32768
    printf '%s\n' "${start}"
}

# Prints a TCP port that is free on 127.0.0.1 right now, for a server a script starts. Chosen
# below the kernel's ephemeral range, as the tests' freePort() does: a port from that range (what
# binding port 0 gives) can be taken by any outgoing connection between this check and the
# server's own bind, and a service then fails with "Address already in use".
mf_free_port() {
    python3 -c 'import random, socket, sys
ephemeral_start = int(sys.argv[1])
# With an ephemeral range that starts low, nothing is below it: the kernel picks, as before.
candidates = [random.randrange(20000, ephemeral_start) for _ in range(200)] if ephemeral_start > 21000 else [0]
for port in candidates:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        port = s.getsockname()[1]
    except OSError:
        continue
    finally:
        s.close()
    print(port)
    break
else:
    raise SystemExit("no free TCP port below the ephemeral range")' "$(mf_ephemeral_start)"
}

# Succeeds when a TCP connection to HOST:PORT can be opened now.
mf_port_open() {
    local host=$1 port=$2
    # bash's /dev/tcp has no connect timeout of its own; bound it for unreachable hosts.
    # shellcheck disable=SC2016 # $1 and $2 expand in the inner shell
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "${host}" "${port}" 2>/dev/null
}

# Succeeds when PID names a live process. A zombie counts as dead: an exited child that nobody
# reaped yet still answers kill -0.
mf_pid_alive() {
    local pid=$1 stat
    [[ ${pid} =~ ^[0-9]+$ ]] || return 1
    stat=$(cat "/proc/${pid}/stat" 2>/dev/null) || return 1
    # The state follows the command name, which is in parentheses and may contain spaces.
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

# Prints the start time of PID (clock ticks since boot; empty if it is gone). A PID plus its
# start time names one process even after the PID is reused.
mf_pid_start_time() {
    local stat fields
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    # Fields after the parenthesised command name start at field 3; the start time is field 22.
    read -r -a fields <<<"${stat##*) }"
    printf '%s\n' "${fields[19]}"
}

# mf_wait_port HOST PORT SECONDS [PID]
# Waits until HOST:PORT accepts TCP connections. With PID, fails early when that process exits
# (a server that crashed on start will never open its port).
mf_wait_port() {
    local host=$1 port=$2 seconds=$3 pid=${4:-}
    local deadline=$((SECONDS + seconds))
    until mf_port_open "${host}" "${port}"; do
        if [[ -n ${pid} ]] && ! mf_pid_alive "${pid}"; then
            mf_log "error: process ${pid} exited before ${host}:${port} accepted connections"
            return 1
        fi
        if ((SECONDS >= deadline)); then
            mf_log "error: nothing accepted connections on ${host}:${port} within ${seconds} s"
            return 1
        fi
        sleep 0.1
    done
}

# mf_stop_pid PID SECONDS
# Sends TERM, waits up to SECONDS for the process to exit, then sends KILL. Succeeds when the
# process is not running.
mf_stop_pid() {
    local pid=$1 seconds=$2 deadline
    mf_pid_alive "${pid}" || return 0
    kill -TERM "${pid}" 2>/dev/null || true
    deadline=$((SECONDS + seconds))
    while mf_pid_alive "${pid}" && ((SECONDS < deadline)); do
        sleep 0.1
    done
    if mf_pid_alive "${pid}"; then
        mf_log "process ${pid} ignored SIGTERM for ${seconds} s; sending SIGKILL"
        kill -KILL "${pid}" 2>/dev/null || true
        while mf_pid_alive "${pid}"; do sleep 0.1; done
    fi
    return 0
}

# Prints the newest PostgreSQL server bin dir (/usr/lib/postgresql/<major>/bin).
# MODELFLEET_PG_BIN_DIR overrides the discovery.
mf_pg_bin_dir() {
    if [[ -n ${MODELFLEET_PG_BIN_DIR:-} ]]; then
        printf '%s\n' "${MODELFLEET_PG_BIN_DIR}"
        return 0
    fi
    local dir newest=""
    # Sort by major version numerically: 9.6 < 15 < 16.
    newest=$(for dir in /usr/lib/postgresql/*/bin; do
        if [[ -x ${dir}/pg_ctl ]]; then printf '%s\n' "${dir}"; fi
    done | sort -V | tail -n 1)
    [[ -n ${newest} ]] || mf_die "no PostgreSQL server found in /usr/lib/postgresql/*/bin (install the postgresql package)"
    printf '%s\n' "${newest}"
}

# Prints the last lines of a log file, indented, to stderr (to explain a failed start).
mf_show_log_tail() {
    local file=$1 lines=${2:-20}
    [[ -r ${file} ]] || return 0
    mf_log "last ${lines} lines of ${file}:"
    tail -n "${lines}" "${file}" | sed 's/^/    /' >&2
}
