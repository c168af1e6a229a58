"""Multi-process data parallelism: lab 2's CNN trained by one process, then by two processes on
this machine (Keras's ``DataParallel`` on JAX, gradients all-reduced over Gloo), in one run.

Measured, for each: images per second and seconds per step (median epoch after the first, which
compiles); for two processes, the seconds one all-reduce of the gradients takes on its own (a
``psum`` of as many float32 values as the model has parameters), and so the computation's share
of a step. Bytes per step are counted, not measured: a ring all-reduce sends ``2 (N - 1) / N``
times the gradients' bytes from every process. From those figures
``docs/guides/backends-and-devices.md`` projects steps per second to 4, 16 and 64 machines for a
stated network: a projection, not a measurement (``--project`` prints it).

Two processes on one 2-core machine share its cores, so they measure the engine's overhead and
the exchange, not a speed-up; on machines of their own, each process has its own cores.

    python benchmarks/scale.py [--images 2048] [--batch 128] [--epochs 4]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "scale.json"
SHAPE = (32, 32, 3)  # CIFAR-10's images: the CNN's compute is that of a real data set
CLASSES = 10


def worker(images: int, batch: int, epochs: int) -> dict:
    """One process's run (alone, or one of a cluster the environment describes)."""
    os.environ["KERAS_BACKEND"] = "jax"
    os.environ["JAX_PLATFORMS"] = "cpu"
    from dllabs.training import cluster

    joined = cluster.join("jax")
    import jax
    import numpy as np
    import yaml

    from dllabs.models.builders import build_cnn
    from dllabs.params import CNN, Base
    from dllabs.training.callbacks import EpochTimer
    from dllabs.training.devices import setup_run
    from dllabs.training.fit import fit

    defaults = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))["cnn"]
    params = CNN(
        **{
            **defaults,
            "batch_size": batch,
            "epochs": epochs,
            "patience": epochs,
            "reduce_lr_patience": 0,
        }
    )
    device = setup_run(
        Base(seed=0, backend="jax", device="cpu", mixed_precision="off", devices=1),
        multi_process=True,
    )
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (images + batch, *SHAPE), dtype=np.uint8)
    y = rng.integers(0, CLASSES, images + batch)
    model = build_cnn(SHAPE, CLASSES, params, None)
    timer = EpochTimer()
    fit(
        model,
        (x[:images], y[:images]),
        (x[images:], y[images:]),
        params,
        device,
        None,
        verbose=0,
        extra_callbacks=[timer],
    )
    steps = images // batch
    step = float(np.median(timer.seconds[1:])) / (steps + 1)  # + the validation batch
    record = {
        "processes": device.processes,
        "parameters": int(model.count_params()),
        "seconds_per_step": step,
        "images_per_s": batch / step,
    }
    if joined is not None:
        record["allreduce_s"] = allreduce_seconds(record["parameters"], jax, np)
    return record


def allreduce_seconds(values: int, jax, np) -> float:  # the modules, imported by worker()
    """Median seconds of one ``psum`` of ``values`` float32 over every process's device."""
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    mesh = Mesh(np.array(jax.devices()), ("d",))
    total = jax.jit(
        jax.shard_map(lambda a: jax.lax.psum(a, "d"), mesh=mesh, in_specs=P("d"), out_specs=P())
    )
    local = np.ones((1, values), np.float32)
    array = jax.make_array_from_process_local_data(NamedSharding(mesh, P("d")), local)
    jax.block_until_ready(total(array))  # compile
    seconds = []
    for _ in range(20):
        start = time.perf_counter()
        jax.block_until_ready(total(array))
        seconds.append(time.perf_counter() - start)
    return float(np.median(seconds))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(processes: int, args: argparse.Namespace) -> dict:
    command = [
        sys.executable,
        __file__,
        "--worker",
        "--images",
        str(args.images),
        "--batch",
        str(args.batch),
        "--epochs",
        str(args.epochs),
    ]
    address = f"127.0.0.1:{free_port()}"
    started = []
    for index in range(processes):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "0"}
        if processes > 1:
            env |= {
                "KERAS_DISTRIBUTION_NUM_PROCESSES": str(processes),
                "KERAS_DISTRIBUTION_PROCESS_ID": str(index),
                "KERAS_DISTRIBUTION_JOB_ADDRESSES": address,
            }
        started.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=1800)[0] for p in started]
    if any(p.returncode for p in started):
        raise SystemExit(f"a worker of the {processes}-process run failed")
    return json.loads(outputs[0].strip().splitlines()[-1])


def project(measured: dict, bandwidth_gbit: float, latency_s: float) -> list[dict]:
    """Steps per second and efficiency at N machines, each keeping the measured per-process
    batch (the global batch grows with N): computation as measured alone on one process, plus a
    ring all-reduce of the gradients over the stated network."""
    one = measured["one_process"]
    compute, nbytes = one["seconds_per_step"], one["parameters"] * 4
    rows = []
    for n in (2, 4, 16, 64):
        sent = 2 * (n - 1) / n * nbytes
        exchange = sent / (bandwidth_gbit * 1e9 / 8) + 2 * (n - 1) * latency_s
        step = compute + exchange
        rows.append(
            {
                "machines": n,
                "bytes_sent_per_process": round(sent),
                "exchange_s": exchange,
                "step_s": step,
                "steps_per_s": 1 / step,
                "images_per_s": n * measured["batch"] / step,
                "efficiency": compute / step,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=128, help="global batch")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bandwidth-gbit", type=float, default=10.0)
    parser.add_argument("--latency-ms", type=float, default=0.05)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.images, args.batch, args.epochs)), flush=True)
        return
    sys.path.insert(0, str(ROOT))
    from dllabs.provenance import platform_record

    one, two = run(1, args), run(2, args)
    nbytes = one["parameters"] * 4
    results = {
        "images": args.images,
        "batch": args.batch,
        "image_shape": list(SHAPE),
        "one_process": one,
        "two_processes": two,
        "two_processes_vs_one": one["seconds_per_step"] / two["seconds_per_step"],
        "gradient_bytes": nbytes,
        "ring_bytes_sent_per_process_2": nbytes,
        "two_processes_computation_s": two["seconds_per_step"] - two["allreduce_s"],
        "projection": {
            "bandwidth_gbit": args.bandwidth_gbit,
            "latency_ms": args.latency_ms,
            "rows": [],
        },
        "platform": platform_record(),
    }
    results["projection"]["rows"] = project(results, args.bandwidth_gbit, args.latency_ms / 1e3)
    print(json.dumps({k: v for k, v in results.items() if k != "platform"}, indent=1))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
