"""A texture's patch start: the examples' own patches laid out by a multi-scale texture optimisation
(Kwatra et al. 2005), the whole-frame level's start in place of noise, so the neural levels refine
shapes the example has (coursed stones, plates bounded by cracks) instead of inventing cells.

At each scale, coarsest first: a nearest-patch field (hires.kernels.patches.patchmatch) from the
current image to the examples, then the image its patches vote for, half-way matched to the
examples' colour histograms; a few such rounds.  A finer scale starts from the coarser one's matches
scaled by two ("coordinate upsampling": an upsampled, blurred image would match the examples'
smoothest patches and wash out), and an occurrence penalty keeps the field from reusing a few
regions of the examples (Kaspar et al. 2015), each example used in proportion to its weight.  With
``seamless`` every index wraps, so the result tiles.  Seeded: the same inputs give the same start.
"""
from __future__ import annotations

import numpy as np

from hires.core.errors import InputError

PATCH = 8             # px: a patch's side at every scale
COARSEST = 32         # px: the coarsest scale's long side at least
ROUNDS = (8, 4)       # nearest-patch field and vote rounds: at the coarsest scale, at each finer one
VOTE_POWER = -1.2     # a patch's weight in the vote: its RMS distance to this power (Kwatra et al.'s r = 0.8)
HISTOGRAM_MIX = 0.5   # after each vote, this far towards the examples' colour histograms
# the start's level's time per px of the start on a 2-core EPYC, its examples' loading included (one
# thread: 7.4 s at 512 px, benchmarks/texture_structure.py; 132 s at 2048, benchmarks/texture_scale.py)
SECONDS_PER_PX = 24e-6
BYTES_PER_PX = 64        # its memory per px of the start: the image, the field, its costs, the vote's sums


def check_examples(sizes: list[tuple[int, int]], names: list[str]) -> None:
    """An InputError for an example (of ``sizes``: each one's (w, h)) not larger than a patch: the
    patch start would copy an upsampled blur."""
    for (w, h), name in zip(sizes, names):
        if min(w, h) < PATCH + 1:
            raise InputError(f"example: {name!r} is {w}x{h} px, too small for the patch start's {PATCH} px "
                             "patches; use --start noise")


def synthesise(examples: list[np.ndarray], weights: list[float], width: int, height: int, seamless: bool,
               seed: int = 0, variety: float = 1.0) -> np.ndarray:
    """A ``width`` x ``height`` float32 (H, W, C) image made of the examples' patches (each (h, w, C)
    float32 in [0, 1], at the scale they have in it), drawn from each in proportion to ``weights``;
    ``variety``: the occurrence penalty's strength (0: none)."""
    check_examples([(e.shape[1], e.shape[0]) for e in examples], [f"example {i + 1}" for i in range(len(examples))])
    rng = np.random.default_rng(seed)
    shares = np.asarray(weights, np.float64) / float(sum(weights))
    n = _halvings(examples, width, height)
    image = field = previous = None
    for k in range(n + 1):
        f = 2.0 ** (k - n)
        w, h = max(PATCH + 1, round(width * f)), max(PATCH + 1, round(height * f))
        atlas = Atlas([_resized(e, f) for e in examples], shares)
        shape = _field_shape(h, w, seamless)
        field = atlas.random_field(shape, rng) if field is None else atlas.upsampled(field, previous, shape)
        image = atlas.vote(field, np.zeros(shape), (h, w), seamless)   # (every patch alike: no costs yet)
        for r in range(ROUNDS[0] if k == 0 else ROUNDS[1]):
            field, cost = atlas.match(image, field, seamless, seed=int(rng.integers(2**31)), variety=variety)
            image = atlas.vote(field, cost, (h, w), seamless)
            image = _towards_histograms(image, atlas, HISTOGRAM_MIX, rng)
        previous = atlas
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def _halvings(examples: list[np.ndarray], width: int, height: int) -> int:
    """How many times the start and its examples halve down to its coarsest scale: until the start's
    long side would pass below COARSEST, or an example's short side below two patches."""
    n = 0
    while (max(width, height) / 2 ** (n + 1) >= COARSEST
           and min(min(e.shape[:2]) for e in examples) / 2 ** (n + 1) >= 2 * PATCH):
        n += 1
    return n


def _field_shape(h: int, w: int, seamless: bool) -> tuple[int, int]:
    return (h, w) if seamless else (h - PATCH + 1, w - PATCH + 1)


def _resized(example: np.ndarray, f: float) -> np.ndarray:
    if f == 1.0:
        return np.ascontiguousarray(example, np.float32)
    from hires.core import io
    h, w = example.shape[:2]
    return io.resize(np.ascontiguousarray(example, np.float32), max(PATCH + 1, round(w * f)),
                     max(PATCH + 1, round(h * f)))


class Atlas:
    """The examples side by side, a patch's width apart, as one source: the corners whose patch lies
    inside one example, and the use each source pixel is expected to have (its example's share of
    all patches over its pixels)."""

    def __init__(self, examples: list[np.ndarray], shares: np.ndarray):
        self.examples, self.shares = examples, shares
        self.offsets = np.cumsum([0] + [e.shape[1] + PATCH for e in examples[:-1]])
        height = max(e.shape[0] for e in examples)
        width = int(self.offsets[-1] + examples[-1].shape[1])
        channels = examples[0].shape[2]
        self.source = np.zeros((height, width, channels), np.float32)
        self.valid = np.zeros((height, width), bool)
        self.owner = np.full((height, width), -1, np.int64)
        for i, (e, o) in enumerate(zip(examples, self.offsets)):
            h, w = e.shape[:2]
            self.source[:h, o:o + w] = e
            self.valid[:h - PATCH + 1, o:o + w - PATCH + 1] = True
            self.owner[:h, o:o + w] = i
        # the occurrence penalty's unit: a patch's squared distance to the examples' mean colour
        inside = self.source[self.valid]
        self.spread = float(((inside - inside.mean(0)) ** 2).sum(1).mean()) * PATCH * PATCH

    def random_field(self, shape: tuple[int, int], rng) -> np.ndarray:
        """A random quilt: each block of PATCH x PATCH target patches copies one random region of an
        example drawn by weight (a field of independent random corners votes a mean-coloured blur,
        from which the rounds settle on a patchwork)."""
        blocks = (-(-shape[0] // PATCH), -(-shape[1] // PATCH))
        which = rng.choice(len(self.examples), size=blocks, p=self.shares)
        corner = np.empty((*blocks, 2), np.int64)
        for i, e in enumerate(self.examples):
            pick = which == i
            count = int(pick.sum())
            corner[pick, 0] = rng.integers(0, max(1, e.shape[0] - 2 * PATCH + 2), count)
            corner[pick, 1] = rng.integers(0, max(1, e.shape[1] - 2 * PATCH + 2), count)
        ys, xs = np.arange(shape[0]), np.arange(shape[1])
        field = np.empty((*shape, 2), np.int64)
        owner = which[ys // PATCH][:, xs // PATCH]
        field[..., 0] = corner[ys // PATCH][:, xs // PATCH, 0] + (ys % PATCH)[:, None]
        field[..., 1] = corner[ys // PATCH][:, xs // PATCH, 1] + (xs % PATCH)[None, :]
        for i, e in enumerate(self.examples):   # kept inside the example where it is small
            pick = owner == i
            field[pick, 0] = np.minimum(field[pick, 0], e.shape[0] - PATCH)
            field[pick, 1] = self.offsets[i] + np.minimum(field[pick, 1], e.shape[1] - PATCH)
        return field

    def upsampled(self, field: np.ndarray, coarser: "Atlas", shape: tuple[int, int]) -> np.ndarray:
        """The coarser scale's matches at twice their coordinates, each target patch taking its
        coarser parent's match plus its own offset inside the parent (then kept inside its example)."""
        ys = np.minimum(np.arange(shape[0]) // 2, field.shape[0] - 1)
        xs = np.minimum(np.arange(shape[1]) // 2, field.shape[1] - 1)
        parent = field[ys][:, xs]
        which = coarser.owner[parent[..., 0], parent[..., 1]]
        local_y = 2 * parent[..., 0] + (np.arange(shape[0]) % 2)[:, None]
        local_x = 2 * (parent[..., 1] - coarser.offsets[which]) + (np.arange(shape[1]) % 2)[None, :]
        out = np.empty((*shape, 2), np.int64)
        for i, e in enumerate(self.examples):
            pick = which == i
            out[pick, 0] = np.clip(local_y[pick], 0, e.shape[0] - PATCH)
            out[pick, 1] = self.offsets[i] + np.clip(local_x[pick], 0, e.shape[1] - PATCH)
        return out

    def expected_use(self, n_patches: int) -> np.ndarray:
        """Each source pixel's expected number of covering patches: its example's share of all the
        patches' pixels, spread evenly over its pixels."""
        expected = np.ones(self.valid.shape)
        for i, e in enumerate(self.examples):
            expected[self.owner == i] = max(self.shares[i] * n_patches * PATCH * PATCH / (e.shape[0] * e.shape[1]), 1e-6)
        return expected

    def match(self, image: np.ndarray, field: np.ndarray, seamless: bool, seed: int, variety: float):
        from hires.kernels import patchmatch
        return patchmatch(image, self.source, self.valid, field, PATCH, seamless, sweeps=2, seed=seed,
                          penalty=variety * self.spread, expected=self.expected_use(field.shape[0] * field.shape[1]))

    def vote(self, field: np.ndarray, cost: np.ndarray, shape: tuple[int, int], seamless: bool) -> np.ndarray:
        from hires.kernels import vote
        return vote(self.source, field, cost, shape, PATCH, seamless, VOTE_POWER)


def _towards_histograms(image: np.ndarray, atlas: Atlas, mix: float, rng) -> np.ndarray:
    """``image`` moved ``mix`` of the way to the examples' per-channel histograms (mixed by weight)."""
    n = min(65536, image.shape[0] * image.shape[1])
    pools = []
    for e, share in zip(atlas.examples, atlas.shares):
        flat = e.reshape(-1, e.shape[2])
        pools.append(flat[rng.integers(0, len(flat), max(1, int(round(share * n))))])
    reference = np.sort(np.concatenate(pools), axis=0)
    out = np.empty_like(image)
    flat = image.reshape(-1, image.shape[2])
    ranks = (np.arange(len(flat)) + 0.5) / len(flat)
    levels = (np.arange(len(reference)) + 0.5) / len(reference)
    for c in range(image.shape[2]):
        order = np.argsort(flat[:, c], kind="stable")
        matched = np.empty(len(flat), np.float32)
        matched[order] = np.interp(ranks, levels, reference[:, c])
        out.reshape(-1, image.shape[2])[:, c] = (1 - mix) * flat[:, c] + mix * matched
    return out


def seconds(width: int, height: int) -> float:
    """The patch start's estimated time for a ``width`` x ``height`` whole-frame level."""
    return SECONDS_PER_PX * width * height * (1 + 1 / 3)   # its coarser scales add a third


def memory_bytes(width: int, height: int) -> int:
    return int(BYTES_PER_PX * width * height)


