"""Run-folder ergonomics: runs/index.md (and `bench.py runs`) names every run with its command, date and
suite; `--method-set ga.epochs=1,2` runs both settings as two variants of one run (a sweep)."""

import json

from unlearnbench.cli import main
from unlearnbench.reports.compare import StoredRun, compare_runs
from unlearnbench.reports.run_report import method_configs
from unlearnbench.reports.tables import summary_table
from unlearnbench.runner import RunSpec, method_variants, run


def test_a_method_set_with_several_values_is_a_sweep_of_variants():
    spec = RunSpec("clip", ["ga", "noop"], method_overrides={"ga": {"lr": "1e-4,1e-5", "epochs": "3",
                                                                    "betas": "0.9,0.99"}})
    assert method_variants(spec) == [
        ("ga", {"lr": "1e-4", "epochs": "3", "betas": "0.9,0.99"}),  # a tuple setting keeps its commas
        ("ga", {"lr": "1e-5", "epochs": "3", "betas": "0.9,0.99"}), ("noop", {})]


def test_a_sweep_runs_each_variant_and_tables_and_compare_name_them(micro_suite, tmp_path):
    spec = RunSpec("clip", ["ga"], method_overrides={"ga": {"epochs": "1,2"}}, out_dir=tmp_path, run_id="sweep")
    result = run(spec, micro_suite)
    hashes = set(result.records.config_hash)
    assert len(hashes) == 2 and result.units == 2
    methods = result.manifest["methods"]
    assert sorted(m["config"]["epochs"] for m in methods.values()) == [1, 2]
    assert {m["method"] for m in methods.values()} == {"ga"} and set(methods) == {f"ga-{h}" for h in hashes}
    table = summary_table(result.records, ["FA@1"], configs=method_configs(result.manifest))
    assert {label.removesuffix(" †") for label in table.index} == {"original", "ga (epochs=1)", "ga (epochs=2)"}
    stored = StoredRun.load(result.run_dir, "RUN")
    compared = compare_runs(stored, stored)
    assert {v.removesuffix(" †") for v in compared.variant} == {"original", "ga (epochs=1)", "ga (epochs=2)"}


def test_runs_index_lists_each_run_with_its_command(micro_suite, tmp_path, capsys, monkeypatch):
    """`bench.py run` writes --out/index.md; `bench.py runs` prints it; a run made before commands were
    recorded says so."""
    micro = ["--set", "embedded=micro", "--set", "retain_samples=128", "--set", "batch_size=32",
             "--set", "forget_metric=FA@1"]
    assert main(["--methods", "noop", *micro, "--out", str(tmp_path)]) == 0
    old = tmp_path / "old-run"
    old.mkdir()
    (old / "manifest.json").write_text(json.dumps({"created": "2020-01-01T00:00:00+00:00", "suite": {"name": "clip"},
                                                   "methods": {"slug": {}}, "targets": ["a"], "seeds": [0]}))
    index = (tmp_path / "index.md").read_text()
    command = f"bench.py --methods noop {' '.join(micro)} --out {tmp_path}"
    run_line = next(line for line in index.splitlines() if line.startswith("| clip-"))
    assert command in run_line and "| clip " in run_line and "Ulrike Kingsley" in run_line
    capsys.readouterr()
    assert main(["runs", "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].startswith("clip-") and command in lines[2]  # newest first
    assert lines[3].startswith("old-run") and "(not recorded)" in lines[3]
    assert "old-run" in (tmp_path / "index.md").read_text()
