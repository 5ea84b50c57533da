"""Classical baseline: a per-pixel random forest vs geoseg's default model, same hold-out.

    python benchmarks/baseline.py [--model models/landcover.geoseg] [--workflow
        workflows/train-default.yaml]

Both are scored by geoseg's own ``evaluate`` code on the NC Landsat 7 scene's spatial hold-out:
the validation blocks the train workflow held out (recomputed from its config and seed), written
as a mask raster and passed as ``within``. The random forest (scikit-learn, 200 trees, balanced
class weights) trains on exactly the pixels geoseg's training used (labelled, outside the
hold-out blocks and their buffer), on the same bands, and predicts every valid pixel. Prints
both sets of figures side by side.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import rasterio

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

from geoseg.catalog import Catalog
from geoseg.evaluation.run import EvaluateJob, evaluate
from geoseg.executor import Executor, ExecutorSpec
from geoseg.io.labels import open_labels
from geoseg.io.source import RasterSource
from geoseg.stitch.predict import valid_mask
from geoseg.tiling.grid import ChunkPlan
from geoseg.training.config import TrainConfig
from geoseg.training.holdout import spatial_split
from geoseg.workflow.schema import load_workflow


def write_map(path: Path, data: np.ndarray, profile: dict) -> Path:
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data.astype(np.uint8), 1)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=common.REPO / "models/landcover.geoseg")
    parser.add_argument(
        "--workflow", type=Path, default=common.REPO / "workflows/train-default.yaml"
    )
    parser.add_argument("--trees", type=int, default=200)
    args = parser.parse_args()
    from sklearn.ensemble import RandomForestClassifier

    from geoseg.model.bundle import load_meta

    _, _, steps = load_workflow(args.workflow)
    step = next(s.config for s in steps if isinstance(s.config, TrainConfig))
    catalog = Catalog.load(common.REPO / "data_catalog.yaml")
    first = step.inputs[0]  # the NC scene: the default model's first source
    source = RasterSource.open(catalog.source(first.source))
    source = source.select(step.bands or list(source.band_names))
    labels = open_labels(source, first.labels)
    image = source.read(source.grid.window)
    valid = valid_mask(image)
    codes = np.where(valid, labels.read(source.grid.window), 0).astype(np.uint8)
    meta = load_meta(args.model)
    classes = list(meta.class_codes)
    usable = np.where(np.isin(codes, classes), codes, 0)
    split = spatial_split(usable, step.validation, step.seed)

    folder = common.CACHE / "baseline"
    folder.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff",
        "height": source.grid.height,
        "width": source.grid.width,
        "count": 1,
        "dtype": "uint8",
        "crs": source.grid.crs,
        "transform": source.grid.transform,
        "nodata": 0,
    }
    holdout = write_map(folder / "holdout.tif", split.validation, {**profile, "nodata": None})

    pixels = image.reshape(image.shape[0], -1).T
    train = split.train.ravel()
    forest = RandomForestClassifier(
        n_estimators=args.trees,
        class_weight="balanced",
        n_jobs=2,
        random_state=step.seed,
        min_samples_leaf=2,
    )
    forest.fit(pixels[train], usable.ravel()[train])
    rf_map = np.zeros(valid.size, dtype=np.uint8)
    rf_map[valid.ravel()] = forest.predict(pixels[valid.ravel()])
    rf_path = write_map(folder / "rf_classes.tif", rf_map.reshape(valid.shape), profile)

    import subprocess

    predict_wf = folder / "predict.yaml"
    predict_wf.write_text(
        f"version: 1\ncatalog: {common.REPO / 'data_catalog.yaml'}\nsteps:\n  - predict:\n"
        f"      source: {first.source}\n      model: {args.model}\n      output: {folder / 'cnn'}\n"
        "      vector: {enabled: false}\n",
        encoding="utf-8",
    )
    subprocess.run(
        [sys.executable, "-m", "geoseg.cli.main", "-q", "run", str(predict_wf), "--overwrite"],
        check=True,
    )
    cnn_path = folder / "cnn" / "classes.tif"

    ex = Executor(ExecutorSpec("threads", 2), show_progress=False)
    results = {}
    for name, path in (("random_forest", rf_path), ("geoseg_default_model", cnn_path)):
        job = EvaluateJob(
            path,
            labels,
            source.grid,
            ChunkPlan(source.grid.shape, (128, 489)),
            (),
            3,
            holdout,
            folder / f"parts-{name}",
        )
        result = evaluate(job, ex).scores(classes, [], 3)
        results[name] = {
            "miou": round(result.miou or 0, 4),
            "overall_accuracy": round(result.overall_accuracy or 0, 4),
            "boundary_f": round(result.boundary_f or 0, 4),
            "per_class_iou": {
                meta.class_name(c.code): None if c.iou is None else round(c.iou, 4)
                for c in result.classes
            },
        }
    rf, cnn = results["random_forest"], results["geoseg_default_model"]
    wins = sum(
        1
        for k in cnn["per_class_iou"]
        if cnn["per_class_iou"][k] is not None
        and rf["per_class_iou"][k] is not None
        and cnn["per_class_iou"][k] > rf["per_class_iou"][k]
    )
    print(
        json.dumps(
            {
                "holdout": f"{len(split.blocks)} blocks of {step.validation.block_size} px, "
                f"{int(split.validation.sum())} labelled pixels",
                "training_pixels": int(split.train.sum()),
                **results,
                "model_beats_rf_on_miou": cnn["miou"] > rf["miou"],
                "classes_where_model_beats_rf": f"{wins} of {len(cnn['per_class_iou'])}",
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
