"""Contract checks for unlearning methods, in the spirit of scikit-learn's ``check_estimator``.

A method that passes can be benchmarked beside the built-in ones; one that fails is told which
rule it broke and how to fix it::

    from unlearnbench.testing import check_method
    check_method(MyMethod, settings={"epochs": "3"})  # raises MethodContractError on a broken rule

In pytest, one test per check (like scikit-learn's ``parametrize_with_checks``)::

    from unlearnbench.testing import parametrize_with_checks

    @parametrize_with_checks(MyMethod, settings={"epochs": "3"})
    def test_contract(check):
        check()

The rules: the class is registered under its name with a docstring, a frozen ``Config`` and a
non-empty ``kinds``; every setting survives the command line's text round trip; and on a micro
suite of every kind the method declares (``clip``, ``diffusion``, ``vlm``; a plugin kind brings its
own suite with ``suites=``): ``Method.check`` accepts the default task, the method runs, two runs
under one torch seed give bit-identical weights, only ``task.editable`` tensors change, weights stay
finite with their shapes and dtypes, its costs are recorded, it reaches the task's goal (a method
with ``aims_to_forget = False`` must instead change nothing or lower the retain loss), and a run
that fails part-way leaves the base model exactly as it was. The micro suites are built once per
process: the micro CLIP ships in the package (nothing trains); the micro LLaVA and text-to-image
models are trained into the cache (``$UNLEARNBENCH_CACHE``) the first time, which is logged as a
warning before it starts (``FIRST_USE``).

Attacks (``unlearnbench/attacks/``) have a contract of their own: ``check_attack(MyAttack, settings)`` or
``attack_checks`` runs one on a micro suite of each kind it declares, against a model whose first
``layer_groups`` tensor was changed as a method would, and checks that it returns every metric it declares,
gives the same numbers twice under one seed, times its work, and leaves the model exactly as it found it
(weights, modules, hooks, flags); an AttackContractError names the rule and the fix.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import torch
from torch import nn

from unlearnbench.benchmarks.base import Suite
from unlearnbench.cache import config_hash
from unlearnbench.config import apply_overrides, as_text
from unlearnbench.methods.base import METHODS, Method
from unlearnbench.patch import restored_weights
from unlearnbench.task import UnlearningTask

__all__ = ["AttackContractError", "Check", "MethodContractError", "attack_checks", "check_attack", "check_method",
           "method_checks", "micro_suite", "parametrize_with_checks"]

log = logging.getLogger(__name__)

# What building each kind's micro suite does to the machine, said before it happens (a check that trains
# a model for minutes without a word looks hung). None: it reads shipped models only.
FIRST_USE = {
    "clip": None,  # models/weights/ub-clip-micro
    "diffusion": "trains the micro text-to-image model, its text encoder's CLIP and the style and object "
                 "classifiers into {cache} unless they are there already (minutes on a CPU, once per cache)",
    "vlm": "trains the micro LLaVA (its CLIP tower, then the language model) into {cache} unless it is there "
           "already (minutes on a CPU, once per cache)",
}


class MethodContractError(AssertionError):
    """A method broke a rule of the contract; the message names the method, the rule and the fix."""


class Check(NamedTuple):
    """One contract check: ``name`` (e.g. ``"clip:deterministic"``) and ``run()``, which raises
    MethodContractError when the rule is broken."""

    name: str
    run: Callable[[], None]

    def __call__(self) -> None:
        self.run()


def micro_suite(kind: str) -> Suite:
    """The micro suite of a built-in task kind, built once per process (its model trains in seconds)."""
    return _micro_suite(kind)


@functools.cache
def _micro_suite(kind: str) -> Suite:
    import unlearnbench.benchmarks  # noqa: F401 - registers the suites
    from unlearnbench.benchmarks.clip import ClipSuite, ClipSuiteConfig
    from unlearnbench.benchmarks.llava import LlavaSuite, LlavaSuiteConfig
    from unlearnbench.benchmarks.unlearncanvas import UnlearnCanvasConfig, UnlearnCanvasSuite

    builders = {
        # The micro CLIP knows 10 identities: top-5 accuracy 0 would mean ranking the target below
        # half of the others, which dampening methods (ssd) never do there although they take FA@1
        # to 0; so the micro goal is FA@1 = 0 (the embedded default, 60 identities, keeps FA@5).
        "clip": lambda: ClipSuite(ClipSuiteConfig(embedded="micro", retain_samples=128, batch_size=32,
                                                  forget_metric="FA@1")),
        "diffusion": lambda: UnlearnCanvasSuite(UnlearnCanvasConfig(embedded="micro", test_seeds=(188, 288),
                                                                    retain_samples=64)),
        # The micro LLaVA's retention is fragile: slug and slug-lm took FA to 0 but lost 14 and 34
        # points of the retain score (tolerance 5); the check asks whether a method forgets, as on clip.
        "vlm": lambda: LlavaSuite(LlavaSuiteConfig(embedded="micro", retain_samples=96, batch_size=32,
                                                   retain_tolerance=None)),
    }
    if kind not in builders:
        raise KeyError(kind)
    if FIRST_USE[kind]:
        from unlearnbench.cache import cache_root

        log.warning("unlearnbench.testing: the micro %r suite %s", kind, FIRST_USE[kind].format(cache=cache_root()))
    else:
        log.info("unlearnbench.testing: the micro %r suite reads the models shipped in the package", kind)
    return builders[kind]()


def check_method(cls: type[Method], settings: dict[str, str] | None = None,
                 suites: dict[str, Suite] | None = None) -> None:
    """Run every contract check on ``cls``; raise MethodContractError at the first broken rule.

    ``settings``: config fields as text, as ``--method-set`` takes them (e.g. ``{"epochs": "3"}``),
    to keep the checks fast; the method must still reach the goal with them. ``suites``: the suite
    to use per task kind, instead of the built-in micro suites (required for a kind of your own).
    """
    for check in method_checks(cls, settings, suites):
        check()


def parametrize_with_checks(cls: type[Method], settings: dict[str, str] | None = None,
                            suites: dict[str, Suite] | None = None):
    """A ``pytest.mark.parametrize("check", ...)`` over ``method_checks``, one test id per check."""
    import pytest

    checks = list(method_checks(cls, settings, suites))
    return pytest.mark.parametrize("check", checks, ids=[c.name for c in checks])


def method_checks(cls: type[Method], settings: dict[str, str] | None = None,
                  suites: dict[str, Suite] | None = None) -> Iterator[Check]:
    """The contract checks of ``cls`` as ``(name, run)`` pairs, in the order ``check_method`` runs them.

    Runs of the method are shared between checks (and cached per process), so running every check
    costs three runs per kind: the checked run, the determinism rerun and the failing run.
    """
    settings = dict(settings or {})
    yield Check("registration", lambda: check_registration(cls))
    yield Check("config_round_trip", lambda: check_config_round_trip(cls, settings))
    for kind in sorted(getattr(cls, "kinds", None) or ()):
        context = _KindContext(cls, settings, kind, (suites or {}).get(kind))
        yield Check(f"{kind}:check_hook", context.check_hook)
        yield Check(f"{kind}:runs", context.runs)
        yield Check(f"{kind}:deterministic", context.deterministic)
        yield Check(f"{kind}:edits_only_editable", context.edits_only_editable)
        yield Check(f"{kind}:weights_finite", context.weights_finite)
        yield Check(f"{kind}:costs_recorded", context.costs_recorded)
        yield Check(f"{kind}:goal", context.goal)
        yield Check(f"{kind}:restores_on_failure", context.restores_on_failure)


# ---- checks without a model --------------------------------------------------------------------------

def _fail(cls: type, rule: str, problem: str, fix: str) -> MethodContractError:
    name = getattr(cls, "name", "") or cls.__name__
    return MethodContractError(f"method {name!r} ({cls.__module__}.{cls.__qualname__}) breaks rule "
                               f"'{rule}': {problem}. Fix: {fix}")


def check_registration(cls: type[Method]) -> None:
    rule = "registration"
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise _fail(cls, rule, "it is not a subclass of unlearnbench.methods.base.Method",
                    "derive it from Method and implement unlearn(task)")
    if not cls.name or cls.name not in METHODS or METHODS.get(cls.name) is not cls:
        raise _fail(cls, rule, f"METHODS has no entry {cls.name!r} for this class",
                    "decorate it with @register_method('your-name')")
    if not (cls.__doc__ or "").strip():
        raise _fail(cls, rule, "it has no docstring", "add one whose first line says what it does (bench.py ls)")
    config = getattr(cls, "Config", None)
    if not (isinstance(config, type) and dataclasses.is_dataclass(config) and config.__dataclass_params__.frozen):
        raise _fail(cls, rule, f"Config = {config!r} is not a frozen dataclass",
                    "declare the settings as @dataclass(frozen=True) with a default for every field")
    kinds = getattr(cls, "kinds", None)
    if not (isinstance(kinds, frozenset) and kinds and all(isinstance(k, str) for k in kinds)):
        raise _fail(cls, rule, f"kinds = {kinds!r} is not a non-empty frozenset of task kinds",
                    "set kinds = frozenset({'clip'}) (the kinds its code can run: clip, diffusion, vlm)")


def check_config_round_trip(cls: type[Method], settings: dict[str, str]) -> None:
    rule = "config round trip"
    try:
        default = cls.Config()
    except Exception as err:
        raise _fail(cls, rule, f"Config() fails without arguments ({type(err).__name__}: {err})",
                    "give every setting a default") from err
    owner = f"method {cls.name!r}"
    for config in (default, apply_overrides(default, settings, owner)):
        text = {f.name: as_text(getattr(config, f.name)) for f in dataclasses.fields(config)}
        parsed = apply_overrides(config, text, owner)
        if parsed != config:
            bad = [k for k in text if getattr(parsed, k) != getattr(config, k)]
            raise _fail(cls, rule, f"settings {bad} do not survive --method-set: "
                        f"{ {k: getattr(config, k) for k in bad} } -> { {k: getattr(parsed, k) for k in bad} }",
                        "use settings of type bool, int, float, str, a tuple of one of these, or None")
        try:
            json.dumps(dataclasses.asdict(config), sort_keys=True)
        except TypeError as err:
            raise _fail(cls, rule, f"its settings are not plain JSON values ({err}), so config_hash would "
                        "hash their str(), which can change from run to run", "use plain values") from err
        if config_hash(parsed) != config_hash(config):
            raise _fail(cls, rule, "config_hash changes across the text round trip",
                        "use plain values whose text form parses back to an equal value")


# ---- checks on micro suites ---------------------------------------------------------------------------

class _InjectedFailure(RuntimeError):
    """Raised by the failing task of ``restores_on_failure``."""


@dataclasses.dataclass
class _Run:
    base: dict[str, torch.Tensor]
    after: dict[str, torch.Tensor]
    task: UnlearningTask
    validation: dict[str, float]
    gradients_computed: bool
    retain_loss: tuple[float, float] | None  # (before, after), for methods that do not aim to forget

    @property
    def changed(self) -> list[str]:
        return [k for k, v in self.after.items() if not torch.equal(v, self.base[k])]


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _retain_loss(task: UnlearningTask) -> float:
    """The retain loss over one retain epoch in a fixed order (and, for diffusion, fixed noise)."""
    torch.manual_seed(1)
    with torch.no_grad():
        values = [task.retain_loss_fn(task.model, batch) for batch in task.retain_batches()]
    return float(torch.stack(values).mean())


_RUNS: dict[tuple, _Run | Exception] = {}


def _cached_run(cls: type[Method], config: Any, suite: Suite, repeat: int) -> _Run:
    """A run of ``cls`` on the first target of ``suite`` still known to its base model, under
    ``torch.manual_seed(0)``, once per process (its failure too); ``repeat`` tells the determinism
    rerun from the checked run."""
    key = (cls, config, suite, repeat)
    if key not in _RUNS:
        try:
            _RUNS[key] = _run(cls, config, suite)
        except Exception as err:  # noqa: BLE001 - any error of the method's code is its failure on this kind
            _RUNS[key] = err
    if isinstance(_RUNS[key], Exception):
        raise _RUNS[key]
    return _RUNS[key]


def _target(suite: Suite) -> str:
    """The first target the base model has not already forgotten (on a micro model some are never
    learnt, and there any method would "reach" the goal)."""
    if suite not in _TARGETS:
        for target in suite.targets():
            task = suite.task(target)
            if not task.goal.forget_met(task.base_validation()):
                _TARGETS[suite] = target
                break
        else:
            raise RuntimeError(f"suite {suite.name!r}: the base model meets the forget goal on every target, "
                               "so no run could show that a method forgets")
    return _TARGETS[suite]


_TARGETS: dict[Suite, str] = {}


def _run(cls: type[Method], config: Any, suite: Suite) -> _Run:
    task = suite.task(_target(suite))
    model = task.model
    task.base_validation()  # the goal compares with the untouched model; a method may never ask for it
    seen = []
    hooks = [p.register_hook(lambda grad: seen.append(True)) for p in model.parameters() if p.requires_grad]
    try:
        with restored_weights(model) as base:
            retain_before = None if cls.aims_to_forget else _retain_loss(task)
            torch.manual_seed(0)
            cls(config).unlearn(task)
            after = _state(model)
            validation = task.validate(model)
            retain = None if cls.aims_to_forget else (retain_before, _retain_loss(task))
    finally:
        for hook in hooks:
            hook.remove()
    return _Run(base, after, task, validation, bool(seen), retain)


class _KindContext:
    """The checks of one method on one task kind, sharing its runs."""

    def __init__(self, cls: type[Method], settings: dict[str, str], kind: str, suite: Suite | None) -> None:
        self.cls, self.settings, self.kind, self._suite = cls, settings, kind, suite

    def fail(self, rule: str, problem: str, fix: str) -> MethodContractError:
        return _fail(self.cls, f"{self.kind}: {rule}", problem, fix)

    @property
    def suite(self) -> Suite:
        if self._suite is None:
            try:
                self._suite = micro_suite(self.kind)
            except KeyError:
                raise self.fail("kinds", f"it declares task kind {self.kind!r}, which has no built-in micro suite",
                                f"pass suites={{{self.kind!r}: YourSuite(...)}} to the checks, or drop "
                                f"{self.kind!r} from kinds") from None
        return self._suite

    @property
    def config(self) -> Any:
        return apply_overrides(self.cls.Config(), self.settings, f"method {self.cls.name!r}")

    def run(self, repeat: int = 0) -> _Run:
        where = f"on the micro {self.suite.name!r} suite"
        if not self.cls.supports(self.kind):
            raise self.fail("runs", f"supports({self.kind!r}) is False although kinds lists it",
                            "keep supports() consistent with kinds")
        try:
            return _cached_run(self.cls, self.config, self.suite, repeat)
        except MethodContractError:
            raise
        except Exception as err:
            raise self.fail("runs", f"it declares kind {self.kind!r} but raised {where}: {type(err).__name__}: {err}",
                            f"make unlearn() work on {self.kind!r} tasks (see UnlearningTask), or drop "
                            f"{self.kind!r} from kinds") from err

    def check_hook(self) -> None:
        try:
            self.cls(self.config).check(self.suite.task(_target(self.suite)))
        except Exception as err:
            raise self.fail("check hook", f"Method.check rejected the micro {self.suite.name!r} task: "
                            f"{type(err).__name__}: {err}",
                            "check() must accept every task of a declared kind with these settings") from err

    def runs(self) -> None:
        self.run()

    def deterministic(self) -> None:
        first, again = self.run(), self.run(repeat=1)
        differ = [k for k in first.after if not torch.equal(first.after[k], again.after[k])]
        if differ:
            raise self.fail("deterministic", f"two runs under torch.manual_seed(0) differ in {len(differ)} tensors "
                            f"(first: {differ[0]})",
                            "draw all randomness from torch's global generator (or a torch.Generator seeded "
                            "from it), not from Python's random, numpy or the clock")

    def edits_only_editable(self) -> None:
        run = self.run()
        # layer_groups: the single tensors a suite offers to one-tensor edits (SLUG's candidates; on
        # diffusion they are text-encoder tensors, while editable is the UNet the iterative methods train).
        outside = sorted(set(run.changed) - set(run.task.editable) - set(run.task.layer_groups))
        if outside:
            raise self.fail("edits only editable tensors", f"it changed {len(outside)} tensors outside "
                            f"task.editable and task.layer_groups (first: {outside[0]})",
                            "change only task.editable_parameters(task.model) (or one task.layer_groups tensor)")

    def weights_finite(self) -> None:
        run = self.run()
        if run.after.keys() != run.base.keys():
            raise self.fail("weights finite", "the model's state dict gained or lost entries",
                            "edit tensors in place; never add or remove parameters or buffers")
        for key, value in run.after.items():
            base = run.base[key]
            if value.shape != base.shape or value.dtype != base.dtype:
                raise self.fail("weights finite", f"{key} changed from {tuple(base.shape)} {base.dtype} to "
                                f"{tuple(value.shape)} {value.dtype}", "keep every tensor's shape and dtype")
            if value.is_floating_point() and not torch.isfinite(value).all():
                raise self.fail("weights finite", f"{key} holds NaN or inf after unlearning",
                                "lower the learning rate or step size, or clip the update")

    def costs_recorded(self) -> None:
        run = self.run()
        costs = run.task.costs
        if not run.changed:
            return
        if not costs.runtime_s > 0:
            raise self.fail("costs recorded", "it changed weights but timed no cost phase",
                            "wrap the work in task.costs.phase('precompute' | 'update' | 'search')")
        if costs.forward_samples + costs.backward_samples == 0:
            raise self.fail("costs recorded", "it changed weights but counted no sample passes",
                            "compute losses through task.forget_loss / task.retain_loss (they count forward "
                            "samples) and call task.costs.count(backward=...) per backward pass")
        if run.gradients_computed and costs.backward_samples == 0:
            raise self.fail("costs recorded", "it computed gradients of the model's parameters but counted no "
                            "backward samples", "call task.costs.count(backward=len(batch[0])) per backward pass")

    def goal(self) -> None:
        run = self.run()
        task, goal = run.task, run.task.goal
        if self.cls.aims_to_forget:
            if not task.goal_met(run.validation):
                base = task.base_validation()
                raise self.fail("goal", f"on target {task.target!r} validation {goal.forget_metric} = "
                                f"{run.validation[goal.forget_metric]:.4g} (goal <= {goal.forget_threshold:g}), "
                                f"{goal.retain_metric} = {run.validation[goal.retain_metric]:.4g} (base "
                                f"{base[goal.retain_metric]:.4g}, tolerance {goal.retain_tolerance})",
                                "make it forget (the sign of the loss, the learning rate, the number of steps); "
                                "if settings cap its budget, give ones that reach the goal; a method that by "
                                "design does not forget sets aims_to_forget = False")
            return
        if not run.changed:
            base = task.base_validation()
            if run.validation != base:
                raise self.fail("no harm", f"it changed no weight but validation moved from {base} to "
                                f"{run.validation}", "keep state outside the weights out of the task")
            return
        before, after = run.retain_loss
        if not after < before:
            raise self.fail("no harm", f"it does not aim to forget, yet its edit raised the retain loss "
                            f"{before:.5g} -> {after:.5g}",
                            "a method with aims_to_forget = False must at least not hurt what is retained")

    def restores_on_failure(self) -> None:
        self.run()  # a method that cannot run at all fails there, with that message
        task = self.suite.task(_target(self.suite))
        model = task.model
        base = _state(model)
        structure = _structure(model)

        def failing(fn: Callable | None) -> Callable | None:
            def call(*args: Any) -> Any:
                if any(not torch.equal(v, base[k]) for k, v in model.state_dict().items()):
                    raise _InjectedFailure("the task failed part-way (injected by unlearnbench.testing)")
                return fn(*args)
            return None if fn is None else call

        broken = dataclasses.replace(
            task, forget_loss_fn=failing(task.forget_loss_fn), retain_loss_fn=failing(task.retain_loss_fn),
            validate_fn=failing(task.validate_fn), validate_forget_fn=failing(task.validate_forget_fn),
            random_label_loss_fn=failing(task.random_label_loss_fn))
        # The injected failure, or whatever the method made of it, ends the run; the weights must come back.
        with contextlib.suppress(Exception), restored_weights(model):
            torch.manual_seed(0)
            self.cls(self.config).unlearn(broken)
            raise _InjectedFailure("the run failed after unlearn() returned")  # it never called the task
        changed = [k for k, v in model.state_dict().items() if k not in base or not torch.equal(v, base[k])]
        if changed or model.state_dict().keys() != base.keys():
            raise self.fail("restores on failure", f"after a run that failed part-way, {len(changed)} tensors differ "
                            f"from the base model (first: {changed[0] if changed else 'a missing entry'})",
                            "edit the tensors of task.model in place; never replace modules or parameters")
        now = _structure(model)
        if now != structure:
            what = next(k for k in structure if structure[k] != now[k])
            raise self.fail("restores on failure", f"after a run that failed part-way the model's {what} differ "
                            "from the base model's", "leave modules, hooks, requires_grad and train/eval mode "
                            "as you found them (restore them in a try/finally)")


def _structure(model: nn.Module) -> dict[str, Any]:
    """What restoring the weights does not restore: modules, parameter names and flags, hooks, mode."""
    modules = list(model.named_modules())
    return {
        "modules": [(name, type(m).__name__) for name, m in modules],
        "parameters and their requires_grad": [(n, p.requires_grad) for n, p in model.named_parameters()],
        "train/eval modes": [m.training for _, m in modules],
        "hooks": [len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for _, m in modules],
    }


# ---- attacks (unlearnbench/attacks/) --------------------------------------------------------------------

class AttackContractError(AssertionError):
    """An attack broke a rule of the contract; the message names the attack, the rule and the fix."""


def check_attack(cls: type, settings: dict[str, str] | None = None, suites: dict[str, Suite] | None = None,
                 kinds: tuple[str, ...] | None = None) -> None:
    """Run every attack contract check on ``cls``; raise AttackContractError at the first broken rule.

    ``settings``: its config fields as text (``--attack-set``), to keep the checks fast; ``kinds``: the task
    kinds to check (default: all it declares); ``suites``: the suite per kind instead of the micro suites."""
    for check in attack_checks(cls, settings, suites, kinds):
        check()


def attack_checks(cls: type, settings: dict[str, str] | None = None, suites: dict[str, Suite] | None = None,
                  kinds: tuple[str, ...] | None = None) -> Iterator[Check]:
    """The attack contract as ``(name, run)`` checks: registered with a docstring and a frozen ``Config`` whose
    settings survive the command line; on a micro suite of each kind, attacking a model whose first
    ``layer_groups`` tensor a method changed: it records every metric it declares, two runs under one seed
    give the same numbers, it counts its cost, and it leaves the model exactly as it found it."""
    settings = dict(settings or {})
    yield Check("registration", lambda: _check_attack_registration(cls, settings))
    for kind in sorted(kinds or getattr(cls, "kinds", None) or ()):
        context = _AttackKindContext(cls, settings, kind, (suites or {}).get(kind))
        yield Check(f"{kind}:records_its_metrics", context.records_its_metrics)
        yield Check(f"{kind}:deterministic", context.deterministic)
        yield Check(f"{kind}:costs_counted", context.costs_counted)
        yield Check(f"{kind}:leaves_model_as_found", context.leaves_model_as_found)


def _attack_fail(cls: type, rule: str, problem: str, fix: str) -> AttackContractError:
    name = getattr(cls, "name", "") or cls.__name__
    return AttackContractError(f"attack {name!r} ({cls.__module__}.{cls.__qualname__}) breaks rule '{rule}': "
                               f"{problem}. Fix: {fix}")


def _check_attack_registration(cls: type, settings: dict[str, str]) -> None:
    from unlearnbench.attacks.base import ATTACKS, Attack

    rule = "registration"
    if not (isinstance(cls, type) and issubclass(cls, Attack)):
        raise _attack_fail(cls, rule, "it is not a subclass of unlearnbench.attacks.base.Attack",
                           "derive it from Attack and implement labels() and attack(context)")
    if not cls.name or cls.name not in ATTACKS or ATTACKS.get(cls.name) is not cls:
        raise _attack_fail(cls, rule, f"ATTACKS has no entry {cls.name!r} for this class",
                           "decorate it with @register_attack('your-name')")
    config = apply_overrides(cls.Config(), settings, f"attack {cls.name!r}")
    text = {f.name: as_text(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if apply_overrides(config, text, f"attack {cls.name!r}") != config:
        raise _attack_fail(cls, "config round trip", "its settings do not survive --attack-set's text form",
                           "use settings of type bool, int, float, str, a tuple of one of these, or None")


_ATTACK_RUNS: dict[tuple, tuple[dict[str, float], dict[str, torch.Tensor], dict[str, torch.Tensor], dict, dict]] = {}


class _AttackKindContext:
    """The checks of one attack on one task kind, sharing its runs."""

    def __init__(self, cls: type, settings: dict[str, str], kind: str, suite: Suite | None) -> None:
        self.cls, self.settings, self.kind, self._suite = cls, settings, kind, suite

    def fail(self, rule: str, problem: str, fix: str) -> AttackContractError:
        return _attack_fail(self.cls, f"{self.kind}: {rule}", problem, fix)

    @property
    def suite(self) -> Suite:
        if self._suite is None:
            self._suite = micro_suite(self.kind)
        return self._suite

    def run(self, repeat: int = 0):
        """(values, state before, state after, structure before, after) of the attack on the micro suite's
        first target, the first ``layer_groups`` tensor scaled by 0.5 as a method's edit; once per process."""
        from unlearnbench.attacks.base import SEPARATOR, AttackContext
        from unlearnbench.costs import CostMeter

        attack = self.cls(apply_overrides(self.cls.Config(), self.settings, f"attack {self.cls.name!r}"))
        key = (self.cls, attack.config, self.suite, repeat)
        if key not in _ATTACK_RUNS:
            task = self.suite.task(_target(self.suite))
            model = task.model
            edited = sorted(task.layer_groups)[0]
            with restored_weights(model) as base:
                with torch.no_grad():
                    dict(model.named_parameters())[edited].mul_(0.5)
                before, structure = _state(model), _structure(model)
                attack.check(self.suite)
                context = AttackContext(self.suite, dataclasses.replace(task, costs=CostMeter()), (edited,), 0,
                                        base_state=base)
                context.costs = context.task.costs
                torch.manual_seed(0)
                values = {f"{metric}{SEPARATOR}{label}": value for label, metrics in attack.attack(context).items()
                          for metric, value in metrics.items()}
                values[f"runtime_s{SEPARATOR}{attack.name}"] = context.costs.runtime_s
                _ATTACK_RUNS[key] = (values, before, _state(model), structure, _structure(model))
        return _ATTACK_RUNS[key], attack

    def records_its_metrics(self) -> None:
        (values, *_), attack = self.run()
        declared = {m.name for m in attack.metrics(self.suite)}
        missing = sorted(declared - set(values))
        if missing:
            raise self.fail("records its metrics", f"it declares {len(missing)} metrics it did not return (first: "
                            f"{missing[0]})", "return every label of labels() with the metrics metrics() names")

    def deterministic(self) -> None:
        (first, *_), _ = self.run()
        (again, *_), _ = self.run(repeat=1)
        differ = [k for k in first if not (first[k] == again.get(k) or (first[k] != first[k] and again[k] != again[k]))
                  and not k.startswith("runtime_s")]
        if differ:
            raise self.fail("deterministic", f"two runs under seed 0 differ in {len(differ)} values (first: "
                            f"{differ[0]}: {first[differ[0]]} vs {again.get(differ[0])})",
                            "draw all randomness from torch's global generator or one seeded from context.seed")

    def costs_counted(self) -> None:
        (values, *_), attack = self.run()
        if not values.get(f"runtime_s|{attack.name}", 0) > 0:
            raise self.fail("costs counted", "it timed no work",
                            "wrap its work (not its evaluations) in context.costs.phase('update' | 'search')")

    def leaves_model_as_found(self) -> None:
        (_, before, after, structure, now), _ = self.run()
        changed = [k for k in before if not torch.equal(before[k], after[k])]
        if changed:
            raise self.fail("leaves the model as found", f"{len(changed)} tensors differ after it (first: "
                            f"{changed[0]})", "edit the model only inside context.scratch()")
        if structure != now:
            what = next(k for k in structure if structure[k] != now[k])
            raise self.fail("leaves the model as found", f"the model's {what} differ after it",
                            "remove hooks and restore requires_grad and train/eval mode in a try/finally")
