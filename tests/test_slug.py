"""SLUG: the Pareto front and step search on hand-made inputs, then real forgetting on the micro suite."""

import dataclasses
import math

import pandas as pd
import pytest
import torch
from torch import nn

from unlearnbench.errors import UnlearnBenchError
from unlearnbench.methods.common import pareto_front
from unlearnbench.methods.slug import Slug, SlugConfig, choose_trial, search_step
from unlearnbench.task import Goal, UnlearningTask


def test_pareto_front_keeps_undominated_points():
    importance = torch.tensor([1.0, 2.0, 3.0, 0.5, 2.5])
    alignment = torch.tensor([0.1, 0.5, 0.2, 0.05, 0.9])
    # point 1 is dominated by 2 (more important, less aligned); point 4 by 2 as well.
    assert pareto_front(importance, alignment).tolist() == [True, False, True, True, False]


def test_pareto_front_ties_do_not_dominate():
    importance = torch.tensor([1.0, 1.0])
    alignment = torch.tensor([0.3, 0.3])
    assert pareto_front(importance, alignment).tolist() == [True, True]


class OneWeight(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([[3.0, 4.0]]))  # ||W|| = 5


def fake_task(model: nn.Module, threshold: float, retain_tolerance: float | None = None) -> UnlearningTask:
    """Forgetting is met once the weight moved by at least ``threshold``; retain falls with distance."""
    w0 = model.w.detach().clone()

    def validate(m, changed):
        distance = (m.w - w0).norm().item()
        return {"FA@5": 0.0 if distance >= threshold else 100.0, "retain@1": 100.0 - distance}

    return UnlearningTask(
        kind="clip", suite="fake", target="t", model=model, forget_batches=lambda: iter(()),
        retain_batches=lambda: iter(()), forget_loss_fn=None, retain_loss_fn=None, validate_fn=validate,
        goal=Goal("FA@5", 0.0, "retain@1", retain_tolerance), editable=["w"], layer_groups={"w": "vision"})


def test_search_doubles_then_bisects_and_restores_w0():
    model = OneWeight()
    task = fake_task(model, threshold=2.0)
    grad = torch.tensor([[1.0, 0.0]])  # ||g|| = 1, so lambda0 = 0.1 * 5 / 1 = 0.5
    trials = search_step(task, "w", grad, SlugConfig(search_steps=6))
    steps = [t["step"] for t in trials]
    assert steps[:4] == [0.5, 1.0, 2.0, 1.5]  # double until met (2.0), then bisect between 1.0 and 2.0
    assert steps[4] == 1.75 and steps[5] == 1.875
    assert [t["met"] for t in trials] == [False, False, True, False, False, False]
    assert torch.equal(model.w, torch.tensor([[3.0, 4.0]]))  # always restored to W0
    assert task.costs.evaluations == 1 + 6  # the base model once, then one per trial
    assert task.base_validation()["retain@1"] == 100.0


def test_search_bisects_down_when_a_step_forgets_but_loses_too_much():
    """With a retain tolerance, a step that forgets but breaks retention is not met, yet the bracket
    still closes on it: only a smaller step can keep more."""
    model = OneWeight()
    task = fake_task(model, threshold=2.0, retain_tolerance=1.9)  # met only for distance in [2, 1.9]: never
    trials = search_step(task, "w", torch.tensor([[1.0, 0.0]]), SlugConfig(search_steps=6))
    assert [t["step"] for t in trials] == [0.5, 1.0, 2.0, 1.5, 1.75, 1.875]
    assert not any(t["met"] for t in trials)
    relaxed = search_step(fake_task(OneWeight(), threshold=2.0, retain_tolerance=2.5), "w",
                          torch.tensor([[1.0, 0.0]]), SlugConfig(search_steps=4))
    assert [t["met"] for t in relaxed] == [False, False, True, False]


def test_expensive_validation_scores_retention_once_per_layer():
    """Same bracket, but only the smallest forgetting step is scored in full."""
    task = fake_task(OneWeight(), threshold=2.0, retain_tolerance=2.5)
    full_calls = []
    forget_only = task.validate_fn
    task.validate_forget_fn = lambda m, changed: {"FA@5": forget_only(m, changed)["FA@5"]}
    task.validate_fn = lambda m, changed: full_calls.append(1) or forget_only(m, changed)
    task.expensive_validation = True
    trials = search_step(task, "w", torch.tensor([[1.0, 0.0]]), SlugConfig(search_steps=6))
    assert [t["step"] for t in trials] == [0.5, 1.0, 2.0, 1.5, 1.75, 1.875]
    assert len(full_calls) == 1 + 1  # the base model, then the smallest forgetting step (2.0)
    assert [t["met"] for t in trials] == [False, False, True, False, False, False]
    assert "retain@1" in trials[2] and "retain@1" not in trials[3]
    paper_rule = search_step(task, "w", torch.tensor([[1.0, 0.0]]),
                             SlugConfig(search_steps=6, retain_scoring="forgetting"))
    assert [t["met"] for t in paper_rule] == [t["met"] for t in trials]
    with pytest.raises(UnlearnBenchError, match="retain_scoring"):
        SlugConfig(retain_scoring="all")


def test_choose_trial_prefers_best_retain_among_met():
    goal = Goal("FA@5", 0.0, "retain@1", 5.0)
    trace = pd.DataFrame([
        {"layer": "a", "step": 1.0, "met": False, "FA@5": 10.0, "retain@1": 90.0},
        {"layer": "a", "step": 2.0, "met": True, "FA@5": 0.0, "retain@1": 70.0},
        {"layer": "b", "step": 3.0, "met": True, "FA@5": 0.0, "retain@1": 80.0},
    ])
    assert choose_trial(trace, goal).layer == "b"
    tied = pd.concat([trace, pd.DataFrame([
        {"layer": "b", "step": 5.0, "met": True, "FA@5": 0.0, "retain@1": 80.0},
        {"layer": "c", "step": 9.0, "met": True, "FA@5": 0.0, "retain@1": 80.0}])], ignore_index=True)
    chosen = choose_trial(tied, goal)  # equal retention: first layer, largest step
    assert (chosen.layer, chosen.step) == ("b", 5.0)


def test_choose_trial_keeps_the_step_closest_to_the_goal_with_the_least_damage_when_none_met():
    goal = Goal("FA@5", 0.0, "retain@1", 5.0)
    trace = pd.DataFrame([
        {"layer": "a", "step": 1.0, "met": False, "FA@5": 10.0, "retain@1": 90.0},
        {"layer": "a", "step": 2.0, "met": False, "FA@5": 0.0, "retain@1": 70.0},
        {"layer": "b", "step": 3.0, "met": False, "FA@5": 0.0, "retain@1": 80.0},
    ])
    assert choose_trial(trace, goal).step == 3.0  # both forgot: the better retention
    unscored = trace.drop(columns="retain@1")  # retention is scored only for trials that forget
    assert choose_trial(unscored, goal).step == 2.0  # the smallest step that forgets
    # A doubling search overshoots: the steps that forgot but were not scored rank after a scored one,
    # and among themselves the smallest goes first, never the largest overshoot.
    search = pd.DataFrame([
        {"layer": "a", "step": 1.0, "met": False, "FA@5": 60.0},
        {"layer": "a", "step": 2.0, "met": False, "FA@5": 10.0, "retain@1": 85.0},
        {"layer": "a", "step": 4.0, "met": False, "FA@5": 0.0},
        {"layer": "a", "step": 32.0, "met": False, "FA@5": 0.0},
    ])
    assert choose_trial(search, goal).step == 4.0
    never = pd.DataFrame([{"layer": "a", "step": s, "met": False, "FA@5": fa} for s, fa in
                          ((1.0, 80.0), (2.0, 40.0), (4.0, 40.0), (8.0, 60.0))])
    assert choose_trial(never, goal).step == 2.0  # nothing forgot: the lowest FA, then the smaller step


@pytest.fixture(scope="module")
def slug_run(micro_suite):
    target = micro_suite.targets()[0]
    task = micro_suite.task(target)
    model = task.model
    base = {k: v.clone() for k, v in model.state_dict().items()}
    before = micro_suite.evaluate(model, target)
    torch.manual_seed(0)
    outcome = Slug().unlearn(task)
    after = micro_suite.evaluate(model, target)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, base[k])]
    model.load_state_dict(base)
    return before, after, outcome, changed, task


def test_slug_forgets_the_target_and_keeps_the_rest(slug_run):
    before, after, outcome, _, _ = slug_run
    assert before["FA@1"] >= 60, before  # the micro model really knows the target
    assert outcome.info["goal_met"]
    # The goal is judged on the 8 validation images (FA@1 0 there); on the 12 test images the micro
    # model measured 100 -> 25 (3 images left).
    assert after["FA@1"] <= 30 and before["FA@1"] - after["FA@1"] >= 50, (before, after)
    assert after["TA_CA@1"] >= before["TA_CA@1"] - 15, (before, after)
    assert after["TA_IN@1"] >= before["TA_IN@1"] - 15, (before, after)


def test_slug_changes_exactly_one_front_tensor(slug_run):
    _, _, outcome, changed, _ = slug_run
    layers = outcome.tables["layers"]
    assert changed == [outcome.info["layer"]]
    assert layers.set_index("layer").loc[outcome.info["layer"], "on_front"]
    assert layers.chosen.sum() == 1


def test_slug_records_every_trial_and_costs(slug_run):
    _, _, outcome, _, task = slug_run
    front = outcome.tables["layers"].on_front.sum()
    assert len(outcome.trace) == front * SlugConfig().search_steps
    assert set(outcome.trace.layer) == set(outcome.tables["layers"].query("on_front").layer)
    # the base model, one forget-only check per trial, and a full validation per trial that forgot
    assert task.costs.backward_samples > 0
    assert task.costs.evaluations == 1 + len(outcome.trace) + int(outcome.trace.met.sum())
    forgot = outcome.trace[task.goal.forget_metric].le(task.goal.forget_threshold)
    assert outcome.trace.loc[~forgot, "TA_CA@1"].isna().all()
    assert all(task.costs.seconds[p] > 0 for p in ("precompute", "search"))


def test_slug_update_ascends_the_forget_loss(micro_suite):
    target = micro_suite.targets()[1]
    task = micro_suite.task(target)
    model = task.model
    base = {k: v.clone() for k, v in model.state_dict().items()}
    batch = next(task.forget_batches())
    loss_before = task.forget_loss(model, batch).item()
    Slug().unlearn(task)
    loss_after = task.forget_loss(model, batch).item()
    model.load_state_dict(base)
    assert loss_after > loss_before


def test_forget_only_validation_matches_the_full_one(micro_suite):
    target = micro_suite.targets()[2]
    task = micro_suite.task(target)
    full = task.base_validation()
    quick = task.validate_forget(task.model, set())
    assert quick == {"FA@1": full["FA@1"], "FA@5": full["FA@5"]}
    with torch.no_grad():
        weight = dict(task.model.named_parameters())["visual.proj"]
        weight.mul_(-1)
        try:
            edited = {"visual.proj"}
            assert task.validate_forget(task.model, edited)["FA@1"] == task.validate(task.model, edited)["FA@1"]
        finally:
            weight.mul_(-1)


def test_vision_edit_reuses_the_text_classifier(micro_suite, monkeypatch):
    target = micro_suite.targets()[0]
    task = micro_suite.task(target)
    task.base_validation()
    calls = []
    original = type(task.model).encode_text
    monkeypatch.setattr(type(task.model), "encode_text",
                        lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    task.validate(task.model, {"visual.proj"})
    assert calls == []
    assert math.isfinite(task.validate(task.model, set())["FA@1"])


def test_reference_procedure_chooses_the_same_layer_and_step(micro_suite, slug_run):
    """procedure=reference scores every trial with a full validation that reuses nothing: more work
    (each trial's scores, all metrics), the same candidates, so the same choice; the cached search
    records its floor and ratio."""
    _, _, cached, _, cached_task = slug_run
    task = micro_suite.task(micro_suite.targets()[0])
    base = {k: v.clone() for k, v in task.model.state_dict().items()}
    torch.manual_seed(0)
    reference = Slug(SlugConfig(procedure="reference")).unlearn(task)
    task.model.load_state_dict(base)
    assert (reference.info["layer"], reference.info["step"]) == (cached.info["layer"], cached.info["step"])
    assert reference.trace.step.tolist() == cached.trace.step.tolist()
    assert reference.trace["TA_CA@1"].notna().all()  # every trial validated in full
    assert reference.trace.met.tolist() == cached.trace.met.tolist()
    costs = cached_task.costs.as_metrics()
    assert 0 < costs["floor_s"] < costs["runtime_s"] and costs["runtime_over_floor"] > 1
    with pytest.raises(UnlearnBenchError, match="procedure"):
        SlugConfig(procedure="fast")


def test_reference_procedure_is_refused_where_slug_runs_the_reference_search():
    task = dataclasses.replace(fake_task(OneWeight(), threshold=2.0), kind="diffusion")
    with pytest.raises(UnlearnBenchError, match="procedure='reference'.*reference's own search"):
        Slug(SlugConfig(procedure="reference")).check(task)
