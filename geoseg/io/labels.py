"""Label layers on a source's grid, as common class codes (0 = unlabelled) for any window.

A label raster (a local file or a remote object) is read window by window; vector polygons (a
local file) are rasterised window by window.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pyogrio
import rasterio.features
import shapely
from numpy.typing import NDArray
from pyproj import CRS as ProjCRS
from rasterio.crs import CRS

from geoseg.catalog import LabelRef
from geoseg.errors import CatalogError, GridMismatchError, RasterOpenError, root_cause
from geoseg.io.raster import checked_grid, open_raster, quiet_georeference_warnings
from geoseg.io.remote import retried
from geoseg.io.source import RasterSource, grid_mismatch, read_bands
from geoseg.types import Grid, Location, Window, is_remote


class Labels(Protocol):
    """Anything that gives class codes for a window of the source grid."""

    @property
    def ref(self) -> LabelRef:
        """The catalog's label layer."""
        ...

    def read(self, window: Window) -> NDArray[np.uint8]:
        """Common class codes for ``window`` (outside the image and unlabelled are 0)."""
        ...


@dataclass(frozen=True, slots=True)
class LabelLayer:
    """A label raster opened against a source grid; reads give common class codes (0 = none)."""

    ref: LabelRef
    grid: Grid
    lookup: tuple[int, ...] | None

    @classmethod
    def open(cls, ref: LabelRef, grid: Grid, source_name: str, source_path: Location) -> LabelLayer:
        """Open and check that the labels lie on ``grid`` (equivalent CRSs accepted)."""
        label_grid = retried(ref.path, functools.partial(_label_grid, ref))
        if not label_grid.same_as(grid):
            raise GridMismatchError(
                grid_mismatch(f"labels '{ref.name}'", ref.path, label_grid, source_path, grid)
                + f" (source '{source_name}')"
            )
        lookup = None
        if ref.mapping is not None:
            table = [0] * 256
            for src, dst in ref.mapping:
                if isinstance(src, int) and 0 <= src <= 255:
                    table[src] = dst
            lookup = tuple(table)
        return cls(ref, label_grid, lookup)

    def read(self, window: Window) -> NDArray[np.uint8]:
        """Class codes for ``window`` (outside the image and nodata are 0)."""
        out = np.zeros(window.shape, dtype=np.uint8)
        inside = window.intersection(self.grid.window)
        if inside is None:
            return out
        data, valid = read_bands(self.ref.path, [self.ref.band], inside, [self.ref.nodata])
        codes = np.where(valid[0] & (data[0] >= 0) & (data[0] <= 255), data[0], 0).astype(np.int64)
        if self.lookup is not None:
            codes = np.asarray(self.lookup, dtype=np.int64)[codes]
        out[inside.relative_to(window).slices] = codes.astype(np.uint8)
        return out


@dataclass(frozen=True, slots=True)
class VectorLabels:
    """Polygon labels with a class attribute, rasterised on the source grid window by window.

    Only features whose bounding box meets the window are read. Larger polygons are burned
    first so that smaller ones win where polygons overlap. A pixel is labelled when its centre
    is inside a polygon.
    """

    ref: LabelRef
    grid: Grid
    crs: CRS

    @classmethod
    def open(cls, ref: LabelRef, grid: Grid, source_name: str) -> VectorLabels:
        """Check the layer, its attribute and its CRS against the source grid."""
        if is_remote(ref.path):  # the catalog refuses these
            raise CatalogError(f"vector labels '{ref.name}' must be a local file, not {ref.path}")
        if not ref.path.exists():
            raise RasterOpenError(f"label layer {ref.path} does not exist; check the path")
        try:
            info = pyogrio.read_info(ref.path, layer=ref.layer)
        except Exception as exc:  # pyogrio raises several DataSource/DataLayer errors
            raise RasterOpenError(
                f"{ref.path} is not a vector layer GDAL can open ({root_cause(exc)})"
            ) from exc
        if ref.attribute not in list(info["fields"]):
            raise CatalogError(
                f"labels '{ref.name}' ({ref.path}) have no attribute '{ref.attribute}'; fields: "
                f"{list(info['fields'])}"
            )
        crs = CRS.from_user_input(info["crs"]) if info["crs"] else None
        if crs is None:
            raise CatalogError(f"label layer {ref.path} has no CRS; set one (ogr2ogr -a_srs)")
        if not grid.same_crs(crs) and not ref.reproject:
            raise GridMismatchError(
                f"labels '{ref.name}' ({ref.path}) are in {crs.to_string()}, source "
                f"'{source_name}' is in {grid.crs_name}; add 'reproject: true' to the "
                "label layer to reproject the polygons explicitly"
            )
        return cls(ref, grid, crs)

    def _code(self, value: object) -> int:
        """The common code of one attribute value (unlisted values are unlabelled, 0)."""
        mapping = {str(k): v for k, v in self.ref.mapping or ()}
        if not mapping:
            return int(value) if isinstance(value, int | np.integer) else 0
        return int(mapping.get(str(value), 0))

    def read(self, window: Window) -> NDArray[np.uint8]:
        """Class codes for ``window``, rasterised from the polygons that meet it."""
        out = np.zeros(window.shape, dtype=np.uint8)
        inside = window.intersection(self.grid.window)
        if inside is None:
            return out
        transform = self.grid.window_transform(window)
        corners = [transform @ (c, r) for c in (0, window.width) for r in (0, window.height)]
        xs, ys = [p[0] for p in corners], [p[1] for p in corners]
        bbox = shapely.box(min(xs), min(ys), max(xs), max(ys))
        if not self.grid.same_crs(self.crs):
            bbox = _reproject(bbox, self.grid.crs, self.crs)
        frame = pyogrio.read_dataframe(
            self.ref.path,
            layer=self.ref.layer,
            columns=[self.ref.attribute],
            bbox=tuple(bbox.bounds),
        )
        if frame.empty:
            return out
        if not self.grid.same_crs(self.crs):
            frame = frame.to_crs(self.grid.crs_wkt)
        codes = np.array([self._code(v) for v in frame[self.ref.attribute]], dtype=np.int64)
        keep = codes > 0
        geoms = frame.geometry.values[keep]
        codes = codes[keep]
        order = np.argsort(-shapely.area(geoms), kind="stable")
        shapes = [(g, int(c)) for g, c in zip(geoms[order], codes[order], strict=True)]
        if shapes:
            out[:] = rasterio.features.rasterize(
                shapes, out_shape=window.shape, transform=transform, fill=0, dtype="uint8"
            )
        return out


def _label_grid(ref: LabelRef) -> Grid:
    """The grid of a label raster, refusing a missing band."""
    with quiet_georeference_warnings(), open_raster(ref.path) as ds:
        if ref.band > ds.count:
            raise RasterOpenError(f"label file {ref.path} has no band {ref.band}")
        return checked_grid(ds, ref.path)


def _reproject(geometry: shapely.Geometry, source: CRS, target: CRS) -> shapely.Geometry:
    from pyproj import Transformer

    transformer = Transformer.from_crs(
        ProjCRS.from_wkt(source.to_wkt()), ProjCRS.from_wkt(target.to_wkt()), always_xy=True
    )
    return shapely.transform(geometry, lambda xy: np.column_stack(transformer.transform(*xy.T)))


def open_labels(source: RasterSource, name: str | None = None) -> Labels:
    """Open the source's label layer ``name`` (raster or vector) on the source grid."""
    ref = source.ref.label(name)
    if ref.attribute is not None:
        return VectorLabels.open(ref, source.grid, source.name)
    return LabelLayer.open(ref, source.grid, source.name, source.ref.bands[0].path)
