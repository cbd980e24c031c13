"""The embedded models shipped in the package: cards that match the code, files that match their sha256,
clear errors naming the file and the fix when they do not, and realistic parameter shares."""

from __future__ import annotations

import json
import shutil

import open_clip
import pytest
import torch

from unlearnbench.cache import config_hash
from unlearnbench.cli import main
from unlearnbench.errors import UnlearnBenchError
from unlearnbench.models import shipped, tiny_clip
from unlearnbench.models.embedded import shipped_settings
from unlearnbench.models.shipped import CARD, WEIGHTS_DIR, model_folder, ship, verified_folder

MB = 1e6


@pytest.mark.parametrize("name", sorted(shipped_settings()))
def test_each_shipped_model_matches_this_code_and_its_sha256(name):
    """A change to an embedded model's training settings must re-ship it (bench.py train-embedded --ship)."""
    settings = shipped_settings()[name]
    card = json.loads((WEIGHTS_DIR / name / CARD).read_text())
    assert card["config_key"] == config_hash(settings), f"{name} was shipped from other settings; re-ship it"
    assert verified_folder(name, config_hash(settings)) == WEIGHTS_DIR / name
    assert card["bars"] and card["trained"]["seconds"] > 0


def test_shipped_weights_fit_in_20_mb():
    total = sum(p.stat().st_size for p in WEIGHTS_DIR.rglob("*") if p.is_file())
    assert total <= 20 * MB, f"shipped weights are {total / MB:.1f} MB"


def test_tiny_clip_token_table_is_a_small_share_like_vit_b_32s():
    def share(model):
        return model.token_embedding.weight.numel() / sum(p.numel() for p in model.parameters())

    with tiny_clip.random_init_allowed():
        real = open_clip.create_model("ViT-B-32")
    tiny = tiny_clip.create_model("ub-clip-tiny")
    assert 0.15 < share(real) < 0.18  # 49,408 BPE tokens x 512
    assert share(tiny) <= 0.30


def test_word_tokenizer_covers_every_caption_and_ends_with_the_highest_id(tmp_path, micro_suite):
    tiny_clip.save_tokenizer(tmp_path)
    tokenizer = tiny_clip.load_tokenizer(tmp_path, "ub-clip-tiny")
    vocab_size = open_clip.get_model_config("ub-clip-tiny")["text_cfg"]["vocab_size"]
    assert tokenizer.tokenizer.vocab_size == vocab_size  # the JSON config states the vocabulary's size
    data = micro_suite.assets.data
    names = [*data.identities["test"].classnames, *data.objects["test"].classnames]
    texts = [t(n) for n in names for t in (*tiny_clip.IDENTITY_TEMPLATES, *tiny_clip.OBJECT_TEMPLATES)]
    texts += list(data.retain.classnames)  # the retain pairs' captions
    ids = tokenizer(texts)
    unknown = tokenizer.tokenizer.convert_tokens_to_ids(tiny_clip.UNKNOWN)
    assert not (ids == unknown).any()
    # open_clip pools the text at the argmax token: it must be end-of-text in every caption
    end = tokenizer.tokenizer.convert_tokens_to_ids(tiny_clip.END)
    assert end == vocab_size - 1 and (ids.argmax(dim=1) == (ids != 0).sum(dim=1) - 1).all()


@pytest.fixture
def shipped_copy(tmp_path, monkeypatch):
    """The shipped models copied to a scratch folder that the loaders read instead."""
    folder = tmp_path / "weights"
    shutil.copytree(WEIGHTS_DIR / "ub-clip-tiny", folder / "ub-clip-tiny")
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", folder)
    return folder / "ub-clip-tiny"


def test_a_corrupt_shipped_file_is_named_with_the_fix(shipped_copy, capsys):
    weights = shipped_copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert main(["--suite", "clip", "--methods", "noop"]) == 2
    err = capsys.readouterr().err
    assert f"{weights} is corrupt" in err and "git checkout" in err and "train-embedded --suite clip" in err
    assert "--set embedded_weights=trained" in err  # the suites' setting (clip's `weights` is a checkpoint path)


def test_a_missing_shipped_file_or_card_is_named(shipped_copy):
    key = config_hash(shipped_settings()["ub-clip-tiny"])
    (shipped_copy / "tokenizer" / "tokenizer.json").unlink()
    with pytest.raises(UnlearnBenchError, match=r"tokenizer\.json is missing; reinstall"):
        verified_folder("ub-clip-tiny", key)
    (shipped_copy / CARD).unlink()
    with pytest.raises(UnlearnBenchError, match=r"card\.json is missing"):
        verified_folder("ub-clip-tiny", key)


def test_weights_shipped_from_other_settings_are_refused(shipped_copy):
    changed = {**shipped_settings()["ub-clip-tiny"], "steps": 1}
    with pytest.raises(UnlearnBenchError,
                       match=r"trained from other settings .* --ship, or use --set embedded_weights=trained"):
        model_folder("ub-clip-tiny", changed, "shipped", ships=True)


def test_unknown_weights_source_is_an_error():
    with pytest.raises(UnlearnBenchError, match="embedded_weights|weights='mine' is not one of shipped, trained"):
        model_folder("ub-clip-tiny", {}, "mine", ships=True)
    assert main(["--suite", "clip", "--set", "embedded_weights=mine"]) == 2


def test_train_embedded_trains_into_the_cache_and_ships_with_a_verifiable_card(tmp_path, monkeypatch, capsys):
    assert main(["train-embedded", "--suite", "clip", "--preset", "micro"]) == 0
    out = capsys.readouterr().out
    assert "ub-clip-micro: held-out zero-shot top-1 identities" in out  # the bars, printed by training
    assert "sha256 in card.json" in out and "identity_top1" in out
    trained = tiny_clip.load_or_train(tiny_clip.preset("micro"), weights="trained")
    card = json.loads((trained.path / CARD).read_text())
    assert card["trained"]["threads"] == torch.get_num_threads() and card["config"]["model"] == "ub-clip-micro"
    assert main(["train-embedded", "--suite", "llava", "--preset", "micro", "--ship"]) == 2  # it does not ship
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", tmp_path / "weights")
    assert main(["train-embedded", "--suite", "clip", "--preset", "micro", "--reuse", "--ship"]) == 0
    key = config_hash(tiny_clip.training_settings(tiny_clip.preset("micro")))
    assert verified_folder("ub-clip-micro", key) == tmp_path / "weights" / "ub-clip-micro"
    assert ship(trained.path, "ub-clip-micro") == tmp_path / "weights" / "ub-clip-micro"
