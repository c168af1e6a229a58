"""Benchmark: are the labs bit-identical across CPU kernel settings, and what does each cost?

Why: oneDNN (TensorFlow) and OpenBLAS (gensim's BLAS, through SciPy) pick their kernels by CPU at
run time, so a fresh clone on another x86-64 generation can move committed metrics. This script
reruns every training and evaluation stage of a scratch copy of the pipeline under several
environment settings, one after the other, and compares each run's metrics (``run.*`` timings
ignored) and model weights with the ``native`` run and with the setting's non-emulated twin.
Capping oneDNN and OpenBLAS *below* this CPU's ISA stands in for "another CPU generation": a lab
that is bit-identical between a setting and its emulated-older twin no longer depends on the ISA.

The stages overwrite the outputs of ``--repo``, so give it a scratch clone that has been through
``dvc repro`` once (the data stages need no TensorFlow and are not rerun):

    git clone . /tmp/numerics-run && (cd /tmp/numerics-run && dvc repro)
    python benchmarks/numerics.py --repo /tmp/numerics-run          # writes benchmarks/results/
    python benchmarks/numerics.py --report-only                     # Markdown from the JSON again

Timings come from a shared machine: settings run in turn (reversed in every other round) and
``native`` runs again at the end, so the spread of the native runs shows the noise.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
BASE_ENV = {"PYTHONHASHSEED": "0", "TF_CPP_MIN_LOG_LEVEL": "3"}  # as dvc.yaml's ${py}
CONTROLLED = (  # cleared from the inherited environment before a setting applies its own
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "ONEDNN_CPU_ISA_HINTS",
    "ONEDNN_VERBOSE",
    "OPENBLAS_CORETYPE",
    "OPENBLAS_VERBOSE",
    "TF_ENABLE_ONEDNN_OPTS",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
)
OLDER = {"ONEDNN_MAX_CPU_ISA": "AVX", "OPENBLAS_CORETYPE": "SandyBridge"}


@dataclass(frozen=True)
class Setting:
    """Environment variables for one run; ``twin`` is the setting it should match."""

    env: dict[str, str]
    twin: str | None
    note: str
    labs: tuple[str, ...] | None = None  # None: every lab
    cpus: str | None = None  # taskset CPU list (fewer cores: fewer intra-op threads)


SETTINGS: dict[str, Setting] = {
    "native": Setting(
        {},
        None,
        "nothing set: TensorFlow's default (oneDNN graph rewrites only on CPUs with AVX512_VNNI, "
        "AVX512_BF16, AVX_VNNI or AMX), kernels chosen for this CPU",
    ),
    "capped": Setting(
        {"ONEDNN_MAX_CPU_ISA": "AVX2", "OPENBLAS_CORETYPE": "Haswell"},
        "native",
        "the issue's caps (a no-op on an AVX2 CPU)",
    ),
    "emulated-older": Setting(OLDER, "capped", "oneDNN capped at AVX, OpenBLAS SandyBridge"),
    "onednn-off": Setting(
        {"TF_ENABLE_ONEDNN_OPTS": "0", "OPENBLAS_CORETYPE": "Haswell"},
        "native",
        "TensorFlow's oneDNN graph rewrites off (Eigen's matmul/conv still call oneDNN's sgemm)",
    ),
    "onednn-off-emulated-older": Setting(
        {"TF_ENABLE_ONEDNN_OPTS": "0", **OLDER}, "onednn-off", "onednn-off on an emulated older CPU"
    ),
    "onednn-on": Setting(
        {"TF_ENABLE_ONEDNN_OPTS": "1", "OPENBLAS_CORETYPE": "Haswell"},
        "native",
        "oneDNN graph rewrites forced on (TensorFlow's default on CPUs with AVX512_VNNI/AMX)",
    ),
    "onednn-on-emulated-older": Setting(
        {"TF_ENABLE_ONEDNN_OPTS": "1", **OLDER}, "onednn-on", "onednn-on on an emulated older CPU"
    ),
    "onednn-sse41": Setting(
        {"ONEDNN_MAX_CPU_ISA": "SSE41", "OPENBLAS_CORETYPE": "Nehalem"},
        "emulated-older",
        "the lowest caps: every x86-64 CPU since 2008 can run them",
    ),
    "openblas-nehalem": Setting(
        {"OPENBLAS_CORETYPE": "Nehalem"}, "native", "OpenBLAS SSE kernels only", labs=("cbow",)
    ),
    "onednn-off-1cpu": Setting(
        {"TF_ENABLE_ONEDNN_OPTS": "0", "OPENBLAS_CORETYPE": "Haswell"},
        "onednn-off",
        "onednn-off pinned to one core (taskset -c 0): one intra-op thread",
        labs=("mlp", "autoencoder"),
        cpus="0",
    ),
}
DEFAULT_SETTINGS = (
    "native",
    "capped",
    "emulated-older",
    "onednn-off",
    "onednn-off-emulated-older",
    "onednn-on",
    "onednn-on-emulated-older",
)


@dataclass(frozen=True)
class Lab:
    """The stages that train one lab, what they write and where they record training time."""

    stages: tuple[str, ...]
    metrics: str
    artifacts: tuple[str, ...]
    seconds: tuple[tuple[str, str], ...]  # (json file, dotted key) summed into train seconds


LABS: dict[str, Lab] = {
    "mlp": Lab(
        ("train_mlp", "evaluate_classifier@mlp"),
        "metrics/mlp.json",
        ("models/mlp/model.keras",),
        (("metrics/mlp.json", "run.train_seconds"),),
    ),
    "cnn": Lab(
        ("train_cnn", "evaluate_classifier@cnn"),
        "metrics/cnn.json",
        ("models/cnn/model.keras",),
        (("metrics/cnn.json", "run.train_seconds"),),
    ),
    "autoencoder": Lab(
        ("train_autoencoder", "threshold_anomaly", "evaluate_anomaly"),
        "metrics/anomaly.json",
        ("models/autoencoder/model.keras", "models/autoencoder_errors.npz"),
        (("metrics/anomaly.json", "run.train_seconds"),),
    ),
    "cbow": Lab(
        ("train_cbow", "evaluate_cbow"),
        "metrics/cbow.json",
        ("models/cbow/word2vec/vectors.npy", "models/cbow/word2vec/output_vectors.npy"),
        (("metrics/cbow.json", "run.train_seconds"),),
    ),
    "transfer": Lab(
        ("pretrain_base", "train_transfer", "evaluate_transfer"),
        "metrics/transfer.json",
        (
            "models/pretrain/base.keras",
            "models/transfer/repeat_0/feature_extraction.keras",
            "models/transfer/repeat_0/fine_tune.keras",
            "models/transfer/repeat_0/scratch.keras",
        ),
        (
            ("models/pretrain/summary.json", "train_seconds"),
            ("metrics/transfer.json", "run.train_seconds"),
        ),
    ),
}

PROBE = """
import json
import numpy as np
import keras
import scipy.linalg  # gensim's BLAS is SciPy's OpenBLAS, a second copy beside numpy's
from threadpoolctl import threadpool_info
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, padding="same"),
    keras.layers.BatchNormalization(), keras.layers.MaxPooling2D(), keras.layers.Flatten(),
    keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2, activation="softmax")])
model.compile("adam", "sparse_categorical_crossentropy")
model.fit(np.ones((16, 8, 8, 3), "float32"), np.zeros(16, "int64"), epochs=1, verbose=0)
pools = [i for i in threadpool_info() if i["internal_api"] == "openblas"]
blas = sorted({i.get("architecture") or "?" for i in pools})
print("PROBE " + json.dumps({"openblas": blas}))
"""


def isa_level(flags: set[str]) -> str:
    """The x86-64 micro-architecture level (v1 to v4) that the CPU flags reach."""
    levels = {
        "v2": {"cx16", "lahf_lm", "popcnt", "sse4_1", "sse4_2", "ssse3"},
        "v3": {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"},
        "v4": {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"},
    }
    level = "x86-64-v1"
    for name, needed in levels.items():
        if not needed <= flags:
            break
        level = f"x86-64-{name}"
    return level


def machine_info(python: str) -> dict[str, Any]:
    """CPU model, ISA level and the library versions and BLAS builds of ``python``'s environment."""
    cpu: dict[str, Any] = {"cores": os.cpu_count(), "machine": platform.machine()}
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        fields = dict(
            line.split(":", 1) for line in cpuinfo.read_text().splitlines()[:40] if ":" in line
        )
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        flags = set(fields.get("flags", "").split())
        cpu |= {
            "model": fields.get("model name"),
            "family": fields.get("cpu family"),
            "model_number": fields.get("model"),
            "isa_level": isa_level(flags),
            "avx2": "avx2" in flags,
            "avx512f": "avx512f" in flags,
        }
    script = (
        "import json, importlib.metadata as m, numpy, scipy.linalg\n"
        "from threadpoolctl import threadpool_info\n"
        "v = {p: m.version(p) for p in ('tensorflow', 'keras', 'numpy', 'scipy', 'gensim')}\n"
        "print(json.dumps({'python': __import__('platform').python_version(), 'versions': v,\n"
        "  'numpy_config': numpy.show_config(mode='dicts'), 'threadpools': threadpool_info()}))\n"
    )
    out = subprocess.run([python, "-c", script], capture_output=True, text=True, check=True)
    libs = json.loads(out.stdout)
    config = libs.pop("numpy_config")
    libs["numpy_blas"] = config.get("Build Dependencies", {}).get("blas", {})
    libs["numpy_simd"] = config.get("SIMD Extensions", {})
    return {"cpu": cpu, **libs}


def stage_commands(repo: Path) -> dict[str, str]:
    """Every stage's shell command from ``dvc.yaml``, with its ``${var}`` references filled in."""
    import yaml

    spec = yaml.safe_load((repo / "dvc.yaml").read_text())
    variables: dict[str, str] = {}
    for entry in spec.get("vars", []):
        variables |= entry
    fill = lambda cmd: re.sub(r"\$\{(\w+)\}", lambda m: variables[m.group(1)], cmd)  # noqa: E731
    commands = {}
    for name, stage in spec["stages"].items():
        for item in stage.get("foreach", [None]):  # a foreach stage runs once per item
            cmd = stage.get("do", stage)["cmd"]
            commands[name if item is None else f"{name}@{item}"] = fill(
                cmd.replace("${item}", item or "")
            )
    return commands


def setting_env(setting: Setting, python: str) -> dict[str, str]:
    """The inherited environment, cleared of the variables under test, plus the setting's own."""
    env = {k: v for k, v in os.environ.items() if k not in CONTROLLED}
    env["PATH"] = f"{Path(python).parent}{os.pathsep}{env.get('PATH', '')}"
    return env | BASE_ENV | setting.env


def probe(setting: Setting, python: str) -> dict[str, Any]:
    """What oneDNN and OpenBLAS actually use under a setting: ISA, primitive kinds, BLAS core."""
    env = setting_env(setting, python) | {"ONEDNN_VERBOSE": "1"}
    command = [python, "-c", PROBE]
    if setting.cpus:
        command = ["taskset", "-c", setting.cpus, *command]
    out = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
    isa = re.search(r"onednn_verbose,.*?info,cpu,isa:([^\n]+)", out)
    threads = re.search(r"onednn_verbose,.*?nthr:(\d+)", out)
    kinds = sorted(set(re.findall(r"onednn_verbose,v1,primitive,exec,cpu,([^,]+),", out)))
    found = json.loads(out.split("PROBE ", 1)[1])
    return {
        "onednn_isa": isa.group(1).strip() if isa else None,
        "onednn_threads": int(threads.group(1)) if threads else None,
        "onednn_primitives": kinds,
        "openblas_core": found["openblas"],
    }


def weights_digest(path: Path) -> str:
    """SHA-256 of the arrays in a file, independent of timestamps and container metadata."""
    digest = hashlib.sha256()

    def add(name: str, array: Any) -> None:
        array = np.ascontiguousarray(array)
        digest.update(f"{name}:{array.dtype}:{array.shape}".encode())
        digest.update(array.tobytes())

    if path.suffix == ".keras":
        import h5py

        with (
            zipfile.ZipFile(path) as archive,
            h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as h5,
        ):
            names: list[str] = []
            h5.visititems(lambda n, obj: names.append(n) if isinstance(obj, h5py.Dataset) else None)
            for name in sorted(names):
                add(name, h5[name][()])
    elif path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as arrays:
            for name in sorted(arrays.files):
                add(name, arrays[name])
    else:  # a CBOW model's vectors or output weights (dllabs.models.word2vec_files)
        add(path.stem, np.load(path, allow_pickle=False))
    return digest.hexdigest()[:16]


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists keep their index as a key."""
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, list):
        items = ((str(i), v) for i, v in enumerate(tree))
    else:
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in items:
        out |= (
            flatten(value, f"{prefix}{key}.")
            if isinstance(value, (dict, list))
            else {f"{prefix}{key}": value}
        )
    return out


def lookup(tree: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        tree = tree[part]
    return tree


@dataclass
class Run:
    """One pass of a setting's stages: timings, metrics and weight digests per lab."""

    setting: str
    round: int
    probe: dict[str, Any]
    stage_seconds: dict[str, float] = field(default_factory=dict)
    labs: dict[str, dict[str, Any]] = field(default_factory=dict)


def run_setting(name: str, round_: int, repo: Path, python: str, commands: dict[str, str]) -> Run:
    """Run a setting's stages in ``repo`` and read back what they wrote."""
    setting = SETTINGS[name]
    labs = setting.labs or tuple(LABS)
    stages = [stage for lab in labs for stage in LABS[lab].stages]
    run = Run(name, round_, probe(setting, python))
    env = setting_env(setting, python)
    for stage in stages:
        command = commands[stage]
        if setting.cpus:
            command = f"taskset -c {setting.cpus} bash -c {shlex.quote(command)}"
        start = time.perf_counter()
        result = subprocess.run(
            command, shell=True, cwd=repo, env=env, capture_output=True, text=True, check=False
        )
        run.stage_seconds[stage] = round(time.perf_counter() - start, 2)
        if result.returncode != 0:
            sys.exit(f"numerics: {name}: {stage} failed:\n{result.stderr[-3000:]}")
        print(f"  {name:<26} {stage:<18} {run.stage_seconds[stage]:7.1f} s", flush=True)
    for lab_name in labs:
        lab = LABS[lab_name]
        metrics = json.loads((repo / lab.metrics).read_text())
        run.labs[lab_name] = {
            "metrics": {k: v for k, v in flatten(metrics).items() if not k.startswith("run.")},
            "train_seconds": round(
                sum(lookup(json.loads((repo / f).read_text()), k) for f, k in lab.seconds), 2
            ),
            "wall_seconds": round(sum(run.stage_seconds[s] for s in lab.stages), 2),
            "digests": {a: weights_digest(repo / a) for a in lab.artifacts},
        }
    return run


def metric_change(old: dict[str, Any], new: dict[str, Any]) -> tuple[int, str]:
    """How many metrics differ, and the largest numeric change as ``key: old -> new``."""
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    best, text = -1.0, "-"
    for key in changed:
        a, b = old.get(key), new.get(key)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            size = abs(b - a) / max(abs(a), 1e-12)
            if size > best:
                best, text = size, f"{key}: {a:g} -> {b:g}"
        elif best < 0:
            text = f"{key}: {a} -> {b}"
    return len(changed), text


def identical(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a["metrics"] == b["metrics"] and a["digests"] == b["digests"]


def first_run(runs: list[dict[str, Any]], setting: str, lab: str) -> dict[str, Any] | None:
    return next((r for r in runs if r["setting"] == setting and lab in r["labs"]), None)


def render(raw: dict[str, Any]) -> str:
    """The Markdown report: the identity table, the cost table and the environment."""
    runs, info = raw["runs"], raw["machine"]
    cpu = info["cpu"]
    natives = [r for r in runs if r["setting"] == "native"]
    lines = [
        "# Numerics: bit-identity and cost of CPU kernel settings",
        "",
        "Generated by `benchmarks/numerics.py` (see its docstring). Every setting also sets "
        "`PYTHONHASHSEED=0 TF_CPP_MIN_LOG_LEVEL=3`, as `dvc.yaml` does. *Identical* means every "
        "metric of `metrics/<lab>.json` (`run.*` ignored) and every weight array (Keras weights, "
        "autoencoder errors, CBOW vectors and output weights) is bit-for-bit the same.",
        "",
        f"Machine: {cpu.get('model')} (family {cpu.get('family')}, model "
        f"{cpu.get('model_number')}), {cpu['cores']} cores, {cpu.get('isa_level')}, AVX2 "
        f"{'yes' if cpu.get('avx2') else 'no'}, AVX-512 {'yes' if cpu.get('avx512f') else 'no'}. "
        f"Python {info['python']}; "
        + ", ".join(f"{k} {v}" for k, v in info["versions"].items())
        + ".",
        "",
        "## Settings",
        "",
        "| Setting | Environment | What it stands for | oneDNN ISA in use | oneDNN primitives "
        "run (probe) | OpenBLAS core |",
        "|---|---|---|---|---|---|",
    ]
    seen: set[str] = set()
    for run in runs:
        if run["setting"] in seen:
            continue
        seen.add(run["setting"])
        setting = SETTINGS[run["setting"]]
        env = " ".join(f"`{k}={v}`" for k, v in setting.env.items()) or "(none)"
        if setting.cpus:
            env += f" under `taskset -c {setting.cpus}`"
        p = run["probe"]
        lines.append(
            f"| {run['setting']} | {env} | {setting.note} | "
            f"{p['onednn_isa']}, threads: {p['onednn_threads']} | "
            f"{', '.join(p['onednn_primitives'])} | {', '.join(p['openblas_core'])} |"
        )
    lines += [
        "",
        "The probe fits a tiny Conv2D/BatchNorm/MaxPool/Dense model for one epoch under the "
        "setting with `ONEDNN_VERBOSE=1` and lists the oneDNN primitives that ran: `gemm_api` "
        "alone is Eigen's matmul/convolution calling oneDNN's sgemm (TensorFlow's oneDNN rewrites "
        "off); `convolution`, `inner_product`, `pooling` mean the rewrites are on.",
        "",
        "## Bit-identity and cost per lab",
        "",
        "*Twin*: the setting it is compared with besides native ("
        + "; ".join(
            f"{n}: {SETTINGS[n].twin}"
            for n in dict.fromkeys(r["setting"] for r in runs)
            if SETTINGS[n].twin
        )
        + "). *Largest change*: the metric "
        "with the largest relative change vs native. *Train s*: the stage's own `train_seconds` "
        "(transfer: pretraining plus transfer); the ratio is against the mean of the native runs.",
        "",
        "| Lab | Setting | Identical to native | Identical to twin | Metrics changed | "
        "Largest change vs native | Train s | Ratio | Stage wall s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    yes = {True: "yes", False: "**no**"}
    for lab in LABS:
        reference = first_run(runs, "native", lab)
        native_seconds = [r["labs"][lab]["train_seconds"] for r in natives if lab in r["labs"]]
        mean_native = sum(native_seconds) / len(native_seconds)
        for index, run in enumerate(runs):
            if lab not in run["labs"] or reference is None:
                continue
            result, setting = run["labs"][lab], SETTINGS[run["setting"]]
            label = run["setting"]
            if run["setting"] == "native" and run is not reference:
                label = f"native (repeat, run {index + 1})"
            twin = first_run(runs, setting.twin, lab) if setting.twin else None
            count, largest = metric_change(reference["labs"][lab]["metrics"], result["metrics"])
            lines.append(
                f"| {lab} | {label} | {yes[identical(reference['labs'][lab], result)]} | "
                f"{yes[identical(twin['labs'][lab], result)] if twin else '-'} | {count} | "
                f"{largest} | {result['train_seconds']:.1f} | "
                f"{result['train_seconds'] / mean_native:.2f} | {result['wall_seconds']:.1f} |"
            )
    lines += [
        "",
        "Settings whose results are bit-identical to each other, per lab (one group per distinct "
        "result; the first group holds native):",
        "",
        "| Lab | Groups |",
        "|---|---|",
    ]
    for lab in LABS:
        groups: dict[str, list[str]] = {}
        for run in runs:
            if lab in run["labs"]:
                key = json.dumps(run["labs"][lab]["metrics"], sort_keys=True)
                key += json.dumps(run["labs"][lab]["digests"], sort_keys=True)
                names = groups.setdefault(key, [])
                if run["setting"] not in names:
                    names.append(run["setting"])
        text = " / ".join("{" + ", ".join(names) + "}" for names in groups.values())
        lines.append(f"| {lab} | {text} |")
    spread = {  # runs bit-identical to native ran the same kernels: their spread is pure noise
        lab: [
            r["labs"][lab]["train_seconds"]
            for r in runs
            if lab in r["labs"]
            and not SETTINGS[r["setting"]].cpus
            and SETTINGS[r["setting"]].env.get("TF_ENABLE_ONEDNN_OPTS") != "1"
            and identical(r["labs"][lab], first_run(runs, "native", lab)["labs"][lab])
        ]
        for lab in LABS
    }
    lines += [
        "",
        "Noise: runs bit-identical to native with the oneDNN rewrites off (as native here) and "
        "two cores executed the same kernels, so the spread of their train seconds is the "
        "machine's noise, not a cost: "
        + "; ".join(
            f"{lab} {min(v):.1f}-{max(v):.1f} s ({len(v)} runs, max/min {max(v) / min(v):.2f})"
            for lab, v in spread.items()
        )
        + f". Load average {raw['load_average'][0]:.2f} at the start and "
        f"{raw['load_average'][1]:.2f} at the end on {cpu['cores']} cores: other jobs shared the "
        "machine, so a ratio within that spread means no measurable cost.",
        "",
        "## Libraries",
        "",
        "OpenBLAS builds loaded (threadpoolctl, native):",
        "",
    ]
    for pool in info["threadpools"]:
        lines.append(
            f"- {pool.get('internal_api')} {pool.get('version')} ({Path(pool['filepath']).name}): "
            f"{pool.get('architecture')}, {pool.get('num_threads')} threads, "
            f"{pool.get('threading_layer')} threading"
        )
    blas = info["numpy_blas"]
    simd = info["numpy_simd"]
    lines += [
        "",
        f"numpy's BLAS: {blas.get('name')} {blas.get('version')} "
        f"({blas.get('openblas configuration', '')}); "
        f"numpy SIMD baseline {', '.join(simd.get('baseline', []))}; dispatched "
        f"{', '.join(simd.get('found', []))}.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, help="scratch clone after one `dvc repro`")
    parser.add_argument("--python", default=sys.executable, help="interpreter with the project")
    parser.add_argument("--settings", nargs="+", default=list(DEFAULT_SETTINGS), choices=SETTINGS)
    parser.add_argument("--rounds", type=int, default=1, help="passes over the settings")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for numerics.{json,md}")
    parser.add_argument("--report-only", action="store_true", help="re-render the Markdown")
    parser.add_argument(
        "--append", action="store_true", help="add runs to the JSON (no native runs added)"
    )
    args = parser.parse_args()
    raw_path, md_path = args.out / "numerics.json", args.out / "numerics.md"
    if args.report_only:
        md_path.write_text(render(json.loads(raw_path.read_text())))
        return
    if args.repo is None:
        parser.error("--repo is required (its outputs are overwritten)")
    repo = args.repo.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    commands = stage_commands(repo)
    order = [s for s in args.settings if s != "native"]
    schedule = [] if args.append else [("native", 0)]
    for round_ in range(args.rounds):
        schedule += [(s, round_) for s in (order if round_ % 2 == 0 else order[::-1])]
    if not args.append:  # native again at the end: timing noise, run-to-run determinism
        schedule.append(("native", args.rounds - 1))
    if args.append:
        raw = json.loads(raw_path.read_text())
    else:
        raw = {"machine": machine_info(args.python), "load_average": [0.0], "runs": []}
        raw["load_average"][0] = os.getloadavg()[0]
    raw.setdefault("schedule", []).extend(s for s, _ in schedule)
    previous, started = raw.get("total_seconds", 0.0), time.perf_counter()
    for name, round_ in schedule:
        print(f"{name} (round {round_ + 1}, {time.perf_counter() - started:.0f} s)", flush=True)
        raw["runs"].append(vars(run_setting(name, round_, repo, args.python, commands)))
        raw["load_average"][1:] = [os.getloadavg()[0]]
        raw["total_seconds"] = round(previous + time.perf_counter() - started, 1)
        raw_path.write_text(json.dumps(raw, indent=2, sort_keys=True) + "\n")
        md_path.write_text(render(raw))
    print(f"wrote {md_path} and {raw_path}")


if __name__ == "__main__":
    main()
