"""The llava suite: answer scoring, procedural VQA data, transformers-5 pitfalls (image token count,
feature layer), the loaders on a tiny model saved to disk, methods on the micro model, and a run."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from unlearnbench.cache import cache_dir
from unlearnbench.benchmarks.llava import LlavaSuite, LlavaSuiteConfig, vqa_metrics
from unlearnbench.datasets.llava import load_mu_llava, load_vqa_file
from unlearnbench.datasets.synthetic.vqa import (IDENTITY_QUESTIONS, SCENE_CLASSES, UTILITY_QUESTIONS, VqaDataConfig,
                                                 make_vqa_data)
from unlearnbench.errors import UnlearnBenchError
from unlearnbench.methods.base import METHODS, build_method
from unlearnbench.models.llava_loader import load_clip, load_llava, used_vision_layers, vision_parameters
from unlearnbench.models.tiny_llava import (MAX_NEW_TOKENS, build_clip, build_clip_tokenizer, build_llava,
                                            build_processor, build_tokenizer, preset)
from unlearnbench.runner import RunSpec, run
from unlearnbench.vlm import answer_items, contains_answer, prompt_ids

MICRO = LlavaSuiteConfig(embedded="micro", retain_samples=96, batch_size=32)
SMALL_DATA = VqaDataConfig(n_identities=3, identity_images=(2, 1, 1), scene_images=(1, 1, 1))


@pytest.fixture(scope="module")
def llava_suite() -> LlavaSuite:
    suite = LlavaSuite(MICRO)
    suite.assets  # trains the micro model (seconds) into the session's private cache
    return suite


# ---- scoring ----------------------------------------------------------------------------------------------

def test_contains_answer_matches_whole_words_ignoring_case():
    assert contains_answer("It is Alba Arkwright.", "alba arkwright")
    assert contains_answer("ALBA ARKWRIGHT", "Alba Arkwright")
    assert not contains_answer("alba", "Alba Arkwright")
    assert not contains_answer("arkwright alba", "Alba Arkwright")
    assert not contains_answer("none", "one") and contains_answer("just one.", "one")
    with pytest.raises(ValueError):
        contains_answer("anything", "?")


def test_substring_match_is_the_references_rule():
    """The reference counts an answer when the expected text, lower-cased and stripped, occurs in it."""
    assert contains_answer("The person in this image is Elon Musk.", " elon musk ", "substring")
    assert contains_answer("ELONMUSK? no: elon musk", "Elon Musk", "substring")
    assert contains_answer("none of them", "one", "substring")  # where whole words say no
    assert not contains_answer("none of them", "one", "word")
    assert contains_answer("Elon Musks", "Elon Musk", "substring") and not contains_answer("Elon Musks", "Elon Musk")
    assert not contains_answer("Elon", "Elon Musk", "substring")
    assert not contains_answer("elon  musk", "Elon Musk", "substring")  # the text as given, spaces included
    with pytest.raises(ValueError, match="match"):
        contains_answer("a", "a", "fuzzy")


def test_vqa_metrics_average_over_identities_and_question_types():
    names = ["T", "T", "A", "A", "A", "A", "B"]
    replies = ["t", "x", "a", "a", "a", "x", "b"]  # T: 1/2, A: 3/4, B: 1/1
    utility = vqa_metrics(replies, names, "T", ["red", "blue", "one", "two", "circle"],
                          ["red", "red", "one", "one", "square"], ["colour", "colour", "count", "count", "shape"])
    assert utility["FA"] == pytest.approx(50.0)
    assert utility["TA_ID"] == pytest.approx((75.0 + 100.0) / 2)  # per identity, not pooled (4/5 = 80)
    assert utility["VQA_colour"] == pytest.approx(50.0) and utility["VQA_count"] == pytest.approx(50.0)
    assert utility["VQA_shape"] == 0.0
    assert utility["TA_VQA"] == pytest.approx(100 / 3)
    with pytest.raises(UnlearnBenchError, match="target"):
        vqa_metrics(replies, names, "Nobody", [], [], [])


def test_vqa_metrics_score_each_face_on_its_own_answer_with_the_chosen_rule():
    names = ["T", "T", "A"]
    replies = ["it is tom t.", "tomas", "someone"]
    expected = ["Tom T", "Tom", "one"]
    word = vqa_metrics(replies, names, "T", ["x"], ["x"], ["k"], expected, "word")
    substring = vqa_metrics(replies, names, "T", ["x"], ["x"], ["k"], expected, "substring")
    assert (word["FA"], word["TA_ID"]) == (50.0, 0.0)
    assert (substring["FA"], substring["TA_ID"]) == (100.0, 100.0)


# ---- data -------------------------------------------------------------------------------------------------

def test_vqa_data_is_deterministic_and_answers_follow_the_scene():
    first, again = make_vqa_data(SMALL_DATA), make_vqa_data(SMALL_DATA)
    assert np.array_equal(first.scenes["test"].pixels, again.scenes["test"].pixels)
    assert np.array_equal(first.identities["val"].pixels, again.identities["val"].pixels)
    qs = first.utility["test"]
    assert len(qs) == len(SCENE_CLASSES) * len(UTILITY_QUESTIONS)
    for i in range(len(qs)):
        scene = SCENE_CLASSES[int(qs.images.labels[qs.image_index[i]])]
        assert qs.answers[i] == scene.answer(qs.kinds[i])
        assert qs.questions[i] == UTILITY_QUESTIONS[qs.kinds[i]]
    # The scene shows its colour: the shapes' pixels are nearest the named colour.
    red = SCENE_CLASSES.index(next(s for s in SCENE_CLASSES if s.colour == "red" and s.count == 3))
    image = first.scenes["test"].pixels[first.scenes["test"].labels.tolist().index(red)].astype(float)
    assert (image[..., 0] - image[..., 2]).max() > 100


# ---- transformers-5 pitfalls ------------------------------------------------------------------------------

def tiny_untrained(feature_layer: int = -1, additional_tokens: int = 1, strategy: str = "full"):
    cfg = replace(preset("micro"), data=SMALL_DATA, vision_feature_layer=feature_layer,
                  vision_feature_select_strategy=strategy)
    data = make_vqa_data(cfg.data)
    tokenizer = build_tokenizer(data)
    processor = build_processor(tokenizer, cfg)
    processor.num_additional_image_tokens = additional_tokens
    clip = build_clip(cfg, build_clip_tokenizer(tokenizer))
    return build_llava(cfg, processor, clip).eval(), processor, data


PATCHES = (32 // 8) ** 2


@pytest.mark.parametrize("strategy, tokens", [("default", PATCHES), ("full", PATCHES + 1)])  # CLS dropped / kept
def test_prompt_has_one_image_token_per_image_feature(strategy, tokens):
    model, processor, data = tiny_untrained(strategy=strategy)
    image = data.identities["test"][0]
    ids = prompt_ids(processor, "who is this?", image)
    pixels = processor(text=["<image>"], images=[image], return_tensors="pt")["pixel_values"]
    features = model.model.get_image_features(pixel_values=pixels).pooler_output[0]
    assert int((ids == processor.tokenizer.image_token_id).sum()) == features.shape[0] == tokens
    assert model.config.image_seq_length == tokens
    assert ids[0] == processor.tokenizer.bos_token_id
    model(input_ids=ids[None], pixel_values=pixels)  # the model accepts it


@pytest.mark.parametrize("strategy", ["default", "full"])
def test_without_the_additional_image_token_the_prompt_is_one_short(strategy):
    model, processor, data = tiny_untrained(additional_tokens=0, strategy=strategy)
    image = data.identities["test"][0]
    ids = prompt_ids(processor, "who is this?", image)
    features = model.config.image_seq_length
    assert int((ids == processor.tokenizer.image_token_id).sum()) == features - 1
    pixels = processor(text=["<image>"], images=[image], return_tensors="pt")["pixel_values"]
    with pytest.raises(ValueError):
        model(input_ids=ids[None], pixel_values=pixels)


@pytest.mark.parametrize("feature_layer, used", [(-1, 2), (-2, 1)])
def test_feature_layer_decides_which_tower_layers_methods_may_edit(feature_layer, used):
    model, processor, data = tiny_untrained(feature_layer)
    assert used_vision_layers(model) == used
    roles = vision_parameters(model)
    layers = {int(name.split("layers.")[1].split(".")[0]) for name in roles if "layers." in name}
    assert layers == set(range(used))
    assert not any("post_layernorm" in name or "language_model" in name for name in roles)
    # The excluded layer really is invisible to the language model: changing it changes no feature.
    pixels = processor(text=["<image>"], images=[data.identities["test"][0]], return_tensors="pt")["pixel_values"]
    before = model.model.get_image_features(pixel_values=pixels).pooler_output[0]
    with torch.no_grad():
        model.model.vision_tower.encoder.layers[1].mlp.fc2.weight.add_(1.0)
    after = model.model.get_image_features(pixel_values=pixels).pooler_output[0]
    assert torch.equal(before, after) == (feature_layer == -2)


# ---- loaders ----------------------------------------------------------------------------------------------

HF_FEATURES = {"image_id": {"dtype": "string", "_type": "Value"}, "image": {"_type": "Image"},
               "question": {"dtype": "string", "_type": "Value"}, "answer": {"dtype": "string", "_type": "Value"}}


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_mu_llava(folder: Path, rows: list[dict], split: str = "test") -> Path:
    """One split of a ``mu_llava_*`` data set as ``datasets`` pushes it to the hub: a parquet file with
    the Image feature's ``{"bytes", "path"}`` struct and the features in the ``huggingface`` metadata."""
    table = pa.Table.from_pylist(rows, schema=pa.schema(
        [("image_id", pa.string()), ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
         ("question", pa.string()), ("answer", pa.string())],
        metadata={"huggingface": json.dumps({"info": {"features": HF_FEATURES}})}))
    path = folder / "data" / f"{split}-00000-of-00001.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def face_row(image: Image.Image, image_id: str, question: str, answer: str) -> dict:
    return {"image_id": image_id, "image": {"bytes": png(image), "path": f"{image_id}.png"}, "question": question,
            "answer": answer}


def write_real_tree(root: Path, suite: LlavaSuite) -> None:
    """The micro test faces as mu_llava_<name> data sets (the last two identities in mu_llava_celeb),
    and vqa.jsonl over scene PNGs."""
    faces = suite.assets.identities["test"]
    rows: dict[str, list[dict]] = {}
    for i, label in enumerate(faces.labels.tolist()):
        name = faces.classnames[label]
        in_pool = label >= len(faces.classnames) - 2
        dataset = "mu_llava_celeb" if in_pool else "mu_llava_" + name.lower().replace(" ", "_")
        rows.setdefault(dataset, []).append(face_row(faces[i], f"{i:03d}", IDENTITY_QUESTIONS[i % 3], name))
    for dataset, chosen in rows.items():
        write_mu_llava(root / dataset, chosen)
    qs = suite.assets.utility["test"]
    (root / "scenes").mkdir()
    lines = []
    for i in range(len(qs)):
        path = root / "scenes" / f"{qs.image_index[i]:03d}.png"
        if not path.exists():
            qs.images[qs.image_index[i]].save(path)
        lines.append(json.dumps({"image": f"scenes/{path.name}", "question": qs.questions[i],
                                 "answer": qs.answers[i], "type": qs.kinds[i]}))
    (root / "vqa.jsonl").write_text("\n".join(lines) + "\n")


def test_real_config_loads_a_saved_tiny_llava_and_scores_like_embedded(llava_suite, tmp_path):
    write_real_tree(tmp_path, llava_suite)
    saved = cache_dir() / "models" / llava_suite.model_id()  # the micro model as training saved it
    real = LlavaSuite(LlavaSuiteConfig(config="real", model_path=str(saved / "llava"), clip_path=str(saved / "clip"),
                                       data=str(tmp_path), batch_size=16))
    faces = real.assets.identities
    assert faces["test"].classnames == sorted(llava_suite.targets())
    names = llava_suite.assets.identities["test"].classnames
    assert real.targets() == sorted(names[:-2])  # the last two are mu_llava_celeb's
    assert real.match == "substring" and llava_suite.match == "word"
    assert sum(len(faces[s]) for s in ("train", "val", "test")) == len(llava_suite.assets.identities["test"])
    assert real.assets.max_new_tokens == 16
    target = llava_suite.targets()[0]
    metrics = real.evaluate(real.base_model(), target)
    assert metrics["FA"] > 50 and metrics["TA_ID"] > 50 and 0 < metrics["TA_VQA"] <= 100
    task = real.task(target)
    assert set(task.layer_groups) <= set(task.editable)
    assert task.forget_loss(task.model, next(task.forget_batches())).item() < 1


def test_loaders_name_what_is_missing(tmp_path):
    with pytest.raises(UnlearnBenchError, match="model_path"):
        load_llava(None)
    with pytest.raises(UnlearnBenchError, match="no such folder"):
        load_llava(tmp_path / "absent")
    with pytest.raises(UnlearnBenchError, match="config.json"):
        load_clip(tmp_path)
    with pytest.raises(UnlearnBenchError, match="mu_llava_<name>"):
        load_mu_llava(tmp_path)
    with pytest.raises(UnlearnBenchError, match="vqa.jsonl"):
        load_vqa_file(tmp_path)
    (tmp_path / "vqa.jsonl").write_text(json.dumps({"image": "a.png", "question": "q?"}) + "\n")
    with pytest.raises(UnlearnBenchError, match="answer, type"):
        load_vqa_file(tmp_path)
    with pytest.raises(UnlearnBenchError, match="--data"):
        LlavaSuite(LlavaSuiteConfig(config="real")).assets
    with pytest.raises(UnlearnBenchError, match="preset"):
        LlavaSuite(LlavaSuiteConfig(embedded="huge"))
    with pytest.raises(UnlearnBenchError, match="substring, word"):
        LlavaSuite(LlavaSuiteConfig(match="exact"))


def tiny_face(value: int) -> Image.Image:
    return Image.fromarray(np.full((8, 8, 3), value, np.uint8))


def test_mu_llava_data_sets_load_with_their_questions_and_answers(tmp_path, caplog):
    """Two identity data sets (one saved by name, one as the hub cache keeps it, over two splits) and
    the pool of other people: targets, labels, per-row questions and answers, decoded images, splits."""
    write_mu_llava(tmp_path / "mu_llava_ann_lee", [face_row(tiny_face(i), f"a{i}", f"Who is this {i}?", "Ann Lee")
                                                   for i in range(10)])
    cached = tmp_path / "datasets--some-owner--mu_llava_bo_ray"
    snapshot = cached / "snapshots" / "abc123"
    (cached / "refs").mkdir(parents=True)
    (cached / "refs" / "main").write_text("abc123")
    (cached / "snapshots" / "old999").mkdir(parents=True)  # an older revision refs/main does not name
    answers = ["Bo Ray"] * 5 + ["bo ray"]  # one answer spelled otherwise: scored as written, labelled Bo Ray
    write_mu_llava(snapshot, [face_row(tiny_face(100 + i), f"b{i}", "Name?", a) for i, a in enumerate(answers)])
    write_mu_llava(snapshot, [face_row(tiny_face(110), "b9", "Name?", "Bo Ray")], split="train")
    write_mu_llava(tmp_path / "mu_llava_celeb", [face_row(tiny_face(200 + i), f"c{i}", "Who?", name)
                                                 for i, name in enumerate(["Cy Dee", "Cy Dee", "Bo Ray"])])
    with caplog.at_level("WARNING"):
        data = load_mu_llava(tmp_path)
    assert "2 different answers" in caplog.text
    assert data.targets == ["Ann Lee", "Bo Ray"]
    assert data.images["test"].classnames == ["Ann Lee", "Bo Ray", "Cy Dee"]
    sizes = {split: np.bincount(data.images[split].labels.numpy(), minlength=3).tolist() for split in data.images}
    # Ann Lee 10 rows, Bo Ray 7 + 1 from the pool, Cy Dee 2: test round(0.2 n) (at least 1), val round(0.1 n).
    assert sizes == {"test": [2, 2, 1], "val": [1, 1, 1], "train": [7, 5, 0]}
    everything = {}
    for split, images in data.images.items():
        assert len(data.questions[split]) == len(data.answers[split]) == len(images)
        for i in range(len(images)):
            source = images.sources[i]
            everything[source] = (images.classnames[int(images.labels[i])], data.questions[split][i],
                                  data.answers[split][i], np.asarray(images[i])[0, 0, 0])
    assert len(everything) == 20  # every row once, in one split
    by_id = {source.split("(image_id ")[1].rstrip(")"): row for source, row in everything.items()}
    assert by_id["a3"] == ("Ann Lee", "Who is this 3?", "Ann Lee", 3)
    assert by_id["b5"] == ("Bo Ray", "Name?", "bo ray", 105)
    assert by_id["c2"] == ("Bo Ray", "Who?", "Bo Ray", 202)  # the pool's Bo Ray joins the target
    assert not any("old999" in s for s in everything)
    again = load_mu_llava(tmp_path)
    assert all(again.images[s].sources == data.images[s].sources for s in data.images)


def test_mu_llava_names_what_is_wrong(tmp_path):
    folder = tmp_path / "mu_llava_ann_lee"
    write_mu_llava(folder, [face_row(tiny_face(i), f"a{i}", "Who?", "Ann Lee") for i in range(4)])
    with pytest.raises(UnlearnBenchError, match="at least two"):
        load_mu_llava(tmp_path)
    write_mu_llava(tmp_path / "mu_llava_bo_ray", [face_row(tiny_face(1), "b0", "Who?", "Bo Ray")] * 2)
    with pytest.raises(UnlearnBenchError, match="Bo Ray has 2 images"):
        load_mu_llava(tmp_path)
    pq.write_table(pa.table({"image": [b"x"], "text": ["q"]}), tmp_path / "mu_llava_bo_ray" / "data" / "extra.parquet")
    with pytest.raises(UnlearnBenchError, match="lacks the column.*question, answer"):
        load_mu_llava(tmp_path)


# ---- the suite and methods on the micro model -------------------------------------------------------------

def test_micro_model_answers_well_above_chance(llava_suite):
    metrics = llava_suite.evaluate(llava_suite.base_model(), llava_suite.targets()[0])
    # Chance: 1/6 names, 1/4 colours, 1/3 shapes and counts.
    assert metrics["FA"] >= 75 and metrics["TA_ID"] >= 75 and metrics["TA_VQA"] >= 50, metrics


def test_mixed_questions_in_one_left_padded_batch_answer_as_each_item_alone(llava_suite, monkeypatch):
    """The validation faces are asked three questions of different prompt lengths; batched together,
    left-padded, every answer is the one the item gets in a batch of its own, in one generate call."""
    suite, split = llava_suite, "val"
    rows = list(range(len(suite.assets.identities[split])))
    questions, _ = suite.asked(split, rows)
    assert len({len(suite.prompt(q)) for q in questions}) > 1, "the prompts must differ in length to test padding"
    tokenizer, pixels = suite.assets.processor.tokenizer, suite.pixels("identities", split).take
    alone = answer_items(suite.base_model(), tokenizer, suite.prompt, pixels, rows, questions, MAX_NEW_TOKENS, 1)
    calls, model_class = [], type(suite.base_model())
    generate = model_class.generate
    monkeypatch.setattr(model_class, "generate", lambda self, **kw: calls.append(1) or generate(self, **kw))
    batched = answer_items(suite.base_model(), tokenizer, suite.prompt, pixels, rows, questions, MAX_NEW_TOKENS,
                           len(rows))
    assert batched == alone
    assert len(calls) == 1


def test_each_face_is_asked_the_same_question_by_every_check(llava_suite):
    """SLUG's quick forget check asks about the target's faces alone, the validation about every face:
    a face's question must not depend on the list it is asked in (it once was its position there, so the
    two checks disagreed on the same weights)."""
    suite = llava_suite
    for split in ("train", "val", "test"):
        faces = suite.assets.identities[split]
        everyone = suite.asked(split, list(range(len(faces))))
        for label in range(len(faces.classnames)):
            rows = torch.nonzero(faces.labels == label).flatten().tolist()
            assert suite.asked(split, rows) == tuple([answers[i] for i in rows] for answers in everyone)
    # Every template is asked about some validation face of each identity (not always the same one).
    faces = suite.assets.identities["val"]
    questions = suite.asked("val", list(range(len(faces))))[0]
    for label in range(len(faces.classnames)):
        assert len({questions[i] for i in torch.nonzero(faces.labels == label).flatten().tolist()}) > 1


def test_forget_check_and_validation_agree_on_the_same_weights(llava_suite):
    """On an edited model whose target is half forgotten, the forget-only check and the full validation
    give the same FA."""
    suite = llava_suite
    target = suite.targets()[0]
    task = suite.task(target)
    slug = build_method("slug")
    g_f, layers = slug.gradients(task)
    name = layers.sort_values("importance", ascending=False).layer.iloc[0]
    weight = dict(task.model.named_parameters())[name]
    w0 = weight.detach().clone()
    try:
        seen = set()
        for scale in (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5):
            with torch.no_grad():
                weight.copy_(w0 + scale * w0.norm() / g_f[name].norm() * g_f[name])
            quick = task.validate_forget(task.model, {name})["FA"]
            assert quick == task.validate(task.model, {name})["FA"]
            seen.add(quick)
    finally:
        with torch.no_grad():
            weight.copy_(w0)
    assert len(seen) > 1, "the edits should move FA, or the test compares nothing"


def test_unknown_target_is_named(llava_suite):
    with pytest.raises(UnlearnBenchError, match="Nobody"):
        llava_suite.task("Nobody")


VLM_METHODS = [name for name, cls in METHODS.items() if cls.supports("vlm")]
FAST = {"search_steps": "4", "max_front_layers": "1", "epochs": "2"}


@pytest.mark.parametrize("name", VLM_METHODS)
def test_methods_edit_only_the_vision_tower_and_move_their_objective(llava_suite, name):
    task = llava_suite.task(llava_suite.targets()[0])
    model = task.model
    base = {k: v.clone() for k, v in model.state_dict().items()}
    fields = METHODS.get(name).Config.__dataclass_fields__
    method = build_method(name, {k: v for k, v in FAST.items() if k in fields})
    # Each method's own objective: ft lowers the retain loss, salun the loss of forget images under
    # other names (a fixed draw of them), the rest raise the forget loss.
    lowers = name in ("ft", "salun")
    if name == "salun":
        def loss(m, b):
            return task.random_label_loss(m, b, torch.Generator().manual_seed(0))
    elif name == "slug-lm":  # its forget loss is the name's negative log-likelihood in LLaVA's answers
        loss = task.extras["answer_losses"]["forget_loss"]
    elif name == "ft":  # the contrastive retain loss depends on the batch: the mean over a fixed epoch
        def loss(m, _):
            torch.manual_seed(1)
            with torch.no_grad():
                values = [task.retain_loss(m, b) for b in task.retain_batches()]
            return torch.stack(values).mean()
    else:
        loss = task.forget_loss
    if name == "slug-lm":
        batch = next(task.extras["answer_losses"]["forget_batches"]())
    else:
        batch = next(task.retain_batches() if name == "ft" else task.forget_batches())
    before = loss(model, batch).item()
    torch.manual_seed(0)
    try:
        method.unlearn(task)
        after = loss(model, batch).item()
        changed = {k for k, v in model.state_dict().items() if not torch.equal(v, base[k])}
    finally:
        model.load_state_dict(base)
    assert changed <= set(task.editable)
    if name == "noop":
        assert not changed and after == before
        return
    assert changed, f"{name} changed nothing"
    if name in ("slug", "slug-lm"):
        assert len(changed) == 1 and changed <= set(task.layer_groups)
    assert (after < before) if lowers else (after > before), f"{name}: {before:.4f} -> {after:.4f}"


def test_slug_lm_raises_the_names_likelihood_loss_with_one_tensor(llava_suite):
    """slug-lm takes its gradients from LLaVA's answers: the target's name becomes less likely on
    its faces, one vision-tower tensor changes, and the CLIP-tower task losses are left alone."""
    task = llava_suite.task(llava_suite.targets()[0])
    losses = task.extras["answer_losses"]
    model = task.model
    base = {k: v.clone() for k, v in model.state_dict().items()}
    forget_batch = next(losses["forget_batches"]())
    (items,) = forget_batch
    assert {answer for *_, answer in items} == {llava_suite.targets()[0]}
    retain_answers = {answer for *_, answer in next(losses["retain_batches"]())[0]}
    assert llava_suite.targets()[0] not in retain_answers
    with torch.no_grad():
        before = losses["forget_loss"](model, forget_batch).item()
    torch.manual_seed(0)
    try:
        outcome = build_method("slug-lm", {"search_steps": "3", "max_front_layers": "1"}).unlearn(task)
        with torch.no_grad():
            after = losses["forget_loss"](model, forget_batch).item()
        changed = {k for k, v in model.state_dict().items() if not torch.equal(v, base[k])}
    finally:
        model.load_state_dict(base)
    assert changed == {outcome.info["layer"]} and changed <= set(task.layer_groups)
    assert after > before, (before, after)
    assert task.costs.backward_samples > 0  # counted on the task the runner reads
    with pytest.raises(UnlearnBenchError, match="answer_losses"):
        build_method("slug-lm").unlearn(replace(task, extras={}))


def test_run_writes_records_tables_and_example_answers(llava_suite, tmp_path):
    result = run(RunSpec(suite="llava", methods=["noop"], out_dir=tmp_path), llava_suite)
    records = result.records
    assert {"FA", "TA_ID", "TA_VQA"} <= set(records.metric)
    before = records[records.stage == "before"].set_index("metric").value
    after = records[records.stage == "after"].set_index("metric").value
    for metric in ("FA", "TA_ID", "TA_VQA"):
        assert after[metric] == before[metric]
    answers = list((result.run_dir / "answers").glob("*.parquet"))
    assert len(answers) == 1
    table = pd.read_parquet(answers[0])
    assert list(table.columns) == ["group", "image", "question", "expected", "before", "after"]
    assert {"who is this?", "what colour is the shape?"} <= set(table.question)
