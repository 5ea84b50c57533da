"""The data catalog: named sources, their band files, nodata, scale/offset and label layers.

``data_catalog.yaml`` maps names to sources. A source is one multi-band file or several
single-band files stacked in a stated order, each band named. Paths are relative to the catalog
file; ``${GEOSEG_DATA}`` expands to the shared data folder (environment variable ``GEOSEG_DATA``,
default ``../shared/data`` beside the catalog's folder). A source's files and its raster label
layers may also be ``https://`` URLs or ``s3://bucket/key`` objects, kept as
:class:`~geoseg.types.RemoteLocation` (read in place by ``geoseg.io``). Loading a catalog never
opens data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from affine import Affine
from pydantic import Field, model_validator

from geoseg.config import ClosedModel, expand_path, expand_vars, load_yaml, parse_model, read_yaml
from geoseg.errors import CatalogError
from geoseg.types import PIXEL_NOTE, REMOTE_SCHEMES, Grid, Location, RemoteLocation, is_remote


class BandSpec(ClosedModel):
    """One band of a source, as written in the catalog."""

    name: str = Field(min_length=1)
    file: str | None = None
    # A STAC source's band in the item (asset key, common name or band name); default: ``name``.
    asset: str | None = None
    band: int | None = Field(default=None, ge=1)
    nodata: float | None = None
    scale: float = 1.0
    offset: float = 0.0


class LabelSpec(ClosedModel):
    """Labels for a source: a raster on its grid, or vector polygons with a class attribute.

    ``mapping`` turns the layer's codes (raster values, or attribute values such as OSM
    ``fclass`` names) into the common codes; values it does not list are unlabelled (0). Vector
    labels are rasterised on the source grid window by window; a vector layer in another CRS is
    refused unless ``reproject: true``.
    """

    file: str
    band: int = Field(default=1, ge=1)
    nodata: float | None = None
    layer: str | None = None
    attribute: str | None = None
    reproject: bool = False
    mapping: dict[int | str, int] | None = None
    description: str = ""
    licence: str = ""

    @model_validator(mode="after")
    def _codes_in_range(self) -> LabelSpec:
        for src, dst in (self.mapping or {}).items():
            if not 0 <= dst <= 255:
                raise ValueError(f"mapping {src}: {dst} is outside the class-code range 0..255")
        return self

    @property
    def is_vector(self) -> bool:
        """True for polygon labels (a class ``attribute`` is given)."""
        return self.attribute is not None


class SourceSpec(ClosedModel):
    """A named source: one multi-band file, single-band files stacked in order, or a STAC Item.

    A ``stac:`` source finds each band among the item's assets (:mod:`geoseg.catalog.stac`).
    """

    description: str = ""
    licence: str = ""
    file: str | None = None
    stac: str | None = None
    bands: list[BandSpec] = Field(min_length=1)
    units: str = "DN"
    nodata: float | None = None
    crs: str | None = None
    labels: dict[str, LabelSpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _every_band_has_a_file(self) -> SourceSpec:
        if self.stac is not None:
            named = [b.name for b in self.bands if b.file is not None]
            if self.file is not None or named:
                raise ValueError(
                    "a 'stac:' source finds its bands' files in the item's assets: remove "
                    f"'file' from {'the source' if self.file else 'bands ' + str(named)}"
                )
        stray = [b.name for b in self.bands if b.asset is not None and self.stac is None]
        if stray:
            raise ValueError(f"bands {stray} give 'asset', which only a 'stac:' source has")
        missing = [
            b.name for b in self.bands if b.file is None and self.file is None and not self.stac
        ]
        if missing:
            raise ValueError(
                f"bands {missing} name no 'file' and the source has no 'file': give either"
            )
        names = [b.name for b in self.bands]
        if len(set(names)) != len(names):
            raise ValueError(f"band names must be unique, got {names}")
        return self


class ClassSpec(ClosedModel):
    """A class of an image set: its name and display colour."""

    name: str
    color: str = Field(pattern=r"^#[0-9a-fA-F]{6}$")


class AssertedGeoreference(ClosedModel):
    """Georeferencing asserted for images that carry none: square pixels, CRS, top-left origin."""

    pixel_size: float = Field(gt=0)
    crs: str
    origin: tuple[float, float]


class VegetationMasks(ClosedModel):
    """Masks of all vegetation, beside annotations that label only some plants.

    Where a mask marks vegetation (``vegetation_value``) but the annotation has the
    ``background`` class (soil), the plant was not annotated: that pixel is unlabelled (0),
    neither soil nor plant, in training and in evaluation.
    """

    path: str
    vegetation_value: int = Field(default=0, ge=0, le=255)
    background: int = Field(ge=1, le=255)


class ImageSetSpec(ClosedModel):
    """A folder of images with colour-coded annotation masks (e.g. field photos).

    ``images`` and ``annotations`` are path patterns with ``{id}`` (Python format, so
    ``{id:03d}`` pads numbers); ``ids`` lists the ids or names a YAML file with an ``ids:`` list.
    ``polygons`` (optional) is a pattern of polygon annotations in pixel coordinates, YAML files
    with an ``annotation:`` list of ``{type: CLASS NAME, points: {x: [...], y: [...]}}`` (the
    CWFID form); images without such a file simply have none.
    ``colours`` maps ``"r,g,b"`` to class codes; ``classes`` names those codes. Images without
    georeferencing are processed in pixel coordinates (``georeference: pixels``, said so in every
    output) unless a pixel size, CRS and origin are asserted.
    """

    description: str = ""
    licence: str = ""
    images: str
    annotations: str
    polygons: str | None = None
    vegetation_masks: VegetationMasks | None = None
    ids: list[int | str] | str
    bands: list[str] = Field(default_factory=lambda: ["red", "green", "blue"])
    units: str = "8-bit RGB"
    colours: dict[str, int]
    classes: dict[int, ClassSpec]
    georeference: Literal["pixels"] | AssertedGeoreference = "pixels"

    @model_validator(mode="after")
    def _colours_name_known_classes(self) -> ImageSetSpec:
        unknown = sorted({c for c in self.colours.values() if c not in self.classes})
        if unknown:
            raise ValueError(f"colours map to codes {unknown} that 'classes' does not name")
        if self.vegetation_masks and self.vegetation_masks.background not in self.classes:
            raise ValueError(
                f"vegetation_masks.background {self.vegetation_masks.background} is not a code "
                "that 'classes' names"
            )
        for colour in self.colours:
            parts = colour.split(",")
            if len(parts) != 3 or not all(p.strip().isdigit() for p in parts):
                raise ValueError(f"colour '{colour}' must be written 'r,g,b' (0..255 each)")
        return self


class CatalogSpec(ClosedModel):
    """The whole ``data_catalog.yaml``."""

    version: Literal[1]
    sources: dict[str, SourceSpec]
    image_sets: dict[str, ImageSetSpec] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BandRef:
    """A resolved band: which file or remote object, band index, and how values become units."""

    name: str
    path: Location
    band: int
    nodata: float | None
    scale: float
    offset: float


@dataclass(frozen=True, slots=True)
class LabelRef:
    """A resolved label layer (a vector layer is always a local file)."""

    name: str
    path: Location
    band: int
    nodata: float | None
    mapping: tuple[tuple[int | str, int], ...] | None
    licence: str
    layer: str | None = None
    attribute: str | None = None
    reproject: bool = False


@dataclass(frozen=True, slots=True)
class SourceRef:
    """A resolved source: absolute paths or URLs, band order, overrides (opened by geoseg.io)."""

    name: str
    bands: tuple[BandRef, ...]
    units: str
    crs: str | None
    labels: tuple[LabelRef, ...]
    description: str
    licence: str

    @property
    def band_names(self) -> tuple[str, ...]:
        """Band names in stacking order."""
        return tuple(b.name for b in self.bands)

    @property
    def paths(self) -> tuple[Location, ...]:
        """Every distinct image file (local path or remote object), in band order."""
        return tuple(dict.fromkeys(b.path for b in self.bands))

    def label(self, name: str | None = None) -> LabelRef:
        """The label layer called ``name`` (the first one listed when ``name`` is None)."""
        if not self.labels:
            raise CatalogError(f"source '{self.name}' has no label layers; add 'labels:' to it")
        if name is None:
            return self.labels[0]
        for lab in self.labels:
            if lab.name == name:
                return lab
        names = [lab.name for lab in self.labels]
        raise CatalogError(f"source '{self.name}' has no label layer '{name}'; it has {names}")


@dataclass(frozen=True)
class Catalog:
    """A loaded catalog: the validated spec and the folder its paths are relative to."""

    path: Path
    spec: CatalogSpec

    @classmethod
    def load(cls, path: str | Path) -> Catalog:
        """Read and validate a catalog file (no data is opened)."""
        path = Path(path).resolve()
        spec = parse_model(CatalogSpec, read_yaml(path, "catalog"), path, "catalog")
        return cls(path=path, spec=spec)

    @property
    def names(self) -> list[str]:
        """Source names, in file order."""
        return list(self.spec.sources)

    def image_set(self, name: str) -> ImageSetRef:
        """Resolve the image set called ``name``."""
        spec = self.spec.image_sets.get(name)
        if spec is None:
            raise CatalogError(
                f"catalog {self.path} has no image set '{name}'; it has: "
                f"{', '.join(self.spec.image_sets) or 'none'}"
            )
        return resolve_image_set(name, spec, self.path.parent)

    def same_images(self, name: str, ref: ImageSetRef) -> bool:
        """Whether image set ``name`` has exactly ``ref``'s images (set names may differ)."""
        if name == ref.name:
            return True
        return name in self.spec.image_sets and self.image_set(name).images == ref.images

    def source(self, name: str) -> SourceRef:
        """Resolve the source called ``name``."""
        spec = self.spec.sources.get(name)
        if spec is None:
            raise CatalogError(
                f"catalog {self.path} has no source '{name}'; it has: {', '.join(self.names)}"
            )
        return resolve_source(name, spec, self.path.parent)


@dataclass(frozen=True, slots=True)
class ImageSetRef:
    """A resolved image set: every image and annotation path by id, and how to read them."""

    name: str
    images: tuple[tuple[str, Path], ...]
    annotations: tuple[tuple[str, Path], ...]
    polygons: tuple[tuple[str, Path], ...]
    vegetation: tuple[tuple[str, Path], ...]
    vegetation_value: int
    background: int | None
    bands: tuple[str, ...]
    units: str
    colours: tuple[tuple[tuple[int, int, int], int], ...]
    classes: tuple[tuple[int, str, str], ...]
    georeference: AssertedGeoreference | None
    description: str
    licence: str

    @property
    def ids(self) -> tuple[str, ...]:
        """Image ids, in catalog order."""
        return tuple(i for i, _ in self.images)

    @property
    def unit(self) -> Literal["m", "px"]:
        """Length unit of outputs: metres when georeferencing is asserted, else pixels."""
        return "m" if self.georeference else "px"

    @property
    def crs(self) -> str | None:
        """The asserted CRS; None in pixel coordinates."""
        return self.georeference.crs if self.georeference else None

    @property
    def transform(self) -> Affine:
        """Pixel -> output coordinates: the asserted grid, or the identity (x = column, y = row)."""
        geo = self.georeference
        if geo is None:
            return Affine.identity()
        return Affine(geo.pixel_size, 0, geo.origin[0], 0, -geo.pixel_size, geo.origin[1])

    def grid(self, height: int, width: int) -> Grid:
        """The grid of an image of this set: the asserted one, or pixel coordinates (no CRS)."""
        if self.georeference is None:
            return Grid.pixels(height, width)
        return Grid(height, width, self.transform, self.crs)

    @property
    def coordinates(self) -> str:
        """What every output says about its coordinates."""
        geo = self.georeference
        if geo is None:
            return PIXEL_NOTE
        return (
            f"asserted in the catalog: {geo.crs}, {geo.pixel_size:g} m pixels, top-left origin "
            f"{geo.origin[0]:g}, {geo.origin[1]:g}"
        )


def resolve_image_set(name: str, spec: ImageSetSpec, base: Path) -> ImageSetRef:
    """Expand the patterns into one image and one annotation path per id."""
    ids = spec.ids
    if isinstance(ids, str):
        listing = expand_path(ids, base, error=CatalogError)
        loaded = load_yaml(listing, f"image set '{name}': id list", CatalogError)
        if not isinstance(loaded, dict) or not isinstance(loaded.get("ids"), list):
            raise CatalogError(f"image set '{name}': {listing} must hold an 'ids:' list")
        ids = loaded["ids"]
    if not ids:
        raise CatalogError(f"image set '{name}' lists no images")

    def paths(pattern: str) -> tuple[tuple[str, Path], ...]:
        template = str(
            expand_path(pattern, base, error=CatalogError)
        )  # ${VAR}s first; then {id} per image
        return tuple((str(i), Path(template.format(id=i))) for i in ids)

    colours: tuple[tuple[tuple[int, int, int], int], ...] = tuple(
        ((int(r), int(g), int(b)), code)
        for (r, g, b), code in ((key.split(","), code) for key, code in spec.colours.items())
    )
    georeference = None if spec.georeference == "pixels" else spec.georeference
    return ImageSetRef(
        name,
        paths(spec.images),
        paths(spec.annotations),
        paths(spec.polygons) if spec.polygons else (),
        paths(spec.vegetation_masks.path) if spec.vegetation_masks else (),
        spec.vegetation_masks.vegetation_value if spec.vegetation_masks else 0,
        spec.vegetation_masks.background if spec.vegetation_masks else None,
        tuple(spec.bands),
        spec.units,
        colours,
        tuple((code, c.name, c.color) for code, c in sorted(spec.classes.items())),
        georeference if isinstance(georeference, AssertedGeoreference) else None,
        spec.description,
        spec.licence,
    )


def resolve_location(text: str, base: Path) -> Location:
    """A file of the catalog: a remote object for a URL (variables expanded), else a local path."""
    expanded = expand_vars(text, base, error=CatalogError)
    scheme, sep, _ = expanded.partition("://")
    if sep and scheme.isalnum() and not is_remote(expanded):
        raise CatalogError(
            f"catalog file '{text}': {scheme}:// is not a supported location; use a local path, "
            f"or one of {', '.join(f'{s}://' for s in REMOTE_SCHEMES)} (mount or copy other "
            "stores, or reach them through an https:// URL)"
        )
    if not is_remote(expanded):
        return expand_path(text, base, error=CatalogError)
    try:
        return RemoteLocation(expanded)
    except ValueError as exc:
        raise CatalogError(f"catalog file '{text}': {exc}") from exc


def resolve_source(name: str, spec: SourceSpec, base: Path) -> SourceRef:
    """Turn a source spec into absolute paths (or URLs) and explicit band indexes."""
    if spec.stac is not None:
        return _resolve_stac_source(name, spec, base)
    bands = []
    for position, band in enumerate(spec.bands):
        file = band.file if band.file is not None else spec.file
        if file is None:  # excluded by SourceSpec's validator
            raise CatalogError(f"source '{name}' band '{band.name}' has no file")
        index = band.band if band.band is not None else (1 if band.file else position + 1)
        nodata = band.nodata if band.nodata is not None else spec.nodata
        bands.append(
            BandRef(
                band.name,
                resolve_location(file, base),
                index,
                nodata,
                band.scale,
                band.offset,
            )
        )
    return SourceRef(
        name,
        tuple(bands),
        spec.units,
        spec.crs,
        _labels(name, spec, base),
        spec.description,
        spec.licence,
    )


def _resolve_stac_source(name: str, spec: SourceSpec, base: Path) -> SourceRef:
    """A ``stac:`` source: each band from the item's assets; the catalog's values win."""
    from geoseg.catalog.stac import StacItem

    item = StacItem.read(resolve_location(str(spec.stac), base))
    bands, units = [], set()
    for band in spec.bands:
        found = item.band(band.asset or band.name)
        given = band.model_fields_set
        nodata = band.nodata if band.nodata is not None else spec.nodata  # the catalog's first
        bands.append(
            BandRef(
                band.name,
                found.location,
                band.band if band.band is not None else found.band,
                nodata if nodata is not None else found.nodata,
                band.scale if "scale" in given or found.scale is None else found.scale,
                band.offset if "offset" in given or found.offset is None else found.offset,
            )
        )
        units.add(found.unit)
    stated = units.pop() if len(units) == 1 else None
    when = item.properties.get("datetime") or item.properties.get("start_datetime") or ""
    return SourceRef(
        name,
        tuple(bands),
        spec.units if "units" in spec.model_fields_set or not stated else str(stated),
        spec.crs,
        _labels(name, spec, base),
        spec.description or f"STAC item {item.id} ({when}) at {item.location}",
        spec.licence or str(item.properties.get("license", "")),
    )


def _labels(name: str, spec: SourceSpec, base: Path) -> tuple[LabelRef, ...]:
    """A source's label layers, resolved."""
    return tuple(
        LabelRef(
            label_name,
            _label_location(name, label_name, lab, base),
            lab.band,
            lab.nodata,
            tuple(lab.mapping.items()) if lab.mapping is not None else None,
            lab.licence,
            lab.layer,
            lab.attribute,
            lab.reproject,
        )
        for label_name, lab in spec.labels.items()
    )


def _label_location(source: str, name: str, spec: LabelSpec, base: Path) -> Location:
    """Where a label layer is; vector layers must be local (they are read with pyogrio)."""
    location = resolve_location(spec.file, base)
    if spec.is_vector and is_remote(location):
        raise CatalogError(
            f"source '{source}' labels '{name}': vector label layers must be local files, not "
            f"{location}; download it (for example with ogr2ogr) and name the local copy"
        )
    return location
