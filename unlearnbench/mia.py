"""Membership inference attack (MIA) as SLUG reports it for CLIP (Cai et al., ICML 2025, Table 1;
reference ``src/clip/utils.py`` ``membership_inference_attack`` and ``src/mia_util.py``
``evaluate_attack_model``).

A per-pair score (CLIP: the image-text cosine similarity) of the forget pairs and of pairs the
model never trained on feeds a logistic regression that tells them apart. For each of 10 seeds s:
draw ``m = min(n_forget, n_unseen)`` pairs from each set without replacement (Python's ``random``
seeded with s), clip the scores to [-100, 100], and average the accuracy of a default
``LogisticRegression`` over 10 ``StratifiedShuffleSplit`` splits (test size 10 %, random state s).
The metric is the mean over seeds of that accuracy, in %.

50 % means the attacker cannot tell forget pairs from unseen ones; the original model sits above
(forget pairs match better), and so does a model that over-forgets (they match worse than unseen
ones), because the attack learns its own direction. Lower is better.

SLUG's CLIP code passes (forget, unseen) to a function whose parameters read (test, forget), so
its forget pairs carry label 0 and are drawn second. Accuracy does not depend on which class is
called 1, but the splits do; we keep its arrangement so the same scores give its numbers draw for
draw.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

SEEDS = 10  # repetitions with a fresh balanced draw (reference: n = 10)
SPLITS = 10  # cross-validation splits per repetition (reference: n_splits=10)
# Fewest pairs per set: a 10 % stratified test split of 2m scores needs ceil(0.2 m) >= 2 (one per class).
MIN_PAIRS = 6


def attack_accuracy(forget: Sequence[float], unseen: Sequence[float], seeds: int = SEEDS,
                    splits: int = SPLITS, seed: int = 0) -> tuple[float, float]:
    """Mean and standard deviation over ``seeds`` of the attack's accuracy, in %."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedShuffleSplit

    forget, unseen = [float(x) for x in forget], [float(x) for x in unseen]
    m = min(len(forget), len(unseen))
    if m < MIN_PAIRS:
        raise ValueError(f"membership attack: {len(forget)} forget and {len(unseen)} unseen scores; each set "
                         f"needs at least {MIN_PAIRS} (a 10 % test split must hold one score of each)")
    scores = []
    for s in range(seed, seed + seeds):
        random.seed(s)
        unseen_draw = random.sample(unseen, m)
        forget_draw = random.sample(forget, m)
        features = np.clip(np.array(forget_draw + unseen_draw).reshape(-1, 1), -100, 100)
        labels = np.array([0] * m + [1] * m)
        # cross_val_score's accuracies, without its per-split cloning and scorer overhead (half the time)
        cv = StratifiedShuffleSplit(n_splits=splits, random_state=s)
        scores.append(np.mean([LogisticRegression().fit(features[fit], labels[fit]).score(features[held], labels[held])
                               for fit, held in cv.split(features, labels)]))
    return 100 * float(np.mean(scores)), 100 * float(np.std(scores))
