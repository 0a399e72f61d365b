"""Paired contrasts between two training arms scored on the same val images, over several seeds.

Arm ``a`` and arm ``b`` were trained with the same seeds (seed s of ``a`` and seed s of ``b`` share their
initialisation and data stream) and scored on the same N val images, so every difference is paired by seed
and by image. A contrast is the difference of the arms' seed-averaged PCK Means (in points), with:

- ``per_seed``: each seed's own difference;
- ``image_only``: a 95% percentile-bootstrap interval that resamples the N images and keeps the trained
  networks fixed: how much the difference depends on which images the val split happens to hold;
- ``seeds_then_images``: a 95% interval that first resamples the seeds (with replacement) and then the images,
  the same image draw for every drawn seed and both arms (the images are shared, not nested in seeds): it adds
  the seed-to-seed spread of training, so it is the interval that speaks about the method rather than about
  these particular networks.

The image draws of both intervals come from one stream (``rng_seed``) and the seed draws from another, so
with no seed-to-seed spread at all the two intervals are the same.

A decision rule (``verdict``) and the number of seeds a contrast would need to be settled (``seeds_to_settle``)
are written here too: the study's README section states them before its runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CHUNK = 1000  # bootstrap draws per block: (CHUNK, N) image weights at a time


@dataclass(frozen=True)
class Contrast:
    """Arm a minus arm b, in PCK points (see the module docstring)."""

    seeds: tuple[int, ...]
    per_seed: tuple[float, ...]
    difference: float  # mean of per_seed = difference of the seed-averaged Means
    image_only: tuple[float, float]  # 95% interval over images, networks fixed
    seeds_then_images: tuple[float, float]  # 95% interval over seeds, then images
    image_sd: float  # standard deviation of the image-only draws of the seed-averaged difference
    image_sd_one_seed: float  # the same for one seed's difference (root mean of the per-seed variances)
    n_boot: int


def pck_points(hits: np.ndarray, counted: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Count-weighted PCK Mean (%) of every run under every image weighting.

    hits (R, N): joints within the threshold per run and image; counted (N,): joints scored per image;
    weights (K, N): how often each image is drawn. -> (K, R)."""
    return 100.0 * (weights @ hits.T) / (weights @ counted)[:, None]


def paired_contrast(hits_a: np.ndarray, hits_b: np.ndarray, counted: np.ndarray, seeds: list[int],
                    n_boot: int = 10000, rng_seed: int = 0) -> Contrast:
    """Arm a minus arm b over ``seeds``; hits_a, hits_b (S, N): per-image hits of seed s's run of each arm
    (rows in the order of ``seeds``), counted (N,): joints scored per image, the same for every run."""
    hits_a, hits_b = np.asarray(hits_a, np.float64), np.asarray(hits_b, np.float64)
    counted = np.asarray(counted, np.float64)
    if hits_a.shape != hits_b.shape or hits_a.ndim != 2 or hits_a.shape[1] != counted.size or not len(seeds):
        raise ValueError(f"paired_contrast: hits {hits_a.shape} and {hits_b.shape} must both be (seeds, images) "
                         f"with {counted.size} images and one row per seed of {list(seeds)}")
    diff = hits_a - hits_b  # (S, N): the arms share the denominator, so PCK differences are linear in it
    n_seeds, n_images = diff.shape
    per_seed = pck_points(diff, counted, np.ones((1, n_images)))[0]
    images, seed_rng = np.random.default_rng(rng_seed), np.random.default_rng((rng_seed, 1))
    by_seed, hierarchical = [], []
    for start in range(0, n_boot, CHUNK):
        k = min(CHUNK, n_boot - start)
        weights = images.multinomial(n_images, np.full(n_images, 1.0 / n_images), size=k).astype(np.float64)
        by_seed.append(pck_points(diff, counted, weights))  # (k, S): each seed's difference on each image draw
        drawn = seed_rng.integers(0, n_seeds, size=(k, n_seeds))
        hierarchical.append(np.take_along_axis(by_seed[-1], drawn, axis=1).mean(1))
    by_seed, hierarchical = np.concatenate(by_seed), np.concatenate(hierarchical)
    image_only = by_seed.mean(1)
    return Contrast(seeds=tuple(int(s) for s in seeds), per_seed=tuple(float(x) for x in per_seed),
                    difference=float(per_seed.mean()), image_only=_interval(image_only),
                    seeds_then_images=_interval(hierarchical), image_sd=float(image_only.std(ddof=1)),
                    image_sd_one_seed=float(np.sqrt(by_seed.var(axis=0, ddof=1).mean())), n_boot=n_boot)


def _interval(draws: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(draws, [2.5, 97.5])
    return float(low), float(high)


# The outcomes of ``verdict``, in the order they are tested.
ABOVE, BELOW, WITHIN, INCONCLUSIVE = "above zero", "below zero", "within the margin", "inconclusive"


def verdict(interval: tuple[float, float], margin: float) -> str:
    """The decision rule on a contrast's seeds-then-images interval (points): ABOVE if it lies above 0, BELOW
    if below 0, else WITHIN if it lies inside [-margin, +margin] (no effect as large as the margin), else
    INCONCLUSIVE (at this number of seeds and images)."""
    low, high = interval
    if low > 0:
        return ABOVE
    if high < 0:
        return BELOW
    if -margin <= low and high <= margin:
        return WITHIN
    return INCONCLUSIVE


def seeds_to_settle(contrast: Contrast, margin: float, z: float = 1.96, most: int = 1000) -> int | None:
    """Seeds at which the seeds-then-images interval would be expected to leave INCONCLUSIVE if the mean
    difference and the spreads stayed as measured: a projection from few seeds, not a promise.

    The interval's half-width at S seeds is taken as z * sqrt((sd_seed^2 + v_x) / S + v_image): sd_seed is the
    sample standard deviation of the per-seed differences; the image-resampling variance splits into a part
    shared by all seeds (v_image, which more seeds do not remove) and a seed-by-image part (v_x, averaged away
    over seeds), solved from the one-seed and the seed-averaged image-only variances. The interval settles once
    it excludes 0 (half-width < |mean|) or fits inside +-margin (half-width < margin - |mean|). None when
    neither happens by ``most`` seeds: more val images, not more seeds, are then what is missing."""
    n = len(contrast.per_seed)
    d = abs(contrast.difference)
    sd_seed = float(np.std(contrast.per_seed, ddof=1)) if n > 1 else 0.0
    v_mean, v_one = contrast.image_sd**2, contrast.image_sd_one_seed**2
    v_x = max(0.0, (v_one - v_mean) * n / (n - 1)) if n > 1 else 0.0
    v_image = max(0.0, v_mean - v_x / n)
    target = max(d, margin - d)  # the goal with the larger half-width is reached first
    room = (target / z) ** 2 - v_image
    if room <= 0:
        return None
    seeds = max(1, math.ceil((sd_seed**2 + v_x) / room))
    return seeds if seeds <= most else None
