"""UnlearnCanvas (Zhang et al. 2024, arXiv:2402.11846) for the real ``unlearncanvas`` suite.

The class lists and their order are the labels of the official style and object classifiers (the
``theme_available`` / ``class_available`` lists of the OPTML-Group/UnlearnCanvas repository). The style
list is alphabetical and the photo-realistic seed images are one of its classes, ``Seed_Images``, in
their alphabetical place (index 38): 50 styles plus photo make the 51 style labels.

On disk the data set is ``root/<Style>/<Object>/<n>.jpg`` with ``n`` = 1 ... 20 per (style, object)
pair; the photos are the ``Seed_Images`` style folder.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from unlearnbench.datasets.base import FileImageSet
from unlearnbench.errors import UnlearnBenchError

PHOTO_STYLE = "Seed_Images"  # the photo-realistic images every style was painted from
UNLEARNCANVAS_STYLES = (
    "Abstractionism", "Artist_Sketch", "Blossom_Season", "Bricks", "Byzantine", "Cartoon", "Cold_Warm",
    "Color_Fantasy", "Comic_Etch", "Crayon", "Cubism", "Dadaism", "Dapple", "Defoliation", "Early_Autumn",
    "Expressionism", "Fauvism", "French", "Glowing_Sunset", "Gorgeous_Love", "Greenfield", "Impressionism",
    "Ink_Art", "Joy", "Liquid_Dreams", "Magic_Cube", "Meta_Physics", "Meteor_Shower", "Monet", "Mosaic",
    "Neon_Lines", "On_Fire", "Pastel", "Pencil_Drawing", "Picasso", "Pop_Art", "Red_Blue_Ink", "Rust",
    PHOTO_STYLE, "Sketch", "Sponge_Dabbed", "Structuralism", "Superstring", "Surrealism", "Ukiyoe",
    "Van_Gogh", "Vibrant_Flow", "Warm_Love", "Warm_Smear", "Watercolor", "Winter",
)
UNLEARNCANVAS_OBJECTS = (
    "Architectures", "Bears", "Birds", "Butterfly", "Cats", "Dogs", "Fishes", "Flame", "Flowers", "Frogs",
    "Horses", "Human", "Jellyfish", "Rabbits", "Sandwiches", "Sea", "Statues", "Towers", "Trees",
    "Waterfalls",
)

# The evaluation protocol of the paper's machine-unlearning benchmark.
PROMPT_TEMPLATE = "A {object} image in {style} style."
SEEDS = (188, 288, 588, 688, 888)
DDIM_STEPS = 100
GUIDANCE = 9.0

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
LAYOUT = ("expected root/<Style>/<Object>/<n>.jpg as in the UnlearnCanvas release: one folder per style "
          "named as in the classifier's list (e.g. Van_Gogh/, and Seed_Images/ for the photos), inside it one "
          "folder per object (e.g. Architectures/, Cats/), holding 1.jpg ... 20.jpg")


def style_prompt_name(style: str) -> str:
    """How a style is written in prompts: underscores become spaces, the photos included ("Seed Images"),
    as the official unlearning evaluation scripts write every style (its fine-tuning sampler's "Photo
    style" special case is not what the unlearned models are scored with; docs/PROTOCOLS.md)."""
    _check_names([style], UNLEARNCANVAS_STYLES, "style")
    return style.replace("_", " ")


def unlearncanvas_prompt(style: str, object_name: str) -> str:
    """The generation prompt for one (style, object) pair, e.g. "A Cats image in Van Gogh style."."""
    _check_names([object_name], UNLEARNCANVAS_OBJECTS, "object")
    return PROMPT_TEMPLATE.format(object=object_name, style=style_prompt_name(style))


@dataclass(frozen=True)
class CanvasImages:
    """Image files with both labels: ``styles[style_labels[i]]`` and ``objects[object_labels[i]]`` name file i.

    ``styles`` and ``objects`` are always the classifiers' full label lists, so a label is the class
    index the style or object classifier should predict, whichever subset was loaded.
    """

    paths: list[Path]
    style_labels: torch.Tensor
    object_labels: torch.Tensor
    styles: list[str]
    objects: list[str]

    def __len__(self) -> int:
        return len(self.paths)

    def by_style(self) -> FileImageSet:
        """The images labelled by style, for the style classifier."""
        return FileImageSet(self.paths, self.style_labels.tolist(), self.styles)

    def by_object(self) -> FileImageSet:
        """The images labelled by object, for the object classifier."""
        return FileImageSet(self.paths, self.object_labels.tolist(), self.objects)


def load_unlearncanvas_images(root: Path, styles: Sequence[str] | None = None,
                              objects: Sequence[str] | None = None,
                              per_pair: int | None = None) -> CanvasImages:
    """The images of every requested (style, object) pair, in classifier label order.

    ``styles`` / ``objects`` default to all 51 styles (photo included) and all 20 objects; names are the
    folder names (``"Van_Gogh"``, not ``"Van Gogh"``). Within a pair the files are sorted by their number
    (1.jpg, 2.jpg, ..., 10.jpg) and ``per_pair`` keeps the first ones; every pair must have that many.
    Images are only listed here; ``by_style()[i]`` / ``by_object()[i]`` open them.
    """
    root = Path(root)
    styles = _check_names(UNLEARNCANVAS_STYLES if styles is None else styles, UNLEARNCANVAS_STYLES, "style")
    objects = _check_names(UNLEARNCANVAS_OBJECTS if objects is None else objects, UNLEARNCANVAS_OBJECTS,
                           "object")
    if per_pair is not None and per_pair < 1:
        raise UnlearnBenchError(f"per_pair must be a positive number of images per (style, object) pair or "
                                f"None for all; got {per_pair}")
    if not root.is_dir():
        raise UnlearnBenchError(f"UnlearnCanvas root folder not found: {root}; {LAYOUT}")

    paths: list[Path] = []
    style_labels: list[int] = []
    object_labels: list[int] = []
    for style in styles:
        style_dir = _subfolder(root, style, "style")
        for object_name in objects:
            object_dir = _subfolder(style_dir, object_name, "object")
            files = _numbered_images(object_dir)
            if not files:
                raise UnlearnBenchError(f"UnlearnCanvas folder {object_dir} holds no images "
                                        f"(.jpg/.jpeg/.png); {LAYOUT}")
            if per_pair is not None:
                if len(files) < per_pair:
                    raise UnlearnBenchError(f"UnlearnCanvas folder {object_dir} holds {len(files)} images but "
                                            f"per_pair={per_pair} asks for {per_pair}: lower per_pair or "
                                            f"complete the folder")
                files = files[:per_pair]
            paths += files
            style_labels += [UNLEARNCANVAS_STYLES.index(style)] * len(files)
            object_labels += [UNLEARNCANVAS_OBJECTS.index(object_name)] * len(files)
    return CanvasImages(paths, torch.tensor(style_labels, dtype=torch.int64),
                        torch.tensor(object_labels, dtype=torch.int64),
                        list(UNLEARNCANVAS_STYLES), list(UNLEARNCANVAS_OBJECTS))


def _check_names(names: Sequence[str], valid: Sequence[str], kind: str) -> list[str]:
    """The requested names in label order, or an error for an unknown or repeated one."""
    if isinstance(names, str):
        raise UnlearnBenchError(f"UnlearnCanvas {kind}s must be a list of names; got the string {names!r} "
                                f"(write [{names!r}])")
    names = list(names)
    for name in names:
        if name not in valid:
            close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UnlearnBenchError(f"unknown UnlearnCanvas {kind} {name!r}.{hint} Available: {', '.join(valid)}")
        if names.count(name) > 1:
            raise UnlearnBenchError(f"UnlearnCanvas {kind} {name!r} is requested twice")
    return sorted(names, key=list(valid).index)


def _subfolder(parent: Path, name: str, kind: str) -> Path:
    folder = parent / name
    if folder.is_dir():
        return folder
    present = [p.name for p in parent.iterdir() if p.is_dir()]
    close = difflib.get_close_matches(name, present, n=1, cutoff=0.6)
    same_but_case = [p for p in present if p.lower() == name.lower()]
    hint = (f" (found {same_but_case[0]!r}: folder names are case-sensitive)" if same_but_case
            else f" (found {close[0]!r}: rename it to {name!r})" if close else "")
    raise UnlearnBenchError(f"UnlearnCanvas {kind} folder not found: {folder}{hint}; {LAYOUT}")


def _numbered_images(folder: Path) -> list[Path]:
    """Image files sorted by number (2.jpg before 10.jpg); names that are not numbers come last."""
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(files, key=lambda p: (0, int(p.stem), p.name) if p.stem.isdecimal() else (1, 0, p.name))
