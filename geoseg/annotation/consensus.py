"""Consensus of several annotators: a voted label, agreement, and where annotators disagree.

Labels come as ``{annotator: {image id: class map}}`` (2-D integer maps, code 0 = unlabelled);
code :data:`REVIEW` (255) is reserved for the pixels the consensus leaves to a reviewer.

- :func:`vote` / :func:`consensus`: per pixel, the class most annotators gave, ignoring
  unlabelled votes. A tie, or a winner with fewer than ``min_agreement`` of the votes, becomes
  :data:`REVIEW`. The agreement map is the winner's share of the votes (float32, 0..1; NaN where
  nobody labelled the pixel).
- :func:`pairwise`: per pair of annotators, over the pixels both labelled, the observed
  agreement, the mean IoU over the classes either used, and Cohen's kappa
  ``(p_o - p_e) / (1 - p_e)`` from their confusion matrix ``C`` (``N`` pixels):
  ``p_o = trace(C) / N`` and ``p_e = sum_k rows_k * cols_k / N**2``, undefined (``None``) when
  ``p_e = 1`` (both gave one and the same class everywhere).
- :func:`low_agreement`: the images whose mean agreement is below a threshold, or which hold a
  4-connected region of low-agreement pixels (agreement below the threshold, or review) of at
  least ``min_pixels``, each region with its pixel count and bounding box.
- :func:`staple`: STAPLE (Warfield, Zou and Wells 2004), multi-class: each annotator is a
  confusion matrix ``theta[truth, given]``, estimated by EM jointly with each pixel's posterior
  over the true class, from all images at once (a missing or unlabelled vote says nothing). The
  prior over classes is fixed to the share of each class among all votes. It starts from the soft
  vote (each pixel's vote shares) and stops when no entry of any ``theta`` moves by more than
  ``tolerance``. The E-step is computed once per distinct pattern of votes, not per pixel.

STAPLE weighs a reliable annotator above a careless one, so it beats the vote where the
careless ones outvote the reliable ones by chance. It models each annotator by one confusion
matrix for every pixel, though: a group of annotators that make the *same* error on part of the
images looks, to it, like the truth unless the group is visibly less reliable elsewhere and the
shared error covers a small part of its class; otherwise it converges to the group's version,
as the vote does (tests/test_label_qa.py holds both cases).

Heatmaps of agreement: :func:`write_agreement_png` (viridis, unlabelled pixels transparent) for
photos, :func:`write_agreement_cog` (float32 COG, nodata NaN) where the grid is known.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Final

import matplotlib
import numpy as np
import pandas as pd
from numpy.typing import NDArray
from PIL import Image
from scipy import ndimage

from geoseg.annotation.regions import FOUR
from geoseg.errors import AnnotationError, ConfigError
from geoseg.evaluation.metrics import confusion_matrix, scores
from geoseg.export.atomic import atomic_path
from geoseg.export.raster import write_cog
from geoseg.types import Grid

#: The consensus code of pixels left to a reviewer (a tie, or too little agreement).
REVIEW: Final = 255

#: Labels of several annotators: ``{annotator: {image id: class map}}``.
Labels = Mapping[str, Mapping[str, NDArray[np.integer]]]


def label_map(
    array: NDArray[np.integer], annotator: str, image: str, review: bool = False
) -> NDArray[np.uint8]:
    """An annotator's class map of an image as uint8, or an error naming both.

    The map must be 2-D with integer codes in 0..254 (``review``: up to :data:`REVIEW`, as in
    a consensus map used as a reference).
    """
    values = np.asarray(array)
    where = f"annotator '{annotator}', image '{image}'"
    if values.ndim != 2 or not np.issubdtype(values.dtype, np.integer):
        raise AnnotationError(
            f"{where}: a label map is a 2-D array of integer class codes, got {values.ndim}-D "
            f"{values.dtype}"
        )
    top = REVIEW if review else REVIEW - 1
    if values.size and (values.min() < 0 or values.max() > top):
        raise AnnotationError(
            f"{where}: class codes must lie in 0..{top} ({REVIEW} is the consensus's review "
            f"code), found {values.min()}..{values.max()}"
        )
    return values.astype(np.uint8, copy=False)


def _size(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}x{shape[0]}"


def _by_image(labels: Labels) -> dict[str, dict[str, NDArray[np.uint8]]]:
    """``{image: {annotator: map}}``, checked: the maps of one image have one size."""
    images: dict[str, dict[str, NDArray[np.uint8]]] = {}
    for annotator, maps in labels.items():
        for image, array in maps.items():
            images.setdefault(image, {})[annotator] = label_map(array, annotator, image)
    for image, maps in images.items():
        sizes = {a: m.shape for a, m in maps.items()}
        if len(set(sizes.values())) > 1:
            described = ", ".join(f"'{a}' {_size(s)}" for a, s in sizes.items())
            raise AnnotationError(
                f"image '{image}': the annotators' label maps differ in size ({described} px); "
                "each must cover the whole image"
            )
    return images


def _codes(images: Mapping[str, Mapping[str, NDArray[np.uint8]]]) -> list[int]:
    """Every class code any annotator gave, sorted (0 left out)."""
    seen: set[int] = set()
    for maps in images.values():
        for array in maps.values():
            seen.update(int(c) for c in np.unique(array))
    return sorted(seen - {0})


@dataclass(frozen=True, slots=True)
class Consensus:
    """One image's consensus: labels, the agreement behind them, and how many voted.

    ``labels``: uint8 class map (0 where nobody labelled, :data:`REVIEW` where undecided);
    ``agreement``: float32, the winner's share of the votes (STAPLE: its posterior
    probability), NaN where nobody labelled; ``voters``: how many annotators labelled each pixel.
    """

    labels: NDArray[np.uint8]
    agreement: NDArray[np.float32]
    voters: NDArray[np.uint8]


def _check_share(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} is a share of the votes, in 0..1; got {value}")


def vote(maps: Sequence[NDArray[np.integer]], min_agreement: float = 0.5) -> Consensus:
    """The majority vote of several annotators' maps of one image (all of one size).

    Unlabelled (0) votes are left out. A tie for the most votes, or a winner with fewer than
    ``min_agreement`` of a pixel's votes, becomes :data:`REVIEW`.
    """
    _check_share("min_agreement", min_agreement)
    if not maps:
        raise AnnotationError("a vote needs at least one annotator's label map")
    sizes = [np.shape(m) for m in maps]
    if len(set(sizes)) > 1:
        raise AnnotationError(
            f"the label maps of one image differ in size ({', '.join(map(str, sizes))}); each "
            "must cover the whole image"
        )
    stack = np.stack([np.asarray(m) for m in maps])
    codes = np.unique(stack)
    if stack.ndim != 3 or not np.issubdtype(stack.dtype, np.integer):
        raise AnnotationError(f"a vote needs 2-D integer class maps, got {stack.dtype} maps")
    if codes.size and (codes[0] < 0 or codes[-1] >= REVIEW):
        raise AnnotationError(
            f"class codes must lie in 0..{REVIEW - 1} ({REVIEW} is the review code), found "
            f"{codes[0]}..{codes[-1]}"
        )
    codes = codes[codes > 0]
    counts = np.zeros((len(codes) + 1, *stack.shape[1:]), dtype=np.int32)  # row 0: nobody
    for k, code in enumerate(codes, start=1):
        counts[k] = np.count_nonzero(stack == code, axis=0)
    voters = counts.sum(axis=0)
    winner = counts.argmax(axis=0)
    top = np.take_along_axis(counts, winner[None], axis=0)[0]
    tie = np.count_nonzero(counts == top[None], axis=0) > 1
    voted = voters > 0
    share = np.divide(top, voters, out=np.full(top.shape, np.nan), where=voted)
    lookup = np.concatenate([[0], codes]).astype(np.uint8)
    labels = lookup[winner]
    # exact: top / voters < min_agreement, compared without rounding
    labels[voted & (tie | (top < min_agreement * voters))] = REVIEW
    return Consensus(labels, share.astype(np.float32), voters.astype(np.uint8))


def consensus(
    labels: Labels, min_agreement: float = 0.5, min_annotators: int = 2
) -> dict[str, Consensus]:
    """The vote (:func:`vote`) on every image that at least ``min_annotators`` labelled.

    Maps of one image that differ in size are an error naming the image and the annotators.
    """
    images = _by_image(labels)
    return {
        image: vote(list(maps.values()), min_agreement)
        for image, maps in sorted(images.items())
        if len(maps) >= min_annotators
    }


@dataclass(frozen=True, slots=True)
class PairAgreement:
    """How well two annotators agree over the pixels both labelled (``None``: no such pixel)."""

    first: str
    second: str
    images: int
    pixels: int
    agreement: float | None  # observed agreement p_o: the share of pixels given one class
    mean_iou: float | None  # over the classes either of them used
    kappa: float | None  # Cohen's kappa; None also when p_e = 1


def kappa(matrix: NDArray[np.int64]) -> float | None:
    """Cohen's kappa of a square confusion matrix (see the module docstring)."""
    total = float(matrix.sum())
    if total == 0:
        return None
    observed = float(np.trace(matrix)) / total
    expected = float(matrix.sum(axis=1) @ matrix.sum(axis=0)) / total**2
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def pairwise(labels: Labels) -> list[PairAgreement]:
    """Agreement of every pair of annotators over the images and pixels both labelled."""
    images = _by_image(labels)
    codes = _codes(images)
    found = []
    for first, second in combinations(sorted(labels), 2):
        matrix = np.zeros((len(codes), len(codes) + 1), dtype=np.int64)
        shared = 0
        for maps in images.values():
            if first not in maps or second not in maps:
                continue
            shared += 1
            a, b = maps[first], maps[second]
            both = (a > 0) & (b > 0)
            matrix += confusion_matrix(a[both], b[both], codes)
        square = matrix[:, : len(codes)]
        result = scores(matrix, codes)
        ious = [c.iou for c in result.classes if c.iou is not None]
        found.append(
            PairAgreement(
                first,
                second,
                shared,
                int(square.sum()),
                result.overall_accuracy,
                float(np.mean(ious)) if ious else None,
                kappa(square),
            )
        )
    return found


def pairwise_table(pairs: Sequence[PairAgreement]) -> pd.DataFrame:
    """One row per pair: annotators, images and pixels shared, agreement, mean IoU, kappa."""
    columns = ["first", "second", "images", "pixels", "agreement", "mean_iou", "kappa"]
    rows = [
        (p.first, p.second, p.images, p.pixels, p.agreement, p.mean_iou, p.kappa) for p in pairs
    ]
    return pd.DataFrame(rows, columns=columns)


@dataclass(frozen=True, slots=True)
class LowRegion:
    """A 4-connected patch of low-agreement pixels: size, box ``(x, y, width, height)`` in px."""

    pixels: int
    bbox: tuple[int, int, int, int]
    mean_agreement: float
    review_pixels: int


@dataclass(frozen=True, slots=True)
class ImageAgreement:
    """An image below the agreement threshold: its mean agreement and its low regions."""

    image: str
    mean_agreement: float | None  # over the pixels someone labelled
    low_share: float  # share of those pixels with low agreement
    regions: tuple[LowRegion, ...]  # largest first


def low_agreement(
    results: Mapping[str, Consensus], threshold: float = 2 / 3, min_pixels: int = 20
) -> list[ImageAgreement]:
    """The images to look at again, worst (lowest mean agreement) first.

    A pixel has low agreement when someone labelled it and its agreement is below
    ``threshold`` or its label is :data:`REVIEW`. An image is listed when its mean agreement is
    below ``threshold`` or it holds a 4-connected region of such pixels of at least
    ``min_pixels``; its regions of that size are listed with it.
    """
    _check_share("threshold", threshold)
    found = []
    for image, result in results.items():
        voted = result.voters > 0
        low = voted & ((result.agreement < np.float32(threshold)) | (result.labels == REVIEW))
        patches, count = ndimage.label(low, structure=FOUR)
        sizes = np.bincount(patches.ravel(), minlength=count + 1)
        regions = []
        for index, box in enumerate(ndimage.find_objects(patches), start=1):
            if box is None or sizes[index] < min_pixels:
                continue
            inside = patches[box] == index
            rows, cols = box
            regions.append(
                LowRegion(
                    int(sizes[index]),
                    (cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start),
                    float(result.agreement[box][inside].mean()),
                    int(np.count_nonzero(result.labels[box][inside] == REVIEW)),
                )
            )
        labelled = int(np.count_nonzero(voted))
        mean = float(result.agreement[voted].mean()) if labelled else None
        if regions or (mean is not None and mean < threshold):
            regions.sort(key=lambda r: (-r.pixels, r.bbox))
            share = np.count_nonzero(low) / labelled if labelled else 0.0
            found.append(ImageAgreement(image, mean, share, tuple(regions)))
    return sorted(found, key=lambda f: 1.0 if f.mean_agreement is None else f.mean_agreement)


def low_agreement_table(images: Sequence[ImageAgreement]) -> pd.DataFrame:
    """One row per low-agreement region (an image listed for its mean alone: one empty row)."""
    columns = [
        "image",
        "image_agreement",
        "region",
        "pixels",
        "x",
        "y",
        "width",
        "height",
        "region_agreement",
        "review_pixels",
    ]
    rows: list[tuple[object, ...]] = []
    for f in images:
        if not f.regions:
            rows.append((f.image, f.mean_agreement, *([None] * 8)))
        for k, r in enumerate(f.regions, start=1):
            rows.append(
                (f.image, f.mean_agreement, k, r.pixels, *r.bbox, r.mean_agreement, r.review_pixels)
            )
    return pd.DataFrame(rows, columns=columns)


def write_agreement_png(path: Path, agreement: NDArray[np.floating]) -> Path:
    """An agreement map as an RGBA PNG: viridis from 0 (dark) to 1, NaN transparent."""
    values = np.asarray(agreement, dtype=np.float64)
    rgba = matplotlib.colormaps["viridis"](np.nan_to_num(np.clip(values, 0.0, 1.0)), bytes=True)
    rgba[..., 3] = np.where(np.isfinite(values), 255, 0)
    with atomic_path(path, overwrite=True) as tmp:
        Image.fromarray(np.ascontiguousarray(rgba), mode="RGBA").save(tmp, format="PNG")
    return path


def write_agreement_cog(path: Path, agreement: NDArray[np.floating], grid: Grid) -> Path:
    """An agreement map on ``grid`` as a float32 COG (nodata NaN)."""
    write_cog(path, np.asarray(agreement, dtype=np.float32), grid, float("nan"))
    return path


@dataclass(frozen=True, slots=True)
class Staple:
    """STAPLE's result: per image a :class:`Consensus`, and what it learnt of each annotator.

    ``confusion[annotator]`` is ``theta``: row ``i`` the true class ``codes[i]``, column ``j``
    the probability that the annotator gives ``codes[j]`` (rows sum to 1).
    """

    images: dict[str, Consensus]
    codes: tuple[int, ...]
    confusion: dict[str, NDArray[np.float64]]
    iterations: int
    converged: bool


#: Smallest probability in an annotator's confusion matrix (keeps the logarithms finite).
_FLOOR: Final = 1e-6


def _normalised(counts: NDArray[np.float64]) -> NDArray[np.float64]:
    """Rows of ``counts`` as probabilities, floored at :data:`_FLOOR`; empty rows uniform."""
    k = counts.shape[-1]
    totals = counts.sum(axis=-1, keepdims=True)
    theta = np.where(totals > 0, counts / np.where(totals > 0, totals, 1.0), 1.0 / k)
    theta = np.maximum(theta, _FLOOR)
    return theta / theta.sum(axis=-1, keepdims=True)


def _patterns(
    decisions: NDArray[np.int16], k: int
) -> tuple[NDArray[np.int16], NDArray[np.intp], NDArray[np.intp]]:
    """The distinct rows of ``decisions``, each pixel's row among them, and how many pixels.

    Rows are packed into one integer each (base ``k + 1``) where that fits in 62 bits: sorting
    integers is far quicker than sorting rows.
    """
    r = decisions.shape[1]
    if r * np.log2(k + 1) >= 62:
        rows, inverse, counts = np.unique(
            decisions, axis=0, return_inverse=True, return_counts=True
        )
        return rows, inverse.ravel(), counts
    powers = (k + 1) ** np.arange(r, dtype=np.int64)
    keys = (decisions.astype(np.int64) + 1) @ powers
    _, first, inverse, counts = np.unique(
        keys, return_index=True, return_inverse=True, return_counts=True
    )
    return decisions[first], inverse.ravel(), counts


def staple(
    labels: Labels,
    min_probability: float = 0.5,
    max_iterations: int = 50,
    tolerance: float = 1e-5,
) -> Staple:
    """STAPLE over all images at once (see the module docstring).

    Each pixel takes the class of highest posterior; below ``min_probability`` it becomes
    :data:`REVIEW`. An image's maps must be of one size; an annotator who did not label an
    image (or a pixel) gives no vote there.
    """
    _check_share("min_probability", min_probability)
    images = _by_image(labels)
    annotators = sorted(labels)
    codes = _codes(images)
    if not codes:
        raise AnnotationError("STAPLE needs labelled pixels: every label map given is empty (0)")
    k, r = len(codes), len(annotators)
    lookup = np.full(256, -1, dtype=np.int16)  # code -> class index; 0 (unlabelled) -> -1
    lookup[codes] = np.arange(k)
    order = sorted(images)
    columns = []
    for image in order:
        maps = images[image]
        shape = next(iter(maps.values())).shape
        missing = np.full(shape, -1, dtype=np.int16)
        columns.append(
            np.stack(
                [lookup[maps[a]].ravel() if a in maps else missing.ravel() for a in annotators],
                axis=1,
            )
        )
    decisions = np.concatenate(columns)
    patterns, inverse, weights = _patterns(decisions, k)
    given = patterns >= 0  # (patterns, annotators)
    prior = _normalised(np.bincount(decisions[decisions >= 0], minlength=k).astype(np.float64))
    one_hot = np.eye(k)[np.where(given, patterns, 0)] * given[..., None]  # (p, r, k)
    posterior = one_hot.sum(axis=1)  # the soft vote
    posterior = _normalised(posterior + (posterior.sum(axis=1, keepdims=True) == 0))
    theta = np.zeros((r, k, k))
    converged, iterations = False, 0
    while iterations < max_iterations and not converged:
        iterations += 1
        # M-step: theta[a, s, d] = sum over pixels (posterior of s) where a gave d
        new = _normalised(np.einsum("ps,prd->rsd", posterior * weights[:, None], one_hot))
        converged = bool(np.abs(new - theta).max() <= tolerance)
        theta = new
        # E-step: log posterior = log prior + sum over annotators who voted of log theta[a, s, d]
        log_theta = np.log(theta)
        log_post = np.log(prior)[None, :] + np.einsum("prd,rsd->ps", one_hot, log_theta)
        log_post -= log_post.max(axis=1, keepdims=True)
        posterior = np.exp(log_post)
        posterior /= posterior.sum(axis=1, keepdims=True)
    best = posterior.argmax(axis=1)
    probability = posterior[np.arange(len(best)), best]
    voters = given.sum(axis=1)
    code_of = np.asarray(codes, dtype=np.uint8)[best]
    pattern_labels = np.where(
        voters == 0, 0, np.where(probability < min_probability, REVIEW, code_of)
    ).astype(np.uint8)
    pattern_share = np.where(voters == 0, np.nan, probability).astype(np.float32)
    results = {}
    start = 0
    for image in order:
        shape = next(iter(images[image].values())).shape
        index = inverse[start : start + shape[0] * shape[1]].reshape(shape)
        start += shape[0] * shape[1]
        results[image] = Consensus(
            pattern_labels[index], pattern_share[index], voters[index].astype(np.uint8)
        )
    return Staple(
        results,
        tuple(codes),
        {a: theta[i] for i, a in enumerate(annotators)},
        iterations,
        converged,
    )
