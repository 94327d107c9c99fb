#!/usr/bin/env bash
# Cluster benchmark (BENCHMARKS.md, "Cluster"): hold throughput with 1, 2 and 3 nodes in
# cluster mode against one plain PostgreSQL node, and a forwarded hold against a local one.
#
#   benches/cluster.sh                      # everything: 3 rounds, 10 s loads (~15 minutes)
#   REPS=1 DURATION=5s benches/cluster.sh   # a quick pass
#
# Starts its own throwaway PostgreSQL 15 cluster (max_connections=200, shared_buffers=512MB,
# as in BENCHMARKS.md) and redis-server on free ports, then for each round and each
# configuration (base = cluster.enabled=false; n1, n2, n3 = that many cluster nodes):
#   starts the nodes (release build, demo off, cheap argon2, RUST_LOG=warn), the first one
#   alone (migrations) and then the others, waits for /health/ready on each and for every
#   node's /admin/cluster to show every shard owned by the member placement gives it;
#   creates 6 events of SEATS seats and runs 6 loadgen processes at once, CONCURRENCY/6
#   workers each, each against its own event, spread evenly over the nodes with events
#   chosen (by owner) so that exactly (N-1)/N of the loadgens talk to a node that does not
#   own their event (clients whose connections a load balancer put on a random node);
#   then the same 6 loadgens open loop at a fixed total rate (RATE holds/s, RATE/6 each), so
#   that every configuration carries the same load and exactly (N-1)/N of the requests reach
#   a non-owner (in the closed loop the loadgens at an owner go faster and send more);
#   with 2 nodes also runs the forwarded/local pair: one event owned by node-1, loadgen
#   (CONCURRENCY workers) at node-1 (local) and at node-2 (every request forwarded),
#   alternating which goes first;
#   then stops the nodes (SIGTERM).
# Configurations are interleaved round by round so that the noise of the shared machine
# falls on all of them. Results: $OUT/summary.md (tables, medians, every run's raw figures),
# $OUT/runs.jsonl, each loadgen's report under $OUT/runs/, node logs under $OUT/logs/.
#
# Settings (environment): REPS (3), DURATION (10s), FWD_DURATION (15s; the forwarded/local
# runs sell their event out), SEATS (100000), CONCURRENCY (48, total for every
# configuration), RATE (1500 holds/s for the open-loop runs; 0: none), BUYERS (200 per
# loadgen), FWD_BUYERS (1000), CONFIGS ("base n1 n2 n3"),
# OUT (target/cluster-bench/<UTC time>), NO_BUILD=1 to use target/release as it is.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
export REPS=${REPS:-3} DURATION=${DURATION:-10s} FWD_DURATION=${FWD_DURATION:-15s} SEATS=${SEATS:-100000}
export CONCURRENCY=${CONCURRENCY:-48} BUYERS=${BUYERS:-200} FWD_BUYERS=${FWD_BUYERS:-1000}
export RATE=${RATE:-1500} CONFIGS=${CONFIGS:-"base n1 n2 n3"}
export OUT=${OUT:-$ROOT/target/cluster-bench/$(date -u +%Y%m%dT%H%M%SZ)}
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin | tail -1)}
REDIS=${REDIS:-$(command -v redis-server || echo /usr/bin/redis-server)}

if [[ ${NO_BUILD:-0} != 1 ]]; then
  cargo build --release -p tiketi-benches --bin loadgen -p tiketi-api --bin tiketi
fi

export WORK=$(mktemp -d /tmp/tiketi-cluster-bench.XXXXXX)
chmod 755 "$WORK"
mkdir -p "$OUT/logs" "$WORK/bin" "$WORK/pg" "$WORK/redis"
: >"$WORK/pids"
PG_STARTED=0
REDIS_PID=

as_postgres() { if [[ $EUID -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

cleanup() {
  local rc=$?
  set +e
  # Only what this script started: nodes and loadgens (their ids are in $WORK/pids), Redis,
  # the PostgreSQL cluster.
  while read -r pid; do kill -TERM "$pid" 2>/dev/null; done <"$WORK/pids"
  sleep 1
  while read -r pid; do kill -KILL "$pid" 2>/dev/null; done <"$WORK/pids"
  [[ -n $REDIS_PID ]] && kill "$REDIS_PID" 2>/dev/null && wait "$REDIS_PID" 2>/dev/null
  if [[ $PG_STARTED == 1 ]]; then
    cp "$WORK/pg/log" "$OUT/logs/postgresql.log" 2>/dev/null
    as_postgres "$PGBIN/pg_ctl" -D "$WORK/pg/data" -m fast -w stop >/dev/null
  fi
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Copies, so that a rebuild in the working tree during the run changes nothing.
cp target/release/tiketi target/release/loadgen "$WORK/bin/"
git rev-parse HEAD >"$OUT/commit" 2>/dev/null || true
git status --short >>"$OUT/commit" 2>/dev/null || true

free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}
read -r PGPORT REDIS_PORT NODE_PORT_1 NODE_PORT_2 NODE_PORT_3 <<<"$(free_ports 5)"
export PGPORT REDIS_PORT NODE_PORTS="$NODE_PORT_1 $NODE_PORT_2 $NODE_PORT_3"

# PostgreSQL, as in BENCHMARKS.md.
[[ $EUID -eq 0 ]] && chown postgres:postgres "$WORK/pg"
as_postgres "$PGBIN/initdb" -D "$WORK/pg/data" -U postgres --auth=trust >/dev/null
as_postgres "$PGBIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/log" -w start \
  -o "-p $PGPORT -k $WORK/pg -c max_connections=200 -c shared_buffers=512MB" >/dev/null
PG_STARTED=1
for db in base n1 n2 n3; do
  psql -qX -h 127.0.0.1 -p "$PGPORT" -U postgres -c "create database $db"
done
export PGPID=$(head -1 "$WORK/pg/data/postmaster.pid")

"$REDIS" --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK/redis" \
  --logfile "$OUT/logs/redis.log" &
REDIS_PID=$!
export REDIS_PID
for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

echo "cluster bench: out $OUT; PostgreSQL :$PGPORT, Redis :$REDIS_PORT, nodes :$NODE_PORTS"
echo "nproc $(nproc); load $(cut -d' ' -f1-3 /proc/loadavg)"

cat >"$WORK/bench.py" <<'PYEOF'
"""Orchestration: nodes, events, loadgens, figures. Run by benches/cluster.sh."""
import json, os, re, statistics, subprocess, sys, threading, time, urllib.error, urllib.request, uuid
from datetime import datetime, timedelta, timezone

E = os.environ
WORK, OUT, BIN = E["WORK"], E["OUT"], os.path.join(E["WORK"], "bin")
PGPORT, REDIS_PORT = E["PGPORT"], E["REDIS_PORT"]
PORTS = [int(p) for p in E["NODE_PORTS"].split()]
REPS, DURATION, FWD_DURATION, RATE = int(E["REPS"]), E["DURATION"], E["FWD_DURATION"], int(E["RATE"])
SEATS, CONC, BUYERS, FWD_BUYERS = int(E["SEATS"]), int(E["CONCURRENCY"]), int(E["BUYERS"]), int(E["FWD_BUYERS"])
CONFIGS = E["CONFIGS"].split()
K = 6  # loadgen processes in every configuration (divisible by 1, 2 and 3 nodes)
ADMIN_EMAIL, ADMIN_PASSWORD = "admin@tiketi.local", "admin-bench-password"
SECRET = "bench-secret-that-is-at-least-32-bytes-long"
TICK = os.sysconf("SC_CLK_TCK")


def log(*a):
    print(*a, flush=True)


# ---- placement, as cluster/src/placement.rs (checked against /admin/actors below) ----
def fnv1a(bs):
    h = 0xCBF29CE484222325
    for b in bs:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def mix(z):
    m = 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    return z ^ (z >> 31)


def shard_of(event):
    return mix(fnv1a(uuid.UUID(event).bytes)) % 256


# ---- HTTP ----
def call(method, url, token=None, body=None, timeout=60):
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, method=method, data=data, headers=headers)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        raw = r.read()
        return json.loads(raw) if raw else None


def text(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def url(i):
    return f"http://127.0.0.1:{PORTS[i]}"


def admin_token(i=0):
    return call("POST", url(i) + "/api/v1/auth/login", body={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})["token"]


def metric(i, name, labels=None):
    total = 0.0
    for line in text(url(i) + "/metrics").splitlines():
        m = re.match(r"^([a-z_]+)(\{[^}]*\})? ([0-9.eE+-]+)$", line)
        if m and m.group(1) == name and (labels is None or labels in (m.group(2) or "")):
            total += float(m.group(3))
    return total


def forwarded(n):
    """Per node: tiketi_cluster_forwarded_requests_total by outcome ("fwd_ok", ...), the
    live-stream resyncs of followers (tiketi_cluster_stream_resyncs_total), and the journal's
    store transactions and change sets (tiketi_journal_batch_size)."""
    out = []
    for i in range(n):
        by = {}
        for line in text(url(i) + "/metrics").splitlines():
            m = re.match(r'^tiketi_cluster_forwarded_requests_total\{outcome="([a-z_]+)"\} ([0-9.eE+-]+)$', line)
            if m:
                by["fwd_" + m.group(1)] = float(m.group(2))
            m = re.match(r'^tiketi_cluster_stream_resyncs_total ([0-9.eE+-]+)$', line)
            if m:
                by["stream_resyncs"] = float(m.group(1))
            m = re.match(r'^tiketi_journal_batch_size_(count|sum) ([0-9.eE+-]+)$', line)
            if m:  # store transactions of the write-behind journal, and the change sets in them
                by["commits" if m.group(1) == "count" else "change_sets"] = float(m.group(2))
        out.append(by)
    return out


# ---- CPU accounting ----
def proc_cpu(pid, children=False):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        t = int(fields[11]) + int(fields[12])  # utime + stime
        if children:
            t += int(fields[13]) + int(fields[14])  # cutime + cstime (exited children)
        return t / TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def pg_cpu():
    pm = int(E["PGPID"])
    total = proc_cpu(pm, children=True)
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pm:
                total += proc_cpu(int(d))
    return total


def machine():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v) - v[3] - v[4]) / TICK, sum(v) / TICK  # busy, total (all CPUs)


def cpu_snapshot(nodes):
    busy, total = machine()
    return {"nodes": sum(proc_cpu(p.pid) for p in nodes), "pg": pg_cpu(), "redis": proc_cpu(int(E["REDIS_PID"])),
            "busy": busy, "total": total, "t": time.monotonic()}


class Sampler:
    """CPU snapshots every 0.25 s while loadgens run, so that CPU can be taken over the window
    in which every loadgen was sending (not their set-up and consistency check)."""

    def __init__(self, nodes):
        self.nodes, self.samples, self.done = nodes, [cpu_snapshot(nodes)], threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        while not self.done.wait(0.25):
            self.samples.append(cpu_snapshot(self.nodes))

    def stop(self):
        self.done.set()
        self.thread.join()
        self.samples.append(cpu_snapshot(self.nodes))

    def at(self, t):
        s = self.samples
        for a, b in zip(s, s[1:]):
            if a["t"] <= t <= b["t"]:
                f = (t - a["t"]) / max(b["t"] - a["t"], 1e-9)
                return {k: a[k] + (b[k] - a[k]) * f for k in a}
        return dict(s[0] if t < s[0]["t"] else s[-1])


def cumulative(report_dir):
    """Holds granted by x seconds into a loadgen's load, from its per-second series."""
    with open(report_dir + "/report.json") as f:
        r = json.load(f)
    points, prev = [(0.0, 0)], 0
    for row in r["series"]:
        end = min(row["second"] + 1.0, r["elapsed_s"])
        prev = row["seats_held_total"]
        points.append((end, prev))

    def c(x):
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            if x0 <= x <= x1:
                return y0 + (y1 - y0) * (x - x0) / max(x1 - x0, 1e-9)
        return 0 if x < 0 else points[-1][1]
    return c


def window(sampler, procs, results):
    """CPU and holds over the time every loadgen was sending, 0.5 s trimmed at each end."""
    spans = [(p.t0 + r["setup_s"], p.t0 + r["setup_s"] + r["elapsed_s"]) for p, r in zip(procs, results) if "setup_s" in r]
    if len(spans) != len(procs):
        return None
    ws, we = max(s for s, _ in spans) + 0.5, min(e for _, e in spans) - 0.5
    if we - ws < 1.0:
        return None
    holds = sum(cumulative(p.out)(we - s) - cumulative(p.out)(ws - s) for p, (s, _) in zip(procs, spans))
    a, b = sampler.at(ws), sampler.at(we)
    cpu = {k: round(b[k] - a[k], 2) for k in ("nodes", "pg", "redis", "busy")}
    return {"s": round(we - ws, 2), "holds": round(holds), "holds_per_s": round(holds / (we - ws), 1),
            "cpu": cpu, "server_cores": round((cpu["nodes"] + cpu["pg"] + cpu["redis"]) / (we - ws), 3),
            "machine_busy_cores": round(cpu["busy"] / (we - ws), 2)}


def cpu_delta(a, b):
    wall = b["t"] - a["t"]
    d = {k: round(b[k] - a[k], 2) for k in ("nodes", "pg", "redis", "busy")}
    d["wall_s"] = round(wall, 2)
    d["machine_busy_cores"] = round((b["busy"] - a["busy"]) / wall, 2)
    return d


# ---- nodes ----
def record_pid(pid):
    with open(os.path.join(WORK, "pids"), "a") as f:
        f.write(f"{pid}\n")


def node_env(cfg, i):
    env = dict(os.environ)
    env.update({
        "TIKETI_DEMO__ENABLED": "false", "TIKETI_AUTH__ADMIN_EMAIL": ADMIN_EMAIL,
        "TIKETI_AUTH__ADMIN_PASSWORD": ADMIN_PASSWORD, "TIKETI_AUTH__ARGON2_MEMORY_KIB": "256",
        "TIKETI_AUTH__ARGON2_ITERATIONS": "1", "TIKETI_LOG__LEVEL": "warn", "RUST_LOG": "warn",
        "TIKETI_AUTH__JWT_SECRET": SECRET, "TIKETI_SERVER__PORT": str(PORTS[i]),
        "TIKETI_STORE__KIND": "postgres",
        "TIKETI_STORE__DATABASE_URL": f"postgres://postgres@127.0.0.1:{PGPORT}/{cfg}",
    })
    if cfg != "base":
        env.update({"TIKETI_CLUSTER__ENABLED": "true", "TIKETI_CLUSTER__NODE_ID": f"node-{i + 1}",
                    "TIKETI_CLUSTER__REDIS_URL": f"redis://127.0.0.1:{REDIS_PORT}"})
    return env


class Failed(Exception):
    pass


def tail(path, n=40):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError as e:
        return str(e)


def start_node(cfg, rnd, i):
    path = f"{OUT}/logs/{cfg}-r{rnd}-node{i + 1}.log"
    p = subprocess.Popen([os.path.join(BIN, "tiketi"), "serve"], env=node_env(cfg, i), stdout=open(path, "w"),
                         stderr=subprocess.STDOUT, start_new_session=True)
    p.log = path
    record_pid(p.pid)
    return p


def wait_ready(p, i, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise Failed(f"node-{i + 1} exited with {p.returncode} before it was ready:\n{tail(p.log)}")
        try:
            urllib.request.urlopen(url(i) + "/health/ready", timeout=2)
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise Failed(f"node-{i + 1} not ready after {timeout} s:\n{tail(p.log)}")


def cluster_view(i, token):
    return call("GET", url(i) + "/api/v1/admin/cluster", token)


def settled(n, token):
    """Every node sees n live members and every shard owned, with a running lease, by the
    member placement gives it; all nodes agree. Returns (ok, why)."""
    owners = None
    for i in range(n):
        v = cluster_view(i, token)
        alive = sorted(m["nodeId"] for m in v["members"] if m["alive"] and not m["leaving"])
        if not v["ready"] or alive != [f"node-{j + 1}" for j in range(n)]:
            return False, f"node-{i + 1}: ready={v['ready']} alive={alive}"
        bad = [s for s in v["shards"] if not s["owner"] or s["owner"] != s["placed"] or s["leaseLeftMs"] <= 0]
        if bad:
            return False, f"node-{i + 1}: {len(bad)} shards not settled, e.g. {bad[0]}"
        o = [s["owner"] for s in v["shards"]]
        if owners is not None and o != owners:
            return False, f"node-{i + 1} disagrees on owners"
        owners = o
    return True, owners


def start_nodes(cfg, rnd, n):
    nodes = []
    t0 = time.monotonic()
    try:
        # The first node alone: two nodes migrating an empty database at once race (refinery
        # takes no lock).
        nodes.append(start_node(cfg, rnd, 0))
        wait_ready(nodes[0], 0)
        nodes += [start_node(cfg, rnd, i) for i in range(1, n)]
        for i in range(1, n):
            wait_ready(nodes[i], i)
        ready_s = time.monotonic() - t0
        token = admin_token()
        settle_s = 0.0
        if cfg != "base":
            deadline = time.monotonic() + 90
            while True:
                ok, why = settled(n, token)
                if ok:
                    break
                if time.monotonic() > deadline:
                    raise Failed(f"{cfg}: cluster not settled after 90 s: {why}\n" +
                                 "\n".join(f"--- node-{i + 1}\n{tail(p.log)}" for i, p in enumerate(nodes)))
                time.sleep(0.25)
            settle_s = time.monotonic() - t0 - ready_s
        return nodes, token, round(ready_s, 2), round(settle_s, 2)
    except BaseException:
        stop_nodes(nodes)
        raise


def stop_nodes(nodes):
    codes = []
    for p in nodes:
        if p.poll() is None:
            p.terminate()
    for p in nodes:
        try:
            p.wait(timeout=40)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        codes.append(p.returncode)
    return codes


def drain(n, timeout=60):
    """Waits until every node's write-behind journal is empty."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(metric(i, "tiketi_journal_backlog") == 0 for i in range(n)):
            return
        time.sleep(0.2)
    log(f"  warning: journal backlog not empty after {timeout} s")


# ---- events ----
def event_body(seats, row=50):
    now = datetime.now(timezone.utc)
    f = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")
    rows = -(-seats // row)
    sections = []
    for s in range(-(-rows // 20)):
        rs = [{"label": f"R{r % 20 + 1}", "seats": min(seats - r * row, row)} for r in range(s * 20, min(s * 20 + 20, rows))]
        sections.append({"name": f"S{s + 1}", "tier": 0, "rows": rs})
    return {"title": f"Cluster bench {time.time_ns()}", "venue": "Loadgen Hall", "artist": "Loadgen",
            "eventDate": f(now + timedelta(days=30)), "saleStart": f(now - timedelta(minutes=1)),
            "saleEnd": f(now + timedelta(days=29)), "layout": {"tiers": [{"name": "T1", "price": 1000}], "sections": sections},
            "perUserLimit": 0, "holdTtlSeconds": 600, "maxPerReservation": 10}


CREATED = {}  # events each configuration's database got from the script (201s)
CREATE_503 = {}  # creations answered 503 (retried)


def create_event(cfg, token):
    """POST /admin/events at node-1. In cluster mode a 503 is counted and retried (see the
    summary: the facade reruns the creation on the new event's owner)."""
    for attempt in range(8):
        try:
            e = call("POST", url(0) + "/api/v1/admin/events", token, event_body(SEATS))["id"]
            CREATED[cfg] = CREATED.get(cfg, 0) + 1
            return e
        except urllib.error.HTTPError as err:
            body = err.read()[:300].decode(errors="replace")
            if err.code != 503 or attempt == 7:
                raise Failed(f"{cfg}: POST /admin/events answered {err.code}: {body}")
            CREATE_503[cfg] = CREATE_503.get(cfg, 0) + 1
            log(f"  {cfg}: POST /admin/events answered 503 ({body}); retrying")
            time.sleep(0.5)


def owner_index(cfg, owners, event):
    if cfg == "base":
        return 0
    return int(owners[shard_of(event)].split("-")[1]) - 1


# Loadgen k talks to node TARGET[n][k]; OPTIONS[n] are owner patterns (the owner of loadgen k's
# event) that each give exactly (N-1)/N forwarded loadgens with every node receiving 6/N of them.
TARGET = {1: [0] * 6, 2: [0, 0, 0, 1, 1, 1], 3: [0, 0, 1, 1, 2, 2]}
OPTIONS = {1: [[0] * 6], 2: [[0, 1, 1, 0, 1, 1], [0, 0, 1, 0, 0, 1]], 3: [[0, 1, 2, 0, 2, 1]]}


def plan_events(cfg, n, token, owners):
    pool = {i: [] for i in range(n)}
    created = 0
    while True:
        for opt in OPTIONS[n]:
            need = {i: opt.count(i) for i in range(n)}
            if all(len(pool[i]) >= need[i] for i in range(n)):
                taken = {i: iter(pool[i]) for i in range(n)}
                plan = [{"event": next(taken[o]), "target": TARGET[n][k], "owner": o} for k, o in enumerate(opt)]
                return plan, created
        if created >= 40:
            raise Failed(f"{cfg}: no owner pattern after 40 events: {[len(v) for v in pool.values()]}")
        e = create_event(cfg, token)
        created += 1
        pool[owner_index(cfg, owners, e)].append(e)


def check_owners(cfg, n, token, plan):
    """The events' actors are live where the plan says (creation activates the owner's actor)."""
    live = [set(a["eventId"] for a in call("GET", url(i) + "/api/v1/admin/actors", token)["data"]) for i in range(n)]
    for p in plan:
        where = [i for i in range(n) if p["event"] in live[i]]
        if where != [p["owner"]]:
            raise Failed(f"{cfg}: event {p['event']} expected on node-{p['owner'] + 1}, live on {[w + 1 for w in where]}"
                         " (placement.rs changed?)")


# ---- loadgen ----
def loadgen(cfg, tag, target, event, conc, buyers, prefix, duration, out, rate=None):
    os.makedirs(out, exist_ok=True)
    load = ["--rate", str(rate)] if rate else ["--concurrency", str(conc)]
    cmd = [os.path.join(BIN, "loadgen"), "burst", "--base-url", url(target), "--event", event,
           "--buyers", str(buyers), "--email-prefix", prefix, *load, "--pick", "random",
           "--duration", duration, "--quiet", "--token-cache", f"{WORK}/tokens-{cfg}-{tag}.json", "--out", out]
    p = subprocess.Popen(cmd, stdout=open(out + "/stdout.txt", "w"), stderr=subprocess.STDOUT, start_new_session=True)
    record_pid(p.pid)
    p.cmd, p.out, p.t0 = cmd, out, time.monotonic()
    return p


def finish(p):
    try:
        p.wait(timeout=300)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    res = {"exit": p.returncode, "out": os.path.relpath(p.out, OUT)}
    try:
        with open(p.out + "/report.json") as f:
            r = json.load(f)
    except (OSError, ValueError):
        res["problem"] = "no report.json: " + tail(p.out + "/stdout.txt", 15)
        return res
    hold = r["by_kind"].get("hold", {})
    lat = hold.get("latency", {})
    errors = {k: v for k, v in (r.get("errors") or {}).items() if " 409 " not in k}
    res.update({"requests": r["requests"], "holds": r["holds"], "holds_per_s": round(r["holds_per_s"], 1), "elapsed_s": round(r["elapsed_s"], 2),
                "setup_s": round(r["setup_s"], 2), "p50_ms": lat.get("p50_ms"), "p99_ms": lat.get("p99_ms"),
                "p999_ms": lat.get("p999_ms"), "conflict_rate": round(r["conflict_rate"], 4), "sold_out": r["sold_out"],
                "errors": errors, "unexpected": r.get("unexpected_errors", 0), "shed": r.get("shed", 0),
                "consistent": (r.get("consistency") or {}).get("ok"), "gen_cpu_s": round(r["generator"]["cpu_s"], 2)})
    problems = []
    if p.returncode != 0:
        problems.append(f"exit {p.returncode}")
    if errors or res["unexpected"] or res["shed"]:
        problems.append(f"errors {errors} unexpected {res['unexpected']} shed {res['shed']}")
    if res["consistent"] is not True:
        problems.append(f"consistency {(r.get('consistency') or {}).get('problems')}")
    if problems:
        res["problem"] = "; ".join(problems) + "\n" + tail(p.out + "/stdout.txt", 15)
    return res


def write(rec):
    with open(f"{OUT}/runs.jsonl", "a") as f:
        f.write(json.dumps(rec) + "\n")
    if any("problem" in l for l in rec.get("loadgens", [])):
        for l in rec["loadgens"]:
            if "problem" in l:
                log(f"  PROBLEM {l['out']}: {l['problem']}")


def fwd_sum(before, after):
    d = {}
    for b, a in zip(before, after):
        for k, v in a.items():
            d[k] = d.get(k, 0) + int(v - b.get(k, 0))
    return d


def scaling_run(cfg, rnd, n, nodes, token, owners, kind="closed"):
    plan, created = plan_events(cfg, n, token, owners)
    check_owners(cfg, n, token, plan)
    drain(n)
    f0 = forwarded(n)
    c0, load0 = cpu_snapshot(nodes), open("/proc/loadavg").read().split()[0]
    rate = RATE // K if kind == "open" else None
    sampler = Sampler(nodes)
    procs = [loadgen(cfg, f"lg{k}", p["target"], p["event"], CONC // K, BUYERS, f"lg{k}", DURATION,
                     f"{OUT}/runs/{cfg}-{kind}-r{rnd}/lg{k}", rate) for k, p in enumerate(plan)]
    results = [finish(p) for p in procs]
    sampler.stop()
    c1 = cpu_snapshot(nodes)
    f1 = forwarded(n)
    for p, res in zip(plan, results):
        res.update({"node": p["target"] + 1, "owner": p["owner"] + 1, "local": p["target"] == p["owner"]})
    reqs = sum(r.get("requests", 0) for r in results)
    fwd_reqs = sum(r.get("requests", 0) for r in results if not r["local"])
    rec = {"kind": kind, "cfg": cfg, "nodes": n, "round": rnd, "events_created": created, "loadavg_1m": load0,
           "offered": RATE if kind == "open" else None, "fwd_share": round(fwd_reqs / max(reqs, 1), 3),
           "holds_per_s": round(sum(r.get("holds_per_s", 0) for r in results), 1),
           "holds": sum(r.get("holds", 0) for r in results),
           "counters": fwd_sum(f0, f1), "cpu": cpu_delta(c0, c1), "window": window(sampler, procs, results),
           "gen_cpu_s": round(sum(r.get("gen_cpu_s", 0) for r in results), 2), "loadgens": results}
    write(rec)
    log(f"  {cfg} {kind} r{rnd}: {rec['holds_per_s']:.0f} holds/s ({rec['holds']} holds), counters {rec['counters']} "
        f"({rec['fwd_share']:.0%} of the loadgens' requests went to a non-owner), all sending: {rec['window']}, load {load0}")
    drain(n)


def fwd_run(rnd, mode, nodes, token, owners):
    cfg = "n2"
    created = 0
    while True:
        e = create_event(cfg, token)
        created += 1
        if owner_index(cfg, owners, e) == 0:
            break
        if created > 30:
            raise Failed("no event owned by node-1 after 30")
    check_owners(cfg, 2, token, [{"event": e, "owner": 0}])
    drain(2)
    target = 0 if mode == "local" else 1
    f0 = forwarded(2)
    c0, load0 = cpu_snapshot(nodes), open("/proc/loadavg").read().split()[0]
    sampler = Sampler(nodes)
    p = loadgen(cfg, f"fwd-{mode}", target, e, CONC, FWD_BUYERS, "fw", FWD_DURATION, f"{OUT}/runs/fwd-r{rnd}-{mode}")
    res = finish(p)
    sampler.stop()
    res.update({"node": target + 1, "owner": 1, "local": target == 0})
    c1, f1 = cpu_snapshot(nodes), forwarded(2)
    rec = {"kind": "fwd", "cfg": cfg, "mode": mode, "round": rnd, "node": target + 1, "owner": 1, "loadavg_1m": load0,
           "counters": fwd_sum(f0, f1), "cpu": cpu_delta(c0, c1), "window": window(sampler, [p], [res]),
           "loadgens": [res]}
    write(rec)
    log(f"  fwd r{rnd} {mode:5}: {res.get('holds_per_s', 0):.0f} holds/s p50 {res.get('p50_ms')} p99 {res.get('p99_ms')} "
        f"ms, counters {rec['counters']}, sending: {rec['window']}, load {load0}")
    drain(2)


def run():
    nodes_of = {"base": 1, "n1": 1, "n2": 2, "n3": 3}
    for rnd in range(1, REPS + 1):
        # Each round starts one configuration later, so no configuration is always first.
        shift = (rnd - 1) % len(CONFIGS)
        for cfg in CONFIGS[shift:] + CONFIGS[:shift]:
            n = nodes_of[cfg]
            nodes = []
            try:
                nodes, token, ready_s, settle_s = start_nodes(cfg, rnd, n)
                log(f"{cfg} r{rnd}: {n} node(s) ready in {ready_s} s" + (f", settled {settle_s} s later" if cfg != "base" else ""))
                owners = settled(n, token)[1] if cfg != "base" else None
                c0 = cpu_snapshot(nodes)
                time.sleep(3)
                idle = cpu_delta(c0, cpu_snapshot(nodes))
                idle_cores = round((idle["nodes"] + idle["pg"] + idle["redis"]) / idle["wall_s"], 3)
                write({"kind": "start", "cfg": cfg, "round": rnd, "ready_s": ready_s, "settle_s": settle_s,
                       "idle": idle, "idle_server_cores": idle_cores})
                scaling_run(cfg, rnd, n, nodes, token, owners)
                if RATE:
                    scaling_run(cfg, rnd, n, nodes, token, owners, "open")
                if cfg == "n2":
                    for mode in (["local", "fwd"] if rnd % 2 else ["fwd", "local"]):
                        fwd_run(rnd, mode, nodes, token, owners)
            except urllib.error.HTTPError as e:
                log(f"{cfg} r{rnd}: FAILED: {e.url}: {e.code} {e.read()[:300]!r}")
                write({"kind": "failed", "cfg": cfg, "round": rnd, "error": f"{e.url}: {e.code}"})
            except (Failed, urllib.error.URLError, OSError, KeyError) as e:
                log(f"{cfg} r{rnd}: FAILED: {e}")
                write({"kind": "failed", "cfg": cfg, "round": rnd, "error": str(e)})
            finally:
                codes = stop_nodes(nodes)
                if any(c not in (0, None) for c in codes):
                    log(f"  {cfg} r{rnd}: node exit codes {codes} (logs in {OUT}/logs)")
    for cfg in CONFIGS:
        rows = subprocess.run(["psql", "-AtqX", "-h", "127.0.0.1", "-p", PGPORT, "-U", "postgres", cfg, "-c",
                               "select count(*) from events"], capture_output=True, text=True).stdout.strip()
        write({"kind": "store", "cfg": cfg, "created_by_script": CREATED.get(cfg, 0), "events_in_store": rows,
               "create_503": CREATE_503.get(cfg, 0)})


# ---- summary ----
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, d=0):
    return "—" if x is None else f"{x:,.{d}f}"


def summary():
    recs = [json.loads(l) for l in open(f"{OUT}/runs.jsonl")]
    names = {"base": "1 node, cluster off", "n1": "1 node, cluster", "n2": "2 nodes", "n3": "3 nodes"}
    lines = [f"nproc {os.cpu_count()}; 1-minute load average at the start of each run: " +
             ", ".join(f"{r['cfg']}-{r.get('mode') or r['kind']} r{r['round']} {r['loadavg_1m']}"
                       for r in recs if "loadavg_1m" in r), ""]
    def grp(rs, key, local):
        return med([med([l.get(key) for l in r["loadgens"] if l.get("local") == local]) for r in rs])

    # CPU is taken over the window in which every loadgen was sending ("window"), not over
    # their set-up and consistency checks.
    def cpu_per(r):  # server-side CPU seconds (nodes + PostgreSQL + Redis) per 10,000 holds
        w = r.get("window")
        return (w["cpu"]["nodes"] + w["cpu"]["pg"] + w["cpu"]["redis"]) / max(w["holds"], 1) * 1e4 if w else None

    def server_cores(r):
        return r["window"]["server_cores"] if r.get("window") else None

    def busy(r):
        return r["window"]["machine_busy_cores"] if r.get("window") else None

    def window_rate(r):
        return r["window"]["holds_per_s"] if r.get("window") else None

    def per_commit(r):
        c = r.get("counters", {})
        return c["change_sets"] / c["commits"] if c.get("commits") else None

    idle = [(cfg, [r for r in recs if r["kind"] == "start" and r["cfg"] == cfg and "idle" in r]) for cfg in names]
    lines += ["Idle, after start-up (3 s, no load): CPU of nodes + PostgreSQL + Redis, in cores: " +
              "; ".join(f"{names[cfg]} {fmt(med([r['idle_server_cores'] for r in rs]), 3)} "
                        f"(nodes {fmt(med([r['idle']['nodes'] / r['idle']['wall_s'] for r in rs]), 3)}, "
                        f"PostgreSQL {fmt(med([r['idle']['pg'] / r['idle']['wall_s'] for r in rs]), 3)})"
                        for cfg, rs in idle if rs), ""]

    for kind in ("closed", "open"):
        rows = [(cfg, [r for r in recs if r["kind"] == kind and r["cfg"] == cfg]) for cfg in ["base", "n1", "n2", "n3"]]
        rows = [(cfg, rs) for cfg, rs in rows if rs]
        if not rows:
            continue
        if kind == "closed":
            lines += [f"Closed loop, {CONC} workers in all ({K} loadgens x {CONC // K}), {DURATION}:", "",
                      "| configuration | holds/s (runs) | median holds/s | vs cluster off | hold p50 local / fwd (ms) | "
                      "hold p99 local / fwd (ms) | requests sent to a non-owner | holds/s while all sent | "
                      "server CPU s / 10k holds | server CPU (cores) | change sets / commit |",
                      "|---|---|---:|---:|---|---|---:|---:|---:|---:|---:|"]
        else:
            lines += ["", f"Open loop, {RATE:,} holds/s offered in all ({K} loadgens x {RATE // K:,}/s), {DURATION}:", "",
                      "| configuration | achieved holds/s (runs) | hold p50 local / fwd (ms) | hold p99 local / fwd (ms) | "
                      "requests sent to a non-owner | server CPU (cores) | change sets / commit | machine busy (cores) |",
                      "|---|---|---|---|---:|---:|---:|---:|"]
        base = None
        for cfg, rs in rows:
            m = med([r["holds_per_s"] for r in rs])
            base = m if cfg == "base" else base
            lat = (f"{fmt(grp(rs, 'p50_ms', True), 2)} / {fmt(grp(rs, 'p50_ms', False), 2)} | "
                   f"{fmt(grp(rs, 'p99_ms', True), 2)} / {fmt(grp(rs, 'p99_ms', False), 2)}")
            share = f"{med([r['fwd_share'] for r in rs]):.0%}"
            runs = " / ".join(fmt(r["holds_per_s"]) for r in rs)
            if kind == "closed":
                lines.append(f"| {names[cfg]} | {runs} | **{fmt(m)}** | {fmt(m / base, 2) + '×' if base else '—'} | {lat} | "
                             f"{share} | {fmt(med([window_rate(r) for r in rs]))} | {fmt(med([cpu_per(r) for r in rs]), 2)} | "
                             f"{fmt(med([server_cores(r) for r in rs]), 2)} | {fmt(med([per_commit(r) for r in rs]), 1)} |")
            else:
                lines.append(f"| {names[cfg]} | {runs} | {lat} | {share} | {fmt(med([server_cores(r) for r in rs]), 2)} | "
                             f"{fmt(med([per_commit(r) for r in rs]), 1)} | {fmt(med([busy(r) for r in rs]), 2)} |")
    fr = [r for r in recs if r["kind"] == "fwd"]
    if fr:
        lines += ["", f"Forwarded vs local, 2 nodes, one event owned by node-1, {CONC} workers, {SEATS:,} seats "
                      f"(until sold out, at most {FWD_DURATION}):", "",
                  "| hold sent to | holds/s (runs) | median holds/s | p50 ms (runs) | median p50 | p99 ms (runs) | median p99 | server CPU s / 10k holds |",
                  "|---|---|---:|---|---:|---|---:|---:|"]
        meds = {}
        for mode, label in (("local", "node-1, the owner (local)"), ("fwd", "node-2 (forwarded to node-1)")):
            rr = [r for r in fr if r["mode"] == mode]
            rs = [r["loadgens"][0] for r in rr]
            meds[mode] = {k: med([x.get(k) for x in rs]) for k in ("holds_per_s", "p50_ms", "p99_ms")}
            lines.append(f"| {label} | {' / '.join(fmt(x.get('holds_per_s')) for x in rs)} | **{fmt(meds[mode]['holds_per_s'])}** | "
                         f"{' / '.join(fmt(x.get('p50_ms'), 2) for x in rs)} | **{fmt(meds[mode]['p50_ms'], 2)}** | "
                         f"{' / '.join(fmt(x.get('p99_ms'), 2) for x in rs)} | **{fmt(meds[mode]['p99_ms'], 2)}** | "
                         f"{fmt(med([cpu_per(r) for r in rr]), 2)} |")
        if all(meds[m]["holds_per_s"] for m in meds):
            l, f = meds["local"], meds["fwd"]
            pairs = {}
            for r in fr:
                pairs.setdefault(r["round"], {})[r["mode"]] = r["loadgens"][0].get("holds_per_s")
            per_round = [p["fwd"] / p["local"] for p in pairs.values() if p.get("fwd") and p.get("local")]
            lines += ["", f"forwarded / local: holds/s **{f['holds_per_s'] / l['holds_per_s']:.2f}×** "
                          f"(each round's pair: {', '.join(f'{x:.2f}' for x in per_round)}), p50 **{f['p50_ms'] / l['p50_ms']:.2f}×**, "
                          f"p99 **{f['p99_ms'] / l['p99_ms']:.2f}×**"]
    lines += ["", "Raw, every run (per loadgen: the node it sent to, its event's owner, holds/s, hold latency ms; "
                  "CPU seconds of nodes, PostgreSQL, Redis and the whole machine while all loadgens sent, and over the "
                  "whole run including set-up and checks):", "", "```"]
    for r in recs:
        if r["kind"] == "start":
            lines.append(f"{r['cfg']} r{r['round']}: ready {r['ready_s']} s, settled {r['settle_s']} s later; "
                         f"idle {r.get('idle')}")
        elif r["kind"] == "store":
            lines.append(f"{r['cfg']} database: {r['created_by_script']} events created (201) by the script, "
                         f"{r['events_in_store']} rows in events; {r['create_503']} creations answered 503")
        elif r["kind"] == "failed":
            lines.append(f"{r['cfg']} r{r['round']}: FAILED {r['error'][:3000]}")
        else:
            head = f"{r['cfg']} {r.get('mode') or r['kind']} r{r['round']}"
            tot = (f" total {r['holds_per_s']:.0f} holds/s ({r['holds']} holds), {r['fwd_share']:.0%} of requests to a non-owner;"
                   if r["kind"] != "fwd" else "")
            lines.append(f"{head}:{tot} counters {r['counters']}; while all sent {r.get('window')}; "
                         f"whole run cpu {r['cpu']}; load {r['loadavg_1m']}")
            for l in r["loadgens"]:
                lines.append(f"    node-{l.get('node')} owner node-{l.get('owner')}: {l.get('holds_per_s')} holds/s "
                             f"({l.get('holds')} in {l.get('elapsed_s')} s, sold out {l.get('sold_out')}), p50 {l.get('p50_ms')} "
                             f"p99 {l.get('p99_ms')} p99.9 {l.get('p999_ms')}, conflicts {l.get('conflict_rate')}, "
                             f"gen cpu {l.get('gen_cpu_s')} s, check {l.get('consistent')}, exit {l.get('exit')}"
                             + (f"\n      PROBLEM: {l['problem']}" if "problem" in l else ""))
    lines.append("```")
    text_ = "\n".join(lines) + "\n"
    with open(f"{OUT}/summary.md", "w") as f:
        f.write(text_)
    print(text_)


if __name__ == "__main__":
    if sys.argv[1] == "run":
        try:
            run()
        finally:
            summary()
    else:
        summary()
PYEOF

python3 "$WORK/bench.py" run
