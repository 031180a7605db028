"""p2p_jax: a JAX/Flax trainer for paired image-to-image translation (Pix2Pix).

Sub-packages by job: `data` (sources and the Grain pipeline), `models` (the reference's
networks), `ops` (their convolutions, per backend), `train` (state, step, loop), `eval`
(metrics, evaluators, reports), `serving` (restore, predict, export), `interop` (other
frameworks' files), `perf` (benchmarks). See docs/ARCHITECTURE.md.
"""
