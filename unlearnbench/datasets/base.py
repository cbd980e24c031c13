"""Labelled image collections: in memory (procedural, or encoded as data sets store them) or on disk.

All kinds index the same way: ``images[i]`` is a PIL image, ``images.labels[i]`` its class index
into ``images.classnames``. Suites turn them into model-ready batches.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from unlearnbench.errors import UnlearnBenchError


class ImageSet:
    """Base of labelled image sets; ``classnames[labels[i]]`` names image i."""

    def __init__(self, labels: Sequence[int], classnames: list[str]) -> None:
        self.labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        self.classnames = list(classnames)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> Image.Image:
        raise NotImplementedError

    def subset(self, indices: Sequence[int]) -> ImageSet:
        raise NotImplementedError

    def concat(self, other: ImageSet) -> ImageSet:
        """Both sets in one; ``other``'s labels are shifted past this set's class names."""
        raise NotImplementedError

    def _merged_labels(self, other: ImageSet) -> tuple[np.ndarray, list[str]]:
        labels = np.concatenate([self.labels.numpy(), other.labels.numpy() + len(self.classnames)])
        return labels, self.classnames + other.classnames


class ArrayImageSet(ImageSet):
    """Images held as one uint8 array (N, H, W, 3): the procedural data sets."""

    def __init__(self, pixels: np.ndarray, labels: Sequence[int], classnames: list[str]) -> None:
        super().__init__(labels, classnames)
        if pixels.ndim != 4 or pixels.shape[-1] != 3 or pixels.dtype != np.uint8:
            raise ValueError(f"pixels must be uint8 (N, H, W, 3); got {pixels.dtype} {pixels.shape}")
        if len(pixels) != len(self.labels):
            raise ValueError(f"{len(pixels)} images but {len(self.labels)} labels")
        self.pixels = pixels

    def __getitem__(self, i: int) -> Image.Image:
        return Image.fromarray(self.pixels[i])

    def subset(self, indices: Sequence[int]) -> ArrayImageSet:
        idx = np.asarray(indices, dtype=np.int64)
        return ArrayImageSet(self.pixels[idx], self.labels.numpy()[idx], self.classnames)

    def concat(self, other: ImageSet) -> ArrayImageSet:
        if not isinstance(other, ArrayImageSet):
            raise TypeError(f"cannot concatenate ArrayImageSet and {type(other).__name__}")
        return ArrayImageSet(np.concatenate([self.pixels, other.pixels]), *self._merged_labels(other))

    def as_tensor(self, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
        """All images as a normalised float tensor (N, 3, H, W), without a PIL round trip."""
        x = torch.from_numpy(self.pixels).permute(0, 3, 1, 2).float().div_(255)
        return (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


class FileImageSet(ImageSet):
    """Images read from files on demand: the real data sets."""

    def __init__(self, paths: Sequence[Path], labels: Sequence[int], classnames: list[str]) -> None:
        super().__init__(labels, classnames)
        if len(paths) != len(self.labels):
            raise ValueError(f"{len(paths)} paths but {len(self.labels)} labels")
        self.paths = [Path(p) for p in paths]

    def __getitem__(self, i: int) -> Image.Image:
        path = self.paths[i]
        try:
            with Image.open(path) as image:
                return image.convert("RGB")
        except FileNotFoundError:
            raise UnlearnBenchError(f"image file missing: {path}") from None
        except (UnidentifiedImageError, OSError) as err:
            raise UnlearnBenchError(f"cannot read image {path}: {err} (corrupt or not an image?)") from None

    def subset(self, indices: Sequence[int]) -> FileImageSet:
        return FileImageSet([self.paths[i] for i in indices], self.labels.numpy()[list(indices)],
                            self.classnames)

    def concat(self, other: ImageSet) -> FileImageSet:
        if not isinstance(other, FileImageSet):
            raise TypeError(f"cannot concatenate FileImageSet and {type(other).__name__}")
        return FileImageSet(self.paths + other.paths, *self._merged_labels(other))


class EncodedImageSet(ImageSet):
    """Images held as encoded files in memory (JPEG/PNG bytes, as Hugging Face parquet datasets store
    them), decoded on demand; ``sources[i]`` names where image i came from, for error messages."""

    def __init__(self, encoded: Sequence[bytes], labels: Sequence[int], classnames: list[str],
                 sources: Sequence[str]) -> None:
        super().__init__(labels, classnames)
        if not len(encoded) == len(sources) == len(self.labels):
            raise ValueError(f"{len(encoded)} images, {len(sources)} sources but {len(self.labels)} labels")
        self.encoded = list(encoded)
        self.sources = list(sources)

    def __getitem__(self, i: int) -> Image.Image:
        try:
            with Image.open(io.BytesIO(self.encoded[i])) as image:
                return image.convert("RGB")
        except (UnidentifiedImageError, OSError) as err:
            raise UnlearnBenchError(f"cannot decode image {self.sources[i]}: {err} (corrupt?)") from None

    def subset(self, indices: Sequence[int]) -> EncodedImageSet:
        return EncodedImageSet([self.encoded[i] for i in indices], self.labels.numpy()[list(indices)],
                               self.classnames, [self.sources[i] for i in indices])

    def concat(self, other: ImageSet) -> EncodedImageSet:
        if not isinstance(other, EncodedImageSet):
            raise TypeError(f"cannot concatenate EncodedImageSet and {type(other).__name__}")
        return EncodedImageSet(self.encoded + other.encoded, *self._merged_labels(other), self.sources + other.sources)


class ImageTensors:
    """Model-ready tensors of an ImageSet, one class for every suite: computed once, without a PIL
    round trip, for in-memory arrays already at the model's input size (normalised by ``mean`` and
    ``std``); made on demand by ``transform`` (PIL images -> one batch tensor: open_clip's preprocess,
    a Hugging Face image processor) for files, encoded images and arrays of another size."""

    def __init__(self, images: ImageSet, mean: Sequence[float], std: Sequence[float],
                 transform: Callable[[list[Image.Image]], torch.Tensor] | None = None,
                 size: int | None = None) -> None:
        self.images = images
        self.transform = transform
        self._all = None
        if isinstance(images, ArrayImageSet) and (size is None or images.pixels.shape[1] == size):
            self._all = images.as_tensor(mean, std)
        elif transform is None:
            raise ValueError(f"{type(images).__name__} of {len(images)} images needs a transform to become tensors")

    def __len__(self) -> int:
        return len(self.images)

    def take(self, indices: Sequence[int] | torch.Tensor) -> torch.Tensor:
        indices = [int(i) for i in indices]
        if self._all is not None:
            return self._all[indices]
        return self.transform([self.images[i] for i in indices])

    def batches(self, batch_size: int):
        for start in range(0, len(self), batch_size):
            yield self.take(range(start, min(start + batch_size, len(self))))
