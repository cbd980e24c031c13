"""The real ``unlearncanvas`` loaders (image tree, Stable Diffusion folder, style/object classifiers) on tiny
inputs in the documented layouts."""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import pytest
import torch
from fixtures_canvas import EXTRA_STYLE, IMAGE_NUMBERS, make_canvas_tree, make_tiny_sd_folder, save_classifier
from PIL import Image

from unlearnbench.datasets.base import FileImageSet
from unlearnbench.datasets.unlearncanvas import (
    DDIM_STEPS,
    GUIDANCE,
    PHOTO_STYLE,
    PROMPT_TEMPLATE,
    SEEDS,
    UNLEARNCANVAS_OBJECTS,
    UNLEARNCANVAS_STYLES,
    load_unlearncanvas_images,
    style_prompt_name,
    unlearncanvas_prompt,
)
from unlearnbench.errors import UnlearnBenchError
from unlearnbench.models.sd_loader import CLASSIFIER_ARCH, load_stable_diffusion, load_unlearncanvas_classifier

CANVAS_LAYOUT = "root/<Style>/<Object>/<n>.jpg"
SD_LAYOUT = "path/model_index.json"
TINY_VIT = "vit_tiny_patch16_224"


# ---- class lists and protocol ---------------------------------------------------------------------------

def test_class_lists_follow_the_classifiers_label_order() -> None:
    assert len(UNLEARNCANVAS_STYLES) == 51 and len(set(UNLEARNCANVAS_STYLES)) == 51
    assert len(UNLEARNCANVAS_OBJECTS) == 20 and len(set(UNLEARNCANVAS_OBJECTS)) == 20
    # The official lists are alphabetical, the photo class included in its alphabetical place.
    assert list(UNLEARNCANVAS_STYLES) == sorted(UNLEARNCANVAS_STYLES)
    assert list(UNLEARNCANVAS_OBJECTS) == sorted(UNLEARNCANVAS_OBJECTS)
    assert UNLEARNCANVAS_STYLES.index(PHOTO_STYLE) == 38
    assert UNLEARNCANVAS_STYLES[0] == "Abstractionism" and UNLEARNCANVAS_STYLES[-1] == "Winter"
    assert UNLEARNCANVAS_OBJECTS[0] == "Architectures" and UNLEARNCANVAS_OBJECTS[-1] == "Waterfalls"


def test_protocol_constants_and_prompts() -> None:
    assert PROMPT_TEMPLATE == "A {object} image in {style} style."
    assert SEEDS == (188, 288, 588, 688, 888) and DDIM_STEPS == 100 and GUIDANCE == 9.0
    assert style_prompt_name("Van_Gogh") == "Van Gogh"
    assert style_prompt_name("Red_Blue_Ink") == "Red Blue Ink"
    assert style_prompt_name(PHOTO_STYLE) == "Seed Images"
    assert unlearncanvas_prompt("Van_Gogh", "Cats") == "A Cats image in Van Gogh style."
    assert unlearncanvas_prompt(PHOTO_STYLE, "Architectures") == "A Architectures image in Seed Images style."


def test_prompt_rejects_unknown_names() -> None:
    with pytest.raises(UnlearnBenchError, match="Did you mean 'Van_Gogh'"):
        style_prompt_name("Van Gogh")
    with pytest.raises(UnlearnBenchError, match="Did you mean 'Cats'"):
        unlearncanvas_prompt("Monet", "Cat")


# ---- images ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def canvas_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("canvas")
    make_canvas_tree(root, UNLEARNCANVAS_STYLES, UNLEARNCANVAS_OBJECTS)
    return root


@pytest.fixture
def small_canvas(tmp_path: Path) -> Path:
    """Two styles by two objects, fresh for tests that damage it."""
    make_canvas_tree(tmp_path, ["Monet", "Van_Gogh"], ["Cats", "Dogs"])
    return tmp_path


SMALL = {"styles": ["Monet", "Van_Gogh"], "objects": ["Cats", "Dogs"]}


def test_load_every_pair(canvas_root: Path) -> None:
    images = load_unlearncanvas_images(canvas_root)
    assert len(images) == 51 * 20 * len(IMAGE_NUMBERS)
    assert images.styles == list(UNLEARNCANVAS_STYLES) and images.objects == list(UNLEARNCANVAS_OBJECTS)
    for path, style, object_ in zip(images.paths, images.style_labels, images.object_labels):
        assert path.parent.parent.name == images.styles[style] and path.parent.name == images.objects[object_]
    assert EXTRA_STYLE not in {p.parent.parent.name for p in images.paths}
    # Style-major, then object, then file number: the classifiers' label order.
    assert images.style_labels.tolist() == sorted(images.style_labels.tolist())
    assert [p.name for p in images.paths[:3]] == ["1.jpg", "2.jpg", "10.jpg"]
    assert images.style_labels.dtype == images.object_labels.dtype == torch.int64


def test_label_views_are_file_image_sets(canvas_root: Path) -> None:
    images = load_unlearncanvas_images(canvas_root, styles=["Van_Gogh"], objects=["Cats"])
    by_style, by_object = images.by_style(), images.by_object()
    assert isinstance(by_style, FileImageSet) and isinstance(by_object, FileImageSet)
    assert by_style.classnames[by_style.labels[0]] == "Van_Gogh"
    assert by_object.classnames[by_object.labels[0]] == "Cats"
    image = by_style[0]
    assert isinstance(image, Image.Image) and image.mode == "RGB" and image.size == (8, 8)


def test_subset_keeps_classifier_labels_and_order(canvas_root: Path) -> None:
    images = load_unlearncanvas_images(canvas_root, styles=["Van_Gogh", PHOTO_STYLE], objects=["Trees", "Bears"],
                                       per_pair=2)
    # Requested in any order, returned in label order; labels are the classifiers' indices.
    assert UNLEARNCANVAS_STYLES.index("Van_Gogh") == 45
    assert images.style_labels.tolist() == [38] * 4 + [45] * 4
    assert images.object_labels.tolist() == [1, 1, 18, 18] * 2
    # per_pair keeps the lowest numbers: 1.jpg and 2.jpg, not 10.jpg.
    assert {p.name for p in images.paths} == {"1.jpg", "2.jpg"}
    assert images.paths[0] == canvas_root / PHOTO_STYLE / "Bears" / "1.jpg"


def test_unknown_or_repeated_names(small_canvas: Path) -> None:
    with pytest.raises(UnlearnBenchError, match="Did you mean 'Van_Gogh'") as err:
        load_unlearncanvas_images(small_canvas, styles=["Van Gogh"])
    assert "Available: Abstractionism" in str(err.value)
    with pytest.raises(UnlearnBenchError, match="Did you mean 'Cats'"):
        load_unlearncanvas_images(small_canvas, styles=["Monet"], objects=["cats"])
    with pytest.raises(UnlearnBenchError, match="requested twice"):
        load_unlearncanvas_images(small_canvas, styles=["Monet", "Monet"])
    with pytest.raises(UnlearnBenchError, match=r"list of names; got the string 'Monet' \(write \['Monet'\]\)"):
        load_unlearncanvas_images(small_canvas, styles="Monet")


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(UnlearnBenchError, match="root folder not found") as err:
        load_unlearncanvas_images(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value) and CANVAS_LAYOUT in str(err.value)


def test_missing_style_folder(small_canvas: Path) -> None:
    with pytest.raises(UnlearnBenchError) as err:
        load_unlearncanvas_images(small_canvas)  # all 51 styles, only two present
    assert f"style folder not found: {small_canvas / 'Abstractionism'}" in str(err.value)
    assert CANVAS_LAYOUT in str(err.value)


def test_missing_style_folder_with_wrong_case(small_canvas: Path) -> None:
    (small_canvas / "Van_Gogh").rename(small_canvas / "van_gogh")
    with pytest.raises(UnlearnBenchError) as err:
        load_unlearncanvas_images(small_canvas, **SMALL)
    assert str(small_canvas / "Van_Gogh") in str(err.value) and "found 'van_gogh'" in str(err.value)


def test_photo_folder_under_the_readme_spelling(small_canvas: Path) -> None:
    # The repository README calls the photo folder "Seed_Image"; the code and the classifiers use "Seed_Images".
    shutil.copytree(small_canvas / "Monet", small_canvas / "Seed_Image")
    with pytest.raises(UnlearnBenchError) as err:
        load_unlearncanvas_images(small_canvas, styles=[PHOTO_STYLE], objects=["Cats"])
    assert str(small_canvas / PHOTO_STYLE) in str(err.value) and "rename it to 'Seed_Images'" in str(err.value)


def test_missing_object_folder(small_canvas: Path) -> None:
    shutil.rmtree(small_canvas / "Van_Gogh" / "Dogs")
    with pytest.raises(UnlearnBenchError) as err:
        load_unlearncanvas_images(small_canvas, **SMALL)
    assert f"object folder not found: {small_canvas / 'Van_Gogh' / 'Dogs'}" in str(err.value)
    assert CANVAS_LAYOUT in str(err.value)


def test_object_folder_without_images(small_canvas: Path) -> None:
    folder = small_canvas / "Monet" / "Dogs"
    for image in folder.iterdir():
        image.unlink()
    (folder / "notes.txt").write_text("not an image")
    with pytest.raises(UnlearnBenchError) as err:
        load_unlearncanvas_images(small_canvas, **SMALL)
    assert f"{folder} holds no images" in str(err.value) and CANVAS_LAYOUT in str(err.value)


def test_per_pair_bounds(small_canvas: Path) -> None:
    (small_canvas / "Van_Gogh" / "Cats" / "2.jpg").unlink()
    assert len(load_unlearncanvas_images(small_canvas, **SMALL, per_pair=2)) == 8
    with pytest.raises(UnlearnBenchError) as err:
        load_unlearncanvas_images(small_canvas, **SMALL, per_pair=3)
    assert f"{small_canvas / 'Van_Gogh' / 'Cats'} holds 2 images but per_pair=3" in str(err.value)
    with pytest.raises(UnlearnBenchError, match="per_pair must be a positive number"):
        load_unlearncanvas_images(small_canvas, **SMALL, per_pair=0)


def test_corrupt_image_fails_when_read(small_canvas: Path) -> None:
    corrupt = small_canvas / "Monet" / "Cats" / "1.jpg"
    corrupt.write_bytes(b"not a jpeg")
    images = load_unlearncanvas_images(small_canvas, **SMALL).by_object()
    with pytest.raises(UnlearnBenchError) as err:
        images[images.paths.index(corrupt)]
    assert str(corrupt) in str(err.value)


# ---- Stable Diffusion folder ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_sd_folder(tmp_path_factory.mktemp("sd"))


@pytest.fixture
def sd_copy(sd_folder: Path, tmp_path: Path) -> Path:
    """A copy of the tiny folder (kilobytes) that a test may damage."""
    return Path(shutil.copytree(sd_folder, tmp_path / "sd"))


def test_stable_diffusion_components_fit(sd_folder: Path) -> None:
    from diffusers import DDIMScheduler

    sd = load_stable_diffusion(sd_folder)
    assert set(sd) == {"unet", "text_encoder", "tokenizer", "vae", "scheduler"}
    assert not sd["unet"].training and not sd["text_encoder"].training and not sd["vae"].training
    # DDIM for the protocol, with SD v1.5's settings read from its PNDM config.
    scheduler = sd["scheduler"]
    assert isinstance(scheduler, DDIMScheduler)
    assert scheduler.config.steps_offset == 1 and scheduler.config.clip_sample is False
    assert scheduler.config.beta_schedule == "scaled_linear"

    tokenizer = sd["tokenizer"]
    prompts = [unlearncanvas_prompt("Van_Gogh", "Cats"), ""]  # conditional and unconditional, as with CFG
    ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    with torch.no_grad():
        hidden = sd["text_encoder"](ids)[0]
        scheduler.set_timesteps(2)
        latents = torch.randn(1, sd["unet"].config.in_channels, 8, 8, generator=torch.Generator().manual_seed(0))
        t = scheduler.timesteps[0]
        noise = sd["unet"](torch.cat([latents] * 2), t, encoder_hidden_states=hidden).sample
        conditional, unconditional = noise.chunk(2)
        guided = unconditional + GUIDANCE * (conditional - unconditional)
        latents = scheduler.step(guided, t, latents).prev_sample
        image = sd["vae"].decode(latents / sd["vae"].config.scaling_factor).sample
    assert hidden.shape == (2, tokenizer.model_max_length, sd["unet"].config.cross_attention_dim)
    assert latents.shape == (1, 4, 8, 8) and torch.isfinite(latents).all()
    assert image.shape == (1, 3, 16, 16)


def test_stable_diffusion_dtype(sd_folder: Path) -> None:
    sd = load_stable_diffusion(sd_folder, dtype=torch.float64)
    for name in ("unet", "text_encoder", "vae"):
        assert next(sd[name].parameters()).dtype == torch.float64


def test_stable_diffusion_alternative_weight_files(sd_copy: Path) -> None:
    """Weights saved as .bin, as an fp16 variant, and a tokenizer.json instead of vocab.json + merges.txt."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTokenizer

    vae = AutoencoderKL.from_pretrained(sd_copy / "vae")
    (sd_copy / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    vae.save_pretrained(sd_copy / "vae", safe_serialization=False)
    unet = UNet2DConditionModel.from_pretrained(sd_copy / "unet")
    (sd_copy / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    unet.half().save_pretrained(sd_copy / "unet", variant="fp16")
    tokenizer = CLIPTokenizer.from_pretrained(sd_copy / "tokenizer")
    shutil.rmtree(sd_copy / "tokenizer")
    tokenizer.save_pretrained(sd_copy / "tokenizer")
    for name in ("vocab.json", "merges.txt"):
        (sd_copy / "tokenizer" / name).unlink(missing_ok=True)
    assert sorted(p.name for p in (sd_copy / "unet").iterdir()) == [
        "config.json", "diffusion_pytorch_model.fp16.safetensors"]
    assert (sd_copy / "vae" / "diffusion_pytorch_model.bin").is_file()

    sd = load_stable_diffusion(sd_copy)
    assert next(sd["unet"].parameters()).dtype == torch.float32
    for key, value in unet.state_dict().items():
        assert torch.equal(sd["unet"].state_dict()[key], value.float())
    assert sd["tokenizer"]("a cat").input_ids == tokenizer("a cat").input_ids


def test_stable_diffusion_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(UnlearnBenchError) as err:
        load_stable_diffusion(tmp_path / "nowhere")
    assert f"folder not found: {tmp_path / 'nowhere'}" in str(err.value) and SD_LAYOUT in str(err.value)


@pytest.mark.parametrize("missing", [
    "model_index.json", "unet", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
    "text_encoder/config.json", "text_encoder/model.safetensors", "tokenizer", "tokenizer/vocab.json",
    "tokenizer/merges.txt", "vae/config.json", "vae/diffusion_pytorch_model.safetensors", "scheduler",
    "scheduler/scheduler_config.json",
])
def test_stable_diffusion_missing_file(sd_copy: Path, missing: str) -> None:
    target = sd_copy / missing
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(UnlearnBenchError) as err:
        load_stable_diffusion(sd_copy)
    assert f"not found: {target}" in str(err.value) and SD_LAYOUT in str(err.value)


def test_stable_diffusion_weights_error_lists_the_alternatives(sd_copy: Path) -> None:
    (sd_copy / "text_encoder" / "model.safetensors").unlink()
    with pytest.raises(UnlearnBenchError, match=r"model\.safetensors \(nor pytorch_model\.bin, "):
        load_stable_diffusion(sd_copy)


def test_stable_diffusion_corrupt_files(sd_copy: Path) -> None:
    (sd_copy / "unet" / "config.json").write_text("{ not json")
    with pytest.raises(UnlearnBenchError) as err:
        load_stable_diffusion(sd_copy)
    assert f"cannot load the Stable Diffusion unet from {sd_copy / 'unet'}" in str(err.value)
    (sd_copy / "model_index.json").write_text("{ not json")
    with pytest.raises(UnlearnBenchError, match="model_index.json is not valid JSON"):
        load_stable_diffusion(sd_copy)


# ---- classifiers ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_style_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    path = tmp_path_factory.mktemp("cls") / "style50.pth"
    return path, save_classifier(path, TINY_VIT, num_classes=51)


def test_classifier_loads_the_official_format(tiny_style_checkpoint: tuple[Path, torch.nn.Module]) -> None:
    path, reference = tiny_style_checkpoint
    model = load_unlearncanvas_classifier(path, "style", arch=TINY_VIT)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert model.classnames == list(UNLEARNCANVAS_STYLES)
    image = Image.new("RGB", (300, 200), (255, 0, 128))
    x = model.preprocess(image)
    # Resized to 224x224 (no crop) and scaled from [0, 1] to [-1, 1].
    assert x.shape == (3, 224, 224)
    assert torch.allclose(x[:, 0, 0], torch.tensor([1.0, -1.0, 128 / 255 * 2 - 1]), atol=1e-6)
    with torch.no_grad():
        assert torch.equal(model(x[None]), reference(x[None]))


@pytest.mark.parametrize("wrap,prefix", [(None, ""), ("state_dict", ""), ("model_state_dict", "module.")])
def test_classifier_accepts_other_checkpoint_shapes(tmp_path: Path, wrap: str | None, prefix: str) -> None:
    path = tmp_path / "cls.pth"
    reference = save_classifier(path, TINY_VIT, num_classes=20, wrap=wrap, prefix=prefix, seed=1)
    model = load_unlearncanvas_classifier(path, "object", arch=TINY_VIT)
    assert model.classnames == list(UNLEARNCANVAS_OBJECTS)
    x = torch.zeros(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))


def test_classifier_ignores_training_state(tmp_path: Path) -> None:
    path = tmp_path / "cls.pth"
    reference = save_classifier(path, TINY_VIT, num_classes=20)
    checkpoint = torch.load(path, weights_only=True)
    torch.save({**checkpoint, "epoch": 9, "optimizer_state_dict": {"state": {}, "param_groups": []}}, path)
    model = load_unlearncanvas_classifier(path, "object", arch=TINY_VIT)
    assert torch.equal(model.head.weight, reference.head.weight)


def test_classifier_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UnlearnBenchError) as err:
        load_unlearncanvas_classifier(tmp_path / "style50.pth", "style", arch=TINY_VIT)
    assert f"style classifier checkpoint not found: {tmp_path / 'style50.pth'}" in str(err.value)
    assert "'model_state_dict'" in str(err.value)


def test_classifier_unknown_kind(tiny_style_checkpoint: tuple[Path, torch.nn.Module]) -> None:
    message = "unknown UnlearnCanvas classifier kind 'class'; valid: 'style', 'object'"
    with pytest.raises(UnlearnBenchError, match=message):
        load_unlearncanvas_classifier(tiny_style_checkpoint[0], "class", arch=TINY_VIT)


def test_classifier_wrong_number_of_classes(tmp_path: Path,
                                            tiny_style_checkpoint: tuple[Path, torch.nn.Module]) -> None:
    style_path = tiny_style_checkpoint[0]
    with pytest.raises(UnlearnBenchError) as err:
        load_unlearncanvas_classifier(style_path, "object", arch=TINY_VIT)
    assert (f"{style_path} has a 51-class head but the object classifier needs 20 classes: this looks like the "
            f"style classifier") in str(err.value)
    style60 = tmp_path / "style60.pth"
    save_classifier(style60, TINY_VIT, num_classes=61)
    with pytest.raises(UnlearnBenchError, match="61-class head .* 60-style release"):
        load_unlearncanvas_classifier(style60, "style", arch=TINY_VIT)


def test_classifier_of_another_architecture(tiny_style_checkpoint: tuple[Path, torch.nn.Module]) -> None:
    with pytest.raises(UnlearnBenchError) as err:
        load_unlearncanvas_classifier(tiny_style_checkpoint[0], "style", arch="vit_small_patch16_224")
    assert "does not fit timm 'vit_small_patch16_224'" in str(err.value) and "other shapes" in str(err.value)


def test_classifier_unknown_architecture(tiny_style_checkpoint: tuple[Path, torch.nn.Module]) -> None:
    with pytest.raises(UnlearnBenchError, match="cannot build timm model 'vit_nonexistent'"):
        load_unlearncanvas_classifier(tiny_style_checkpoint[0], "style", arch="vit_nonexistent")


@pytest.mark.parametrize("content,message", [
    (torch.zeros(3), "holds a Tensor, not a dict"),
    ({"epoch": 3}, "holds no tensors"),
    ({"model_state_dict": {"fc.weight": torch.zeros(51, 8)}}, "no 2-D 'head.weight'"),
])
def test_classifier_checkpoint_without_a_vit(tmp_path: Path, content: object, message: str) -> None:
    path = tmp_path / "cls.pth"
    torch.save(content, path)
    with pytest.raises(UnlearnBenchError, match=message) as err:
        load_unlearncanvas_classifier(path, "style", arch=TINY_VIT)
    assert str(path) in str(err.value)


def test_classifier_unreadable_checkpoint(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(UnlearnBenchError, match=f"cannot read classifier checkpoint {garbage}"):
        load_unlearncanvas_classifier(garbage, "style", arch=TINY_VIT)
    # Arbitrary objects are not unpickled; the message says how to keep only the weights.
    pickled = tmp_path / "with_args.pth"
    torch.save({"model_state_dict": {}, "args": argparse.Namespace(lr=1e-3)}, pickled)
    with pytest.raises(UnlearnBenchError, match="re-save only its weights"):
        load_unlearncanvas_classifier(pickled, "style", arch=TINY_VIT)


@pytest.mark.slow
def test_real_classifier_architecture(tmp_path: Path) -> None:
    """The protocol's ViT-L/16 judge end to end: ~300M parameters, over 10 s to build on a CPU."""
    start = time.perf_counter()
    path = tmp_path / "style50.pth"
    reference = save_classifier(path, CLASSIFIER_ARCH, num_classes=51)
    built_in = time.perf_counter() - start
    model = load_unlearncanvas_classifier(path, "style")
    assert sum(p.numel() for p in model.parameters()) > 300e6
    assert (model.head.in_features, model.head.out_features) == (1024, 51)
    x = model.preprocess(Image.new("RGB", (512, 512), (10, 200, 30)))[None]
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
    print(f"built and saved {CLASSIFIER_ARCH} in {built_in:.1f} s")


@pytest.fixture(scope="module")
def fid_weights(tmp_path_factory) -> Path:
    """The FID Inception network (torch-fidelity's architecture) with seeded random weights, saved in the
    format of its weights file: the real file cannot be downloaded here."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    path = tmp_path_factory.mktemp("fid") / "weights-inception-2015-12-05-6726825d.pth"
    torch.manual_seed(0)
    with pytest.MonkeyPatch.context() as mp:  # build the network without loading (downloading) weights
        mp.setattr(fe, "load_state_dict_from_url", lambda *a, **k: None)
        mp.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state, **k: None)
        network = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    torch.save(network.state_dict(), path)
    return path


def test_fid_is_the_librarys_on_uint8_images(fid_weights: Path, tmp_path: Path) -> None:
    """Our FID of [-1, 1] generated images equals torchmetrics' FID of the same pixels as uint8 (no second
    normalisation on the way in), is 0 for identical sets, and bad inputs are named."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    from unlearnbench.fid import FrechetInception, to_uint8

    gen = torch.Generator().manual_seed(1)
    reference = torch.randint(0, 256, (8, 3, 64, 64), generator=gen, dtype=torch.uint8)
    generated = (torch.rand(8, 3, 64, 64, generator=gen) * 2 - 1).clamp(-1, 1)
    ours = FrechetInception(fid_weights, [reference[:5], reference[5:]])
    value = ours(to_uint8(generated))
    library = FrechetInceptionDistance(feature=2048, antialias=False, feature_extractor_weights_path=str(fid_weights))
    library.update(reference, real=True)
    library.update(((generated + 1) * 127.5).round().to(torch.uint8), real=False)
    assert value == pytest.approx(float(library.compute()), rel=1e-6)
    assert value > 0
    assert ours(reference) == pytest.approx(0.0, abs=1e-3)  # the reference against itself
    assert ours(to_uint8(generated)) == pytest.approx(value, rel=1e-9)  # reference statistics kept, generated reset
    with pytest.raises(UnlearnBenchError, match="FID takes generated images as uint8"):
        ours(generated)
    with pytest.raises(UnlearnBenchError, match="FID Inception weights not found: .*weights-inception-2015-12-05"):
        FrechetInception(tmp_path / "missing.pth", [reference])
    torch.save({"head.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    with pytest.raises(UnlearnBenchError, match="is not the FID Inception network's state dict"):
        FrechetInception(tmp_path / "other.pth", [reference])
