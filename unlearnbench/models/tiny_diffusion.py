"""The embedded ``unlearncanvas`` model: a tiny text-to-image diffusion model trained on MiniCanvas.

A transformers ``CLIPTextModel`` (2 layers, width 64) reads prompts through a local word-level
tokenizer whose vocabulary is every word the MiniCanvas captions and paraphrases use; a diffusers
``UNet2DConditionModel`` denoises 16x16 RGB pixels directly (no VAE). As Stable Diffusion v1.5 does
with CLIP ViT-L/14's text tower, the text encoder is trained first, as the text tower of a CLIP
(``canvas_clip.train_clip``), and stays frozen while the UNet trains; that CLIP's image tower is kept
beside the model (``clip.safetensors``), because SLUG's losses on this suite go through it. The UNet's full-resolution
level has no attention: self-attention over 256 positions cost half of each training step on CPU,
and the text still reaches every pixel through the cross-attention of the 8x8 level and the middle
block. UNet training is the usual epsilon prediction (DDPM, cosine "squaredcos_cap_v2" betas) with 10%
empty prompts for classifier-free guidance and an EMA of the weights, which is the model kept.

Sampling uses DDIM with 5 "trailing" steps, x_0 clipped to [-1, 1], guidance 3: on this model the
sampler mattered more than training length. Without clipping the first step, at alpha_bar = 2e-9,
blows up (style accuracy 0.33 instead of 0.99); 10 and 20 steps were no better, and guidance 6 was
worse (0.89). The bars are measured on generated images, one per (style, object) pair and seed,
judged by the MiniCanvas classifiers.
The ``tiny`` model ships in ``weights/`` (see ``shipped``). Others are cached under
``cache_dir()/models/`` by the hash of the fields that determine the weights (data, architecture,
training); changing only the sampler, the evaluation seeds or the classifiers re-measures the bars on
the cached weights instead of retraining.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from diffusers import DDPMScheduler, UNet2DConditionModel
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from tqdm.auto import tqdm
from transformers import CLIPTextConfig, CLIPTextModel, PreTrainedTokenizerFast

from unlearnbench.cache import atomic_write, atomic_write_text, config_hash, read_cached, read_record
from unlearnbench.datasets.synthetic.canvas import (OBJECTS, PARAPHRASE_TEMPLATES, STYLES, TRAIN_TEMPLATE,
                                                    CanvasData, CanvasDataConfig, make_canvas_data, prompt)
from unlearnbench.config import choose_preset
from unlearnbench.models.canvas_clip import CanvasClipConfig, ClipPartner, build_partner, train_clip
from unlearnbench.models.canvas_classifier import (CanvasClassifierConfig, CanvasClassifiers,
                                                   load_or_train_classifiers)
from unlearnbench.models.t2i import SamplerConfig, TextToImage
from unlearnbench.identity import code_fingerprint
from unlearnbench.models.shipped import CARD, start_training, is_shipped, model_folder, write_card
from unlearnbench.schedules import lr_multiplier

log = logging.getLogger(__name__)

STYLE_BAR = 0.90  # style accuracy on generated images (training template) the "tiny" model must reach
OBJECT_BAR = 0.80  # object accuracy on generated images
SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>")  # ids 0-3, in this order


@dataclass(frozen=True)
class TinyDiffusionConfig:
    data: CanvasDataConfig = field(default_factory=CanvasDataConfig)
    classifier: CanvasClassifierConfig = field(default_factory=CanvasClassifierConfig)
    # text encoder (transformers CLIPTextModel)
    text_width: int = 64
    text_layers: int = 2
    text_heads: int = 4
    context_length: int = 16  # tokens per prompt, <bos> and <eos> included; the longest caption has 13
    clip: CanvasClipConfig = field(default_factory=CanvasClipConfig)  # the text encoder's first training
    # UNet (diffusers UNet2DConditionModel, pixel space)
    block_out_channels: tuple[int, ...] = (32, 64)
    down_block_types: tuple[str, ...] = ("DownBlock2D", "CrossAttnDownBlock2D")  # up blocks mirror them
    layers_per_block: int = 1
    attention_heads: int = 4  # diffusers calls this attention_head_dim, but it is the number of heads
    norm_num_groups: int = 8
    # training
    steps: int = 3000
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 100
    prompt_dropout: float = 0.1  # share of empty prompts, which classifier-free guidance needs
    ema_decay: float = 0.995
    # sampling and the bars on generated images (not part of the weights' cache key)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    eval_seeds: tuple[int, ...] = (188, 288, 588, 688, 888)  # UnlearnCanvas's seeds
    paraphrase_seeds: tuple[int, ...] = (188, 288)  # per paraphrase template
    eval_every: int = 500  # steps between progress checks on generated images (first seed only); 0: none
    seed: int = 0


PRESETS = {
    # The embedded default. Bars and time are printed at the end of training and kept in train.json.
    "tiny": TinyDiffusionConfig(),
    # For tests and smoke runs: 4 styles x 3 objects, a quarter of the UNet, 400 small steps. It
    # beats chance on generated styles (objects stay at chance); not a model to draw conclusions
    # from. At this width attention at 16x16 is cheap, and with it the text reached the pixels
    # within a few hundred steps (without it style stayed at chance). A model this weak needs
    # strong guidance: style accuracy 0.50 at guidance 3, 0.75 at 7.
    "micro": TinyDiffusionConfig(
        data=CanvasDataConfig(n_styles=4, n_objects=3, images_per_pair=(24, 2, 4)),
        classifier=CanvasClassifierConfig(steps=100),
        text_width=32, text_layers=1, text_heads=2, block_out_channels=(16, 32),
        clip=CanvasClipConfig(width=32, layers=1, heads=2, steps=150, batch_size=64, warmup_steps=10),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"), attention_heads=1,
        steps=400, batch_size=16, lr=5e-3, warmup_steps=20, ema_decay=0.95, sampler=SamplerConfig(guidance=7.0),
        eval_seeds=(188, 288), paraphrase_seeds=(188,), eval_every=0),
}


def preset(name: str) -> TinyDiffusionConfig:
    return choose_preset(PRESETS, name, "diffusion")


@dataclass
class TrainedCanvas:
    model: TextToImage  # the EMA weights, in eval mode
    clip_partner: ClipPartner  # the image tower and projections of the CLIP the text encoder comes from
    data: CanvasData
    classifiers: CanvasClassifiers
    config: TinyDiffusionConfig
    metrics: dict[str, float]  # bars on generated images, loss and training seconds
    path: Path  # the shipped folder or the cache folder it was read from
    model_id: str  # canvas-t2i and the hash of the settings that determine the weights

    @property
    def sample_steps(self) -> int:
        return self.config.sampler.steps

    @property
    def guidance(self) -> float:
        return self.config.sampler.guidance


EVALUATION_FIELDS = ("classifier", "sampler", "eval_seeds", "paraphrase_seeds", "eval_every")


def weights_key(cfg: TinyDiffusionConfig) -> str:
    """The hash of the fields that determine the trained weights: all but EVALUATION_FIELDS."""
    return config_hash({k: v for k, v in asdict(cfg).items() if k not in EVALUATION_FIELDS})


def training_settings(cfg: TinyDiffusionConfig) -> dict:
    """The whole config as train.json stores it (tuples become lists); the cache folder is named by the
    part that determines the weights (``weights_key``), the shipped card by all of it."""
    return json.loads(json.dumps(asdict(cfg)))


def load_or_train(cfg: TinyDiffusionConfig, weights: str = "shipped", retrain: bool = False) -> TrainedCanvas:
    """The trained model for ``cfg`` and its classifiers: shipped (``weights="shipped"`` and the ``tiny``
    preset), else from the cache, training them there first if absent (or ``retrain``)."""
    settings = training_settings(cfg)
    ships = cfg == PRESETS["tiny"]
    folder = model_folder("canvas-t2i", settings, weights, ships, cache_key=weights_key(cfg))
    data = make_canvas_data(cfg.data)
    classifiers = load_or_train_classifiers(cfg.data, cfg.classifier, weights, ships, retrain)
    files, vocab, info = folder / "model.safetensors", folder / "tokenizer.json", folder / "train.json"
    clip_files = folder / "clip.safetensors"

    def read_weights(path: Path) -> TextToImage:
        model = build_model(cfg, tokenizer)
        model.load_state_dict(load_file(str(path)))
        return model

    def read_partner(path: Path) -> ClipPartner:
        partner = build_partner(cfg.clip, cfg.data.image_size, cfg.text_width)
        partner.load_state_dict(load_file(str(path)))
        return partner

    tokenizer = None if retrain else read_cached(
        vocab, lambda path: wrap_tokenizer(Tokenizer.from_file(str(path)), cfg.context_length))
    model = read_cached(files, read_weights) if tokenizer is not None else None
    partner = None if retrain else read_cached(clip_files, read_partner)
    record = None if retrain else read_cached(info, read_record)
    trained_now = model is None or partner is None or record is None
    if not trained_now:
        if record.get("config") != settings:  # only sampling or evaluation settings differ: re-measure
            record["metrics"].update(evaluate(model, classifiers, data, cfg))
    else:
        start_training(folder)
        tokenizer = build_tokenizer(cfg.context_length)
        model, partner, training = train(cfg, data, classifiers, tokenizer)
        for path, module in ((files, model), (clip_files, partner)):
            state = {k: v.contiguous() for k, v in module.state_dict().items()}
            atomic_write(path, lambda tmp, state=state: save_file(state, str(tmp)))
        atomic_write(vocab, lambda tmp: tokenizer.backend_tokenizer.save(str(tmp)))
        record = {"metrics": {**training, **evaluate(model, classifiers, data, cfg)}}
    if record.get("config") != settings:
        record["config"] = settings
        atomic_write_text(info, json.dumps(record, indent=2))
        (folder / CARD).unlink(missing_ok=True)  # its sha256 of train.json is now stale
    if not is_shipped(folder) and not (folder / CARD).exists():
        write_card(folder, "canvas-t2i", settings, record, code_fingerprint(train), trained_now)
    model.eval()
    partner.requires_grad_(False).eval()
    return TrainedCanvas(model, partner, data, classifiers, cfg, record["metrics"], folder,
                         f"canvas-t2i-{weights_key(cfg)}")


def build_tokenizer(context_length: int) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over every word of every style, object, caption and paraphrase template.

    The paraphrase templates' own words ("artwork", "painted", ...) get ids too, though training
    never shows them: an unknown-word token would make every paraphrase look alike.
    """
    normalizer, pre_tokenizer = normalizers.Lowercase(), pre_tokenizers.Whitespace()
    words = set()
    for template in (TRAIN_TEMPLATE, *PARAPHRASE_TEMPLATES):
        for style in STYLES:
            for obj in OBJECTS:
                text = normalizer.normalize_str(prompt(style.name, obj, template))
                words.update(piece for piece, _ in pre_tokenizer.pre_tokenize_str(text))
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *sorted(words)])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.normalizer = normalizer
    backend.pre_tokenizer = pre_tokenizer
    backend.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>", special_tokens=[("<bos>", vocab["<bos>"]), ("<eos>", vocab["<eos>"])])
    return wrap_tokenizer(backend, context_length)


def wrap_tokenizer(backend: Tokenizer, context_length: int) -> PreTrainedTokenizerFast:
    pad, unk, bos, eos = SPECIAL_TOKENS
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=pad, unk_token=unk, bos_token=bos,
                                   eos_token=eos, model_max_length=context_length)


def build_model(cfg: TinyDiffusionConfig, tokenizer: PreTrainedTokenizerFast) -> TextToImage:
    """An untrained TextToImage with the architecture of ``cfg``."""
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.text_width, intermediate_size=4 * cfg.text_width,
        num_hidden_layers=cfg.text_layers, num_attention_heads=cfg.text_heads,
        max_position_embeddings=cfg.context_length, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id))
    up_block_types = tuple(name.replace("Down", "Up") for name in reversed(cfg.down_block_types))
    unet = UNet2DConditionModel(
        sample_size=cfg.data.image_size, in_channels=3, out_channels=3, layers_per_block=cfg.layers_per_block,
        block_out_channels=cfg.block_out_channels, down_block_types=cfg.down_block_types,
        up_block_types=up_block_types, cross_attention_dim=cfg.text_width, attention_head_dim=cfg.attention_heads,
        norm_num_groups=cfg.norm_num_groups)
    noise_scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    return TextToImage(unet, text_encoder, tokenizer, noise_scheduler, cfg.sampler)


def train(cfg: TinyDiffusionConfig, data: CanvasData, classifiers: CanvasClassifiers,
          tokenizer: PreTrainedTokenizerFast) -> tuple[TextToImage, ClipPartner, dict[str, float]]:
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, tokenizer)
    # 0. the text encoder, as the text tower of a CLIP; frozen from here on, as SD's is
    partner, clip_metrics = train_clip(model, data, cfg.clip)
    model.text_encoder.requires_grad_(False).eval()
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    images, captions = data.splits["train"].images(), data.captions("train")
    opt = torch.optim.AdamW(model.unet.parameters(), lr=cfg.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_multiplier(s, cfg.steps, cfg.warmup_steps))
    gen = torch.Generator().manual_seed(cfg.seed)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("training canvas t2i: %d parameters, %d images", n_params, len(images))
    model.unet.train()
    start, cpu_start = time.perf_counter(), time.process_time()
    progress: dict[str, str] = {}
    bar = tqdm(range(cfg.steps), desc="training canvas t2i", unit="step")
    for step in bar:
        # 1. a batch of captioned images, some captions dropped for classifier-free guidance
        idx = torch.randint(len(images), (cfg.batch_size,), generator=gen)
        drop = (torch.rand(cfg.batch_size, generator=gen) < cfg.prompt_dropout).tolist()
        prompts = ["" if d else captions[i] for d, i in zip(drop, idx.tolist())]
        # 2. the denoising loss at random timesteps
        loss = model.noise_loss(images[idx], prompts, generator=gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        # 3. EMA, with the usual warm-up so that short runs are not dominated by the initial weights
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema.parameters(), model.parameters()):
                e.lerp_(p, 1 - decay)
        progress["loss"] = f"{loss.item():.4f}"
        if cfg.eval_every and (step + 1) % cfg.eval_every == 0 and step + 1 < cfg.steps:
            check = generation_accuracy(ema, classifiers, data.styles, data.objects, cfg.eval_seeds[:1])
            progress.update(style=f"{check['style_acc']:.2f}", object=f"{check['object_acc']:.2f}")
            log.info("step %d: %s", step + 1, progress)
        bar.set_postfix(progress, refresh=False)
    # CPU seconds are the load-independent cost: wall time swings with whatever else the machine runs.
    metrics = {"train_seconds": time.perf_counter() - start, "train_cpu_seconds": time.process_time() - cpu_start,
               "final_loss": loss.item(), "parameters": float(n_params),
               **{f"clip_{k}": v for k, v in clip_metrics.items()}}
    report = (f"canvas t2i: trained {cfg.steps} steps of {cfg.batch_size} in {metrics['train_seconds']:.0f} s "
              f"({metrics['train_cpu_seconds']:.0f} CPU s), final loss {metrics['final_loss']:.4f}")
    print(report)
    log.info(report)
    return ema, partner, metrics


def evaluate(model: TextToImage, classifiers: CanvasClassifiers, data: CanvasData,
             cfg: TinyDiffusionConfig) -> dict[str, float]:
    """The bars on generated images: every (style, object) pair with the training caption for each
    of ``cfg.eval_seeds``, and with every paraphrase template for each of ``cfg.paraphrase_seeds``."""
    start = time.perf_counter()
    metrics = generation_accuracy(model, classifiers, data.styles, data.objects, cfg.eval_seeds)
    paraphrased = generation_accuracy(model, classifiers, data.styles, data.objects, cfg.paraphrase_seeds,
                                      PARAPHRASE_TEMPLATES)
    metrics.update({f"paraphrase_{k}": v for k, v in paraphrased.items()})
    metrics["eval_seconds"] = time.perf_counter() - start
    report = (f"canvas t2i: on generated images (DDIM {cfg.sampler.steps} steps, guidance {cfg.sampler.guidance}) "
              f"style accuracy {metrics['style_acc']:.3f} (bar {STYLE_BAR}, worst style "
              f"{metrics['worst_style_acc']:.3f}), object accuracy {metrics['object_acc']:.3f} (bar {OBJECT_BAR}); "
              f"paraphrased prompts: style {metrics['paraphrase_style_acc']:.3f}, object "
              f"{metrics['paraphrase_object_acc']:.3f}")
    print(report)
    log.info(report)
    return metrics


@torch.no_grad()
def generation_accuracy(model: TextToImage, classifiers: CanvasClassifiers, styles: list[str], objects: list[str],
                        seeds: tuple[int, ...], templates: tuple[str, ...] = (TRAIN_TEMPLATE,)) -> dict[str, float]:
    """Classifier accuracy on one generated image per (template, style, object, seed).

    Returns ``style_acc``, ``object_acc`` and ``worst_style_acc`` (the lowest per-style accuracy).
    """
    grid = [(t, s, o, seed) for t in templates for s in range(len(styles)) for o in range(len(objects))
            for seed in seeds]
    images = model.sample([prompt(styles[s], objects[o], t) for t, s, o, _ in grid], [seed for *_, seed in grid])
    style_pred, object_pred = classifiers.classify(images)
    style_true = torch.tensor([s for _, s, _, _ in grid])
    object_true = torch.tensor([o for _, _, o, _ in grid])
    style_correct = (style_pred == style_true).float()
    return {"style_acc": style_correct.mean().item(),
            "object_acc": (object_pred == object_true).float().mean().item(),
            "worst_style_acc": min(style_correct[style_true == s].mean().item() for s in range(len(styles)))}
