"""Multi-process training (:mod:`dllabs.training.cluster`): what the environment of a launcher
means, and two processes on 127.0.0.1 training as one process with two devices does.

Every test that starts processes gives each a time limit: a cluster that hangs fails the test.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from dllabs.errors import ParamsError
from dllabs.training.cluster import Cluster, from_environment, join, timeout_seconds
from tests.helpers.repo import REPO
from tests.helpers.stages import TRAIN_MLP_ARGS
from tests.loopback import free_port

needs_jax = pytest.mark.skipif(
    importlib.util.find_spec("jax") is None, reason="the jax package is not installed"
)
LIMIT = 300  # seconds for a whole cluster run on 2 busy cores (about 40 s alone)
# As tests/test_devices.py: the two processes average the two halves' gradients where the
# two-device run does it in one process; the same sum, its order left to Gloo and XLA. 1e-5.
TOLERANCE = 1e-5


def keras_env(processes: int, index: int, address: str = "10.0.0.1:1234") -> dict[str, str]:
    return {
        "KERAS_DISTRIBUTION_NUM_PROCESSES": str(processes),
        "KERAS_DISTRIBUTION_PROCESS_ID": str(index),
        "KERAS_DISTRIBUTION_JOB_ADDRESSES": address,
    }


def test_one_process_or_no_launcher_is_no_cluster() -> None:
    assert from_environment({}) is None
    assert from_environment(keras_env(1, 0)) is None
    assert from_environment({"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}) is None


def test_keras_variables_name_the_processes_and_the_coordinator() -> None:
    assert from_environment(keras_env(4, 3)) == Cluster(4, 3, "10.0.0.1:1234", "Keras")
    every = keras_env(2, 1, "10.0.0.1:1234,10.0.0.2:2345")
    assert from_environment(every).coordinator == "10.0.0.1:1234"  # the first is process 0


def test_slurm_gives_the_coordinator_by_jaxs_own_rule() -> None:
    env = {
        "SLURM_NTASKS": "8",
        "SLURM_PROCID": "5",
        "SLURM_JOB_ID": "123456",
        "SLURM_STEP_NODELIST": "gpu[007-010,012],login1",
    }
    # JAX's SlurmCluster: the first node, port 61440 + job id % 4096 (123456 % 4096 = 576).
    assert from_environment(env) == Cluster(8, 5, "gpu007:62016", "SLURM")
    assert from_environment({**env, "SLURM_STEP_NODELIST": "node3,node4"}).coordinator == (
        "node3:62016"
    )
    named = {**env, "KERAS_DISTRIBUTION_JOB_ADDRESSES": "head:9999"}
    assert from_environment(named).coordinator == "head:9999"


def test_a_kubernetes_indexed_job_gives_the_index() -> None:
    env = {**keras_env(3, 0, "train-0.train:1234"), "JOB_COMPLETION_INDEX": "2"}
    del env["KERAS_DISTRIBUTION_PROCESS_ID"]
    assert from_environment(env) == Cluster(3, 2, "train-0.train:1234", "Kubernetes indexed job")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (keras_env(0, 0), "KERAS_DISTRIBUTION_NUM_PROCESSES='0': expected a whole number >= 1"),
        (keras_env(2, 2), "KERAS_DISTRIBUTION_PROCESS_ID=2: expected 0 to 1"),
        (keras_env(2, -1), "KERAS_DISTRIBUTION_PROCESS_ID='-1': expected a whole number >= 0"),
        (
            {**keras_env(2, 0), "KERAS_DISTRIBUTION_JOB_ADDRESSES": ""},
            "KERAS_DISTRIBUTION_JOB_ADDRESSES is not set: expected process 0's host:port",
        ),
        (keras_env(2, 0, "head"), "'head' is not host:port"),
        (keras_env(3, 0, "a:1,b:2"), "lists 2 addresses for 3 processes"),
        (
            {"SLURM_NTASKS": "2", "SLURM_PROCID": "x"},
            "SLURM_PROCID='x': expected a whole number >= 0",
        ),
    ],
)
def test_bad_variables_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ParamsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        from_environment(env)


def test_the_timeout_is_seconds() -> None:
    assert timeout_seconds({}) == 120
    assert timeout_seconds({"DL_LABS_CLUSTER_TIMEOUT": "7.5"}) == 7.5
    with pytest.raises(ParamsError, match="DL_LABS_CLUSTER_TIMEOUT='0': expected seconds"):
        timeout_seconds({"DL_LABS_CLUSTER_TIMEOUT": "0"})


@pytest.mark.parametrize("backend", ["tensorflow", "torch"])
def test_other_backends_are_refused_naming_jax(backend: str) -> None:
    with pytest.raises(
        ParamsError,
        match=f"2 processes \\(Keras\\) need base.backend jax, "
        f"Keras's multi-process engine; base.backend is "
        f"'{backend}'",
    ):
        join(backend, keras_env(2, 0))


def start(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "0", **env},
    )


def cluster(args: list[str], cwd: Path, tmp: Path, **extra: str) -> list[tuple[int, str, str]]:
    """Run ``args`` as processes 0 and 1 of a cluster on 127.0.0.1; each one's (code, out, err).
    Each process has its own temporary folder, which a process that exits (rather than being
    killed) must leave empty."""
    address = f"127.0.0.1:{free_port()}"
    processes = []
    for index in (0, 1):
        (tmp / f"tmp{index}").mkdir()
        env = {
            **keras_env(2, index, address),
            "TMPDIR": str(tmp / f"tmp{index}"),
            "DL_LABS_CLUSTER_TIMEOUT": "20",
            **extra,
        }
        processes.append(start(args, cwd, env))
    results = []
    for process in processes:
        out, err = process.communicate(timeout=LIMIT)
        results.append((process.returncode, out, err))
    for index, (code, _, _) in enumerate(results):
        left = list((tmp / f"tmp{index}").iterdir())
        assert code not in (0, 1) or not left, f"process {index} left temporaries"
    return results


def one_error_line(err: str) -> str:
    assert "Traceback" not in err and "Check failure" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert "error: " in last, err[-3000:]
    return last


@pytest.mark.long
@needs_jax
def test_two_processes_train_the_mlp_and_the_cnn_as_two_devices_do(tmp_path: Path) -> None:
    out = tmp_path / "out"
    smoke = [str(REPO / "tests" / "cluster_smoke.py")]
    (code0, out0, err0), (code1, out1, err1) = cluster(
        [*smoke, "cluster", str(out)], REPO, tmp_path
    )
    assert (code0, code1) == (0, 0), err0[-3000:] + err1[-3000:]
    alone = subprocess.run(
        [sys.executable, *smoke, "devices", str(out)],
        capture_output=True,
        text=True,
        timeout=LIMIT,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert alone.returncode == 0, alone.stderr[-3000:]
    first, second = (yaml.safe_load(o.strip().splitlines()[-1]) for o in (out0, out1))
    two_devices = yaml.safe_load(alone.stdout.strip().splitlines()[-1])
    assert first["device"] == "CPU on 2 processes" and two_devices["device"] == "CPU x2"
    # Both processes apply the same all-reduced gradients with the same program on this machine.
    assert first == second
    assert sorted(p.name for p in out.iterdir()) == ["cluster-0.npz", "devices-0.npz"]
    with np.load(out / "cluster-0.npz") as a, np.load(out / "devices-0.npz") as b:
        for name in a.files:
            np.testing.assert_allclose(a[name], b[name], rtol=0, atol=TOLERANCE, err_msg=name)
    for model in ("mlp", "cnn"):
        assert first[model]["loss"] < first[model]["initial_loss"]
        assert abs(first[model]["loss"] - two_devices[model]["loss"]) < TOLERANCE


@pytest.mark.slow
@needs_jax
def test_a_process_that_dies_stops_the_other_in_one_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    smoke = [str(REPO / "tests" / "cluster_smoke.py"), "cluster", str(out), "2"]  # dies at step 2
    (code0, _, err0), (code1, _, _) = cluster(smoke, REPO, tmp_path, DL_LABS_CLUSTER_TIMEOUT="5")
    assert code1 == 3 and code0 == 1
    assert "another of the 2 processes went away" in one_error_line(err0) or (
        "process 1 of 2 stopped answering for 5 s" in one_error_line(err0)
    )
    assert not out.exists() or not list(out.iterdir())  # nothing written, not even temporaries


def stage_workspace(
    tmp_path: Path, default_params: dict, backend: str = "jax", devices: int = 1
) -> Path:
    """A folder with params.yaml on ``backend`` and tiny processed images for train_mlp."""
    tmp_path.mkdir(exist_ok=True)
    params = {
        **default_params,
        "base": {**default_params["base"], "backend": backend, "device": "cpu", "devices": devices},
        "mlp": {**default_params["mlp"], "epochs": 2, "hidden_units": [8]},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    folder = tmp_path / "data" / "processed" / "images"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 64), ("val", 32)):
        y = np.arange(n) % 2
        np.save(
            folder / f"x_{split}.npy",
            (rng.integers(0, 100, (n, 6, 6, 1)) + 120 * y[:, None, None, None]).astype(np.uint8),
        )
        np.save(folder / f"y_{split}.npy", y)
    np.save(folder / "class_names.npy", np.array(["a", "b"]))
    return tmp_path


MLP_STAGE = ["-m", "stages.train_mlp", *TRAIN_MLP_ARGS]


def listing(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.mark.slow
@needs_jax
def test_a_stage_on_two_processes_writes_its_outputs_once(tmp_path: Path, default_params) -> None:
    root = stage_workspace(tmp_path / "work", default_params)
    before = listing(root)
    (code0, out0, err0), (code1, out1, err1) = cluster(MLP_STAGE, root, tmp_path)
    assert (code0, code1) == (0, 0), err0[-3000:] + err1[-3000:]
    assert "train_mlp: 2 epochs on CPU on 2 processes" in out0 and out1
    written = sorted(set(listing(root)) - set(before))
    assert "models/mlp/model.keras" in written and "plots/mlp/metrics.json" in written
    outputs = ("models/mlp/", "plots/mlp/", "metrics/validation/mlp.json")
    assert all(name.startswith(outputs) for name in written), written
    assert "metrics/validation/mlp.json" in written
    assert not [name for name in written if ".tmp" in name]
    # The same stage alone on two devices: each process read half the training images for the
    # pixel statistics, and the sums added up to the whole split's; the weights agree as two
    # devices' do (tolerance as above).
    alone = stage_workspace(tmp_path / "alone", default_params, devices=2)
    done = start(MLP_STAGE, alone, {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    _, err = done.communicate(timeout=LIMIT)
    assert done.returncode == 0, err[-3000:]
    import keras

    two_processes, two_devices = (
        keras.saving.load_model(r / "models/mlp/model.keras") for r in (root, alone)
    )
    stats = [m.get_layer("standardize").get_weights() for m in (two_processes, two_devices)]
    for a, b in zip(*stats, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)  # float64 sums in another order
    for a, b in zip(two_processes.get_weights(), two_devices.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=TOLERANCE)


@needs_jax
def test_a_stage_that_trains_on_one_process_refuses_a_cluster(tmp_path, default_params) -> None:
    root = stage_workspace(tmp_path / "work", default_params)
    stage = [
        "-m",
        "stages.evaluate_classifier",
        "--lab",
        "mlp",
        "--images",
        "data/processed/images",
        "--model",
        "models/mlp",
        "--metrics",
        "m.json",
        "--report",
        "r.md",
        "--plots",
        "p",
    ]
    results = cluster(stage, root, tmp_path)
    for code, _, err in results:
        assert code == 1
        assert one_error_line(err).endswith(
            "this stage runs on one process, but Keras's variables start 2: start it once (the "
            "training stages that run on several are listed in docs/guides/backends-and-devices.md)"
        )


@needs_jax
def test_a_wrong_coordinator_address_fails_in_one_line(tmp_path: Path, default_params) -> None:
    root = stage_workspace(tmp_path, default_params)
    closed = f"127.0.0.1:{free_port()}"
    env = {**keras_env(2, 1, closed), "DL_LABS_CLUSTER_TIMEOUT": "3"}
    done = start(MLP_STAGE, root, env)
    _, err = done.communicate(timeout=LIMIT)
    assert done.returncode == 1
    assert (
        f"error: cannot reach the coordinator {closed} (process 1 of 2, coordinator {closed}, "
        "from Keras) within 3 s: Connection refused"
    ) in one_error_line(err)
    # Process 0 must own the address it is told to listen on (192.0.2.1: TEST-NET, nobody's).
    done = start(MLP_STAGE, root, {**keras_env(2, 0, "192.0.2.1:1234")})
    _, err = done.communicate(timeout=LIMIT)
    assert done.returncode == 1
    assert "error: cannot listen as the coordinator on 192.0.2.1:1234" in one_error_line(err)
    assert not (root / "models").exists()


def test_a_cluster_on_tensorflow_is_refused_before_training(tmp_path, default_params) -> None:
    root = stage_workspace(tmp_path, default_params, backend="tensorflow")
    done = start(MLP_STAGE, root, keras_env(2, 0, "127.0.0.1:1"))
    _, err = done.communicate(timeout=LIMIT)
    assert done.returncode == 1
    assert one_error_line(err) == (
        "train_mlp: error: 2 processes (Keras) need base.backend jax, Keras's multi-process "
        "engine; base.backend is 'tensorflow'"
    )
