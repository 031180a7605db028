#!/usr/bin/env bash
# TPU VM pod slice: create it, install the code on every worker, train, delete it.
# Every worker runs the same command; jax.distributed.initialize() finds the pod by itself.
#
# Usage: launch/tpu_vm_pod.sh [--dry_run] {create|setup|train|delete|all} CONFIG WORKDIR [FLAGS...]
#   WORKDIR must be a gs:// bucket path that every worker can write (checkpoints, summaries).
#   setup ships the committed code only: `git archive` of REVISION (default HEAD) copied to
#   every worker (or, with REPO, a clone of REVISION there), never the working tree (.venv,
#   workdirs); uncommitted changes stay here. Then pip installs requirements.txt with the TPU
#   build of jax, and requirements-nodeps.txt.
# Settings (environment): TPU_NAME (p2p-jax), ZONE (us-central2-b), ACCELERATOR (v4-32),
#   RUNTIME (tpu-ubuntu2204-base), REPO (git URL to clone instead of copying an archive),
#   REVISION (HEAD).
#   e.g. launch/tpu_vm_pod.sh all configs/cityscapes.py gs://my-bucket/p2p/cityscapes \
#          --config.batch_size=64 --config.dtype=bfloat16
set -euo pipefail
dry_run=0
if [[ ${1:-} == --dry_run ]]; then dry_run=1; shift; fi
if [[ $# -lt 3 ]]; then sed -n '2,10p' "$0" >&2; exit 2; fi
action=$1 config=$2 workdir=$3
shift 3
if [[ $workdir != gs://* ]]; then
  echo "error: WORKDIR=$workdir must be a gs:// path: every worker writes there" >&2
  exit 2
fi
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
  local revision=${REVISION:-HEAD} commit archive
  commit=$(git rev-parse --short "$revision")
  if [[ -n ${REPO:-} ]]; then
    run "${ssh[@]}" --command="rm -rf p2p_jax && git clone $REPO p2p_jax && git -C p2p_jax checkout $commit"
  else
    if [[ -n $(git status --porcelain --untracked-files=no) ]]; then
      echo "note: uncommitted changes are not shipped; the workers get commit $commit" >&2
    fi
    archive=${TMPDIR:-/tmp}/p2p_jax-$commit.tar.gz
    run git archive --format=tar.gz --prefix=p2p_jax/ --output="$archive" "$commit"
    run gcloud compute tpus tpu-vm scp --zone="$zone" --worker=all "$archive" \
      "$name":p2p_jax.tar.gz
    run "${ssh[@]}" --command="rm -rf p2p_jax && tar -xzf p2p_jax.tar.gz && rm p2p_jax.tar.gz"
  fi
  run "${ssh[@]}" --command="cd p2p_jax && python3 -m pip install -r requirements.txt 'jax[tpu]==0.10.2' && python3 -m pip install --no-deps -r requirements-nodeps.txt"
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
