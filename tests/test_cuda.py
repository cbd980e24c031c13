"""The real configurations on a GPU: the public architectures (random weights) and layouts, with
``device=cuda``. Skipped where no GPU is present (CI); run on an accelerator machine with
``python -m pytest -q tests/test_cuda.py``.

Each test loads a real-layout fixture, evaluates the base model, runs SLUG and one training
method on the GPU, and checks that the edit stayed on the device and the numbers are valid.
"""

from __future__ import annotations

import os

import pytest
import torch

# UNLEARNBENCH_TEST_DEVICE=cpu runs the same checks on the CPU (slowly: the canvas judges are ViT-L).
DEVICE = os.environ.get("UNLEARNBENCH_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA device")


def on_cuda(model: torch.nn.Module) -> bool:
    return all(p.device.type == DEVICE for p in model.parameters())


def run_methods(suite, target: str, methods: dict[str, dict[str, str]]) -> dict[str, dict[str, float]]:
    """Each method on a fresh task, restored afterwards: its metrics after unlearning."""
    from unlearnbench.methods.base import build_method

    results = {}
    for name, settings in methods.items():
        task = suite.task(target)
        base = {k: v.clone() for k, v in task.model.state_dict().items()}
        torch.manual_seed(0)
        try:
            build_method(name, settings).unlearn(task)
            changed = [k for k, v in task.model.state_dict().items() if not torch.equal(v, base[k])]
            assert changed, f"{name} changed nothing"
            assert on_cuda(task.model)
            results[name] = suite.evaluate(task.model, target)
        finally:
            task.model.load_state_dict(base)
    return results


def test_clip_vit_b_32_real_path_on_cuda(tmp_path):
    import open_clip
    from fixtures_real import make_celeba_tree, make_imagenet_tree

    from unlearnbench.benchmarks.clip import ClipSuite, ClipSuiteConfig

    make_imagenet_tree(tmp_path / "imagenet", images_per_class=3)
    names = make_celeba_tree(tmp_path / "celeba", n_identities=4, images_per_identity=6)
    torch.manual_seed(0)
    checkpoint = tmp_path / "vit-b-32.pt"
    torch.save(open_clip.create_model("ViT-B-32").state_dict(), checkpoint)
    suite = ClipSuite(ClipSuiteConfig(config="real", model="ViT-B-32", weights=str(checkpoint), data=str(tmp_path),
                                      batch_size=16, retain_samples=16, device=DEVICE))
    assert on_cuda(suite.base_model())
    before = suite.evaluate(suite.base_model(), names[0])
    assert all(0 <= v <= 100 for v in before.values())
    after = run_methods(suite, names[0], {"slug": {"search_steps": "2", "max_front_layers": "1"},
                                          "ga": {"epochs": "1"}})
    assert all(0 <= v <= 100 for metrics in after.values() for v in metrics.values())


def test_unlearncanvas_stable_diffusion_real_path_on_cuda(tmp_path):
    from fixtures_canvas import make_canvas_tree, make_tiny_sd_folder, save_classifier

    from unlearnbench.benchmarks.unlearncanvas import UnlearnCanvasConfig, UnlearnCanvasSuite
    from unlearnbench.datasets.unlearncanvas import UNLEARNCANVAS_OBJECTS, UNLEARNCANVAS_STYLES
    from unlearnbench.models.sd_loader import CLASSIFIER_ARCH

    make_canvas_tree(tmp_path / "data", UNLEARNCANVAS_STYLES, UNLEARNCANVAS_OBJECTS, numbers=(1, 2))
    sd = make_tiny_sd_folder(tmp_path / "sd")
    # The official judges' architecture (ViT-L/16), random weights in the official checkpoint format.
    save_classifier(tmp_path / "style.pth", CLASSIFIER_ARCH, len(UNLEARNCANVAS_STYLES))
    save_classifier(tmp_path / "object.pth", CLASSIFIER_ARCH, len(UNLEARNCANVAS_OBJECTS))
    suite = UnlearnCanvasSuite(UnlearnCanvasConfig(
        config="real", data=str(tmp_path / "data"), model_path=str(sd), style_classifier=str(tmp_path / "style.pth"),
        object_classifier=str(tmp_path / "object.pth"), test_seeds=(188,), images_per_pair=2, retain_samples=32,
        batch_size=8, device=DEVICE))
    assert on_cuda(suite.base_model())
    target = suite.targets()[0]
    before = suite.evaluate(suite.base_model(), target)
    assert {"UA", "IRA", "CRA"} <= set(before) and all(0 <= before[m] <= 100 for m in ("UA", "IRA", "CRA"))
    after = run_methods(suite, target, {
        "slug": {"search_steps": "2", "max_front_layers": "1"},
        "esd": {"iterations": "2", "check_every": "1", "ddim_steps": "3"},
        "salun": {"epochs": "1", "forget_batches": "1", "retain_batches": "1"}})
    assert all(0 <= metrics[m] <= 100 for metrics in after.values() for m in ("UA", "IRA", "CRA"))


def test_stable_diffusion_v1_5_at_real_size_fits_a_24_gb_card(tmp_path):
    """SD v1.5 at its real size (random weights from the published configs): a validation batch sampled at
    512 x 512 with DDIM and guidance 9 (the suite's chunking: 8 prompts per UNet call, the VAE decoding 4 at
    a time), one SLUG gradient pass through the text encoder, one SalUn step on the UNet (AdamW). Prints peak
    memory and seconds per image of each; every peak must stay under 24 GiB. On the CPU (the environment
    variable above) the sampling runs 2 DDIM steps instead of 100, a smoke run of the same code."""
    import time

    from fixtures_canvas import build_sd15

    from unlearnbench.methods.optim import adamw
    from unlearnbench.methods.salun import SalUnConfig

    model = build_sd15(tmp_path / "tokenizer").to(DEVICE)
    cuda = DEVICE == "cuda"
    steps = 100 if cuda else 2

    def measured(what: str, n_images: int, fn):
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        out = fn()
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
        print(f"SD v1.5 {what}: {seconds / n_images:.2f} s per image, peak {peak:.2f} GiB")
        assert not cuda or peak < 24, f"{what}: peak {peak:.2f} GiB"
        return out

    prompts = [f"A Cats image in Style{i} style." for i in range(8)]
    images = measured(f"sampling, DDIM {steps}, guidance 9, 8 prompts", 8, lambda: model.sample(
        prompts, [188] * 8, steps=steps, guidance=9.0, batch_size=8, decode_batch_size=4))
    assert images.shape == (8, 3, 512, 512) and images.device.type == "cpu" and torch.isfinite(images).all()

    batch = images[:4].to(DEVICE)
    model.unet.requires_grad_(False)
    text_params = [p for p in model.text_encoder.parameters() if p.requires_grad]

    def slug_gradients():
        loss = model.noise_loss(batch, prompts[:4])
        return torch.autograd.grad(loss, text_params)

    grads = measured("SLUG gradient pass (text encoder, 4 images)", 4, slug_gradients)
    assert all(torch.isfinite(g).all() for g in grads)

    model.unet.requires_grad_(True)
    unet_params = dict(model.unet.named_parameters())
    optimizer = adamw(unet_params, SalUnConfig(), lr=1e-5)

    def salun_step():
        # SalUn-SD's combined step on 2 + 2 images: relabelled forget loss + alpha x retain loss
        loss = model.noise_loss(batch[:2], prompts[:2], guidance=None) + 0.5 * model.noise_loss(batch[2:], prompts[2:4])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    assert torch.isfinite(measured("SalUn step (UNet, AdamW, 4 images)", 4, salun_step))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_llava_real_path_on_cuda(tmp_path, dtype):
    from test_llava import write_real_tree

    from unlearnbench.benchmarks.llava import LlavaSuite, LlavaSuiteConfig
    from unlearnbench.cache import cache_dir

    embedded = LlavaSuite(LlavaSuiteConfig(embedded="micro"))
    embedded.assets  # trains the micro model (on the CPU) and saves it in the LLaVA folder layout
    write_real_tree(tmp_path, embedded)
    saved = cache_dir() / "models" / embedded.model_id()
    real = LlavaSuite(LlavaSuiteConfig(config="real", model_path=str(saved / "llava"), clip_path=str(saved / "clip"),
                                       data=str(tmp_path), batch_size=16, dtype=dtype, device=DEVICE))
    assert on_cuda(real.base_model())
    target = real.targets()[0]
    before = real.evaluate(real.base_model(), target)
    assert before["FA"] > 50 and before["TA_ID"] > 50, before
    after = run_methods(real, target, {"slug": {"search_steps": "3", "max_front_layers": "1"},
                                       "slug-lm": {"search_steps": "3", "max_front_layers": "1"},
                                       "ga": {"epochs": "1"}})
    assert all(0 <= v <= 100 for metrics in after.values() for v in metrics.values())
