"""ESD — Erased Stable Diffusion (Gandikota et al., "Erasing Concepts from Diffusion Models", ICCV 2023).

Fine-tune the UNet so that, for the concept prompt c, it predicts the negatively guided noise of
the frozen original model:

    eps_theta(x_t, c, t)  ->  eps*(x_t, t) - eta * (eps*(x_t, c, t) - eps*(x_t, t))      (ESD Eq. 3)

where x_t is not a noised training image but a partial sample of the model being trained, drawn
with the concept prompt (guidance 3) by DDIM with the spacing and clipping the model samples with,
stopped at a random step of its schedule. The training timestep is drawn inside the DDIM bin the
partial sample stopped in.

The schedule's length is the task's (``task.extras['partial_sampling_steps']``) unless ``ddim_steps``
is given: the reference's 50 for Stable Diffusion, whose own generation runs about as many DDIM steps,
and on the embedded unlearncanvas model its own 5 sampling steps. x_t is meant to be a partial sample
of the model's own sampling process, and the embedded model samples in 5 steps; a 50-step partial
sample would cost it 24.5 guided UNet calls per iteration on average, five times its whole generation
(docs/PROTOCOLS.md, unlearncanvas, ESD). ``--method-set esd.ddim_steps=50`` restores the 50 steps. ``esd-x``
trains the cross-attention layers only (``attn2``; UnlearnCanvas's setting), ``esd-u`` everything
in the UNet but cross-attention, the time embedding and the output head (the reference's
"noxattn"). Defaults are the reference ones: 1000 iterations, Adam lr 1e-5 (unless the suite's
reference_lr says otherwise for its model), eta 1, batch 1. All randomness comes from the run's seed.

Like every iterative method here, ESD stops at the first check (every ``check_every`` iterations)
whose validation meets the task's goal, so runtimes compare the time to the same goal;
``stop_on_goal=false`` runs the reference's full 1000 iterations.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler

from unlearnbench.errors import UnlearnBenchError
from unlearnbench.passes import real_scale
from unlearnbench.methods.base import Method, Outcome, register_method
from unlearnbench.methods.optim import EpochConfig, run_epochs
from unlearnbench.task import UnlearningTask


@dataclass(frozen=True)
class ESDConfig:
    iterations: int = 1000  # reference train_esd.py --iterations
    check_every: int = 100  # iterations between validations (the stopping rule's "epoch")
    stop_on_goal: bool = True  # stop at the first check that meets the task's goal
    lr: float | None = None  # None: the suite's reference lr (SD v1.5: 1e-5, the reference's)
    negative_guidance: float = 1.0  # eta
    start_guidance: float = 3.0  # guidance of the partial sampling that makes x_t
    # Steps of the partial sampling's schedule (x_t stops at a random step of it); None: the task's
    # (unlearncanvas: 50, the reference's, on real Stable Diffusion; the model's own 5 on embedded)
    ddim_steps: int | None = None
    parameters: str = "xattn"  # "xattn" (esd-x: attn2 only) or "noxattn" (esd-u: all but attn2)

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.check_every < 1:
            raise UnlearnBenchError(f"esd: iterations={self.iterations}, check_every={self.check_every}; "
                                    "both must be at least 1")
        if self.ddim_steps is not None and self.ddim_steps < 1:
            raise UnlearnBenchError(f"esd: ddim_steps={self.ddim_steps}; it must be at least 1 (or unset for "
                                    "the task's schedule)")


# What the reference's "noxattn" leaves out besides cross-attention, in diffusers' names: its
# ``time_embed`` (diffusers ``time_embedding``) and the output head ``out.`` (``conv_norm_out``,
# ``conv_out``). The per-block time projections and norms are trained, as there.
ESD_U_EXCLUDED = ("time_embedding.", "conv_norm_out.", "conv_out.")

# The reference's partial-sampling schedule for Stable Diffusion (train-esd.py, ddim_steps), used where
# neither the settings nor the task name one.
REFERENCE_DDIM_STEPS = 50


def partial_sampling_steps(config: ESDConfig, task: UnlearningTask) -> int:
    """The schedule x_t is sampled on: ``ddim_steps`` when set, else the task's, else the reference's 50."""
    if config.ddim_steps is not None:
        return config.ddim_steps
    return int(task.extras.get("partial_sampling_steps") or REFERENCE_DDIM_STEPS)


def esd_parameter_names(unet_names: list[str], parameters: str) -> list[str]:
    """The UNet tensors ESD trains (names with or without the ``unet.`` prefix): cross-attention (attn2),
    or everything but cross-attention, the time embedding and the output head."""
    if parameters == "xattn":
        return [n for n in unet_names if ".attn2." in n]
    if parameters == "noxattn":
        return [n for n in unet_names
                if ".attn2." not in n and not n.removeprefix("unet.").startswith(ESD_U_EXCLUDED)]
    raise UnlearnBenchError(f"esd.parameters={parameters!r}; expected 'xattn' (esd-x) or 'noxattn' (esd-u)")


@register_method("esd")
class ESD(Method):
    """Erased Stable Diffusion: UNet fine-tuned towards negatively guided noise (esd-x by default)."""

    Config = ESDConfig
    kinds = frozenset({"diffusion"})

    def unlearn(self, task: UnlearningTask) -> Outcome:
        cfg = self.config
        model = task.model
        prompts = task.extras.get("concept_prompts")
        if not prompts:
            raise UnlearnBenchError(f"esd needs the concept's prompts (task.extras['concept_prompts']); "
                                    f"suite {task.suite!r} gives none")
        lr = task.learning_rate(cfg.lr, self.name)
        unet_params = {f"unet.{n}": p for n, p in model.unet.named_parameters()}
        names = [n for n in esd_parameter_names(list(unet_params), cfg.parameters) if n in set(task.editable)]
        if not names:
            raise UnlearnBenchError(f"esd ({cfg.parameters}): no trainable UNet tensors among the task's editable ones")
        generator = torch.Generator().manual_seed(int(torch.randint(2**62, ())))
        ddim_steps = partial_sampling_steps(cfg, task)
        # Pass counts: on the task's shortened schedule (embedded), a sampling step stands for
        # REFERENCE_DDIM_STEPS / ddim_steps of the reference's; an explicit ddim_steps counts as it ran.
        steps_at_real_scale = {"unet": REFERENCE_DDIM_STEPS / ddim_steps} if cfg.ddim_steps is None else {}

        with task.costs.phase("precompute"):
            frozen = copy.deepcopy(model.unet).eval().requires_grad_(False)
            empty = model.encode_prompts([""]).detach()
            contexts = {p: model.encode_prompts([p]).detach() for p in prompts}
            # DDIM with the spacing and clipping the model generates with (Stable Diffusion: its scheduler's
            # spacing, no clipping, as the reference; the embedded pixel-space model: trailing, clipped).
            own = model.sampler_config
            sampler = DDIMScheduler.from_config(model.noise_scheduler.config, timestep_spacing=own.timestep_spacing,
                                                clip_sample=own.clip_sample)
            sampler.set_timesteps(ddim_steps, device=next(model.unet.parameters()).device)
        optimizer = torch.optim.Adam([unet_params[n] for n in names], lr=lr)
        train_steps = model.noise_scheduler.config.num_train_timesteps
        rows = []

        def iterations(check: int, bar) -> dict[str, float]:
            model.train()
            first = (check - 1) * cfg.check_every
            losses = []
            for it in range(first, min(first + cfg.check_every, cfg.iterations)):
                prompt = prompts[int(torch.randint(len(prompts), (1,), generator=generator))]
                stop = int(torch.randint(ddim_steps, (1,), generator=generator))
                # 1. x_t: a partial sample of the current model with the concept prompt, and the training
                # timestep drawn inside the DDIM bin it stopped in, as the reference draws t_enc_ddpm.
                with torch.no_grad():
                    with real_scale(steps_at_real_scale):
                        x_t = partial_sample(model, sampler, contexts[prompt], empty, stop, cfg.start_guidance,
                                             generator)
                    t = bin_timestep(stop, ddim_steps, train_steps, generator).to(x_t.device)
                    # 2. The frozen model's negatively guided target (ESD Eq. 3): its unconditional and
                    # concept predictions in one UNet call of 2 inputs, as partial_sample guides.
                    eps_uncond, eps_concept = frozen(torch.cat([x_t, x_t]), t, encoder_hidden_states=torch.cat(
                        [empty, contexts[prompt]])).sample.chunk(2)
                    target = eps_uncond - cfg.negative_guidance * (eps_concept - eps_uncond)
                # 3. Regress the trained model's conditional prediction onto it.
                loss = F.mse_loss(model.unet(x_t, t, encoder_hidden_states=contexts[prompt]).sample, target)
                if not torch.isfinite(loss):
                    raise UnlearnBenchError(f"{self.name}: loss {loss.item()} at iteration {it}; "
                                            f"lower {self.name}.lr (now {lr})")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                # UNet passes: 2 per guided sampling step, the frozen model's 2, the trained model's 1.
                task.costs.count(forward=2 * stop + 3, backward=1)
                rows.append({"iteration": it, "loss": loss.item(), "stop_step": stop, "ddim_steps": ddim_steps,
                             "timestep": int(t), "train_timesteps": train_steps})
                losses.append(loss.item())
                bar.update(1)
            return {"iterations": first + len(losses), "loss": sum(losses) / len(losses)}

        checks = EpochConfig(epochs=math.ceil(cfg.iterations / cfg.check_every), stop_on_goal=cfg.stop_on_goal)
        outcome = run_epochs(task, self.name, checks, iterations, cfg.iterations, "it",
                             {n: unet_params[n] for n in names})
        outcome.tables["iterations"] = pd.DataFrame(rows)
        outcome.info.update(lr=lr, tensors=len(names), iterations=len(rows), ddim_steps=ddim_steps)
        return outcome


def bin_timestep(stop: int, ddim_steps: int, train_steps: int, generator: torch.Generator) -> torch.Tensor:
    """A training timestep drawn uniformly inside the DDIM bin of sampling step ``stop`` (counted from
    the noise side): bin k = ddim_steps - 1 - stop covers [round(k T / S), round((k + 1) T / S))."""
    k = ddim_steps - 1 - stop
    low, high = round(k * train_steps / ddim_steps), round((k + 1) * train_steps / ddim_steps)
    return torch.randint(low, max(high, low + 1), (1,), generator=generator)


def partial_sample(model, sampler: DDIMScheduler, context: torch.Tensor, empty: torch.Tensor, stop: int,
                   guidance: float, generator: torch.Generator) -> torch.Tensor:
    """Run the first ``stop`` DDIM steps from noise with classifier-free guidance."""
    cfg = model.unet.config
    x = torch.randn((1, cfg.in_channels, cfg.sample_size, cfg.sample_size), generator=generator)
    x = x.to(next(model.unet.parameters()).device) * sampler.init_noise_sigma
    both = torch.cat([empty, context])
    for t in sampler.timesteps[:stop]:
        eps_uncond, eps_cond = model.unet(torch.cat([x, x]), t, encoder_hidden_states=both).sample.chunk(2)
        x = sampler.step(eps_uncond + guidance * (eps_cond - eps_uncond), t, x).prev_sample
    return x


@register_method("esd-x")
class ESDX(ESD):
    """ESD on cross-attention only (UnlearnCanvas's ESD setting)."""


@dataclass(frozen=True)
class ESDUConfig(ESDConfig):
    parameters: str = "noxattn"


@register_method("esd-u")
class ESDU(ESD):
    """ESD on every UNet layer except cross-attention (unconditional erasure)."""

    Config = ESDUConfig
