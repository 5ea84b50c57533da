"""What a run folder offers a web map: its COGs, polygons, imagery, legend and extent."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rio_tiler.io import Reader

from geoseg.errors import ConfigError
from geoseg.model.bundle import load_meta
from geoseg.workflow.manifest import MANIFEST_NAME, BandDefinition, Manifest


@dataclass(frozen=True, slots=True)
class LegendEntry:
    """A class of the map: its code, name and colour (``#rrggbb``)."""

    code: int
    name: str
    color: str


@dataclass(frozen=True)
class RunLayers:
    """The layers of one predict run folder (``classes.tif`` at least)."""

    folder: Path
    classes: Path
    confidence: Path | None
    errors: Path | None
    polygons: Path | None
    imagery: tuple[BandDefinition, ...]  # red, green, blue; empty when the source has no RGB
    legend: tuple[LegendEntry, ...]
    bounds: tuple[float, float, float, float]  # west, south, east, north (EPSG:4326)

    @classmethod
    def discover(cls, folder: Path) -> RunLayers:
        """Find the layers of the run in ``folder``; a folder without a class map is refused."""
        classes = folder / "classes.tif"
        if not classes.is_file():
            raise ConfigError(
                f"{folder} is not the output folder of a predict run (it has no classes.tif); "
                "name the folder a predict step wrote (its 'output:')"
            )
        manifest = Manifest.read(folder / MANIFEST_NAME)
        with Reader(str(classes)) as src:
            bounds = tuple(float(v) for v in src.get_geographic_bounds("EPSG:4326"))
            colormap = src.colormap or {}
        errors = sorted(folder.glob("*/errors.tif"))
        config = manifest.config if manifest is not None else {}
        layer = config.get("vector", {}).get("layer", "landcover")
        polygons = folder / f"{layer}.gpkg"
        return cls(
            folder=folder,
            classes=classes,
            confidence=_existing(folder / "confidence.tif"),
            errors=errors[0] if errors else None,
            polygons=polygons if polygons.is_file() else None,
            imagery=_imagery(manifest),
            legend=_legend(manifest, colormap),
            bounds=(bounds[0], bounds[1], bounds[2], bounds[3]),
        )

    def describe(self) -> dict[str, Any]:
        """The page's view of the run (``/layers.json``)."""
        names = ["imagery"] if self.imagery else []
        names += ["classes"]
        names += ["confidence"] if self.confidence else []
        names += ["errors"] if self.errors else []
        return {
            "folder": str(self.folder),
            "bounds": self.bounds,
            "rasters": names,
            "polygons": self.polygons is not None,
            "legend": [asdict(entry) for entry in self.legend],
        }


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None


def _imagery(manifest: Manifest | None) -> tuple[BandDefinition, ...]:
    """The source's red, green and blue bands, as the run's fingerprint records them."""
    source = manifest.fingerprint.source if manifest and manifest.fingerprint else None
    bands = {b.name: b for b in source.bands} if source is not None else {}
    if not {"red", "green", "blue"} <= set(bands):
        return ()
    return (bands["red"], bands["green"], bands["blue"])


def _legend(
    manifest: Manifest | None, colormap: dict[int, tuple[int, int, int, int]]
) -> tuple[LegendEntry, ...]:
    """Class names from the run's model bundle, colours from the class map's colour table."""
    record = manifest.provenance.model if manifest is not None else None
    model = record.path if record is not None else None
    names: dict[int, str] = {}
    if model and Path(model).is_dir():
        names = {c.code: c.name for c in load_meta(Path(model)).classes}
    codes = sorted(names) or [c for c, rgba in sorted(colormap.items()) if c and any(rgba[:3])]
    grey = (128, 128, 128, 255)
    return tuple(
        LegendEntry(code, names.get(code, f"class {code}"), _hex(colormap.get(code, grey)))
        for code in codes
    )


def _hex(rgba: tuple[int, int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgba[:3])
