"""Attacks (unlearnbench/attacks/): the contract over every registered attack on the micro CLIP, what each
attack does to the numbers, and how runs record them."""

import dataclasses
import json
import math

import pandas as pd
import pytest
import torch

import unlearnbench.attacks  # noqa: F401 - registers the attacks
from unlearnbench.attacks.base import ATTACKS, AttackContext, build_attack, run_attacks
from unlearnbench.attacks.quantize import round_trip
from unlearnbench.costs import CostMeter
from unlearnbench.errors import UnlearnBenchError
from unlearnbench.methods.base import build_method
from unlearnbench.patch import restored_weights
from unlearnbench.reports.paper import robustness_table
from unlearnbench.runner import RunSpec, prepare_attacks, run
from unlearnbench.testing import AttackContractError, attack_checks

# Small budgets: the contract asks how an attack behaves, not how strong it is.
FAST = {"relearn": {"steps": "2,3", "samples": "4", "batch_size": "2"},
        "quantize": {},
        "prompt": {"steps": "2", "candidates": "4", "samples": "4"}}


def contract_cases():
    for name, cls in ATTACKS.items():
        for kind in sorted(cls.kinds):
            for check in attack_checks(cls, FAST[name], kinds=(kind,)):
                if kind != "clip" and ":" not in check.name:
                    continue  # registration once per attack
                # The micro LLaVA and text-to-image models train for minutes the first time: the slow step.
                marks = [pytest.mark.slow] if kind != "clip" else []
                yield pytest.param(check, id=f"{name}-{check.name}", marks=marks)


@pytest.mark.parametrize("check", contract_cases())
def test_registered_attacks_keep_the_contract(check):
    check()


def test_the_contract_catches_an_attack_that_leaves_the_model_changed(micro_suite):
    from unlearnbench.attacks.base import Attack, register_attack

    @register_attack("test-careless")
    class Careless(Attack):
        """Scales a tensor and forgets to put it back."""

        @dataclasses.dataclass(frozen=True)
        class Config:
            factor: float = 2.0

        kinds = frozenset({"clip"})

        def labels(self):
            return ("careless",)

        def attack(self, context):
            with context.costs.phase("update"), torch.no_grad():
                next(iter(context.model.parameters())).mul_(self.config.factor)
            return {"careless": context.evaluate()}

    try:
        checks = {c.name: c for c in attack_checks(Careless, suites={"clip": micro_suite})}
        with pytest.raises(AttackContractError, match="leaves the model as found.*context.scratch"):
            checks["clip:leaves_model_as_found"]()
        task = micro_suite.task(micro_suite.targets()[0])
        with restored_weights(task.model), pytest.raises(UnlearnBenchError, match="left the model's weights changed"):
            run_attacks([Careless()], micro_suite, task, (), seed=0)  # a run refuses its numbers too
    finally:
        ATTACKS._entries.pop("test-careless")


@pytest.fixture(scope="module")
def unlearned(micro_suite):
    """The micro CLIP's first target forgotten by GA (lr 1e-3 forgets it in two epochs), its task and the
    names of the tensors GA changed; the base weights come back afterwards."""
    task = micro_suite.task(micro_suite.targets()[0])
    with restored_weights(task.model) as base:
        torch.manual_seed(0)
        build_method("ga", {"lr": "1e-3", "epochs": "2"}).unlearn(task)
        changed = tuple(k for k, v in task.model.state_dict().items() if not torch.equal(v, base[k]))
        state = {k: v.clone() for k, v in task.model.state_dict().items()}
    return task, changed, state


def attack_unlearned(micro_suite, unlearned, attack):
    task, changed, state = unlearned
    with restored_weights(task.model):
        task.model.load_state_dict(state)
        return run_attacks([attack], micro_suite, task, changed, seed=0)


def test_relearn_brings_the_target_back_and_restores_every_weight(micro_suite, unlearned):
    task, changed, state = unlearned
    with restored_weights(task.model):
        task.model.load_state_dict(state)
        unlearned_fa = micro_suite.attack_evaluate(task.model, task.target)["FA@1"]
        values = run_attacks([build_attack("relearn", {"steps": "10", "samples": "16", "lr": "1e-3"})],
                             micro_suite, task, changed, seed=0)
        assert all(torch.equal(v, state[k]) for k, v in task.model.state_dict().items())  # every weight restored
    assert unlearned_fa == 0
    assert values["FA@1|relearn-10"] > unlearned_fa
    retain_batch = len(next(iter(task.retain_batches()))[0])  # the retain run takes the task's own batches
    assert values["backward_samples|relearn"] == 10 * 8 + 10 * retain_batch
    assert values["runtime_s|relearn"] > 0


def test_quantize_touches_only_the_changed_tensors_and_stays_within_its_step(micro_suite, unlearned):
    task, changed, state = unlearned
    seen = {}

    class Watching(AttackContext):
        def evaluate(self):
            seen[len(seen)] = {k: v.clone() for k, v in self.model.state_dict().items()}
            return {"FA@1": 0.0}

    attack = build_attack("quantize", {"bits": "8", "scopes": "changed"})
    with restored_weights(task.model):
        task.model.load_state_dict(state)
        attack.attack(Watching(micro_suite, task, changed[:1], seed=0))
        assert all(torch.equal(v, state[k]) for k, v in task.model.state_dict().items())
    after = seen[0]
    untouched = [k for k in state if k != changed[0]]
    assert all(torch.equal(after[k], state[k]) for k in untouched)  # bit-identical
    w, q = state[changed[0]], after[changed[0]]
    rows = w.reshape(len(w), -1) if w.ndim >= 2 else w.reshape(1, -1)
    step = rows.abs().amax(dim=1, keepdim=True) / 127
    error = (q - w).reshape(rows.shape).abs()
    assert not torch.equal(q, w) and bool((error <= step / 2 + 1e-7).all())


def test_round_trip_is_exact_on_the_grid_and_keeps_dtype_and_zeros():
    w = torch.tensor([[-7.0, 0.0, 3.0, 7.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float16)
    out = round_trip(w, 4)
    assert out.dtype == torch.float16 and torch.equal(out, w)  # already on the 4-bit grid: unchanged
    assert torch.equal(round_trip(torch.zeros(3), 8), torch.zeros(3))


def test_quantize_model_scope_changes_what_the_method_did_not(micro_suite, unlearned):
    values = attack_unlearned(micro_suite, unlearned, build_attack("quantize", {"bits": "4", "scopes": "model"}))
    assert set(values) >= {"FA@1|quantize-int4-model", "MIA|quantize-int4-model", "runtime_s|quantize"}


def test_prompt_caption_search_is_seeded_and_bounded(micro_suite, unlearned):
    attack = build_attack("prompt", {"steps": "3", "candidates": "4", "samples": "4"})
    first = attack_unlearned(micro_suite, unlearned, attack)
    again = attack_unlearned(micro_suite, unlearned, attack)
    assert {k: v for k, v in first.items() if not k.startswith("runtime")} == \
           {k: v for k, v in again.items() if not k.startswith("runtime")}
    assert set(first) == {"FA@1|prompt", "FA@5|prompt", "TA_CA@1|prompt", "runtime_s|prompt",
                          "forward_samples|prompt", "backward_samples|prompt"}
    # 4 image features, the start caption, then per step one gradient pass and 4 candidates
    assert first["forward_samples|prompt"] == 4 + 1 + 3 * (1 + 4)
    assert first["backward_samples|prompt"] == 3


@pytest.mark.parametrize("name, settings, message", [
    ("relarn", {}, "Unknown attack 'relarn'. Did you mean 'relearn'"),
    ("relearn", {"steps": "0"}, "steps=\\(0,\\); give whole numbers of at least 1"),
    ("relearn", {"steps": "10,10"}, "names a step count twice"),
    ("quantize", {"bits": "1"}, "bits=\\(1,\\); give integer widths from 2 to 16"),
    ("quantize", {"scopes": "all"}, "scopes=\\('all',\\); expected some of changed, model"),
    ("prompt", {"candidates": "0"}, "candidates=0; give whole numbers of at least 1"),
    ("prompt", {"budget": "3"}, "budget"),
])
def test_bad_attack_settings_fail_with_one_line_naming_them(name, settings, message):
    with pytest.raises(UnlearnBenchError, match=message):
        build_attack(name, settings)


def test_settings_for_an_attack_not_in_the_run_are_refused(micro_suite):
    spec = RunSpec(suite="clip", methods=["noop"], attacks=["quantize"], attack_overrides={"relearn": {"steps": "5"}})
    with pytest.raises(UnlearnBenchError, match="settings given for attacks not in the run: \\['relearn'\\]"):
        prepare_attacks(spec, micro_suite)


@pytest.fixture(scope="module")
def attacked_run(micro_suite, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    spec = RunSpec(suite="clip", methods=["noop"], out_dir=out, attacks=["quantize"],
                   attack_overrides={"quantize": {"bits": "8"}})
    return spec, run(spec, micro_suite)


def test_a_run_records_attacks_before_and_after_with_directions(attacked_run):
    _, result = attacked_run
    records = result.records
    attacked = records[records.metric.str.contains("|", regex=False)]
    assert set(attacked.stage) == {"before", "after"}  # the base model is attacked too
    wide = attacked.pivot_table(index="metric", columns="stage", values="value")
    # noop changes nothing: quantizing its changed tensors (none) is the base model, attacked alike
    base_fa = records.query("stage == 'before' and metric == 'FA@1'").value.iloc[0]
    assert wide.loc["FA@1|quantize-int8", "after"] == base_fa
    metrics = result.manifest["metrics"]
    assert metrics["FA@1|quantize-int8"]["higher_is_better"] is False
    assert metrics["TA_CA@1|quantize-int8-model"]["higher_is_better"] is True
    assert metrics["runtime_s|quantize"]["tolerance"] is None
    assert result.manifest["attacks"]["quantize"]["labels"] == ["quantize-int8", "quantize-int8-model"]
    unit = next(iter(result.manifest["units"]))
    assert json.loads(json.dumps(result.manifest["units"][unit]))


def test_attack_settings_are_part_of_a_units_identity(attacked_run, micro_suite):
    spec, first = attacked_run
    same = run(spec, micro_suite)
    assert same.reused == 1
    other = run(dataclasses.replace(spec, run_id=first.run_dir.name,
                                    attack_overrides={"quantize": {"bits": "4"}}), micro_suite)
    assert other.reused == 0 and "attacks or their settings changed" in other.reuse_line()


def test_a_run_without_attacks_records_none(micro_suite, tmp_path):
    result = run(RunSpec(suite="clip", methods=["noop"], out_dir=tmp_path), micro_suite)
    assert not result.records.metric.str.contains("|", regex=False).any()
    assert "attacks" not in result.manifest
    from unlearnbench.records import read_metadata
    unit = next((result.run_dir / "units").glob("*.parquet"))
    assert "attacks" not in read_metadata(unit)["identity"]


def test_robustness_table_is_methods_by_attack_variants():
    rows = []
    for method, stage, fa, relearned in (("ga", "before", 90.0, 95.0), ("ga", "after", 0.0, 80.0),
                                         ("slug", "before", 90.0, 95.0), ("slug", "after", 10.0, 30.0)):
        for metric, value in (("FA@1", fa), ("FA@1|relearn-10", relearned), ("goal_met", 1.0),
                              ("runtime_s|relearn", 2.0)):
            if stage == "before" and metric == "goal_met":
                continue
            rows.append(dict(run_id="r", suite="clip", suite_version=3, model="m", target="t", method=method,
                             config_hash="h", seed=0, stage=stage, metric=metric, value=value))
    table = robustness_table(pd.DataFrame(rows), "FA@1")
    assert list(table.columns) == ["FA@1 (no attack)", "goal_met", "relearn-10", "runtime (s) relearn"]
    assert list(table.index) == ["original", "ga", "slug"]
    assert table.loc["slug", "relearn-10"] == "30.00" and table.loc["original", "relearn-10"] == "95.00"
    assert not math.isnan(float(table.loc["ga", "relearn-10"]))


def test_paper_robustness_writes_the_methods_by_attacks_table(tmp_path, capsys):
    from unlearnbench.cli import main

    code = main(["paper", "robustness", "--suite", "clip", "--methods", "noop", "--targets", "1",
                 "--set", "embedded=micro", "--set", "retain_samples=128", "--set", "forget_metric=FA@1",
                 "--attacks", "quantize", "--attack-set", "quantize.bits=8", "--out", str(tmp_path)])
    assert code == 0
    table = (tmp_path / "paper-robustness-clip" / "paper_robustness.md").read_text()
    assert "quantize-int8-model" in table and "runtime (s) quantize" in table and "bits=8" in table
    assert "| original" in table and "| noop" in table
    assert main(["paper", "clip-table", "--suite", "llava"]) == 2
    assert "--suite and --methods are for `paper robustness`" in capsys.readouterr().err


def test_an_unknown_attack_fails_before_any_work(tmp_path, capsys):
    from unlearnbench.cli import main

    assert main(["--suite", "clip", "--methods", "noop", "--attacks", "quantise", "--set", "embedded=micro",
                 "--out", str(tmp_path)]) == 2
    assert "Unknown attack 'quantise'. Did you mean 'quantize'?" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_the_caption_search_substitutes_allowed_tokens_only(micro_suite, unlearned):
    from unlearnbench.attacks.prompt import PromptConfig, allowed_tokens, search_caption

    task, changed, state = unlearned
    start = micro_suite.caption_tokens(task.target)[0]
    with restored_weights(task.model):
        task.model.load_state_dict(state)
        context = AttackContext(micro_suite, dataclasses.replace(task, costs=CostMeter()), changed, seed=0)
        caption = search_caption(context, PromptConfig(steps=6, candidates=8, samples=4))
    end = int(start.argmax())
    allowed = allowed_tokens(start, task.model.token_embedding.num_embeddings)
    assert caption[0] == start[0] and int(caption.argmax()) == end + 2 and caption[end + 2] == start[end]
    assert (caption == start[end]).sum() == 1  # one end token: the pooling reads the whole caption
    assert bool(allowed[caption[1:end + 2]].all())


def test_substitutions_are_the_allowed_tokens_of_steepest_descent():
    from unlearnbench.attacks.prompt import allowed_tokens, best_substitutions

    caption = torch.tensor([8, 4, 5, 9, 0, 0])  # start token 8, end token 9 (the highest ids)
    allowed = allowed_tokens(caption, 10)
    assert allowed.nonzero().flatten().tolist() == [2, 3, 4, 5, 6, 7]
    gradient = torch.tensor([-9.0, -8.0, 1.0, -1.0, 0.0, -3.0, 2.0, 0.5, -7.0, -6.0])
    assert best_substitutions(gradient, allowed, 3).tolist() == [5, 3, 4]
    assert sorted(best_substitutions(gradient, allowed, 50).tolist()) == [2, 3, 4, 5, 6, 7]


def test_the_target_name_as_the_found_caption_gives_the_suites_own_scores(micro_suite):
    target = micro_suite.targets()[0]
    model = micro_suite.base_model()
    names = micro_suite.assets.data.identities["val"].classnames
    weights, label = micro_suite.identity_classifier(model, target)
    assert names[label] == target
    swapped = micro_suite.forget_accuracy_with(model, target, weights[label])  # the name's own weight: no swap
    test = micro_suite.evaluate(model, target)
    assert swapped == pytest.approx({k: test[k] for k in ("FA@1", "FA@5", "TA_CA@1")}, abs=1e-4)
