"""Training scenes: what the loop trains and validates on.

A raster source gives one scene, split spatially into training and hold-out blocks. An image set
gives one scene per image, split by whole images (a held-out image is never trained on). All
scenes of one source share its band statistics, recorded as that source's input profile.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from geoseg.catalog import Catalog
from geoseg.classes import class_info
from geoseg.errors import TrainingError
from geoseg.io.images import read_image, read_labels
from geoseg.io.labels import open_labels
from geoseg.io.source import RasterSource
from geoseg.model.bundle import BandStats, DataProvenance, InputProfile
from geoseg.stitch.predict import valid_mask
from geoseg.training.config import ValidationConfig
from geoseg.training.holdout import Split, spatial_split
from geoseg.types import PIXEL_UNIT

#: About how many pixels the band correlations of an input profile are computed from.
CORRELATION_PIXELS = 1_000_000


@dataclass(frozen=True)
class Scene:
    """An image in memory, its labels as codes, its split and its source's statistics."""

    name: str
    item: str
    band_names: tuple[str, ...]
    image: NDArray[np.float32]
    codes: NDArray[np.uint8]
    split: Split
    mean: NDArray[np.float64]
    std: NDArray[np.float64]
    correlation: NDArray[np.float64]
    units: str
    pixel_size: float
    crs_units: str
    provenance: DataProvenance
    classes: dict[int, tuple[str, str]]

    def profile(self) -> InputProfile:
        """The input profile the bundle records for this scene's source."""
        return InputProfile(
            name=self.name,
            units=self.units,
            pixel_size=self.pixel_size,
            crs_units=self.crs_units,
            bands=[
                BandStats(name=n, mean=float(m), std=float(s))
                for n, m, s in zip(self.band_names, self.mean, self.std, strict=True)
            ],
            correlation=np.round(self.correlation, 4).tolist(),
        )

    def target(self, lookup: NDArray[np.int64]) -> NDArray[np.int64]:
        """Training targets: class index on training pixels, -1 elsewhere."""
        return np.where(self.split.train, lookup[self.codes], -1)


def _stats(
    images: Sequence[NDArray[np.float32]],
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Per-band mean and std over the valid pixels of ``images``, and the band correlations.

    Correlations are over pixels valid in every band, on a regular grid of at most about
    :data:`CORRELATION_PIXELS` of them (1 on the diagonal; 0 for a constant band).
    """
    bands = images[0].shape[0]
    values = [np.concatenate([img[b][np.isfinite(img[b])] for img in images]) for b in range(bands)]
    pixels = sum(img.shape[1] * img.shape[2] for img in images)
    step = max(1, math.ceil(math.sqrt(pixels / CORRELATION_PIXELS)))
    thinned = [img[:, ::step, ::step] for img in images]
    complete = np.concatenate(
        [img[:, np.all(np.isfinite(img), axis=0)] for img in thinned], axis=1
    ).astype(np.float64)
    correlation: NDArray[np.float64] = np.eye(bands)
    if bands > 1 and complete.shape[1] > 1:
        with np.errstate(invalid="ignore", divide="ignore"):
            correlation = np.nan_to_num(np.atleast_2d(np.corrcoef(complete)))
        np.fill_diagonal(correlation, 1.0)
    return (
        np.array([float(v.mean()) for v in values]),
        np.array([max(float(v.std()), 1e-6) for v in values]),
        correlation,
    )


def _keep(codes: NDArray[np.uint8], classes: Sequence[int] | None) -> NDArray[np.uint8]:
    return np.where(np.isin(codes, classes), codes, 0).astype(np.uint8) if classes else codes


def load_scene(
    catalog: Catalog,
    source_name: str,
    labels_name: str | None,
    bands: Sequence[str] | None,
    classes: Sequence[int] | None,
    validation: ValidationConfig,
    seed: int,
) -> list[Scene]:
    """A raster source as one scene, split into training and hold-out blocks."""
    source = RasterSource.open(catalog.source(source_name))
    source = source.select(bands or list(source.band_names))
    labels = open_labels(source, labels_name)
    image = source.read(source.grid.window)
    valid = valid_mask(image)
    codes = _keep(np.where(valid, labels.read(source.grid.window), 0).astype(np.uint8), classes)
    split = spatial_split(codes, validation, seed)
    mean, std, correlation = _stats([image])
    provenance = DataProvenance(
        source=source.name,
        description=source.ref.description,
        licence=source.ref.licence,
        labels=labels.ref.name,
        labels_licence=labels.ref.licence,
    )
    table = {int(c): (class_info(int(c)).name, class_info(int(c)).color) for c in range(1, 256)}
    return [
        Scene(
            source.name,
            "",
            source.band_names,
            image,
            codes,
            split,
            mean,
            std,
            correlation,
            source.ref.units,
            source.grid.pixel_size[0],
            source.grid.crs_units,
            provenance,
            table,
        )
    ]


def held_out_images(count: int, validation: ValidationConfig, seed: int) -> set[int]:
    """Indexes of the whole images held out for validation (a seeded share, or one fold)."""
    if count < max(2, validation.folds or 2):
        raise TrainingError(
            f"an image set needs at least {max(2, validation.folds or 2)} images (one to hold "
            f"out{' per fold' if validation.folds else ''}), has {count}"
        )
    return set(validation.held_out(count, seed))


def load_image_set(
    catalog: Catalog,
    name: str,
    classes: Sequence[int] | None,
    validation: ValidationConfig,
    seed: int,
) -> list[Scene]:
    """An image set as one scene per image; a seeded share of whole images is held out."""
    ref = catalog.image_set(name)
    images = [read_image(path, len(ref.bands)) for _, path in ref.images]
    codes = [
        _keep(read_labels(ref, item, image.shape[1:]), classes)
        for item, image in zip(ref.ids, images, strict=True)
    ]
    validation_items = held_out_images(len(images), validation, seed)
    mean, std, correlation = _stats(images)
    geo = ref.georeference
    provenance = DataProvenance(
        source=name,
        description=ref.description,
        licence=ref.licence,
        labels="annotations",
        labels_licence=ref.licence,
    )
    table = {code: (label, colour) for code, label, colour in ref.classes}
    scenes = []
    for k, ((item, _), image, code) in enumerate(zip(ref.images, images, codes, strict=True)):
        labelled = code > 0
        empty = np.zeros(code.shape, dtype=bool)
        split = Split(
            empty if k in validation_items else labelled,
            labelled if k in validation_items else empty,
            (),
        )
        scenes.append(
            Scene(
                name,
                item,
                ref.bands,
                image,
                code,
                split,
                mean,
                std,
                correlation,
                ref.units,
                geo.pixel_size if geo else 1.0,
                "metre" if geo else PIXEL_UNIT,
                provenance,
                table,
            )
        )
    return scenes
