"""The llava suite's test-time utility through lm-eval (extra vlm-eval, unlearnbench.lm_eval_utility):
the same answers and accuracy as the suite's own scorer, util: records with standard errors, offline data,
and a one-line install hint without the extra."""

from __future__ import annotations

import sys

import pytest

from unlearnbench.benchmarks.base import build_suite
from unlearnbench.benchmarks.llava import LlavaSuite, LlavaSuiteConfig, identity_accuracy
from unlearnbench.errors import UnlearnBenchError

INSTALL = 'pip install -e ".[vlm-eval]"'


# ---- without the extra (runs everywhere) ------------------------------------------------------------------

def test_without_lm_eval_the_setting_fails_at_construction_with_the_install_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # import lm_eval -> ImportError
    with pytest.raises(UnlearnBenchError, match=r"utility_tasks=ub_vqa needs lm-eval.*" + r"\.\[vlm-eval\]") as err:
        build_suite("llava", {"utility_tasks": "ub_vqa"})
    assert INSTALL in str(err.value) and "\n" not in str(err.value)
    LlavaSuite(LlavaSuiteConfig())  # the default never asks for lm-eval


def test_lm_eval_settings_need_utility_tasks():
    with pytest.raises(UnlearnBenchError, match="utility_tasks"):
        build_suite("llava", {"hf_cache": "/tmp"})
    with pytest.raises(UnlearnBenchError, match="utility_tasks"):
        build_suite("llava", {"utility_limit": "3"})


# ---- with lm-eval ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def suite() -> LlavaSuite:
    pytest.importorskip("lm_eval")
    suite = LlavaSuite(LlavaSuiteConfig(utility_tasks="ub_vqa,ub_mu_llava_identity"))
    suite.assets  # the shipped tiny LLaVA (seconds)
    return suite


def test_lm_eval_gives_the_internal_scorers_answers_and_accuracy_on_the_test_split(suite):
    """Search and stopping use the suite's batched scorer; the test-time utility runs through lm-eval:
    on the shipped model both give identical answers, hence identical accuracy."""
    model, target = suite.base_model(), suite.targets()[0]
    results = suite.utility.run(model, target, log_samples=True)
    samples = {task: sorted(results["samples"][task], key=lambda s: s["doc_id"]) for task in results["samples"]}
    internal = suite.scores(model, target, "test")

    qs = suite.assets.utility["test"]
    ours = suite.utility_replies(model, "test", list(range(len(qs))))
    theirs = [s["filtered_resps"][0].strip() for s in samples["ub_vqa"]]
    assert len(theirs) == len(ours) == len(qs)
    assert theirs == ours
    assert [s["doc"]["question"] for s in samples["ub_vqa"]] == qs.questions
    for kind in dict.fromkeys(qs.kinds):  # per question type, as TA_VQA averages them
        hits = [s["acc"] for s in samples["ub_vqa"] if s["doc"]["type"] == kind]
        assert 100 * sum(hits) / len(hits) == pytest.approx(internal[f"VQA_{kind}"])
    pooled = identity_accuracy(ours, qs.answers, suite.match)
    assert 100 * results["results"]["ub_vqa"]["acc,none"] == pytest.approx(pooled)

    faces = suite.assets.identities["test"]
    rows = list(range(len(faces)))
    ours = suite.identity_replies(model, "test", rows)
    theirs = [s["filtered_resps"][0].strip() for s in samples["ub_mu_llava_identity"]]
    assert theirs == ours
    identity = results["results"]["ub_mu_llava_identity"]
    assert 100 * identity["forget_acc,none"] == pytest.approx(internal["FA"])
    expected = suite.asked("test", rows)[1]
    others = [i for i in rows if not samples["ub_mu_llava_identity"][i]["doc"]["target"]]
    assert 100 * identity["retain_acc,none"] == pytest.approx(
        identity_accuracy([ours[i] for i in others], [expected[i] for i in others], suite.match))


def test_edits_in_place_are_what_lm_eval_scores(suite):
    model = suite.base_model()
    lm = suite.utility.lm(model)
    assert lm.model is model and suite.utility.lm(model) is lm  # one wrapper, the suite's own weights
    assert lm.processor is suite.assets.processor


def test_a_run_records_util_metrics_with_stderr_and_their_directions(tmp_path):
    pytest.importorskip("lm_eval")
    from unlearnbench.runner import RunSpec, run

    overrides = {"utility_tasks": "ub_vqa", "utility_limit": "24"}
    result = run(RunSpec(suite="llava", methods=["noop"], suite_overrides=overrides, out_dir=tmp_path))
    records = result.records
    util = records[records.metric.str.startswith("util:")]
    assert set(util.metric) == {"util:ub_vqa:acc", "util:ub_vqa:acc_stderr"}
    assert set(util.stage) == {"before", "after"}
    values = util.set_index(["stage", "metric"]).value
    assert values["before", "util:ub_vqa:acc"] == values["after", "util:ub_vqa:acc"]  # noop changes nothing
    assert 0 <= values["after", "util:ub_vqa:acc_stderr"] < 1
    meta = result.manifest["metrics"]
    assert meta["util:ub_vqa:acc"]["higher_is_better"] is True
    assert meta["util:ub_vqa:acc_stderr"]["tolerance"] is None  # shown, never gated


def test_unknown_task_names_fail_at_construction():
    pytest.importorskip("lm_eval")
    with pytest.raises(UnlearnBenchError, match="no task nosuchtask"):
        build_suite("llava", {"utility_tasks": "ub_vqa,nosuchtask"})
    with pytest.raises(UnlearnBenchError, match="twice"):
        build_suite("llava", {"utility_tasks": "ub_vqa,ub_vqa"})


def test_lm_eval_tasks_read_their_data_offline_and_never_download(tmp_path):
    """A task whose data set is not in the given cache fails in one line naming the setting; offline
    mode is on while lm-eval runs and the environment is restored afterwards."""
    pytest.importorskip("lm_eval")
    import os

    suite = build_suite("llava", {"utility_tasks": "chartqa", "hf_cache": str(tmp_path), "utility_limit": "2"})
    before = os.environ.get("HF_DATASETS_OFFLINE")
    with pytest.raises(UnlearnBenchError, match="nothing is downloaded.*hf_cache=PATH"):
        suite.evaluate(suite.base_model(), suite.targets()[0])
    assert os.environ.get("HF_DATASETS_OFFLINE") == before


def test_lm_eval_warnings_stay_out_of_the_terminal_unless_verbose(suite, capfd, caplog, monkeypatch):
    """lm-eval warns about how it wraps an in-memory model and about task metadata; a run's terminal shows none
    of it, and with -v each message once (through the root handler, not also through a handler of lm-eval's)."""
    import logging

    monkeypatch.setattr(suite.utility, "limit", 4)
    model, target = suite.base_model(), suite.targets()[0]
    suite.utility._lm = None  # building lm-eval's model around ours warns too
    with caplog.at_level(logging.WARNING):
        suite.utility.run(model, target)
    assert not [r for r in caplog.records if r.name.startswith("lm_eval")]
    assert "WARNING" not in capfd.readouterr().err

    suite.utility._lm = None
    with caplog.at_level(logging.WARNING), caplog.at_level(logging.INFO, logger="unlearnbench"):  # what -v sets
        suite.utility.run(model, target)
    shown = [r.getMessage() for r in caplog.records if r.name.startswith("lm_eval")]
    assert any("already-initialized model" in message for message in shown)
    assert not logging.getLogger("lm_eval").handlers and "WARNING" not in capfd.readouterr().err
