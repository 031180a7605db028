"""`python -m p2p_jax.benchmark {train,predict,memory,input,ab} --config=FILE [...]`: the benchmark
programs of `p2p_jax.perf.measure`, started like the trainer (the process is prepared, e.g.
huge-page malloc on CPU, before anything imports JAX)."""

from p2p_jax import host

if __name__ == "__main__":
    host.prepare_process()
    from absl import app

    from p2p_jax.perf import measure

    app.run(measure.main)
