"""Hostile params, conf/ files and launcher variables (issue 31): each one is read as DVC reads it,
or refused with one line naming the file, the key or the variable, in bounded time and memory.

Every crafted input is made here. Nesting and sizes stay small where the old code was exponential
in them, so that the tests that failed on it failed in seconds; the two measured tests kill their
command past 1 GB or a minute.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dllabs.errors import ParamsError
from dllabs.params import load_params
from dllabs.tooling.presets import compose_yaml
from dllabs.training import backend
from dllabs.training.cluster import from_environment, timeout_seconds
from tests.helpers.repo import REPO
from tests.helpers.stages import TRAIN_MLP_ARGS, set_key
from tests.memory import measure, python

PARAMS = (REPO / "params.yaml").read_text(encoding="utf-8")
STAGE_ENV = {"PYTHONPATH": str(REPO)}
THRESHOLD = ["-m", "stages.threshold_anomaly", "--errors", "e.npz", "--threshold", "t.json"]


def junk_list(size: int) -> str:
    """A top-level list of one-letter items, about ``size`` bytes: the shape of file that made the
    old parser build millions of nodes."""
    item = "  - w\n"
    return "junk:\n" + item * (size // len(item))


def nested_anchors(levels: int, fan: int = 10) -> str:
    """Each list holds ``fan`` aliases of the one before: ``fan ** levels`` items once expanded."""
    lines = ["l0: &l0 [" + ", ".join(["x"] * fan) + "]"]
    lines += [
        f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * fan) + "]" for i in range(1, levels + 1)
    ]
    return "\n".join(lines) + "\n"


def crafted_conf(root: Path, body: str) -> Path:
    """A conf/ folder whose config.yaml holds ``body`` after Hydra's defaults list."""
    conf = root / "conf"
    conf.mkdir()
    (conf / "config.yaml").write_text("defaults:\n  - _self_\n" + body, encoding="utf-8")
    return conf


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


# --- 14. size, anchors and aliases ---------------------------------------------------------------


def test_a_params_file_over_the_size_limit_is_refused_unparsed(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS + junk_list(1 << 20), encoding="utf-8")
    size = f"{params.stat().st_size:,}"
    with pytest.raises(
        ParamsError, match=f"params.yaml: {size} bytes; a params file may hold at most 262,144"
    ):
        load_params(params)


def test_a_long_but_legitimate_params_file_is_read(tmp_path: Path, default_params: dict) -> None:
    params = copy.deepcopy(default_params)
    set_key(params, "tokenize.extra_stopwords", [f"word{i}" for i in range(5000)])
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params), encoding="utf-8")
    assert len(load_params(path).tokenize.extra_stopwords) == 5000


def test_refusing_a_64_mb_params_file_is_quick_and_small(tmp_path: Path) -> None:
    """The probe: 300 s and 3.6 GB before the stage said anything."""
    (tmp_path / "params.yaml").write_text(PARAMS + junk_list(64 << 20), encoding="utf-8")
    done = measure(python(*THRESHOLD), cwd=tmp_path, env=STAGE_ENV, kill_at_mb=1024, timeout=60)
    assert not done.killed, f"killed at {done.peak_mb:.0f} MB or after 60 s"
    assert done.returncode == 1
    assert re.fullmatch(
        r"threshold_anomaly: error: params.yaml: 67,\d{3},\d{3} bytes; a params "
        r"file may hold at most 262,144 .*",
        one_line(done.stderr),
    )
    assert done.peak_mb < 150, done.peak_mb


def aliased_params(default_params: dict) -> str:
    """The default params with cnn.augment an alias of mlp.augment (PyYAML writes shared objects
    as an anchor and aliases)."""
    params = copy.deepcopy(default_params)
    params["cnn"]["augment"] = params["mlp"]["augment"]
    return yaml.safe_dump(params)


def test_an_alias_of_valid_values_is_refused_at_its_anchor(tmp_path, default_params) -> None:
    text = aliased_params(default_params)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "&" in row)
    params = tmp_path / "params.yaml"
    params.write_text(text, encoding="utf-8")
    expected = f"params.yaml at line {line}, column 12: anchor &id001; params files may not hold"
    with pytest.raises(ParamsError, match=expected + " anchors or aliases"):
        load_params(params)


def test_nested_anchors_in_params_are_refused_at_the_first(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS + nested_anchors(8), encoding="utf-8")
    line = PARAMS.count("\n") + 1
    with pytest.raises(ParamsError, match=f"params.yaml at line {line}, column 5: anchor &l0"):
        load_params(params)
    assert backend.configured(params) == ("tensorflow", "auto")


def test_nested_anchors_in_conf_are_refused_before_hydra_expands_them(tmp_path: Path) -> None:
    """The probe: 13 KB of them took 39 s in `make params`, about 10x per level (3 here)."""
    conf = crafted_conf(tmp_path, "a: 1\n" + nested_anchors(3))
    where = re.escape(f"{conf / 'config.yaml'} at line 4, column 5: anchor &l0")
    with pytest.raises(ParamsError, match=where):
        compose_yaml((), conf)


def test_make_params_refuses_deep_anchors_in_one_line_quickly(tmp_path: Path) -> None:
    """Seven levels: ten million items once expanded, far past the minute allowed here."""
    crafted_conf(tmp_path, "a: 1\n" + nested_anchors(7))
    command = python("-m", "dllabs.tooling.presets", "--output", "params.yaml")
    done = measure(command, cwd=tmp_path, env=STAGE_ENV, kill_at_mb=1024, timeout=60)
    assert not done.killed, f"killed at {done.peak_mb:.0f} MB or after 60 s"
    assert done.returncode == 1
    assert one_line(done.stderr).startswith("presets: error: conf/config.yaml at line 4, column 5")
    assert not (tmp_path / "params.yaml").exists()
    assert done.peak_mb < 150, done.peak_mb


def test_a_conf_file_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    conf = crafted_conf(tmp_path, "a: 1\n" + junk_list(300_000))
    with pytest.raises(ParamsError, match=re.escape(f"{conf / 'config.yaml'}: 300,")):
        compose_yaml((), conf)


# --- 16. encodings and numbers Python cannot convert ---------------------------------------------


@pytest.mark.parametrize(
    ("encoded", "message"),
    [
        (
            ("# caf\xe9\n" + PARAMS).encode("latin-1"),
            "params.yaml: not UTF-8 text: byte 0xe9 at line 1, column 6; DVC reads params files as "
            "UTF-8: save it as UTF-8",
        ),
        (
            PARAMS.encode("utf-16"),
            "params.yaml: UTF-16 text; DVC reads params files as UTF-8: save it as UTF-8",
        ),
    ],
    ids=["latin-1", "utf-16"],
)
def test_params_that_are_not_utf8_are_one_line(tmp_path: Path, encoded: bytes, message) -> None:
    params = tmp_path / "params.yaml"
    params.write_bytes(encoded)
    with pytest.raises(ParamsError, match=re.escape(message)):
        load_params(params)
    # Choosing the backend leaves the file to the stage's own check, which names it.
    assert backend.configured(params) == ("tensorflow", "auto")


def test_a_stage_reports_latin_1_params_in_one_line(tmp_path: Path) -> None:
    """The probe: a 17-line UnicodeDecodeError traceback from stages/__init__.py."""
    (tmp_path / "params.yaml").write_bytes(("# caf\xe9\n" + PARAMS).encode("latin-1"))
    done = subprocess.run(
        python(*THRESHOLD),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, **STAGE_ENV},
        timeout=120,
    )
    assert done.returncode == 1
    assert one_line(done.stderr).startswith("threshold_anomaly: error: params.yaml: not UTF-8")


def test_an_integer_of_5000_digits_is_refused_naming_its_line(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS.replace("seed: 42", "seed: " + "9" * 5000), encoding="utf-8")
    line = PARAMS.splitlines().index("  seed: 42") + 1
    expected = (
        f"params.yaml at line {line}, column 9: an integer of 5000 digits; params hold at most 100"
    )
    with pytest.raises(ParamsError, match=re.escape(expected)):
        load_params(params)
    assert backend.configured(params) == ("tensorflow", "auto")


# --- 20. launcher variables ----------------------------------------------------------------------


def keras_env(processes: str, index: str, address: str = "10.0.0.1:1234") -> dict[str, str]:
    return {
        "KERAS_DISTRIBUTION_NUM_PROCESSES": processes,
        "KERAS_DISTRIBUTION_PROCESS_ID": index,
        "KERAS_DISTRIBUTION_JOB_ADDRESSES": address,
    }


SLURM = {"SLURM_NTASKS": "2", "SLURM_PROCID": "0", "SLURM_STEP_NODELIST": "node1"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            keras_env("2", "0", "localhost:¹²³⁴⁵"),
            "KERAS_DISTRIBUTION_JOB_ADDRESSES: 'localhost:¹²³⁴⁵' is not host:port",
        ),
        (
            keras_env("2", "0", "localhost:" + "1" * 5000),
            "KERAS_DISTRIBUTION_JOB_ADDRESSES: 'localhost:1111",
        ),
        (
            keras_env("2", "0", "hôst:1234"),
            "KERAS_DISTRIBUTION_JOB_ADDRESSES: 'hôst:1234' is not host:port",
        ),
        ({**SLURM, "SLURM_JOB_ID": "⁷"}, "SLURM_JOB_ID='⁷': expected a whole number"),
        ({**SLURM, "SLURM_JOB_ID": "9" * 5000}, "SLURM_JOB_ID='9999"),
        (keras_env("٢", "0"), "KERAS_DISTRIBUTION_NUM_PROCESSES='٢': expected a whole number >= 1"),
        (keras_env("2", "١"), "KERAS_DISTRIBUTION_PROCESS_ID='١': expected a whole number >= 0"),
        (keras_env("9" * 5000, "0"), "KERAS_DISTRIBUTION_NUM_PROCESSES='9999"),
    ],
    ids=[
        "superscript-port",
        "long-port",
        "non-ascii-host",
        "superscript-job",
        "long-job",
        "arabic-count",
        "arabic-index",
        "long-count",
    ],
)
def test_launcher_variables_that_are_not_ascii_numbers_are_named(env, message: str) -> None:
    with pytest.raises(ParamsError, match=re.escape(message)):
        from_environment(env)


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e300", "1e999", "86401", "٣", "0x10"])
def test_a_cluster_timeout_must_be_finite_seconds_within_a_day(value: str) -> None:
    expected = f"DL_LABS_CLUSTER_TIMEOUT={value!r}: expected seconds, a number > 0 and <= 86400"
    with pytest.raises(ParamsError, match=re.escape(expected)):
        timeout_seconds({"DL_LABS_CLUSTER_TIMEOUT": value})


def test_a_cluster_timeout_of_a_day_or_a_fraction_is_kept() -> None:
    assert timeout_seconds({"DL_LABS_CLUSTER_TIMEOUT": "86400"}) == 86400
    assert timeout_seconds({"DL_LABS_CLUSTER_TIMEOUT": " 2.5 "}) == 2.5
    assert timeout_seconds({"DL_LABS_CLUSTER_TIMEOUT": "1e2"}) == 100


# --- 21. TensorFlow's start-up notices -----------------------------------------------------------


@pytest.mark.parametrize(
    "level",
    # 10 to 20 s each here, most of it TensorFlow's import
    [
        pytest.param("3", id="dvc.yaml's level"),
        pytest.param(None, id="unset", marks=pytest.mark.slow),
    ],
)
def test_a_tensorflow_stage_that_fails_prints_one_line(tmp_path, default_params, level) -> None:
    params = copy.deepcopy(default_params)
    set_key(params, "mlp.learning_rate", -1)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env.update(STAGE_ENV, **({"TF_CPP_MIN_LOG_LEVEL": level} if level else {}))
    done = subprocess.run(
        python("-m", "stages.train_mlp", *TRAIN_MLP_ARGS),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "train_mlp: error: params.yaml: mlp.learning_rate = -1: input should be greater than 0"
    ]


ABSL_NOTICES = [  # as TensorFlow 2.21's libraries print them while it is imported
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796491263.436978    5283 port.cc:153] oneDNN custom operations are on.",
    "W0000 00:00:1796491263.437000    5283 computation_placer.cc:177] computation placer "
    "already registered.",
    "E0000 00:00:1796491263.437356    5283 cuda_dnn.cc:8310] Unable to register cuDNN factory",
]
FATAL = "F0000 00:00:1796491263.437400    5283 port.cc:99] Check failed: a fatal one"
OWN = ["a line the library wrote that is no absl record", "printed by Python"]
FAKE_TENSORFLOW = f"""
import os, sys
for line in {[*ABSL_NOTICES, FATAL, OWN[0]]!r}:
    os.write(2, (line + "\\n").encode())
print({OWN[1]!r}, file=sys.stderr)
if os.environ.get("FAKE_ABORT"):
    os.abort()
"""


def import_fake_tensorflow(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """Import a stand-in ``tensorflow`` that writes TensorFlow's notices, a fatal record and lines
    of its own to file descriptor 2, as a stage imports TensorFlow."""
    (tmp_path / "fake" / "tensorflow").mkdir(parents=True)
    (tmp_path / "fake" / "tensorflow" / "__init__.py").write_text(FAKE_TENSORFLOW)
    code = (
        "import sys; from dllabs.training.backend import quiet_tensorflow_start; "
        "quiet_tensorflow_start(); import tensorflow; "
        "print('imported', file=sys.stderr)"
    )
    base = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    path = f"{tmp_path / 'fake'}{os.pathsep}{REPO}"
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**base, "PYTHONPATH": path, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("level", "dropped"),
    [(None, 4), ("3", 4), ("2", 3), ("1", 2), ("0", 0)],
)
def test_tensorflow_notices_below_its_log_level_are_dropped_and_nothing_else(
    tmp_path: Path, level: str | None, dropped: int
) -> None:
    """TF_CPP_MIN_LOG_LEVEL (3 where unset, as in dvc.yaml) applied to the records TensorFlow's
    libraries print before absl is initialised, which ignore it; fatal records and every other
    line pass."""
    done = import_fake_tensorflow(tmp_path, **({"TF_CPP_MIN_LOG_LEVEL": level} if level else {}))
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [*ABSL_NOTICES[dropped:], FATAL, *OWN, "imported"]


def test_what_tensorflow_printed_before_it_aborted_is_still_shown(tmp_path: Path) -> None:
    done = import_fake_tensorflow(tmp_path, FAKE_ABORT="1")
    assert done.returncode < 0  # killed by SIGABRT
    assert done.stderr.splitlines() == [FATAL, *OWN]


# --- smaller: params as DVC reads them; no environment in conf/ ----------------------------------


def test_params_are_read_as_dvc_reads_them(tmp_path: Path) -> None:
    """YAML 1.2, as DVC's ruamel.yaml: `1e-3` is a number (YAML 1.1 read it as a string)."""
    from dvc.utils.serialize import load_yaml

    from dllabs.params import read_yaml

    params = tmp_path / "params.yaml"
    params.write_text(PARAMS.replace("learning_rate: 0.01", "learning_rate: 1e-3", 1))
    assert load_params(params).mlp.learning_rate == 0.001
    tricky = tmp_path / "tricky.yaml"
    tricky.write_text(
        "a: 1e-3\nb: off\nc: yes\nd: 010\ne: 0o10\nf: 1:30\ng: 1_000\nh: .inf\n"
        "i: ~\nj: 2024-01-02\nk: 0x1F\nl: .5\nm: '1'\nn: No\n"
    )
    assert read_yaml(tricky) == load_yaml(tricky)


SECRET = "DL_LABS_TEST_SECRET"


@pytest.mark.parametrize(
    ("value", "resolver"),
    [
        (f"${{oc.env:{SECRET}}}", "oc.env"),
        (f"${{oc.env:{SECRET},fallback}}", "oc.env"),
        (f"photos/${{oc.env:{SECRET}}}/train", "oc.env"),
        (f"${{oc.decode:${{oc.env:{SECRET}}}}}", "oc.env"),
        (f'${{oc.decode:"${{oc.env:{SECRET}}}"}}', "oc.env"),  # decode resolves what it decodes
        ("${now:%Y-%m-%d}", "now"),
        ("${hydra:runtime.cwd}", "hydra"),
    ],
)
def test_a_conf_resolver_that_reads_the_machine_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, resolver: str
) -> None:
    """`${oc.env:NAME}` copied the runner's variable into params.yaml and the experiment commit."""
    monkeypatch.setenv(SECRET, "hunter2")
    conf = crafted_conf(tmp_path, f"data:\n  images_dir: '{value}'\n")
    with pytest.raises(ParamsError) as caught:
        compose_yaml((), conf)
    message = str(caught.value)
    assert f"data.images_dir = {value!r} calls {resolver}" in message, message
    assert "hunter2" not in message


def test_a_resolver_given_as_an_override_is_refused(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(SECRET, "hunter2")
    conf = crafted_conf(tmp_path, "data:\n  images_dir: null\n")
    with pytest.raises(ParamsError, match=r"data\.images_dir = .* calls oc\.env"):
        compose_yaml([f"data.images_dir=${{oc.env:{SECRET}}}"], conf)


def test_interpolations_within_conf_still_compose(tmp_path: Path) -> None:
    conf = crafted_conf(tmp_path, "a: 3\nb: ${a}\nc: ${oc.select:a,1}\nd: ${oc.decode:'7'}\n")
    assert yaml.safe_load(compose_yaml((), conf)) == {"a": 3, "b": 3, "c": 3, "d": 7}


# --- dvc exp run: DVC's own composition of conf/ ---------------------------------------------


def scratch_experiments_repo(root: Path) -> Path:
    """A git + DVC repository with this project's conf/, hydra_plugins/ and .dvc/config, and one
    stage that reads base.seed: `dvc exp run` composes conf/ there as it does here."""
    import shutil

    from tests.helpers.repo import commit_all, sh

    for name in ("conf", "hydra_plugins"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    (root / ".dvc").mkdir()
    shutil.copy(REPO / ".dvc" / "config", root / ".dvc" / "config")
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    (root / "dvc.yaml").write_text(
        "stages:\n  show:\n    cmd: echo ${base.seed} > out.txt\n    params:\n      - base.seed\n"
        "    outs:\n      - out.txt\n",
        encoding="utf-8",
    )
    (root / ".gitignore").write_text("out.txt\n", encoding="utf-8")
    sh(["git", "init", "-q"], root)
    commit_all(root, "scratch")
    return root


@pytest.mark.slow
def test_dvc_exp_run_refuses_what_make_params_refuses(tmp_path, monkeypatch) -> None:
    """The probe: 13 KB of nested anchors in conf/config.yaml took `dvc exp run` 202 s, and
    `${oc.env:NAME}` wrote the runner's variable into params.yaml and the experiment commit.
    hydra_plugins/dl_labs_conf.py runs the checks inside DVC, before it composes conf/."""
    from tests.helpers.repo import DVC, sh

    root = scratch_experiments_repo(tmp_path)
    params = (root / "params.yaml").read_bytes()
    monkeypatch.setenv(SECRET, "hunter2")
    override = sh([*DVC, "exp", "run", "-S", f"base.seed=${{oc.env:{SECRET}}}"], root, check=False)
    assert override.returncode != 0
    assert f"${{oc.env:{SECRET}}} reads the environment" in override.stderr + override.stdout

    config = root / "conf" / "config.yaml"
    config.write_text(config.read_text(encoding="utf-8") + nested_anchors(6), encoding="utf-8")
    anchors = sh([*DVC, "exp", "run"], root, check=False, timeout=120)
    assert anchors.returncode != 0
    assert "config.yaml at line" in anchors.stderr and "anchor &l0" in anchors.stderr

    config.write_text(
        config.read_text(encoding="utf-8").split("l0:")[0] + f"x: ${{oc.env:{SECRET}}}\n",
        encoding="utf-8",
    )
    in_conf = sh([*DVC, "exp", "run"], root, check=False)
    assert in_conf.returncode != 0 and "x = '${oc.env:" in in_conf.stderr
    assert (root / "params.yaml").read_bytes() == params  # nothing written
    experiments = sh([*DVC, "exp", "list", "--name-only"], root).stdout
    assert experiments.strip() == ""
    assert "hunter2" not in (root / "params.yaml").read_text(encoding="utf-8")
