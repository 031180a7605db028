"""`python -m p2p_jax.benchmark {train,predict,input,ab} --config=FILE [...]`: the benchmark
programs of `p2p_jax.perf.benchmark`, started like the trainer (the process is prepared, e.g.
huge-page malloc on CPU, before anything imports JAX)."""

from p2p_jax import host

if __name__ == "__main__":
    host.prepare_process()
    from absl import app

    from p2p_jax.perf import benchmark

    app.run(benchmark.main)
