#!/usr/bin/env bash
# The whole test suite, on a fresh machine: makes sure the PostgreSQL server the
# tests use is installed and running, that Dovecot is installed (tests/imap.rs
# starts its own throwaway instances) and that llama-server and its model are
# built/fetched (tests/llm.rs starts its own), then runs every test (unit and
# integration: SQLite, PostgreSQL, the in-process SMTP server, Dovecot, a real
# llama-server for the LLM path, ../shared sets when present).
set -euo pipefail
cd "$(dirname "$0")/.."

apt_updated=
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  if [ -z "$apt_updated" ]; then apt-get update -qq; apt_updated=1; fi
  apt-get install -y -qq "$@" >/dev/null
}

# Dovecot: only the binaries; the tests run their own instances as nobody on
# free loopback ports, so the packaged service is never started.
if [ ! -x /usr/sbin/dovecot ] || [ ! -e /usr/lib/dovecot/imap ]; then
  echo "test.sh: installing Dovecot (dovecot-imapd, dovecot-lmtpd)" >&2
  apt_install dovecot-imapd dovecot-lmtpd
fi
command -v openssl >/dev/null || apt_install openssl

pg_ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }

if ! pg_ready; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "test.sh: installing PostgreSQL" >&2
    apt_install postgresql
  fi
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 50); do pg_ready && break; sleep 0.2; done
  pg_ready || { echo "test.sh: PostgreSQL did not start on 127.0.0.1:5432" >&2; exit 1; }
fi
# Trust auth on loopback is the machine's default; a fresh install needs it.
if ! psql -h 127.0.0.1 -U postgres -d postgres -c 'SELECT 1' >/dev/null 2>&1; then
  hba=$(ls /etc/postgresql/*/main/pg_hba.conf | head -n 1)
  sed -i 's/^\(host\s\+all\s\+all\s\+127.0.0.1\/32\s\+\).*/\1trust/' "$hba"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main reload
fi

# The browser test (tests/web.rs) drives Debian's chromium through
# chromedriver; it fails, on purpose, when they are missing.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  echo "test.sh: installing chromium and chromium-driver" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null
fi
# Screenshots of the browser test are kept here as artifacts.
export DISPUTE_DESK_SCREENSHOTS="${DISPUTE_DESK_SCREENSHOTS:-$PWD/target/screenshots}"
mkdir -p "$DISPUTE_DESK_SCREENSHOTS"

export DISPUTE_DESK_TEST_PG="${DISPUTE_DESK_TEST_PG:-postgres://postgres@127.0.0.1:5432/postgres}"

# The real OpenAI-compatible server for tests/llm.rs: llama-server and the
# SmolLM2-135M model, built/fetched once into /var/cache/dispute-desk (outside
# the clone, keyed by version). tests/llm.rs starts the server itself on a free
# port (one shared by its tests, one more that a test stops). If it cannot be
# had, stop here: the LLM tests must fail, not skip.
llm_paths=$(bash .ci/llm-server.sh) || { echo "test.sh: .ci/llm-server.sh could not provide llama-server and its model" >&2; exit 1; }
DISPUTE_DESK_LLAMA_SERVER=$(echo "$llm_paths" | sed -n 's/^LLAMA_SERVER=//p')
DISPUTE_DESK_LLAMA_MODEL=$(echo "$llm_paths" | sed -n 's/^LLAMA_MODEL=//p')
export DISPUTE_DESK_LLAMA_SERVER DISPUTE_DESK_LLAMA_MODEL
cargo test --locked -- --test-threads=2
