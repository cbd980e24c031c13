"""The embedded ``clip`` suite's model: a tiny open_clip CLIP trained on the procedural data.

Architectures are open_clip model configs shipped as JSON in ``configs/`` (registered with
``open_clip.add_model_config``). The text tower reads a word-level vocabulary of every word the
procedural captions can use (``vocabulary``), through open_clip's ``HFTokenizer``: with CLIP's 49,408
BPE tokens the token table of a 64-wide model was 94% of its parameters (ViT-B-32's: 17%), and every
method that works on "all parameters" (SalUn's saliency mask, SSD's Fisher statistics) saw mostly it.
Training is contrastive with one change for a data set of few classes: images that share a class are
positives of each other, not negatives (a class-aware InfoNCE), which is what lets 60 identities and
20 objects train in minutes on 2 cores. The ``tiny`` and ``micro`` models ship in ``weights/`` (see ``shipped``);
others are cached by the hash of their training config; training reports the held-out zero-shot bars.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import open_clip
import torch
from open_clip.tokenizer import HFTokenizer
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerFast

from unlearnbench.contrastive import contrastive_loss, training_step
from unlearnbench.cache import atomic_folder, atomic_write, atomic_write_text, config_hash, read_cached, read_record
from unlearnbench.config import choose_preset
from unlearnbench.datasets.synthetic.clip_data import SyntheticClipData, SyntheticClipDataConfig, make_clip_data
from unlearnbench.datasets.synthetic.faces import FIRST_NAMES, LAST_NAMES, POOL_FIRST_NAMES, POOL_LAST_NAMES
from unlearnbench.datasets.synthetic.objects import OBJECT_CLASSES, POOL_OBJECT_CLASSES
from unlearnbench.zeroshot import (IDENTITY_TEMPLATES, OBJECT_TEMPLATES, SLUG_IDENTITY_TEMPLATES, captions,
                                   image_features, text_classifier, topk_correct)
from unlearnbench.identity import code_fingerprint
from unlearnbench.models.shipped import CARD, start_training, is_shipped, model_folder, write_card
from unlearnbench.schedules import lr_multiplier

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).parent / "configs"
open_clip.add_model_config(CONFIG_DIR)
# Procedural images are drawn in [0, 255] like photos; normalise them the way CLIP does.
MEAN = open_clip.OPENAI_DATASET_MEAN
STD = open_clip.OPENAI_DATASET_STD

IDENTITY_BAR = 0.95  # held-out identity zero-shot top-1 the default model must reach
OBJECT_BAR = 0.80  # held-out object zero-shot top-1


@dataclass(frozen=True)
class TinyClipTrainConfig:
    model: str = "ub-clip-tiny"  # an open_clip config name from configs/
    data: SyntheticClipDataConfig = field(default_factory=SyntheticClipDataConfig)
    steps: int = 900
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup_steps: int = 50
    seed: int = 0


PRESETS = {
    # The embedded default: clears the held-out bars above in about 4-5 minutes on 2 cores.
    "tiny": TinyClipTrainConfig(),
    # For tests and smoke runs: 10 identities, 6 objects, trains in seconds, well above chance.
    "micro": TinyClipTrainConfig(
        model="ub-clip-micro", steps=200, batch_size=128, warmup_steps=10, lr=3e-3,
        data=SyntheticClipDataConfig(n_identities=10, n_objects=6, identity_images=(40, 8, 12),
                                     object_images=(40, 8, 12), pool_identities=8, pool_objects=4, pool_images=24)),
}


def preset(name: str) -> TinyClipTrainConfig:
    return choose_preset(PRESETS, name, "CLIP")


@dataclass
class TrainedClip:
    model: torch.nn.Module
    tokenizer: object
    data: SyntheticClipData
    config: TinyClipTrainConfig
    metrics: dict[str, float]
    path: Path  # the shipped folder or the cache folder it was read from
    model_id: str  # config name and the hash of its training settings


@contextlib.contextmanager
def random_init_allowed():
    """open_clip warns on the root logger that a model built without weights is initialised randomly,
    which is the point where we build one (we train it, or load weights into it next), so hush it."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


# open_clip pools the text at the highest token id (``argmax``), so end-of-text must be the last id.
PAD, UNKNOWN, START, END = "<pad>", "<unk>", "<start_of_text>", "<end_of_text>"


def vocabulary() -> list[str]:
    """Every word of every name, object class and template the procedural captions can use, sorted."""
    normalizer, pre_tokenizer = normalizers.Lowercase(), pre_tokenizers.Whitespace()
    names = [*FIRST_NAMES, *LAST_NAMES, *POOL_FIRST_NAMES, *POOL_LAST_NAMES,
             *(c.name for c in (*OBJECT_CLASSES, *POOL_OBJECT_CLASSES))]
    words = set()
    for template in (*IDENTITY_TEMPLATES, *SLUG_IDENTITY_TEMPLATES, *OBJECT_TEMPLATES):
        for name in names:
            text = normalizer.normalize_str(template(name))
            words.update(piece for piece, _ in pre_tokenizer.pre_tokenize_str(text))
    return sorted(words)


def save_tokenizer(folder: Path) -> None:
    """Write the word-level tokenizer as a transformers tokenizer folder (what ``HFTokenizer`` reads)."""
    tokens = [PAD, UNKNOWN, *vocabulary(), START, END]
    vocab = {token: i for i, token in enumerate(tokens)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token=UNKNOWN))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single=f"{START} $A {END}", special_tokens=[(START, vocab[START]), (END, vocab[END])])
    PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=PAD, unk_token=UNKNOWN, bos_token=START,
                            eos_token=END).save_pretrained(str(folder))


def load_tokenizer(folder: Path, model: str) -> HFTokenizer:
    """open_clip's tokenizer over the saved vocabulary, with the model config's context length."""
    context_length = open_clip.get_model_config(model)["text_cfg"]["context_length"]
    return HFTokenizer(str(folder), context_length=context_length)


def create_model(name: str) -> torch.nn.Module:
    """An untrained open_clip model."""
    with random_init_allowed():
        return open_clip.create_model(name)


def training_settings(cfg: TinyClipTrainConfig) -> dict:
    """What determines the weights. The architecture is a JSON file, not a field: part of it, so editing it
    retrains."""
    return {**asdict(cfg), "architecture": open_clip.get_model_config(cfg.model)}


def load_or_train(cfg: TinyClipTrainConfig, device: torch.device | str = "cpu", weights: str = "shipped",
                  retrain: bool = False) -> TrainedClip:
    """The trained model for ``cfg``: shipped (``weights="shipped"`` and the ``tiny`` or ``micro`` preset),
    else from the cache, training it there first if absent (or ``retrain``)."""
    settings = training_settings(cfg)
    folder = model_folder(cfg.model, settings, weights, ships=cfg in (PRESETS["tiny"], PRESETS["micro"]))
    data = make_clip_data(cfg.data)
    files, info, vocab = folder / "model.safetensors", folder / "train.json", folder / "tokenizer"

    def read_weights(path: Path) -> torch.nn.Module:
        model = create_model(cfg.model)
        model.load_state_dict(load_file(str(path)))
        return model

    loaded = None if retrain else (read_cached(vocab, lambda path: load_tokenizer(path, cfg.model)),
                                   read_cached(files, read_weights), read_cached(info, read_record))
    trained_now = loaded is None or None in loaded
    if not trained_now:
        tokenizer, model, record = loaded
    else:
        start_training(folder)
        atomic_folder(vocab, save_tokenizer)
        tokenizer = load_tokenizer(vocab, cfg.model)
        model, metrics = train(cfg, data, tokenizer)
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        atomic_write(files, lambda tmp: save_file(state, str(tmp)))
        record = {"config": settings, "metrics": metrics}
        atomic_write_text(info, json.dumps(record, indent=2))
    if not is_shipped(folder) and not (folder / CARD).exists():
        write_card(folder, cfg.model, settings, record, code_fingerprint(train), trained_now)
    model.eval().to(device)
    return TrainedClip(model, tokenizer, data, cfg, record["metrics"], folder, f"{cfg.model}-{config_hash(settings)}")


def train(cfg: TinyClipTrainConfig, data: SyntheticClipData, tokenizer) -> tuple[torch.nn.Module, dict[str, float]]:
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model)
    ids, objs, pool = data.identities["train"], data.objects["train"], data.pool
    # The retain pool is part of the training data, as LAION is part of CLIP's.
    images = torch.cat([ids.as_tensor(MEAN, STD), objs.as_tensor(MEAN, STD), pool.as_tensor(MEAN, STD)])
    n_id, n_obj, n_pool_id = len(ids.classnames), len(objs.classnames), cfg.data.pool_identities
    labels = torch.cat([ids.labels, objs.labels + n_id, pool.labels + n_id + n_obj])
    # Caption table: row = class, column = template (objects have more templates than identities).
    caption_tokens, template_count = [], []
    for names, templates in ((ids.classnames, IDENTITY_TEMPLATES), (objs.classnames, OBJECT_TEMPLATES),
                             (pool.classnames[:n_pool_id], IDENTITY_TEMPLATES),
                             (pool.classnames[n_pool_id:], OBJECT_TEMPLATES)):
        for name in names:
            caption_tokens.append(tokenizer(captions([name], templates)))
            template_count.append(len(templates))
    width = max(template_count)
    table = torch.stack([torch.cat([t, t[: width - len(t)].repeat(math.ceil(width / len(t)), 1)])[:width]
                         for t in caption_tokens])
    counts = torch.tensor(template_count)

    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                            betas=(0.9, 0.98), eps=1e-6)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_multiplier(s, cfg.steps, cfg.warmup_steps))
    gen = torch.Generator().manual_seed(cfg.seed)
    model.train()
    start = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc=f"training {cfg.model}", unit="step")
    for _ in bar:
        idx = torch.randint(len(images), (cfg.batch_size,), generator=gen)
        y = labels[idx]
        template = (torch.rand(len(idx), generator=gen) * counts[y]).long()
        img_emb, txt_emb, scale = model(images[idx], table[y, template])
        logits = scale * img_emb @ txt_emb.T
        loss = contrastive_loss(logits, y[:, None] == y[None, :])
        training_step(loss, opt, sched, model.logit_scale)
        bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    metrics = held_out_accuracy(model, tokenizer, data)
    metrics["train_seconds"] = time.perf_counter() - start
    report = (f"{cfg.model}: held-out zero-shot top-1 identities {metrics['identity_top1']:.3f} "
              f"(bar {IDENTITY_BAR}), objects {metrics['object_top1']:.3f} (bar {OBJECT_BAR}), "
              f"trained in {metrics['train_seconds']:.0f} s")
    print(report)
    log.info(report)
    return model, metrics


@torch.no_grad()
def held_out_accuracy(model: torch.nn.Module, tokenizer, data: SyntheticClipData) -> dict[str, float]:
    out = {}
    for key, split, templates in (("identity", data.identities["test"], IDENTITY_TEMPLATES),
                                  ("object", data.objects["test"], OBJECT_TEMPLATES)):
        classifier = text_classifier(model, tokenizer, split.classnames, templates, torch.device("cpu"))
        feats = image_features(model, split.as_tensor(MEAN, STD).split(512), torch.device("cpu"))
        out[f"{key}_top1"] = topk_correct(feats @ classifier.T, split.labels, 1).float().mean().item()
    return out
