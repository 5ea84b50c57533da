"""Model bundles: a folder ``NAME.geoseg/`` with ``bundle.json`` and ``weights.pt``.

The metadata states everything needed to use the weights correctly: architecture, input bands
(names, order, units, normalisation), pixel size, classes (codes, names, colours), the tile size
and overlap it expects, where its training data came from and under which licences, and the
metrics it reached. :meth:`BundleMeta.check_source` refuses sources that do not match, before any
compute. This module does not import torch.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, ValidationError, field_validator, model_validator

from geoseg.config import ClosedModel, canonical_sha256, format_validation_error
from geoseg.errors import BundleError
from geoseg.model.indices import IndexName, missing_bands
from geoseg.tiling.grid import TileGrid
from geoseg.types import Grid

log = logging.getLogger(__name__)

#: Bundles already reported as carrying no metadata checksum (said once per process).
_UNSEALED: set[Path] = set()

BUNDLE_SUFFIX = ".geoseg"
META_FILE = "bundle.json"
WEIGHTS_FILE = "weights.pt"
CARD_FILE = "MODEL_CARD.md"

#: Relative pixel-size difference tolerated between a bundle and a source.
PIXEL_SIZE_TOLERANCE = 0.01

#: How far a source's band mean may lie from the training mean, in training standard
#: deviations, and by what factor its spread may differ, before the input is called off-profile.
#: Loose on purpose: other scenes of the same sensor differ; wrong scales (x10000, 0-1 instead of
#: DN) and many band mix-ups are off by far more.
MEAN_TOLERANCE_STD = 6.0
SPREAD_TOLERANCE_FACTOR = 8.0
#: How much better (mean absolute difference of band correlations) exchanging two bands must fit
#: the training correlations before the input is said to have them swapped. Measured on quarters
#: of the NC scene against the shipped model's profile: as given they differ by 0.006-0.043;
#: exchanging a visible band with NIR or SWIR (or NIR with SWIR) fits 0.11-0.23 better;
#: exchanging two visible bands only 0.01-0.03 (not detectable this way).
SWAP_MARGIN = 0.1
#: Fewer valid sampled pixels than this are too few to judge band correlations.
MIN_SAMPLE_PIXELS = 100


class ClassInfo(ClosedModel):
    """One output class: its common code, name and display colour."""

    code: int = Field(ge=1, le=255)
    name: str
    color: str = Field(pattern=r"^#[0-9a-fA-F]{6}$")


class BandStats(ClosedModel):
    """One input band: its name and the normalisation ``(x - mean) / std`` it gets."""

    name: str
    mean: float
    std: float = Field(gt=0)


class NetworkSpec(ClosedModel):
    """A segmentation-models-pytorch network: architecture, encoder, depth and decoder widths.

    The defaults (a U-Net on a 3-stage MobileNetV2, 2.3 M parameters) train well from scratch on
    small scenes; ``decoder_channels`` defaults to ``16 * 2**i`` per stage (smp's default at
    depth 5).
    """

    architecture: str = "Unet"
    encoder: str = "mobilenet_v2"
    encoder_depth: int = Field(default=3, ge=1, le=5)
    decoder_channels: list[int] | None = None

    @model_validator(mode="after")
    def _one_width_per_stage(self) -> NetworkSpec:
        if self.decoder_channels is not None and len(self.decoder_channels) != self.encoder_depth:
            raise ValueError(
                f"decoder_channels needs one width per encoder stage ({self.encoder_depth}), got "
                f"{self.decoder_channels}"
            )
        return self

    @property
    def divisor(self) -> int:
        """Tile sizes must be multiples of this (the encoder's total downsampling)."""
        return int(2**self.encoder_depth)

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``segmentation_models_pytorch.create_model``."""
        widths = self.decoder_channels or [16 * 2**i for i in reversed(range(self.encoder_depth))]
        extra: dict[str, Any] = {"encoder_depth": self.encoder_depth}
        if self.architecture.lower() in {"unet", "unetplusplus"}:
            extra["decoder_channels"] = tuple(widths)
        return extra


class InputProfile(ClosedModel):
    """How one kind of input is fed to the network: its units, pixel size and band statistics.

    A model trained on several sources (sensors) has one profile per source; predicting picks
    the profile that fits the source and normalises with its statistics.
    """

    name: str
    units: str
    pixel_size: float = Field(gt=0)
    crs_units: str = "metre"
    bands: list[BandStats] = Field(min_length=1)
    # Pearson correlations between the bands (in ``bands`` order) over the training pixels:
    # they reveal bands fed in the wrong order (None in bundles from before they were recorded).
    correlation: list[list[float]] | None = None

    def swapped_bands(self, sample: NDArray[np.float32]) -> tuple[str, str] | None:
        """Two bands that look swapped in a ``(band, y, x)`` sample in this profile's band order.

        The sample's band correlations are compared with the training ones as they are and with
        each pair of bands exchanged; a pair is reported when exchanging it fits better by more
        than :data:`SWAP_MARGIN` (mean absolute difference of correlations). Bands of similar
        behaviour (two visible bands) fit either way and are not reported: only swaps that mix
        up spectrally different bands, which ruin a map, are caught.
        """
        if self.correlation is None or len(self.bands) < 3:
            return None
        valid = np.all(np.isfinite(sample), axis=0)
        if valid.sum() < MIN_SAMPLE_PIXELS:
            return None
        values = sample[:, valid].astype(np.float64)
        if np.any(values.std(axis=1) == 0):
            return None
        found = np.corrcoef(values)
        trained = np.asarray(self.correlation)
        order = np.arange(len(self.bands))
        as_given = float(np.abs(found - trained).mean())
        best, pair = as_given, None
        for i, j in itertools.combinations(order, 2):
            swap = order.copy()
            swap[[i, j]] = swap[[j, i]]
            fit = float(np.abs(found - trained[np.ix_(swap, swap)]).mean())
            if fit < best:
                best, pair = fit, (int(i), int(j))
        if pair is None or as_given - best <= SWAP_MARGIN:
            return None
        return self.bands[pair[0]].name, self.bands[pair[1]].name

    def off_profile(self, sample: dict[str, tuple[float, float]]) -> list[str]:
        """Bands whose sampled ``(mean, std)`` look nothing like the training pixels, and why.

        A band is off-profile when its mean lies more than :data:`MEAN_TOLERANCE_STD` training
        standard deviations from the training mean, or its spread differs by more than a factor
        :data:`SPREAD_TOLERANCE_FACTOR`. Bands missing from ``sample`` (all nodata) are skipped.
        """
        found = []
        for band in self.bands:
            if band.name not in sample:
                continue
            mean, std = sample[band.name]
            distance = abs(mean - band.mean) / band.std
            ratio = max(std, 1e-9) / band.std
            if distance > MEAN_TOLERANCE_STD or not (
                1 / SPREAD_TOLERANCE_FACTOR <= ratio <= SPREAD_TOLERANCE_FACTOR
            ):
                found.append(
                    f"band '{band.name}': mean {mean:.4g}, std {std:.4g} in the source; the model "
                    f"was trained on mean {band.mean:.4g}, std {band.std:.4g} ({distance:.1f} "
                    f"std away, spread x{ratio:.3g})"
                )
        return found

    def problems(self, units: str, grid: Grid) -> list[str]:
        """What keeps a source with ``units`` on ``grid`` from fitting this profile."""
        found = []
        if units.strip().lower() != self.units.strip().lower():
            found.append(
                f"units: trained on '{self.units}', the source is '{units}'; rescale the source "
                "(band scale/offset in the catalog) or use a matching model"
            )
        px, py = grid.pixel_size
        if grid.is_geographic or grid.crs_units != self.crs_units:
            found.append(
                f"pixel size: expects {self.pixel_size:g} {self.crs_units} pixels, the source's "
                f"CRS is in {grid.crs_units}; reproject it (gdalwarp -t_srs ... -tr "
                f"{self.pixel_size:g} {self.pixel_size:g})"
            )
        elif any(
            abs(v - self.pixel_size) > PIXEL_SIZE_TOLERANCE * self.pixel_size for v in (px, py)
        ):
            found.append(
                f"pixel size: trained at {self.pixel_size:g} {self.crs_units}, the source has "
                f"{px:g} x {py:g}; resample it (gdalwarp -tr {self.pixel_size:g} "
                f"{self.pixel_size:g}) or use a model trained at that resolution"
            )
        return found


class DataProvenance(ClosedModel):
    """A training source and the licences it comes under."""

    source: str
    description: str = ""
    licence: str = ""
    labels: str = ""
    labels_licence: str = ""


class BundleMeta(ClosedModel):
    """Everything ``bundle.json`` holds."""

    format: Literal["geoseg-bundle"] = "geoseg-bundle"
    version: Literal[1] = 1
    name: str
    network: NetworkSpec
    bands: list[BandStats] = Field(min_length=1)
    units: str
    pixel_size: float = Field(gt=0)
    crs_units: str = "metre"
    classes: list[ClassInfo] = Field(min_length=2)
    # The band correlations of a single-source model's training pixels (InputProfile's).
    correlation: list[list[float]] | None = None
    # Spectral indices the network takes after the bands, computed from them in the source's
    # units (geoseg.model.indices); training and prediction compute them the same way.
    indices: list[IndexName] = Field(default_factory=list)
    profiles: list[InputProfile] = Field(default_factory=list)
    tile_size: int = Field(ge=8)
    overlap: int = Field(ge=0)
    training_data: list[DataProvenance] = Field(default_factory=list)
    training: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    weights_dtype: Literal["float32", "float16"] = "float32"
    weights_sha256: str = ""
    geoseg_version: str = ""
    #: SHA-256 of everything above (:func:`meta_checksum`): an edited bundle.json is refused.
    meta_sha256: str = ""

    @model_validator(mode="after")
    def _tiling(self) -> BundleMeta:
        TileGrid(self.tile_size, self.overlap)
        return self

    @model_validator(mode="after")
    def _indices_from_bands(self) -> BundleMeta:
        missing = missing_bands(self.indices, self.band_names)
        if missing:
            raise ValueError(
                f"indices need bands the model does not take ({', '.join(missing)}); its bands "
                f"are {list(self.band_names)}"
            )
        if len(set(self.indices)) != len(self.indices):
            raise ValueError(f"indices must be unique, got {self.indices}")
        return self

    @property
    def input_channels(self) -> int:
        """Channels the network takes: the bands, then the indices."""
        return len(self.bands) + len(self.indices)

    @field_validator("classes")
    @classmethod
    def _unique_codes(cls, classes: list[ClassInfo]) -> list[ClassInfo]:
        codes = [c.code for c in classes]
        if len(set(codes)) != len(codes):
            raise ValueError(f"class codes must be unique, got {codes}")
        return classes

    @property
    def band_names(self) -> tuple[str, ...]:
        """Input band names, in the order the network expects them."""
        return tuple(b.name for b in self.bands)

    @property
    def class_codes(self) -> tuple[int, ...]:
        """Output channel ``k`` means class code ``class_codes[k]``."""
        return tuple(c.code for c in self.classes)

    def class_code(self, name: str) -> int | None:
        """The code of the class called ``name`` (``None`` when the model has none)."""
        return next((c.code for c in self.classes if c.name == name), None)

    def class_name(self, code: int) -> str:
        """Name of class ``code``."""
        for info in self.classes:
            if info.code == code:
                return info.name
        return f"class {code}"

    def tile_grid(self, tile_size: int | None = None, overlap: int | None = None) -> TileGrid:
        """The tile grid to predict with: the given size/overlap, else the model's; checked.

        Raises ``ValueError`` (the caller names the config key) for a size the network cannot
        take (not a multiple of its downsampling) or an impossible overlap.
        """
        size = tile_size or self.tile_size
        if size % self.network.divisor:
            raise ValueError(
                f"tile_size {size} must be a multiple of {self.network.divisor} for model "
                f"'{self.name}' ({self.network.encoder}, depth {self.network.encoder_depth})"
            )
        return TileGrid(size, self.overlap if overlap is None else overlap)

    @property
    def trained_image_set(self) -> str | None:
        """The image set the model was trained on (None for raster sources)."""
        image_set = self.training.get("config", {}).get("image_set")
        return str(image_set) if image_set is not None else None

    def held_out_items(self, name: str) -> tuple[str, ...] | None:
        """Ids of the whole images of training set ``name`` held out from training, as recorded.

        The bundle is the one owner of this fact: recomputing it from a seed and a fraction
        would silently change when the catalog's id list changes. ``None`` when not recorded.
        """
        items = self.training.get("holdout_items", {}).get(name)
        return tuple(str(i) for i in items) if items is not None else None

    def input_profiles(self) -> list[InputProfile]:
        """The input profiles: ``profiles``, or one made of the top-level fields."""
        if self.profiles:
            return list(self.profiles)
        return [
            InputProfile(
                name=self.training_data[0].source if self.training_data else self.name,
                units=self.units,
                pixel_size=self.pixel_size,
                crs_units=self.crs_units,
                bands=self.bands,
                correlation=self.correlation,
            )
        ]

    def profile_for(
        self, source_name: str, band_names: tuple[str, ...], units: str, grid: Grid
    ) -> InputProfile:
        """The input profile that fits a source (bands, units, pixel size), or a refusal.

        A model trained on several sources normalises each with that source's statistics; a
        source that fits none of them (e.g. Sentinel-2 reflectance fed to a Landsat DN model) is
        refused with what differs from each profile.
        """
        missing = [b for b in self.band_names if b not in band_names]
        if missing:
            raise BundleError(
                f"model bundle '{self.name}' does not fit source '{source_name}':\n  - bands: the "
                f"model needs {list(self.band_names)} ({len(self.band_names)} bands) but the "
                f"source has {list(band_names)} ({len(band_names)}); missing {missing}"
            )
        problems = []
        for profile in self.input_profiles():
            found = profile.problems(units, grid)
            if not found:
                return profile
            problems += [f"profile '{profile.name}': {p}" for p in found]
        raise BundleError(
            f"model bundle '{self.name}' does not fit source '{source_name}':\n  - "
            + "\n  - ".join(problems)
        )

    def check_source(
        self, source_name: str, band_names: tuple[str, ...], units: str, grid: Grid
    ) -> None:
        """Refuse a source whose bands, units or pixel size fit no input profile."""
        self.profile_for(source_name, band_names, units, grid)


def bundle_paths(path: Path) -> tuple[Path, Path]:
    """``(bundle.json, weights.pt)`` of the bundle folder ``path``."""
    return path / META_FILE, path / WEIGHTS_FILE


def load_meta(path: str | Path) -> BundleMeta:
    """Read and validate a bundle's metadata (weights are not read)."""
    path = Path(path)
    meta_path, weights_path = bundle_paths(path)
    if not path.is_dir() or not meta_path.is_file():
        raise BundleError(
            f"{path} is not a geoseg model bundle (a folder with {META_FILE} and {WEIGHTS_FILE}); "
            "train one with 'geoseg train' or point to models/*.geoseg"
        )
    if not weights_path.is_file():
        raise BundleError(f"model bundle {path} has no {WEIGHTS_FILE}")
    try:
        data = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{meta_path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BundleError(f"{meta_path} must hold a JSON object, got {type(data).__name__}")
    recorded = data.get("meta_sha256")
    if not recorded:
        if meta_path not in _UNSEALED:  # said once per bundle and process
            _UNSEALED.add(meta_path)
            log.warning(
                "%s carries no checksum of its metadata, so an edit would go unnoticed; "
                "re-save the bundle with this geoseg (geoseg.model.store.reseal_bundle)",
                meta_path,
            )
    elif recorded != meta_checksum(data):
        raise BundleError(
            f"{meta_path} does not match its own checksum (meta_sha256): it was edited after "
            "the bundle was written. Bands, normalisation or classes that do not match the "
            "weights give wrong maps in silence; re-create the bundle (train it again), or "
            "restore the original bundle.json"
        )
    try:
        return BundleMeta.model_validate(data)
    except ValidationError as exc:
        raise BundleError(format_validation_error(exc, BundleMeta, meta_path, "bundle")) from exc


def meta_checksum(data: dict[str, Any]) -> str:
    """SHA-256 of a bundle's metadata as JSON data, without its own ``meta_sha256``."""
    return canonical_sha256({k: v for k, v in data.items() if k != "meta_sha256"})


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
