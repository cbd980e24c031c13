"""unlearncanvas: metric arithmetic on hand-made predictions, protocol constants, and the methods
on the micro embedded model."""

from pathlib import Path

import pandas as pd
import pytest
import torch

from unlearnbench.benchmarks.unlearncanvas import UnlearnCanvasConfig, UnlearnCanvasSuite, canvas_metrics
from unlearnbench.datasets.unlearncanvas import DDIM_STEPS, GUIDANCE, PROMPT_TEMPLATE, SEEDS
from unlearnbench.errors import UnlearnBenchError
from unlearnbench.methods.base import METHODS, build_method


def test_protocol_constants_are_the_official_ones():
    assert SEEDS == (188, 288, 588, 688, 888)
    assert DDIM_STEPS == 100 and GUIDANCE == 9.0
    assert PROMPT_TEMPLATE.format(object="Cats", style="Van Gogh") == "A Cats image in Van Gogh style."
    assert UnlearnCanvasConfig().test_seeds == SEEDS


def test_the_goal_is_no_stricter_than_the_published_rows_and_judged_on_enough_images():
    """UA >= 85 passes every published UnlearnCanvas row of the compared methods (SLUG 86.29, SalUn 86.26,
    ESD 98.58); the embedded validation shows the target in at least 18 images, the real one in 20."""
    from unlearnbench.datasets.synthetic.canvas import CanvasDataConfig  # noqa: PLC0415

    cfg = UnlearnCanvasConfig()
    assert all(100 - ua <= cfg.forget_threshold for ua in (86.29, 86.26, 98.58))
    embedded, real = UnlearnCanvasSuite(cfg), UnlearnCanvasSuite(UnlearnCanvasConfig(config="real"))
    assert len(embedded.val_seeds()) * CanvasDataConfig().n_objects >= 18
    assert len(real.val_seeds()) * 20 >= 18
    assert UnlearnCanvasSuite(UnlearnCanvasConfig(val_seeds=(3,))).val_seeds() == (3,)


def test_metrics_for_a_style_target_by_hand():
    # 3 styles x 2 objects, one image each; target style 0.
    styles = torch.tensor([0, 0, 1, 1, 2, 2])
    objects = torch.tensor([0, 1, 0, 1, 0, 1])
    style_pred = torch.tensor([0, 2, 1, 1, 2, 0])  # target kept once of 2; style 1: 2/2; style 2: 1/2
    object_pred = torch.tensor([1, 1, 0, 0, 0, 1])  # on other styles: object 0: 2/2, object 1: 1/2
    m = canvas_metrics(style_pred, object_pred, styles, objects, target=0, by_style=True)
    assert m["UA"] == pytest.approx(50.0)
    assert m["IRA"] == pytest.approx(75.0)  # mean(100, 50)
    assert m["CRA"] == pytest.approx(75.0)  # mean(100, 50), target-style images excluded


def test_metrics_for_an_object_target_swap_roles():
    styles = torch.tensor([0, 0, 1, 1])
    objects = torch.tensor([0, 1, 0, 1])
    style_pred = torch.tensor([0, 1, 1, 1])
    object_pred = torch.tensor([1, 1, 0, 0])  # target object 1: 1/2 correct -> UA 50
    m = canvas_metrics(style_pred, object_pred, styles, objects, target=1, by_style=False)
    assert m["UA"] == pytest.approx(50.0)
    assert m["IRA"] == pytest.approx(50.0)  # object 0: 1/2
    assert m["CRA"] == pytest.approx(100.0)  # style accuracy on object-0 images: 2/2


def test_bad_config_is_a_clear_error():
    with pytest.raises(UnlearnBenchError, match="target_kind='colour'"):
        UnlearnCanvasSuite(UnlearnCanvasConfig(target_kind="colour"))
    with pytest.raises(UnlearnBenchError, match="val_seeds is empty"):
        UnlearnCanvasConfig(val_seeds=())
    with pytest.raises(UnlearnBenchError, match="trial_check='three'; expected one of judge, reference-budget"):
        build_method("slug", {"trial_check": "three"})
    suite = UnlearnCanvasSuite(UnlearnCanvasConfig(config="real"))
    with pytest.raises(UnlearnBenchError, match="--set data=PATH"):
        suite.targets()


def test_real_configuration_loads_fixture_tree_before_the_model(tmp_path):
    from fixtures_canvas import make_canvas_tree  # noqa: PLC0415 - shared fixture builder

    from unlearnbench.datasets.unlearncanvas import UNLEARNCANVAS_OBJECTS, UNLEARNCANVAS_STYLES

    make_canvas_tree(tmp_path / "data", UNLEARNCANVAS_STYLES, UNLEARNCANVAS_OBJECTS, numbers=(1, 2, 3, 4))
    suite = UnlearnCanvasSuite(UnlearnCanvasConfig(config="real", data=str(tmp_path / "data"),
                                                   model_path=str(tmp_path / "no-model"),
                                                   style_classifier=str(tmp_path / "style.pth"),
                                                   object_classifier=str(tmp_path / "object.pth")))
    with pytest.raises(UnlearnBenchError, match="style.pth"):
        suite.targets()


def test_esd_and_ssd_declare_what_they_support():
    assert METHODS.get("esd").supports("diffusion") and not METHODS.get("esd").supports("clip")
    assert not METHODS.get("ssd").supports("diffusion")


@pytest.fixture(scope="module")
def canvas_suite():
    suite = UnlearnCanvasSuite(UnlearnCanvasConfig(embedded="micro", test_seeds=(188, 288), retain_samples=64))
    suite.assets  # trains the micro model (seconds) once
    return suite


def test_micro_base_model_generates_recognisable_styles(canvas_suite):
    target = canvas_suite.targets()[0]
    metrics = canvas_suite.evaluate(canvas_suite.base_model(), target)
    assert set(metrics) == {"UA", "IRA", "CRA", "UA_para", "FD_style"}  # not an Inception FID: named apart
    assert metrics["IRA"] > 100 / len(canvas_suite.targets()) + 10, metrics  # far above chance


def test_fid_rises_when_the_model_breaks(canvas_suite):
    model = canvas_suite.base_model()
    target = canvas_suite.targets()[0]
    base_fid = canvas_suite.fid(model, target)
    saved = {k: v.clone() for k, v in model.unet.state_dict().items()}
    try:
        with torch.no_grad():
            for p in model.unet.parameters():
                p.add_(torch.randn_like(p) * p.std().nan_to_num(0.1))
        broken_fid = canvas_suite.fid(model, target)
    finally:
        model.unet.load_state_dict(saved)
    assert 0 <= base_fid < broken_fid, (base_fid, broken_fid)


def test_generation_is_cached_per_weights(canvas_suite):
    model = canvas_suite.base_model()
    prompts = ["A cat image in Monet style."]
    first = canvas_suite.generate(model, prompts, (1,))
    weight = next(model.unet.parameters())
    saved = weight.detach().clone()
    with torch.no_grad():
        weight.add_(1.0)
    try:
        changed = canvas_suite.generate(model, prompts, (1,))
    finally:
        with torch.no_grad():
            weight.copy_(saved)
    assert not torch.equal(first, changed)
    assert torch.equal(canvas_suite.generate(model, prompts, (1,)), first)
    assert len(canvas_suite._images) <= 2  # the base model's images and the latest model's only
    cached = next(iter(next(iter(canvas_suite._images.values())).values()))
    assert cached.dtype == torch.uint8 and cached.device.type == "cpu"


def test_esd_u_trains_the_reference_noxattn_set_and_counts_its_passes(canvas_suite):
    from unlearnbench.methods.esd import bin_timestep, esd_parameter_names  # noqa: PLC0415

    names = [f"unet.{n}" for n, _ in canvas_suite.base_model().unet.named_parameters()]
    esd_u = esd_parameter_names(names, "noxattn")
    assert esd_u and not any(".attn2." in n for n in esd_u)
    assert not any(n.startswith(("unet.time_embedding.", "unet.conv_out.", "unet.conv_norm_out.")) for n in esd_u)
    assert any(".norm" in n for n in esd_u) and any("time_emb_proj" in n for n in esd_u)  # kept, as the reference
    gen = torch.Generator().manual_seed(0)
    for stop in (0, 10, 49):  # bin k = 49 - stop of 50 covers [20 k, 20 k + 20)
        k = 49 - stop
        drawn = {int(bin_timestep(stop, 50, 1000, gen)) for _ in range(200)}
        assert min(drawn) >= 20 * k and max(drawn) < 20 * k + 20 and len(drawn) > 10

    task = canvas_suite.task(canvas_suite.targets()[0])
    base = {k: v.clone() for k, v in task.model.state_dict().items()}
    try:
        torch.manual_seed(0)
        outcome = build_method("esd-u", {"iterations": "3", "ddim_steps": "4", "stop_on_goal": "false"}).unlearn(task)
    finally:
        task.model.load_state_dict(base)
    stops = outcome.tables["iterations"].stop_step
    # 2 UNet inputs per guided sampling step, the frozen model's 2 and the trained model's 1, per iteration
    assert task.costs.forward_samples == int((2 * stops + 3).sum())


def test_esd_partial_samples_follow_the_task_schedule_unless_overridden(canvas_suite):
    """x_t stops within the task's schedule (embedded: the model's own sampling steps); ddim_steps=N overrides
    it; the frozen model's two targets are one UNet call of 2 inputs."""
    task = canvas_suite.task(canvas_suite.targets()[0])
    own = task.extras["partial_sampling_steps"]
    assert own == canvas_suite.assets.steps == task.model.sampler_config.steps  # the model's own 5 steps
    base = {k: v.clone() for k, v in task.model.state_dict().items()}
    results = {}
    try:
        for settings in ({}, {"ddim_steps": "9"}):
            task.model.load_state_dict(base)
            task = canvas_suite.task(canvas_suite.targets()[0])
            torch.manual_seed(0)
            outcome = build_method("esd", {"iterations": "12", "stop_on_goal": "false", **settings}).unlearn(task)
            results[settings.get("ddim_steps", "task")] = (outcome, task.costs.forward_samples)
    finally:
        task.model.load_state_dict(base)
    for key, steps in (("task", own), ("9", 9)):
        outcome, forward = results[key]
        rows = outcome.tables["iterations"]
        assert outcome.info["ddim_steps"] == steps and (rows.ddim_steps == steps).all()
        assert rows.stop_step.between(0, steps - 1).all()
        assert forward == int((2 * rows.stop_step + 3).sum())  # same passes counted, batched or not
    assert results["9"][0].tables["iterations"].stop_step.max() >= own  # the override reaches past 5 steps
    with pytest.raises(UnlearnBenchError, match="ddim_steps=0"):
        build_method("esd", {"ddim_steps": "0"})


def test_esd_without_a_task_schedule_uses_the_reference_50_steps():
    from types import SimpleNamespace  # noqa: PLC0415

    from unlearnbench.methods.esd import ESDConfig, partial_sampling_steps  # noqa: PLC0415

    no_schedule = SimpleNamespace(extras={})  # a diffusion suite that names no schedule
    assert partial_sampling_steps(ESDConfig(), no_schedule) == 50
    assert partial_sampling_steps(ESDConfig(ddim_steps=7), no_schedule) == 7
    assert partial_sampling_steps(ESDConfig(), SimpleNamespace(extras={"partial_sampling_steps": 5})) == 5


def test_diffusion_salun_takes_one_combined_step_with_a_guided_saliency(canvas_suite, monkeypatch):
    """SalUn-SD: the mask from the guided noise loss, then per forget batch one step on the relabelled loss
    plus alpha x the retain loss."""
    task = canvas_suite.task(canvas_suite.targets()[0])
    calls = []
    saliency = task.extras["saliency_loss"]
    task.extras["saliency_loss"] = lambda m, b: calls.append("saliency") or saliency(m, b)
    random_label, retain = task.random_label_loss_fn, task.retain_loss_fn
    task.random_label_loss_fn = lambda m, b, g: calls.append("relabel") or random_label(m, b, g)
    task.retain_loss_fn = lambda m, b: calls.append("retain") or retain(m, b)
    base = {k: v.clone() for k, v in task.model.state_dict().items()}
    try:
        torch.manual_seed(0)
        outcome = build_method("salun", {"epochs": "1", "forget_batches": "2", "stop_on_goal": "false",
                                         "alpha": "0.5"}).unlearn(task)
    finally:
        task.model.load_state_dict(base)
    assert calls[:2] == ["saliency", "saliency"]  # the mask's gradient: the guided loss, on 2 forget batches
    assert calls[2:] == ["relabel", "retain"] * 2  # one combined step per forget batch
    assert "loss_combined" in outcome.trace
    with pytest.raises(UnlearnBenchError, match="alpha=-1"):
        build_method("salun", {"alpha": "-1"})


@pytest.mark.parametrize("name, settings", [
    ("slug", {"search_steps": "3", "max_front_layers": "1"}),
    ("ga", {"epochs": "1", "forget_batches": "1"}),
    ("salun", {"epochs": "1", "forget_batches": "1", "retain_batches": "1"}),
    ("esd", {"iterations": "3", "ddim_steps": "4"}),
])
def test_methods_change_the_model_and_stay_finite(canvas_suite, name, settings):
    target = canvas_suite.targets()[0]
    task = canvas_suite.task(target)
    model = task.model
    base = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(0)
    try:
        build_method(name, settings).unlearn(task)
        changed = [k for k, v in model.state_dict().items() if not torch.equal(v, base[k])]
        assert changed, f"{name} changed nothing"
        assert all(torch.isfinite(v).all() for v in model.state_dict().values())
        if name == "slug":
            assert len(changed) == 1 and changed[0].startswith("text_encoder.")
        if name == "esd":
            assert all(".attn2." in k for k in changed)  # esd-x: cross-attention only
    finally:
        model.load_state_dict(base)


def test_validation_grids_share_the_target_prompts(canvas_suite, monkeypatch):
    """The smaller validation grid keeps every target prompt and every cross-domain class; the
    forget-only check generates the target's prompts alone and gives the same UA."""
    target = canvas_suite.targets()[1]
    model = canvas_suite.base_model()
    n_styles, n_objects = len(canvas_suite.assets.styles), len(canvas_suite.assets.objects)
    asked = []
    generate = canvas_suite.generate
    monkeypatch.setattr(canvas_suite, "generate", lambda m, prompts, seeds: asked.append(prompts) or
                        generate(m, prompts, seeds))
    full = canvas_suite.score(model, target, (5,), paraphrases=False)
    small = canvas_suite.score(model, target, (5,), paraphrases=False, per_class=1)
    forget_only = canvas_suite.score(model, target, (5,), paraphrases=False, target_only=True)
    assert [len(p) for p in asked] == [n_styles * n_objects, n_objects + (n_styles - 1), n_objects]
    assert full["UA"] == small["UA"] == forget_only["UA"]
    assert set(forget_only) == {"UA"} and {"IRA", "CRA"} <= set(small)
    covered = {p.split(" image in ")[0] for p in asked[1] if target not in p}
    assert len(covered) == min(n_objects, n_styles - 1)  # the other styles rotate through the objects


def test_task_validation_is_forget_first(canvas_suite):
    task = canvas_suite.task(canvas_suite.targets()[0])
    forget = task.validate_forget(task.model)
    assert set(forget) == {"UA", "target_acc"}
    assert forget["target_acc"] == task.validate(task.model)["target_acc"]


def test_bad_validation_grid_is_a_clear_error():
    with pytest.raises(UnlearnBenchError, match="val_prompts_per_class=0"):
        UnlearnCanvasSuite(UnlearnCanvasConfig(val_prompts_per_class=0))


def test_esd_checks_the_goal_every_check_every_iterations(canvas_suite):
    from unlearnbench.task import Goal  # noqa: PLC0415

    target = canvas_suite.targets()[0]
    settings = {"iterations": "3", "check_every": "1", "ddim_steps": "3"}
    task = canvas_suite.task(target)
    base = {k: v.clone() for k, v in task.model.state_dict().items()}
    try:
        torch.manual_seed(0)
        full = build_method("esd", {**settings, "stop_on_goal": "false"}).unlearn(task)
        assert full.trace.iterations.tolist() == [1, 2, 3] and len(full.tables["iterations"]) == 3
        task.model.load_state_dict(base)
        task = canvas_suite.task(target)
        task.goal = Goal("target_acc", 100.0, "IRA")  # met by any model: the first check stops it
        early = build_method("esd", settings).unlearn(task)
        assert early.trace.iterations.tolist() == [1] and early.info["goal_met"]
    finally:
        task.model.load_state_dict(base)
    with pytest.raises(UnlearnBenchError, match="check_every=0"):
        build_method("esd", {"check_every": "0"})


def test_slug_on_diffusion_follows_the_reference_procedure(canvas_suite):
    """slug: CLIP-loss gradients through the text encoder (not the noise loss), the deepest front layer, the
    reference's bracket on quick scores; slug-qkv moves the attention group; slug-noise keeps the old path."""
    from unlearnbench.methods.common import mean_gradients  # noqa: PLC0415
    from unlearnbench.methods.slug import deepest_layer, layer_group  # noqa: PLC0415

    target = canvas_suite.targets()[0]
    task = canvas_suite.task(target)
    candidates = list(task.layer_groups)
    losses = task.extras["clip_losses"]
    batches = list(task.forget_batches())[:1]
    clip_grad = mean_gradients(task, task.model, batches, losses["forget_loss"], candidates)
    noise_grad = mean_gradients(task, task.model, batches, task.forget_loss, candidates)
    name = candidates[0]
    assert clip_grad[name].norm() > 0 and not torch.allclose(clip_grad[name], noise_grad[name])
    quick = task.extras["quick_scores"](task.model)
    assert set(quick) == {"target_acc", "IRA", "target_hits", "target_images", "images"}
    assert 0 <= quick["target_acc"] <= 100 and 0 <= quick["IRA"] <= 100 and quick["images"] == 6  # 3 + 3 images

    results = {}
    for method in ("slug", "slug-qkv", "slug-noise"):
        task = canvas_suite.task(target)
        base = {k: v.clone() for k, v in task.model.state_dict().items()}
        torch.manual_seed(0)
        try:
            outcome = build_method(method, {"search_steps": "4"}).unlearn(task)
            results[method] = (outcome, [k for k, v in task.model.state_dict().items() if not torch.equal(v, base[k])])
        finally:
            task.model.load_state_dict(base)
    slug, changed = results["slug"]
    front = slug.tables["layers"].query("on_front")
    assert changed == [slug.info["layer"]] == [deepest_layer(front)]
    assert len(slug.trace) <= 4 and {"target_acc", "IRA", "step"} <= set(slug.trace)
    steps = slug.trace.step.tolist()
    assert steps[0] > 0 and all(0 < s <= 10 * steps[0] for s in steps)  # inside the reference's bracket
    qkv, changed = results["slug-qkv"]
    assert sorted(changed) == sorted(layer_group(qkv.info["layer"], candidates)) and qkv.info["tensors"] == len(changed)
    _, changed = results["slug-noise"]
    assert len(changed) == 1 and changed[0].startswith("text_encoder.")


def test_slug_diffusion_trials_exit_early_without_changing_the_choice(canvas_suite):
    """A trial that leaves the target recognisable stops after the first target image recognised (threshold
    0): fewer images, no IRA (NaN), and it did not forget; the chosen layer and step are those of the same
    search scoring every trial in full."""
    target = canvas_suite.targets()[1]  # recognised by the micro base model
    model = canvas_suite.base_model()
    full = canvas_suite.quick_scores(model, target)
    early = canvas_suite.quick_scores(model, target, forget_threshold=0.0)
    assert full["target_acc"] > 0 and full["images"] == 6
    assert early["images"] < full["images"] and early["target_hits"] == 1
    assert pd.isna(early["target_acc"]) and pd.isna(early["IRA"])

    outcomes = {}
    for exits in (True, False):
        task = canvas_suite.task(target)
        quick, asked = task.extras["quick_scores"], []
        task.extras["quick_scores"] = lambda m, quick=quick, exits=exits, asked=asked, **kw: (
            asked.append(kw) or quick(m, **(kw if exits else {})))
        base = {k: v.clone() for k, v in task.model.state_dict().items()}
        torch.manual_seed(0)
        try:
            settings = {"search_steps": "4", "trial_check": "reference-budget"}
            outcomes[exits] = (build_method("slug", settings).unlearn(task), asked)
        finally:
            task.model.load_state_dict(base)
    (early, asked), (full, _) = outcomes[True], outcomes[False]
    threshold = {"forget_threshold": task.goal.forget_threshold}
    assert asked[0] == {} and all(kw == threshold for kw in asked[1:])  # the base scored in full
    assert early.trace.exited_early.any() and not full.trace.exited_early.any()
    exited = early.trace[early.trace.exited_early]
    assert (exited.images < full.trace.loc[exited.index, "images"]).all()
    assert not exited.forgot.any() and not exited.met.any() and exited.IRA.isna().all()
    assert (full.trace.loc[exited.index, "target_acc"] > 0).all()  # they did not forget in full either
    ran = early.trace[~early.trace.exited_early]
    pd.testing.assert_frame_equal(ran, full.trace.loc[ran.index])  # the same images, the same scores
    assert early.trace.step.tolist() == full.trace.step.tolist()
    assert (early.info["layer"], early.info["step"]) == (full.info["layer"], full.info["step"])


def test_slug_diffusion_search_accepts_what_the_runners_goal_accepts(canvas_suite):
    """trial_check=judge (the default): every trial is the runner's own judgement on the validation images; a
    trial that leaves the target recognisable scores the target's images alone (IRA not scored), one that
    forgets is validated in full, and the applied step meets the goal exactly when the runner says so."""
    target = canvas_suite.targets()[1]  # recognised by the micro base model
    task = canvas_suite.task(target)
    base = {k: v.clone() for k, v in task.model.state_dict().items()}
    torch.manual_seed(0)
    try:
        outcome = build_method("slug", {"search_steps": "6"}).unlearn(task)
        trace = outcome.trace
        assert "target_hits" not in trace  # not the reference's 3 + 3 budget
        assert (trace.forgot == trace.target_acc.le(task.goal.forget_threshold)).all()
        assert trace[~trace.forgot].IRA.isna().all() and trace[~trace.forgot].exited_early.all()
        assert trace[trace.forgot].IRA.notna().all()
        judged = task.validate(task.model)  # the edited model, as the runner scores it
        assert task.goal_met(judged) == outcome.info["goal_met"]
        if outcome.info["goal_met"]:
            chosen = trace[trace.met].iloc[-1]
            assert judged["target_acc"] == chosen.target_acc and judged["IRA"] == chosen.IRA
    finally:
        task.model.load_state_dict(base)


def test_slug_diffusion_choice_when_no_trial_forgets():
    from unlearnbench.methods.slug import choose_reference_trial  # noqa: PLC0415
    from unlearnbench.task import Goal  # noqa: PLC0415

    nan = float("nan")
    trace = pd.DataFrame({"layer": ["w"] * 3, "step": [1.0, 5.5, 7.75], "met": [False] * 3, "forgot": [False] * 3,
                          "target_acc": [nan, 66.7, nan], "IRA": [nan] * 3, "target_hits": [1, 2, 1]})
    goal = Goal("target_acc", 0.0, "IRA", 10.0)
    assert choose_reference_trial(trace, goal).step == 7.75  # fewest recognised (a lower bound), largest step
    forgot = trace.assign(forgot=[False, True, False], target_acc=[nan, 0.0, nan], IRA=[nan, 40.0, nan])
    assert choose_reference_trial(forgot, goal).step == 5.5  # a forgetting trial ranks first


def test_slug_layer_helpers():
    from unlearnbench.methods.slug import deepest_layer, layer_group, layer_index  # noqa: PLC0415

    names = [f"text_encoder.encoder.layers.{i}.{part}.weight" for i in (0, 1)
             for part in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.fc1", "mlp.fc2")]
    assert layer_index(names[7]) == 1
    assert layer_group(names[5], names) == names[5:8]  # layer 1's q, k, v
    assert layer_group(names[8], names) == names[8:10]
    assert layer_group("text_encoder.final_projection.weight", names) == ["text_encoder.final_projection.weight"]
    front = pd.DataFrame({"layer": [names[3], names[6], names[9]], "importance": [3.0, 1.0, 2.0]})
    assert deepest_layer(front) == names[9]  # block 1, the more important of the two there


def test_slug_needs_clip_losses_on_a_text_to_image_model(canvas_suite):
    task = canvas_suite.task(canvas_suite.targets()[0])
    task.extras["clip_losses"] = None  # a real configuration given no CLIP folder
    with pytest.raises(UnlearnBenchError, match="needs CLIP's image tower .*--set clip_model=PATH"):
        build_method("slug", {}).check(task)
    build_method("slug-noise", {}).check(task)  # the noise-loss variant needs none
    from unlearnbench.models.canvas_clip import load_pretrained_partner  # noqa: PLC0415
    with pytest.raises(UnlearnBenchError, match="no transformers CLIP folder"):
        load_pretrained_partner(Path("/nonexistent/clip"), task.model.text_encoder)
