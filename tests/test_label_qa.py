"""Label QA: gold-standard scores and consensus, on hand-built annotator masks with known errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from matplotlib import colormaps
from PIL import Image
from sklearn.metrics import cohen_kappa_score

from geoseg.annotation.consensus import (
    REVIEW,
    Consensus,
    _patterns,
    consensus,
    kappa,
    low_agreement,
    low_agreement_table,
    pairwise,
    pairwise_table,
    staple,
    vote,
    write_agreement_cog,
    write_agreement_png,
)
from geoseg.annotation.gold import ClassThresholds, GoldResult, Thresholds, score_against_gold
from geoseg.errors import AnnotationError, ConfigError
from geoseg.types import Grid

SOIL, CROP, WEED = 1, 2, 3
NAMES = {SOIL: "soil", CROP: "crop", WEED: "weed"}
H, W = 96, 128
CROP1 = (slice(10, 50), slice(10, 74))  # 40 x 64 px, the outline annotator A shifts
CROP2 = (slice(60, 84), slice(10, 40))  # 24 x 30, which annotator C labels as weed
WEED1 = (slice(60, 84), slice(60, 90))  # 24 x 30, which annotator B misses
WEED2 = (slice(15, 40), slice(90, 115))  # 25 x 25


def truth() -> np.ndarray:
    out = np.full((H, W), SOIL, np.uint8)
    out[CROP1] = out[CROP2] = CROP
    out[WEED1] = out[WEED2] = WEED
    return out


def shifted(dx: int) -> np.ndarray:
    """The truth with the big crop's outline drawn ``dx`` px to the right."""
    out = truth()
    out[CROP1] = SOIL
    rows, cols = CROP1
    out[rows, cols.start + dx : cols.stop + dx] = CROP
    return out


def missed(fill: int = SOIL) -> np.ndarray:
    out = truth()
    out[WEED1] = fill
    return out


def swapped() -> np.ndarray:
    out = truth()
    out[CROP2] = WEED
    return out


def by_class(result: GoldResult, annotator: str) -> dict[str, pd.Series]:
    table = result.table(NAMES)
    rows = table[table.annotator == annotator].set_index("class")
    return {name: rows.loc[name] for name in rows.index}


# --- gold standard --------------------------------------------------------------------------


def test_gold_scores_a_shifted_outline_by_its_boundary_f_at_3_px() -> None:
    labels = {"near": {"a": shifted(2)}, "far": {"a": shifted(6)}, "exact": {"a": truth()}}
    result = score_against_gold({"a": truth()}, labels)
    exact, near, far = by_class(result, "exact"), by_class(result, "near"), by_class(result, "far")
    assert all(row.iou == 1.0 and row.boundary_f == 1.0 and row.passed for row in exact.values())
    side = CROP1[0].stop - CROP1[0].start  # rows the shift moves in or out at each side
    area = side * (CROP1[1].stop - CROP1[1].start)
    other = 24 * 30  # the second crop, untouched
    # a 2 px shift: IoU slightly lower, every outline pixel within 3 px of the gold's: passes
    assert near["crop"].iou == pytest.approx((area - 2 * side + other) / (area + 2 * side + other))
    assert near["crop"].boundary_f == 1.0
    assert near["crop"].passed and near["crop"].support == area + other
    # a 6 px shift: IoU still above 0.8, but the left and right outlines are 6 px off: fails
    assert far["crop"].iou == pytest.approx((area - 6 * side + other) / (area + 6 * side + other))
    assert far["crop"].iou > 0.8
    assert far["crop"].boundary_f < 0.8
    assert not far["crop"].passed
    assert far["weed"].passed  # the weeds are untouched
    summary = result.summary().set_index("annotator")
    assert summary.loc["exact", "passed"] and summary.loc["near", "passed"]
    assert not summary.loc["far", "passed"]
    assert list(result.table(NAMES).columns[:6]) == [
        "annotator",
        "class",
        "code",
        "iou",
        "boundary_f",
        "support",
    ]


def test_gold_thresholds_can_be_set_per_class() -> None:
    loose = Thresholds(per_class={CROP: ClassThresholds(min_boundary_f=0.5)})
    result = score_against_gold({"a": truth()}, {"far": {"a": shifted(6)}}, loose)
    row = by_class(result, "far")["crop"]
    assert row.passed and row.min_boundary_f == 0.5 and row.min_iou == 0.8
    strict = Thresholds(min_iou=0.99, min_boundary_f=0.0)
    result = score_against_gold({"a": truth()}, {"near": {"a": shifted(2)}}, strict)
    assert not by_class(result, "near")["crop"].passed


def test_gold_a_missed_object_fails_its_class() -> None:
    weed = 24 * 30 + 25 * 25
    for fill in (SOIL, 0):  # left as soil, or left unlabelled: a miss either way
        result = score_against_gold({"a": truth()}, {"b": {"a": missed(fill)}})
        rows = by_class(result, "b")
        assert rows["weed"].iou == pytest.approx(25 * 25 / weed)
        assert rows["weed"].support == weed
        assert not rows["weed"].passed
        assert rows["crop"].passed
        assert result.annotators[0].unlabelled == (24 * 30 if fill == 0 else 0)
        assert not result.annotators[0].passed


def test_gold_a_swapped_class_lowers_both_classes() -> None:
    result = score_against_gold({"a": truth()}, {"c": {"a": swapped()}})
    rows = by_class(result, "c")
    crop, crop2, weed = 40 * 64 + 24 * 30, 24 * 30, 24 * 30 + 25 * 25
    assert rows["crop"].iou == pytest.approx((crop - crop2) / crop)
    assert rows["weed"].iou == pytest.approx(weed / (weed + crop2))
    assert rows["weed"].labelled == weed + crop2
    assert not rows["crop"].passed and not rows["weed"].passed
    assert rows["soil"].passed


def test_gold_sums_over_images_and_leaves_out_unlabelled_gold_and_extra_images() -> None:
    gold_a = truth()
    gold_a[:, :5] = 0  # unlabelled in the gold: whatever the annotator says there is not scored
    annotator = truth()
    annotator[:, :5] = WEED
    labels = {"x": {"a": annotator, "b": missed(), "not-gold": np.zeros((3, 3), np.uint8)}}
    result = score_against_gold({"a": gold_a, "b": truth()}, labels)
    rows = by_class(result, "x")
    weed = 24 * 30 + 25 * 25
    assert rows["weed"].iou == pytest.approx((2 * weed - 24 * 30) / (2 * weed))
    assert rows["weed"].support == 2 * weed
    assert result.annotators[0].images == ("a", "b")


def test_gold_refuses_bad_input_naming_annotator_and_image() -> None:
    with pytest.raises(AnnotationError, match=r"annotator 'b', image 'a'.* 128x95 px .* 128x96"):
        score_against_gold({"a": truth()}, {"b": {"a": truth()[:-1]}})
    with pytest.raises(AnnotationError, match="annotator 'b' labelled none of the 1 gold images"):
        score_against_gold({"a": truth()}, {"b": {"z": truth()}})
    with pytest.raises(AnnotationError, match=r"annotator 'b', image 'a'.*2-D array of integer"):
        score_against_gold({"a": truth()}, {"b": {"a": truth().astype(np.float32)}})
    with pytest.raises(AnnotationError, match=r"annotator 'b', image 'a'.*0\.\.254"):
        score_against_gold({"a": truth()}, {"b": {"a": np.full((H, W), REVIEW, np.uint8)}})
    with pytest.raises(AnnotationError, match="at least one image"):
        score_against_gold({}, {"b": {"a": truth()}})
    with pytest.raises(ConfigError, match=r"class 2 min_iou must lie in 0\.\.1"):
        Thresholds(per_class={CROP: ClassThresholds(min_iou=80)})


def test_gold_ignores_review_pixels_of_a_consensus_gold() -> None:
    gold = truth()
    gold[CROP1] = REVIEW
    result = score_against_gold({"a": gold}, {"b": {"a": shifted(6)}})
    rows = by_class(result, "b")
    assert rows["crop"].support == 24 * 30  # only the second crop is scored


# --- consensus ------------------------------------------------------------------------------

THREE = {"A": {"a": shifted(2)}, "B": {"a": missed()}, "C": {"a": swapped()}}


def test_consensus_of_three_annotators_each_with_one_error_is_the_truth() -> None:
    result = consensus(THREE)["a"]
    assert (result.labels == truth()).all()
    wrong = sum((m["a"] != truth()) for m in THREE.values())
    assert wrong.max() == 1  # the errors are on different pixels
    assert np.allclose(result.agreement[wrong == 1], 2 / 3)
    assert (result.agreement[wrong == 0] == 1.0).all()
    assert (result.voters == 3).all()


def test_a_tie_and_a_low_share_become_review() -> None:
    a = np.array([[2, 2, 2, 0, 0, 1]], np.uint8)
    b = np.array([[3, 2, 0, 0, 3, 2]], np.uint8)
    c = np.array([[1, 3, 3, 0, 0, 3]], np.uint8)
    result = vote([a, b, c])
    # 1-1-1 tie; 2 of 3; 1-1 tie (0 does not vote); nobody; one voter; 1-1-1 tie
    assert result.labels.tolist() == [[REVIEW, 2, REVIEW, 0, 3, REVIEW]]
    assert result.voters.tolist() == [[3, 3, 2, 0, 1, 3]]
    share = result.agreement[0]
    assert np.isnan(share[3])
    assert np.allclose(share[[0, 1, 2, 4, 5]], [1 / 3, 2 / 3, 1 / 2, 1, 1 / 3])
    five = [np.array([[v]], np.uint8) for v in (2, 2, 1, 3, 4)]
    assert vote(five).labels[0, 0] == REVIEW  # 2 of 5 votes: below 0.5
    assert vote(five, min_agreement=0.4).labels[0, 0] == 2  # exactly 0.4: enough
    assert vote([a, a, b, b]).labels[0, 0] == REVIEW  # 2-2


def test_pairwise_kappa_equals_sklearn_on_the_pixels_both_labelled() -> None:
    rng = np.random.default_rng(3)
    labels: dict[str, dict[str, np.ndarray]] = {}
    for name in ("p", "q", "r"):
        labels[name] = {
            image: np.where(
                rng.random((20, 30)) < 0.8,
                np.clip(truth()[:20, 40:70] + (rng.random((20, 30)) < 0.2), 1, 4),
                0,
            ).astype(np.uint8)
            for image in ("a", "b")
        }
    del labels["r"]["b"]  # r labelled only image a
    pairs = {(p.first, p.second): p for p in pairwise(labels)}
    assert set(pairs) == {("p", "q"), ("p", "r"), ("q", "r")}
    for (first, second), pair in pairs.items():
        shared = sorted(set(labels[first]) & set(labels[second]))
        x = np.concatenate([labels[first][i].ravel() for i in shared])
        y = np.concatenate([labels[second][i].ravel() for i in shared])
        both = (x > 0) & (y > 0)
        assert pair.images == len(shared) and pair.pixels == int(both.sum())
        assert pair.kappa == pytest.approx(cohen_kappa_score(x[both], y[both]), abs=1e-12)
        assert pair.agreement == pytest.approx(float(np.mean(x[both] == y[both])))
    table = pairwise_table(list(pairs.values()))
    assert list(table.columns) == [
        "first",
        "second",
        "images",
        "pixels",
        "agreement",
        "mean_iou",
        "kappa",
    ]
    assert kappa(np.array([[5, 0], [0, 0]])) is None  # one class everywhere: undefined
    assert kappa(np.zeros((2, 2), np.int64)) is None


def test_pairwise_iou_by_hand() -> None:
    a = np.array([[1, 1, 2, 2], [1, 1, 2, 0]], np.uint8)
    b = np.array([[1, 2, 2, 2], [1, 1, 3, 2]], np.uint8)
    # both labelled: 7 px. class 1: a 4, b 3, both 3 -> 3/4; class 2: a 3, b 3, both 2 -> 2/4;
    # class 3: a 0, b 1, both 0 -> 0
    (pair,) = pairwise({"a": {"x": a}, "b": {"x": b}})
    assert pair.pixels == 7
    assert pair.mean_iou == pytest.approx((3 / 4 + 2 / 4 + 0) / 3)
    assert pair.agreement == pytest.approx(5 / 7)
    # kappa by hand: rows (a) 1: [3, 1, 0], 2: [0, 2, 1]; p_o 5/7, p_e (4*3 + 3*3 + 0*1) / 49
    pe = 21 / 49
    assert pair.kappa == pytest.approx((5 / 7 - pe) / (1 - pe))


def test_low_agreement_lists_images_and_regions_with_boxes() -> None:
    noisy = truth()
    noisy[30:34, 100:110] = CROP  # only annotator B, inside the second weed
    labels = {
        "A": {"a": truth(), "b": truth()},
        "B": {"a": truth(), "b": noisy},
        "C": {"a": truth(), "b": swapped()},
    }
    results = consensus(labels)
    assert low_agreement(results) == []  # 2 of 3 agree everywhere: not low at 2/3
    flagged = low_agreement(results, threshold=0.9, min_pixels=20)
    assert [f.image for f in flagged] == ["b"]
    (image,) = flagged
    assert [(r.pixels, r.bbox) for r in image.regions] == [
        (720, (10, 60, 30, 24)),
        (40, (100, 30, 10, 4)),
    ]
    assert image.regions[0].mean_agreement == pytest.approx(2 / 3)
    assert image.low_share == pytest.approx(760 / (H * W))
    assert low_agreement(results, threshold=0.9, min_pixels=50)[0].regions[0].pixels == 720
    two = consensus({"A": {"a": truth()}, "B": {"a": swapped()}})
    (tied,) = low_agreement(two, min_pixels=1)
    assert tied.regions[0].review_pixels == 720  # a 1-1 tie: review
    table = low_agreement_table(flagged)
    assert table[["image", "region", "pixels", "x", "y", "width", "height"]].values.tolist() == [
        ["b", 1, 720, 10, 60, 30, 24],
        ["b", 2, 40, 100, 30, 10, 4],
    ]
    below = low_agreement({"z": Consensus(*_uniform(0.4))}, threshold=0.5, min_pixels=10**6)
    assert below[0].image == "z" and below[0].regions == ()
    assert low_agreement_table(below).region.isna().all()


def _uniform(share: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        np.full((4, 4), 2, np.uint8),
        np.full((4, 4), share, np.float32),
        np.full((4, 4), 3, np.uint8),
    )


def test_agreement_heatmaps(tmp_path: Path) -> None:
    agreement = np.array([[0.0, 0.5], [1.0, np.nan]], np.float32)
    png = write_agreement_png(tmp_path / "agreement.png", agreement)
    with Image.open(png) as picture:
        assert picture.mode == "RGBA" and picture.size == (2, 2)
        rgba = np.asarray(picture)
    assert rgba[1, 1, 3] == 0 and (rgba[[0, 0, 1], [0, 1, 0], 3] == 255).all()
    expected = colormaps["viridis"](np.array([0.0, 0.5, 1.0]), bytes=True)
    assert (rgba[[0, 0, 1], [0, 1, 0]] == expected).all()
    cog = write_agreement_cog(tmp_path / "agreement.tif", agreement, Grid.pixels(2, 2))
    with rasterio.open(cog) as src:
        back = src.read(1)
        assert src.dtypes[0] == "float32" and np.isnan(src.nodata)
    assert np.array_equal(back, agreement, equal_nan=True)


def test_consensus_refuses_maps_of_different_sizes() -> None:
    labels = {"A": {"img-7": truth()}, "B": {"img-7": truth()[:, :-2]}}
    with pytest.raises(AnnotationError, match=r"image 'img-7'.*'A' 128x96, 'B' 126x96"):
        consensus(labels)
    with pytest.raises(AnnotationError, match="differ in size"):
        vote([truth(), truth()[1:]])
    with pytest.raises(AnnotationError, match="at least one"):
        vote([])
    with pytest.raises(
        AnnotationError, match=r"0\.\.254 \(255 is the review code\), found 1\.\.255"
    ):
        vote([truth(), np.full((H, W), REVIEW, np.uint8)])
    with pytest.raises(AnnotationError, match=r"annotator 'B', image 'img-7'.*0\.\.254"):
        pairwise({"A": {"img-7": truth()}, "B": {"img-7": truth().astype(np.int64) * 100}})
    with pytest.raises(ConfigError, match="min_agreement"):
        vote([truth()], min_agreement=1.5)
    with pytest.raises(AnnotationError, match="every label map given is empty"):
        staple({"A": {"a": np.zeros((2, 2), np.uint8)}})


# --- STAPLE ---------------------------------------------------------------------------------


def correlated_annotators(
    share: float, noise: float, seed: int = 0
) -> tuple[dict[str, dict[str, np.ndarray]], np.ndarray]:
    """Two careful annotators (2 % random errors) and three careless ones (``noise``) who all
    label the same top ``share`` of the crop as weed."""
    rng = np.random.default_rng(seed)
    true = truth()
    crop = true == CROP
    first_rows = np.cumsum(crop.sum(axis=1)) <= share * crop.sum()
    systematic = crop & first_rows[:, None]
    labels = {}
    for k, rate in enumerate([0.02, 0.02, noise, noise, noise]):
        out = true.copy()
        flip = rng.random(out.shape) < rate
        out[flip] = (out[flip] - 1 + rng.integers(1, 3, int(flip.sum()))) % 3 + 1
        if k >= 2:
            out[systematic] = WEED
        labels[f"annotator-{k}"] = {"a": out}
    return labels, systematic


def test_staple_beats_the_vote_when_careless_annotators_share_an_error() -> None:
    labels, systematic = correlated_annotators(share=0.1, noise=0.3)
    voted = consensus(labels)["a"].labels
    result = staple(labels)
    estimated = result.images["a"].labels
    vote_accuracy = float(np.mean(voted == truth()))
    staple_accuracy = float(np.mean(estimated == truth()))
    print(
        f"vote {vote_accuracy:.4f} ({np.count_nonzero(voted == REVIEW)} review), staple "
        f"{staple_accuracy:.4f} ({np.count_nonzero(estimated == REVIEW)} review), "
        f"{result.iterations} iterations; shared error recovered: vote "
        f"{np.mean(voted[systematic] == CROP):.3f}, "
        f"staple {np.mean(estimated[systematic] == CROP):.3f}"
    )
    assert result.converged
    assert staple_accuracy > vote_accuracy + 0.03
    assert staple_accuracy > 0.99
    # the shared error: the vote takes the careless majority's weed, STAPLE finds the crop
    assert (voted[systematic] == WEED).all()
    assert np.mean(estimated[systematic] == CROP) > 0.9
    # and it learnt who is careful: the diagonal of each confusion matrix
    reliability = {a: float(np.diag(m).mean()) for a, m in result.confusion.items()}
    careful = min(reliability["annotator-0"], reliability["annotator-1"])
    assert careful > 0.95 > max(reliability[f"annotator-{k}"] for k in (2, 3, 4))
    assert all(np.allclose(m.sum(axis=1), 1) for m in result.confusion.values())
    probability = result.images["a"].agreement
    assert probability.dtype == np.float32
    assert ((probability < 0.5) == (estimated == REVIEW)).all()


def test_staple_follows_a_careless_majority_whose_shared_error_is_large() -> None:
    # the limit the module docstring states: a third of the crop, always labelled weed by the
    # same three, is to STAPLE a property of the crop, not an error; it agrees with the vote
    labels, systematic = correlated_annotators(share=0.3, noise=0.05)
    estimated = staple(labels).images["a"].labels
    voted = consensus(labels)["a"].labels
    assert (estimated[systematic] == WEED).mean() > 0.95
    assert (voted[systematic] == WEED).all()


def test_staple_without_noise_is_the_truth_and_handles_missing_annotators() -> None:
    labels = {"A": {"a": truth(), "b": truth()}, "B": {"a": truth()}, "C": {"b": missed(0)}}
    result = staple(labels)
    assert set(result.images) == {"a", "b"}
    assert (result.images["a"].labels == truth()).all()
    assert (result.images["b"].labels == truth()).all()
    assert (result.images["a"].voters == 2).all()
    assert result.codes == (SOIL, CROP, WEED)
    nobody = staple({"A": {"a": np.array([[0, 2]], np.uint8)}}).images["a"]
    assert nobody.labels.tolist() == [[0, 2]] and np.isnan(nobody.agreement[0, 0])


def test_staple_groups_pixels_by_their_votes_either_way() -> None:
    rng = np.random.default_rng(5)
    decisions = rng.integers(-1, 3, (500, 4)).astype(np.int16)
    packed = _patterns(decisions, 3)  # 4 annotators, 3 classes: packed into integers
    rows = _patterns(decisions, 2**20)  # too many to pack: rows sorted as they are
    for patterns, inverse, counts in (packed, rows):
        assert (patterns[inverse] == decisions).all()
        assert counts.sum() == 500 and len(np.unique(patterns, axis=0)) == len(patterns)
    assert len(packed[0]) == len(rows[0])
