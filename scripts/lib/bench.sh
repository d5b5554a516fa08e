# shellcheck shell=bash
# What the benchmarks that run the services share (scripts/bench-gateway, scripts/bench-orchestrator):
# release builds, a run folder with a private broker and a private PostgreSQL cluster, the
# services started against them and waited for, and a cleanup that stops everything even on
# Ctrl-C. Source it after lib/common.sh; it defines functions and variables and has no side effects.
#
#   mf_bench_build PRODUCT...            release builds; sets MF_BENCH_BIN (the bin folder)
#   mf_bench_begin PORTS                 run folder MF_BENCH_DIR, cleanup trap, PORTS distinct free
#                                        ports in MF_BENCH_PORTS (the first two for the broker and
#                                        the database), MF_BENCH_MQTT_URL, MF_BENCH_DB_URL
#   mf_bench_start_service NAME PORT [VAR=VALUE...]
#                                        starts $MF_BENCH_BIN/NAME on 127.0.0.1:PORT (log
#                                        $MF_BENCH_DIR/NAME.log) and waits until it is ready
#   mf_bench_field NAME LINE             the value of NAME=… in a `result …` line
#
# MODELFLEET_BENCH_KEEP_TMPDIR=1 keeps the run folder (the services', simulator's, broker's and
# database's logs). MODELFLEET_BENCH_SAME_SESSION=1 starts the services in the caller's session
# rather than each in its own (see mf_bench_start_service).

MF_BENCH_DIR=""
MF_BENCH_BIN=""
MF_BENCH_MQTT_URL=""
# The broker's accounts (docs/security.md): each service signs in as itself; the benchmarks' own
# clients and simulated agents as modelfleet:admin, whose credentials MF_BENCH_MQTT_ADMIN_URL holds.
MF_BENCH_MQTT_CREDENTIALS=""
MF_BENCH_MQTT_ADMIN_URL=""
MF_BENCH_DB_URL=""
MF_BENCH_PORTS=()
# Started services, in order: "name pid".
MF_BENCH_SERVICES=()

# mf_bench_build PRODUCT...: release builds, one command each (swift build takes one --product:
# the last one wins).
mf_bench_build() {
    local product
    for product in "$@"; do
        swift build -c release --product "${product}" >/dev/null
    done
    MF_BENCH_BIN=$(swift build -c release --show-bin-path)
}

mf_bench_cleanup() {
    local status=$? index entry
    trap - EXIT
    trap '' INT TERM # a second Ctrl-C must not leave the servers running
    # The services before the broker and the database, the last started first.
    for ((index = ${#MF_BENCH_SERVICES[@]} - 1; index >= 0; index--)); do
        entry=${MF_BENCH_SERVICES[index]}
        mf_stop_pid "${entry#* }" 15
    done
    if [[ -n ${MF_BENCH_DIR} ]]; then
        "${MF_REPO_ROOT}/scripts/mosquitto-instance" stop "${MF_BENCH_DIR}/mosquitto" >/dev/null 2>&1 || true
        "${MF_REPO_ROOT}/scripts/postgres-instance" stop "${MF_BENCH_DIR}/postgres" >/dev/null 2>&1 || true
        if [[ ${MODELFLEET_BENCH_KEEP_TMPDIR:-0} == 1 ]]; then
            mf_log "kept ${MF_BENCH_DIR} (<service>.log, simulator.log, mosquitto/mosquitto.log, postgres.log)"
        else
            rm -rf -- "${MF_BENCH_DIR}"
            if ((status != 0 && status != 130 && status != 143)); then
                mf_log "failed (status ${status}); MODELFLEET_BENCH_KEEP_TMPDIR=1 keeps the logs"
            fi
        fi
    fi
    exit "${status}"
}

# mf_bench_begin PORTS
mf_bench_begin() {
    local count=$1 port
    MF_BENCH_DIR=$(mktemp -d /tmp/modelfleet-bench.XXXXXX)
    # The postgres user must traverse it to reach its data dir.
    chmod 755 "${MF_BENCH_DIR}"
    trap mf_bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    MF_BENCH_PORTS=()
    while ((${#MF_BENCH_PORTS[@]} < count)); do
        port=$(mf_free_port)
        [[ " ${MF_BENCH_PORTS[*]} " == *" ${port} "* ]] || MF_BENCH_PORTS+=("${port}")
    done
    MF_BENCH_MQTT_URL=$("${MF_REPO_ROOT}/scripts/mosquitto-instance" start "${MF_BENCH_DIR}/mosquitto" "${MF_BENCH_PORTS[0]}" | tail -n 1)
    MF_BENCH_MQTT_CREDENTIALS="${MF_BENCH_DIR}/mosquitto/security/credentials"
    MF_BENCH_MQTT_ADMIN_URL="mqtt://modelfleet%3Aadmin:$(cat "${MF_BENCH_MQTT_CREDENTIALS}/admin")@127.0.0.1:${MF_BENCH_PORTS[0]}"
    # shellcheck disable=SC2034 # for the services the scripts start
    MF_BENCH_DB_URL=$("${MF_REPO_ROOT}/scripts/postgres-instance" start "${MF_BENCH_DIR}/postgres" "${MF_BENCH_PORTS[1]}" | tail -n 1)
}

# mf_bench_wait_ready NAME URL PID: until URL/ready answers 200; fails when the process exits or
# after 60 s.
mf_bench_wait_ready() {
    local name=$1 url=$2 pid=$3 deadline=$((SECONDS + 60))
    until [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "${url}/ready" || true) == 200 ]]; do
        if ! mf_pid_alive "${pid}"; then
            mf_show_log_tail "${MF_BENCH_DIR}/${name}.log"
            mf_die "the ${name} exited during startup"
        fi
        if ((SECONDS >= deadline)); then
            mf_show_log_tail "${MF_BENCH_DIR}/${name}.log"
            mf_die "${url}/ready did not answer 200 within 60 s"
        fi
        sleep 0.2
    done
}

# mf_bench_start_service NAME PORT [VAR=VALUE...]: the release NAME with the run's broker, on
# 127.0.0.1:PORT, logging warnings, instance `bench`; VAR=VALUE add to or override its environment.
mf_bench_start_service() {
    local name=$1 port=$2 pid
    shift 2
    mf_log "starting the ${name} on 127.0.0.1:${port} (log: ${MF_BENCH_DIR}/${name}.log)"
    # setsid: a Ctrl-C reaches only the script, which stops the services before the broker; and,
    # with autogroup scheduling, each service gets its own share of a busy machine, as in
    # scripts/stack. MODELFLEET_BENCH_SAME_SESSION=1 leaves them in this session.
    local session=(setsid)
    [[ ${MODELFLEET_BENCH_SAME_SESSION:-0} == 1 ]] && session=()
    # REST without API keys (each service warns): the benchmarks' HTTP clients send none; a key's
    # check is one HMAC per request (docs/security.md). The broker's access control stays on.
    env MODELFLEET_MQTT_URL="${MF_BENCH_MQTT_URL}" MODELFLEET_MQTT_PASSWORD_FILE="${MF_BENCH_MQTT_CREDENTIALS}/${name}" MODELFLEET_API_AUTH=off \
        MODELFLEET_HTTP_HOST=127.0.0.1 MODELFLEET_HTTP_PORT="${port}" \
        MODELFLEET_LOG_LEVEL=warning MODELFLEET_INSTANCE_ID=bench "$@" \
        "${session[@]}" "${MF_BENCH_BIN}/${name}" </dev/null >>"${MF_BENCH_DIR}/${name}.log" 2>&1 &
    pid=$!
    MF_BENCH_SERVICES+=("${name} ${pid}")
    mf_bench_wait_ready "${name}" "http://127.0.0.1:${port}" "${pid}"
}

# mf_bench_field NAME LINE: the value of NAME=… in LINE (empty when absent).
mf_bench_field() {
    sed -n "s/.* $1=\([0-9.a-z/-]*\).*/\1/p" <<<" $2"
}
