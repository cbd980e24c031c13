"""Each suite's embedded models as a whole: ``bench.py train-embedded`` (train them from code into the cache,
``--ship`` them over the shipped ones) and the settings the shipped ones were trained from.

Apart from models/shipped.py, which the model modules import to find their folders: this module imports
the model modules, so neither imports the other back.
"""

from __future__ import annotations

from pathlib import Path

from unlearnbench.errors import UnlearnBenchError
from unlearnbench.models.shipped import ship, ship_folders


def train_embedded(suite: str, preset: str = "tiny", reuse: bool = False, ship_them: bool = False) -> list[Path]:
    """Train the embedded models of ``suite`` (preset ``preset``) from code into the cache, or with
    ``reuse`` take them from the cache if there; with ``ship_them`` copy them over the shipped ones.
    Returns the folders written."""
    from unlearnbench.models import tiny_clip, tiny_diffusion, tiny_llava

    if suite not in ("clip", "llava", "unlearncanvas"):
        raise UnlearnBenchError(f"--suite {suite!r} has no embedded models; give clip, llava or unlearncanvas")
    if ship_them:
        ship_folders(suite, preset)  # before hours of training, not after
    if suite == "clip":
        trained = tiny_clip.load_or_train(tiny_clip.preset(preset), weights="trained", retrain=not reuse)
        folders = {trained.config.model: trained.path}
    elif suite == "llava":
        trained = tiny_llava.load_or_train(tiny_llava.preset(preset), weights="trained", retrain=not reuse)
        folders = {"tiny-llava": trained.path}
    else:
        trained = tiny_diffusion.load_or_train(tiny_diffusion.preset(preset), weights="trained", retrain=not reuse)
        folders = {"canvas-classifiers": trained.classifiers.path, "canvas-t2i": trained.path}
    if not ship_them:
        return list(folders.values())
    return [ship(folder, name) for name, folder in folders.items()]


def shipped_settings() -> dict[str, dict]:
    """Each shipped model's name and the settings this code would train it from (models/shipped.py SHIPPED)."""
    from unlearnbench.models import canvas_classifier, tiny_clip, tiny_diffusion, tiny_llava

    canvas = tiny_diffusion.PRESETS["tiny"]
    return {"ub-clip-tiny": tiny_clip.training_settings(tiny_clip.PRESETS["tiny"]),
            "ub-clip-micro": tiny_clip.training_settings(tiny_clip.PRESETS["micro"]),
            "tiny-llava": tiny_llava.training_settings(tiny_llava.PRESETS["tiny"]),
            "canvas-classifiers": canvas_classifier.training_settings(canvas.data, canvas.classifier),
            "canvas-t2i": tiny_diffusion.training_settings(canvas)}
