"""Retrain each shipped embedded model from scratch, as `bench.py train-embedded` does, and check its bars.

Marked ``retrain`` (not ``slow``): the tiny CLIP takes about 10 minutes on one thread, the tiny LLaVA about
5, the text-to-image model about 55. `.ci/run` runs the first two when time allows;
``pytest -m retrain`` runs all three.
"""

from __future__ import annotations

import json

import pytest

from unlearnbench.cache import config_hash
from unlearnbench.cli import main
from unlearnbench.models import canvas_clip, tiny_clip, tiny_diffusion, tiny_llava
from unlearnbench.models.embedded import shipped_settings
from unlearnbench.models.shipped import CARD

# name -> (suite, the bars: metric -> minimum)
BARS = {
    "ub-clip-tiny": ("clip", {"identity_top1": tiny_clip.IDENTITY_BAR, "object_top1": tiny_clip.OBJECT_BAR}),
    "tiny-llava": ("llava", {"identity": tiny_llava.IDENTITY_BAR, "colour": tiny_llava.UTILITY_BAR,
                             "shape": tiny_llava.UTILITY_BAR, "count": tiny_llava.UTILITY_BAR}),
    "canvas-t2i": ("unlearncanvas", {"style_acc": tiny_diffusion.STYLE_BAR, "object_acc": tiny_diffusion.OBJECT_BAR,
                                     "clip_style_acc": canvas_clip.STYLE_BAR}),
}


@pytest.mark.retrain
@pytest.mark.parametrize("name", sorted(BARS))
def test_retrained_model_clears_its_bars(name, tmp_path, monkeypatch, capsys):
    suite, bars = BARS[name]
    monkeypatch.setenv("UNLEARNBENCH_CACHE", str(tmp_path))  # from scratch: nothing cached
    assert main(["train-embedded", "--suite", suite]) == 0
    out = capsys.readouterr().out
    folder = next((tmp_path / "models").glob(f"{name}-*"))
    card = json.loads((folder / CARD).read_text())
    assert card["config_key"] == config_hash(shipped_settings()[name])  # the shipped model's settings
    for metric, bar in bars.items():
        assert card["bars"][metric] >= bar, (metric, card["bars"][metric], bar)
    assert f"{name}: {folder}" in out
