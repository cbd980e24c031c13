"""The method contract (unlearnbench.testing) over every registered method and every kind it
declares, so a method is tested the day it is registered; and proof that the checks catch the
broken plugins they exist for."""

import random
from dataclasses import dataclass, replace

import pytest
import torch

from unlearnbench.benchmarks.clip import ClipSuite
from unlearnbench.errors import UnlearnBenchError
from unlearnbench.methods.base import METHODS, Method, Outcome, register_method
from unlearnbench.methods.ga import GradientAscent
from unlearnbench.testing import MethodContractError, check_method, method_checks, micro_suite

# Small budgets that still reach the goal on the micro suites (measured; each method's own defaults
# are exercised by the end-to-end runs). On the micro CLIP the reference lr 1e-4 leaves GA at FA@1
# 87.5 after 2 epochs; 1e-3 forgets. ssd needs its own 10-check alpha search (it forgets the micro CLIP
# since its token table is a word vocabulary: before, the BPE table dominated SSD's Fisher statistics and
# no alpha of the search took FA@1 below 25), ssd-slug a stronger dampening schedule, salun 3 epochs at 3e-3.
# On the micro diffusion model (its text encoder a frozen CLIP text tower) GA and GAFT at 3e-3 forget
# (at 1e-3: target_acc 25 and 50 after 2 epochs), though no budget measured keeps IRA (MISSES_GOAL).
FAST = {"search_steps": "4", "epochs": "2", "max_front_layers": "2"}
SETTINGS = {
    "clip": {"ga": {"lr": "1e-3"}, "gaft": {"lr": "1e-3"}, "salun-ga": {"lr": "1e-3"},
             "salun": {"lr": "3e-3", "epochs": "3"}, "ssd": {"search_steps": "10"},
             "ssd-slug": {"alpha": "2", "dampening_first": "0.01", "dampening_last": "0.1"}},
    "diffusion": {"ga": {"lr": "3e-3"}, "gaft": {"lr": "3e-3"}, "salun-ga": {"lr": "1e-3"}, "salun": {"lr": "1e-3"},
                  **{esd: {"iterations": "4", "check_every": "2", "ddim_steps": "4"}
                     for esd in ("esd", "esd-x", "esd-u")}},
    # At the reference 1e-4 GA, GAFT, SalUn and SalUn-GA left FA at 100 after 2 epochs.
    "vlm": {"slug": {"max_front_layers": "1"}, "slug-lm": {"max_front_layers": "1"},
            **{m: {"lr": "1e-3"} for m in ("ga", "gaft", "salun", "salun-ga")}},
}
# (method, kind) whose goal the micro model does not let them reach with any budget we measured.
MISSES_GOAL: dict[tuple[str, str], str] = {
    # The micro diffusion model is weak (4 styles; style accuracy 0.62 on its generated images), and the
    # reference's search judges each step on 3 + 3 images: measured on the full validation grid, slug ends at
    # target_acc 33 with IRA 44 -> 0, slug-qkv at target_acc 0 with IRA 0; slug-noise's harness search finds no
    # step that forgets (target_acc 100).
    ("slug", "diffusion"): "the reference's 3 + 3-image search overshoots on the micro model (IRA 44 -> 0)",
    ("slug-qkv", "diffusion"): "the reference's 3 + 3-image search overshoots on the micro model (IRA 44 -> 0)",
    ("slug-noise", "diffusion"): "no step on any front layer forgets the micro model's style",
    # 40 iterations (ddim_steps 10) left target_acc at 100 and took 11 s a run; more costs minutes.
    **{(esd, "diffusion"): "a few iterations do not forget; enough to would take minutes"
       for esd in ("esd", "esd-x", "esd-u")},
    ("salun-ga", "diffusion"): "2 epochs at lr 1e-3 left target_acc at 100 (and IRA at 0)",
    # Suite version 4 (named styles, 24 target images, goal target_acc <= 15) on target Byzantine: ga at 3e-3
    # target_acc 0 with IRA 63.89 -> 33.33; at 1e-3 target_acc 25, IRA 36.11; gaft at 1e-3 50, IRA 47.22.
    **{(m, "diffusion"): "2 epochs forget only at a rate that costs the micro model's IRA 30 points"
       for m in ("ga", "gaft")},
    # Measured after the shared stopping rule and the reference's lr schedule: target_acc 100, IRA unchanged.
    ("salun", "diffusion"): "2 epochs at lr 1e-3 under the reference's schedule leave target_acc at 100",
    # 2 epochs at lr 1e-3 on the micro LLaVA: FA 50 (ga, gaft), 66.67 (salun), 100 (salun-ga).
    **{(m, "vlm"): "2 epochs at lr 1e-3 do not take FA to 0 on the micro LLaVA"
       for m in ("ga", "gaft", "salun", "salun-ga")},
}


def settings(name: str, kind: str) -> dict[str, str]:
    fields = METHODS.get(name).Config.__dataclass_fields__
    chosen = {**FAST, **SETTINGS[kind].get(name, {})}
    return {k: v for k, v in chosen.items() if k in fields}


def contract_cases():
    for name, cls in METHODS.items():
        for i, kind in enumerate(sorted(cls.kinds)):
            for check in method_checks(cls, settings(name, kind)):
                if (":" not in check.name and i > 0) or (":" in check.name and not check.name.startswith(f"{kind}:")):
                    continue  # registration and round trip once per method; each kind with its own settings
                # The diffusion and LLaVA micro suites cost minutes across every method: the slow step.
                marks = [pytest.mark.slow] if kind != "clip" and ":" in check.name else []
                if check.name == f"{kind}:goal" and (name, kind) in MISSES_GOAL:
                    marks.append(pytest.mark.xfail(reason=MISSES_GOAL[name, kind], raises=MethodContractError,
                                                   strict=True))
                yield pytest.param(check, id=f"{name}-{check.name}", marks=marks)


@pytest.mark.parametrize("check", contract_cases())
def test_registered_methods_keep_the_contract(check):
    check()


# ---- the checks catch broken plugins -------------------------------------------------------------------

@pytest.fixture
def registry(monkeypatch):
    """Plugins registered by a test leave the registry when it ends."""
    monkeypatch.setattr(METHODS, "_entries", dict(METHODS._entries))
    return METHODS


@dataclass(frozen=True)
class StepConfig:
    lr: float = 1e-3  # plain SGD step on the forget loss


class Ascent(Method):
    """One SGD step of gradient ascent over each forget batch (a test plugin)."""

    Config = StepConfig
    kinds = frozenset({"clip"})

    def step(self, task, param):
        return -self.config.lr * param.grad

    def unlearn(self, task):
        params = task.editable_parameters(task.model)
        with task.costs.phase("update"):
            for batch in task.forget_batches():
                task.model.zero_grad()
                (-task.forget_loss(task.model, batch)).backward()
                task.costs.count(backward=len(batch[0]))
                with torch.no_grad():
                    for param in params.values():
                        if param.grad is not None:
                            param.add_(self.step(task, param))
        return Outcome()


def test_a_plugin_that_never_forgets_fails_the_goal(registry):
    register_method("test-timid")(type("Timid", (Ascent,), {"__doc__": "Steps far too small to forget."}))
    with pytest.raises(MethodContractError, match=r"'test-timid'.*rule 'clip: goal'.*FA@1 = [1-9]"):
        check_method(METHODS.get("test-timid"), settings={"lr": "1e-7"})


class VisionOnlyClip(ClipSuite):
    """The micro CLIP suite with tasks that offer only the vision tower."""

    def task(self, target):
        task = super().task(target)
        return replace(task, editable=[k for k in task.editable if k.startswith("visual.")],
                       layer_groups={k: g for k, g in task.layer_groups.items() if k.startswith("visual.")})


def test_a_plugin_that_edits_a_frozen_tensor_is_caught(registry):
    class Meddler(Ascent):
        """Steps every parameter, whatever the task offers."""

        def unlearn(self, task):
            task = replace(task, editable=[n for n, _ in task.model.named_parameters()])
            return super().unlearn(task)

    register_method("test-meddler")(Meddler)
    suite = VisionOnlyClip(micro_suite("clip").config)
    with pytest.raises(MethodContractError, match=r"edits only editable tensors.*outside task.editable"):
        check_method(Meddler, suites={"clip": suite})


def test_a_nondeterministic_plugin_is_caught(registry):
    class Dice(Ascent):
        """Scales its step by Python's unseeded random numbers."""

        def step(self, task, param):
            return -self.config.lr * random.uniform(0.5, 2) * param.grad

    register_method("test-dice")(Dice)
    with pytest.raises(MethodContractError, match="rule 'clip: deterministic'.*torch.manual_seed"):
        check_method(Dice)


def test_a_kind_the_code_cannot_run_fails_before_any_benchmark(registry):
    class ClipOnly(GradientAscent):
        """Claims diffusion but reads CLIP's image encoder."""

        kinds = frozenset({"clip", "diffusion"})

        def unlearn(self, task):
            task.model.encode_image  # noqa: B018 - a diffusion model has none
            return super().unlearn(task)

    register_method("test-clip-only")(ClipOnly)
    runs = dict(method_checks(ClipOnly, {"epochs": "1"}))["diffusion:runs"]
    with pytest.raises(MethodContractError, match=r"declares kind 'diffusion' but raised.*encode_image.*drop"):
        runs()


def test_a_plugin_kind_needs_its_suite(registry):
    class Audio(Ascent):
        """Claims a kind no suite provides."""

        kinds = frozenset({"audio"})

    register_method("test-audio")(Audio)
    with pytest.raises(MethodContractError, match=r"kind 'audio'.*suites=\{'audio'"):
        check_method(Audio)


def test_no_docstring_and_duplicates_fail_at_registration_and_in_the_checks(registry):
    class Silent(Ascent):
        pass

    Silent.__doc__ = None
    with pytest.raises(UnlearnBenchError, match="Silent.*has no docstring"):
        register_method("test-silent")(Silent)
    with pytest.raises(MethodContractError, match="registration"):
        check_method(Silent)

    class Twin(Ascent):
        """Takes a built-in's name."""

    with pytest.raises(UnlearnBenchError, match=r"method 'slug' is registered twice .*Slug and .*Twin.*another name"):
        register_method("slug")(Twin)
    assert METHODS.get("slug") is not Twin
    Twin.name = "slug"
    with pytest.raises(MethodContractError, match="METHODS has no entry 'slug' for this class"):
        check_method(Twin)


def test_micro_suites_read_shipped_models_or_say_what_they_train(tmp_path, monkeypatch, caplog):
    """check_method on a clip method reads the micro CLIP shipped in the package (no silent minutes of training);
    the kinds whose micro models are trained into the cache say so, naming the cache, before they do."""
    import logging

    from unlearnbench import testing
    from unlearnbench.models import tiny_clip

    def train(*args):
        raise AssertionError("the micro CLIP was trained")

    monkeypatch.setenv("UNLEARNBENCH_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr(tiny_clip, "train", train)
    testing._micro_suite.cache_clear()
    try:
        with caplog.at_level(logging.INFO, logger="unlearnbench.testing"):
            clip = micro_suite("clip")
            clip.base_model()  # loaded from models/weights/ub-clip-micro, nothing trained
            assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
            micro_suite("vlm")  # built, not yet loaded: its models train on first use
        said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert said == [f"unlearnbench.testing: the micro 'vlm' suite trains the micro LLaVA (its CLIP tower, then "
                        f"the language model) into {tmp_path / 'empty'} unless it is there already (minutes on a "
                        "CPU, once per cache)"]
    finally:
        testing._micro_suite.cache_clear()
