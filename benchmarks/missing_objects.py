"""Label QA on CWFID: how well the missing-object check finds the plants nobody outlined.

    python benchmarks/missing_objects.py [--model out/cwfid/label-qa-cwfid.geoseg]
        [--out /tmp/labelqa/queue] [--sheet /tmp/review_queue.png] [--confidence 0.8]

CWFID's annotations outline only some plants; its vegetation masks show every plant. On the
images the model's bundle records as held out (it never trained on them), the **truth** is
the *unannotated plants*: 4-connected regions of at least 50 px that the vegetation mask calls
plant and the annotation calls soil (what image set ``cwfid-masked`` turns into 0). Each image
is predicted in memory (``geoseg.stitch.reference.predict_in_memory``, the model's tiling) and
checked against its plain ``cwfid`` labels (``geoseg.annotation.checks``, soil as background,
default thresholds: confidence >= 0.8, >= 50 px). Of the findings, the ``missing_object`` ones
are the **flags**. Figures:

- ``recall``: the share of truth regions of which flags cover at least half the pixels
  (``recall_any``: at least one pixel);
- ``precision``: the share of flags of which at least half the pixels are unannotated plant
  pixels (vegetation mask plant, annotation soil, any region size); ``precision_any``: flags
  touching a truth region at all;
- pixel figures: flagged pixels that are unannotated plant pixels, and the converse.

Every finding kind goes into a review queue (GeoPackage, CSV, PNG crops) under ``--out`` and the
top crops into one PNG, ``--sheet``. CWFID is NON-COMMERCIAL RESEARCH ONLY: write outputs under
/tmp or out/ only, never into the repository.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from geoseg.annotation.checks import CheckSettings, Finding, check_labels, class_shares  # noqa: E402
from geoseg.annotation.queue import (  # noqa: E402
    ReviewImage,
    rank,
    review_selection,
    write_queue,
    write_sheet,
)
from geoseg.annotation.regions import FOUR, paint  # noqa: E402
from geoseg.catalog import Catalog  # noqa: E402
from geoseg.export.style import class_styles  # noqa: E402
from geoseg.io.images import read_image, read_labels  # noqa: E402
from geoseg.model.bundle import load_meta  # noqa: E402
from geoseg.model.predictor import predictor  # noqa: E402
from geoseg.stitch.predict import InferenceSpec  # noqa: E402
from geoseg.stitch.reference import predict_in_memory  # noqa: E402


def confusion(labels: NDArray[np.uint8], classes: NDArray[np.uint8]) -> NDArray[np.int64]:
    """Confusion counts (label code x predicted code) over labelled, predicted pixels."""
    valid = (labels != 0) & (classes != 0)
    index = labels[valid].astype(np.int64) * 256 + classes[valid]
    return np.bincount(index, minlength=256 * 256).reshape(256, 256)


def miou(counts: NDArray[np.int64], codes: tuple[int, ...]) -> dict[str, float]:
    """Per-class IoU and their mean from summed confusion counts."""
    scores = {}
    for code in codes:
        hit = counts[code, code]
        union = counts[code, :].sum() + counts[:, code].sum() - hit
        scores[str(code)] = float(hit / union) if union else float("nan")
    scores["mean"] = float(np.nanmean(list(scores.values())))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "out/cwfid/label-qa-cwfid.geoseg")
    parser.add_argument("--catalog", type=Path, default=REPO / "data_catalog.yaml")
    parser.add_argument("--out", type=Path, default=Path("/tmp/labelqa/queue"))
    parser.add_argument("--sheet", type=Path, default=Path("/tmp/review_queue.png"))
    parser.add_argument("--top", type=int, default=8, help="crops in the sheet")
    parser.add_argument("--augment", default="none", choices=["none", "flips", "d4"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--confidence", type=float, default=0.8, help="the check's threshold")
    args = parser.parse_args()

    catalog = Catalog.load(args.catalog)
    plain, masked = catalog.image_set("cwfid"), catalog.image_set("cwfid-masked")
    meta = load_meta(args.model)
    trained = meta.trained_image_set
    held = meta.held_out_items(trained) if trained else None
    if trained is None or not held or not catalog.same_images(trained, plain):
        raise SystemExit(f"{args.model} records no held-out images of CWFID")
    profile = meta.input_profiles()[0]
    spec = InferenceSpec(
        meta.tile_grid(),
        8,
        tuple(b.mean for b in profile.bands),
        tuple(b.std for b in profile.bands),
        meta.class_codes,
        args.augment,  # type: ignore[arg-type]
    )
    model = predictor(args.model, "cpu", args.threads)
    codes = {code: name for code, name, _ in plain.classes}
    background = 1  # soil: black in CWFID's annotations
    settings = CheckSettings(background=background, confidence=args.confidence)

    findings: list[Finding] = []
    images: dict[str, ReviewImage] = {}
    labels_by_id: dict[str, NDArray[np.uint8]] = {}
    truth_regions = recalled = recalled_any = 0
    flags = flags_right = flags_any = 0
    flagged_px = flagged_truth_px = truth_px = truth_flagged_px = 0
    touching = 0
    summed = np.zeros((256, 256), np.int64)
    seconds = {"predict": 0.0, "check": 0.0}
    for item in (i for i in plain.ids if i in held):
        photo = read_image(dict(plain.images)[item], 3)
        shape = photo.shape[1:]
        labels = read_labels(plain, item, shape)
        unlabelled = read_labels(masked, item, shape) == 0
        start = time.perf_counter()
        predicted = predict_in_memory(photo, model, spec)
        seconds["predict"] += time.perf_counter() - start
        start = time.perf_counter()
        found = check_labels(item, labels, predicted.classes, predicted.confidence, codes, settings)
        seconds["check"] += time.perf_counter() - start
        findings += found
        summed += confusion(labels, predicted.classes)
        images[item] = ReviewImage(
            np.moveaxis(photo, 0, -1).clip(0, 255).astype(np.uint8),
            labels,
            predicted.classes,
        )
        labels_by_id[item] = labels

        plant_px = unlabelled & (labels == background)  # vegetation says plant, labels soil
        truth, count = ndimage.label(plant_px, structure=FOUR)
        sizes = np.bincount(truth.ravel(), minlength=count + 1)
        big = np.flatnonzero((sizes >= 50) & (np.arange(count + 1) > 0))
        missing = [f for f in found if f.kind == "missing_object"]
        flag_mask = paint(
            [(f.polygon, 1) for f in missing if f.polygon is not None], labels.shape
        ).astype(bool)
        covered = np.bincount(truth[flag_mask].ravel(), minlength=count + 1)
        truth_regions += len(big)
        recalled += int((covered[big] * 2 >= sizes[big]).sum())
        recalled_any += int((covered[big] > 0).sum())
        in_big = np.isin(truth, big)
        for flag in missing:
            one = paint([(flag.polygon, 1)], labels.shape).astype(bool)
            flags += 1
            flags_right += int(2 * (one & plant_px).sum() >= one.sum())
            flags_any += int((one & in_big).any())
            touching += int(bool(flag.note))
        flagged_px += int(flag_mask.sum())
        flagged_truth_px += int((flag_mask & plant_px).sum())
        truth_px += int(in_big.sum())
        truth_flagged_px += int((in_big & flag_mask).sum())

    written = write_queue(findings, args.out, images, class_styles(meta), crops=max(args.top, 40))
    crops = [p for p in written if p.suffix == ".png"][: args.top]
    sheet = write_sheet(crops, args.sheet) if crops else None
    selection = review_selection(findings)
    shares = class_shares(labels_by_id, codes)
    scores = miou(summed, meta.class_codes)
    names = {str(c): n for c, n in codes.items()}
    top = rank(findings)[: args.top]
    figures = {
        "model": str(args.model),
        "trained_on": trained,
        "confidence_threshold": settings.confidence,
        "held_out_images": list(images),
        "training": {
            key: (meta.training.get("config") or {}).get(key)
            for key in ("epochs", "chips_per_epoch", "chip_size", "batch_size")
        }
        | {"validation_miou_held_out": meta.metrics.get("validation", {}).get("miou")},
        "held_out_iou_plain_labels": {names.get(k, k): v for k, v in scores.items()},
        "truth_regions": truth_regions,
        "truth_pixels": truth_px,
        "flags": flags,
        "recall": recalled / truth_regions if truth_regions else None,
        "recall_any": recalled_any / truth_regions if truth_regions else None,
        "precision": flags_right / flags if flags else None,
        "precision_any": flags_any / flags if flags else None,
        "flags_touching_labelled_plants": touching,
        "pixel_precision": flagged_truth_px / flagged_px if flagged_px else None,
        "pixel_recall": truth_flagged_px / truth_px if truth_px else None,
        "findings_by_kind": dict(Counter(f.kind for f in findings)),
        "images_to_review": list(selection.ids),
        "seconds": seconds,
        "top_of_queue": [
            {
                "image": f.image_id,
                "kind": f.kind,
                "pixels": f.pixels,
                "confidence": f.confidence,
                "bbox": f.bbox,
                "note": f.note,
            }
            for f in top
        ],
        "mean_class_share": shares.groupby("class_name")["share"].mean().round(4).to_dict(),
        "queue": str(args.out),
        "sheet": str(sheet),
    }
    print(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
