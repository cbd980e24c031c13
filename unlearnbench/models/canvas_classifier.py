"""The MiniCanvas judges: small CNN style and object classifiers trained on the procedural images.

They play the part of UnlearnCanvas's style and object classifiers: the ``unlearncanvas`` suite
labels generated images with them (UA, IRA, CRA), and their penultimate features stand in for
Inception features in an FID-like distance. Both take images the way the diffusion models make
them, float (N, 3, H, W) in [-1, 1]. Training adds noise, shifts and mirrors so that the judges
stay calibrated on generated images, which are never quite as clean as the drawn ones. Cached by
the hash of the data and training configs.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from unlearnbench.cache import atomic_write, atomic_write_text, read_cached, read_record
from unlearnbench.datasets.synthetic.canvas import CanvasData, CanvasDataConfig, make_canvas_data
from unlearnbench.identity import code_fingerprint
from unlearnbench.models.shipped import CARD, start_training, is_shipped, model_folder, write_card

log = logging.getLogger(__name__)

ACCURACY_BAR = 0.97  # held-out top-1 each classifier must reach on the default data


@dataclass(frozen=True)
class CanvasClassifierConfig:
    steps: int = 300  # ~17 s on one thread; 120 already clears the bar on the default data
    batch_size: int = 64
    lr: float = 2e-3
    width: int = 16  # channels of the first conv block; the second has twice as many
    feature_dim: int = 128  # penultimate layer, the features of the FID-like distance
    noise: float = 0.15  # max std of the Gaussian noise added to training images (in [-1, 1] units)
    seed: int = 0


class CanvasCNN(nn.Module):
    """Two conv blocks, a feature layer and a linear head: images in [-1, 1] -> logits."""

    def __init__(self, n_classes: int, width: int, feature_dim: int) -> None:
        super().__init__()

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2))

        self.body = nn.Sequential(block(3, width), block(width, 2 * width), nn.AdaptiveAvgPool2d(4),
                                  nn.Flatten(), nn.Linear(2 * width * 16, feature_dim), nn.ReLU())
        self.head = nn.Linear(feature_dim, n_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (N, feature_dim)."""
        return self.body(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


@dataclass
class CanvasClassifiers:
    style: CanvasCNN
    object: CanvasCNN
    metrics: dict[str, float]  # held-out test accuracy of each, and training seconds
    path: Path

    @torch.no_grad()
    def classify(self, images: torch.Tensor, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted (style, object) labels of float images in [-1, 1]."""
        styles, objects = [], []
        for chunk in images.split(batch_size):
            styles.append(self.style(chunk).argmax(dim=1))
            objects.append(self.object(chunk).argmax(dim=1))
        return torch.cat(styles), torch.cat(objects)


def training_settings(data_cfg: CanvasDataConfig, cfg: CanvasClassifierConfig) -> dict:
    return json.loads(json.dumps({"data": asdict(data_cfg), "train": asdict(cfg)}))


def load_or_train_classifiers(data_cfg: CanvasDataConfig, cfg: CanvasClassifierConfig = CanvasClassifierConfig(),
                              weights: str = "trained", ships: bool = False,
                              retrain: bool = False) -> CanvasClassifiers:
    """The trained classifiers for ``data_cfg``: shipped (``weights="shipped"`` and ``ships``), else from the
    cache, training them there first if absent (or ``retrain``).

    Both come back in eval mode with frozen parameters (gradients still flow to the input).
    """
    settings = training_settings(data_cfg, cfg)
    folder = model_folder("canvas-classifiers", settings, weights, ships)
    paths = {name: folder / f"{name}.safetensors" for name in ("style", "object")}
    info = folder / "train.json"
    n_classes = {"style": data_cfg.n_styles, "object": data_cfg.n_objects}

    def read_weights(path: Path, name: str) -> CanvasCNN:
        model = CanvasCNN(n_classes[name], cfg.width, cfg.feature_dim)
        model.load_state_dict(load_file(str(path)))
        return model

    models = {name: None if retrain else read_cached(path, lambda p, name=name: read_weights(p, name))
              for name, path in paths.items()}
    record = None if retrain else read_cached(info, read_record)
    trained_now = record is None or any(model is None for model in models.values())
    if trained_now:
        start_training(folder)
        data = make_canvas_data(data_cfg)
        models, metrics = train_classifiers(cfg, data)
        for name, model in models.items():
            state = {k: v.contiguous() for k, v in model.state_dict().items()}
            atomic_write(paths[name], lambda tmp, state=state: save_file(state, str(tmp)))
        record = {"data": asdict(data_cfg), "config": asdict(cfg), "metrics": metrics}
        atomic_write_text(info, json.dumps(record, indent=2))
    if not is_shipped(folder) and not (folder / CARD).exists():
        write_card(folder, "canvas-classifiers", settings, record, code_fingerprint(train_classifiers), trained_now)
    metrics = record["metrics"]
    for model in models.values():
        model.eval().requires_grad_(False)
    return CanvasClassifiers(style=models["style"], object=models["object"], metrics=metrics, path=folder)


def train_classifiers(cfg: CanvasClassifierConfig, data: CanvasData) -> tuple[dict[str, CanvasCNN], dict[str, float]]:
    start = time.perf_counter()
    train, test = data.splits["train"], data.splits["test"]
    images, test_images = train.images(), test.images()
    models, metrics = {}, {}
    for name, labels, test_labels, n_classes in (
            ("style", train.style_labels, test.style_labels, len(data.styles)),
            ("object", train.object_labels, test.object_labels, len(data.objects))):
        torch.manual_seed(cfg.seed)
        model = CanvasCNN(n_classes, cfg.width, cfg.feature_dim)
        _fit(model, images, labels, cfg, desc=f"training canvas {name} classifier")
        model.eval()
        with torch.no_grad():
            predicted = torch.cat([model(chunk).argmax(dim=1) for chunk in test_images.split(512)])
        metrics[f"{name}_test_acc"] = (predicted == test_labels).float().mean().item()
        models[name] = model
    metrics["train_seconds"] = time.perf_counter() - start
    report = (f"canvas classifiers: held-out accuracy style {metrics['style_test_acc']:.3f}, object "
              f"{metrics['object_test_acc']:.3f} (bar {ACCURACY_BAR}), trained in {metrics['train_seconds']:.0f} s")
    print(report)
    log.info(report)
    return models, metrics


def _fit(model: CanvasCNN, images: torch.Tensor, labels: torch.Tensor, cfg: CanvasClassifierConfig,
         desc: str) -> None:
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    model.train()
    bar = tqdm(range(cfg.steps), desc=desc, unit="step")
    for _ in bar:
        idx = torch.randint(len(images), (cfg.batch_size,), generator=gen)
        x = _augment(images[idx], cfg.noise, gen)
        loss = F.cross_entropy(model(x), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)


def _augment(x: torch.Tensor, noise: float, gen: torch.Generator) -> torch.Tensor:
    """Random mirrors, the batch shifted by up to one pixel, and Gaussian noise of random strength."""
    n = len(x)
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    dy, dx = torch.randint(-1, 2, (2,), generator=gen).tolist()
    x = torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
    sigma = torch.rand(n, 1, 1, 1, generator=gen) * noise
    return x + sigma * torch.randn(x.shape, generator=gen)


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """The Fréchet distance between Gaussians fitted to two feature sets (N, D): FID's formula,
    on whatever features are given (here the classifiers' penultimate layer)."""
    a, b = features_a.double().numpy(), features_b.double().numpy()
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # tr sqrt(A B) = tr sqrt(A^1/2 B A^1/2), whose argument is symmetric PSD: eigh stays real and
    # stable where scipy's sqrtm of the product warns about singular matrices (N < D, dead units).
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(values.clip(min=0))) @ vectors.T
    cross = np.sqrt(np.linalg.eigvalsh(root_a @ cov_b @ root_a).clip(min=0)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)
