#!/usr/bin/env bash
# As the reference's datasets/download_pix2pix_dataset.sh: `bash scripts/download_pix2pix_dataset.sh
# facades` fetches datasets/facades/ and prints the training command (p2p_jax/data/download.py).
set -euo pipefail
exec "${PYTHON:-python3}" -m p2p_jax.data.download --dataset="${1:?a dataset name}" "${@:2}"
