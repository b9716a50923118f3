#!/usr/bin/env bash
# README's operations sequence, exactly as typed there, against a real Prefect server on a random port:
# server -> work pool -> deploy (deployments/prefect.yaml) -> process worker -> deployment run --watch.
# Prints each step's time and the flow run's final state; exits non-zero unless the run Completed.
#
#   benchmarks/deployment_roundtrip.sh          # quick: the demo recipe on a tiny model, few steps
#   benchmarks/deployment_roundtrip.sh --full   # the deployment's default parameters (the whole demo)
#   benchmarks/deployment_roundtrip.sh [--full] --postgres   # the production server: PostgreSQL + basic auth
#   benchmarks/deployment_roundtrip.sh --full --run-id ID    # run, or resume after a failure, that run id
# With --postgres a throwaway PostgreSQL cluster (initdb in a temp dir, its own port; run as the `postgres`
# user when this runs as root) holds the server's database, and the API takes basic auth, as in README.
# At the end the run's report prints its decision (the gate, with the confidence intervals).
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate

WORK=$(mktemp -d)
export PREFECT_HOME="$WORK/prefect" PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
PIDS=()
cleanup() {
  # Each background command leads its own process group (setsid): the server's uvicorn child and the
  # worker's flow-run processes go with it. SIGINT (what Ctrl-C sends, which the worker handles) first,
  # SIGKILL whatever is left after 10 s.
  for pid in "${PIDS[@]}"; do kill -INT -- "-$pid" 2>/dev/null || true; done
  for _ in $(seq 20); do
    alive=0
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.5
  done
  for pid in "${PIDS[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  # A flow run leads a session of its own, so it outlives its worker: stop those that carry this script's
  # PREFECT_HOME (and only those: other Prefect processes on the machine are not ours).
  for env in $(grep -lsz "^PREFECT_HOME=$WORK/prefect\$" /proc/[0-9]*/environ); do
    pid=${env#/proc/}; pid=${pid%/environ}
    [ "$pid" = $$ ] || kill -KILL "$pid" 2>/dev/null || true
  done
  if [ -n "${PG_PID:-}" ]; then  # PostgreSQL's "fast" shutdown, before its data folder goes
    kill -INT "$PG_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$PG_PID" 2>/dev/null || break; sleep 0.2; done
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
FULL=0 POSTGRES=0 RUN_ID=""
while [ $# -gt 0 ]; do
  case "$1" in
    --full) FULL=1 ;;
    --postgres) POSTGRES=1 ;;
    --run-id) RUN_ID="$2"; shift ;;  # with --full: run (or resume) this run id
    *) echo "usage: $0 [--full [--run-id ID]] [--postgres]" >&2; exit 2 ;;
  esac
  shift
done
free_port() { python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
step() { printf '%-40s %6.1fs\n' "$1" "$(python -c "import time; print(time.time()-$2)")"; }

if [ $POSTGRES = 1 ]; then
  t=$(date +%s.%N)
  PG_BIN=$(dirname "$(readlink -f "$(command -v initdb || ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)")")
  PG_PORT=$(free_port)
  mkdir -p "$WORK/pg"
  AS_PG=()
  if [ "$(id -u)" = 0 ]; then chmod 711 "$WORK"; chown postgres "$WORK/pg"; AS_PG=(runuser -u postgres --); fi
  "${AS_PG[@]}" "$PG_BIN/initdb" -D "$WORK/pg/data" -A trust -U postgres --no-sync >/dev/null
  "${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/pg.log" -w start \
    -o "-p $PG_PORT -k $WORK/pg -c listen_addresses=127.0.0.1" >/dev/null
  PG_PID=$(head -n 1 "$WORK/pg/data/postmaster.pid")
  "${AS_PG[@]}" "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "create database prefect"
  export PREFECT_API_DATABASE_CONNECTION_URL="postgresql+asyncpg://postgres@127.0.0.1:$PG_PORT/prefect"
  export PREFECT_SERVER_API_AUTH_STRING="admin:$(python -c 'import secrets; print(secrets.token_hex(8))')"
  export PREFECT_API_AUTH_STRING="$PREFECT_SERVER_API_AUTH_STRING"
  step "PostgreSQL (port $PG_PORT)" "$t"
fi

PORT=$(free_port)
t=$(date +%s.%N)
PREFECT_UI_API_URL="http://127.0.0.1:$PORT/api" setsid prefect server start --host 127.0.0.1 --port "$PORT" >"$WORK/server.log" 2>&1 &
PIDS+=($!)
disown  # cleanup() stops it; no job-control notice
export PREFECT_API_URL="http://127.0.0.1:$PORT/api"
for _ in $(seq 120); do
  curl -fsS "$PREFECT_API_URL/health" >/dev/null 2>&1 && break
  sleep 0.5
done
curl -fsS "$PREFECT_API_URL/health" >/dev/null || { cat "$WORK/server.log"; exit 1; }
step "prefect server start" "$t"

t=$(date +%s.%N)
prefect work-pool create cptflow-process --type process >/dev/null
prefect work-pool create cptflow-gpu --type process >/dev/null
step "prefect work-pool create" "$t"

t=$(date +%s.%N)
prefect --no-prompt deploy --all --prefect-file deployments/prefect.yaml >"$WORK/deploy.log" 2>&1 \
  || { cat "$WORK/deploy.log"; exit 1; }
step "prefect deploy" "$t"

setsid prefect worker start --pool cptflow-process --install-policy never >"$WORK/worker.log" 2>&1 &
PIDS+=($!)
disown

if [ $FULL = 1 ]; then
  PARAMS=()
  [ -z "$RUN_ID" ] || PARAMS=(--param "overrides=[\"run_id=$RUN_ID\"]")
else
  # A tiny model (tokenizer trained on the demo site's text) and a short training keep this to a minute.
  python - "$WORK/tiny" <<'PY'
import sys
import trafilatura
from cpt_core.train.base_model import build_tiny_llama
from cpt_core.demo.site import DemoSiteConfig, build_site
site = build_site(DemoSiteConfig(n_facts=16))
corpus = [t for p in site.pages.values() if p.content_type.startswith("text/html")
          for t in [trafilatura.extract(p.body.decode("utf-8", "replace"))] if t]
build_tiny_llama(sys.argv[1], corpus, vocab_size=600, seq_len=128)
PY
  OVERRIDES=$(printf '["root=%s","ingest.sources.0.site.port=%s","ingest.sources.0.site.n_facts=16","base_model.source=%s",'`
    `'"train.max_steps=4","train.precision=fp32","tokenize.seq_len=64","tokenize.replay.max_chars=6000",'`
    `'"evaluate.bpb_seq_len=64","evaluate.general_heldout.max_chars=4000","evaluate.domain_max_chars=4000"]' \
    "$WORK/data" "$(free_port)" "$WORK/tiny")
  PARAMS=(--param "overrides=$OVERRIDES")
fi

t=$(date +%s.%N)
set +e
prefect deployment run 'knowledge-refresh/weekly' "${PARAMS[@]}" --watch --watch-timeout 7200 >"$WORK/run.log" 2>&1
rc=$?
set -e
step "prefect deployment run --watch" "$t"
tail -n 3 "$WORK/run.log"
if [ $rc -ne 0 ]; then
  echo "--- worker log"; tail -n 60 "$WORK/worker.log"
  exit $rc
fi
echo "deployment round trip: flow run Completed"
if [ $POSTGRES = 1 ]; then
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$PREFECT_API_URL/flow_runs/filter" -H 'Content-Type: application/json' -d '{}')
  echo "server database: PostgreSQL; an API request without credentials: HTTP $code"
fi
REPORT=$(grep -o "[^ ']*report/run_report.md" "$WORK/worker.log" | tail -n 1 || true)
[ -n "$REPORT" ] || REPORT=$(ls -t demo-data/runs/*/report/run_report.md "$WORK"/data/runs/*/report/run_report.md 2>/dev/null | head -n 1 || true)
if [ -n "$REPORT" ] && [ -f "$REPORT" ]; then
  echo "--- $REPORT: decision"
  sed -n '/^## Base vs trained/,/^## [^BD]/p' "$REPORT" | head -n 40
fi
