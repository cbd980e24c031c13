"""The real `clip` configuration: the public architecture built without weights, and the whole real
path (loaders, checkpoint file, open_clip transforms, SLUG) on fixture trees in the release layouts, under
both protocols."""

import dataclasses
import math
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from fixtures_real import (SLUG_FREQUENT, make_celeba_tree, make_imagenet_tree, make_pairs_shard,
                           make_slug_celeba_tree, pair_caption)
from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES, SIMPLE_IMAGENET_TEMPLATES
from PIL import Image

from unlearnbench.benchmarks.clip import ClipSuite, ClipSuiteConfig, clip_layer_groups, load_open_clip
from unlearnbench.errors import UnlearnBenchError
from unlearnbench.methods.slug import Slug, SlugConfig
from unlearnbench.mia import MIN_PAIRS
from unlearnbench.models.tiny_clip import create_model


def test_vit_b_32_candidates_are_its_attention_mlp_and_projection_weights():
    model = create_model("ViT-B-32")  # the paper's architecture, random weights
    groups = clip_layer_groups(model)
    vision = [n for n, t in groups.items() if t == "vision"]
    text = [n for n, t in groups.items() if t == "text"]
    assert len(vision) == 12 * 4 + 1 and "visual.proj" in vision
    assert len(text) == 12 * 4 + 1 and "text_projection" in text
    assert "visual.transformer.resblocks.11.mlp.c_proj.weight" in vision
    assert not any("embedding" in n or n.endswith("bias") or "ln_" in n for n in groups)


def test_weights_argument_errors_name_the_problem(tmp_path):
    with pytest.raises(UnlearnBenchError, match="needs weights for ViT-B-32"):
        load_open_clip("ViT-B-32", "laion400m_e32", None, "cpu")
    with pytest.raises(UnlearnBenchError, match="no such file or directory"):
        load_open_clip("ViT-B-32", "laion400m_e32", str(tmp_path / "missing.pt"), "cpu")
    with pytest.raises(UnlearnBenchError, match="unknown open_clip model 'ViT-Q-99'"):
        load_open_clip("ViT-Q-99", "laion400m_e32", str(tmp_path), "cpu")
    with pytest.raises(UnlearnBenchError, match="no pretrained tag 'nope'"):
        load_open_clip("ViT-B-32", "nope", str(tmp_path), "cpu")


@pytest.fixture(scope="module")
def real_suite(tmp_path_factory):
    """The real configuration on fixture trees, with a small open_clip model saved as a checkpoint."""
    root = tmp_path_factory.mktemp("real")
    make_imagenet_tree(root / "imagenet", images_per_class=3)  # one each for train, val and test
    names = make_celeba_tree(root / "celeba", n_identities=4, images_per_identity=6)
    torch.manual_seed(0)
    checkpoint = root / "ub-clip-bpe.pt"
    torch.save(create_model("ub-clip-bpe").state_dict(), checkpoint)
    suite = ClipSuite(ClipSuiteConfig(config="real", model="ub-clip-bpe", weights=str(checkpoint),
                                      data=str(root), batch_size=4, retain_samples=16))
    return suite, names, checkpoint


def test_real_suite_reads_the_release_layouts(real_suite):
    suite, names, checkpoint = real_suite
    assert suite.targets() == names
    assert suite.model_id() == f"ub-clip-bpe-{checkpoint.name}"
    loaded = open_clip.create_model("ub-clip-bpe", pretrained=str(checkpoint))
    for (name, a), b in zip(suite.base_model().state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name  # the weights are the checkpoint's
    metrics = suite.evaluate(suite.base_model(), names[0])
    assert set(metrics) == {"FA@1", "FA@5", "TA_CA@1", "TA_CA@5", "TA_IN@1", "TA_IN@5", "MIA"}
    (forget, _), _ = suite._mia_pairs(names[0])
    assert len(forget) == 3 < MIN_PAIRS  # too few forget pairs for the attack's splits: NaN, not a crash
    assert math.isnan(metrics.pop("MIA"))
    assert all(0 <= v <= 100 for v in metrics.values())


def test_slug_runs_on_the_real_path(real_suite):
    suite, names, _ = real_suite
    task = suite.task(names[1])
    base = {k: v.clone() for k, v in task.model.state_dict().items()}
    batch = next(task.forget_batches())
    assert batch[0].shape[1:] == (3, 32, 32)  # open_clip's own preprocessing of the JPEG files
    torch.manual_seed(0)
    outcome = Slug(SlugConfig(search_steps=2, max_front_layers=1)).unlearn(task)
    changed = [k for k, v in task.model.state_dict().items() if not torch.equal(v, base[k])]
    task.model.load_state_dict(base)
    assert changed == [outcome.info["layer"]]


def test_too_small_a_data_set_is_named(tmp_path):
    make_imagenet_tree(tmp_path / "imagenet", images_per_class=1)
    make_celeba_tree(tmp_path / "celeba")
    suite = ClipSuite(ClipSuiteConfig(config="real", data=str(tmp_path), weights=str(tmp_path / "w.pt")))
    with pytest.raises(UnlearnBenchError, match="ImageNet (train|val) split .* is empty"):
        suite.targets()


def test_missing_real_data_is_named_before_the_model_loads(tmp_path):
    suite = ClipSuite(ClipSuiteConfig(config="real", data=str(tmp_path), weights=str(tmp_path / "w.pt")))
    with pytest.raises(UnlearnBenchError, match="celeba"):
        suite.targets()


# ---- protocol=slug ------------------------------------------------------------------------------------------

N_PAIRS = 6


@pytest.fixture(scope="module")
def slug_suite(tmp_path_factory):
    """protocol=slug on SLUG's file layouts, with the micro open_clip model saved as a checkpoint."""
    root = tmp_path_factory.mktemp("slug")
    make_imagenet_tree(root / "imagenet", images_per_class=1, valprep=True)  # 1,000 files: 50 drawn
    files = make_slug_celeba_tree(root / "celeba")
    make_pairs_shard(root / "00000.tar", n_pairs=N_PAIRS)
    torch.manual_seed(0)
    checkpoint = root / "ub-clip-bpe.pt"
    torch.save(create_model("ub-clip-bpe").state_dict(), checkpoint)
    config = ClipSuiteConfig(config="real", protocol="slug", model="ub-clip-bpe", weights=str(checkpoint),
                             data=str(root), retain_pairs=str(root / "00000.tar"), batch_size=4)
    return ClipSuite(config), root, files


def reference_metrics(suite: ClipSuite, root: Path, files: dict[str, list[str]], target: str) -> dict[str, float]:
    """SLUG's evaluation written out directly: "{name}." over every listed name sorted as written, FA on all
    the target's images, TA_CA the mean of per-name accuracies over frequent_celebs.txt; TA_IN pooled over
    the 50 images RandomState(0) draws from the class-major file list, open_clip's simple templates."""
    model, preprocess, tok = suite.base_model(), suite.assets.preprocess, open_clip.get_tokenizer("ub-clip-bpe")
    lines = (root / "celeba" / "list_identity_celeba.txt").read_text().splitlines()[2:]
    written = sorted({line.split()[1] for line in lines})
    val = root / "imagenet" / "val"
    listed = sorted(val.glob("*/*.JPEG"), key=lambda f: (f.parent.name, f.name))
    drawn = [listed[i] for i in np.random.RandomState(0).permutation(len(listed))[:len(listed) // 20]]

    def embed_images(paths: list[Path]) -> torch.Tensor:
        images = []
        for path in paths:
            with Image.open(path) as image:
                images.append(preprocess(image.convert("RGB")))
        return F.normalize(model.encode_image(torch.stack(images)), dim=-1)

    def embed_texts(texts: list[str]) -> torch.Tensor:
        return F.normalize(model.encode_text(tok(texts)), dim=-1)

    out = {}
    with torch.no_grad():
        names = embed_texts([f"{n.replace('_', ' ')}." for n in written])
        per_class = torch.stack([embed_texts([t(c) for c in IMAGENET_CLASSNAMES]) for t in SIMPLE_IMAGENET_TEMPLATES])
        objects = F.normalize(per_class.mean(dim=0), dim=-1)
        object_hits = embed_images(drawn) @ objects.T
        object_labels = torch.tensor([int(f.parent.name[1:]) for f in drawn])
        def accuracy(name: str, k: int) -> float:
            top = (embed_images([root / "celeba" / "img_align_celeba" / f for f in files[name]]) @ names.T)
            return (top.topk(k, dim=1).indices == written.index(name)).any(dim=1).float().mean().item()

        for k in (1, 5):
            out[f"FA@{k}"] = 100 * accuracy(target, k)
            out[f"TA_CA@{k}"] = 100 * sum(accuracy(n, k) for n in SLUG_FREQUENT) / len(SLUG_FREQUENT)
            top = object_hits.topk(k, dim=1).indices
            out[f"TA_IN@{k}"] = 100 * (top == object_labels[:, None]).any(dim=1).float().mean().item()
    return out


def test_slug_protocol_targets_and_metrics_are_the_papers(slug_suite):
    suite, root, files = slug_suite
    assert suite.targets() == ["Elon Musk", "Jeff Bezos", "Ann Lee", "Ann-Marie Ross", "Bo Chen"]
    assert len(suite.assets.data.identities["test"].classnames) == 7  # every listed name, images or not
    val = root / "imagenet" / "val"
    listed = sorted(val.glob("*/*.JPEG"), key=lambda f: (f.parent.name, f.name))
    drawn = {listed[i] for i in np.random.RandomState(0).permutation(len(listed))[:len(listed) // 20]}
    assert set(suite.assets.data.objects["test"].paths) == drawn and len(drawn) == 50
    for target in ("Elon_Musk", "Jeff_Bezos"):  # in the TA_CA list, and not
        ours = suite.evaluate(suite.base_model(), target.replace("_", " "))
        assert math.isnan(ours.pop("MIA"))  # a fixture's few forget pairs are too few for the attack's splits
        expected = reference_metrics(suite, root, files, target)
        assert ours == pytest.approx(expected, abs=1e-3), target


def test_slug_protocol_task_data_roles(slug_suite):
    suite, _, files = slug_suite
    task = suite.task("Jeff Bezos")
    forget = [batch for batch in task.forget_batches()]
    assert sum(len(images) for images, _ in forget) == len(files["Jeff_Bezos"])  # all the target's images
    tok = open_clip.get_tokenizer("ub-clip-bpe")
    assert all(torch.equal(tokens, tok(["Jeff Bezos."] * len(tokens))) for _, tokens in forget)
    retain = [batch for batch in task.retain_batches()]
    assert sum(len(images) for images, _ in retain) == N_PAIRS  # every pair of the shard
    captions = tok([pair_caption(i) for i in range(N_PAIRS)])
    assert sorted(map(tuple, torch.cat([tokens for _, tokens in retain]).tolist())) == sorted(map(tuple,
                                                                                                 captions.tolist()))
    # Selection sees the test images, as the reference's search does.
    validation = task.validate(task.model, None)
    test = suite.evaluate(task.model, "Jeff Bezos")
    assert {k: v for k, v in validation.items() if k != "retain@1"} == {k: v for k, v in test.items() if k != "MIA"}
    torch.manual_seed(0)
    base = {k: v.clone() for k, v in task.model.state_dict().items()}
    outcome = Slug(SlugConfig(search_steps=2, max_front_layers=1)).unlearn(task)
    changed = [k for k, v in task.model.state_dict().items() if not torch.equal(v, base[k])]
    task.model.load_state_dict(base)
    assert changed == [outcome.info["layer"]]


def test_forget_pairs_are_the_targets_shard_as_the_reference_keeps_them(slug_suite):
    suite, root, _ = slug_suite
    shards = root / "tar_files"
    shards.mkdir(exist_ok=True)
    make_pairs_shard(shards / "Elon_Musk.tar", n_pairs=4)
    with_shards = ClipSuite(dataclasses.replace(suite.config, forget_pairs=str(shards)))
    task = with_shards.task("Elon Musk")
    forget = list(task.forget_batches())
    tok = open_clip.get_tokenizer("ub-clip-bpe")
    assert sum(len(images) for images, _ in forget) == 4  # the shard's complete pairs, not the CelebA images
    assert sorted(map(tuple, torch.cat([tokens for _, tokens in forget]).tolist())) == sorted(
        map(tuple, tok([pair_caption(i) for i in range(4)]).tolist()))
    assert len(with_shards.forget_pairs("Elon Musk")[0]) == 4  # MIA attacks the same pairs
    with pytest.raises(UnlearnBenchError, match="no shard for 'Jeff Bezos' .*expected Jeff_Bezos.tar"):
        with_shards.task("Jeff Bezos")
    with pytest.raises(UnlearnBenchError, match="forget_pairs: no such folder: .*nowhere"):
        ClipSuite(dataclasses.replace(suite.config, forget_pairs=str(root / "nowhere"))).targets()
    with pytest.raises(UnlearnBenchError, match="forget_pairs is a real-data setting"):
        ClipSuite(ClipSuiteConfig(forget_pairs=str(shards)))


def test_slug_protocol_needs_its_retain_pairs(slug_suite):
    _, root, _ = slug_suite
    for retain_pairs, message in ((None, "needs its retain set: --set retain_pairs=PATH .*NNN.jpg \\+ NNN.txt"),
                                  (str(root / "none.tar"), "no such file or folder: .*none.tar")):
        suite = ClipSuite(ClipSuiteConfig(config="real", protocol="slug", data=str(root), weights=str(root / "w.pt"),
                                          retain_pairs=retain_pairs))
        with pytest.raises(UnlearnBenchError, match=message):
            suite.targets()


def test_slug_protocol_names_missing_files(tmp_path):
    make_pairs_shard(tmp_path / "00000.tar")
    suite = ClipSuite(ClipSuiteConfig(config="real", protocol="slug", data=str(tmp_path),
                                      weights=str(tmp_path / "w.pt"), retain_pairs=str(tmp_path / "00000.tar")))
    with pytest.raises(UnlearnBenchError, match="CelebA root folder not found: .*list_identity_celeba.txt"):
        suite.targets()


def test_protocol_setting_is_checked():
    with pytest.raises(UnlearnBenchError, match="protocol='paper'; expected one of heldout, slug"):
        ClipSuite(ClipSuiteConfig(config="real", protocol="paper"))
    with pytest.raises(UnlearnBenchError, match="protocol=slug .* --config real"):
        ClipSuite(ClipSuiteConfig(protocol="slug"))
