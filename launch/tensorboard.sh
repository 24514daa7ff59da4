#!/usr/bin/env bash
# TensorBoard for one experiment (or a whole storage folder), local path or bucket
# URI, served on 127.0.0.1 unless AETUNE_TB_HOST says otherwise.
set -euo pipefail

prog=tensorboard.sh
usage() {
  cat <<EOF
usage: $prog EXPERIMENT_PATH_OR_URI [--port P]

  EXPERIMENT_PATH_OR_URI  e.g. runs/quick, /shared/runs/study, s3://bucket/runs/study
  --port P                port to serve on (default 6006)

environment:
  AETUNE_TB_HOST  bind address (default 127.0.0.1; 0.0.0.0 exposes it to the network)
  AETUNE_PYTHON   python with tensorboard installed (default python3)

Remote machine? Keep the default host and tunnel: ssh -L 6006:127.0.0.1:6006 HOST
Bucket URIs need the reader in the same environment: s3:// needs boto3 (or s3fs),
gs:// needs gcsfs, other schemes the matching fsspec package.
EOF
}
die() { echo "$prog: error: $*" >&2; exit 1; }
usage_error() { echo "$prog: error: $* (see --help)" >&2; exit 2; }

logdir='' port=6006
while (($#)); do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --port)
      (($# >= 2)) || usage_error "--port needs a value"
      if ! [[ $2 =~ ^[0-9]+$ ]] || (($2 < 1 || $2 > 65535)); then
        usage_error "--port must be 1-65535, got '$2'"
      fi
      port=$2; shift 2 ;;
    -*) usage_error "unknown option '$1'" ;;
    *) [[ -z $logdir ]] || usage_error "only one experiment path or URI"; logdir=$1; shift ;;
  esac
done
[[ -n $logdir ]] || usage_error "missing EXPERIMENT_PATH_OR_URI"
py=${AETUNE_PYTHON:-python3}
"$py" -c 'import tensorboard' 2>/dev/null || die "$py cannot import tensorboard (pip install tensorboard)"

can_read() {  # TensorBoard reads s3:// through boto3, any other scheme through fsspec
  "$py" - "$1" 2>/dev/null <<'PY'
import importlib.util, sys
scheme = sys.argv[1]
if scheme == "s3" and importlib.util.find_spec("boto3"):
    sys.exit(0)
import fsspec
fsspec.get_filesystem_class(scheme)
PY
}

if [[ $logdir == *://* ]]; then
  scheme=${logdir%%://*}
  case $scheme in
    s3) hint="pip install boto3 (or s3fs)" ;;
    gs) hint="pip install gcsfs" ;;
    *) hint="install the fsspec implementation for $scheme://" ;;
  esac
  can_read "$scheme" || die "$py cannot read $scheme:// URIs: $hint"
else
  [[ -d $logdir ]] || die "no such directory: $logdir"
fi

host=${AETUNE_TB_HOST:-127.0.0.1}
echo "TensorBoard for $logdir on http://$host:$port (remote: ssh -L $port:127.0.0.1:$port HOST)"
exec "$py" -m tensorboard.main --logdir "$logdir" --host "$host" --port "$port"
