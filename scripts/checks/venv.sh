# shellcheck shell=bash
# Sourced by scripts/check-deploy and scripts/check-protocol: prepares the Python that runs one
# suite of scripts/checks and runs it with pytest.

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PYTHONDONTWRITEBYTECODE=1

# checks_python NAME VENV REQUIREMENTS_FILE
# Sets CHECKS_PYTHON to a Python that has the pinned requirements of REQUIREMENTS_FILE: the virtual
# environment VENV, made (or updated) quietly when the file changed since, or, where `python3 -m
# venv` is not available, python3 with the user's site-packages. On failure prints
# "FAIL setup: ..." with the end of pip's output and exits 1.
checks_python() {
    local name=$1 venv=$2 requirements_file=$3
    local stamp="${venv}/.${name}-requirements" log requirements=()
    mapfile -t requirements < <(grep -Ev '^[[:space:]]*(#|$)' "${requirements_file}")
    if [[ -x ${venv}/bin/python && "$(cat "${stamp}" 2>/dev/null || true)" == "${requirements[*]}" ]]; then
        CHECKS_PYTHON=${venv}/bin/python
        return 0
    fi
    echo "${name}: installing ${requirements[*]} (quietly, once)"
    log=$(mktemp)
    mkdir -p "$(dirname "${venv}")"
    if [[ -x ${venv}/bin/python ]] || python3 -m venv "${venv}" >"${log}" 2>&1; then
        "${venv}/bin/python" -m pip install --quiet "${requirements[@]}" >>"${log}" 2>&1 ||
            checks_setup_failed "${log}" "pip install ${requirements[*]} into ${venv} failed"
        printf '%s' "${requirements[*]}" >"${stamp}"
        CHECKS_PYTHON=${venv}/bin/python
    else
        rm -rf "${venv}"
        python3 -m pip install --quiet --user "${requirements[@]}" >>"${log}" 2>&1 ||
            python3 -m pip install --quiet --user --break-system-packages "${requirements[@]}" \
                >>"${log}" 2>&1 ||
            checks_setup_failed "${log}" "no venv, and pip install --user ${requirements[*]} failed"
        CHECKS_PYTHON=python3
        PATH="$(python3 -m site --user-base)/bin:${PATH}"
        export PATH
    fi
    rm -f "${log}"
}

checks_setup_failed() {
    echo "FAIL setup: $2"
    sed 's/^/       /' "$1" | tail -n 20
    rm -f "$1"
    exit 1
}

# checks_run NAME TEST_FILE [pytest arguments...]
# Runs one suite quietly (failures, errors and skips with their reasons) and ends with one line
# saying how it went. Exits with pytest's status, except that "no tests collected" (5) is a
# failure of its own: a suite that checks nothing must not pass.
checks_run() {
    local name=$1 test_file=$2 status=0
    shift 2
    "${CHECKS_PYTHON}" -m pytest -q -rfEs --tb=short -p no:cacheprovider "${test_file}" "$@" || status=$?
    case ${status} in
        0) echo "${name}: all checks OK" ;;
        5)
            echo "${name}: FAIL: pytest collected no checks from ${test_file}"
            status=1
            ;;
        *) echo "${name}: checks FAILED (pytest exit status ${status}; the failures are above)" ;;
    esac
    exit "${status}"
}
