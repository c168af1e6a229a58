"""Benchmark: image folders larger than memory through ``preprocess`` and ``train_cnn``.

1. **Large folder**: generates ``--images`` JPEGs (default 20,000 at 160x160 in 4 class folders:
   smooth colour noise with grain, cheap to make but not trivially compressible), then runs
   ``download``, ``preprocess`` and ``train_cnn`` (``--epochs`` 2) in a scratch workdir as DVC
   runs them, each in its own process. Records each stage's peak RSS (``os.wait4``'s
   ``ru_maxrss`` of that process) and wall time, and ``train_cnn``'s images/s from its run
   summary. The memory budget is the default (``DL_LABS_MEMORY_MB``), so splits are on disk.
2. **A folder that fits** (``--fits`` images, default 2,000): the same CNN trained three ways:
   Keras's array path (``train_cnn`` before streaming), ``ImageBatches`` over the arrays in
   memory, ``ImageBatches`` over the ``.npy`` files on disk. Peak RSS of a 2-epoch run of each
   way in its own process; images/s from ``--rounds`` rounds of one ``--compare-epochs`` run per
   way, in turn in one process (epochs timed with validation, as ``train_cnn`` times them, each
   run's first epoch left out), and the change between ways as the median of each round's
   ratio: other jobs on a shared machine disturb that far less than runs in separate processes,
   whose epochs here varied by +-30% from one minute to the next.
3. **Digits**: the same three ways on the bundled 8x8 digits with the default CNN: what routing
   small in-memory data through ``ImageBatches`` costs against Keras's array path.

Since ``dllabs.training.fit`` batches array inputs through ``ImageBatches`` as well (every epoch
reshuffled), the ``array`` way trains as ``memory`` does; ``results/streaming.json`` was measured
before that change, when ``array`` was still Keras's own array path.

The CNN is ``params.yaml``'s ``cnn`` section with ``BENCH_CNN`` (a smaller CNN: the default one's
activations at 160x160 alone take TensorFlow past 1 GB, see ``--set``). Results go to
``benchmarks/results/streaming.json`` and a table is printed.

    python benchmarks/streaming.py                      # ~40 min on 2 CPU cores
    python benchmarks/streaming.py --images 2000 --fits 500 --compare-epochs 2   # quick
    python benchmarks/streaming.py --skip fits --skip digits --set cnn.batch_size=16
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "streaming.json"
BOUND_MB = 1024
# As in dvc.yaml's stage commands.
STAGE_ENV = {
    "PYTHONHASHSEED": "0",
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "OPENBLAS_CORETYPE": "Haswell",
}
BENCH_CNN = {"cnn.filters": [8, 16, 32], "cnn.kernel_sizes": [3], "cnn.batch_size": 32}
MODES = ("array", "memory", "disk")


def make_folder(root: Path, n: int, size: int, classes: int, seed: int = 0) -> Path:
    """``n`` JPEGs in ``classes`` class folders; reused when a complete one is already there."""
    from PIL import Image

    spec = f"{n} {size} {classes} {seed}\n"
    done = root / ".complete"
    if done.is_file() and done.read_text() == spec:
        return root
    rng = np.random.default_rng(seed)
    for k in range(classes):
        (root / f"class_{k}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        label = i % classes
        coarse = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        channel = coarse[..., label % 3]
        coarse[..., label % 3] = channel // 2 + (128 if label < 3 else 0)  # a class tint
        smooth = Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)
        grain = rng.integers(-24, 25, (size, size, 3))
        pixels = (np.asarray(smooth, dtype=np.int16) + grain).clip(0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / f"class_{label}" / f"{i:06d}.jpg", quality=90)
    done.write_text(spec)
    return root


def set_key(params: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = params
    for part in parents:
        node = node[part]
    node[last] = value


def workdir(root: Path, overrides: dict[str, Any]) -> Path:
    """A scratch folder holding ``params.yaml`` with ``overrides``, as the tests' ``workdir``."""
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    for key, value in overrides.items():
        set_key(params, key, copy.deepcopy(value))
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    return root


def measure(cmd: list[str], cwd: Path, log: Path, env: dict[str, str] | None = None) -> dict:
    """Run ``cmd``; its wall time and peak RSS (this process and the children it waited for)."""
    start = time.perf_counter()
    with log.open("w") as out:
        process = subprocess.Popen(
            cmd,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **STAGE_ENV, "PYTHONPATH": str(REPO), **(env or {})},
        )
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {process.returncode}); see {log}")
    return {
        "seconds": round(time.perf_counter() - start, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # Linux: kilobytes
    }


def stage(name: str, **paths: str) -> list[str]:
    args = [f"--{k.replace('_', '-')}={v}" for k, v in paths.items()]
    return [sys.executable, "-m", f"stages.{name}", *args]


def run_pipeline(root: Path, overrides: dict[str, Any]) -> dict:
    """download, preprocess and train_cnn in ``root``; per-stage wall time and peak RSS."""
    cwd = workdir(root, overrides)
    steps = {
        "download": stage(
            "download",
            images="data/raw/images",
            anomaly="data/raw/anomaly",
            text="data/raw/text",
            text_eval="data/raw/text_eval",
        ),
        "preprocess": stage(
            "preprocess",
            raw_images="data/raw/images",
            raw_anomaly="data/raw/anomaly",
            images="data/processed/images",
            images_summary="data/processed/images.json",
            series="data/processed/series.npz",
            series_summary="data/processed/series.json",
        ),
        "train_cnn": stage(
            "train_cnn", images="data/processed/images", model="models/cnn", plots="plots/cnn"
        ),
    }
    stages = {}
    for name, cmd in steps.items():
        stages[name] = measure(cmd, cwd, root / f"{name}.log")
        print(f"  {name}: {stages[name]}", flush=True)
    summary = json.loads((cwd / "models" / "cnn" / "summary.json").read_text())
    info = json.loads((cwd / "data" / "processed" / "images.json").read_text())
    n_train = info["splits"]["train"]["rows"]
    processed = sum(f.stat().st_size for f in (cwd / "data/processed/images").iterdir())
    return {
        "splits": {s: v["rows"] for s, v in info["splits"].items()},
        "processed_images_mb": round(processed / 2**20, 1),
        "stages": stages,
        "train_cnn_seconds_per_epoch": round(summary["seconds_per_epoch"], 2),
        "train_cnn_images_per_s": round(n_train / summary["seconds_per_epoch"], 1),
        "within_bound": all(s["peak_rss_mb"] <= BOUND_MB for s in stages.values()),
    }


def train(images: Path, mode: str, epochs: int) -> dict:
    """(In a child process) train as ``train_cnn`` does, one way; its peak RSS and epoch times."""
    import resource

    from dllabs.data.datasets import ImageBatches, ImageSplits
    from dllabs.models.builders import PixelStats, build_cnn
    from dllabs.params import load_params
    from dllabs.training.callbacks import EpochTimer
    from dllabs.training.devices import setup_run
    from dllabs.training.fit import fit

    params = load_params()
    cnn = params.cnn.model_copy(update={"epochs": epochs, "patience": 0, "reduce_lr_patience": 0})
    data = ImageSplits.load(images, ("train", "val"), in_memory=mode != "disk")
    device = setup_run(params.base)
    model = build_cnn(data.input_shape, data.n_classes, cnn, PixelStats.of(data["train"][0]))
    if mode == "array":
        train_data, val_data = data["train"], data["val"]
    else:
        train_data = ImageBatches(*data["train"], cnn.batch_size, shuffle=True, seed=0)
        val_data = ImageBatches(*data["val"], cnn.batch_size)
    timer = EpochTimer()
    fit(model, train_data, val_data, cnn, device, None, extra_callbacks=[timer], verbose=0)
    return {
        "mode": mode,
        "train_images": len(data["train"][1]),
        "epoch_seconds": [round(s, 3) for s in timer.seconds],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def alternate(images: Path, rounds: int, epochs: int) -> dict:
    """(In a child process) ``rounds`` rounds of one ``epochs``-epoch run per way, the ways in
    rotating order, each a fresh model trained by ``dllabs.training.fit`` as ``train_cnn`` trains
    it. Runs of one round are minutes apart, so load from other jobs on a shared machine hits
    them alike; every run's first epoch (graph tracing) is left out."""
    import keras

    from dllabs.data.datasets import ImageBatches, ImageSplits
    from dllabs.models.builders import PixelStats, build_cnn
    from dllabs.params import load_params
    from dllabs.training.callbacks import EpochTimer
    from dllabs.training.devices import setup_run
    from dllabs.training.fit import fit

    params = load_params()
    cnn = params.cnn.model_copy(update={"epochs": epochs, "patience": 0, "reduce_lr_patience": 0})
    seed, batch = params.base.seed, cnn.batch_size
    memory = ImageSplits.load(images, ("train", "val"), in_memory=True)
    disk = ImageSplits.load(images, ("train", "val"), in_memory=False)
    device = setup_run(params.base)
    stats = PixelStats.of(memory["train"][0])

    def data(mode: str) -> tuple:
        if mode == "array":
            return memory["train"], memory["val"]
        split = memory if mode == "memory" else disk
        return (
            ImageBatches(*split["train"], batch, shuffle=True, seed=seed),
            ImageBatches(*split["val"], batch),
        )

    # The data path alone: an epoch of batches as Keras asks for them, fastest of 3 passes.
    batch_ms = {}
    for mode in ("memory", "disk"):
        train = data(mode)[0]
        passes = []
        for _ in range(3):
            start = time.perf_counter()
            for i in range(len(train)):
                train[i]
            passes.append((time.perf_counter() - start) / len(train) * 1e3)
        batch_ms[mode] = round(min(passes), 3)
    seconds: dict[str, list[list[float]]] = {mode: [] for mode in MODES}
    for r in range(rounds):
        for mode in MODES[r % 3 :] + MODES[: r % 3]:
            keras.utils.set_random_seed(seed)
            model = build_cnn(memory.input_shape, memory.n_classes, cnn, stats)
            timer = EpochTimer()
            fit(model, *data(mode), cnn, device, None, extra_callbacks=[timer], verbose=0)
            seconds[mode].append([round(t, 3) for t in timer.seconds[1:]])
            print(mode, seconds[mode][-1], flush=True)
    return {
        "train_images": len(memory["train"][1]),
        "epoch_seconds": seconds,
        "batches_per_epoch": len(data("memory")[0]),
        "batch_ms": batch_ms,
    }


def compare(root: Path, overrides: dict[str, Any], rounds: int, epochs: int) -> dict:
    """Preprocess once; peak RSS of a 2-epoch run per way (each its own process), and images/s
    of each way from alternated runs (one process)."""
    cwd = workdir(root, overrides)
    for name, cmd in (
        (
            "download",
            stage(
                "download",
                images="data/raw/images",
                anomaly="data/raw/anomaly",
                text="data/raw/text",
                text_eval="data/raw/text_eval",
            ),
        ),
        (
            "preprocess",
            stage(
                "preprocess",
                raw_images="data/raw/images",
                raw_anomaly="data/raw/anomaly",
                images="data/processed/images",
                images_summary="data/processed/images.json",
                series="data/processed/series.npz",
                series_summary="data/processed/series.json",
            ),
        ),
    ):
        measure(cmd, cwd, root / f"{name}.log")
    script = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--train-images",
        "data/processed/images",
    ]
    rss, separate = {}, {}
    for mode in MODES:
        out = root / f"train_{mode}.json"
        cmd = [*script, "--train-mode", mode, "--epochs", "2", "--train-out", str(out)]
        rss[mode] = measure(cmd, cwd, root / f"train_{mode}.log")["peak_rss_mb"]
        run = json.loads(out.read_text())
        separate[mode] = round(run["train_images"] / run["epoch_seconds"][-1], 1)
    out = root / "alternated.json"
    cmd = [
        *script,
        "--train-mode",
        "alternate",
        "--rounds",
        str(rounds),
        "--epochs",
        str(epochs),
        "--train-out",
        str(out),
    ]
    measure(cmd, cwd, root / "alternated.log")
    done = json.loads(out.read_text())
    n, runs = done["train_images"], done["epoch_seconds"]
    # one figure per run: its median epoch; then per round, one way's figure against another's
    per_run = {mode: [statistics.median(run) for run in runs[mode]] for mode in MODES}
    result: dict[str, Any] = {"train_images": n, "rounds": rounds, "epochs": epochs, "modes": {}}
    # What reading from disk adds to an epoch, measured without the model: batches x extra ms.
    extra = (done["batch_ms"]["disk"] - done["batch_ms"]["memory"]) * done["batches_per_epoch"]
    epoch = statistics.median(t for run in runs["memory"] for t in run)
    result["data_path"] = {
        "batch_ms": done["batch_ms"],
        "disk_extra_share_of_epoch": round(extra / 1e3 / epoch, 5),
    }
    for mode in MODES:
        result["modes"][mode] = {
            "images_per_s": round(n / statistics.median(per_run[mode]), 1),
            "epoch_seconds": runs[mode],
            "peak_rss_mb": rss[mode],
            "separate_run_images_per_s": separate[mode],  # its second epoch: a noisier figure
        }
        print(f"  {mode}: {runs[mode]}, peak RSS {rss[mode]} MB", flush=True)

    def change(a: str, b: str) -> float:
        """Median over rounds of a's images/s over b's in the same round, minus 1."""
        ratios = [y / x for x, y in zip(per_run[a], per_run[b], strict=True)]
        return round(statistics.median(ratios) - 1, 4)

    result["disk_vs_memory"] = change("disk", "memory")
    result["disk_vs_array"] = change("disk", "array")
    result["memory_vs_array"] = change("memory", "array")
    return result


def parse_set(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key] = yaml.safe_load(value)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000, help="images in the large folder")
    parser.add_argument("--size", type=int, default=160, help="image side, pixels")
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2, help="train_cnn epochs, large folder")
    parser.add_argument("--fits", type=int, default=2_000, help="images in the folder that fits")
    parser.add_argument("--rounds", type=int, default=2, help="comparison rounds (a run each way)")
    parser.add_argument("--compare-epochs", type=int, default=4, help="epochs per comparison run")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="params override for the image runs (YAML value)",
    )
    parser.add_argument("--skip", action="append", default=[], choices=["large", "fits", "digits"])
    parser.add_argument("--scratch", type=Path, help="work folder, kept (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--train-mode", choices=[*MODES, "alternate"], help=argparse.SUPPRESS)
    parser.add_argument("--train-images", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--train-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.train_mode:  # the child process of one comparison run
        if args.train_mode == "alternate":
            result = alternate(args.train_images, args.rounds, args.epochs)
        else:
            result = train(args.train_images, args.train_mode, args.epochs)
        args.train_out.write_text(json.dumps(result))
        return

    from dllabs.provenance import platform_record

    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="dl-labs-streaming-"))
    scratch.mkdir(parents=True, exist_ok=True)
    folder_params = {
        "data.images": "folder",
        "data.image_size": [args.size, args.size],
        "data.color_mode": "rgb",
        **BENCH_CNN,
        **parse_set(args.set),
    }
    # Parts skipped keep what an earlier run wrote.
    results: dict[str, Any] = json.loads(args.out.read_text()) if args.out.is_file() else {}
    cnn = {k: v for k, v in folder_params.items() if k.startswith("cnn.")}
    results.update(machine=platform_record()["cpu"], bound_mb=BOUND_MB, cnn=cnn)
    if "large" not in args.skip:
        folder = make_folder(
            scratch / f"folder_{args.images}", args.images, args.size, args.classes
        )
        print(f"large folder: {args.images} images at {args.size} px", flush=True)
        overrides = {**folder_params, "data.images_dir": str(folder), "cnn.epochs": args.epochs}
        load = os.getloadavg()[0]
        results["large"] = {
            "images": args.images,
            "size": args.size,
            "epochs": args.epochs,
            **run_pipeline(scratch / "large", overrides),
            "load_average": [load, os.getloadavg()[0]],
        }
    if "fits" not in args.skip:
        folder = make_folder(scratch / f"folder_{args.fits}", args.fits, args.size, args.classes)
        print(f"folder that fits: {args.fits} images at {args.size} px", flush=True)
        overrides = {**folder_params, "data.images_dir": str(folder)}
        load = os.getloadavg()[0]
        results["fits"] = {
            "images": args.fits,
            "size": args.size,
            **compare(scratch / "fits", overrides, args.rounds, args.compare_epochs),
            "load_average": [load, os.getloadavg()[0]],
        }
    if "digits" not in args.skip:
        print("digits (default params)", flush=True)
        load = os.getloadavg()[0]
        results["digits"] = {
            **compare(scratch / "digits", {}, args.rounds, 12),
            "load_average": [load, os.getloadavg()[0]],
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print_table(results)
    print(f"written: {args.out}")


def print_table(results: dict) -> None:
    cpu = results["machine"]
    print(f"\n{cpu['model']}, {cpu['logical_cpus']} logical CPUs (load averages per part)")
    print(f"CNN: {results['cnn']}")
    if "large" in results:
        large = results["large"]
        print(
            f"\n{large['images']} images at {large['size']} px ({large['splits']}), "
            f"{large['processed_images_mb']} MB of arrays, {large['epochs']} epochs, "
            f"load {large.get('load_average', 'not recorded')}"
        )
        print(f"{'stage':<12}{'peak RSS MB':>12}{'seconds':>10}")
        for name, s in large["stages"].items():
            print(f"{name:<12}{s['peak_rss_mb']:>12.0f}{s['seconds']:>10.0f}")
        print(
            f"train_cnn: {large['train_cnn_images_per_s']} images/s; every stage within "
            f"{results['bound_mb']} MB: {large['within_bound']}"
        )
    for key, title in (("fits", "folder that fits"), ("digits", "digits, default CNN")):
        if key not in results:
            continue
        part = results[key]
        print(
            f"\n{title} ({part['train_images']} training images, {part['rounds']} rounds of "
            f"{part['epochs']}-epoch runs, load {part['load_average']}): images/s, median"
        )
        for mode, m in part["modes"].items():
            print(f"  {mode:<8}{m['images_per_s']:>10.1f}   peak RSS {m['peak_rss_mb']:.0f} MB")
        if "data_path" in part:
            path = part["data_path"]
            print(
                f"  data path alone, ms per batch: {path['batch_ms']}; disk adds "
                f"{path['disk_extra_share_of_epoch']:.2%} of an epoch"
            )
        print(
            f"  disk vs memory {part['disk_vs_memory']:+.1%}, disk vs array "
            f"{part['disk_vs_array']:+.1%}, "
            f"memory vs array {part['memory_vs_array']:+.1%}"
        )


if __name__ == "__main__":
    main()
