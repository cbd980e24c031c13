"""SLUG's membership inference attack: hand-made score sets first, then the clip suite's MIA metric."""

import numpy as np
import pytest

from unlearnbench.mia import attack_accuracy


def scores(mean: float, n: int, seed: int) -> list[float]:
    return np.random.default_rng(seed).normal(mean, 0.05, n).tolist()


def test_separable_scores_are_found_whichever_side_the_forget_pairs_are_on():
    assert attack_accuracy(scores(0.8, 100, 0), scores(0.2, 500, 1)) == (100.0, 0.0)
    # Over-forgetting (forget pairs now match worse than unseen ones) leaks just as much.
    assert attack_accuracy(scores(-0.3, 100, 0), scores(0.2, 500, 1))[0] == 100.0


def test_indistinguishable_scores_give_chance():
    mean, std = attack_accuracy(scores(0.3, 400, 0), scores(0.3, 400, 1))
    assert 40 < mean < 60 and std > 0


def test_sets_are_balanced_to_the_smaller_one_and_seeded():
    forget, unseen = scores(0.35, 40, 0), scores(0.3, 4000, 1)
    first = attack_accuracy(forget, unseen)
    assert first == attack_accuracy(forget, unseen)  # seeds 0..9: repeatable
    assert first != attack_accuracy(forget, unseen, seed=10)
    # Balanced draws: a thousand-fold larger unseen set cannot buy accuracy by predicting "unseen".
    assert first[0] < 90
    with pytest.raises(ValueError, match="at least 6"):
        attack_accuracy(scores(0.3, 5, 0), unseen)
    assert 0 <= attack_accuracy(scores(0.3, 6, 0), unseen)[0] <= 100


def test_clip_suite_reports_mia_beside_fa_and_ta(micro_suite):
    target = micro_suite.targets()[0]
    names = {m.name: m for m in micro_suite.metrics}
    assert names["MIA"].higher_is_better is False and "MIA" in micro_suite.table_metrics
    (forget, _), (unseen, _) = micro_suite._mia_pairs(target)
    train = micro_suite.assets.data.identities["train"]
    assert len(forget) == int((train.labels == train.classnames.index(target)).sum())
    test = micro_suite.assets.data.identities["test"]
    others = int((test.labels != test.classnames.index(target)).sum())
    assert len(unseen) == others + len(micro_suite.assets.data.objects["test"])  # the target's test images left out
    metrics = micro_suite.evaluate(micro_suite.base_model(), target)
    assert 50 <= metrics["MIA"] <= 100
