#!/usr/bin/env bash
# Build the ragserve image and run the compose topology once: nginx, 2 API replicas, 2 workers,
# PostgreSQL 18 + pgvector; then a smoke test through nginx on 127.0.0.1:8000.
#
#   deploy/docker-smoke.sh            # from the repository root; a running Docker engine
#
# Works without any registry: the base image is Debian made with debootstrap and
# `docker import`, the wheels are built on the host and the image build runs with
# `--network none`. What differs from production is listed in deploy/docker-compose.smoke.yml.
# Figures and the exact commands: docs/DEPLOY.md, "Docker image, built and run here".
#
# Environment:
#   SUITE=bookworm        Debian release of the base image (its python3 must be PYTHON's minor)
#   MIRROR=http://deb.debian.org/debian
#   PYTHON=python3        builds the wheelhouse (same CPython minor version as the base image)
#   REBUILD_BASE=1        rebuild ragserve-base:debian / ragserve-nginx:debian even if present
#   REUSE_IMAGE=1         keep an existing ragserve:0.1.0 (no wheelhouse, no build)
#   KEEP=1                leave the containers running at the end (default: compose down -v)
#   OUT=/tmp/ragserve-docker-smoke   logs and timings
set -euo pipefail

cd "$(dirname "$0")/.."
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
PYTHON=${PYTHON:-python3}
OUT=${OUT:-/tmp/ragserve-docker-smoke}
BASE=ragserve-base:debian
NGINX_IMAGE=ragserve-nginx:debian
IMAGE=ragserve:0.1.0
PROJECT=ragserve-smoke
URL=http://127.0.0.1:8000  # nginx's published port: the only address this script talks to
mkdir -p "$OUT"

say() { printf '[docker-smoke %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
fail() { say "FAILED: $*"; exit 1; }
timing() { printf '%s %s\n' "$1" "$2" >> "$OUT/timings.txt"; say "$1: $2"; }
: > "$OUT/timings.txt"
started=$(date +%s)

docker info > /dev/null 2>&1 || fail "no Docker engine (start dockerd first)"
if docker compose version > /dev/null 2>&1; then
    compose=(docker compose)
elif command -v docker-compose > /dev/null; then
    # 1.x reads deploy.replicas only with --compatibility.
    compose=(docker-compose --compatibility)
else
    fail "neither 'docker compose' nor 'docker-compose' (apt-get install docker-compose)"
fi
compose+=(-p "$PROJECT" -f deploy/docker-compose.yml -f deploy/docker-compose.smoke.yml)
say "compose: ${compose[*]}"

# -- 1. base images: Debian minbase + python3 (ragserve), + nginx (load balancer) ------------
t=$(date +%s)
if [ -n "${REBUILD_BASE:-}" ] || ! docker image inspect "$BASE" "$NGINX_IMAGE" > /dev/null 2>&1; then
    rootfs=$(mktemp -d /tmp/ragserve-rootfs.XXXXXX)
    say "debootstrap $SUITE into $rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv "$SUITE" "$rootfs" "$MIRROR" \
        > "$OUT/debootstrap.log" 2>&1 || fail "debootstrap (see $OUT/debootstrap.log)"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | docker import -c 'CMD ["python3"]' - "$BASE" > /dev/null
    # The same tree plus Debian's nginx and envsubst (what the nginx image's entrypoint uses).
    chroot "$rootfs" sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends nginx-light gettext-base \
        && apt-get clean && rm -rf /var/lib/apt/lists/*' > "$OUT/nginx-chroot.log" 2>&1 \
        || fail "nginx in the chroot (see $OUT/nginx-chroot.log)"
    tar -C "$rootfs" -c . | docker import -c 'CMD ["nginx", "-g", "daemon off;"]' - \
        "$NGINX_IMAGE" > /dev/null
    rm -rf "$rootfs"
fi
timing base_images_s $(($(date +%s) - t))

# -- 2. wheelhouse, for the base image's CPython ------------------------------------------
if [ -n "${REUSE_IMAGE:-}" ] && docker image inspect "$IMAGE" > /dev/null 2>&1; then
    say "REUSE_IMAGE: skipping the wheelhouse and the build of $IMAGE"
else
image_py=$(docker run --rm --network none "$BASE" python3 -c \
    'import sys; print("%d.%d" % sys.version_info[:2])')
host_py=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[ "$image_py" = "$host_py" ] \
    || fail "$BASE has Python $image_py, $PYTHON is $host_py: the wheels would not install"
t=$(date +%s)
rm -rf wheelhouse
"$PYTHON" -m pip wheel -q . -w wheelhouse/ > "$OUT/wheelhouse.log" 2>&1 \
    || fail "pip wheel (see $OUT/wheelhouse.log)"
timing wheelhouse_s $(($(date +%s) - t))

# -- 3. the image, without network --------------------------------------------------------
t=$(date +%s)
DOCKER_BUILDKIT=0 docker build --network none -f deploy/Dockerfile --build-arg BASE="$BASE" \
    -t "$IMAGE" . > "$OUT/build.log" 2>&1 || fail "docker build (see $OUT/build.log)"
timing image_build_s $(($(date +%s) - t))
fi
timing image_size_mb $(($(docker image inspect -f '{{.Size}}' "$IMAGE") / 1000000))
timing base_image_size_mb $(($(docker image inspect -f '{{.Size}}' "$BASE") / 1000000))

# -- 4. the topology --------------------------------------------------------------------
down() {
    "${compose[@]}" logs --no-color > "$OUT/compose.log" 2>&1 || true
    if [ -z "${KEEP:-}" ]; then
        "${compose[@]}" down -v --remove-orphans > "$OUT/down.log" 2>&1 || true
    fi
}
trap down EXIT
"${compose[@]}" down -v --remove-orphans > /dev/null 2>&1 || true
t=$(date +%s)
"${compose[@]}" up -d --no-build > "$OUT/up.log" 2>&1 || fail "compose up (see $OUT/up.log)"
containers() { docker ps --filter "label=com.docker.compose.project=$PROJECT" \
    --filter "label=com.docker.compose.service=$1" --format '{{.Names}}' | sort; }
for service in api worker; do
    n=$(containers "$service" | wc -l)
    [ "$n" = 2 ] || fail "$n $service containers running, the compose file asks for 2"
done

# The smoke client: Python's standard library only, against nginx's published port.
client() {
    "$PYTHON" - "$URL" "$@" <<'PY'
import json, sys, time, uuid, urllib.error, urllib.request

url, command, *args = sys.argv[1:]

def call(method, path, body=None, key=None):
    """One request; 502/503/504 and connection errors are retried (same Idempotency-Key)."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data else {}
    if key:
        headers["Idempotency-Key"] = key
    for attempt in range(20):
        request = urllib.request.Request(url + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            if error.code not in (502, 503, 504):
                return error.code, error.read().decode(errors="replace")
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{method} {path}: no answer after retries")

def wait_done(job_ids, timeout):
    deadline, jobs = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        for job_id in job_ids:
            if jobs.get(job_id, {}).get("status") not in ("succeeded", "failed", "cancelled"):
                jobs[job_id] = call("GET", f"/v1/jobs/{job_id}")[1]
        if all(j["status"] in ("succeeded", "failed", "cancelled") for j in jobs.values()):
            return jobs
        time.sleep(0.3)
    raise SystemExit(f"jobs not finished in {timeout} s: {[j['status'] for j in jobs.values()]}")

if command == "ready":
    deadline = time.monotonic() + float(args[0])
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=3) as response:
                if response.status == 200:
                    print("readyz 200")
                    raise SystemExit(0)
        except (OSError, urllib.error.HTTPError):
            pass
        time.sleep(1)
    raise SystemExit("readyz never answered 200")
elif command == "ingest":
    text = (
        "Ingrid Solberg keeps the lighthouse on Skerry Island. The ferry to the island "
        "leaves from Vardholm twice a day. Fishing boats dock in the north harbour."
    )
    body = {"documents": [{"text": text, "source": "skerry.txt", "metadata": {}}]}
    status, job = call("POST", "/v1/collections/smoke/documents", body, str(uuid.uuid4()))
    assert status == 202, (status, job)
    result = wait_done([job["job_id"]], 120)[job["job_id"]]
    assert result["status"] == "succeeded", result
    print("ingest:", result["result"]["documents"])
elif command == "jobs":
    count, stop_after_submit = int(args[0]), args[1:]
    ids = []
    for _ in range(count):
        body = {"query": "Who keeps the lighthouse on Skerry Island?", "collection": "smoke"}
        status, job = call("POST", "/v1/jobs", body, str(uuid.uuid4()))
        assert status == 202, (status, job)
        ids.append(job["job_id"])
    print(f"submitted {count} jobs", flush=True)
    if stop_after_submit:  # a shell command, run while the jobs are in flight
        import subprocess
        subprocess.run(stop_after_submit, check=True)
    jobs = wait_done(ids, 180)
    bad = [j for j in jobs.values() if j["status"] != "succeeded"]
    assert not bad, bad
    for job in jobs.values():
        assert "Solberg" in job["result"]["answer"], job["result"]
        assert job["result"]["sources"][0]["source"] == "skerry.txt", job["result"]
    print(f"{count} jobs succeeded; answer: {next(iter(jobs.values()))['result']['answer']!r}")
PY
}

client ready 180 || fail "/readyz through nginx"
timing up_until_ready_s $(($(date +%s) - t))
t=$(date +%s)
client ingest || fail "ingest"
client jobs 10 || fail "10 jobs"

# SIGTERM one API replica and one worker (docker stop: SIGTERM, SIGKILL after the grace
# period) right after submitting 10 more jobs (the extractive answerer needs ~0.1 s a job, so
# most are done by then); the other replica and worker finish them and take new ones.
api_victim=$(containers api | head -1)
worker_victim=$(containers worker | head -1)
say "docker stop $api_victim $worker_victim, right after submitting 10 jobs"
stop_t=$(date +%s)
client jobs 10 sh -c 'date +%s%N > "$0"; exec docker stop -t 60 "$@"' "$OUT/stop_ns" \
    "$api_victim" "$worker_victim" \
    || fail "jobs across the stop"
timing stop_both_s $(($(date +%s) - stop_t))
stop_ns=$(cat "$OUT/stop_ns")
for victim in "$api_victim" "$worker_victim"; do
    code=$(docker inspect -f '{{.State.ExitCode}}' "$victim")
    finished_ns=$(date -d "$(docker inspect -f '{{.State.FinishedAt}}' "$victim")" +%s%N)
    say "$victim exited with $code, $(((finished_ns - stop_ns) / 1000000)) ms after docker stop"
    [ "$code" = 0 ] || fail "$victim exited $code after SIGTERM (137 = killed, no clean drain)"
done
[ "$(containers api | wc -l)" = 1 ] && [ "$(containers worker | wc -l)" = 1 ] \
    || fail "the other replicas did not stay up"
client ready 30 || fail "/readyz after the stop"
client jobs 10 || fail "10 jobs on the remaining replica and worker"
timing smoke_s $(($(date +%s) - t))
timing total_s $(($(date +%s) - started))
say "OK: logs and timings in $OUT"
