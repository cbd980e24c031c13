"""llava — identity unlearning in a vision-language model (SLUG, Sec. 5.3: LLaVA-1.5).

Forget one identity from a LLaVA model and measure, from greedy answers, in %:
FA, the share of "who is this?"-style answers on the target's held-out images that contain the
target's name (case-insensitive; ``match``: as a substring, the reference's rule and the real default,
or as whole words, the embedded default); TA_ID, the same for each other identity on its own
images, averaged over identities; TA_VQA, the accuracy on the other question types (colour, shape,
count for the embedded data; the types of ``vqa.jsonl`` for real data), averaged over types.

Methods edit the vision tower only (the parameters whose output LLaVA reads). Their losses come from
the CLIP the tower was trained with, as in SLUG: the forget loss is 1 - cos(image embedding, the
embedding of the target's name by CLIP's text tower); the retain loss CLIP's contrastive loss on
other identities (and, embedded, captioned scenes). Selection and stopping use greedy answers on
validation images: the goal is FA <= ``forget_threshold`` with the retain score (mean of TA_ID and
TA_VQA) within ``retain_tolerance`` points of the base model.

``config=embedded`` (default) trains a tiny LLaVA on procedural faces and scenes
(``models.tiny_llava``); ``config=real`` loads a LLaVA folder (e.g. ``llava-hf/llava-1.5-7b-hf``),
its CLIP (``openai/clip-vit-large-patch14-336``) and ``data``: the reference's ``mu_llava_*`` parquet
data sets and a ``vqa.jsonl`` of utility questions (``datasets.llava`` for the layout).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from unlearnbench.benchmarks.base import Metric, Suite, register_suite
from unlearnbench.config import check_counts, check_device
from unlearnbench.models.shipped import check_source
from unlearnbench.datasets.base import ArrayImageSet, ImageSet, ImageTensors
from unlearnbench.datasets.synthetic.faces import attack_faces
from unlearnbench.datasets.synthetic.vqa import Questions, identity_question
from unlearnbench.errors import UnlearnBenchError
from unlearnbench.lm_eval_utility import LmEvalUtility
from unlearnbench.models.llava_loader import load_clip, load_llava, vision_parameters
from unlearnbench.models.tiny_llava import MAX_NEW_TOKENS, class_aware_clip_loss, load_or_train, preset
from unlearnbench.task import Goal, UnlearningTask, shuffled_epochs
from unlearnbench.vlm import MATCH_RULES, answer_batch, answer_items, contains_answer, prompt_ids
from unlearnbench.zeroshot import IDENTITY_TEMPLATES

log = logging.getLogger(__name__)

REAL_MAX_NEW_TOKENS = 16  # docs/PROTOCOLS.md, llava: greedy decoding, 16 tokens


@dataclass(frozen=True)
class LlavaSuiteConfig:
    config: str = "embedded"  # "embedded" (procedural data, tiny LLaVA) or "real"
    embedded: str = "tiny"  # embedded model preset (unlearnbench.models.tiny_llava.PRESETS)
    # "shipped": the tiny model shipped in the package; "trained": trained on this machine (bench.py train-embedded)
    embedded_weights: str = "shipped"
    # real configuration
    model_path: str | None = None  # a transformers LLaVA folder (model + processor)
    clip_path: str | None = None  # the transformers CLIP folder its vision tower comes from
    data: str | None = None  # root with the mu_llava_* parquet data sets and vqa.jsonl (datasets.llava)
    dtype: str = "float32"  # weights of the real model: float32, float16 or bfloat16
    # both
    # How an answer counts as naming the expected answer, case-insensitively: "substring" (the SLUG
    # reference's rule) or "word" (whole words: "none" does not name "one"). None: substring for real,
    # word for embedded, whose short made-up names and one-word answers a substring would over-match.
    match: str | None = None
    forget_threshold: float = 0.0  # FA (%) on the validation images of the target that counts as forgotten
    retain_tolerance: float | None = 5.0  # points of validation retain score a step may lose (None: any)
    reference_lr: float | None = None  # the iterative baselines' learning rate; None: LlavaSuite.reference_lrs
    retain_samples: int = 512  # retain (image, caption) pairs handed to methods
    batch_size: int = 32
    eval_batch_size: int = 128
    examples: int = 3  # example answers per group (target, others, each question type) in the run folder
    device: str = "cpu"
    # Test-time utility through lm-eval (extra vlm-eval), comma-separated task names: ub_vqa (this suite's
    # utility test questions), ub_mu_llava_identity (the identity test faces), or lm-eval's (mmmu_val, chartqa).
    utility_tasks: str = ""
    hf_cache: str | None = None  # Hugging Face cache folder (hub/, datasets/) lm-eval's tasks read offline
    utility_limit: int | None = None  # lm-eval's limit: at most this many documents per task (None: all)

    def __post_init__(self) -> None:
        check_counts(self, ("retain_samples", "batch_size", "eval_batch_size"), "llava")
        if not self.utility_tasks and (self.hf_cache is not None or self.utility_limit is not None):
            raise UnlearnBenchError("llava: hf_cache and utility_limit apply to lm-eval's utility tasks; "
                                    "name them with --set utility_tasks=ub_vqa,...")
        check_device(self.device, "llava")
        check_source(self.embedded_weights)


@dataclass
class LlavaAssets:
    model: nn.Module  # LlavaForConditionalGeneration
    processor: object
    clip: nn.Module  # CLIPModel, frozen: its text tower and projection give SLUG's losses
    clip_tokenizer: object
    identities: dict[str, ImageSet]  # split -> faces labelled by name
    utility: dict[str, Questions]  # "val" / "test" -> utility questions
    # Retain pairs beside the other identities' faces: scenes labelled by caption (embedded only).
    captioned: ImageSet | None
    max_new_tokens: int
    model_id: str
    # Per split, the question asked about face i and the answer expected: the data set's own (real), or
    # the identity templates by face index and the face's name (embedded). Fixed by the face, so every
    # check asks it the same.
    identity_questions: dict[str, list[str]]
    identity_answers: dict[str, list[str]]
    # Training-split utility questions, for losses on the VLM's own answers (embedded only).
    utility_train: Questions | None = None
    target_names: list[str] | None = None  # the identities that can be forgotten; None: every identity


def pixel_tensors(images: ImageSet, processor) -> ImageTensors:
    """Pixel values of ``images`` as LLaVA's image processor gives them (precomputed for in-memory
    images of the processor's crop size)."""
    image_processor = processor.image_processor
    size = image_processor.crop_size.get("height") if hasattr(image_processor, "crop_size") else None
    return ImageTensors(images, image_processor.image_mean, image_processor.image_std,
                        lambda pil: image_processor(images=pil, return_tensors="pt")["pixel_values"], size)


@register_suite("llava")
class LlavaSuite(Suite):
    """LLaVA VQA identity unlearning: FA (target named), TA_ID (others named), TA_VQA (other questions)."""

    # 2: each face's question fixed by its index in its split (was: its position in the list asked), and
    # 30 validation faces per embedded identity (was 10).
    version = 2
    kind = "vlm"
    Config = LlavaSuiteConfig
    metrics = (Metric("FA", "forget-test", False), Metric("TA_ID", "identities-test", True),
               Metric("TA_VQA", "vqa-test", True))
    table_metrics = ("FA", "TA_ID", "TA_VQA")
    plot_axes = ("FA", "TA_ID")
    validation_metrics = (Metric("retain", "retain-val", True, about="mean of TA_ID and TA_VQA"),)
    # 1e-4 embedded (on the default target GA's FA falls to 35-50% within its 10 epochs; at 1e-3 it
    # reaches 0 but other identities fall to 17%, at 1e-5 nothing moves), 1e-7 real (SLUG's CLIP setting).
    reference_lrs = {"embedded": 1e-4, "real": 1e-7}

    def __init__(self, config: LlavaSuiteConfig | None = None) -> None:
        super().__init__(config)
        if self.embedded:
            preset(self.config.embedded)  # an unknown preset fails before anything trains
        if self.config.match not in (None, *MATCH_RULES):
            raise UnlearnBenchError(f"llava: match={self.config.match!r}; expected one of {', '.join(MATCH_RULES)}")
        self.match = self.config.match or ("word" if self.embedded else "substring")
        self._pixels: dict[tuple[str, str], ImageTensors] = {}
        self._prompts: dict[str, torch.Tensor] = {}
        # Test-time utility through lm-eval; lm-eval missing or an unknown task fails here, before any work.
        self.utility = None
        if self.config.utility_tasks:
            self.utility = LmEvalUtility(self, self.config.utility_tasks, self.config.hf_cache,
                                         self.config.utility_limit)
            self.metrics = (*type(self).metrics, *self.utility.metrics)

    @functools.cached_property
    def assets(self) -> LlavaAssets:
        if self.embedded:
            trained = load_or_train(preset(self.config.embedded), self.config.device, self.config.embedded_weights)
            data = trained.data
            utility = {split: data.utility[split] for split in ("val", "test")}
            questions = {split: [identity_question(i) for i in range(len(faces))]
                         for split, faces in data.identities.items()}
            names = {split: [faces.classnames[label] for label in faces.labels.tolist()]
                     for split, faces in data.identities.items()}
            return LlavaAssets(trained.model, trained.processor, trained.clip, trained.clip_tokenizer,
                               data.identities, utility, data.scenes["train"], MAX_NEW_TOKENS, trained.model_id,
                               questions, names, utility_train=data.utility["train"])
        return load_real_assets(self.config)

    def model_id(self) -> str:
        return self.assets.model_id

    def base_model(self) -> nn.Module:
        return self.assets.model

    def targets(self) -> list[str]:
        return list(self.assets.target_names or self.assets.identities["test"].classnames)

    @property
    def device(self) -> torch.device:
        return torch.device(self.config.device)

    # -- asking questions ---------------------------------------------------------------------------
    def pixels(self, domain: str, split: str) -> ImageTensors:
        key = (domain, split)
        if key not in self._pixels:
            images = self.assets.identities[split] if domain == "identities" else self.assets.utility[split].images
            self._pixels[key] = pixel_tensors(images, self.assets.processor)
        return self._pixels[key]

    def prompt(self, question: str) -> torch.Tensor:
        if question not in self._prompts:
            self._prompts[question] = prompt_ids(self.assets.processor, question, self.assets.identities["test"][0])
        return self._prompts[question]

    def asked(self, split: str, rows: list[int]) -> tuple[list[str], list[str]]:
        """The question asked about each face of ``rows`` and the answer expected (``LlavaAssets``)."""
        assets = self.assets
        return ([assets.identity_questions[split][i] for i in rows], [assets.identity_answers[split][i] for i in rows])

    def identity_replies(self, model: nn.Module, split: str, rows: list[int]) -> list[str]:
        """Answers to the "who is this?"-style question of each face of ``rows`` (see ``asked``)."""
        questions, _ = self.asked(split, rows)
        return answer_items(model, self.assets.processor.tokenizer, self.prompt, self.pixels("identities", split).take,
                            rows, questions, self.assets.max_new_tokens, self.config.eval_batch_size)

    def utility_replies(self, model: nn.Module, split: str, items: list[int]) -> list[str]:
        qs = self.assets.utility[split]
        return answer_items(model, self.assets.processor.tokenizer, self.prompt, self.pixels("utility", split).take,
                            [qs.image_index[i] for i in items], [qs.questions[i] for i in items],
                            self.assets.max_new_tokens, self.config.eval_batch_size)

    def forget_accuracy(self, model: nn.Module, target: str, split: str) -> dict[str, float]:
        faces = self.assets.identities[split]
        rows = torch.nonzero(faces.labels == faces.classnames.index(target)).flatten().tolist()
        replies = self.identity_replies(model, split, rows)
        return {"FA": identity_accuracy(replies, self.asked(split, rows)[1], self.match)}

    def scores(self, model: nn.Module, target: str, split: str) -> dict[str, float]:
        """FA, TA_ID, TA_VQA (and TA_VQA per question type as ``VQA_<type>``) on ``split``, in %."""
        faces = self.assets.identities[split]
        names = [faces.classnames[label] for label in faces.labels.tolist()]
        rows = list(range(len(faces)))
        replies = self.identity_replies(model, split, rows)
        qs = self.assets.utility[split]
        utility = self.utility_replies(model, split, list(range(len(qs))))
        return vqa_metrics(replies, names, target, utility, qs.answers, qs.kinds, self.asked(split, rows)[1],
                           self.match)

    def evaluate(self, model: nn.Module, target: str) -> dict[str, float]:
        metrics = self.scores(model, target, "test")
        if self.utility is not None:  # lm-eval's utility_tasks (lm_eval_utility), on the suite's model
            metrics.update(self.utility.evaluate(model, target))
        return metrics

    def example_answers(self, model: nn.Module, target: str) -> pd.DataFrame:
        """A few test questions with the model's answers: the target's faces, other people, each
        utility question type."""
        faces, qs, k = self.assets.identities["test"], self.assets.utility["test"], self.config.examples
        labels = faces.labels.tolist()
        target_rows = [i for i, label in enumerate(labels) if faces.classnames[label] == target][:k]
        other_rows = []
        for label in range(len(faces.classnames)):
            if faces.classnames[label] != target and len(other_rows) < k:
                other_rows.append(labels.index(label))
        rows = []
        for group, chosen in (("target", target_rows), ("other identity", other_rows)):
            replies = self.identity_replies(model, "test", chosen)
            for i, question, expected, reply in zip(chosen, *self.asked("test", chosen), replies):
                rows.append({"group": group, "image": f"test face {i}", "question": question,
                             "expected": expected, "answer": reply})
        # Spread over each type's items, which are grouped by image: k different scenes, not one.
        items = [i for kind in dict.fromkeys(qs.kinds)
                 for i in qs.of_kind(kind)[::max(1, len(qs.of_kind(kind)) // k)][:k]]
        for i, reply in zip(items, self.utility_replies(model, "test", items)):
            rows.append({"group": qs.kinds[i], "image": f"test image {qs.image_index[i]}", "question": qs.questions[i],
                         "expected": qs.answers[i], "answer": reply})
        return pd.DataFrame(rows)

    # -- the task -----------------------------------------------------------------------------------
    def task(self, target: str) -> UnlearningTask:
        if target not in self.targets():
            raise UnlearnBenchError(
                f"unknown target {target!r} for suite 'llava'; targets: {', '.join(self.targets())}")
        cfg, assets, dev = self.config, self.assets, self.device
        model, clip = assets.model, assets.clip
        faces = assets.identities["train"]
        target_label = faces.classnames.index(target)
        # Class embeddings from the frozen CLIP text tower: identities (mean over the portrait
        # templates, as zero-shot classifiers are built), then scene captions.
        captions = [[template(name) for template in IDENTITY_TEMPLATES] for name in faces.classnames]
        if assets.captioned is not None:
            captions += [[caption] for caption in assets.captioned.classnames]
        class_text = text_embeddings(clip, assets.clip_tokenizer, captions, dev)
        retain_images, retain_labels, retain_rows = self._retain_pairs(target_label)
        forget_rows = torch.nonzero(faces.labels == target_label).flatten()
        forget_images = pixel_tensors(faces, assets.processor)
        other_labels = torch.tensor([c for c in range(len(faces.classnames)) if c != target_label])

        def embed(m: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
            tower = m.model.vision_tower
            dtype = next(tower.parameters()).dtype
            pooled = tower(pixel_values=pixels.to(dev, dtype)).pooler_output
            return clip.visual_projection(pooled.to(clip.visual_projection.weight.dtype))

        def batches(images: ImageTensors, rows: torch.Tensor, labels: torch.Tensor):
            return shuffled_epochs(len(rows), cfg.batch_size, lambda pick: (images.take(rows[pick]), labels[pick]))

        def forget_loss(m: nn.Module, batch) -> torch.Tensor:
            """mean(1 - cos(image embedding, the target name's text embedding))."""
            images, labels = batch
            return (1 - F.cosine_similarity(embed(m, images), class_text[labels.to(dev)], dim=-1)).mean()

        def retain_loss(m: nn.Module, batch) -> torch.Tensor:
            images, labels = batch
            labels = labels.to(dev)
            return class_aware_clip_loss(embed(m, images), class_text[labels], labels, clip.logit_scale)

        def random_label_loss(m: nn.Module, batch, generator: torch.Generator) -> torch.Tensor:
            """CLIP's objective on the forget images paired with other identities' names."""
            images, _ = batch
            labels = other_labels[torch.randint(len(other_labels), (len(images),), generator=generator)].to(dev)
            return class_aware_clip_loss(embed(m, images), class_text[labels], labels, clip.logit_scale)

        def validate(m: nn.Module, changed: set[str] | None) -> dict[str, float]:
            metrics = self.scores(m, target, "val")
            metrics["retain"] = 0.5 * (metrics["TA_ID"] + metrics["TA_VQA"])
            return metrics

        params = vision_parameters(model)
        answer_losses = self._answer_losses(target_label, retain_images, retain_rows)
        return UnlearningTask(
            kind="vlm", suite=self.name, target=target, model=model,
            forget_batches=batches(forget_images, forget_rows, faces.labels[forget_rows]),
            retain_batches=batches(retain_images, torch.arange(len(retain_labels)), retain_labels),
            forget_loss_fn=forget_loss, retain_loss_fn=retain_loss, validate_fn=validate,
            goal=Goal("FA", cfg.forget_threshold, "retain", cfg.retain_tolerance),
            editable=list(params),
            layer_groups={name: "vision" for name, role in params.items() if role == "layer"},
            random_label_loss_fn=random_label_loss,
            validate_forget_fn=lambda m, changed: self.forget_accuracy(m, target, "val"),
            # Generating answers with a 7B model costs far more than a gradient step; the tiny one does not.
            expensive_validation=not self.embedded,
            reference_lr=self.reference_lr(),
            extras={"answer_losses": answer_losses},
        )

    # -- what attacks need (unlearnbench/attacks/) --------------------------------------------------
    def attack_batches(self, target: str, n: int, batch_size: int):
        """``n`` faces of ``target`` (labelled for the task's forget loss) that neither unlearning nor validation
        nor test holds. Embedded: new faces drawn from their own random stream (faces.attack_faces); real: the
        target's first ``n`` validation faces (disjoint from test, docs/PROTOCOLS.md)."""
        faces = self.assets.identities["train"]
        label = faces.classnames.index(target)
        if self.embedded:
            made = preset(self.config.embedded).data
            images: ImageSet = ArrayImageSet(attack_faces(made.n_identities, made.seed, label, n, made.image_size),
                                             np.zeros(n, dtype=np.int64), [target])
        else:
            val = self.assets.identities["val"]
            images = val.subset(torch.nonzero(val.labels == val.classnames.index(target)).flatten()[:n].tolist())
        pixels, labels = pixel_tensors(images, self.assets.processor), torch.full((len(images),), label)
        return shuffled_epochs(len(images), batch_size, lambda pick: (pixels.take(pick), labels[pick]))

    def identity_hits(self, model: nn.Module, target: str, questions: list[str]) -> torch.Tensor:
        """(questions, faces) booleans: whether ``model``'s answer to each question about each of the target's
        test faces names the face's expected answer (the suite's ``match`` rule)."""
        faces = self.assets.identities["test"]
        rows = torch.nonzero(faces.labels == faces.classnames.index(target)).flatten().tolist()
        expected = self.asked("test", rows)[1]
        pixels = self.pixels("identities", "test").take
        replies = answer_items(model, self.assets.processor.tokenizer, self.prompt, pixels, rows * len(questions),
                               [q for q in questions for _ in rows], self.assets.max_new_tokens,
                               self.config.eval_batch_size)
        hits = [contains_answer(r, e, self.match) for r, e in zip(replies, expected * len(questions))]
        return torch.tensor(hits).view(len(questions), len(rows))

    def _answer_losses(self, target_label: int, retain_faces: ImageTensors, retain_rows: list[int]) -> dict:
        """Batches and losses on LLaVA's own answers (``slug-lm``): the forget loss is the negative
        log-likelihood of the target's name asked "who is this?" about its training faces; the
        retain loss the same for the other identities' faces (the retain sample) and, embedded, the
        training utility questions."""
        cfg, assets = self.config, self.assets
        faces = assets.identities["train"]
        tokenizer = assets.processor.tokenizer
        forget_rows = torch.nonzero(faces.labels == target_label).flatten().tolist()
        forget_pixels = pixel_tensors(faces, assets.processor)
        # (pixel source, image index, question, answer)
        target = faces.classnames[target_label]
        forget = [(forget_pixels, i, question, target)
                  for i, question in zip(forget_rows, self.asked("train", forget_rows)[0])]
        # The retain sample's faces come first, in the order of retain_rows (their train-split indices).
        retain = [(retain_faces, i, question, answer)
                  for i, (question, answer) in enumerate(zip(*self.asked("train", retain_rows)))]
        if assets.utility_train is not None:
            qs = assets.utility_train
            scene_pixels = pixel_tensors(qs.images, assets.processor)
            pick = torch.randperm(len(qs), generator=torch.Generator().manual_seed(0))[:len(retain)].tolist()
            retain += [(scene_pixels, qs.image_index[i], qs.questions[i], qs.answers[i]) for i in pick]

        def batches(items: list):
            return shuffled_epochs(len(items), cfg.batch_size, lambda pick: ([items[i] for i in pick.tolist()],))

        def answer_nll(m: nn.Module, batch) -> torch.Tensor:
            (items,) = batch
            ids, labels, mask = answer_batch([self.prompt(question) for _, _, question, _ in items],
                                             [answer for *_, answer in items], tokenizer)
            pixels = torch.cat([source.take([index]) for source, index, _, _ in items])
            dtype = next(m.parameters()).dtype
            return m(input_ids=ids.to(self.device), pixel_values=pixels.to(self.device, dtype),
                     attention_mask=mask.to(self.device), labels=labels.to(self.device)).loss

        return {"forget_batches": batches(forget), "retain_batches": batches(retain),
                "forget_loss": answer_nll, "retain_loss": answer_nll}

    def _retain_pairs(self, target_label: int) -> tuple[ImageTensors, torch.Tensor, list[int]]:
        """A fixed sample of other identities' faces and (embedded) captioned scenes, with labels
        indexing the class embeddings (identities first, then scene captions), and the faces'
        train-split indices."""
        faces, scenes = self.assets.identities["train"], self.assets.captioned
        gen = torch.Generator().manual_seed(0)
        pool = torch.nonzero(faces.labels != target_label).flatten()
        n_faces = min(len(pool), self.config.retain_samples if scenes is None else self.config.retain_samples // 2)
        face_pick = pool[torch.randperm(len(pool), generator=gen)[:n_faces]].tolist()
        retain = faces.subset(face_pick)
        if scenes is not None:
            n_scenes = min(len(scenes), self.config.retain_samples - n_faces)
            retain = retain.concat(scenes.subset(torch.randperm(len(scenes), generator=gen)[:n_scenes].tolist()))
        return pixel_tensors(retain, self.assets.processor), retain.labels, face_pick


def identity_accuracy(replies: list[str], expected: list[str], match: str = "word") -> float:
    """% of replies that contain their expected answer (``vlm.contains_answer``)."""
    if not replies:
        raise UnlearnBenchError("no images to score")
    return 100 * sum(contains_answer(r, e, match) for r, e in zip(replies, expected)) / len(replies)


def vqa_metrics(replies: list[str], names: list[str], target: str, utility_replies: list[str],
                utility_answers: list[str], utility_kinds: list[str], expected: list[str] | None = None,
                match: str = "word") -> dict[str, float]:
    """FA (target's images), TA_ID (mean over the other identities), TA_VQA (mean over question
    types) and ``VQA_<type>``, in %. Face i shows ``names[i]`` and is scored on ``expected[i]``
    (default: its name)."""
    expected = names if expected is None else expected
    by_name: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        by_name.setdefault(name, []).append(i)
    if target not in by_name:
        raise UnlearnBenchError(f"no images of target {target!r} to score")
    per_name = {name: identity_accuracy([replies[i] for i in rows], [expected[i] for i in rows], match)
                for name, rows in by_name.items()}
    others = [acc for name, acc in per_name.items() if name != target]
    out = {"FA": per_name[target], "TA_ID": sum(others) / len(others)}
    kinds = list(dict.fromkeys(utility_kinds))
    for kind in kinds:
        items = [i for i, k in enumerate(utility_kinds) if k == kind]
        out[f"VQA_{kind}"] = identity_accuracy([utility_replies[i] for i in items], [utility_answers[i] for i in items],
                                               match)
    out["TA_VQA"] = sum(out[f"VQA_{kind}"] for kind in kinds) / len(kinds)
    return out


@torch.no_grad()
def text_embeddings(clip: nn.Module, tokenizer, captions: list[list[str]], device: torch.device) -> torch.Tensor:
    """Per class, the normalised mean of its captions' normalised CLIP text embeddings."""
    out = []
    for texts in captions:
        encoded = tokenizer(texts, padding=True, return_tensors="pt").to(device)
        features = clip.get_text_features(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"])
        features = getattr(features, "pooler_output", features)
        out.append(F.normalize(F.normalize(features.float(), dim=-1).mean(0), dim=-1))
    return torch.stack(out)


def load_real_assets(cfg: LlavaSuiteConfig) -> LlavaAssets:
    """LLaVA, its CLIP, the mu_llava_* identity data sets and the utility questions from local paths."""
    from unlearnbench.datasets.llava import load_mu_llava, load_vqa_file

    if cfg.data is None:
        raise UnlearnBenchError("llava config=real needs the data root: --data PATH (PATH/mu_llava_<name>/ parquet "
                                "data sets and PATH/vqa.jsonl, see README, 'Real data')")
    root = Path(cfg.data)
    if not root.is_dir():
        raise UnlearnBenchError(f"llava data root not found: {root}")
    # Data first: a wrong path should fail in a second, not after loading a 7B model.
    people = load_mu_llava(root)
    utility = load_vqa_file(root)
    model, processor = load_llava(cfg.model_path, cfg.device, cfg.dtype)
    clip, clip_tokenizer = load_clip(cfg.clip_path, cfg.device)
    check_same_tower(model, clip)
    return LlavaAssets(model, processor, clip, clip_tokenizer, people.images, utility, None, REAL_MAX_NEW_TOKENS,
                       f"llava-{Path(cfg.model_path).name}", identity_questions=people.questions,
                       identity_answers=people.answers, target_names=people.targets)


def check_same_tower(model: nn.Module, clip: nn.Module) -> None:
    """LLaVA's vision tower must be the CLIP's image tower, or SLUG's losses describe another model."""
    tower = model.model.vision_tower.state_dict()
    reference = clip.vision_model.state_dict()
    if set(tower) != set(reference) or any(tower[k].shape != reference[k].shape for k in tower):
        raise UnlearnBenchError("clip_path holds a CLIP whose vision tower does not match the LLaVA model's "
                                "(different architecture); give the CLIP its vision tower came from")
    differing = [k for k in tower if not torch.allclose(tower[k].float().cpu(), reference[k].float().cpu(), atol=1e-3)]
    if differing:
        log.warning("LLaVA's vision tower differs from the CLIP's in %d tensors (first: %s): it was tuned "
                    "after CLIP, so the CLIP text embeddings describe it only approximately",
                    len(differing), differing[0])
