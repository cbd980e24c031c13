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
    pytest.param(["--set", "batch_size=none"], ["batch_size='none'", "takes a int and has no 'none'"],
                 id="batch-size-none"),
    pytest.param(["--methods", "slug", "--method-set", "slug.search_steps=null"],
                 ["search_steps='null'", "has no 'none'"], id="search-steps-null"),
    pytest.param(["--set", "forget_threshold=nan"], ["forget_threshold='nan' is not a finite number"],
                 id="threshold-nan"),
    pytest.param(["--set", "forget_threshold=-inf"], ["forget_threshold='-inf' is not a finite number"],
                 id="threshold-inf"),
    pytest.param(["--run-id", "r" * 300], ["--run-id rrrr", "is 300 bytes long", "at most 255"], id="run-id-long"),
    pytest.param(["--targets", '"Anyone'], ["--targets '\"Anyone'", "quote a name that holds a comma"],
                 id="targets-open-quote"),
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


def test_train_embedded_into_an_unwritable_cache_fails_before_training(capsys, earlier_run, no_training):
    a_file = next(p for p in earlier_run.rglob("table.md"))
    argv = ["train-embedded", "--suite", "clip", "--preset", "micro", "--cache-dir", str(a_file / "cache")]
    run_bad(capsys, earlier_run, argv, f"--cache-dir {a_file / 'cache'} cannot be written (Not a directory)")


def test_ship_into_an_unwritable_package_fails_before_training(capsys, earlier_run, no_training, monkeypatch):
    from unlearnbench.models import shipped

    a_file = next(p for p in earlier_run.rglob("table.md"))
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", a_file / "weights")  # the package's folder, unwritable
    argv = ["train-embedded", "--suite", "clip", "--preset", "micro", "--ship"]
    run_bad(capsys, earlier_run, argv, f"--ship: the shipped models' folder {a_file / 'weights'} cannot be written")
    run_bad(capsys, earlier_run, ["train-embedded", "--suite", "llava", "--preset", "micro", "--ship"],
            "--ship with --suite llava --preset micro: that model does not ship (presets that ship for llava: tiny)")


@pytest.fixture
def earlier_copy(earlier_run, tmp_path):
    """A copy of the earlier run's --out folder, to damage without touching the shared one."""
    out = tmp_path / "runs"
    shutil.copytree(earlier_run, out)
    return out, next(p.parent for p in out.rglob("manifest.json"))


def test_a_run_folder_whose_lock_cannot_be_opened_is_one_line(capsys, earlier_copy):
    out, run_dir = earlier_copy
    (run_dir / ".lock").unlink(missing_ok=True)
    (run_dir / ".lock").mkdir()  # open() fails on it as on a read-only folder, also for root
    argv = [*MICRO, "--methods", "noop", "--out", str(out), "--run-id", run_dir.name]
    run_bad(capsys, out, argv, f"run folder {run_dir}: its lock file {run_dir / '.lock'} is not a file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_run_folder_is_one_line(capsys, earlier_copy):
    out, run_dir = earlier_copy
    for folder in (run_dir, *(p for p in run_dir.rglob("*") if p.is_dir())):
        folder.chmod(0o555)
    try:
        argv = [*MICRO, "--methods", "noop", "--out", str(out), "--run-id", run_dir.name]
        run_bad(capsys, out, argv, f"run folder {run_dir} cannot be written (Permission denied)")
    finally:
        for folder in (run_dir, *(p for p in run_dir.rglob("*") if p.is_dir())):
            folder.chmod(0o755)


def test_a_full_disk_is_one_line_and_keeps_what_was_finished(capsys, micro_suite, earlier_copy, monkeypatch):
    """The disk fills up while ga's patch is written: one line, the earlier run and this run's finished noop unit
    stay, no temporary file is left behind."""
    import resource

    from unlearnbench import patch

    out, earlier = earlier_copy
    kept = snapshot(earlier)
    real_save = patch.save_file

    def full_disk(tensors, filename, metadata=None):  # writes past 64 KB fail as on a full disk
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))
        try:
            real_save(tensors, filename, metadata=metadata)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            signal.signal(signal.SIGXFSZ, previous)

    monkeypatch.setattr(patch, "save_file", full_disk)
    code = main([*MICRO, "--methods", "noop,ga", "--method-set", "ga.epochs=1", "--out", str(out), "--run-id", "full"])
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # after ga's progress bar
    assert code == 2 and "Traceback" not in err and err.count("error: ") == 1, err
    assert last.startswith(f"error: cannot write {out / 'full' / 'patches'}") and "(File too large); free space" in last
    assert snapshot(earlier) == kept
    stored = [p.name for p in (out / "full" / "units").iterdir()]
    assert len(stored) == 1 and "__noop-" in stored[0]  # the noop unit, finished before ga, is kept
    assert not list((out / "full").rglob("*.tmp"))


def test_a_search_that_never_forgets_is_reported(capsys, micro_suite, tmp_path):
    """SLUG with a step too small to forget anything: the run and `bench.py report` render it (no retention was
    ever scored) instead of failing on the missing column."""
    argv = [*MICRO, "--methods", "slug", "--method-set", "slug.initial_scale=1e-9", "--method-set",
            "slug.search_steps=1", "--method-set", "slug.max_front_layers=1", "--out", str(tmp_path)]
    assert main(argv) == 0
    run_dir = next(p.parent for p in tmp_path.rglob("manifest.json"))
    assert "slug †" in capsys.readouterr().out  # missed the goal
    search = next((run_dir / "plots").glob("*__search.png"))
    search.unlink()
    assert main(["report", str(run_dir)]) == 0
    page = (run_dir / "report.html").read_text()
    assert search.is_file() and "step search: the validation scores of every trial" in page


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


def test_a_model_whose_vocabulary_does_not_fit_its_tokenizer_is_named(capsys, earlier_run, real_root, tmp_path):
    """ub-clip-micro reads a 254-word vocabulary; as a real open_clip model it gets the 49,408-token BPE tokenizer."""
    torch.manual_seed(0)
    weights = tmp_path / "micro.pt"
    torch.save(tiny_clip.create_model("ub-clip-micro").state_dict(), weights)
    argv = ["--config", "real", "--data", str(real_root), "--weights", str(weights), "--set", "model=ub-clip-micro",
            "--set", "batch_size=4", "--set", "retain_samples=16", "--methods", "noop", "--out", str(earlier_run)]
    run_bad(capsys, earlier_run, argv, "model 'ub-clip-micro' has a vocabulary of 254 tokens",
            "(SimpleTokenizer, 49408 tokens) emits ids up to 49407")


@pytest.fixture(scope="module")
def bpe_weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("bpe") / "ub-clip-bpe.pt"
    torch.save(tiny_clip.create_model("ub-clip-bpe").state_dict(), path)
    return path


def test_a_target_whose_name_has_a_comma_is_named_in_quotes(capsys, earlier_run, real_root, bpe_weights, tmp_path):
    import json

    target = "Person 23, Jr."  # fixtures_real.make_celeba_tree names its identities "Person <id>, Jr."
    argv = ["--config", "real", "--data", str(real_root), "--weights", str(bpe_weights), "--set", "model=ub-clip-bpe",
            "--set", "batch_size=4", "--set", "retain_samples=16", "--methods", "noop"]
    run_bad(capsys, earlier_run, [*argv, "--out", str(earlier_run), "--targets", target],
            f"unknown target '{target.split(',')[0]}'",
            f"a name with a comma is quoted as in CSV: --targets '\"{target}\"'")
    assert main([*argv, "--out", str(tmp_path), "--targets", f'"{target}"']) == 0
    manifest = json.loads(next(tmp_path.rglob("manifest.json")).read_text())
    assert manifest["targets"] == [target]


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
