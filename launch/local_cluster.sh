#!/usr/bin/env bash
# A real multi-node Ray cluster on one machine: one head and N worker nodes, each
# its own `ray start --block` process group with its own CPUs, GPUs and temp dir.
# Token authentication is always on; the dashboard listens on 127.0.0.1.
set -euo pipefail

prog=local_cluster.sh
usage() {
  cat <<EOF
usage: $prog up [--workers N] [--cpus-per-node C] [--gpus-per-node G]
       $prog down | status | env | kill-worker [I]

  up           start a head and N worker nodes (default N=1, C=1, G=0) and wait
               until all of them joined; prints the lines to export. Node i gets
               GPUs i*G .. i*G+G-1 (of CUDA_VISIBLE_DEVICES when set)
  down         stop every node of this cluster (never touches other Ray clusters)
  status       show the nodes of this cluster and 'ray status'
  env          print the export lines (eval "\$($prog env)")
  kill-worker  SIGKILL worker node I (default 1) to simulate losing a machine

environment:
  AETUNE_CLUSTER_DIR      state: pids, logs, node temp dirs, auth token
                          (default \${TMPDIR:-/tmp}/aetune-cluster; keep it short,
                          Ray puts Unix sockets under it)
  AETUNE_RAY_PORT         GCS port of the head (default 6379)
  AETUNE_DASHBOARD_PORT   dashboard port (default 8265)
  AETUNE_DASHBOARD_HOST   dashboard bind address (default 127.0.0.1; 0.0.0.0 is an
                          explicit opt-in to expose it)
  AETUNE_RAY_CLIENT_PORT  Ray client server port (default 10001)
  AETUNE_AGENT_PORT       first dashboard-agent port, node i uses +i (default 52365)
  AETUNE_OBJECT_STORE_MB  object store per node (default 512)
  AETUNE_START_TIMEOUT    seconds to wait for the nodes (default 120)
  AETUNE_PYTHON           python with ray installed (default python3)
EOF
}
die() { echo "$prog: error: $*" >&2; exit 1; }
usage_error() { echo "$prog: error: $* (see --help)" >&2; exit 2; }
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

dir=${AETUNE_CLUSTER_DIR:-${TMPDIR:-/tmp}/aetune-cluster}
port=${AETUNE_RAY_PORT:-6379}
dash_port=${AETUNE_DASHBOARD_PORT:-8265}
dash_host=${AETUNE_DASHBOARD_HOST:-127.0.0.1}
client_port=${AETUNE_RAY_CLIENT_PORT:-10001}
agent_port=${AETUNE_AGENT_PORT:-52365}
store_mb=${AETUNE_OBJECT_STORE_MB:-512}
timeout=${AETUNE_START_TIMEOUT:-120}
py=${AETUNE_PYTHON:-python3}
token_file=$dir/auth_token
# Ray rewrites 127.0.0.1 to the host's IP for node addresses and its gRPC servers
# listen on all interfaces, so the token (not the bind address) is the protection.
address=127.0.0.1:$port

for v in port dash_port client_port agent_port store_mb timeout; do
  is_uint "${!v}" || usage_error "$v must be a non-negative integer, got '${!v}'"
done

# Every process of node i (Ray's own workers call setsid, so the process group is
# not enough) inherits this variable; it is how down/kill-worker find them all.
marker() { echo "AETUNE_RAY_NODE=$dir/n$1"; }

ours() {  # ours PID MARKER: PID is alive (not a zombie) and carries MARKER
  local state
  grep -qzxF -- "$2" "/proc/$1/environ" 2>/dev/null || return 1
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
  [[ -n $state && $state != Z ]]
}

node_pids() {  # live pids of node $1
  local m p
  m=$(marker "$1")
  for p in /proc/[0-9]*; do
    ours "${p#/proc/}" "$m" && echo "${p#/proc/}"
  done
  return 0
}

node_up() { [[ -n $(node_pids "$1") ]]; }

nodes() {  # indices of the nodes that were started (0 is the head)
  local f
  for f in "$dir"/n*.pid; do
    [[ -e $f ]] || continue
    f=${f##*/n}; echo "${f%.pid}"
  done | sort -n
}

leader() {  # the `ray start` pid of node $1, if it is still ours (pid files can go stale)
  local pid
  pid=$(cat "$dir/n$1.pid" 2>/dev/null) || return 1
  ours "$pid" "$(marker "$1")" && echo "$pid"
}

stop_nodes() {  # stop_nodes SIGNAL GRACE_SECONDS I...
  local sig=$1 grace=$2 i t left pid
  shift 2
  for i; do
    # TERM goes to the `ray start --block` leader only: it drains the node and
    # stops its processes itself (TERM to the whole group leaves GCS hanging).
    # KILL goes to the whole group: an abrupt machine loss.
    pid=$(leader "$i") || continue
    if [[ $sig == KILL ]]; then kill -KILL -- "-$pid"; else kill -TERM "$pid"; fi 2>/dev/null || true
  done
  for ((t = 0; t < grace * 5; t++)); do
    left=0
    for i; do node_up "$i" && left=1; done
    ((left)) || break
    sleep 0.2
  done
  for i; do  # stragglers, e.g. Ray's workers, which run in sessions of their own
    node_pids "$i" | xargs -r kill -KILL 2>/dev/null || true
    rm -f "$dir/n$i.pid"
  done
}

env_lines() {
  cat <<EOF
export RAY_ADDRESS=$address
export RAY_AUTH_MODE=token
export RAY_AUTH_TOKEN_PATH=$token_file
EOF
}

alive_nodes() {  # number of alive nodes according to the GCS, or fails
  "$py" - "$address" 2>/dev/null <<'EOF'
import sys
import ray
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
print(sum(1 for n in ray.nodes() if n["Alive"]))
EOF
}

visible_gpus() {  # the GPU ids this script may hand out, if known
  if [[ -n ${CUDA_VISIBLE_DEVICES:-} ]]; then
    tr ',' ' ' <<<"$CUDA_VISIBLE_DEVICES"
  elif command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null | tr '\n' ' '
  fi
}

start_node() {  # start_node I CPUS GPUS  (I=0 is the head)
  local i=$1 args env=("$(marker "$1")") ids
  if (($3 > 0)); then  # node i gets GPUs i*G .. i*G+G-1, so no two nodes share one
    ids=("${gpus_list[@]:i*$3:$3}")
    env+=("CUDA_VISIBLE_DEVICES=$(IFS=,; echo "${ids[*]}")")
  fi
  args=(--block --num-cpus "$2" --num-gpus "$3" --temp-dir "$dir/n$i"
        --object-store-memory $((store_mb * 1024 * 1024))
        --min-worker-port 0 --max-worker-port 0  # OS-chosen: nodes share the host
        --dashboard-agent-listen-port $((agent_port + i)) --disable-usage-stats)
  if ((i == 0)); then
    args+=(--head --port "$port" --dashboard-host "$dash_host"
           --dashboard-port "$dash_port" --ray-client-server-port "$client_port")
  else
    args+=(--address "$address")
  fi
  # setsid: each node is its own process group, so it can be stopped on its own.
  env "${env[@]}" setsid ray start "${args[@]}" </dev/null >"$dir/n$i.log" 2>&1 &
  echo $! >"$dir/n$i.pid"
}

wait_for() {  # wait_for N_NODES: until the GCS reports N alive nodes
  local want=$1 deadline=$((SECONDS + timeout)) n i
  while ((SECONDS < deadline)); do
    for i in $(nodes); do
      node_up "$i" || die "node $i exited during start; see $dir/n$i.log"
    done
    n=$(alive_nodes) || n=0
    ((n == want)) && return 0
    sleep 1
  done
  die "only ${n:-0} of $want nodes alive after ${timeout}s; see $dir/n*.log"
}

cmd_up() {
  local workers=1 cpus=1 gpus=0 i
  while (($#)); do
    case $1 in
      --workers|--cpus-per-node|--gpus-per-node)
        (($# >= 2)) || usage_error "$1 needs a value"
        is_uint "$2" || usage_error "$1 must be a non-negative integer, got '$2'"
        case $1 in
          --workers) workers=$2 ;; --cpus-per-node) cpus=$2 ;; *) gpus=$2 ;;
        esac
        shift 2 ;;
      -h|--help) usage; exit 0 ;;
      *) usage_error "unknown argument to up: '$1'" ;;
    esac
  done
  command -v ray >/dev/null || die "'ray' not found on PATH (activate the venv)"
  "$py" -c 'import ray' 2>/dev/null || die "$py cannot import ray (set AETUNE_PYTHON)"
  for i in $(nodes); do
    node_up "$i" && die "a cluster is already running in $dir; run '$prog down' first"
  done
  # Ray's Unix socket paths (<dir>/nI/session_<41 chars>/sockets/plasma_store)
  # must stay under the kernel's 107-byte limit.
  ((${#dir} <= 40)) || die "AETUNE_CLUSTER_DIR is ${#dir} chars; use one of at most 40"
  if ((gpus > 0)); then
    read -ra gpus_list <<<"$(visible_gpus)"
    ((${#gpus_list[@]} >= (workers + 1) * gpus)) ||
      die "$((workers + 1)) nodes x $gpus GPUs needs $(((workers + 1) * gpus)) GPUs, found ${#gpus_list[@]}"
  fi

  mkdir -p "$dir" && chmod 700 "$dir"
  rm -f "$dir"/n*.pid
  if [[ ! -s $token_file ]]; then
    # 256 random bits, like `ray get-auth-token --generate`, but in our own file.
    (umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$token_file")
  fi
  chmod 600 "$token_file"
  export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$token_file
  unset RAY_AUTH_TOKEN RAY_ADDRESS  # would override the file / the new address
  # On SIGTERM a node drains first (default up to 30 s); `down` stops all nodes
  # anyway, so waiting for running tasks to move elsewhere is pointless here.
  export RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S=${RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S:-5}

  start_node 0 "$cpus" "$gpus"
  wait_for 1
  for ((i = 1; i <= workers; i++)); do start_node "$i" "$cpus" "$gpus"; done
  wait_for $((workers + 1))
  env_lines >"$dir/env"

  echo "Ray cluster up: head + $workers worker(s), $cpus CPU(s) and $gpus GPU(s) each, at $address"
  echo "dashboard (if ray[default] is installed): http://$dash_host:$dash_port"
  echo "To use it from this shell:"
  echo "  source $dir/env"
  echo "  python -m aetune.search --space search_spaces/quick.yaml --name demo --storage runs --address auto"
}

cmd_down() {
  # shellcheck disable=SC2046  # indices are plain integers
  stop_nodes TERM 40 $(nodes)
  rm -f "$dir/env"
  echo "Ray cluster in $dir is down"
}

cmd_status() {
  local i running=0 state
  for i in $(nodes); do
    if node_up "$i"; then state=up; running=1; else state=down; fi
    echo "node $i$( ((i)) || echo ' (head)'): $state"
  done
  ((running)) || die "no cluster running in $dir"
  export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$token_file
  unset RAY_AUTH_TOKEN
  echo "alive nodes: $(alive_nodes || echo '?')"
  ray status --address "$address"
}

cmd_kill_worker() {
  local i=${1:-1}
  if ! is_uint "$i" || ((i < 1)); then
    usage_error "kill-worker needs a worker index >= 1, got '$i'"
  fi
  node_up "$i" || die "worker $i is not running in $dir"
  export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$token_file
  unset RAY_AUTH_TOKEN
  local before n deadline=$((SECONDS + timeout))
  before=$(alive_nodes) || before=0
  stop_nodes KILL 5 "$i"
  echo "killed worker $i; waiting for Ray's health check to mark it dead (up to ${timeout}s)"
  while ((SECONDS < deadline)); do  # else 'status' right after this still counts the lost node alive
    n=$(alive_nodes) || n=$before
    if ((n < before)); then
      echo "alive nodes: $n"
      return 0
    fi
    sleep 1
  done
  echo "Ray still counts worker $i alive after ${timeout}s; 'status' shows it once Ray notices"
}

(($#)) || usage_error "missing command"
cmd=$1
shift
case $cmd in
  up) cmd_up "$@" ;;
  down|status|env)
    (($# == 0)) || { [[ $1 == -h || $1 == --help ]] && { usage; exit 0; }; usage_error "$cmd takes no arguments"; }
    case $cmd in down) cmd_down ;; status) cmd_status ;; env) env_lines ;; esac ;;
  kill-worker)
    (($# <= 1)) || usage_error "kill-worker takes at most one index"
    [[ ${1:-} == -h || ${1:-} == --help ]] && { usage; exit 0; }
    cmd_kill_worker "$@" ;;
  -h|--help|help) usage ;;
  *) usage_error "unknown command '$cmd'" ;;
esac
