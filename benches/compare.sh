#!/usr/bin/env bash
# compare.sh — our folder-sync beside unison, rclone bisync and rsync, on the same trees, in one
# run on one machine. It builds the trees the way ../shared/bench/peers.sh does (same
# shapes, same seed, same change set for scenario C), times every tool with /usr/bin/time
# (median wall seconds over RUNS runs, the largest peak RSS of the timed process), and prints one
# markdown table with each of our figures as a ratio to the best peer.
#
# Usage:
#   benches/compare.sh install     # apt-get the peers (unison rclone rsync time python3)
#   benches/compare.sh all         # build ours (release), trees, tools, latency, idle; the table
#   benches/compare.sh trees       # only the tree scenarios (A, B, C on SMALL, LARGE, BIG, HUGE)
#   benches/compare.sh latency     # edit-to-other-disk latency, two watching folder-syncs, HTTP
#   benches/compare.sh idle        # N idle long-polls against one sync-server: memory, threads
#   benches/compare.sh report      # print the table again from $ROOT/results.tsv
#   TOOLS="ours-http" benches/compare.sh rerun   # run the trees again for TOOLS (on DATASETS)
#                                  # only, replacing their rows in $ROOT/results.tsv
#
# Env knobs [defaults]: ROOT [/tmp/syncbench], RUNS [3], DATASETS ["small large big huge"],
#   TOOLS ["ours-fs ours-http unison bisync rsync"], SMALL_N/SMALL_SIZE [10000/8192],
#   LARGE_N/LARGE_SIZE [100000/1024], BIG_N/BIG_SIZE [200/5242880], FILES_PER_DIR [20],
#   HUGE_N/HUGE_SIZE [1000000/100], HUGE_TOOLS ["ours-fs rsync"] (HUGE skips A↓ and the slow
#   peers: it is there to show how B grows with the tree), HUGE_LIMIT_S [1800],
#   SEED [42], LIMIT_S per run [300], PORT [18600], EDITS (latency) [20], IDLE_CLIENTS [1000],
#   BIN (where folder-sync and sync-server are) [$CARGO_TARGET_DIR/release, else target/release].
#
# Tools and what "A", "B", "C" mean for each (A = first sync into an empty side; B = re-sync with
# no change; C = re-sync after 10 rewritten (same size) + 10 new files on side A):
#   unison   unison A B -batch -auto -times -fastcheck true      (two-way, local)
#   bisync   rclone bisync A B (--resync for A)                  (two-way, local)
#   rsync    rsync -a A/ B/                                      (one way, local)
#   ours-fs  folder-sync --dir A --remote-dir R --once           (two-way, R a remote folder)
#   ours-http folder-sync --dir A --server http://127.0.0.1:PORT --once, against a release
#            sync-server on SQLite started by this script       (two-way, over HTTP/1.1 loopback)
# For ours, the "empty side" of A is the remote (an empty remote folder, or a server on a fresh
# database): A times the upload of the whole tree. Row "A↓" (ours only) times the first sync of a
# second, empty device B from that remote, so A + A↓ is the full A-to-B propagation that unison's
# A does in one step. Before timing B and C, ours syncs device B too (untimed), and after C both
# devices are synced again and compared byte for byte with `diff -r` (a mismatch is reported).
# A missing peer is skipped with a note; a run over LIMIT_S is recorded as DNF.
# The floor of B: beside every timed B of ours-fs, `find A -fprintf /dev/null '%s %T@ %i\n'` stats every
# file of the same synced tree (one statx per entry, nothing else), interleaved run by run with
# ours, and is recorded as the tool "stat-walk"; the report prints ours-fs ÷ that floor and B's
# cost per file on each tree.
# A durable copy: beside every timed A of rsync, `rsync -a A/ B/ && sync -f B` into an emptied
# B (rsync writes without flushing; ours makes every file durable before it records it), as
# the tool "rsync+sync"; the report prints ours ÷ that copy. Every timed run starts after a
# `sync`, so no run waits on the flush of the previous run's cleanup.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
ROOT=${ROOT:-/tmp/syncbench}
RUNS=${RUNS:-3}
LIMIT_S=${LIMIT_S:-300}
SEED=${SEED:-42}
FILES_PER_DIR=${FILES_PER_DIR:-20}
PORT=${PORT:-18600}
EDITS=${EDITS:-20}
IDLE_CLIENTS=${IDLE_CLIENTS:-1000}
TOOLS=${TOOLS:-"ours-fs ours-http unison bisync rsync"}
RESULTS=$ROOT/results.tsv
BIN=${BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release}
TOKEN=bench-token-5f3a9c1e7b2d4860  # sync-server refuses weak tokens
export RCLONE_CONFIG=$ROOT/rclone.conf
export UNISON=$ROOT/unison-home
unset RUST_BACKTRACE RUST_LOG

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }

install_peers() {
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y unison rclone rsync time python3
}

build_ours() {
  log "building folder-sync and sync-server (release)"
  (cd "$REPO" && cargo build --release --quiet -p sync-cli)
}

machine() {
  local cpu
  cpu=$(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)
  echo "Machine: $(nproc) cores ($cpu), $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, $ROOT on $(df -T "$ROOT" | awk 'NR==2{print $2}'), Linux $(uname -r), $(date -u +%Y-%m-%d)."
  local v=""
  have unison && v+="unison $(unison -version 2>&1 | sed -n 1p | awk '{print $3}'), "
  have rclone && v+="rclone $(rclone version 2>&1 | sed -n 1p | awk '{print $2}'), "
  have rsync && v+="rsync $(rsync --version 2>&1 | sed -n 1p | awk '{print $3}'), "
  echo "Peers: ${v%, }; ours: $(cd "$REPO" && git rev-parse --short HEAD) (release). Load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)."
}

# ------------------------------------------------------------ trees (as peers.sh) -----------
gen_tree() {   # gen_tree DIR N SIZE SEED
  local dir=$1 n=$2 size=$3 seed=$4 want="n=$2 size=$3 seed=$4 fpd=$FILES_PER_DIR"
  if [[ -f $dir.params && $(cat "$dir.params") == "$want" ]]; then log "reuse $dir"; return; fi
  log "generate $dir ($want)"
  rm -rf "$dir"; mkdir -p "$dir"
  python3 - "$dir" "$n" "$size" "$seed" "$FILES_PER_DIR" <<'PY'
import math, os, random, sys
root, n, size, seed, fpd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rng = random.Random(seed)
leaves = math.ceil(n / fpd)
fan = max(1, math.ceil(round(leaves ** (1 / 3), 9)))
T0 = 1_700_000_000
for i in range(n):
    leaf, k = divmod(i, fpd)
    a, rest = divmod(leaf, fan * fan); b, c = divmod(rest, fan)
    d = os.path.join(root, f"d{a:02d}", f"d{b:02d}", f"d{c:02d}")
    os.makedirs(d, exist_ok=True)
    p = os.path.join(d, f"f{k:03d}.bin")
    with open(p, "wb") as f:
        f.write(rng.randbytes(size))
    os.utime(p, (T0 + i, T0 + i))
PY
  echo "$want" > "$dir.params"   # beside the tree, not in it: every tool syncs the tree whole
}

mutate() {     # mutate DIR RUN SIZE: the change set of scenario C (same as peers.sh)
  python3 - "$1" "$2" "$3" <<'PY'
import os, random, sys, time
root, run, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
files = sorted(os.path.join(dp, f) for dp, dns, fs in os.walk(root) for f in fs if f.endswith(".bin") and "/.sync" not in dp)
rng = random.Random(1000 + run)
now = time.time()
for p in rng.sample(files, 10):
    with open(p, "wb") as f: f.write(rng.randbytes(size))
    os.utime(p, (now, now))
for j, p in enumerate(rng.sample(files, 10)):
    q = os.path.join(os.path.dirname(p), f"new_r{run}_{j}.bin")
    with open(q, "wb") as f: f.write(rng.randbytes(size))
PY
}

# ------------------------------------------------------------ our server --------------------
SERVER_PID=""
server_start() {   # server_start DBFILE
  "$BIN/sync-server" --listen "127.0.0.1:$PORT" --db "$1" --token "bench:$TOKEN" \
    >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 200); do
    grep -q "listening on" "$WORK/server.log" 2>/dev/null && return 0; sleep 0.05
  done
  echo "sync-server did not start: $(cat "$WORK/server.log")" >&2; return 1
}
server_hwm_mb() { awk '/VmHWM/{printf "%.1f", $2/1024}' "/proc/$SERVER_PID/status" 2>/dev/null || echo NA; }
server_stop() {
  if [[ -n $SERVER_PID ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""; fi
}
trap server_stop EXIT

# ------------------------------------------------------------ one sync ----------------------
sync_cmd() {   # sync_cmd TOOL SCEN [SIDE]: the command of one timed sync
  local tool=$1 scen=$2 side=${3:-A} resync=""
  [[ $scen == A ]] && resync="--resync"
  case $tool in
    unison)    echo "unison $WORK/A $WORK/B -batch -auto -ui text -times -fastcheck true -terse" ;;
    bisync)    echo "rclone bisync $WORK/A $WORK/B --workdir $WORK/state $resync" ;;
    rsync)     echo "rsync -a $WORK/A/ $WORK/B/" ;;
    ours-fs)   echo "$BIN/folder-sync --dir $WORK/$side --remote-dir $WORK/R --once --json" ;;
    ours-http) echo "$BIN/folder-sync --dir $WORK/$side --server http://127.0.0.1:$PORT --token $TOKEN --once --json" ;;
  esac
}

reset_for_initial() {   # empty the receiving side and forget all sync state
  local tool=$1
  rm -rf "$WORK/B" "$WORK/R" "$WORK/state" "$UNISON" "$WORK/A/.sync"
  mkdir -p "$WORK/B" "$WORK/R" "$WORK/state" "$UNISON"
  if [[ $tool == ours-http ]]; then
    server_stop; rm -rf "$WORK"/server.db*; server_start "$WORK/server.db"
  fi
}

timed_run() {   # timed_run CMD... -> "secs rss_kb rc"
  local rc=0
  /usr/bin/time -f '%e %M' -o "$WORK/time.out" timeout "$LIMIT_S" "$@" >>"$WORK/tool.log" 2>&1 || rc=$?
  echo "$(tail -1 "$WORK/time.out" | awk '{print $1, $2}') $rc"
}

untimed() { "$@" >>"$WORK/tool.log" 2>&1 || log "  untimed step failed (rc=$?): $*"; }

record() {   # record DS N SIZE SCEN TOOL "secs..." "rss..." NOTE
  local med rmb
  med=$(tr ' ' '\n' <<<"$6" | sort -n | awk '{a[NR]=$1} END{m=int((NR+1)/2); print (NR%2 ? a[m] : (a[m]+a[m+1])/2)}')
  rmb=$(tr ' ' '\n' <<<"$7" | sort -n | tail -1 | awk '{printf "%.1f", $1/1024}')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "$(wc -w <<<"$6")" "$med" "$rmb" "$8" >>"$RESULTS"
  log "  $1 $4 $5: median ${med}s (runs: $6) peak RSS ${rmb} MB $8"
}

bench_tool() {   # bench_tool DS N SIZE TOOL
  local ds=$1 n=$2 size=$3 tool=$4 scen r s k rc secs rss note dnf="" fs fk floor_secs="" floor_rss="" durable_secs="" durable_rss=""
  case $tool in
    unison|rsync) have "$tool" || { record_skip "$ds" "$n" "$size" "$tool" "not installed"; return; } ;;
    bisync) have rclone || { record_skip "$ds" "$n" "$size" "$tool" "rclone not installed"; return; } ;;
  esac
  WORK=$ROOT/$ds/$tool
  log "== $ds / $tool"
  rm -rf "$WORK"; mkdir -p "$WORK"
  cp -a "$ROOT/$ds/src" "$WORK/A"
  sync
  local scens="A B C"; [[ $tool == ours-* ]] && scens="A A↓ B C"
  [[ $ds == HUGE ]] && scens="A B C"
  for scen in $scens; do
    secs="" rss="" note=""
    for ((r = 1; r <= RUNS; r++)); do
      case $scen in
        A) reset_for_initial "$tool" ;;
        A↓) rm -rf "$WORK/B"; mkdir -p "$WORK/B" ;;
        B) [[ $tool == ours-* && $r == 1 ]] && untimed $(sync_cmd "$tool" B B) ;;
        C) mutate "$WORK/A" "$r" "$size" ;;
      esac
      local side=A; [[ $scen == A↓ ]] && side=B
      # The untimed reset's writes and removals reach the disk before the clock starts, so a
      # tool that flushes (ours) does not wait on the previous run's cleanup.
      sync
      echo "--- $scen run $r: $(sync_cmd "$tool" "$scen" $side)" >>"$WORK/tool.log"
      read -r s k rc <<<"$(timed_run $(sync_cmd "$tool" "$scen" $side))"
      secs="$secs $s"; rss="$rss $k"
      if [[ $scen == B && $tool == ours-fs ]]; then   # the floor, same tree, same minute
        read -r fs fk _ <<<"$(timed_run find "$WORK/A" -fprintf /dev/null '%s %T@ %i\n')"
        floor_secs="$floor_secs $fs"; floor_rss="$floor_rss $fk"
      fi
      if [[ $scen == A && $tool == rsync ]]; then   # a durable copy: rsync, then flush its writes
        rm -rf "$WORK/B"; mkdir -p "$WORK/B"; sync
        read -r fs fk _ <<<"$(timed_run sh -c "rsync -a $WORK/A/ $WORK/B/ && sync -f $WORK/B")"
        durable_secs="$durable_secs $fs"; durable_rss="$durable_rss $fk"
      fi
      if [[ $rc == 124 ]]; then note="DNF>${LIMIT_S}s"; dnf=1; break; fi
      [[ $rc != 0 ]] && note="${note:+$note,}rc=$rc"
      # one run is enough when a run is slow (as peers.sh's CHEAP_S)
      awk -v s="$s" 'BEGIN{exit !(s > 45)}' && { [[ $r -lt $RUNS ]] && note="${note:+$note,}1 run (slow)"; break; }
    done
    [[ $tool == ours-http ]] && note="${note:+$note,}server peak $(server_hwm_mb) MB"
    record "$ds" "$n" "$size" "$scen" "$tool" "${secs# }" "${rss# }" "$note"
    if [[ -n $floor_secs ]]; then
      record "$ds" "$n" "$size" B stat-walk "${floor_secs# }" "${floor_rss# }" ""
      floor_secs="" floor_rss=""
    fi
    if [[ -n $durable_secs ]]; then
      record "$ds" "$n" "$size" A rsync+sync "${durable_secs# }" "${durable_rss# }" ""
      durable_secs="" durable_rss=""
    fi
    [[ -n $dnf ]] && break
  done
  # sanity: both sides hold the same files after the last scenario
  if [[ -z $dnf ]]; then
    [[ $tool == ours-* ]] && untimed $(sync_cmd "$tool" B B)
    if ! diff -rq --exclude=.sync "$WORK/A" "$WORK/B" >/dev/null 2>&1; then
      log "  WARNING: $tool left A and B different"
      printf '%s\t%s\t%s\t-\t%s\t0\tNA\tNA\tA and B DIFFER after C\n' "$ds" "$n" "$size" "$tool" >>"$RESULTS"
    fi
  fi
  server_stop
  rm -rf "$WORK/A" "$WORK/B" "$WORK/R" "$WORK"/server.db*
}

record_skip() {
  log "skip $4 for $1: $5"
  printf '%s\t%s\t%s\t-\t%s\t0\tNA\tNA\tskipped: %s\n' "$1" "$2" "$3" "$4" "$5" >>"$RESULTS"
}

bench_dataset() {   # bench_dataset LABEL N SIZE
  local ds=$1 n=$2 size=$3 tool
  mkdir -p "$ROOT/$ds"
  gen_tree "$ROOT/$ds/src" "$n" "$size" "$SEED"
  printf '[dummy]\ntype = local\n' >"$RCLONE_CONFIG"
  local tools=$TOOLS
  [[ $ds == HUGE ]] && tools=${HUGE_TOOLS:-"ours-fs rsync"}
  for tool in $tools; do bench_tool "$ds" "$n" "$size" "$tool"; done
}

trees() {
  for ds in ${DATASETS:-small large big huge}; do
    case $ds in
      small) bench_dataset SMALL "${SMALL_N:-10000}" "${SMALL_SIZE:-8192}" ;;
      large) bench_dataset LARGE "${LARGE_N:-100000}" "${LARGE_SIZE:-1024}" ;;
      big)   bench_dataset BIG "${BIG_N:-200}" "${BIG_SIZE:-5242880}" ;;
      huge)  LIMIT_S=${HUGE_LIMIT_S:-1800} bench_dataset HUGE "${HUGE_N:-1000000}" "${HUGE_SIZE:-100}"
             rm -rf "$ROOT/HUGE/src" "$ROOT/HUGE/src.params" ;;   # 1,000,000 files: 4 GB of blocks
    esac
  done
}

# ------------------------------------------------------------ latency -----------------------
# Two folder-syncs in watch mode against one sync-server; EDITS edits on device 1, each timed
# from the write until device 2's file holds the new bytes (polled every 2 ms).
latency() {
  WORK=$ROOT/latency; rm -rf "$WORK"; mkdir -p "$WORK/D1" "$WORK/D2"
  server_start "$WORK/server.db"
  local url=http://127.0.0.1:$PORT
  "$BIN/folder-sync" --dir "$WORK/D1" --server "$url" --token "$TOKEN" >"$WORK/d1.log" 2>&1 & local p1=$!
  "$BIN/folder-sync" --dir "$WORK/D2" --server "$url" --token "$TOKEN" >"$WORK/d2.log" 2>&1 & local p2=$!
  sleep 2
  python3 - "$WORK/D1" "$WORK/D2" "$EDITS" "$ROOT/latency.txt" <<'PY'
import os, statistics, sys, time
d1, d2, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
samples = []
for i in range(n):
    body = f"edit {i} at {time.time()}\n".encode() * 10
    name = f"note{i % 3}.txt"
    t0 = time.monotonic()
    tmp = os.path.join(d1, f"{name}.tmp")  # *.tmp is ignored by the scan
    with open(tmp, "wb") as f: f.write(body)
    os.rename(tmp, os.path.join(d1, name))
    target = os.path.join(d2, name)
    while True:
        try:
            with open(target, "rb") as f:
                if f.read() == body: break
        except FileNotFoundError:
            pass
        if time.monotonic() - t0 > 30: sys.exit(f"edit {i} did not arrive in 30 s")
        time.sleep(0.002)
    samples.append(time.monotonic() - t0)
    time.sleep(0.5)
samples.sort()
p95 = samples[min(len(samples) - 1, int(round(0.95 * (len(samples) - 1))))]
line = f"latency over {n} edits: median {statistics.median(samples)*1000:.0f} ms, p95 {p95*1000:.0f} ms, max {samples[-1]*1000:.0f} ms"
print(line); open(out, "w").write(line + "\n")
PY
  kill "$p1" "$p2" 2>/dev/null || true; wait "$p1" "$p2" 2>/dev/null || true
  server_stop
}

# ------------------------------------------------------------ idle long-polls ---------------
# IDLE_CLIENTS connections each hold `GET /sync/v1/changes?since=<cursor>&wait=60`; the server's
# RSS and thread count are read before and while they wait; then one write wakes them all.
idle() {
  WORK=$ROOT/idle; rm -rf "$WORK"; mkdir -p "$WORK"
  local tokens=() i
  for ((i = 0; i < 10; i++)); do tokens+=(--token "idle:idle-token-abcdef-$i"); done   # rate limit is per token
  "$BIN/sync-server" --listen "127.0.0.1:$PORT" --db "$WORK/server.db" "${tokens[@]}" >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 200); do grep -q "listening on" "$WORK/server.log" && break; sleep 0.05; done
  ulimit -n 65536 2>/dev/null || ulimit -n 4096 || true
  python3 - "$PORT" "$IDLE_CLIENTS" "$SERVER_PID" "$ROOT/idle.txt" <<'PY'
import asyncio, json, sys, time
port, n, pid, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
def status():
    d = {}
    for l in open(f"/proc/{pid}/status"):
        k, v = l.split(":", 1); d[k] = v.strip()
    return int(d["VmRSS"].split()[0]), int(d["Threads"])
async def request(method, path, token, headers=None, body=b""):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    h = {"Host": f"127.0.0.1:{port}", "Authorization": f"Bearer {token}", "Content-Length": str(len(body)), "Connection": "close"}
    h.update(headers or {})
    w.write((f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n").encode() + body)
    await w.drain()
    return r, w
async def read_all(r, w):
    data = await r.read(); w.close()
    status_line = data.split(b"\r\n", 1)[0]
    return int(status_line.split()[1]), data.split(b"\r\n\r\n", 1)[1]
async def main():
    r, w = await request("GET", "/sync/v1/changes", "idle-token-abcdef-0")
    code, body = await read_all(r, w)
    cursor = json.loads(body)["cursor"]
    await asyncio.sleep(0.5)
    rss0, th0 = status()
    conns = []
    for i in range(n):
        conns.append(await request("GET", f"/sync/v1/changes?since={cursor}&wait=60", f"idle-token-abcdef-{i % 10}"))
    await asyncio.sleep(2.0)
    rss1, th1 = status()
    pending = [asyncio.create_task(read_all(r, w)) for r, w in conns]
    await asyncio.sleep(0.5)
    early = sum(t.done() for t in pending)
    # one write wakes every waiting request: a folder creation (it enters the change feed)
    t0 = time.monotonic()
    r, w = await request("PUT", "/sync/v1/folders/wake", "idle-token-abcdef-0")
    code, _ = await read_all(r, w)
    results = await asyncio.gather(*pending)
    woke = time.monotonic() - t0
    ok = sum(1 for c, b in results if c == 200 and json.loads(b)["changes"])
    line = (f"{n} idle long-polls: server RSS {rss0/1024:.1f} MB before, {rss1/1024:.1f} MB while waiting "
            f"({(rss1-rss0)/n:.1f} KiB per idle client), threads {th0} before and {th1} while waiting; "
            f"{early} answered before the write (expected 0); one write (HTTP {code}) woke {ok} of {n} with the change in {woke*1000:.0f} ms")
    print(line); open(out, "w").write(line + "\n")
asyncio.run(main())
PY
  server_stop
}

# ------------------------------------------------------------ report ------------------------
report() {
  [[ -f $ROOT/machine.txt ]] && { cat "$ROOT/machine.txt"; echo; }
  python3 - "$RESULTS" <<'PY'
import sys, collections
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
peers = ["unison", "bisync", "rsync"]; ours = ["ours-fs", "ours-http"]
cell = collections.defaultdict(dict); notes = []; order = []
for ds, n, size, scen, tool, runs, med, rss, note in rows:
    key = (ds, n, size, scen)
    if scen == "-":
        notes.append(f"{ds} {tool}: {note}"); continue
    if key not in order: order.append(key)
    cell[key][tool] = (med, rss, note)
def fmt(v):
    if not v: return "–"
    med, rss, note = v
    if med == "NA": return "n/a"
    s = f"{float(med):.2f} s, {float(rss):.0f} MB"
    if note and not note.startswith("server peak"): s += f" ({note})"
    return s
floor = "stat-walk"
print("| tree | scenario | " + " | ".join(ours + peers) + " | best peer | ours-fs ÷ best | ours-http ÷ best | stat walk (floor) | ours-fs ÷ floor | rsync + sync (durable copy) | ours-fs, ours-http ÷ durable |")
print("|---" * (len(ours) + len(peers) + 9) + "|")
scen_rank = {"A": 0, "A↓": 1, "B": 2, "C": 3}
ds_rank = {}
for k in order: ds_rank.setdefault(k[0], len(ds_rank))
order.sort(key=lambda k: (ds_rank[k[0]], scen_rank.get(k[3], 9)))
for key in order:
    ds, n, size, scen = key
    c = cell[key]
    best = [(float(c[p][0]), p) for p in peers if p in c and c[p][0] not in ("NA", "") and "DNF" not in c[p][2]]
    b = min(best) if best else None
    ratio = lambda t: (f"{float(c[t][0]) / b[0]:.2f}×" if b and t in c and c[t][0] != "NA" and b[0] > 0 else "–")
    best_s = f"{b[1]} {b[0]:.2f} s" if b else "–"
    if scen == "A↓": best_s, ratio = "(ours only)", (lambda t: "–")
    label = f"{ds} ({int(n):,} × {int(size):,} B)"
    f = c.get(floor)
    floor_s = f"{float(f[0]):.2f} s" if f else "–"
    over_floor = f"{float(c['ours-fs'][0]) / float(f[0]):.2f}×" if f and "ours-fs" in c and c["ours-fs"][0] != "NA" and float(f[0]) > 0 else "–"
    d = c.get("rsync+sync")
    durable_s = f"{float(d[0]):.2f} s" if d else "–"
    over = lambda t: f"{float(c[t][0]) / float(d[0]):.2f}×" if d and t in c and c[t][0] != "NA" and float(d[0]) > 0 else "–"
    over_durable = f"{over('ours-fs')}, {over('ours-http')}" if d else "–"
    print(f"| {label} | {scen} | " + " | ".join(fmt(c.get(t)) for t in ours + peers) + f" | {best_s} | {ratio('ours-fs')} | {ratio('ours-http')} | {floor_s} | {over_floor} | {durable_s} | {over_durable} |")
per_file = [(int(k[1]), k[0], cell[k]) for k in order if k[3] == "B" and "ours-fs" in cell[k] and cell[k]["ours-fs"][0] != "NA"]
if per_file:
    print("\nB (no change) per file, ours-fs and the stat walk of the same tree:\n")
    print("| files | ours-fs B | per file | peak RSS | per file | stat walk per file |")
    print("|---|---|---|---|---|---|")
    for n, ds, c in sorted(per_file):
        med, rss, _ = c["ours-fs"]
        fl = c.get(floor)
        fl_s = f"{float(fl[0]) / n * 1e6:.2f} µs" if fl else "–"
        print(f"| {n:,} ({ds}) | {float(med):.2f} s | {float(med) / n * 1e6:.2f} µs | {float(rss):.0f} MB | {float(rss) * 1024 * 1024 / n:.0f} B | {fl_s} |")
servers = [f"{k[0]} {k[3]}: {v['ours-http'][2]}" for k, v in ((k, cell[k]) for k in order) if "ours-http" in v and v["ours-http"][2]]
if notes: print("\nNotes: " + "; ".join(notes) + ".")
if servers: print("\nsync-server (ours-http) peak RSS: " + "; ".join(servers) + ".")
PY
  for f in latency idle; do [[ -f $ROOT/$f.txt ]] && { echo; cat "$ROOT/$f.txt"; }; done
  return 0
}

main() {
  mkdir -p "$ROOT" "$UNISON"
  case ${1:-all} in
    install) install_peers ;;
    report) report ;;
    rerun)
      build_ours; touch "$RESULTS"
      for t in $TOOLS; do      # drop the rows of TOOLS on DATASETS only
        awk -F'\t' -v t="$t" -v ds=" ${DATASETS:-small large big huge} " \
          '!($5 == t && index(ds, " " tolower($1) " "))' "$RESULTS" >"$RESULTS.tmp"
        mv "$RESULTS.tmp" "$RESULTS"
      done
      echo "Rows of $TOOLS re-run at $(cd "$REPO" && git rev-parse --short HEAD) on $(date -u +%H:%M) UTC (load average $(cut -d' ' -f1-3 /proc/loadavg))." >>"$ROOT/machine.txt"
      trees; report | tee "$ROOT/results.md" ;;
    trees) build_ours; machine >"$ROOT/machine.txt"; : >"$RESULTS"; trees; report ;;
    latency) build_ours; latency ;;
    idle) build_ours; idle ;;
    all)
      build_ours; machine >"$ROOT/machine.txt"; : >"$RESULTS"
      trees; latency; idle
      echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)." >>"$ROOT/machine.txt"
      report | tee "$ROOT/results.md" ;;
    *) sed -n '2,35p' "$0"; exit 2 ;;
  esac
}
main "$@"
