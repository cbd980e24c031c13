"""Bad input gets one clear message and exit status 2, never a traceback, and earlier results stay."""

import hashlib
import sys

import pytest

from unlearnbench.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_ls_lists_methods_and_suites(capsys):
    code, out, _ = run_cli(capsys, "ls")
    assert code == 0
    assert "slug" in out and "noop" in out and "clip" in out


@pytest.mark.parametrize("argv, expected", [
    (["--suite", "clpi"], "Unknown suite 'clpi'. Did you mean 'clip'?"),
    (["--methods", "slgu"], "Unknown method 'slgu'. Did you mean 'slug'"),
    (["--methods", ""], "no methods given"),
    (["--set", "nonsense=1"], "has no setting 'nonsense'"),
    (["--set", "batch_size=many"], "batch_size='many' is not a valid int"),
    (["--set", "embedded=huge"], "unknown embedded CLIP preset 'huge'"),
    (["--method-set", "slug.search_steps"], "--method-set expects"),
    (["--method-set", "slug.nope=1"], "has no setting 'nope'"),
    (["--seeds", "a,b"], "--seeds expects comma-separated integers"),
    (["--config", "real"], "needs the data root: --data PATH"),
    (["--plugin", "no_such_module_xyz"], "--plugin no_such_module_xyz: no module 'no_such_module_xyz'"),
    (["--methods", "slug,esd"], "method 'esd' does not support suite 'clip' (task kind 'clip'); methods that do:"),
    (["--suite", "unlearncanvas", "--methods", "ssd"], "method 'ssd' does not support suite 'unlearncanvas'"),
    (["--suite", "unlearncanvas", "--set", "target_kind=colour"], "target_kind='colour'"),
    (["--ci", "95"], "--ci 95"),
])
def test_bad_input_is_one_clear_line(capsys, tmp_path, argv, expected):
    code, _, err = run_cli(capsys, *argv, "--out", str(tmp_path))
    assert code == 2
    assert expected in err
    assert "Traceback" not in err
    assert not any(tmp_path.iterdir()), "a failed command must not write outputs"


def test_missing_real_data_folder_is_named(capsys, tmp_path):
    missing = tmp_path / "nowhere"
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"not a checkpoint")
    code, _, err = run_cli(capsys, "--config", "real", "--data", str(missing), "--weights", str(tmp_path),
                           "--out", str(tmp_path / "runs"))
    assert code == 2 and "Traceback" not in err
    assert "nowhere" in err or "laion400m_e32" in err


def test_unknown_target_and_previous_results_untouched(capsys, micro_suite, tmp_path):
    common = ["--set", "embedded=micro", "--set", "retain_samples=128", "--methods", "noop", "--out", str(tmp_path)]
    code, out, _ = run_cli(capsys, *common)
    assert code == 0 and "noop" in out
    written = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.rglob("*") if p.is_file()}
    assert any(p.name == "records.parquet" for p in written)
    assert any(p.name == "table.md" for p in written)
    assert any(p.suffix == ".png" for p in written)

    code, _, err = run_cli(capsys, *common, "--targets", "Nobody Atall")
    assert code == 2 and "unknown target 'Nobody Atall'" in err
    code, _, err = run_cli(capsys, *common, "--targets", "999")
    assert code == 2 and "targets (1.." in err
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == written


def test_paper_llava_table_help_and_unknown_tables(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["paper", "llava-table", "--help"])
    assert exit_info.value.code == 0
    assert "llava-table (LLaVA identity unlearning (SLUG Sec. 5.3)" in " ".join(capsys.readouterr().out.split())
    code, _, err = run_cli(capsys, "paper", "llava-tabel", "--out", str(tmp_path))
    assert code == 2 and "Traceback" not in err
    assert "unknown paper table 'llava-tabel'; tables: clip-table, unlearncanvas-table, llava-table" in err
    code, _, err = run_cli(capsys, "paper", "llava-table", "--set", "match=exact", "--out", str(tmp_path))
    assert code == 2 and "match='exact'; expected one of substring, word" in err
    code, _, err = run_cli(capsys, "paper", "llava-table", "--config", "real", "--data", str(tmp_path / "nowhere"),
                           "--set", "model_path=x", "--set", "clip_path=y", "--out", str(tmp_path))
    assert code == 2 and "llava data root not found" in err and "nowhere" in err
    assert not any(tmp_path.iterdir()), "a failed command must not write outputs"


def test_ls_name_shows_settings_defaults_and_help(capsys):
    code, out, _ = run_cli(capsys, "ls", "slug")
    assert code == 0
    assert "method slug [clip, diffusion, vlm]" in out and "--method-set slug.KEY=VALUE" in out
    line = next(line for line in out.splitlines() if line.split()[:1] == ["search_steps"])
    assert line.split()[1] == "10" and "binary search" in line  # default, then the field's comment
    code, out, _ = run_cli(capsys, "ls", "clip")
    assert code == 0 and "suite clip" in out and "--set KEY=VALUE" in out
    assert any(line.split()[:2] == ["forget_metric", "FA@5"] for line in out.splitlines())


def test_ls_unknown_name_suggests(capsys):
    code, _, err = run_cli(capsys, "ls", "slgu")
    assert code == 2 and "Unknown method, suite or attack 'slgu'. Did you mean 'slug'" in err
    assert "Traceback" not in err


def test_ls_loads_plugins(capsys, monkeypatch):
    from pathlib import Path

    from unlearnbench.methods.base import METHODS

    monkeypatch.setattr(METHODS, "_entries", {k: v for k, v in METHODS._entries.items() if k != "mine"})
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))  # the repository root: examples/
    monkeypatch.delitem(sys.modules, "examples.my_method", raising=False)
    code, out, _ = run_cli(capsys, "ls", "--plugin", "examples.my_method", "mine")
    assert code == 0 and "method mine [clip]" in out and "step_size" in out


@pytest.mark.parametrize("body, expected", [
    ("@register_method('slug')\nclass Slug2(Method):\n    '''Doc.'''\n    Config = C\n"
     "    kinds = frozenset({'clip'})\n",
     "method 'slug' is registered twice"),
    ("@register_method('nodoc')\nclass NoDoc(Method):\n    Config = C\n    kinds = frozenset({'clip'})\n",
     "has no docstring"),
])
def test_a_bad_plugin_is_one_line(capsys, monkeypatch, tmp_path, body, expected):
    from unlearnbench.methods.base import METHODS

    monkeypatch.setattr(METHODS, "_entries", dict(METHODS._entries))
    module = f"plugin_{tmp_path.name}"
    (tmp_path / f"{module}.py").write_text(
        "from dataclasses import dataclass\nfrom unlearnbench.methods.base import Method, register_method\n"
        "@dataclass(frozen=True)\nclass C:\n    pass\n" + body)
    monkeypatch.syspath_prepend(str(tmp_path))
    for argv in (["ls", "--plugin", module], ["--plugin", module, "--out", str(tmp_path / "runs")]):
        monkeypatch.delitem(sys.modules, module, raising=False)
        code, _, err = run_cli(capsys, *argv)
        assert code == 2 and expected in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


FILE_PLUGIN = '''
from dataclasses import dataclass

from unlearnbench.methods.base import Method, Outcome, register_method


@dataclass(frozen=True)
class C:
    strength: float = 0.5  # how hard it pushes


@register_method("{name}")
class FilePlugin(Method):
    """A plugin method read from a file."""

    Config = C
    kinds = frozenset({{"clip"}})

    def unlearn(self, task):
        return Outcome()
'''


def test_plugin_is_a_py_file_or_a_module_in_the_current_folder(capsys, monkeypatch, tmp_path):
    from unlearnbench.methods.base import METHODS

    monkeypatch.setattr(METHODS, "_entries", dict(METHODS._entries))
    monkeypatch.setattr(sys, "path", list(sys.path))
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    plugin = folder / f"ub_file_plugin_{tmp_path.name}.py"
    plugin.write_text(FILE_PLUGIN.format(name="from-file"))
    code, out, err = run_cli(capsys, "ls", "--plugin", str(plugin), "from-file")
    assert code == 0 and "method from-file [clip]: A plugin method read from a file." in out, err

    monkeypatch.chdir(tmp_path)  # a module in the current folder, named as a module
    (tmp_path / f"ub_cwd_plugin_{tmp_path.name}.py").write_text(FILE_PLUGIN.format(name="from-cwd"))
    code, out, err = run_cli(capsys, "ls", "--plugin", f"ub_cwd_plugin_{tmp_path.name}", "from-cwd")
    assert code == 0 and "strength" in out, err

    code, _, err = run_cli(capsys, "ls", "--plugin", "no_such_plugin_xyz")
    assert code == 2 and "no module 'no_such_plugin_xyz' on the Python path or in the current folder" in err
    assert "or the path of its .py file (e.g. examples/my_method.py)" in err
    code, _, err = run_cli(capsys, "ls", "--plugin", "missing/plugin.py")
    assert code == 2 and "--plugin missing/plugin.py: no such file" in err and "Traceback" not in err
