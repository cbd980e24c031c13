"""Procedural cartoon faces: the CelebA analog of the embedded ``clip`` suite.

Each made-up identity has fixed traits (skin, hair colour and style, eye colour and spacing,
mouth, accessory). Any two identities differ in at least two traits, so no single trait names a
person; every image jitters pose, scale, colours, background and noise.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from unlearnbench.datasets.synthetic.draw import Canvas, ellipse, jitter_colour, rect

SKIN = [(255, 224, 189), (234, 192, 134), (198, 134, 66), (141, 85, 36), (92, 51, 23)]
HAIR_COLOUR = [(20, 20, 20), (110, 60, 20), (230, 200, 80), (200, 70, 30), (180, 180, 180),
               (40, 90, 200), (170, 40, 150)]
HAIR_STYLE = ["bald", "short", "long", "spiky", "bun"]
EYE_COLOUR = [(40, 120, 220), (60, 160, 60), (90, 50, 20)]
EYE_SPACING = [0.22, 0.32]
MOUTH = ["smile", "flat", "open"]
ACCESSORY = ["none", "glasses", "hat", "beard", "earrings"]

TRAITS = {"skin": SKIN, "hair_colour": HAIR_COLOUR, "hair_style": HAIR_STYLE,
          "eye_colour": EYE_COLOUR, "eye_spacing": EYE_SPACING, "mouth": MOUTH, "accessory": ACCESSORY}

FIRST_NAMES = [
    "Alba", "Bram", "Cora", "Dario", "Elin", "Fenna", "Gideon", "Hester", "Ivo", "Juno", "Kasimir",
    "Liesl", "Marek", "Nadia", "Osric", "Petra", "Quillon", "Rosalind", "Soren", "Tamsin", "Ulrike",
    "Viggo", "Wren", "Xanthe", "Yorick", "Zelda", "Anselm", "Brisa", "Caspian", "Delphine", "Emrys",
    "Florin", "Greta", "Hollis", "Isolde", "Jasper", "Katya", "Leander", "Mirela", "Niall", "Odette",
    "Perrin", "Rhiannon", "Silas", "Thea", "Ugo", "Vesna", "Willem", "Yara", "Zoran", "Amara",
    "Bastian", "Clio", "Dorian", "Esme", "Fabian", "Ginevra", "Hugo", "Ines", "Joaquin"]
LAST_NAMES = [
    "Arkwright", "Bellweather", "Castellane", "Drummond", "Everly", "Falkenrath", "Grisholm",
    "Halloran", "Ingersoll", "Jastrow", "Kettleby", "Lindqvist", "Marchetti", "Norcross", "Ostrander",
    "Pemberton", "Quist", "Ravensworth", "Stroud", "Thornbury", "Underhill", "Vasquez", "Whitlock",
    "Yardley", "Zamora", "Ashdown", "Blackmore", "Corvino", "Delacroix", "Eastwood", "Fairbanks",
    "Gallagher", "Hawthorne", "Ibarra", "Juniper", "Kowalczyk", "Lockhart", "Montague", "Nakamura",
    "Oakes", "Prescott", "Ridley", "Sorensen", "Tremaine", "Valdez", "Winslow", "Abernathy",
    "Brightwater", "Crowley", "Dunmore", "Ellsworth", "Fitzgerald", "Granger", "Holloway", "Iverson",
    "Kingsley", "Larkspur", "Merriweather", "Northcott", "Penhaligon"]


@dataclass(frozen=True)
class Identity:
    name: str
    traits: dict[str, int]  # trait -> index into its option list


# Short names for the retain pool (the LAION analogue): never scored, so never a target.
POOL_FIRST_NAMES = [
    "Ada", "Bo", "Cy", "Di", "Eli", "Fay", "Gus", "Hal", "Ike", "Jo", "Kit", "Lou", "Max", "Ned", "Oli",
    "Pam", "Rex", "Sal", "Tad", "Uma", "Val", "Wes", "Zed", "Amy", "Ben", "Cal", "Dot", "Eve", "Fox", "Gil"]
POOL_LAST_NAMES = [
    "Ash", "Bay", "Cole", "Dale", "Elm", "Fenn", "Gray", "Hart", "Ives", "Kay", "Lane", "Moss", "Nash", "Oak",
    "Pike", "Rook", "Shaw", "Tate", "Vale", "Ward", "York", "Ames", "Bell", "Cross", "Dunn", "Ford", "Glen",
    "Hale", "Knox", "Lowe"]


def make_identities(n: int, seed: int) -> list[Identity]:
    """``n`` identities whose trait vectors pairwise differ in at least two traits."""
    if n > min(len(FIRST_NAMES), len(LAST_NAMES)):
        raise ValueError(f"at most {min(len(FIRST_NAMES), len(LAST_NAMES))} identities can be named")
    return named_identities(np.random.default_rng(seed), n, FIRST_NAMES, LAST_NAMES, taken=[])


def make_pool_identities(n: int, seed: int, scored: list[Identity]) -> list[Identity]:
    """``n`` more identities that differ in at least two traits from each other and from every
    ``scored`` one, named from the pool's own name lists: people a model sees in training (its
    retain data) but that no metric scores."""
    if n > min(len(POOL_FIRST_NAMES), len(POOL_LAST_NAMES)):
        raise ValueError(f"at most {min(len(POOL_FIRST_NAMES), len(POOL_LAST_NAMES))} pool identities can be named")
    taken = [tuple(person.traits[t] for t in TRAITS) for person in scored]
    return named_identities(np.random.default_rng([seed, 1]), n, POOL_FIRST_NAMES, POOL_LAST_NAMES, taken)


def named_identities(rng: np.random.Generator, n: int, first_names: list[str], last_names: list[str],
                     taken: list[tuple[int, ...]]) -> list[Identity]:
    """``n`` identities with distinct trait combinations (``distinct_trait_combos``), named from the lists."""
    chosen = distinct_trait_combos(rng, n, taken)
    if len(chosen) < n:
        raise ValueError(f"only {len(chosen)} trait combinations are left for {n} identities")
    firsts = rng.permutation(first_names)[:n]
    lasts = rng.permutation(last_names)[:n]
    return [Identity(f"{first} {last}", dict(zip(TRAITS, combo)))
            for first, last, combo in zip(firsts, lasts, chosen)]


def distinct_trait_combos(rng: np.random.Generator, n: int, taken: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """Up to ``n`` trait combinations, in a random order, each at least two traits away from every
    other and from ``taken``."""
    combos = list(itertools.product(*(range(len(v)) for v in TRAITS.values())))
    chosen: list[tuple[int, ...]] = []
    for i in rng.permutation(len(combos)):
        combo = combos[i]
        if all(sum(a != b for a, b in zip(combo, other)) >= 2 for other in [*taken, *chosen]):
            chosen.append(combo)
            if len(chosen) == n:
                break
    return chosen


def draw_face(identity: Identity, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """One jittered portrait of ``identity`` as uint8 (size, size, 3)."""
    t = identity.traits
    background = rng.uniform(40, 230, 3)
    canvas = Canvas(size, background)
    scale = rng.uniform(0.88, 1.08)
    dx, dy = rng.uniform(-0.1, 0.1, 2)
    x, y = (canvas.x - dx) / scale, (canvas.y - dy) / scale
    skin = jitter_colour(rng, SKIN[t["skin"]], 8)
    hair = jitter_colour(rng, HAIR_COLOUR[t["hair_colour"]], 10)
    style = HAIR_STYLE[t["hair_style"]]

    if style == "long":
        canvas.fill(rect(x, y, -0.62, -0.55, 0.62, 0.65) & (y > -0.2) | ellipse(x, y, 0, -0.25, 0.65, 0.55), hair)
    canvas.fill(ellipse(x, y, -0.62, 0.05, 0.1, 0.16) | ellipse(x, y, 0.62, 0.05, 0.1, 0.16), skin)  # ears
    canvas.fill(ellipse(x, y, 0, 0.05, 0.58, 0.7), skin)
    if style == "short":
        canvas.fill(ellipse(x, y, 0, -0.45, 0.6, 0.35) & (y < -0.35), hair)
    elif style == "spiky":
        spikes = (y < -0.38) & (y > -0.85 + 0.25 * np.abs(np.sin(x * 12))) & (np.abs(x) < 0.6)
        canvas.fill(spikes, hair)
    elif style == "bun":
        canvas.fill(ellipse(x, y, 0, -0.45, 0.58, 0.3) & (y < -0.38) | ellipse(x, y, 0, -0.8, 0.22, 0.18), hair)
    elif style == "long":
        canvas.fill(ellipse(x, y, 0, -0.45, 0.6, 0.32) & (y < -0.35), hair)

    spacing = EYE_SPACING[t["eye_spacing"]] + rng.uniform(-0.02, 0.02)
    eye = jitter_colour(rng, EYE_COLOUR[t["eye_colour"]], 10)
    white = np.array([250, 250, 250], dtype=np.float32)
    for side in (-1, 1):
        canvas.fill(ellipse(x, y, side * spacing, -0.05, 0.13, 0.1), white)
        canvas.fill(ellipse(x, y, side * spacing, -0.05, 0.07, 0.08), eye)

    mouth = MOUTH[t["mouth"]]
    lips = np.array([150, 30, 40], dtype=np.float32)
    if mouth == "smile":
        canvas.fill(ellipse(x, y, 0, 0.35, 0.25, 0.14) & (y > 0.37), lips)
    elif mouth == "flat":
        canvas.fill(rect(x, y, -0.22, 0.38, 0.22, 0.45), lips)
    else:
        canvas.fill(ellipse(x, y, 0, 0.4, 0.13, 0.12), np.array([60, 10, 20], dtype=np.float32))

    accessory = ACCESSORY[t["accessory"]]
    dark = np.array([15, 15, 15], dtype=np.float32)
    if accessory == "glasses":
        for side in (-1, 1):
            ring = ellipse(x, y, side * spacing, -0.05, 0.19, 0.16) & ~ellipse(x, y, side * spacing, -0.05, 0.14, 0.11)
            canvas.fill(ring, dark)
        canvas.fill(rect(x, y, -spacing + 0.15, -0.08, spacing - 0.15, -0.03), dark)
    elif accessory == "hat":
        hat = jitter_colour(rng, (200, 30, 30), 15)
        canvas.fill(rect(x, y, -0.75, -0.5, 0.75, -0.4) | rect(x, y, -0.45, -0.95, 0.45, -0.5), hat)
    elif accessory == "beard":
        canvas.fill(ellipse(x, y, 0, 0.5, 0.5, 0.32) & (y > 0.45) & ~ellipse(x, y, 0, 0.4, 0.26, 0.1), hair)
    elif accessory == "earrings":
        gold = jitter_colour(rng, (250, 210, 40), 10)
        canvas.fill(ellipse(x, y, -0.62, 0.28, 0.07, 0.07) | ellipse(x, y, 0.62, 0.28, 0.07, 0.07), gold)
    return canvas.to_uint8(rng, noise=6.0)


# The random stream index of attack images: render_splits (clip_data.py) numbers train, val and test 0..2,
# so faces drawn from this stream are new pictures of an identity that no split holds.
ATTACK_STREAM = 7


def attack_faces(n_identities: int, seed: int, label: int, count: int, image_size: int) -> np.ndarray:
    """``count`` new faces of identity ``label`` (of ``make_identities(n_identities, seed)``), drawn from their
    own random stream: held out from every split, for attacks (unlearnbench/attacks/relearn.py)."""
    identity = make_identities(n_identities, seed)[label]
    rng = np.random.default_rng([seed, 0, label, ATTACK_STREAM])
    return np.stack([draw_face(identity, rng, image_size) for _ in range(count)])
