#!/usr/bin/env bash
# TPU VM pod slice: create it, install the code on every worker, train, delete it.
# Every worker runs the same command; jax.distributed.initialize() finds the pod by itself.
#
# Usage: launch/tpu_vm_pod.sh [--dry_run] {create|setup|train|delete|all} CONFIG WORKDIR [FLAGS...]
#   WORKDIR must be a gs:// bucket path that every worker can write (checkpoints, summaries).
# Settings (environment): TPU_NAME (p2p-jax), ZONE (us-central2-b), ACCELERATOR (v4-32),
#   RUNTIME (tpu-ubuntu2204-base), REPO (git URL to clone; default: copy this checkout).
#   e.g. launch/tpu_vm_pod.sh all configs/cityscapes.py gs://my-bucket/p2p/cityscapes \
#          --config.batch_size=64 --config.dtype=bfloat16
set -euo pipefail
dry_run=0
if [[ ${1:-} == --dry_run ]]; then dry_run=1; shift; fi
if [[ $# -lt 3 ]]; then sed -n '2,10p' "$0" >&2; exit 2; fi
action=$1 config=$2 workdir=$3
shift 3
name=${TPU_NAME:-p2p-jax} zone=${ZONE:-us-central2-b}
accelerator=${ACCELERATOR:-v4-32} runtime=${RUNTIME:-tpu-ubuntu2204-base}
ssh=(gcloud compute tpus tpu-vm ssh "$name" --zone="$zone" --worker=all)

run() {
  echo "+ $*"
  [[ $dry_run == 1 ]] || "$@"
}

create() {
  run gcloud compute tpus tpu-vm create "$name" --zone="$zone" \
    --accelerator-type="$accelerator" --version="$runtime"
}

setup() {
  if [[ -n ${REPO:-} ]]; then
    run "${ssh[@]}" --command="rm -rf p2p_jax && git clone $REPO p2p_jax"
  else
    run gcloud compute tpus tpu-vm scp --recurse --zone="$zone" --worker=all \
      "$(pwd)" "$name":p2p_jax
  fi
  run "${ssh[@]}" --command="cd p2p_jax && python3 -m pip install -r requirements.txt 'jax[tpu]==0.10.2'"
}

train() {
  run "${ssh[@]}" --command="cd p2p_jax && python3 -m p2p_jax.main --config=$config --workdir=$workdir $*"
}

delete() {
  run gcloud compute tpus tpu-vm delete "$name" --zone="$zone" --quiet
}

case $action in
  create) create ;;
  setup) setup ;;
  train) train "$@" ;;
  delete) delete ;;
  all) create; setup; train "$@"; delete ;;
  *) echo "unknown action $action" >&2; exit 2 ;;
esac
