"""geoseg's Python API, for notebooks and scripts: the workflow steps as functions.

Each function validates its options with the step's own config model and runs a one-step plan
through the same planner, transaction and executor as ``geoseg run`` (so outputs, manifests,
``overwrite`` and ``resume`` behave exactly as in a workflow)::

    import geoseg

    model = geoseg.load_model("models/landcover.geoseg")
    scene = geoseg.open_source("nc-landsat7-sample", catalog="data_catalog.yaml")
    report = geoseg.predict(scene.name, model, "out/nb", catalog="data_catalog.yaml")
    print(report.figures)

A source is a catalog name, or a raster file or ``https://`` / ``s3://`` URL (then
``bands=[...]`` names its bands in order; by default the model's band names when the counts
match, and ``units`` defaults to ``DN``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from numpy.typing import NDArray

from geoseg.catalog import BandSpec, Catalog, CatalogSpec, SourceSpec
from geoseg.config import parse_model
from geoseg.errors import ConfigError
from geoseg.executor import ExecutorSpec
from geoseg.io.raster import open_raster
from geoseg.io.source import RasterSource
from geoseg.model.bundle import BundleMeta, ClassInfo, load_meta
from geoseg.stitch.augment import Augment
from geoseg.stitch.predict import WindowPrediction
from geoseg.types import Location, RemoteLocation, is_remote
from geoseg.workflow.plan import plan_steps
from geoseg.workflow.run import StepReport, run_plan
from geoseg.workflow.schema import StepConfig
from geoseg.workflow.step import PlannedStep
from geoseg.workflow.steps.evaluate import EvaluateFigures, PlannedEvaluate
from geoseg.workflow.steps.export_annotations import ExportFigures, PlannedExportAnnotations
from geoseg.workflow.steps.import_annotations import ImportFigures, PlannedImportAnnotations
from geoseg.workflow.steps.predict import PlannedPredict
from geoseg.workflow.steps.predict_report import PredictFigures
from geoseg.workflow.steps.train import PlannedTrain, TrainFigures

#: The catalog used when none is given: ``data_catalog.yaml`` in the working folder.
DEFAULT_CATALOG = Path("data_catalog.yaml")

SourceLike = str | Path

#: Suffixes that make a missing path an error about the file, not about a catalog name.
RASTERS = {".tif", ".tiff", ".vrt", ".img", ".jp2", ".nc"}


@dataclass(frozen=True)
class Model:
    """A model bundle: its metadata, and in-memory prediction of small arrays."""

    path: Path
    meta: BundleMeta

    @property
    def name(self) -> str:
        """The model's name."""
        return self.meta.name

    @property
    def band_names(self) -> tuple[str, ...]:
        """Input bands, in the order the network expects them."""
        return self.meta.band_names

    @property
    def classes(self) -> list[ClassInfo]:
        """Output classes (code, name, colour)."""
        return list(self.meta.classes)

    def predict_array(
        self,
        image: NDArray[np.float32],
        device: str = "auto",
        augment: Augment = "none",
        batch_size: int = 8,
    ) -> WindowPrediction:
        """Class codes and confidence of a ``(band, y, x)`` array in the model's band order.

        The array is in the units of the model's (first) input profile, NaN = nodata; it is
        tiled, blended and decoded exactly as a scene is (``geoseg.stitch.reference``).
        """
        from geoseg.model.predictor import predictor
        from geoseg.stitch.predict import InferenceSpec
        from geoseg.stitch.reference import predict_in_memory

        if image.ndim != 3 or image.shape[0] != len(self.band_names):
            raise ValueError(
                f"model '{self.name}' takes (band, y, x) arrays with {len(self.band_names)} bands "
                f"{list(self.band_names)}, got shape {image.shape}"
            )
        profile = self.meta.input_profiles()[0]
        spec = InferenceSpec.of(self.meta, profile, self.meta.tile_grid(), batch_size, augment)
        return predict_in_memory(image.astype(np.float32), predictor(self.path, device), spec)


def load_model(path: str | Path) -> Model:
    """Open a model bundle (``NAME.geoseg``); its metadata is checked, weights load on use."""
    path = Path(path).resolve()
    return Model(path, load_meta(path))


def open_source(
    source: SourceLike,
    catalog: str | Path | None = None,
    bands: Sequence[str] | None = None,
    units: str = "DN",
    chunks: tuple[int, int] | None = None,
) -> xr.DataArray:
    """A source as a lazy ``(band, y, x)`` xarray/Dask array in its units, NaN = nodata."""
    resolved, name = _catalog_for(source, catalog, bands, units, None)
    return RasterSource.open(resolved.source(name)).to_xarray(chunks)


def predict(
    source: SourceLike,
    model: str | Path | Model,
    output: str | Path,
    catalog: str | Path | None = None,
    bands: Sequence[str] | None = None,
    units: str = "DN",
    overwrite: bool = False,
    resume: bool = False,
    executor: ExecutorSpec | None = None,
    show_progress: bool = False,
    **options: Any,
) -> StepReport[PredictFigures]:
    """Run a ``predict`` step; ``options`` are its keys (``chunk_size``, ``vector`` ...)."""
    bundle = model.path if isinstance(model, Model) else Path(model).resolve()
    resolved, name = _catalog_for(source, catalog, bands, units, bundle)
    config = {**options, "source": name, "model": str(bundle), "output": str(output)}
    return _run(PlannedPredict, config, resolved, overwrite, resume, executor, show_progress)


def evaluate(
    prediction: str | Path,
    source: str,
    output: str | Path,
    catalog: str | Path | None = None,
    overwrite: bool = False,
    executor: ExecutorSpec | None = None,
    show_progress: bool = False,
    **options: Any,
) -> StepReport[EvaluateFigures]:
    """Run an ``evaluate`` step against a catalog source's labels (``labels=``, ``tolerance=``)."""
    resolved, name = _catalog_for(source, catalog, None, "DN", None)
    config = {**options, "prediction": str(prediction), "source": name, "output": str(output)}
    return _run(PlannedEvaluate, config, resolved, overwrite, False, executor, show_progress)


def train(
    output: str | Path,
    catalog: str | Path | None = None,
    overwrite: bool = False,
    show_progress: bool = False,
    resume: bool = False,
    **options: Any,
) -> StepReport[TrainFigures]:
    """Run a ``train`` step: ``source=`` (with ``labels=``), ``sources=`` or ``image_set=``.

    ``resume`` continues an interrupted training from its last epoch checkpoint.
    """
    resolved = Catalog.load(_catalog_path(catalog))
    config = {**options, "output": str(output)}
    return _run(PlannedTrain, config, resolved, overwrite, resume, None, show_progress)


def export_annotations(
    predictions: str | Path,
    output: str | Path,
    catalog: str | Path | None = None,
    overwrite: bool = False,
    **options: Any,
) -> StepReport[ExportFigures]:
    """Run an ``export_annotations`` step: pre-annotations for labelling tools.

    Options: ``image_set=`` (a predict_images run) or ``source=`` (a predict run), ``formats=``,
    ``background=``, ``images=``, ``chip_size=``.
    """
    resolved = Catalog.load(_catalog_path(catalog))
    config = {**options, "predictions": str(predictions), "output": str(output)}
    return _run(PlannedExportAnnotations, config, resolved, overwrite, False, None, False)


def import_annotations(
    export: str | Path,
    format: str,
    output: str | Path,
    path: str | Path | None = None,
    catalog: str | Path | None = None,
    overwrite: bool = False,
    **options: Any,
) -> StepReport[ImportFigures]:
    """Run an ``import_annotations`` step: corrected annotations back as labels, and the effort.

    ``path`` is the corrected file or folder (default: the export's own, an unchanged round
    trip). The catalog (default ``data_catalog.yaml`` when there is one) describes a scene's
    source in the labels' catalog.
    """
    found = _catalog_path(catalog) if catalog or DEFAULT_CATALOG.exists() else None
    resolved = (
        Catalog.load(found)
        if found is not None
        else Catalog(Path.cwd() / "(no catalog)", CatalogSpec(version=1, sources={}))
    )
    config = {
        **options,
        "export": str(export),
        "format": format,
        "output": str(output),
        **({"path": str(path)} if path is not None else {}),
    }
    return _run(PlannedImportAnnotations, config, resolved, overwrite, False, None, False)


def _run(
    step: type[PlannedStep[Any]],
    options: dict[str, Any],
    catalog: Catalog,
    overwrite: bool,
    resume: bool,
    executor: ExecutorSpec | None,
    show_progress: bool,
) -> StepReport[Any]:
    """One step, planned and run as a one-step workflow (``geoseg.KIND()`` names it in errors).

    Relative paths in ``options`` are relative to the working folder.
    """
    origin = f"geoseg.{step.kind}()"
    config = parse_model(step.config_type, options, Path(origin), "options of")
    spec = executor or ExecutorSpec()
    plan = plan_steps(Path.cwd() / origin, catalog, [StepConfig(step.kind, config)], spec, origin)
    return run_plan(plan, overwrite, show_progress, resume, spec)[0]


def _catalog_path(catalog: str | Path | None) -> Path:
    if catalog is not None:
        return Path(catalog)
    if not DEFAULT_CATALOG.exists():
        raise ConfigError(
            f"no catalog given and no {DEFAULT_CATALOG} in {Path.cwd()}: pass catalog=PATH"
        )
    return DEFAULT_CATALOG


def _catalog_for(
    source: SourceLike,
    catalog: str | Path | None,
    bands: Sequence[str] | None,
    units: str,
    model: Path | None,
) -> tuple[Catalog, str]:
    """The catalog and source name for a catalog name, a raster file or a URL."""
    location: Location
    if isinstance(source, str) and is_remote(source):
        try:
            location = RemoteLocation(source)
        except ValueError as exc:
            raise ConfigError(f"source {source}: {exc}") from exc
    else:
        path = Path(source)
        if isinstance(source, str) and not path.exists() and path.suffix.lower() not in RASTERS:
            return Catalog.load(_catalog_path(catalog)), source
        location = path.resolve()
    with open_raster(location) as ds:
        count, descriptions = ds.count, ds.descriptions
    names = list(bands) if bands else _band_names(count, descriptions, model)
    if len(names) != count:
        raise ConfigError(f"bands names {len(names)} band(s) but {location} has {count}: {names}")
    spec = SourceSpec(
        file=str(location),
        bands=[BandSpec(name=n) for n in names],
        units=units,
        description=str(location),
    )
    name = Path(location.name).stem
    folder = Path.cwd() if is_remote(location) else location.parent
    return Catalog(folder / "(file)", CatalogSpec(version=1, sources={name: spec})), name


def _band_names(count: int, descriptions: Sequence[str | None], model: Path | None) -> list[str]:
    """Band names of a file: the model's when the counts match, else its band descriptions."""
    if model is not None:
        model_bands = load_meta(model).band_names
        if len(model_bands) == count:
            return list(model_bands)
    if all(descriptions):
        return [str(d) for d in descriptions]
    return [f"band{i}" for i in range(1, count + 1)]
