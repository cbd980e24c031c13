"""One wrapper for every text-to-image diffusion model the ``unlearncanvas`` suite unlearns.

The embedded MiniCanvas model (pixel space, tiny CLIP text encoder) and Stable Diffusion
(latent space) share this interface, so methods never ask which one they hold. Only the UNet and
the text encoder are submodules: the state dict names exactly the tensors an unlearning method may
change (``unet.*``, ``text_encoder.*``), which is what a patch of changed tensors refers to. The
tokenizer, the frozen VAE and the schedulers are plain attributes.

Sampling is deterministic per (prompt, seed): each image draws its starting noise from its own
CPU ``torch.Generator`` seeded from the pair (``noise_seed``), so batching and device do not change
which noise an image gets, and, as in the official evaluation (which seeds once and then draws fresh
noise for every prompt), two prompts at one seed do not share their noise.
"""

from __future__ import annotations

from collections.abc import Callable
import hashlib
import inspect
from dataclasses import dataclass

import diffusers
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, SchedulerMixin, UNet2DConditionModel
from diffusers.utils.torch_utils import randn_tensor
from torch import nn
from transformers import CLIPTextModel, PreTrainedTokenizerBase

from unlearnbench.errors import UnlearnBenchError
from unlearnbench.passes import count_absent
from unlearnbench.progress import bar as progress


@dataclass(frozen=True)
class SamplerConfig:
    """Which diffusers scheduler generates images, built from the training scheduler's config."""

    scheduler: str = "DDIMScheduler"  # a scheduler class name exported by diffusers
    # Stated, not inherited from the training scheduler's config. "trailing" starts at the last
    # training step (pure noise). There, with the cosine schedule, alpha_bar is 2e-9, so without
    # clipping a 1e-2 error of the noise estimate becomes a 1e2 error of x_0 and the image is lost
    # (style accuracy 0.33 instead of 0.99 on the embedded model). Latent models do not clip.
    timestep_spacing: str = "trailing"
    clip_sample: bool = True  # clip the x_0 estimate to [-1, 1] at every step (pixel space)
    thresholding: bool = False  # dynamic thresholding (DPM-Solver++ needs it in pixel space)
    steps: int = 5  # default number of denoising steps
    guidance: float = 3.0  # default classifier-free guidance scale


class TextToImage(nn.Module):
    """A text-conditioned epsilon-prediction diffusion model: UNet + text encoder (+ optional VAE).

    Example::

        model = load_or_train(PRESETS["tiny"]).model
        images = model.sample(["A cat image in Monet style."], seeds=[188])
        loss = model.noise_loss(images, ["A cat image in Monet style."])
    """

    def __init__(self, unet: UNet2DConditionModel, text_encoder: CLIPTextModel,
                 tokenizer: PreTrainedTokenizerBase, noise_scheduler: SchedulerMixin,
                 sampler_config: SamplerConfig, vae: AutoencoderKL | None = None,
                 image_size: int | None = None) -> None:
        super().__init__()
        if noise_scheduler.config.prediction_type != "epsilon":
            raise UnlearnBenchError(f"TextToImage needs an epsilon-prediction model; the scheduler says "
                                    f"prediction_type={noise_scheduler.config.prediction_type!r}")
        self.unet = unet
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.noise_scheduler = noise_scheduler
        self.sampler_config = sampler_config
        # Kept out of the module tree (no parameters, no state-dict entries): the VAE is frozen and
        # never part of what unlearning changes. _apply below still moves it with the model.
        self.__dict__["vae"] = vae.eval().requires_grad_(False) if vae is not None else None
        self.vae_scale = 2 ** (len(vae.config.block_out_channels) - 1) if vae is not None else 1
        self.image_size = image_size or unet.config.sample_size * self.vae_scale
        self.make_sampler()  # fail now, not at the first sample(), on a bad scheduler name

    def _apply(self, fn, recurse=True):
        if self.vae is not None:
            self.vae._apply(fn)
        return super()._apply(fn, recurse)

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    def make_sampler(self) -> SchedulerMixin:
        """A fresh sampling scheduler (they keep per-run state, so each sampling run gets its own)."""
        cfg = self.sampler_config
        cls = getattr(diffusers, cfg.scheduler, None)
        if not (inspect.isclass(cls) and issubclass(cls, SchedulerMixin)):
            raise UnlearnBenchError(f"sampler_config.scheduler={cfg.scheduler!r} is not a diffusers scheduler; "
                                    f"use a class name such as 'DDIMScheduler' or 'DPMSolverMultistepScheduler'")
        return cls.from_config(self.noise_scheduler.config, timestep_spacing=cfg.timestep_spacing,
                               clip_sample=cfg.clip_sample, thresholding=cfg.thresholding)

    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        """Text-encoder hidden states (N, context_length, hidden): the UNet's cross-attention context.

        Prompts are padded to the tokenizer's ``model_max_length`` and every position is kept,
        padding included, as Stable Diffusion does.
        """
        return self.text_encoder(self.token_ids(prompts))[0].to(self.dtype)

    def pooled_prompts(self, prompts: list[str]) -> torch.Tensor:
        """The text encoder's pooled output (CLIP's end-of-text token), what CLIP's text projection reads."""
        return self.text_encoder(self.token_ids(prompts)).pooler_output

    def token_ids(self, prompts: list[str]) -> torch.Tensor:
        ids = self.tokenizer(list(prompts), padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        return ids.to(self.device)

    def predict_noise(self, x_t: torch.Tensor, t: torch.Tensor | int, context: torch.Tensor) -> torch.Tensor:
        """The UNet's epsilon estimate for noisy inputs ``x_t`` (latents if there is a VAE) at step ``t``."""
        return self.unet(x_t, t, encoder_hidden_states=context).sample

    def to_model_space(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images in [-1, 1] -> what the UNet denoises: the images themselves, or scaled VAE latents."""
        images = images.to(self.device, self.dtype)
        if self.vae is None:
            return images
        with torch.no_grad():
            latents = self.vae.encode(images).latent_dist.sample(generator)
        return latents * self.vae.config.scaling_factor

    def noise_loss(self, images: torch.Tensor, prompts: list[str], generator: torch.Generator | None = None,
                   timesteps: torch.Tensor | int | None = None, guidance: float | None = None) -> torch.Tensor:
        """The denoising loss E ||eps - eps_theta(x_t, t, c)||^2 (mean over all elements).

        ``images`` are (N, 3, H, W) in [-1, 1]; ``timesteps`` an int or (N,) tensor, uniformly random
        when None; ``generator`` (a CPU generator) makes noise and timesteps reproducible. With
        ``guidance`` w the prediction is the guided one, eps(x_t, "") + w (eps(x_t, c) - eps(x_t, "")).
        """
        x0 = self.to_model_space(images, generator)
        n = len(x0)
        if timesteps is None:
            t = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (n,), generator=generator)
        else:
            t = torch.as_tensor(timesteps).expand(n)
        t = t.to(self.device)
        noise = randn_tensor(x0.shape, generator=generator, device=self.device, dtype=x0.dtype)
        x_t = self.noise_scheduler.add_noise(x0, noise, t)
        context = self.encode_prompts(prompts)
        if guidance is None:
            return F.mse_loss(self.predict_noise(x_t, t, context), noise)
        empty = self.encode_prompts([""]).expand(n, -1, -1)
        eps_uncond, eps_cond = self.predict_noise(torch.cat([x_t, x_t]), torch.cat([t, t]),
                                                  torch.cat([empty, context])).chunk(2)
        return F.mse_loss(eps_uncond + guidance * (eps_cond - eps_uncond), noise)

    @torch.no_grad()
    def sample(self, prompts: list[str], seeds: list[int], steps: int | None = None,
               guidance: float | None = None, batch_size: int = 256, decode_batch_size: int = 4,
               encode: Callable[[list[str]], torch.Tensor] | None = None) -> torch.Tensor:
        """Generate one image per (prompt, seed) pair: float (N, 3, H, W) in [-1, 1], on the CPU.

        Classifier-free guidance against the empty prompt; ``steps`` and ``guidance`` default to
        ``sampler_config``. The same (prompt, seed) always starts from the same noise, whatever else is
        in the batch; the UNet's float rounding depends slightly on the batch size on the CPU (up to ~3e-4 on
        the embedded model), so an image made in another batch may differ by a step in a few uint8 pixels.
        ``batch_size`` prompts share one UNet call (of twice that many inputs, for guidance); a VAE decodes
        ``decode_batch_size`` latents at a time (Stable Diffusion's decoder needs about
        0.6 GB of activations per 512-pixel image), and each decoded chunk leaves the device at once.
        ``encode``: how prompts become the UNet's context (default ``encode_prompts``; a prompt attack passes
        its own, unlearnbench/attacks/prompt.py); the empty prompt of guidance is always ``encode_prompts``'.
        """
        if len(prompts) != len(seeds):
            raise UnlearnBenchError(f"sample() needs one seed per prompt; got {len(prompts)} prompts, "
                                    f"{len(seeds)} seeds")
        steps = steps or self.sampler_config.steps
        guidance = self.sampler_config.guidance if guidance is None else guidance
        size = self.image_size // self.vae_scale
        shape_one = (self.unet.config.in_channels, size, size)
        empty = self.encode_prompts([""])
        out = []
        # Only where generating takes a while (delay): a search's few quick images print nothing.
        bar = progress(total=-(-len(prompts) // batch_size) * steps, desc=f"generating {len(prompts)} images",
                       unit="step", delay=2)
        for start in range(0, len(prompts), batch_size):
            chunk, chunk_seeds = list(prompts[start:start + batch_size]), seeds[start:start + batch_size]
            n = len(chunk)
            generators = [torch.Generator("cpu").manual_seed(noise_seed(p, int(s))) for p, s in zip(chunk, chunk_seeds)]
            context = torch.cat([empty.expand(n, -1, -1), (encode or self.encode_prompts)(chunk)])
            sampler = self.make_sampler()
            sampler.set_timesteps(steps, device=self.device)
            step_kwargs = {"generator": generators} if "generator" in inspect.signature(sampler.step).parameters else {}
            # 1. start from per-image Gaussian noise
            x = randn_tensor((n, *shape_one), generator=generators, device=self.device, dtype=self.dtype)
            x = x * sampler.init_noise_sigma
            for t in sampler.timesteps:
                # 2. guided noise estimate: eps_uncond + w (eps_cond - eps_uncond)
                x_in = sampler.scale_model_input(torch.cat([x, x]), t)
                eps_uncond, eps_cond = self.predict_noise(x_in, t, context).chunk(2)
                eps = eps_uncond + guidance * (eps_cond - eps_uncond)
                # 3. one scheduler step towards x_0
                x = sampler.step(eps, t, x, **step_kwargs).prev_sample
                bar.update()
            # 4. back to pixels, a few latents at a time
            if self.vae is not None:
                for latents in x.split(decode_batch_size):
                    pixels = self.vae.decode(latents / self.vae.config.scaling_factor).sample
                    out.append(pixels.float().clamp(-1, 1).cpu())
            else:
                count_absent("vae_decoder", n)  # a latent model would decode each image here
                out.append(x.float().clamp(-1, 1).cpu())
        bar.close()
        return torch.cat(out)


def noise_seed(prompt: str, seed: int) -> int:
    """The starting-noise seed of the image for (``prompt``, ``seed``): fresh for every prompt, the same
    on every machine and in every batch."""
    return int.from_bytes(hashlib.sha256(f"{seed}\0{prompt}".encode()).digest()[:8], "little")
