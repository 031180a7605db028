#!/usr/bin/env bash
# As the reference's scripts/download_pix2pix_model.sh: `bash scripts/download_pix2pix_model.sh
# facades_label2photo` fetches checkpoints/facades_label2photo_pretrained/latest_net_G.pth and
# prints the import command (p2p_jax/data/download.py).
set -euo pipefail
exec "${PYTHON:-python3}" -m p2p_jax.data.download --model="${1:?a model name}" "${@:2}"
