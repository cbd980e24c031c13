"""FID as the field computes it, for the real ``unlearncanvas`` configuration.

torchmetrics' ``FrechetInceptionDistance`` (a maintained implementation whose feature extractor is
torch-fidelity's port of the TensorFlow FID Inception network, the network pytorch-fid, clean-fid and
torch-fidelity all use) with the FID weights read from a local file, since nothing is downloaded here:
torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth``. Images go in as uint8, the format the
library expects, and are resized to 299 x 299 by TensorFlow-1-style bilinear interpolation
(``antialias=False``), as torch-fidelity computes FID. UnlearnCanvas's own script differs (a
torchvision Inception; docs/PROTOCOLS.md, unlearncanvas), so published FIDs are marked as not
comparable.

The reference statistics of one image set are computed once and kept (``reset_real_features=False``);
each scored model only adds its generated images.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from unlearnbench.errors import UnlearnBenchError

FID_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
WEIGHTS_HELP = (f"expected the FID Inception weights as torch-fidelity distributes them ({FID_WEIGHTS_FILE}, "
                "from its GitHub release), a local file: nothing is downloaded")


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] (the diffusion models' range) -> uint8 pixels."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


class FrechetInception:
    """FID of generated images against one fixed reference set."""

    def __init__(self, weights: Path, reference: Iterable[torch.Tensor], device: str | torch.device = "cpu") -> None:
        """``reference``: batches of uint8 images (N, 3, H, W)."""
        self.metric = fid_metric(weights, device)
        self.device = device
        n = 0
        for batch in reference:
            check_uint8(batch, "reference")
            self.metric.update(batch.to(device), real=True)
            n += len(batch)
        if n < 2:
            raise UnlearnBenchError(f"FID needs at least 2 reference images; got {n}")

    @torch.no_grad()
    def __call__(self, generated: torch.Tensor, batch_size: int = 64) -> float:
        """FID of ``generated`` (uint8 (N, 3, H, W)) against the reference set."""
        check_uint8(generated, "generated")
        if len(generated) < 2:
            raise UnlearnBenchError(f"FID needs at least 2 generated images; got {len(generated)}")
        self.metric.reset()  # the generated statistics only: the reference ones are kept
        for batch in generated.split(batch_size):
            self.metric.update(batch.to(self.device), real=False)
        return float(self.metric.compute())


def fid_metric(weights: Path, device: str | torch.device = "cpu"):
    """torchmetrics' FID with the FID Inception weights at ``weights``; errors name what is missing."""
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
    except ImportError as err:
        raise UnlearnBenchError(f"FID needs torchmetrics and torch-fidelity ({err}); pip install -e .") from None
    weights = check_weights(weights)
    try:
        metric = FrechetInceptionDistance(feature=2048, normalize=False, reset_real_features=False, antialias=False,
                                          feature_extractor_weights_path=str(weights))
    except (RuntimeError, KeyError, ValueError, OSError) as err:
        raise UnlearnBenchError(f"{weights} is not the FID Inception network's state dict ({type(err).__name__}: "
                                f"{str(err).splitlines()[0][:200]}); {WEIGHTS_HELP}") from None
    return metric.to(device)  # its statistics accumulate in float64, as torch-fidelity's do


def check_weights(weights: str | Path) -> Path:
    """``weights`` as a Path, if the file is there (checked before anything slow loads)."""
    weights = Path(weights)
    if not weights.is_file():
        raise UnlearnBenchError(f"FID Inception weights not found: {weights}; {WEIGHTS_HELP}")
    return weights


def check_uint8(images: torch.Tensor, what: str) -> None:
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise UnlearnBenchError(f"FID takes {what} images as uint8 (N, 3, H, W); got {images.dtype} "
                                f"{tuple(images.shape)}")
