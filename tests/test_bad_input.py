"""The bad-input catalogue: each bad input gives exit status 2 and one line `error: ...` naming the problem and
the fix, no traceback, and the results of an earlier run stay byte-identical. Also what must not fail: a
damaged cache file is retrained with a warning, SIGTERM ends a run like Ctrl-C, files get the user's umask."""

from __future__ import annotations

import hashlib
import logging
import shutil
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from fixtures_real import make_celeba_tree, make_imagenet_tree
from safetensors.torch import save_file

from unlearnbench.cache import CACHE_ENV
from unlearnbench.cli import main
from unlearnbench.errors import UnlearnBenchError
from unlearnbench.methods import slug
from unlearnbench.models import tiny_clip

REPO = Path(__file__).resolve().parents[1]
MICRO = ["--set", "embedded=micro", "--set", "retain_samples=128"]


def snapshot(folder: Path) -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def earlier_run(micro_suite, tmp_path_factory) -> Path:
    """An --out folder holding a finished micro run: what every bad command must leave as it is."""
    out = tmp_path_factory.mktemp("runs")
    assert main([*MICRO, "--methods", "noop", "--out", str(out)]) == 0
    assert any(p.name == "records.parquet" for p in out.rglob("*"))
    return out


def run_bad(capsys, out: Path, argv: list[str], *expected: str) -> None:
    """Run ``argv``; assert exit 2, one clear line with every ``expected`` text, and ``out`` untouched."""
    before = snapshot(out)
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for text in expected:
        assert text in lines[0]
    assert snapshot(out) == before, "earlier results must stay byte-identical and nothing new be written"


NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


@pytest.mark.parametrize("argv, expected", [
    pytest.param(["--targets", ""], ["--targets ''", "names no target", "leave it out"], id="targets-empty"),
    pytest.param(["--targets", " , ,"], ["names no target"], id="targets-only-commas"),
    pytest.param(["--seeds", str(2**63)], [str(2**63), "between 0 and 2**63 - 1", "int64"], id="seed-too-big"),
    pytest.param(["--seeds", "-1"], ["--seeds -1", "between 0 and"], id="seed-negative"),
    pytest.param(["--set", "batch_size=0"], ["batch_size=0", "at least 1"], id="batch-size-0"),
    pytest.param(["--set", "retain_samples=-3"], ["retain_samples=-3", "at least 1"], id="retain-samples-negative"),
    pytest.param(["--set", "device=cuda"], ["device='cuda'", "torch sees no CUDA device", "device=cpu"],
                 id="cuda-without-cuda", marks=NO_CUDA),
    pytest.param(["--set", "device=gpu"], ["device='gpu' is not a torch device", "cuda:N"], id="device-invalid"),
    pytest.param(["--methods", "noop,slug,noop"], ["--methods names 'noop' twice"], id="methods-duplicate"),
    pytest.param(["--targets", "Anyone,Someone,Anyone"], ["--targets names 'Anyone' twice"], id="targets-duplicate"),
    pytest.param(["--seeds", "0,1,0"], ["--seeds names 0 twice"], id="seeds-duplicate"),
    pytest.param(["--run-id", "../x"], ["--run-id '../x'", "plain folder name"], id="run-id-parent"),
    pytest.param(["--run-id", "/tmp/abs"], ["--run-id '/tmp/abs'", "plain folder name"], id="run-id-absolute"),
    pytest.param(["--run-id", "a/b"], ["--run-id 'a/b'"], id="run-id-separator"),
    pytest.param(["--run-id", ".hidden"], ["--run-id '.hidden'", "not starting with '.'"], id="run-id-dot"),
    pytest.param(["--methods", "slug", "--method-set", "slug.layer=visual.nope"],
                 ["slug.layer='visual.nope' is not a candidate", "visual.proj", "in all)"], id="slug-layer"),
])
def test_bad_run_input(capsys, earlier_run, argv, expected):
    run_bad(capsys, earlier_run, [*MICRO, "--methods", "noop", "--out", str(earlier_run), *argv], *expected)


@pytest.fixture
def no_training(tmp_path, monkeypatch):
    """An empty private cache, and training that fails the test: what is checked first cannot train."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "empty-cache"))

    def train(*args):
        raise AssertionError("trained before the check")

    monkeypatch.setattr(tiny_clip, "train", train)


@pytest.mark.parametrize("flag, below, expected", [
    ("--out", "", "is a file, not a folder"),
    ("--out", "sub", "cannot be written (Not a directory)"),
    ("--cache-dir", "cache", "cannot be written (Not a directory)"),
])
def test_unwritable_folders_fail_before_training(capsys, earlier_run, no_training, flag, below, expected):
    # A path below a regular file fails for root too, where permission bits would not.
    a_file = next(p for p in earlier_run.rglob("table.md"))
    path = a_file / below if below else a_file
    argv = [*MICRO, "--set", "embedded_weights=trained", "--methods", "noop", "--out", str(earlier_run), flag,
            str(path)]
    run_bad(capsys, earlier_run, argv, f"{flag} {path}", expected)


@pytest.fixture(scope="module")
def real_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("real")
    make_imagenet_tree(root / "imagenet", images_per_class=3)
    make_celeba_tree(root / "celeba")
    return root


def damaged_checkpoint(folder: Path, damage: str) -> Path:
    torch.manual_seed(0)
    state = tiny_clip.create_model("ub-clip-micro").state_dict()
    if damage == "wrong-shape":
        state["visual.proj"] = torch.zeros(3, 5)
    elif damage == "wrong-keys":
        state["text_proj"] = state.pop("text_projection")
    path = folder / f"{damage}.{'safetensors' if 'safetensors' in damage else 'pt'}"
    if "safetensors" in damage:
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    if damage.startswith("truncated"):
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(b"these are not the weights you are looking for\n" * 20)
    return path


@pytest.mark.parametrize("damage, expected", [
    ("truncated", ["cannot be read as a checkpoint: truncated, damaged"]),
    ("truncated-safetensors", ["cannot be read as a checkpoint: truncated, damaged"]),
    ("garbage", ["cannot be read as a checkpoint"]),
    ("wrong-shape", ["shape mismatch for visual.proj: the file has (3, 5), the model needs (64, 64)"]),
    ("wrong-keys", ["missing keys text_projection", "unexpected keys text_proj"]),
])
def test_bad_weights_file_is_named(capsys, earlier_run, real_root, tmp_path, damage, expected):
    weights = damaged_checkpoint(tmp_path, damage)
    argv = ["--config", "real", "--data", str(real_root), "--weights", str(weights), "--set", "model=ub-clip-micro",
            "--set", "batch_size=4", "--set", "retain_samples=16", "--methods", "noop", "--out", str(earlier_run)]
    run_bad(capsys, earlier_run, argv, f"--weights {weights}: ", *expected,
            "expected an open_clip checkpoint of ub-clip-micro")


def test_slug_rejects_a_forced_layer_before_the_gradient_pass(micro_suite, monkeypatch):
    def no_gradients(*args):
        raise AssertionError("the gradient pass ran before the check")

    monkeypatch.setattr(slug, "mean_gradients", no_gradients)
    task = micro_suite.task(micro_suite.targets()[0])
    method = slug.Slug(slug.SlugConfig(layer="visual.proj.nope"))
    with pytest.raises(UnlearnBenchError, match=r"slug.layer='visual.proj.nope' is not a candidate.*visual.proj"):
        method.check(task)
    with pytest.raises(UnlearnBenchError, match="is not a candidate"):
        method.unlearn(task)
    slug.Slug(slug.SlugConfig(layer="visual.proj")).check(task)  # a candidate passes


@pytest.mark.parametrize("damage", ["truncated model.safetensors", "garbled train.json",
                                    "train.json without metrics"])
def test_damaged_cached_model_is_retrained_with_a_warning(micro_suite, tmp_path, monkeypatch, caplog, damage):
    from unlearnbench.cache import config_hash

    cfg = tiny_clip.preset("micro")
    shipped = tiny_clip.load_or_train(cfg).path  # the micro CLIP ships; a cache folder holds the same files
    folder = tmp_path / "models" / f"{cfg.model}-{config_hash(tiny_clip.training_settings(cfg))}"
    shutil.copytree(shipped, folder)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    if damage == "truncated model.safetensors":
        damaged = folder / "model.safetensors"
        damaged.write_bytes(damaged.read_bytes()[:1000])
    else:
        damaged = folder / "train.json"
        damaged.write_text('{"config": {"steps": 2' if damage == "garbled train.json" else '{"config": {}}')
    trainings = []

    def train(train_cfg, data, tokenizer):  # the cache logic is under test, not a 45 s training
        trainings.append(train_cfg)
        return tiny_clip.create_model(train_cfg.model), {"identity_top1": 0.25}

    monkeypatch.setattr(tiny_clip, "train", train)
    with caplog.at_level(logging.WARNING, logger="unlearnbench"):
        first = tiny_clip.load_or_train(cfg, weights="trained")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith(f"{damaged} is unreadable (")
    assert warnings[0].endswith("); retraining")
    assert len(trainings) == 1 and first.metrics == {"identity_top1": 0.25}

    caplog.clear()
    again = tiny_clip.load_or_train(cfg, weights="trained")  # the retrained files were written back and now load
    assert len(trainings) == 1 and again.metrics == {"identity_top1": 0.25}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_sigterm_is_handled_like_ctrl_c(tmp_path):
    cache = tmp_path / "cache"  # private and empty: the run has to train, so it is still running when signalled
    env = {**os.environ, CACHE_ENV: str(cache), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, str(REPO / "bench.py"), *MICRO, "--set", "embedded_weights=trained",
                             "--methods", "noop",
                             "--out", str(tmp_path / "runs")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not cache.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)  # the cache folder is made after the arguments are checked, before training
    assert proc.poll() is None, proc.communicate()
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == ("interrupted (SIGTERM); finished units are kept and a rerun of the "
                                            "same command resumes")
    assert not list(cache.rglob("*.tmp"))


def test_files_are_written_with_the_users_umask(tmp_path):
    """atomic_write's temporary file is 0600; the renamed file must have what the umask gives (0640 here)."""
    target = tmp_path / "out.txt"
    code = ("import sys; from pathlib import Path; from unlearnbench.cache import atomic_write_text; "
            "atomic_write_text(Path(sys.argv[1]), 'x')")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", code, str(target)], env=env, check=True,
                   preexec_fn=lambda: os.umask(0o027))
    assert target.stat().st_mode & 0o777 == 0o666 & ~0o027
