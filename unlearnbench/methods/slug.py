"""SLUG — Single Layer Unlearning Gradient (Cai et al., ICML 2025, arXiv 2407.11867).

1. One pass over the forget set and one over the retain set give mean gradients g_f, g_r.
2. Per candidate tensor W: importance = ||g_f|| / ||W||, alignment = |cos(g_f, g_r)|.
3. The Pareto front of (high importance, low alignment) per tower gives the candidate layers.
4. For each front layer, W = W0 + lambda * g_f (ascent on the forget loss), always from W0, with
   lambda found by a binary search of S evaluations on the forget *validation* split: double
   while the target is not forgotten, then bisect towards the smallest step that forgets it.
   Each trial tells the suite which tensor changed, so it reruns only what that tensor can change
   (a ``visual.proj`` trial is one matmul); retention is scored at the smallest step that forgets,
   and decides whether it meets the goal.
5. The chosen layer is the one with the best retain score among those whose search met the goal.
The result is one changed tensor: the unlearning patch. Its records carry ``floor_s``, the measured
cost of SLUG's floor (its two gradient passes and one validation), beside ``runtime_s``;
``procedure=reference`` scores every trial with a full validation instead, as the reference code
does (for timing both; the choice is the same).

Text-to-image models (task kind ``diffusion``) follow the reference's Stable Diffusion procedure
(docs/PROTOCOLS.md, unlearncanvas): the gradients are those of CLIP's losses through the text
encoder and its CLIP image tower (``task.extras['clip_losses']``), the layer is the deepest text
layer on the front, and its step is searched by the reference's bracket: start at 0.4 ||W|| / ||g||,
bound 10x that, halve the bracket towards "forgotten with IRA kept", stop at the first trial that
meets the goal. Each trial is judged as the runner judges the result (``trial_check="judge"``: the
goal on the suite's validation images), or on the reference's few images per trial
(``"reference-budget"``: ``task.extras['quick_scores']``, 3 + 3 images). ``slug-qkv`` updates the
layer's whole attention (q, k, v) or MLP (fc1, fc2) group with one shared step, as the reference's
script does; ``slug-noise`` keeps the diffusion noise loss and the harness's search over every front
layer.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import pandas as pd
import torch

from unlearnbench.errors import UnlearnBenchError
from unlearnbench.methods.base import Method, Outcome, register_method
from unlearnbench.methods.common import PROCEDURES, bisect_search, mean_gradients, pareto_front
from unlearnbench.progress import bar as progress
from unlearnbench.task import Goal, UnlearningTask, iterate

log = logging.getLogger(__name__)

TRIAL_CHECKS = ("judge", "reference-budget")  # what scores a trial of SLUG's text-to-image step search


@dataclass(frozen=True)
class SlugConfig:
    search_steps: int = 10  # S: evaluations of the binary search per layer (paper: 10)
    initial_scale: float = 0.1  # lambda0 = initial_scale * ||W|| / ||g_f|| (paper: 0.1)
    layer: str | None = None  # force this tensor instead of searching the Pareto front
    max_front_layers: int | None = None  # search only this many front layers (by importance)
    gradient_batches: int | None = None  # cap the batches of each gradient pass (None: all)
    # Which steps that forget are candidates, their retention scored: "smallest", the smallest per
    # layer (the binary search's answer; retention falls as the step grows: one validation per layer),
    # or "forgetting", each of them (the best retention among all steps that forget).
    retain_scoring: str = "smallest"
    # How trials are scored: "cached" reruns only what the edited layer can change and scores
    # retention only for candidates; "reference" runs a full validation for every trial, reusing
    # nothing, as the reference code does (same candidates, so the same choice; for timing it).
    procedure: str = "cached"
    # Text-to-image models only: what judges each trial of the reference's step search. "judge": the
    # runner's own goal on the suite's validation images (the target's images first; the rest only for
    # a step that forgets), so the search accepts exactly the steps the goal accepts. "reference-budget":
    # the reference script's few images per trial (its eval_uncanvas.py: 3 of the target, 3 others),
    # cheaper, but it can accept a step the goal then rejects (docs/PROTOCOLS.md, unlearncanvas).
    trial_check: str = "judge"

    def __post_init__(self) -> None:
        if self.retain_scoring not in ("forgetting", "smallest"):
            raise UnlearnBenchError(f"slug.retain_scoring={self.retain_scoring!r}; expected 'forgetting' or 'smallest'")
        if self.procedure not in PROCEDURES:
            raise UnlearnBenchError(f"slug.procedure={self.procedure!r}; expected one of {', '.join(PROCEDURES)}")
        if self.search_steps < 1:
            raise UnlearnBenchError(f"slug.search_steps={self.search_steps}; it must be at least 1")
        if self.trial_check not in TRIAL_CHECKS:
            raise UnlearnBenchError(f"slug.trial_check={self.trial_check!r}; expected one of {', '.join(TRIAL_CHECKS)}")


@register_method("slug")
class Slug(Method):
    """Single Layer Unlearning Gradient: one gradient pass, Pareto-front layer, one-tensor patch."""

    Config = SlugConfig
    kinds = frozenset({"clip", "diffusion", "vlm"})
    # Text-to-image models: the reference's procedure (CLIP losses, deepest front layer, its search).
    reference_diffusion = True
    group_update = False  # slug-qkv: the layer's attention or MLP group moves with one shared step

    def _check_layer(self, task: UnlearningTask) -> None:
        """A forced ``layer`` must be one of the task's candidate tensors (known before any gradient)."""
        layer = self.config.layer
        if layer is not None and layer not in task.layer_groups:
            candidates = list(task.layer_groups)
            shown = ", ".join(candidates[:8]) + (f", ... ({len(candidates)} in all)" if len(candidates) > 8 else "")
            raise UnlearnBenchError(f"{self.name}.layer={layer!r} is not a candidate tensor of this {task.kind} model; "
                                    f"give one of: {shown} (or drop --method-set {self.name}.layer to search)")

    def check(self, task: UnlearningTask) -> None:
        self._check_layer(task)
        if task.kind == "diffusion" and self.reference_diffusion and self.config.procedure != "cached":
            raise UnlearnBenchError(f"{self.name}.procedure={self.config.procedure!r} applies to the harness's "
                                    "step search; on a text-to-image model SLUG runs the reference's own search "
                                    "(slug-noise runs the harness's)")
        if task.kind == "diffusion" and self.reference_diffusion and not task.extras.get("clip_losses"):
            raise UnlearnBenchError(f"{self.name} on a text-to-image model needs CLIP's image tower for its losses "
                                    "(real unlearncanvas: --set clip_model=PATH, the CLIP folder of SD's text "
                                    "encoder); slug-noise runs without it")

    def unlearn(self, task: UnlearningTask) -> Outcome:
        self.check(task)  # before the gradient pass, also where the caller did not check
        if task.kind == "diffusion" and self.reference_diffusion:
            return self._unlearn_diffusion(task)
        return self._unlearn(task)

    def gradients(self, task: UnlearningTask) -> tuple[dict[str, torch.Tensor], pd.DataFrame]:
        """Steps 1-3: mean gradients of the task's forget and retain losses over its candidate tensors,
        and their layer statistics with the Pareto front of each tower; returns g_f and the statistics."""
        cfg, model, candidates = self.config, task.model, list(task.layer_groups)
        with task.costs.phase("precompute"):
            g_f = mean_gradients(task, model, iterate(task.forget_batches(), cfg.gradient_batches),
                                 task.forget_loss, candidates)
            g_r = mean_gradients(task, model, iterate(task.retain_batches(), cfg.gradient_batches),
                                 task.retain_loss, candidates)
            return g_f, layer_statistics(model, g_f, g_r, task.layer_groups)

    def _unlearn(self, task: UnlearningTask) -> Outcome:
        cfg = self.config
        model = task.model
        g_f, layers = self.gradients(task)

        front = layers[layers.on_front].sort_values("importance", ascending=False)
        if cfg.layer is not None:
            front = layers[layers.layer == cfg.layer]
        elif cfg.max_front_layers is not None:
            front = front.head(cfg.max_front_layers)

        # Step 4: binary search of the step size for each front layer.
        trials = []
        with task.costs.phase("search"):
            for name in progress(front.layer, desc=f"slug search {task.target}", unit="layer"):
                trials += search_step(task, name, g_f[name], cfg)
        trace = pd.DataFrame(trials)

        # Step 5: best retain score among the trials that met the goal (else the closest to meeting it).
        with task.costs.phase("update"):
            chosen = choose_trial(trace, task.goal)
            weight = dict(model.named_parameters())[chosen["layer"]]
            with torch.no_grad():
                weight.add_(chosen["step"] * g_f[chosen["layer"]].to(weight.dtype))
        layers["chosen"] = layers.layer == chosen["layer"]
        record_floor(task)
        if not chosen["met"]:
            log.warning("slug: no step on any front layer met the goal for %r; applied the step closest to "
                        "meeting it (%s %.4g at step %.4g)", task.target, task.goal.forget_metric,
                        chosen[task.goal.forget_metric], chosen["step"])
        info = {"layer": chosen["layer"], "step": float(chosen["step"]), "goal_met": bool(chosen["met"]),
                "front_size": int(layers.on_front.sum())}
        return Outcome(trace=trace, info=info, tables={"layers": layers})

    def _unlearn_diffusion(self, task: UnlearningTask) -> Outcome:
        cfg = self.config
        model = task.model
        losses = task.extras["clip_losses"]
        candidates = list(task.layer_groups)
        g_f, layers = self.gradients(dataclasses.replace(task, forget_loss_fn=losses["forget_loss"],
                                                         retain_loss_fn=losses["retain_loss"]))
        layer = cfg.layer or deepest_layer(layers[layers.on_front])
        names = layer_group(layer, candidates) if self.group_update else [layer]
        with task.costs.phase("search"):
            trace = pd.DataFrame(reference_search(task, names, g_f, cfg.search_steps, cfg.trial_check))
        with task.costs.phase("update"):
            chosen = choose_reference_trial(trace, task.goal)
            params = dict(model.named_parameters())
            with torch.no_grad():
                for name in names:
                    params[name].add_(chosen["step"] * g_f[name].to(params[name].dtype))
        layers["chosen"] = layers.layer.isin(names)
        record_floor(task)
        info = {"layer": layer, "tensors": len(names), "step": float(chosen["step"]), "goal_met": bool(chosen["met"]),
                "front_size": int(layers.on_front.sum())}
        return Outcome(trace=trace, info=info, tables={"layers": layers})


def record_floor(task: UnlearningTask) -> None:
    """SLUG's floor, measured on this run: its gradient passes (the precompute phase) plus one validation
    (the base model's)."""
    task.costs.floor_s = task.costs.seconds["precompute"] + (task.costs.base_validation_s or 0.0)


def layer_index(name: str) -> int:
    """The block number in a tensor name (``...layers.7.self_attn...`` -> 7); -1 where there is none."""
    parts = name.split(".")
    return next((int(p) for p in reversed(parts) if p.isdigit()), -1)


def deepest_layer(front: pd.DataFrame) -> str:
    """The reference's choice for Stable Diffusion: the front layer in the deepest block (ties: the most
    important)."""
    if front.empty:
        raise UnlearnBenchError("slug: no layer on the Pareto front has a forget gradient")
    ranked = front.assign(block=front.layer.map(layer_index)).sort_values(["block", "importance"],
                                                                          ascending=[False, False])
    return ranked.layer.iloc[0]


def layer_group(name: str, candidates: list[str]) -> list[str]:
    """The tensors the reference moves together with ``name``: q, k and v of an attention layer, fc1
    and fc2 of an MLP, else ``name`` alone (each present among ``candidates``)."""
    for group in (("q_proj", "k_proj", "v_proj"), ("fc1", "fc2")):
        part = next((p for p in group if f".{p}." in name), None)
        if part is not None:
            return [n for n in (name.replace(f".{part}.", f".{other}.") for other in group) if n in candidates]
    return [name]


def reference_search(task: UnlearningTask, names: list[str], grads: dict[str, torch.Tensor],
                     steps: int, trial_check: str = "judge") -> list[dict]:
    """The reference's step search for Stable Diffusion (its ``eval_uncanvas.py``): lambda0 = 0.4 ||W|| / ||g||
    of the first tensor, bracket [0, 10 lambda0]; a step that leaves the target recognisable raises the
    lower end, one that forgets but loses too much IRA lowers the upper end; stop at the first step that
    meets the goal, or after ``steps`` trials. Every trial starts from W0, which is restored at the end.

    ``trial_check="judge"``: each trial is judged as the runner judges the result, ``task.goal`` on the
    suite's validation images against the base model's validation: the target's images first
    (``validate_forget``), and only for a step that forgets them the full validation for IRA, so a step
    that cannot forget costs the target's images alone (IRA NaN in the trace, ``exited_early``).
    ``"reference-budget"``: the reference's few images per trial (the suite's ``quick_scores``: 3 of the
    target, 3 others), IRA kept when within the goal's tolerance of the base's quick IRA either way, as
    the reference's check; each trial exits early once too many target images are recognised for the
    goal's threshold (``target_hits`` of ``target_images`` say what was seen)."""
    base_validation = task.base_validation()  # on W0, before any trial edits the layer
    goal = task.goal
    tolerance = goal.retain_tolerance if goal.retain_tolerance is not None else 10.0
    params = dict(task.model.named_parameters())
    w0 = {n: params[n].detach().clone() for n in names}
    g = {n: grads[n].to(w0[n].dtype) for n in names}
    if trial_check == "judge":
        def check(model: torch.nn.Module) -> tuple[dict, bool, bool]:
            scores = task.validate_forget(model, set(names))
            if not goal.forget_met(scores):
                return {**scores, goal.retain_metric: float("nan")}, False, False
            scores = task.validate(model, set(names))
            return scores, True, goal.met(scores, base_validation)
    else:
        quick = task.extras["quick_scores"]
        base = quick(task.model)  # in full: IRA's reference
        task.costs.count(evaluations=1)
        # The suite's quick scores can stop a trial early only on the accuracy they score the target by.
        early_exit = {"forget_threshold": goal.forget_threshold} if goal.forget_metric == "target_acc" else {}

        def check(model: torch.nn.Module) -> tuple[dict, bool, bool]:
            scores = quick(model, **early_exit)
            task.costs.count(evaluations=1)
            forgot = goal.forget_met(scores)  # NaN (exited early): False
            kept = bool(abs(base[goal.retain_metric] - scores[goal.retain_metric]) <= tolerance)
            return scores, forgot, forgot and kept
    step = 0.4 * w0[names[0]].norm().item() / max(g[names[0]].norm().item(), 1e-12)
    low, high = 0.0, 10 * step
    rows = []
    try:
        for trial in progress(range(steps), desc=f"slug search {task.target}", unit="trial"):
            with torch.no_grad():
                for n in names:
                    params[n].copy_(w0[n] + step * g[n])
            scores, forgot, met = check(task.model)
            rows.append({"layer": names[0], "trial": trial, "step": step, "met": met, "forgot": forgot,
                         "exited_early": bool(pd.isna(scores.get(goal.retain_metric))), **scores})
            if met:
                break
            if forgot:
                high = step
            else:
                low = step
            step = (low + high) / 2
    finally:
        with torch.no_grad():
            for n in names:
                params[n].copy_(w0[n])
    return rows


def layer_statistics(model: torch.nn.Module, g_f: dict[str, torch.Tensor],
                     g_r: dict[str, torch.Tensor], groups: dict[str, str]) -> pd.DataFrame:
    """Importance, alignment and Pareto membership of every candidate tensor, front per tower."""
    params = dict(model.named_parameters())
    rows = []
    for name, tower in groups.items():
        gf, gr = g_f[name].flatten(), g_r[name].flatten()
        importance = (gf.norm() / params[name].detach().float().norm().clamp_min(1e-12)).item()
        alignment = torch.nn.functional.cosine_similarity(gf, gr, dim=0, eps=1e-12).abs().item()
        rows.append({"layer": name, "tower": tower, "importance": importance,
                     "alignment": alignment, "grad_norm": gf.norm().item()})
    stats = pd.DataFrame(rows)
    stats["on_front"] = False
    for idx in stats.groupby("tower").groups.values():
        sub = stats.loc[idx]
        mask = pareto_front(torch.tensor(sub.importance.values), torch.tensor(sub.alignment.values))
        stats.loc[idx, "on_front"] = mask.numpy()
    # A layer with no forget gradient cannot be moved by SLUG's update.
    stats.loc[stats.grad_norm == 0, "on_front"] = False
    return stats


def search_step(task: UnlearningTask, name: str, grad: torch.Tensor, cfg: SlugConfig) -> list[dict]:
    """Binary search of lambda for one tensor (``common.bisect_search``); returns every trial and
    restores W0.

    The bracket follows forgetting (a step that forgets but loses too much will not be rescued by
    a larger one, only by a smaller one). Retention is scored once, at the smallest step that
    forgets (``retain_scoring="smallest"``), since retention falls as the step grows, or for every
    step that forgets (``"forgetting"``).
    """
    task.base_validation()  # computed on W0, before the first trial edits the weight
    weight = dict(task.model.named_parameters())[name]
    w0 = weight.detach().clone()
    grad = grad.to(w0.dtype)

    def apply(step: float) -> dict:
        with torch.no_grad():
            weight.copy_(w0 + step * grad)
        return {"layer": name}

    try:
        initial = cfg.initial_scale * w0.norm().item() / max(grad.norm().item(), 1e-12)
        return bisect_search(task, apply, initial, cfg.search_steps, {name}, cfg.retain_scoring, cfg.procedure)
    finally:
        with torch.no_grad():
            weight.copy_(w0)


def choose_trial(trace: pd.DataFrame, goal: Goal) -> pd.Series:
    """The met trial with the best retain score; if none met, the one closest to meeting the goal with the
    least damage (``Goal.shortfall``, the smaller step on ties): the smallest step that forgets, where one
    does.

    Ties on retention among met trials go to the first layer searched (the most important) and, within
    it, to the largest step: equal retention on validation, more margin for forgetting on unseen data.
    """
    met = trace[trace.met]
    if len(met):
        best = met[met[goal.retain_metric] == met[goal.retain_metric].max()]
        if "layer" in best:
            best = best[best.layer == best.layer.iloc[0]]
        return best.loc[best.step.idxmax()]
    ranks = [goal.shortfall(row, row["step"]) for _, row in trace.iterrows()]
    return trace.iloc[min(range(len(ranks)), key=ranks.__getitem__)]


def choose_reference_trial(trace: pd.DataFrame, goal: Goal) -> pd.Series:
    """``choose_trial`` on the reference search's trace, where a trial that exited early has no forget
    score (NaN) and did not forget. If some trial forgot, the choice is ``choose_trial``'s, as without
    early exit (a forgetting trial ranks before every other). If none did, the one closest to forgetting:
    the fewest target images recognised, and on equal counts the largest step. An early-exited trial's
    count is only a lower bound (it stopped at the first image too many), and a larger step forgets at
    least as much, so here the larger step is the closer one, not a tie (``Goal.shortfall`` breaks true
    ties to the smaller step); the choice is then the same as without early exit."""
    if trace.forgot.any() or "target_hits" not in trace:
        return choose_trial(trace, goal)
    return trace.sort_values(["target_hits", "step"], ascending=[True, False]).iloc[0]


@register_method("slug-noise")
class SlugNoise(Slug):
    """SLUG on a text-to-image model with the diffusion noise loss and the harness's front search."""

    kinds = frozenset({"diffusion"})
    reference_diffusion = False


@register_method("slug-qkv")
class SlugQKV(Slug):
    """SLUG's Stable Diffusion procedure moving the layer's q/k/v (or fc1/fc2) together by one step."""

    kinds = frozenset({"diffusion"})
    group_update = True


@register_method("slug-lm")
class SlugLM(Slug):
    """SLUG with gradients of the VLM's own answers: the name's likelihood, not CLIP's cosine."""

    kinds = frozenset({"vlm"})

    def unlearn(self, task: UnlearningTask) -> Outcome:
        # The suite's answer losses replace the CLIP-tower ones; selection, search and the patch
        # are SLUG's. The task's cost meter is shared, so the work is counted as usual.
        self.check(task)  # before the base validation below
        losses = task.extras.get("answer_losses")
        if losses is None:
            raise UnlearnBenchError(f"slug-lm needs losses on the model's answers (task.extras['answer_losses']); "
                                    f"suite {task.suite!r} gives none")
        with task.costs.phase("search"):  # part of the search's cost, as in the other methods
            task.base_validation()  # scored once, on the untouched model; the copy below carries it
        answers = dataclasses.replace(task, forget_batches=losses["forget_batches"],
                                      retain_batches=losses["retain_batches"], forget_loss_fn=losses["forget_loss"],
                                      retain_loss_fn=losses["retain_loss"])
        return super().unlearn(answers)
