#!/usr/bin/env bash
# Run the real h2spec binary (summerwind/h2spec) against h2serve, when it is
# installed. Starts h2serve on 127.0.0.1 with a throwaway certificate, runs
#   h2spec -t -k -h 127.0.0.1 -p PORT        (TLS)
#   h2spec -t -k -h 127.0.0.1 -p PORT -S     (TLS, strict)
#   h2spec -h 127.0.0.1 -p PORT -S           (h2c, strict; h2serve --plaintext)
# prints each summary line, and exits 1 if any run had a failure.
# Without h2spec on PATH it says so and exits 0.
#
# Usage: h2spec/run_real_h2spec.sh [MODULE:APP]     (default tests.apps:hello)
# Environment: H2SERVE_CMD (default: h2serve on PATH, else .venv python -m h2serve),
#              H2SPEC_TIMEOUT (seconds per case, default 2), H2SPEC_JUNIT_DIR.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
APP="${1:-tests.apps:hello}"
TIMEOUT="${H2SPEC_TIMEOUT:-2}"

if ! command -v h2spec >/dev/null 2>&1; then
    echo "h2spec not installed: skipping the real h2spec run."
    echo "(Put the h2spec v2.6 binary on PATH to use this script;"
    echo " our reimplementation runs anywhere: python -m h2spec -t -p PORT --strict)"
    exit 0
fi

if [ -n "${H2SERVE_CMD:-}" ]; then
    read -r -a SERVER <<<"$H2SERVE_CMD"
elif command -v h2serve >/dev/null 2>&1; then
    SERVER=(h2serve)
elif [ -x "$ROOT/.venv/bin/python" ]; then
    SERVER=("$ROOT/.venv/bin/python" -m h2serve)
else
    SERVER=(python3 -m h2serve)
fi
PYTHON="${ROOT}/.venv/bin/python"
[ -x "$PYTHON" ] || PYTHON=python3

WORKDIR="$(mktemp -d)"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORKDIR"
}
trap cleanup EXIT

# A throwaway self-signed certificate (h2spec -k does not verify it).
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$WORKDIR/key.pem" -out "$WORKDIR/cert.pem" >/dev/null 2>&1

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_for_port() {
    local port="$1" deadline=$((SECONDS + 20))
    until "$PYTHON" -c "import socket,sys; socket.create_connection(('127.0.0.1', $port), 1).close()" 2>/dev/null; do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "h2serve exited before listening; its log:" >&2
            cat "$WORKDIR/server.log" >&2
            return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "h2serve did not listen on port $port within 20 s" >&2
            return 1
        fi
        sleep 0.2
    done
}

start_server() {  # start_server PORT [extra h2serve args...]
    local port="$1"
    shift
    (cd "$ROOT" && PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" exec "${SERVER[@]}" \
        --bind "127.0.0.1:$port" --threads 2 "$@" "$APP") >"$WORKDIR/server.log" 2>&1 &
    SERVER_PID=$!
    wait_for_port "$port"
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

STATUS=0
SUMMARIES=()

run_h2spec() {  # run_h2spec LABEL h2spec-args...
    local label="$1"
    shift
    local out="$WORKDIR/$label.out" junit=()
    if [ -n "${H2SPEC_JUNIT_DIR:-}" ]; then
        mkdir -p "$H2SPEC_JUNIT_DIR"
        junit=(-j "$H2SPEC_JUNIT_DIR/h2spec-$label.xml")
    fi
    echo "== h2spec $label: h2spec $* ${junit[*]}"
    if ! h2spec -o "$TIMEOUT" "${junit[@]}" "$@" | tee "$out"; then
        STATUS=1
    fi
    SUMMARIES+=("$label: $(grep -E '^[0-9]+ tests, ' "$out" | tail -n 1 || echo 'no summary line')")
}

PORT="$(free_port)"
start_server "$PORT" --certfile "$WORKDIR/cert.pem" --keyfile "$WORKDIR/key.pem"
run_h2spec tls -t -k -h 127.0.0.1 -p "$PORT"
run_h2spec tls-strict -t -k -h 127.0.0.1 -p "$PORT" -S
stop_server

PORT="$(free_port)"
start_server "$PORT" --plaintext
run_h2spec h2c-strict -h 127.0.0.1 -p "$PORT" -S
stop_server

echo
echo "== summary (h2spec $(h2spec --version 2>/dev/null | head -n 1 || echo '?'), app $APP)"
for line in "${SUMMARIES[@]}"; do
    echo "  $line"
done
exit "$STATUS"
