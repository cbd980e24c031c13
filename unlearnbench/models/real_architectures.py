"""The real models' architectures from their published configs, built without weights.

One place for the shapes that ``unlearnbench/models/proportions.py`` (parameter shares) and
``unlearnbench/real_scale.py`` (the time of one pass at real scale) both need. Each builder creates
its modules on torch's current default device: under ``with torch.device("meta")`` they cost nothing.
"""

from __future__ import annotations

from torch import nn

# LLaVA-1.5: 576 image tokens (336 / 14 squared) before a short prompt; the length a real pass sees.
LLAVA_IMAGE_TOKENS = 576
LLAVA_PROMPT_TOKENS = 64


def clip_vit_b32() -> nn.Module:
    """open_clip ViT-B-32 (the clip suite's real model)."""
    import open_clip

    return open_clip.model.CLIP(**open_clip.get_model_config("ViT-B-32"))


def sd15_unet() -> nn.Module:
    """Stable Diffusion v1.5's UNet (its published unet/config.json)."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, cross_attention_dim=768, attention_head_dim=8)


def sd15_vae() -> nn.Module:
    """Stable Diffusion v1.5's VAE (vae/config.json): 512-pixel images from 64 x 64 x 4 latents."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                         block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                         sample_size=512)


def sd15_text_encoder() -> nn.Module:
    """Stable Diffusion v1.5's text encoder: the text tower of CLIP ViT-L/14 (text_encoder/config.json)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                                        num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77))


def unlearncanvas_classifier(n_classes: int) -> nn.Module:
    """UnlearnCanvas's style (51) / object (20) judge: timm ViT-L/16 at 224 pixels with a new head."""
    import timm

    from unlearnbench.models.sd_loader import CLASSIFIER_ARCH

    return timm.create_model(CLASSIFIER_ARCH, pretrained=False, num_classes=n_classes)


def llava15_7b_config(language_layers: int = 32):
    """LLaVA-1.5-7B: CLIP ViT-L/14-336 under Vicuna-7B (Llama-2 7B shape). ``language_layers`` < 32 builds
    the same model with fewer decoder layers (for timing one layer)."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    return LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                       num_attention_heads=16, image_size=336, patch_size=14, projection_dim=768),
        text_config=LlamaConfig(vocab_size=32064, hidden_size=4096, intermediate_size=11008,
                                num_hidden_layers=language_layers, num_attention_heads=32),
        projector_hidden_act="gelu")


def llava15_7b() -> nn.Module:
    from transformers import LlavaForConditionalGeneration

    return LlavaForConditionalGeneration(llava15_7b_config())
