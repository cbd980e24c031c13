"""Tiny on-disk copies of the real ``unlearncanvas`` inputs: the image tree, a diffusers Stable Diffusion
folder (random weights, a few thousand parameters) and classifier checkpoints in the official format."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from fixtures_real import tiny_jpeg

# Files 1, 2 and 10 per pair: sorting by name would put 10.jpg second, sorting by number puts it last.
IMAGE_NUMBERS = (1, 2, 10)
EXTRA_STYLE = "Blue_Blooming"  # in the 60-style release but not in the classifiers' 50: must be ignored
TOKEN_CHARS = [chr(i) for i in range(33, 127)]  # printable ASCII maps to itself in CLIP's byte-level BPE
MAX_TOKENS = 16
HIDDEN = 16


def make_canvas_tree(root: Path, styles: Sequence[str], objects: Sequence[str],
                     numbers: Sequence[int] = IMAGE_NUMBERS) -> None:
    """``root/<Style>/<Object>/<n>.jpg``, plus one style folder outside the classifiers' list."""
    data = tiny_jpeg((40, 160, 40))
    for style in [*styles, EXTRA_STYLE]:
        for object_name in objects:
            folder = root / style / object_name
            folder.mkdir(parents=True)
            for n in numbers:
                (folder / f"{n}.jpg").write_bytes(data)


def make_tiny_sd_folder(root: Path) -> Path:
    """A diffusers Stable Diffusion folder laid out like SD v1.5's, with tiny random components.

    The tokenizer folder holds vocab.json and merges.txt (as SD v1.5's does, with no tokenizer.json) and
    the scheduler config is SD v1.5's PNDM one, which the loader turns into DDIM.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=HIDDEN, attention_head_dim=2, norm_num_groups=4)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), block_out_channels=(8, 16), latent_channels=4,
        norm_num_groups=4, layers_per_block=1, sample_size=16)
    vocab = write_tiny_tokenizer(root / "tokenizer")
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, projection_dim=HIDDEN,
        num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=MAX_TOKENS,
        bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"]))
    unet.save_pretrained(root / "unet")
    vae.save_pretrained(root / "vae")
    text_encoder.save_pretrained(root / "text_encoder")
    (root / "scheduler").mkdir()
    (root / "scheduler" / "scheduler_config.json").write_text(json.dumps({
        "_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
        "num_train_timesteps": 1000, "clip_sample": False, "set_alpha_to_one": False, "skip_prk_steps": True,
        "steps_offset": 1, "trained_betas": None}))
    (root / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline",
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "PNDMScheduler"], "safety_checker": [None, None],
        "feature_extractor": [None, None], "requires_safety_checker": False}))
    return root


def build_sd15(tokenizer_folder: Path):
    """Stable Diffusion v1.5 at its real size, random weights: the UNet, VAE and ViT-L/14 text encoder built
    from their published configs (runwayml/stable-diffusion-v1-5's unet/, vae/ and text_encoder/
    config.json), the scheduler config SD v1.5 ships, and the tiny test tokenizer padded to 77 tokens."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from unlearnbench.models.t2i import SamplerConfig, TextToImage

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, cross_attention_dim=768, attention_head_dim=8,
        norm_num_groups=32)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
        latent_channels=4, sample_size=512, norm_num_groups=32)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
        max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768))
    write_tiny_tokenizer(tokenizer_folder)
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_folder, model_max_length=77)
    scheduler = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              num_train_timesteps=1000, clip_sample=False, steps_offset=1)
    sampler = SamplerConfig(scheduler="DDIMScheduler", timestep_spacing="leading", clip_sample=False, steps=100,
                            guidance=9.0)
    return TextToImage(unet, text_encoder, tokenizer, scheduler, sampler, vae=vae)


def write_tiny_tokenizer(folder: Path) -> dict[str, int]:
    """A CLIP BPE vocabulary of single characters (plain and word-final), one merge and the special tokens."""
    vocab: dict[str, int] = {}
    for token in [*TOKEN_CHARS, *(c + "</w>" for c in TOKEN_CHARS), "in</w>", "<|startoftext|>", "<|endoftext|>"]:
        vocab[token] = len(vocab)
    folder.mkdir(parents=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\ni n</w>\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": MAX_TOKENS, "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}))
    return vocab


def save_classifier(path: Path, arch: str, num_classes: int, wrap: str | None = "model_state_dict",
                    prefix: str = "", seed: int = 0) -> torch.nn.Module:
    """A timm classifier saved as the official UnlearnCanvas judges are (``{"model_state_dict": ...}``).

    ``wrap=None`` saves the bare state dict and ``prefix`` prepends e.g. ``module.`` to every key.
    Returns the model, in eval mode, to compare outputs with.
    """
    import timm

    torch.manual_seed(seed)
    model = timm.create_model(arch, pretrained=False, num_classes=num_classes).eval()
    state = {prefix + k: v for k, v in model.state_dict().items()}
    torch.save(state if wrap is None else {wrap: state}, path)
    return model
