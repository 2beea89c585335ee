# Shared by scripts/run and scripts/test: install or start what a fresh Debian 12 machine
# with a Rust toolchain lacks. Sourced, not run. Quiet when everything is already there.

say() { echo "==> $*" >&2; }
die() { echo "error: $*" >&2; exit 1; }

# apt and pg_ctlcluster need root; use sudo only when we are not root already.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else die "need root (or sudo) to run: $*"
    fi
}

as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"
    else sudo -u postgres "$@"
    fi
}

APT_UPDATED=
apt_install() {
    if [ -z "$APT_UPDATED" ]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        APT_UPDATED=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

ensure_rust() {
    command -v cargo >/dev/null 2>&1 \
        || die "cargo not found: install the Rust toolchain (rustup) first"
}

# The `opus` crate builds its bundled libopus with cmake.
ensure_cmake() {
    command -v cmake >/dev/null 2>&1 && return 0
    say "installing cmake (needed to build the bundled libopus)"
    apt_install cmake
}

# The browser-call tests drive Debian's headless Chromium with a fake microphone
# (reference/browser-testing.md); espeak-ng and sox are for remaking the speech fixtures.
ensure_chromium() {
    command -v chromium >/dev/null 2>&1 && return 0
    say "installing Chromium (for the browser-call tests)"
    apt_install chromium
}

LOCAL_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres
# Marks the pg_hba.conf line this script adds, so it is added once.
HBA_MARK="# added by vocalized scripts/test"

# Exports VOCALIZED_TEST_POSTGRES_URL for the Postgres half of the tests. A URL already
# set is used as given (`skip` switches the Postgres half off); otherwise the local
# server is installed, opened to passwordless connections from 127.0.0.1 and started.
ensure_postgres() {
    local url="${VOCALIZED_TEST_POSTGRES_URL:-}"
    if [ "$url" = skip ]; then
        return 0
    fi
    if [ -z "$url" ]; then
        url=$LOCAL_POSTGRES_URL
        start_local_postgres
    fi
    export VOCALIZED_TEST_POSTGRES_URL=$url
    psql "$url" -qtAc 'SELECT 1' >/dev/null 2>&1 \
        || die "Postgres at VOCALIZED_TEST_POSTGRES_URL does not accept connections"
    drop_leftover_test_databases "$url"
}

start_local_postgres() {
    if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null \
        && psql "$LOCAL_POSTGRES_URL" -qtAc 'SELECT 1' >/dev/null 2>&1; then
        return 0
    fi
    if [ -z "$(ls /etc/postgresql 2>/dev/null)" ] || ! command -v pg_ctlcluster >/dev/null 2>&1; then
        say "installing PostgreSQL"
        apt_install postgresql
    fi
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    local hba="/etc/postgresql/$version/main/pg_hba.conf"
    # Test-only machines: the tests connect as postgres over TCP without a password, so
    # trust 127.0.0.1 for that user (Debian's default asks for one).
    if ! as_root grep -qF "$HBA_MARK" "$hba"; then
        as_root sed -i "1i host all postgres 127.0.0.1/32 trust $HBA_MARK" "$hba"
        if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
            as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload
        fi
    fi
    if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
        say "starting PostgreSQL $version"
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
    fi
    local waited=0
    until pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; do
        [ "$waited" -ge 30 ] && die "PostgreSQL did not become ready on 127.0.0.1:5432 in 30 s"
        sleep 1
        waited=$((waited + 1))
    done
}

# Each Postgres test creates a vz_test_* database; a run that was killed leaves some
# behind. Databases still in use (another run in progress) refuse to drop and are kept.
drop_leftover_test_databases() {
    local url=$1 name
    psql "$url" -qtAc "SELECT datname FROM pg_database WHERE datname LIKE 'vz\_test\_%'" \
        | while read -r name; do
            [ -n "$name" ] && psql "$url" -qc "DROP DATABASE IF EXISTS \"$name\"" >/dev/null 2>&1
            true
        done
}

# schemathesis (PyPI), the property-based API tester scripts/api-contract runs, in a venv
# under target/ (ignored by git) at a pinned version so every run generates alike.
SCHEMATHESIS_VERSION=4.32.5
SCHEMATHESIS_VENV=target/schemathesis-venv
ensure_schemathesis() {
    if [ "$("$SCHEMATHESIS_VENV/bin/st" --version 2>/dev/null)" = "st, version $SCHEMATHESIS_VERSION" ]; then
        return 0
    fi
    if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
        say "installing python3-venv (for schemathesis)"
        apt_install python3 python3-venv
    fi
    say "installing schemathesis $SCHEMATHESIS_VERSION into $SCHEMATHESIS_VENV"
    rm -rf "$SCHEMATHESIS_VENV"
    mkdir -p "$(dirname "$SCHEMATHESIS_VENV")"
    python3 -m venv "$SCHEMATHESIS_VENV"
    "$SCHEMATHESIS_VENV/bin/pip" install --quiet --disable-pip-version-check \
        "schemathesis==$SCHEMATHESIS_VERSION"
}
