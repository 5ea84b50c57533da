"""One training scene: a catalog source with its labels, its spatial split and statistics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from geoseg.catalog import Catalog
from geoseg.io.labels import Labels, open_labels
from geoseg.io.source import RasterSource
from geoseg.model.bundle import BandStats, DataProvenance, InputProfile
from geoseg.stitch.predict import valid_mask
from geoseg.train.holdout import Split, spatial_split
from geoseg.workflow.schema import ValidationConfig


@dataclass(frozen=True)
class Scene:
    """A source read into memory for training, its labels as codes, and its hold-out split."""

    source: RasterSource
    labels: Labels
    image: NDArray[np.float32]
    codes: NDArray[np.uint8]
    split: Split
    mean: NDArray[np.float64]
    std: NDArray[np.float64]

    @property
    def name(self) -> str:
        """The catalog source name."""
        return self.source.name

    def profile(self) -> InputProfile:
        """The input profile the bundle records for this source (per-source normalisation)."""
        return InputProfile(
            name=self.name,
            units=self.source.ref.units,
            pixel_size=self.source.grid.pixel_size[0],
            crs_units=self.source.grid.crs_units,
            bands=[
                BandStats(name=n, mean=float(m), std=float(s))
                for n, m, s in zip(self.source.band_names, self.mean, self.std, strict=True)
            ],
        )

    def provenance(self) -> DataProvenance:
        """Where this scene's data and labels come from, and their licences."""
        return DataProvenance(
            source=self.name,
            description=self.source.ref.description,
            licence=self.source.ref.licence,
            labels=self.labels.ref.name,
            labels_licence=self.labels.ref.licence,
        )

    def target(self, lookup: NDArray[np.int64]) -> NDArray[np.int64]:
        """Training targets: class index on training pixels, -1 elsewhere."""
        return np.where(self.split.train, lookup[self.codes], -1)


def load_scene(
    catalog: Catalog,
    source_name: str,
    labels_name: str | None,
    bands: Sequence[str] | None,
    classes: Sequence[int] | None,
    validation: ValidationConfig,
    seed: int,
) -> Scene:
    """Read a source and its labels, split it spatially, and compute its band statistics.

    Only ``classes`` (when given) count as labelled; statistics use every valid pixel.
    """
    source = RasterSource.open(catalog.source(source_name))
    source = source.select(bands or list(source.band_names))
    labels = open_labels(source, labels_name)
    image = source.read(source.grid.window)
    valid = valid_mask(image)
    codes = np.where(valid, labels.read(source.grid.window), 0).astype(np.uint8)
    if classes:
        codes = np.where(np.isin(codes, classes), codes, 0).astype(np.uint8)
    split = spatial_split(
        codes, validation.block_size, validation.fraction, validation.buffer, seed
    )
    mean = np.array([float(np.mean(b[valid])) for b in image])
    std = np.array([max(float(np.std(b[valid])), 1e-6) for b in image])
    return Scene(source, labels, image, codes, split, mean, std)
