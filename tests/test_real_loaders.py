"""The real ``clip`` loaders (ImageNet val, CelebA identities, image-text pairs) on tiny trees in the documented
layouts, for both protocols."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from fixtures_real import (DISTRACTOR_IDENTITY, SLUG_FREQUENT, SLUG_NOT_FREQUENT, SLUG_WITHOUT_IMAGES, make_celeba_tree,
                           make_imagenet_tree, make_pairs_folder, make_pairs_shard, make_slug_celeba_tree, pair_caption,
                           tiny_jpeg, valprep_file_list)
from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

from unlearnbench.datasets.base import FileImageSet
from unlearnbench.datasets.celeba import load_celeba_identities, load_celeba_slug
from unlearnbench.datasets.imagenet import load_imagenet_slug, load_imagenet_splits, slug_subset
from unlearnbench.datasets.pairs import load_pairs
from unlearnbench.errors import UnlearnBenchError

SPLITS = ("train", "val", "test")
IMAGENET_LAYOUT = "root/val/<wnid>/*.JPEG"


def assert_disjoint(splits: dict[str, FileImageSet]) -> None:
    all_paths = [p for split in SPLITS for p in splits[split].paths]
    assert len(all_paths) == len(set(all_paths))


def assert_rgb(images: FileImageSet) -> None:
    image = images[0]
    assert image.mode == "RGB" and image.size == (8, 8)


# ---- ImageNet ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def imagenet_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("imagenet")
    make_imagenet_tree(root, images_per_class=3)
    return root


@pytest.fixture
def small_imagenet(tmp_path: Path) -> Path:
    """A fresh one-image-per-class tree that a test may damage."""
    make_imagenet_tree(tmp_path, images_per_class=1)
    return tmp_path


def test_imagenet_splits_one_image_per_class_each(imagenet_root: Path) -> None:
    splits = load_imagenet_splits(imagenet_root)
    assert set(splits) == set(SPLITS)
    for split in SPLITS:
        # 3 images per class: test, val and train each get max(1, round(fraction * 3)) = 1.
        assert splits[split].labels.tolist() == list(range(1000))
        assert splits[split].classnames == list(IMAGENET_CLASSNAMES)
        pairs = zip(splits[split].paths, splits[split].labels)
        assert all(p.parent.name == f"n{label:08d}" for p, label in pairs)
    assert splits["test"].classnames[0] == IMAGENET_CLASSNAMES[0]
    assert_disjoint(splits)
    assert_rgb(splits["test"])


def test_imagenet_is_deterministic_and_seeded(imagenet_root: Path) -> None:
    first, again = load_imagenet_splits(imagenet_root), load_imagenet_splits(imagenet_root)
    for split in SPLITS:
        assert first[split].paths == again[split].paths
    assert load_imagenet_splits(imagenet_root, seed=1)["test"].paths != first["test"].paths


def test_imagenet_test_is_dealt_first_while_files_remain(imagenet_root: Path) -> None:
    splits = load_imagenet_splits(imagenet_root, test_fraction=0.5)
    # round(0.5 * 3) = 2 test, then 1 val, and nothing is left for train.
    assert len(splits["test"]) == 2000 and len(splits["val"]) == 1000 and len(splits["train"]) == 0
    assert splits["train"].classnames == list(IMAGENET_CLASSNAMES)


def test_imagenet_accepts_image_extensions_in_any_case(small_imagenet: Path) -> None:
    class_dir = small_imagenet / "val" / "n00000000"
    for name in ("a.jpg", "b.Jpeg", "c.PNG"):
        (class_dir / name).write_bytes(tiny_jpeg())
    (class_dir / "notes.txt").write_text("not an image")
    test = load_imagenet_splits(small_imagenet, test_fraction=1.0)["test"]
    assert sorted(p.name for p in test.paths if p.parent == class_dir) == [
        "ILSVRC2012_val_00000001.JPEG", "a.jpg", "b.Jpeg", "c.PNG"]


def test_imagenet_missing_root(tmp_path: Path) -> None:
    with pytest.raises(UnlearnBenchError, match="not found") as err:
        load_imagenet_splits(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value) and IMAGENET_LAYOUT in str(err.value)


def test_imagenet_missing_val_folder(tmp_path: Path) -> None:
    with pytest.raises(UnlearnBenchError) as err:
        load_imagenet_splits(tmp_path)
    assert str(tmp_path / "val") in str(err.value) and IMAGENET_LAYOUT in str(err.value)


def test_imagenet_wrong_number_of_classes(small_imagenet: Path) -> None:
    shutil.rmtree(small_imagenet / "val" / "n00000007")
    with pytest.raises(UnlearnBenchError) as err:
        load_imagenet_splits(small_imagenet)
    assert "999" in str(err.value) and str(small_imagenet / "val") in str(err.value)


def test_imagenet_class_folder_without_images(small_imagenet: Path) -> None:
    class_dir = small_imagenet / "val" / "n00000005"
    for image in class_dir.iterdir():
        image.unlink()
    with pytest.raises(UnlearnBenchError) as err:
        load_imagenet_splits(small_imagenet)
    assert str(class_dir) in str(err.value) and IMAGENET_LAYOUT in str(err.value)


def test_imagenet_corrupt_image_fails_when_read(small_imagenet: Path) -> None:
    corrupt = small_imagenet / "val" / "n00000003" / "ILSVRC2012_val_00000004.JPEG"
    corrupt.write_bytes(b"this is not a jpeg")
    test = load_imagenet_splits(small_imagenet)["test"]
    with pytest.raises(UnlearnBenchError) as err:
        test[test.paths.index(corrupt)]
    assert str(corrupt) in str(err.value)


# ---- CelebA -----------------------------------------------------------------------------------------------

@pytest.fixture
def celeba(tmp_path: Path) -> tuple[Path, list[str]]:
    return tmp_path, make_celeba_tree(tmp_path)


def owner_names(root: Path) -> dict[str, str]:
    """Image filename -> person name, read back from the tree's own files."""
    with (root / "identity_names.csv").open(newline="") as f:
        names = {int(row["identity"]): row["name"] for row in csv.DictReader(f)}
    lines = (root / "identity_CelebA.txt").read_text().split("\n")
    return {file: names[int(identity)] for file, identity in (line.split() for line in lines if line)}


def add_identity(root: Path, identity: int, name: str, n_images: int) -> list[Path]:
    """Another identity with its own images, appended to every CelebA file including the retain list."""
    with (root / "identity_names.csv").open("a", newline="") as f:
        csv.writer(f).writerow([identity, name])
    listed = (root / "identity_CelebA.txt").read_text()
    first = listed.count("\n") + 1
    files = [root / "img_align_celeba" / f"{first + j:06d}.jpg" for j in range(n_images)]
    for file in files:
        file.write_bytes(tiny_jpeg())
    (root / "identity_CelebA.txt").write_text(listed + "".join(f"{file.name} {identity}\n" for file in files))
    with (root / "retain_identities.txt").open("a") as f:
        f.write(f"{identity}\n")
    return files


def test_celeba_splits(celeba: tuple[Path, list[str]]) -> None:
    root, names = celeba
    splits = load_celeba_identities(root)
    assert set(splits) == set(SPLITS)
    # 6 images per identity: round(0.3 * 6) = 2 test, round(0.2 * 6) = 1 val, 3 train; 4 identities.
    assert {split: len(splits[split]) for split in SPLITS} == {"train": 12, "val": 4, "test": 8}
    owners = owner_names(root)
    for split in SPLITS:
        assert splits[split].classnames == names
        assert sorted(splits[split].labels.tolist()) == sorted(list(range(4)) * (len(splits[split]) // 4))
        pairs = zip(splits[split].paths, splits[split].labels)
        assert all(owners[p.name] == names[label] for p, label in pairs)
        assert all(p.parent == root / "img_align_celeba" for p in splits[split].paths)
    assert "Not Retained" not in {owners[p.name] for split in SPLITS for p in splits[split].paths}
    assert_disjoint(splits)
    assert_rgb(splits["test"])


def test_celeba_is_deterministic_and_seeded(celeba: tuple[Path, list[str]]) -> None:
    root, _ = celeba
    first, again = load_celeba_identities(root), load_celeba_identities(root)
    for split in SPLITS:
        assert first[split].paths == again[split].paths
    assert load_celeba_identities(root, seed=1)["test"].paths != first["test"].paths


def test_celeba_missing_root(tmp_path: Path) -> None:
    with pytest.raises(UnlearnBenchError) as err:
        load_celeba_identities(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value) and "identity_CelebA.txt" in str(err.value)


@pytest.mark.parametrize("required", ["img_align_celeba", "identity_CelebA.txt", "identity_names.csv",
                                      "retain_identities.txt"])
def test_celeba_missing_file(celeba: tuple[Path, list[str]], required: str) -> None:
    root, _ = celeba
    target = root / required
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(UnlearnBenchError) as err:
        load_celeba_identities(root)
    assert str(target) in str(err.value) and "root/img_align_celeba/" in str(err.value)


def test_celeba_malformed_identity_line(celeba: tuple[Path, list[str]]) -> None:
    root, _ = celeba
    path = root / "identity_CelebA.txt"
    lines = path.read_text().splitlines()
    lines.insert(2, "000099.jpg Jane")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(UnlearnBenchError) as err:
        load_celeba_identities(root)
    assert str(path) in str(err.value) and "line 3" in str(err.value)


def test_celeba_identity_without_name(celeba: tuple[Path, list[str]]) -> None:
    root, _ = celeba
    with (root / "retain_identities.txt").open("a") as f:
        f.write("777  # not in the names file\n")
    with pytest.raises(UnlearnBenchError) as err:
        load_celeba_identities(root)
    assert "777" in str(err.value) and str(root / "identity_names.csv") in str(err.value)


def test_celeba_identity_with_too_few_images(celeba: tuple[Path, list[str]]) -> None:
    root, _ = celeba
    add_identity(root, 555, "Rarely Photographed", n_images=2)
    with pytest.raises(UnlearnBenchError) as err:
        load_celeba_identities(root)
    assert "555" in str(err.value) and "2 images" in str(err.value)


def test_celeba_duplicate_name(celeba: tuple[Path, list[str]]) -> None:
    root, names = celeba
    add_identity(root, 888, names[0], n_images=3)
    with pytest.raises(UnlearnBenchError) as err:
        load_celeba_identities(root)
    assert names[0] in str(err.value) and "888" in str(err.value)


def test_celeba_listed_image_missing_from_folder(celeba: tuple[Path, list[str]]) -> None:
    root, _ = celeba
    missing = root / "img_align_celeba" / "000002.jpg"
    missing.unlink()
    with pytest.raises(UnlearnBenchError) as err:
        load_celeba_identities(root)
    assert str(missing) in str(err.value)


def test_celeba_unused_identity_may_lack_images(celeba: tuple[Path, list[str]]) -> None:
    root, _ = celeba
    for line in (root / "identity_CelebA.txt").read_text().splitlines():
        file, identity = line.split()
        if int(identity) == DISTRACTOR_IDENTITY:
            (root / "img_align_celeba" / file).unlink()
    assert len(load_celeba_identities(root)["train"]) == 12


def test_celeba_corrupt_image_fails_when_read(celeba: tuple[Path, list[str]]) -> None:
    root, _ = celeba
    train = load_celeba_identities(root)["train"]
    corrupt = train.paths[1]
    corrupt.write_bytes(b"\xff\xd8 garbage, not a jpeg")
    with pytest.raises(UnlearnBenchError) as err:
        train[1]
    assert str(corrupt) in str(err.value)


# ---- protocol=slug: SLUG's ImageNet subset ----------------------------------------------------------------

def reference_draw(files: list[str]) -> set[str]:
    """SLUG's subset computed another way: ImageFolder's list built class by class, and the first
    int(0.05 n) of RandomState(0)'s permutation (what ``choice(..., replace=False)`` draws)."""
    by_class: dict[str, list[str]] = {}
    for file in files:
        wnid, name = file.split("/")
        by_class.setdefault(wnid, []).append(name)
    listed = [f"{wnid}/{name}" for wnid in sorted(by_class) for name in sorted(by_class[wnid])]
    picks = np.random.RandomState(0).permutation(len(listed))[:len(listed) // 20]
    return {listed[i] for i in picks}


def test_slug_subset_of_the_50000_val_names() -> None:
    files = valprep_file_list()
    assert len(files) == 50_000 and len(set(files)) == 50_000
    shuffled = [files[i] for i in np.random.default_rng(1).permutation(len(files))]
    chosen = slug_subset(shuffled)
    assert len(chosen) == 2_500 and len(set(chosen)) == 2_500
    assert set(chosen) == reference_draw(files)
    assert chosen == sorted(chosen, key=lambda f: f.split("/"))  # in ImageFolder's order
    # The class-major order matters: the same draw over the names sorted by file number shares few images.
    by_number = sorted(files, key=lambda f: f.split("/")[1])
    picks = np.random.RandomState(0).permutation(50_000)[:2_500]
    assert len(set(chosen) & {by_number[i] for i in picks}) < 500


def test_imagenet_slug_loader_reads_the_subset_of_the_tree(tmp_path: Path) -> None:
    make_imagenet_tree(tmp_path, images_per_class=3, valprep=True)
    (tmp_path / "val" / "n00000002" / "notes.txt").write_text("not an image")
    subset = load_imagenet_slug(tmp_path)
    files = valprep_file_list(images_per_class=3)
    assert len(subset) == 150  # int(3,000 * 0.05)
    assert {f"{p.parent.name}/{p.name}" for p in subset.paths} == reference_draw(files)
    assert all(subset.classnames[label] == IMAGENET_CLASSNAMES[int(p.parent.name[1:])]
               for p, label in zip(subset.paths, subset.labels.tolist()))
    assert_rgb(subset)


def test_imagenet_slug_loader_names_the_layout(tmp_path: Path) -> None:
    with pytest.raises(UnlearnBenchError) as err:
        load_imagenet_slug(tmp_path)
    assert str(tmp_path / "val") in str(err.value) and IMAGENET_LAYOUT in str(err.value)


# ---- protocol=slug: SLUG's CelebA name files --------------------------------------------------------------

@pytest.fixture
def slug_celeba(tmp_path: Path) -> tuple[Path, dict[str, list[str]]]:
    return tmp_path, make_slug_celeba_tree(tmp_path)


def test_celeba_slug_name_set_and_order(slug_celeba: tuple[Path, dict[str, list[str]]]) -> None:
    root, files = slug_celeba
    celeba = load_celeba_slug(root)
    written = SLUG_FREQUENT + SLUG_NOT_FREQUENT + SLUG_WITHOUT_IMAGES
    assert set(celeba.names) == {name.replace("_", " ") for name in written}  # images or not
    assert celeba.names.index("Ann-Marie Ross") < celeba.names.index("Ann Lee")  # sorted as written, with "_"
    assert celeba.frequent == ["Ann Lee", "Elon Musk", "Ann-Marie Ross", "Bo Chen"]
    for name, listed in files.items():
        assert celeba.images[name.replace("_", " ")] == [root / "img_align_celeba" / f for f in listed]


def test_celeba_slug_identity_images(slug_celeba: tuple[Path, dict[str, list[str]]]) -> None:
    root, files = slug_celeba
    celeba = load_celeba_slug(root)
    images = celeba.identity_images(["Jeff Bezos", "Bo Chen"])
    assert images.classnames == celeba.names
    assert [p.name for p in images.paths] == files["Jeff_Bezos"] + files["Bo_Chen"]
    assert [images.classnames[label] for label in images.labels.tolist()] == ["Jeff Bezos"] * 3 + ["Bo Chen"] * 3
    with pytest.raises(UnlearnBenchError, match="Zed Unused.*absent"):
        celeba.identity_images(["Zed Unused"])


@pytest.mark.parametrize("required", ["img_align_celeba", "list_identity_celeba.txt", "frequent_celebs.txt"])
def test_celeba_slug_missing_file(slug_celeba: tuple[Path, dict[str, list[str]]], required: str) -> None:
    root, _ = slug_celeba
    target = root / required
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(UnlearnBenchError) as err:
        load_celeba_slug(root)
    assert str(target) in str(err.value) and "list_identity_celeba.txt (SLUG's" in str(err.value)


def test_celeba_slug_frequent_name_not_listed(slug_celeba: tuple[Path, dict[str, list[str]]]) -> None:
    root, _ = slug_celeba
    (root / "frequent_celebs.txt").write_text("Ann_Lee\nNobody_Known\n")
    with pytest.raises(UnlearnBenchError, match="line 2: 'Nobody_Known' is not a name"):
        load_celeba_slug(root)


def test_celeba_slug_frequent_image_missing(slug_celeba: tuple[Path, dict[str, list[str]]]) -> None:
    root, files = slug_celeba
    missing = root / "img_align_celeba" / files["Bo_Chen"][1]
    missing.unlink()
    with pytest.raises(UnlearnBenchError) as err:
        load_celeba_slug(root)
    assert str(missing) in str(err.value)


def test_celeba_slug_malformed_line(slug_celeba: tuple[Path, dict[str, list[str]]]) -> None:
    root, _ = slug_celeba
    path = root / "list_identity_celeba.txt"
    lines = path.read_text().splitlines()
    lines.insert(3, "000099.jpg Jane Doe")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(UnlearnBenchError) as err:
        load_celeba_slug(root)
    assert str(path) in str(err.value) and "line 4" in str(err.value)


# ---- image-text pairs ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["shard", "folder"])
def test_pairs_in_both_layouts(tmp_path: Path, layout: str) -> None:
    path = tmp_path / ("00000.tar" if layout == "shard" else "pairs")
    (make_pairs_shard if layout == "shard" else make_pairs_folder)(path, n_pairs=5)
    pairs = load_pairs(path)
    assert pairs.classnames == [pair_caption(i) for i in range(5)]  # in order, incomplete samples skipped
    assert pairs.labels.tolist() == list(range(5))
    for i in (0, 4):
        assert pairs[i].mode == "RGB" and pairs[i].getpixel((4, 4))[0] == pytest.approx(10 * i, abs=8)
    assert pairs.subset([3, 1]).classnames == pairs.classnames and len(pairs.subset([3, 1])) == 2


def test_pairs_errors_name_the_layout(tmp_path: Path) -> None:
    with pytest.raises(UnlearnBenchError, match="retain_pairs: no such file or folder.*NNN.jpg \\+ NNN.txt"):
        load_pairs(tmp_path / "missing.tar")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UnlearnBenchError, match="holds no image \\+ caption pairs"):
        load_pairs(tmp_path / "empty")
    (tmp_path / "shard.tar.gz").write_bytes(b"\x1f\x8b not an uncompressed tar")
    with pytest.raises(UnlearnBenchError, match="not an uncompressed tar file"):
        load_pairs(tmp_path / "shard.tar.gz")
