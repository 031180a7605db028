#!/usr/bin/env bash
# Runs N trainer processes on this machine, joined by jax.distributed over 127.0.0.1, each
# with its own fake CPU devices: the multi-host code path (per-process data shards, global
# batch assembly, gloo collectives, every process in Orbax saves) on one CPU.
#
# Usage: launch/local_multiprocess.sh [--dry_run] [--devices_per_process=D] N CONFIG WORKDIR [FLAGS...]
#   e.g. launch/local_multiprocess.sh 2 configs/tiny.py /tmp/p2p_mp --config.batch_size=8
# Logs: WORKDIR/logs/process_<i>.log. Exits non-zero if any process fails.
# P2P_JAX_HUGEPAGE_MALLOC=0 keeps the processes on glibc's default malloc (see docs/scaling.md).
set -euo pipefail
dry_run=0
devices=2
while [[ $# -gt 0 && $1 == --* ]]; do
  case $1 in
    --dry_run) dry_run=1 ;;
    --devices_per_process=*) devices=${1#*=} ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
if [[ $# -lt 3 ]]; then
  sed -n '2,9p' "$0" >&2
  exit 2
fi
num=$1 config=$2 workdir=$3
shift 3
flags=""  # Quoted, so a flag like --config.eval.evaluators=('fcn',) survives bash -c.
[[ $# -gt 0 ]] && flags=$(printf ' %q' "$@")
python=${PYTHON:-python3}
[[ -x .venv/bin/python && -z ${PYTHON:-} ]] && python=.venv/bin/python
port=${PORT:-$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}

# The caller's XLA flags are kept; the device count comes last, so it is the one XLA takes.
xla_flags=$(printf '%q' "${XLA_FLAGS:+$XLA_FLAGS }--xla_force_host_platform_device_count=$devices")
commands=()
for ((i = 0; i < num; i++)); do
  commands+=("JAX_PLATFORMS=cpu XLA_FLAGS=$xla_flags P2P_JAX_HUGEPAGE_MALLOC=${P2P_JAX_HUGEPAGE_MALLOC:-1} $python -m p2p_jax.main --config=$config --workdir=$workdir --coordinator_address=127.0.0.1:$port --num_processes=$num --process_id=$i$flags")
done
for ((i = 0; i < num; i++)); do echo "[process $i] ${commands[$i]}"; done
[[ $dry_run == 1 ]] && exit 0

mkdir -p "$workdir/logs"
pids=()
for ((i = 0; i < num; i++)); do
  bash -c "${commands[$i]}" > "$workdir/logs/process_$i.log" 2>&1 &
  pids+=($!)
done
status=0
for ((i = 0; i < num; i++)); do
  if ! wait "${pids[$i]}"; then
    echo "process $i failed; see $workdir/logs/process_$i.log" >&2
    status=1
  fi
done
exit $status
