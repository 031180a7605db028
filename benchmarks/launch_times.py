"""Seconds from launch to a line of the log, as a user waits for it, alternating variants in
one session (JSON lines, then medians):

  # --mode=predict of one workdir by two checkouts (e.g. before/after a change), peak RSS too:
  .venv/bin/python benchmarks/launch_times.py predict --workdir=W --input=IMAGE_OR_FOLDER \\
      --code=/path/to/old/checkout --code=. --rounds=3
  # the compilation cache: first logged step of a config and serving start, off/cold/warm:
  .venv/bin/python benchmarks/launch_times.py cache --config=configs/default.py \\
      --workdir=W_TRAINED --rounds=2
  # first logged step of a config by two checkouts, each with its own warm compilation cache:
  .venv/bin/python benchmarks/launch_times.py train --config=configs/default.py \\
      --workdir=UNUSED --code=/path/to/old/checkout --code=. --rounds=3
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

# A training run's first logged step, as this version and older ones print it.
FIRST_STEP = ("img/s, G ", "train/g_loss")


def timed(code: str, args: list[str], marker: tuple[str, ...] | None, env: dict) -> dict:
    """Runs `python -m p2p_jax.main ARGS` in `code`; seconds to the first log line holding
    one of `marker` (None: to the first file in --output=) and the peak RSS (GNU time)."""
    output = next((a.split("=", 1)[1] for a in args if a.startswith("--output=")), None)
    start = time.perf_counter()
    proc = subprocess.Popen(["/usr/bin/time", "-f", "peak_rss_kib=%M", sys.executable, "-m",
                             "p2p_jax.main", *args], cwd=code, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    seconds = None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if seconds is None and marker and any(m in line for m in marker):
            seconds = time.perf_counter() - start
            os.killpg(proc.pid, signal.SIGKILL)  # GNU time and the run under it.
            break
        if seconds is None and output and os.path.isdir(output) and os.listdir(output):
            seconds = time.perf_counter() - start
    proc.wait()
    rest = proc.stdout.read() if not proc.stdout.closed else ""
    rss = [int(x.split("=")[1]) for x in (lines + rest.splitlines())
           if x.startswith("peak_rss_kib=")]
    if seconds is None:
        raise RuntimeError("".join(lines[-20:]))
    return {"seconds": round(seconds, 2), "peak_rss_mib": round(rss[0] / 1024) if rss else None}


def predict(options, env) -> list[dict]:
    records = []
    for round_ in range(options.rounds):
        codes = options.code if round_ % 2 == 0 else options.code[::-1]
        for code in codes:
            out = tempfile.mkdtemp(prefix="launch_times_")
            shutil.rmtree(out)
            record = timed(code, [f"--workdir={os.path.abspath(options.workdir)}",
                                  "--mode=predict", f"--input={os.path.abspath(options.input)}",
                                  f"--output={out}"], None, env)
            shutil.rmtree(out, ignore_errors=True)
            records.append({"variant": os.path.abspath(code), **record})
            print(json.dumps(records[-1]), flush=True)
    return records


def cache(options, env) -> list[dict]:
    env = {k: v for k, v in env.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    records = []
    for _ in range(options.rounds):
        for job, args, marker in (
                ("train", [f"--config={options.config}"], FIRST_STEP),
                ("serve", [f"--workdir={os.path.abspath(options.workdir)}", "--mode=serve",
                           "--port=7871"], ("serving ",))):
            folder = tempfile.mkdtemp(prefix="launch_times_cache_")
            for variant, extra in (("off", {"P2P_JAX_COMPILATION_CACHE": "0"}),
                                   ("cold", {"XDG_CACHE_HOME": folder}),
                                   ("warm", {"XDG_CACHE_HOME": folder})):
                workdir = tempfile.mkdtemp(prefix="launch_times_run_")
                run_args = args + ([f"--workdir={workdir}"] if job == "train" else [])
                record = timed(".", run_args, marker, {**env, **extra})
                shutil.rmtree(workdir, ignore_errors=True)
                records.append({"variant": f"{job} {variant}", **record})
                print(json.dumps(records[-1]), flush=True)
            shutil.rmtree(folder, ignore_errors=True)
    return records


def train(options, env) -> list[dict]:
    """First logged step of --config by each --code, every checkout with its own compilation
    cache, warmed by one untimed launch first (what a user's second launch waits for)."""
    env = {k: v for k, v in env.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    caches = {code: tempfile.mkdtemp(prefix="launch_times_cache_") for code in options.code}

    def launch(code: str) -> dict:
        workdir = tempfile.mkdtemp(prefix="launch_times_run_")
        try:
            return timed(code, [f"--config={options.config}", f"--workdir={workdir}"],
                         FIRST_STEP, {**env, "XDG_CACHE_HOME": caches[code]})
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    for code in options.code:
        launch(code)
    records = []
    for round_ in range(options.rounds):
        for code in options.code if round_ % 2 == 0 else options.code[::-1]:
            records.append({"variant": os.path.abspath(code), **launch(code)})
            print(json.dumps(records[-1]), flush=True)
    for folder in caches.values():
        shutil.rmtree(folder, ignore_errors=True)
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("predict", "cache", "train"))
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--input")
    parser.add_argument("--code", action="append", default=[])
    parser.add_argument("--config", default="configs/default.py")
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    env = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
    records = {"predict": predict, "cache": cache, "train": train}[options.what](options, env)
    for variant in dict.fromkeys(r["variant"] for r in records):
        seconds = [r["seconds"] for r in records if r["variant"] == variant]
        rss = [r["peak_rss_mib"] for r in records
               if r["variant"] == variant and r["peak_rss_mib"] is not None]
        print(json.dumps({"variant": variant, "median_seconds": statistics.median(seconds),
                          "range_seconds": [min(seconds), max(seconds)],
                          "median_peak_rss_mib": statistics.median(rss) if rss else None}))


if __name__ == "__main__":
    main()
