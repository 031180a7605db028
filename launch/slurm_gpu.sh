#!/usr/bin/env bash
# Multi-node GPU training under SLURM: writes an sbatch script and submits it.
# jax.distributed.initialize() reads the SLURM environment, so every task runs the same
# command. Default: one process per node driving all of its GPUs.
#
# Usage: launch/slurm_gpu.sh [--dry_run] CONFIG WORKDIR [FLAGS...]
# Settings (environment): NODES (2), GPUS_PER_NODE (8), PARTITION (gpu), TIME (24:00:00),
#   VENV (.venv: a virtualenv with requirements.txt and "jax[cuda12]==0.10.2" installed),
#   PER_GPU=1 for one process per GPU instead, REVISION (HEAD).
# The job runs the committed code only: `git archive` of REVISION unpacked into
# WORKDIR/code/<commit> on the shared file system, so edits made while the job waits in the
# queue never change what it runs.
#   e.g. NODES=4 launch/slurm_gpu.sh configs/cityscapes.py /shared/runs/cs --config.batch_size=64
set -euo pipefail
dry_run=0
if [[ ${1:-} == --dry_run ]]; then dry_run=1; shift; fi
if [[ $# -lt 2 ]]; then sed -n '2,10p' "$0" >&2; exit 2; fi
config=$1 workdir=$(realpath -m "$2")
shift 2
commit=$(git rev-parse --short "${REVISION:-HEAD}")
code=$workdir/code/$commit
venv=$(cd "$(dirname "${VENV:-.venv}")" && pwd)/$(basename "${VENV:-.venv}")
nodes=${NODES:-2} gpus=${GPUS_PER_NODE:-8}
if [[ ${PER_GPU:-0} == 1 ]]; then
  tasks_line="#SBATCH --ntasks-per-node=$gpus
#SBATCH --gpus-per-task=1"
else
  tasks_line="#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=$gpus"
fi
script=$(cat <<SBATCH
#!/usr/bin/env bash
#SBATCH --job-name=p2p_jax
#SBATCH --nodes=$nodes
$tasks_line
#SBATCH --partition=${PARTITION:-gpu}
#SBATCH --time=${TIME:-24:00:00}
#SBATCH --output=$workdir/slurm-%j.out
set -euo pipefail
cd $code
srun $venv/bin/python -m p2p_jax.main --config=$config --workdir=$workdir $*
SBATCH
)
echo "+ git archive $commit | tar -x -C $code"
echo "$script"
if [[ $dry_run == 0 ]]; then
  mkdir -p "$code"
  git archive "$commit" | tar -x -C "$code"
  echo "$script" | sbatch
fi
