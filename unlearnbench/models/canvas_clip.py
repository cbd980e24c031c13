"""The CLIP whose text tower is the embedded text-to-image model's text encoder, and real CLIP partners.

SLUG computes its gradients for Stable Diffusion with CLIP's losses: SD v1.5's text encoder is the
text tower of CLIP ViT-L/14, trained contrastively before SD and frozen while SD trained, and the
reference pairs it with that CLIP's image tower and projections. The embedded model is made the same
way (``tiny_diffusion.train``): ``train_clip`` trains its text encoder together with a transformers
``CLIPVisionModelWithProjection`` and a text projection on MiniCanvas's training images and captions,
with a class-aware contrastive loss (images of one (style, object) pair are positives of each other);
the UNet then trains against the frozen text encoder, and the image tower is kept beside the model.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
from transformers.utils.constants import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from unlearnbench.contrastive import contrastive_loss, training_step
from unlearnbench.datasets.synthetic.canvas import CanvasData, prompt
from unlearnbench.schedules import lr_multiplier

STYLE_BAR = 0.80  # held-out zero-shot style accuracy (against every caption of the image's object)


@dataclass(frozen=True)
class CanvasClipConfig:
    width: int = 64
    layers: int = 2
    heads: int = 4
    patch_size: int = 4
    steps: int = 600
    batch_size: int = 128
    lr: float = 2e-3
    warmup_steps: int = 30
    seed: int = 0


class ClipEmbeddings(nn.Module):
    """CLIP's two embeddings beside a text encoder: ``image_embeds`` from images in [-1, 1] (the diffusion
    models' range) and ``text_embeds`` from the text encoder's pooled output, both normalised."""

    text_projection: nn.Linear

    def text_embeds(self, pooled: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_projection(pooled), dim=-1)


class ClipPartner(ClipEmbeddings):
    """An image tower and the text projection trained to pair with a text encoder."""

    def __init__(self, vision: CLIPVisionModelWithProjection, text_projection: nn.Linear) -> None:
        super().__init__()
        self.vision = vision
        self.text_projection = text_projection
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def image_embeds(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.vision(pixel_values=images).image_embeds, dim=-1)


class PretrainedClipPartner(ClipEmbeddings):
    """The image tower and projections of a pretrained transformers ``CLIPModel`` (real: the CLIP
    checkpoint Stable Diffusion's text encoder comes from), with CLIP's own image preprocessing."""

    def __init__(self, clip) -> None:
        super().__init__()
        self.vision, self.visual_projection = clip.vision_model, clip.visual_projection
        self.text_projection, self.logit_scale = clip.text_projection, clip.logit_scale
        self.image_size = clip.config.vision_config.image_size
        self.register_buffer("mean", torch.tensor(OPENAI_CLIP_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(OPENAI_CLIP_STD).view(1, 3, 1, 1))

    def image_embeds(self, images: torch.Tensor) -> torch.Tensor:
        x = F.interpolate((images + 1) / 2, size=(self.image_size,) * 2, mode="bicubic", antialias=True)
        pooled = self.vision(pixel_values=(x - self.mean) / self.std).pooler_output
        return F.normalize(self.visual_projection(pooled), dim=-1)


def check_clip_folder(folder: str | Path) -> Path:
    """``folder`` as a Path, if it holds a transformers CLIP (checked before anything slow loads)."""
    from unlearnbench.errors import UnlearnBenchError

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise UnlearnBenchError(f"clip_model: no transformers CLIP folder at {folder} (expected config.json and "
                                "the weights of openai/clip-vit-large-patch14, SD v1.5's text encoder's CLIP)")
    return folder


def load_pretrained_partner(folder: Path, text_encoder, device: str | torch.device = "cpu") -> PretrainedClipPartner:
    """The CLIP at ``folder`` (a transformers folder, read offline) as the partner of ``text_encoder``."""
    from transformers import CLIPModel

    from unlearnbench.errors import UnlearnBenchError

    clip = CLIPModel.from_pretrained(check_clip_folder(folder), local_files_only=True)
    width = text_encoder.config.hidden_size
    if clip.config.text_config.hidden_size != width:
        raise UnlearnBenchError(f"clip_model {folder}: its text width {clip.config.text_config.hidden_size} is not "
                                f"the diffusion model's text encoder's {width}; give the CLIP it was taken from")
    return PretrainedClipPartner(clip).requires_grad_(False).eval().to(device)


def build_partner(cfg: CanvasClipConfig, image_size: int, text_width: int) -> ClipPartner:
    vision = CLIPVisionModelWithProjection(CLIPVisionConfig(
        image_size=image_size, patch_size=cfg.patch_size, hidden_size=cfg.width, intermediate_size=4 * cfg.width,
        num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads, projection_dim=text_width))
    return ClipPartner(vision, nn.Linear(text_width, text_width, bias=False))


def train_clip(model, data: CanvasData, cfg: CanvasClipConfig) -> tuple[ClipPartner, dict]:
    """Train ``model``'s text encoder and a new image tower together as a CLIP on MiniCanvas's training
    images and captions (in place for the text encoder); returns the image tower and its bars."""
    torch.manual_seed(cfg.seed)
    train = data.splits["train"]
    images = train.images()
    pairs = train.style_labels * len(data.objects) + train.object_labels  # one class per (style, object)
    captions = [prompt(s, o) for s in data.styles for o in data.objects]
    partner = build_partner(cfg, images.shape[-1], model.text_encoder.config.hidden_size)
    params = [*partner.parameters(), *model.text_encoder.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.1, betas=(0.9, 0.98), eps=1e-6)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_multiplier(s, cfg.steps, cfg.warmup_steps))
    gen = torch.Generator().manual_seed(cfg.seed)
    start = time.perf_counter()
    partner.train()
    model.text_encoder.train()
    for _ in tqdm(range(cfg.steps), desc="training canvas CLIP (text encoder and image tower)", unit="step"):
        idx = torch.randint(len(images), (cfg.batch_size,), generator=gen)
        y = pairs[idx]
        text = partner.text_embeds(model.pooled_prompts([captions[c] for c in y.tolist()]))
        logits = partner.logit_scale.exp() * partner.image_embeds(images[idx]) @ text.T
        loss = contrastive_loss(logits, y[:, None] == y[None, :])
        training_step(loss, opt, sched, partner.logit_scale)
    partner.eval()
    model.text_encoder.eval()
    with torch.no_grad():
        metrics = zero_shot_accuracy(partner, model.pooled_prompts(captions), data)
    metrics.update(train_seconds=time.perf_counter() - start, final_loss=loss.item())
    print(f"canvas CLIP: held-out zero-shot style {metrics['style_acc']:.3f} (bar {STYLE_BAR}), "
          f"object {metrics['object_acc']:.3f}, trained in {metrics['train_seconds']:.0f} s")
    return partner, metrics


@torch.no_grad()
def zero_shot_accuracy(partner: ClipPartner, pooled: torch.Tensor, data: CanvasData) -> dict[str, float]:
    """Held-out images classified among every (style, object) caption: style and object accuracy."""
    test = data.splits["test"]
    pred = (partner.image_embeds(test.images()) @ partner.text_embeds(pooled).T).argmax(dim=1)
    n_objects = len(data.objects)
    return {"style_acc": (pred // n_objects == test.style_labels).float().mean().item(),
            "object_acc": (pred % n_objects == test.object_labels).float().mean().item()}
