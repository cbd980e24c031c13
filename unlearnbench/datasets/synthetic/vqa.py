"""The embedded ``llava`` suite's data: procedural identities and question-answer scenes.

Identities are the ``clip`` suite's cartoon faces (``faces.make_identities``), asked "who is
this?"-style questions whose answer is the name. Scenes hold one to three copies of one shape in
one colour, placed in distinct quadrants, asked their colour, shape and count: the utility
questions, whose answers a vision-language model can only give by looking. Everything is
deterministic from the seed; each (domain, class, split) draws from its own random stream.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from unlearnbench.datasets.base import ArrayImageSet, ImageSet
from unlearnbench.datasets.synthetic.clip_data import render_splits
from unlearnbench.datasets.synthetic.draw import Canvas, ellipse, jitter_colour, rect
from unlearnbench.datasets.synthetic.faces import draw_face, make_identities

SPLITS = ("train", "val", "test")

IDENTITY_QUESTIONS = ("who is this?", "who is in the picture?", "what is the name of this person?")


def identity_question(index: int) -> str:
    """The question asked about face ``index`` of its split. Fixed by the face, not by where it stands in
    the list being asked, so a quick forget check and a full validation ask every face the same."""
    return IDENTITY_QUESTIONS[index % len(IDENTITY_QUESTIONS)]

UTILITY_QUESTIONS = {  # question type -> the question asked of every scene
    "colour": "what colour is the shape?",
    "shape": "what shape is in the picture?",
    "count": "how many shapes are there?",
}
COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (50, 80, 230), "yellow": (240, 220, 40)}
SHAPES = ("circle", "square", "triangle")
COUNTS = ("one", "two", "three")
# The CLIP tower is trained on scene captions too, so its features carry what the questions ask.
PLURAL = {"circle": "circles", "square": "squares", "triangle": "triangles"}


@dataclass(frozen=True)
class SceneClass:
    count: int  # 1..3
    colour: str
    shape: str

    @property
    def caption(self) -> str:
        noun = self.shape if self.count == 1 else PLURAL[self.shape]
        return f"{COUNTS[self.count - 1]} {self.colour} {noun}"

    def answer(self, kind: str) -> str:
        return {"colour": self.colour, "shape": self.shape, "count": COUNTS[self.count - 1]}[kind]


SCENE_CLASSES = [SceneClass(n, colour, shape) for n, colour, shape in
                 itertools.product(range(1, len(COUNTS) + 1), COLOURS, SHAPES)]


@dataclass
class Questions:
    """Question-answer items over an image set: item i asks ``questions[i]`` about
    ``images[image_index[i]]`` and expects ``answers[i]``; ``kinds[i]`` names its question type."""

    images: ImageSet
    image_index: list[int]
    kinds: list[str]
    questions: list[str]
    answers: list[str]

    def __post_init__(self) -> None:
        n = len(self.image_index)
        if not len(self.kinds) == len(self.questions) == len(self.answers) == n:
            raise ValueError("image_index, kinds, questions and answers must have one entry per item")

    def __len__(self) -> int:
        return len(self.image_index)

    def of_kind(self, kind: str) -> list[int]:
        return [i for i, k in enumerate(self.kinds) if k == kind]


@dataclass(frozen=True)
class VqaDataConfig:
    n_identities: int = 10
    image_size: int = 32
    # Per identity: train, val, test. 30 validation faces: with 10, meeting FA 0 on validation left up to 30%
    # of the target's test faces named (mean 10% for slug over 5 targets); with 30, mean 1% and at most 5%.
    identity_images: tuple[int, int, int] = (60, 30, 20)
    scene_images: tuple[int, int, int] = (40, 3, 6)  # per scene class (36 classes): train, val, test
    seed: int = 0


@dataclass
class VqaData:
    identities: dict[str, ArrayImageSet]  # split -> faces labelled by identity name
    scenes: dict[str, ArrayImageSet]  # split -> scenes labelled by scene class (caption)
    utility: dict[str, Questions]  # split -> every utility question about every scene


def draw_scene(scene: SceneClass, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """``scene.count`` shapes in distinct quadrants on a grey background, as uint8 (size, size, 3)."""
    grey = rng.uniform(70, 190)
    canvas = Canvas(size, np.clip(grey + rng.normal(0, 8, 3), 0, 255))
    x, y = canvas.x, canvas.y
    colour = jitter_colour(rng, COLOURS[scene.colour], 12)
    for quadrant in rng.choice(4, size=scene.count, replace=False):
        cx = (-0.5 if quadrant % 2 == 0 else 0.5) + rng.uniform(-0.08, 0.08)
        cy = (-0.5 if quadrant < 2 else 0.5) + rng.uniform(-0.08, 0.08)
        r = rng.uniform(0.3, 0.4)
        if scene.shape == "circle":
            mask = ellipse(x, y, cx, cy, r, r)
        elif scene.shape == "square":
            mask = rect(x, y, cx - 0.85 * r, cy - 0.85 * r, cx + 0.85 * r, cy + 0.85 * r)
        else:  # an upright triangle: below the apex, inside both slanted edges
            top, bottom = cy - r, cy + 0.8 * r
            half_width = (y - top) / (bottom - top) * r
            mask = (y >= top) & (y <= bottom) & (np.abs(x - cx) <= half_width)
        canvas.fill(mask, colour)
    return canvas.to_uint8(rng, noise=5.0)


def scene_questions(scenes: ArrayImageSet) -> Questions:
    """Every utility question about every scene, grouped by image."""
    index, kinds, questions, answers = [], [], [], []
    for i, label in enumerate(scenes.labels.tolist()):
        for kind, question in UTILITY_QUESTIONS.items():
            index.append(i)
            kinds.append(kind)
            questions.append(question)
            answers.append(SCENE_CLASSES[label].answer(kind))
    return Questions(scenes, index, kinds, questions, answers)


def make_vqa_data(cfg: VqaDataConfig) -> VqaData:
    people = make_identities(cfg.n_identities, cfg.seed)

    identities = render_splits(people, draw_face, cfg.identity_images, 0, cfg.seed, cfg.image_size)
    # Domain 2: the clip suite's objects use 1, so the two generators never share a stream.
    scenes = render_splits(SCENE_CLASSES, draw_scene, cfg.scene_images, 2, cfg.seed, cfg.image_size,
                           [s.caption for s in SCENE_CLASSES])
    return VqaData(identities, scenes, {split: scene_questions(scenes[split]) for split in SPLITS})
