"""Small frozen value types shared by every stage: pixel windows, raster grids, file locations.

Windows are integer pixel windows on a grid, never fractional. Grids pair a shape with an affine
transform and a CRS, or explicitly no CRS: a grid in image pixel coordinates (field photos).
Both validate on construction, in the manner of ``rasterio.windows.Window`` and odc-geo's
``GeoBox``. A raster's location is a local :class:`~pathlib.Path` or a :class:`RemoteLocation`
(a URL, never turned into a path).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias, overload
from urllib.parse import urlsplit

import rasterio.windows
from affine import Affine
from rasterio.crs import CRS
from rasterio.transform import array_bounds

from geoseg.crs import same_place
from geoseg.errors import GeoreferenceError

if TYPE_CHECKING:
    from typing_extensions import TypeIs

#: URL schemes of remote rasters (``http`` too, for servers on a private network).
REMOTE_SCHEMES = ("https", "http", "s3")


@dataclass(frozen=True, slots=True)
class RemoteLocation:
    """A remote raster: an ``https://`` (or ``http://``) URL or an ``s3://bucket/key`` object.

    Kept as the URL it is written as (a :class:`~pathlib.Path` would turn ``//`` into ``/``);
    ``geoseg.io.remote`` reads it through GDAL's ``/vsicurl/`` and ``/vsis3/``.
    """

    url: str

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme.lower() not in REMOTE_SCHEMES or not parts.netloc:
            raise ValueError(f"'{self.url}' is not an https://, http:// or s3:// URL")
        if parts.scheme.lower() == "s3" and not parts.path.strip("/"):
            raise ValueError(f"'{self.url}' names a bucket but no object: use s3://BUCKET/KEY")

    @property
    def scheme(self) -> str:
        """``https``, ``http`` or ``s3``."""
        return urlsplit(self.url).scheme.lower()

    @property
    def name(self) -> str:
        """The last part of the URL's path (the file name)."""
        return urlsplit(self.url).path.rstrip("/").rsplit("/", 1)[-1]

    def __str__(self) -> str:
        return self.url


#: Where a raster is read from: a local file, or a remote object.
Location: TypeAlias = Path | RemoteLocation


@overload
def is_remote(location: Path | RemoteLocation) -> TypeIs[RemoteLocation]: ...
@overload
def is_remote(location: str | os.PathLike[str]) -> bool: ...
def is_remote(location: str | os.PathLike[str] | RemoteLocation) -> bool:
    """Whether ``location`` is remote: a :class:`RemoteLocation`, or a URL string.

    A :class:`~pathlib.Path` is always local, so checks of local files can skip the rest
    (``[p for p in step.reads() if not is_remote(p)]`` is a list of paths).
    """
    if isinstance(location, RemoteLocation):
        return True
    if not isinstance(location, str):
        return False
    scheme, sep, _ = location.partition("://")
    return bool(sep) and scheme.lower() in REMOTE_SCHEMES


@dataclass(frozen=True, slots=True)
class Window:
    """An integer pixel window: ``row``/``col`` offsets and ``height``/``width`` sizes.

    Offsets may be negative (a window reaching past the top-left edge of an image); sizes must be
    positive.
    """

    row: int
    col: int
    height: int
    width: int

    def __post_init__(self) -> None:
        for name in ("row", "col", "height", "width"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"Window.{name} must be an int, got {value!r}")
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"Window sizes must be positive, got {self.height}x{self.width}")

    @property
    def row_end(self) -> int:
        """One past the last row."""
        return self.row + self.height

    @property
    def col_end(self) -> int:
        """One past the last column."""
        return self.col + self.width

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)``."""
        return (self.height, self.width)

    @property
    def slices(self) -> tuple[slice, slice]:
        """Row and column slices, for indexing a full-size array."""
        return (slice(self.row, self.row_end), slice(self.col, self.col_end))

    def intersection(self, other: Window) -> Window | None:
        """The overlap of two windows, or ``None`` when they do not overlap."""
        row, col = max(self.row, other.row), max(self.col, other.col)
        row_end, col_end = min(self.row_end, other.row_end), min(self.col_end, other.col_end)
        if row_end <= row or col_end <= col:
            return None
        return Window(row, col, row_end - row, col_end - col)

    def relative_to(self, outer: Window) -> Window:
        """The window in the coordinates of ``outer`` (whose top-left becomes 0, 0)."""
        return Window(self.row - outer.row, self.col - outer.col, self.height, self.width)

    def to_rasterio(self) -> rasterio.windows.Window:
        """The equivalent ``rasterio.windows.Window``."""
        return rasterio.windows.Window(self.col, self.row, self.width, self.height)

    def __str__(self) -> str:
        return f"rows {self.row}:{self.row_end}, cols {self.col}:{self.col_end}"


#: The length unit of a grid without a CRS.
PIXEL_UNIT = "pixel"

#: How outputs on a grid without a CRS describe their coordinates.
PIXEL_NOTE = "image pixel coordinates (x = column, y = row, origin top-left); NOT georeferenced"


@dataclass(frozen=True, slots=True)
class Grid:
    """A raster grid: shape, affine transform (pixel corner convention) and CRS.

    ``crs=None`` is a grid in image pixel coordinates, never mistaken for a georeferenced one:
    its units are pixels (``crs_units == "pixel"``), and outputs on it carry no CRS and say so.
    Build one with :meth:`Grid.pixels` (identity transform: x = column, y = row).
    """

    height: int
    width: int
    transform: Affine
    crs: CRS | None

    def __post_init__(self) -> None:
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"Grid sizes must be positive, got {self.height}x{self.width}")
        if self.crs is not None and not isinstance(self.crs, CRS):
            object.__setattr__(self, "crs", CRS.from_user_input(self.crs))
        if not isinstance(self.transform, Affine):
            raise TypeError(f"Grid.transform must be an affine.Affine, got {self.transform!r}")

    @classmethod
    def pixels(cls, height: int, width: int) -> Grid:
        """A grid in image pixel coordinates: identity transform, no CRS."""
        return cls(height, width, Affine.identity(), None)

    @property
    def is_georeferenced(self) -> bool:
        """False for a grid in pixel coordinates (no CRS)."""
        return self.crs is not None

    @property
    def is_geographic(self) -> bool:
        """True when the CRS is geographic (degrees)."""
        return self.crs is not None and bool(self.crs.is_geographic)

    def require_crs(self, what: str) -> CRS:
        """The CRS, or a :class:`GeoreferenceError` saying ``what`` needs one."""
        if self.crs is None:
            raise GeoreferenceError(
                f"{what} needs a georeferenced grid; this one is in {PIXEL_NOTE}. Assert a CRS, "
                "pixel size and origin for the images in the catalog"
            )
        return self.crs

    @property
    def crs_wkt(self) -> str | None:
        """The CRS as WKT, ``None`` in pixel coordinates."""
        return self.crs.to_wkt() if self.crs is not None else None

    @property
    def crs_name(self) -> str:
        """A short name of the CRS (``EPSG:32119``, the projection name, or ``none``)."""
        if self.crs is None:
            return "none (pixel coordinates)"
        return (
            self.crs.to_string() if self.crs.to_epsg() else self.crs.to_dict().get("proj", "custom")
        )

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)``."""
        return (self.height, self.width)

    @property
    def window(self) -> Window:
        """The window covering the whole grid."""
        return Window(0, 0, self.height, self.width)

    @property
    def pixel_size(self) -> tuple[float, float]:
        """Pixel size along columns and rows, in CRS units (positive, rotation-aware)."""
        t = self.transform
        return (math.hypot(t.a, t.d), math.hypot(t.b, t.e))

    @property
    def pixel_area(self) -> float:
        """Area of one pixel in CRS units squared."""
        return abs(self.transform.determinant)

    @property
    def is_rotated(self) -> bool:
        """True when the transform has rotation or shear terms."""
        return self.transform.b != 0 or self.transform.d != 0

    def window_transform(self, window: Window) -> Affine:
        """The transform of a window's top-left pixel."""
        return self.transform @ Affine.translation(window.col, window.row)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """Left, bottom, right, top, in CRS units (pixel edges)."""
        west, south, east, north = array_bounds(self.height, self.width, self.transform)
        return (float(west), float(south), float(east), float(north))

    def same_as(self, other: Grid, tolerance: float = 1e-9) -> bool:
        """Same shape, same transform (to ``tolerance`` of a pixel) and an equivalent CRS."""
        if self.shape != other.shape:
            return False
        size = max(self.pixel_size)
        if not self.transform.almost_equals(other.transform, precision=tolerance * size):
            return False
        return self.same_crs(other.crs)

    def same_crs(self, crs: CRS | None) -> bool:
        """Whether ``crs`` is this grid's CRS, for its pixels.

        rasterio compares with GDAL's OSRIsSame: NC's unnamed LCC with a null TOWGS84 and
        EPSG:3358 are the same CRS written differently. Failing that, two codes for one place
        are the same when no pixel of the grid moves by a tenth of its size: the NC imagery's
        CRS, read as EPSG:32119 (NAD83), and its labels' EPSG:3358 (NAD83(HARN)) are 0.8 m
        apart there, datum realisations that GDAL itself does not tell apart (geoseg.crs).
        """
        if self.crs is None or crs is None:
            return self.crs is None and crs is None
        if self.crs == crs:
            return True
        return same_place(self.crs, crs, self.bounds, max(self.pixel_size) / 10)

    def describe(self) -> str:
        """One line: size, pixel size and CRS name."""
        px, py = self.pixel_size
        return (
            f"{self.width}x{self.height} px at {px:g}x{py:g} {self.crs_units}, CRS {self.crs_name}"
        )

    @property
    def crs_units(self) -> str:
        """The CRS's linear unit name, 'degree' for geographic CRSs, 'pixel' without a CRS."""
        if self.crs is None:
            return PIXEL_UNIT
        if self.crs.is_geographic:
            return "degree"
        return str(self.crs.linear_units)

    @property
    def metres_per_unit(self) -> float | None:
        """Metres in one CRS linear unit; ``None`` for geographic CRSs (measure geodesically).

        On a grid in pixel coordinates lengths are in pixels: 1.0, so "metre" measures of such
        a grid are pixel measures (px, px²), which its outputs say.
        """
        if self.crs is None:
            return 1.0
        if self.crs.is_geographic:
            return None
        return float(self.crs.linear_units_factor[1])
