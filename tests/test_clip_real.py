"""The real `clip` configuration: the public architecture built without weights, and the whole real
path (loaders, checkpoint file, open_clip transforms, SLUG) on fixture trees in the release layouts."""

import math

import open_clip
import pytest
import torch
from fixtures_real import make_celeba_tree, make_imagenet_tree

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
    checkpoint = root / "ub-clip-micro.pt"
    torch.save(create_model("ub-clip-micro").state_dict(), checkpoint)
    suite = ClipSuite(ClipSuiteConfig(config="real", model="ub-clip-micro", weights=str(checkpoint),
                                      data=str(root), batch_size=4, retain_samples=16))
    return suite, names, checkpoint


def test_real_suite_reads_the_release_layouts(real_suite):
    suite, names, checkpoint = real_suite
    assert suite.targets() == names
    assert suite.model_id() == f"ub-clip-micro-{checkpoint.name}"
    loaded = open_clip.create_model("ub-clip-micro", pretrained=str(checkpoint))
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
