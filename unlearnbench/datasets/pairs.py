"""Image-text pairs for the real ``clip`` suite: a webdataset tar shard or a folder of image + caption files.

SLUG's retain set is one LAION-400M shard as img2dataset writes it (``00000.tar``): members ``<key>.jpg``
and ``<key>.txt`` (often also ``<key>.json``) that share a key. A folder of ``<key>.jpg`` + ``<key>.txt``
files is the same thing unpacked. The tar is read with the standard library; images are read from it on
demand, so a shard of ~8,000 pairs costs its member offsets in memory, not its pixels.
"""

from __future__ import annotations

import io
import logging
import tarfile
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from unlearnbench.datasets.base import FileImageSet, ImageSet
from unlearnbench.errors import UnlearnBenchError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = ("jpg", "jpeg", "png", "webp")  # what the reference's webdataset pipeline accepts
CAPTION_SUFFIX = "txt"
LAYOUT = ("expected a webdataset tar shard (members NNN.jpg + NNN.txt sharing a key, as img2dataset writes "
          "LAION shards) or a folder of image + caption files (x.jpg + x.txt)")


def split_key(name: str) -> tuple[str, str]:
    """``"dir/000123.jpg"`` -> ``("dir/000123", "jpg")``: webdataset's rule, the key ends at the first dot
    of the file name and the suffix (lower-cased) is the rest."""
    folder, _, base = name.rpartition("/")
    stem, dot, suffix = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), (suffix.lower() if dot else "")


class TarImageSet(ImageSet):
    """Images stored as members of one uncompressed tar file, read by offset when indexed."""

    def __init__(self, tar_path: Path, members: Sequence[tuple[str, int, int]], labels: Sequence[int],
                 classnames: list[str]) -> None:
        super().__init__(labels, classnames)
        if len(members) != len(self.labels):
            raise ValueError(f"{len(members)} members but {len(self.labels)} labels")
        self.tar_path = Path(tar_path)
        self.members = list(members)  # (member name, data offset, size)

    def __getitem__(self, i: int) -> Image.Image:
        name, offset, size = self.members[i]
        with self.tar_path.open("rb") as f:
            f.seek(offset)
            data = f.read(size)
        try:
            with Image.open(io.BytesIO(data)) as image:
                return image.convert("RGB")
        except (UnidentifiedImageError, OSError) as err:
            raise UnlearnBenchError(f"cannot read image {name} in {self.tar_path}: {err} "
                                    "(corrupt or not an image?)") from None

    def subset(self, indices: Sequence[int]) -> TarImageSet:
        return TarImageSet(self.tar_path, [self.members[i] for i in indices], self.labels.numpy()[list(indices)],
                           self.classnames)

    def concat(self, other: ImageSet) -> TarImageSet:
        if not isinstance(other, TarImageSet) or other.tar_path != self.tar_path:
            raise TypeError("TarImageSet concatenates only with images of the same tar file")
        return TarImageSet(self.tar_path, self.members + other.members, *self._merged_labels(other))


def load_pairs(path: Path, what: str = "retain_pairs") -> ImageSet:
    """Every complete (image, caption) pair at ``path``, in shard (or sorted file) order.

    The result is labelled by its own captions: image i has label i and ``classnames[i]`` is its caption.
    Samples without a caption or without an image are skipped, as the reference's loader skips them.
    """
    path = Path(path)
    if path.is_file():
        pairs = _tar_pairs(path, what)
    elif path.is_dir():
        pairs = _folder_pairs(path, what)
    else:
        raise UnlearnBenchError(f"{what}: no such file or folder: {path}; {LAYOUT}")
    if len(pairs) == 0:
        raise UnlearnBenchError(f"{what}: {path} holds no image + caption pairs; {LAYOUT}")
    return pairs


def _tar_pairs(path: Path, what: str) -> TarImageSet:
    samples: dict[str, dict[str, tarfile.TarInfo]] = {}
    try:
        with tarfile.open(path, mode="r:") as tar:
            for member in tar:
                if member.isfile():
                    key, suffix = split_key(member.name)
                    samples.setdefault(key, {})[suffix] = member
            captions = {key: tar.extractfile(members[CAPTION_SUFFIX]).read() for key, members in samples.items()
                        if CAPTION_SUFFIX in members}
    except tarfile.ReadError as err:
        raise UnlearnBenchError(f"{what}: {path} is not an uncompressed tar file ({err}); {LAYOUT}") from None
    members, texts = [], []
    for key, found in samples.items():
        image = next((found[s] for s in IMAGE_SUFFIXES if s in found), None)
        if image is not None and key in captions:
            members.append((image.name, image.offset_data, image.size))
            texts.append(_caption(captions[key], f"{path}:{key}.{CAPTION_SUFFIX}"))
    _log_skipped(path, len(samples), len(members))
    return TarImageSet(path, members, range(len(texts)), texts)


def _folder_pairs(path: Path, what: str) -> FileImageSet:
    samples: dict[str, dict[str, Path]] = {}
    for file in sorted(p for p in path.iterdir() if p.is_file()):
        key, suffix = split_key(file.name)
        samples.setdefault(key, {})[suffix] = file
    images, texts = [], []
    for found in samples.values():
        image = next((found[s] for s in IMAGE_SUFFIXES if s in found), None)
        if image is not None and CAPTION_SUFFIX in found:
            images.append(image)
            texts.append(_caption(found[CAPTION_SUFFIX].read_bytes(), str(found[CAPTION_SUFFIX])))
    _log_skipped(path, len(samples), len(images))
    return FileImageSet(images, range(len(texts)), texts)


def _caption(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError as err:
        raise UnlearnBenchError(f"caption {where} is not UTF-8 text: {err}") from None


def _log_skipped(path: Path, keys: int, pairs: int) -> None:
    if keys > pairs:
        log.info("%s: %d image + caption pairs; %d keys without both skipped", path, pairs, keys - pairs)
