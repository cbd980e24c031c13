"""The embedded ``llava`` suite's model: a tiny transformers LLaVA whose vision tower comes from a CLIP.

As in LLaVA, the vision tower is a CLIP image encoder trained first and then frozen:
1. a transformers ``CLIPModel`` (32 px, patch 8) is trained contrastively on the procedural faces
   (captioned with their names) and scenes (captioned "two red circles"), with the class-aware
   InfoNCE of ``tiny_clip`` (images of one class are positives of each other);
2. a ``LlavaForConditionalGeneration`` embeds that vision tower, frozen, under a small Llama
   language model; the projector and the language model learn to answer "who is this?" with the
   name and the colour / shape / count questions about scenes (loss on answer tokens only).
Both share a local word-level tokenizer over every word the data uses. The CLIP is kept beside
LLaVA because SLUG's forget loss needs its text tower. Training prints the held-out bars (greedy
answers); the models are saved as transformers folders under ``cache_dir()/models/`` by config hash
and loaded back through ``llava_loader``, the real models' loader.

Transformers-5 details this relies on: ``<image>`` is a special token of the tokenizer
(``extra_special_tokens``); ``LlavaProcessor`` needs ``patch_size`` and
``num_additional_image_tokens=1`` (the CLS token the "default" feature strategy drops), else the
prompt is one image token short; ``vision_feature_layer`` defaults to -2, under which the last of
two tower layers would never reach the language model, so the tiny model reads the last layer (-1).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from tqdm.auto import tqdm
from transformers import (CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTextConfig, CLIPVisionConfig, LlamaConfig,
                          LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor, PreTrainedTokenizerFast)

from unlearnbench.contrastive import contrastive_loss
from unlearnbench.cache import atomic_write_text, config_hash, read_cached, read_record
from unlearnbench.datasets.synthetic.vqa import (IDENTITY_QUESTIONS, SCENE_CLASSES, UTILITY_QUESTIONS, Questions,
                                                 VqaData, VqaDataConfig, identity_question, make_vqa_data)
from unlearnbench.config import choose_preset
from unlearnbench.errors import UnlearnBenchError
from unlearnbench.identity import code_fingerprint
from unlearnbench.models.llava_loader import load_clip, load_llava
from unlearnbench.models.shipped import CARD, start_training, is_shipped, model_folder, write_card
from unlearnbench.vlm import PROMPT, answer_batch, answer_items, contains_answer, prompt_ids
from unlearnbench.zeroshot import IDENTITY_TEMPLATES
from unlearnbench.schedules import lr_multiplier

log = logging.getLogger(__name__)

IDENTITY_BAR = 0.95  # held-out "who is this?" answers naming the person
UTILITY_BAR = 0.90  # held-out answers of every other question type
SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>", "<image>")  # ids 0-4, in this order
CLIP_CONTEXT = 16  # CLIP text tokens; the longest caption ("a close-up photo of <first> <last>.") has 10
MAX_NEW_TOKENS = 4  # the longest answer, a two-word name, plus room for a wrong longer one


@dataclass(frozen=True)
class TinyLlavaConfig:
    data: VqaDataConfig = field(default_factory=VqaDataConfig)
    # CLIP: vision tower (embedded in LLaVA) and text tower (for SLUG's loss)
    patch_size: int = 8
    # Width 128, not 64: with a 64-wide tower one identity could not be edited out without taking
    # other identities along (slug-lm on the default target: TA_ID -3.3 or -6.1 points depending
    # on the training's thread count); at 128 the same edit cost -0.6 with either.
    vision_width: int = 128
    vision_layers: int = 2
    text_width: int = 64
    text_layers: int = 2
    heads: int = 4
    projection_dim: int = 128
    clip_steps: int = 800
    clip_batch_size: int = 128
    clip_lr: float = 2e-3
    # LLaVA's language model (Llama) and projector
    lm_width: int = 128
    lm_layers: int = 2
    lm_heads: int = 4
    vision_feature_layer: int = -1  # the last tower layer (llava-1.5 reads -2 of 24)
    # "full": patch tokens and CLS. llava-1.5 drops CLS ("default"), but its 24-layer tower's patch
    # tokens carry what CLIP learnt; in a 2-layer tower trained through CLS alone they carry little,
    # and an edit made through CLIP's image embedding (SLUG's loss) barely reaches the answers:
    # with "default", SLUG had to give up 45 points of other identities to forget one.
    vision_feature_select_strategy: str = "full"
    # Loss reaches 0.001 by about step 1000 of batch 64; 2500 steps gave the same bars.
    llava_steps: int = 1200
    llava_batch_size: int = 64
    llava_lr: float = 1e-3
    warmup_steps: int = 50
    identity_share: float = 0.4  # share of "who is this?" items in a training batch
    seed: int = 0


PRESETS = {
    # The embedded default: 10 identities; bars and training time are printed and kept in train.json.
    "tiny": TinyLlavaConfig(),
    # For tests and smoke runs: fewer images and steps, trains in seconds, well above chance.
    "micro": TinyLlavaConfig(
        data=VqaDataConfig(n_identities=6, identity_images=(24, 6, 8), scene_images=(8, 1, 2)),
        vision_width=64, projection_dim=64, lm_width=64, clip_steps=150, llava_steps=250, warmup_steps=10,
        llava_lr=3e-3),
}


def preset(name: str) -> TinyLlavaConfig:
    return choose_preset(PRESETS, name, "LLaVA")


@dataclass
class TrainedLlava:
    model: LlavaForConditionalGeneration
    processor: LlavaProcessor
    clip: CLIPModel
    clip_tokenizer: PreTrainedTokenizerFast
    data: VqaData
    config: TinyLlavaConfig
    metrics: dict[str, float]
    path: Path  # the shipped folder or the cache folder it was read from
    model_id: str  # tiny-llava and the hash of its training settings


def training_settings(cfg: TinyLlavaConfig) -> dict:
    return json.loads(json.dumps(asdict(cfg)))


def load_or_train(cfg: TinyLlavaConfig, device: str = "cpu", weights: str = "shipped",
                  retrain: bool = False) -> TrainedLlava:
    """The trained models for ``cfg``: shipped (``weights="shipped"`` and the ``tiny`` preset), else from
    the cache, training them there first if absent (or ``retrain``)."""
    settings = training_settings(cfg)
    folder = model_folder("tiny-llava", settings, weights, ships=cfg == PRESETS["tiny"])
    data = make_vqa_data(cfg.data)

    def read_folder(path: Path) -> tuple:
        metrics = read_record(path / "train.json")["metrics"]
        return (*load_llava(path / "llava", device), *load_clip(path / "clip", device), metrics)

    loaded = None if retrain else read_cached(folder, read_folder)
    trained_now = loaded is None
    if trained_now:
        start_training(folder)
        tokenizer = build_tokenizer(data)
        clip_tokenizer = build_clip_tokenizer(tokenizer)
        processor = build_processor(tokenizer, cfg)
        clip = train_clip(cfg, data, clip_tokenizer)
        model, metrics = train_llava(cfg, data, processor, clip, clip_tokenizer)
        for tok in (tokenizer, clip_tokenizer):
            # A call with padding or truncation leaves them set on the backend, and save_pretrained
            # would store them: the loaded processor would then cut prompts short.
            tok.backend_tokenizer.no_truncation()
            tok.backend_tokenizer.no_padding()
        # Written to a temporary folder and renamed, so an interrupted save is never loaded.
        tmp = folder.with_name(folder.name + ".tmp")
        model.save_pretrained(tmp / "llava")
        processor.save_pretrained(tmp / "llava")
        clip.save_pretrained(tmp / "clip")
        clip_tokenizer.save_pretrained(tmp / "clip")
        atomic_write_text(tmp / "train.json", json.dumps({"config": asdict(cfg), "metrics": metrics}, indent=2))
        if folder.exists():  # an unreadable folder (see read_cached)
            import shutil
            shutil.rmtree(folder)
        tmp.rename(folder)
        loaded = read_folder(folder)
    model, processor, clip, clip_tokenizer, metrics = loaded
    if not is_shipped(folder) and not (folder / CARD).exists():
        write_card(folder, "tiny-llava", settings, read_record(folder / "train.json"), code_fingerprint(train_llava),
                   trained_now)
    return TrainedLlava(model, processor, clip, clip_tokenizer, data, cfg, metrics, folder,
                        f"tiny-llava-{config_hash(settings)}")


def build_tokenizer(data: VqaData) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over every word of the prompts, questions, answers and captions."""
    normalizer, pre_tokenizer = normalizers.Lowercase(), pre_tokenizers.Whitespace()
    names = data.identities["train"].classnames
    texts = [PROMPT.replace("<image>", ""), *IDENTITY_QUESTIONS, *UTILITY_QUESTIONS.values(),
             *names, *(s.caption for s in SCENE_CLASSES),
             *(s.answer(kind) for s in SCENE_CLASSES for kind in UTILITY_QUESTIONS),
             *(template(name) for template in IDENTITY_TEMPLATES for name in names)]
    words = {piece for text in texts for piece, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))}
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *sorted(words)])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.normalizer = normalizer
    backend.pre_tokenizer = pre_tokenizer
    backend.post_processor = processors.TemplateProcessing(single="<bos> $A",
                                                           special_tokens=[("<bos>", vocab["<bos>"])])
    pad, unk, bos, eos, image = SPECIAL_TOKENS
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=pad, unk_token=unk, bos_token=bos,
                                   eos_token=eos, extra_special_tokens={"image_token": image})


def build_processor(tokenizer: PreTrainedTokenizerFast, cfg: TinyLlavaConfig) -> LlavaProcessor:
    size = cfg.data.image_size
    images = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    return LlavaProcessor(image_processor=images, tokenizer=tokenizer, patch_size=cfg.patch_size,
                          num_additional_image_tokens=1,
                          vision_feature_select_strategy=cfg.vision_feature_select_strategy)


def build_clip_tokenizer(tokenizer: PreTrainedTokenizerFast) -> PreTrainedTokenizerFast:
    """The same vocabulary for CLIP's text tower, which pools at the first ``<eos>``: every caption
    is encoded ``<bos> caption <eos>``."""
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>", special_tokens=[("<bos>", tokenizer.bos_token_id), ("<eos>", tokenizer.eos_token_id)])
    pad, unk, bos, eos, _ = SPECIAL_TOKENS
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=pad, unk_token=unk, bos_token=bos,
                                   eos_token=eos, model_max_length=CLIP_CONTEXT)


def clip_captions(clip_tokenizer, texts: list[str]) -> torch.Tensor:
    return clip_tokenizer(texts, padding="max_length", truncation=True, return_tensors="pt")["input_ids"]


def pixel_tensor(images, processor) -> torch.Tensor:
    """Pixel values of a whole in-memory image set, as the processor would give them (rescale and
    normalise; the 32 px resize and crop are identities on 32 px images)."""
    proc = processor.image_processor
    if images.pixels.shape[1] != proc.crop_size["height"]:
        raise UnlearnBenchError(f"images are {images.pixels.shape[1]} px but the processor crops to "
                                f"{proc.crop_size['height']} px")
    return images.as_tensor(proc.image_mean, proc.image_std)


def build_clip(cfg: TinyLlavaConfig, tokenizer) -> CLIPModel:
    vision = CLIPVisionConfig(image_size=cfg.data.image_size, patch_size=cfg.patch_size, hidden_size=cfg.vision_width,
                              intermediate_size=4 * cfg.vision_width, num_hidden_layers=cfg.vision_layers,
                              num_attention_heads=cfg.heads)
    text = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=cfg.text_width, intermediate_size=4 * cfg.text_width,
                          num_hidden_layers=cfg.text_layers, num_attention_heads=cfg.heads,
                          max_position_embeddings=CLIP_CONTEXT,
                          pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                          eos_token_id=tokenizer.eos_token_id)
    return CLIPModel(CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(),
                                projection_dim=cfg.projection_dim))


def class_aware_clip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, labels: torch.Tensor,
                          logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE where pairs of one class are positives of each other (few classes, big batches)."""
    logits = logit_scale.exp() * F.normalize(image_emb, dim=-1) @ F.normalize(text_emb, dim=-1).T
    return contrastive_loss(logits, labels[:, None] == labels[None, :])


def train_clip(cfg: TinyLlavaConfig, data: VqaData, clip_tokenizer) -> CLIPModel:
    torch.manual_seed(cfg.seed)
    clip = build_clip(cfg, clip_tokenizer)
    mean, std = CLIPImageProcessor().image_mean, CLIPImageProcessor().image_std
    faces, scenes = data.identities["train"], data.scenes["train"]
    images = torch.cat([faces.as_tensor(mean, std), scenes.as_tensor(mean, std)])
    n_id = len(faces.classnames)
    labels = torch.cat([faces.labels, scenes.labels + n_id])
    # Caption table: row = class, column = template (scenes repeat their one caption).
    rows = [[template(name) for template in IDENTITY_TEMPLATES] for name in faces.classnames]
    rows += [[scene.caption] * len(IDENTITY_TEMPLATES) for scene in SCENE_CLASSES]
    table = torch.stack([clip_captions(clip_tokenizer, row) for row in rows])
    is_face = torch.arange(len(images)) < len(faces)

    opt = torch.optim.AdamW(clip.parameters(), lr=cfg.clip_lr, weight_decay=0.1, betas=(0.9, 0.98), eps=1e-6)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_multiplier(s, cfg.clip_steps, cfg.warmup_steps))
    gen = torch.Generator().manual_seed(cfg.seed)
    face_idx, scene_idx = torch.nonzero(is_face).flatten(), torch.nonzero(~is_face).flatten()
    clip.train()
    for _ in tqdm(range(cfg.clip_steps), desc="training tiny CLIP tower", unit="step"):
        # Half faces, half scenes: there are more scene images than faces.
        half = cfg.clip_batch_size // 2
        idx = torch.cat([face_idx[torch.randint(len(face_idx), (half,), generator=gen)],
                         scene_idx[torch.randint(len(scene_idx), (cfg.clip_batch_size - half,), generator=gen)]])
        y = labels[idx]
        template = torch.randint(len(IDENTITY_TEMPLATES), (len(idx),), generator=gen)
        out = clip(input_ids=table[y, template], pixel_values=images[idx])
        loss = class_aware_clip_loss(out.image_embeds, out.text_embeds, y, clip.logit_scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            clip.logit_scale.clamp_(0, math.log(100))
    return clip.eval()


def build_llava(cfg: TinyLlavaConfig, processor: LlavaProcessor, clip: CLIPModel) -> LlavaForConditionalGeneration:
    """A LLaVA whose vision tower is ``clip``'s, frozen."""
    tokenizer = processor.tokenizer
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=cfg.lm_width, intermediate_size=2 * cfg.lm_width,
                       num_hidden_layers=cfg.lm_layers, num_attention_heads=cfg.lm_heads,
                       num_key_value_heads=cfg.lm_heads, max_position_embeddings=64,
                       pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id)
    patches = (cfg.data.image_size // cfg.patch_size) ** 2
    config = LlavaConfig(vision_config=clip.config.vision_config, text_config=text,
                         image_token_id=tokenizer.image_token_id, vision_feature_layer=cfg.vision_feature_layer,
                         vision_feature_select_strategy=cfg.vision_feature_select_strategy,
                         image_seq_length=patches if cfg.vision_feature_select_strategy == "default" else patches + 1)
    model = LlavaForConditionalGeneration(config)
    model.model.vision_tower.load_state_dict(clip.vision_model.state_dict())
    model.model.vision_tower.requires_grad_(False)
    gen = model.generation_config
    gen.pad_token_id, gen.eos_token_id, gen.bos_token_id = (tokenizer.pad_token_id, tokenizer.eos_token_id,
                                                            tokenizer.bos_token_id)
    return model


def training_items(data: VqaData) -> tuple[Questions, Questions]:
    """(identity items, utility items) of the training split: every face with every identity
    question, every scene with every utility question."""
    faces = data.identities["train"]
    n_q = len(IDENTITY_QUESTIONS)
    identity = Questions(faces, [i for i in range(len(faces)) for _ in range(n_q)], ["identity"] * len(faces) * n_q,
                         [q for _ in range(len(faces)) for q in IDENTITY_QUESTIONS],
                         [faces.classnames[label] for label in faces.labels.tolist() for _ in range(n_q)])
    return identity, data.utility["train"]


def train_llava(cfg: TinyLlavaConfig, data: VqaData, processor: LlavaProcessor, clip: CLIPModel,
                clip_tokenizer) -> tuple[LlavaForConditionalGeneration, dict[str, float]]:
    torch.manual_seed(cfg.seed)
    start = time.perf_counter()
    model = build_llava(cfg, processor, clip)
    tokenizer = processor.tokenizer
    sample_image = data.identities["train"][0]
    prompts = {q: prompt_ids(processor, q, sample_image)
               for q in (*IDENTITY_QUESTIONS, *UTILITY_QUESTIONS.values())}
    identity, utility = training_items(data)
    pixels = {"identity": pixel_tensor(data.identities["train"], processor),
              "utility": pixel_tensor(data.scenes["train"], processor)}

    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=cfg.llava_lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_multiplier(s, cfg.llava_steps, cfg.warmup_steps))
    gen = torch.Generator().manual_seed(cfg.seed)
    n_identity = round(cfg.llava_batch_size * cfg.identity_share)
    model.train()
    bar = tqdm(range(cfg.llava_steps), desc="training tiny LLaVA", unit="step")
    for _ in bar:
        chosen = [("identity", identity, i)
                  for i in torch.randint(len(identity), (n_identity,), generator=gen).tolist()]
        chosen += [("utility", utility, i) for i in
                   torch.randint(len(utility), (cfg.llava_batch_size - n_identity,), generator=gen).tolist()]
        ids, labels, mask = answer_batch([prompts[items.questions[i]] for _, items, i in chosen],
                                         [items.answers[i] for _, items, i in chosen], tokenizer)
        pix = torch.stack([pixels[domain][items.image_index[i]] for domain, items, i in chosen])
        loss = model(input_ids=ids, pixel_values=pix, attention_mask=mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    metrics = held_out_accuracy(model, processor, data)
    metrics["clip_identity"] = clip_identity_accuracy(clip, clip_tokenizer, data)
    metrics["train_seconds"] = time.perf_counter() - start
    utility_text = ", ".join(f"{kind} {metrics[kind]:.3f}" for kind in UTILITY_QUESTIONS)
    report = (f"tiny-llava: held-out greedy answers: identity {metrics['identity']:.3f} (bar {IDENTITY_BAR}), "
              f"{utility_text} (bar {UTILITY_BAR}); CLIP tower zero-shot identity {metrics['clip_identity']:.3f}; "
              f"trained in {metrics['train_seconds']:.0f} s")
    print(report)
    log.info(report)
    return model, metrics


@torch.no_grad()
def held_out_accuracy(model: LlavaForConditionalGeneration, processor: LlavaProcessor,
                      data: VqaData) -> dict[str, float]:
    """Share of right greedy answers on the test split, per question type."""
    faces, utility = data.identities["test"], data.utility["test"]
    face_pixels, scene_pixels = pixel_tensor(faces, processor), pixel_tensor(utility.images, processor)
    prompts = lambda q: prompt_ids(processor, q, faces[0])  # noqa: E731 - one fixed image size
    n = len(faces)
    questions = [identity_question(i) for i in range(n)]
    replies = answer_items(model, processor.tokenizer, prompts, lambda idx: face_pixels[list(idx)], list(range(n)),
                           questions, MAX_NEW_TOKENS, 256)
    names = [faces.classnames[label] for label in faces.labels.tolist()]
    out = {"identity": sum(contains_answer(r, name) for r, name in zip(replies, names)) / n}
    replies = answer_items(model, processor.tokenizer, prompts, lambda idx: scene_pixels[list(idx)],
                           utility.image_index, utility.questions, MAX_NEW_TOKENS, 256)
    for kind in UTILITY_QUESTIONS:
        items = utility.of_kind(kind)
        out[kind] = sum(contains_answer(replies[i], utility.answers[i]) for i in items) / len(items)
    return out


@torch.no_grad()
def clip_identity_accuracy(clip: CLIPModel, clip_tokenizer, data: VqaData) -> float:
    """Zero-shot top-1 of the CLIP tower on the test faces (names with the first identity template)."""
    faces = data.identities["test"]
    mean, std = CLIPImageProcessor().image_mean, CLIPImageProcessor().image_std
    captions = clip_captions(clip_tokenizer, [IDENTITY_TEMPLATES[0](n) for n in faces.classnames])
    text = clip.get_text_features(input_ids=captions)
    image = clip.get_image_features(pixel_values=faces.as_tensor(mean, std))
    text, image = (x.pooler_output if hasattr(x, "pooler_output") else x for x in (text, image))
    logits = F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).T
    return (logits.argmax(dim=1) == faces.labels).float().mean().item()
