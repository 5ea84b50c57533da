"""Shared fixtures: the real data folder, small synthetic rasters, tiny model bundles."""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from numpy.typing import NDArray

from geoseg.config import DATA_ENV, default_data_dir


def _datumaro_keeping_pandas() -> None:
    """Import datumaro (CVAT's dataset framework, used to read geoseg's exports) without harm.

    datumaro 1.13's ``lazy_import("pandas")`` puts a second, lazily loaded pandas into
    ``sys.modules`` even when pandas is imported already; its C extensions are then not set up
    and any later ``DataFrame.to_json`` fails ("module 'pandas' has no attribute
    '_pandas_datetime_CAPI'"). Import it once, put the real pandas back, and make its lazy
    import return modules that are already imported.
    """
    import sys

    import pandas

    try:
        import datumaro.util.import_util as import_util
    except ImportError:
        return
    sys.modules["pandas"] = pandas
    lazy = import_util.lazy_import
    import_util.lazy_import = lambda name: sys.modules.get(name) or lazy(name)


_datumaro_keeping_pandas()

UTM_TRANSFORM = Affine(10, 0, 500000, 0, -10, 5800000)
REPO = Path(__file__).resolve().parents[1]
DATA = default_data_dir(REPO)
NC = DATA / "nc-landsat7-landcover"
NC_BANDS = ["blue", "green", "red", "nir", "swir1"]


def needs_data(path: Path = NC) -> pytest.MarkDecorator:
    """Skip, saying why, when the shared real data is not beside the checkout."""
    return pytest.mark.skipif(
        not path.exists(),
        reason=f"real data {path} not found: set {DATA_ENV} to the shared data folder "
        "(default ../shared/data beside the repository); CI always has it",
    )


@pytest.fixture(scope="session", autouse=True)
def checksum_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Input checksums are remembered in a temporary folder, never in the user's cache."""
    folder = tmp_path_factory.mktemp("geoseg-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GEOSEG_CACHE_DIR", str(folder))
        yield folder


@pytest.fixture
def write_raster(tmp_path: Path) -> Callable[..., Path]:
    """Write a GeoTIFF from an array; keyword arguments override the profile."""

    def write(
        name: str,
        data: NDArray[Any],
        crs: str | None = "EPSG:32633",
        transform: Affine | None = UTM_TRANSFORM,
        **profile: Any,
    ) -> Path:
        data = data if data.ndim == 3 else data[None]
        path = tmp_path / name
        meta = {
            "driver": "GTiff",
            "height": data.shape[1],
            "width": data.shape[2],
            "count": data.shape[0],
            "dtype": str(data.dtype),
            "crs": crs,
        }
        if transform is not None:
            meta["transform"] = transform
        meta.update(profile)
        with rasterio.open(path, "w", **meta) as dst:
            dst.write(data)
        return path

    return write


def write_catalog(folder: Path, sources: str) -> Path:
    """A catalog file in ``folder`` with the given ``sources:`` YAML body (indented 2)."""
    path = folder / "catalog.yaml"
    path.write_text("version: 1\nsources:\n" + sources, encoding="utf-8")
    return path


class FakeModel:
    """A numpy TileModel: per-pixel softmax of a fixed linear map, plus a position term that makes
    overlapping tiles disagree (so blending matters). Counts calls and tiles."""

    def __init__(self, bands: int, classes: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.weights = rng.normal(size=(classes, bands)).astype(np.float32)
        self.calls = 0
        self.batch_sizes: list[int] = []

    def predict_tiles(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        self.calls += 1
        self.batch_sizes.append(len(batch))
        logits = np.einsum("kb,nbyx->nkyx", self.weights, batch)
        size = batch.shape[-1]
        ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32)
        logits[:, 0] += ramp[None, None, :] * 0.8  # depends on the position inside the tile
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised small bundle for the NC bands (5 bands, 6 classes, 28.5 m)."""
    import torch

    from geoseg.model.bundle import BandStats, BundleMeta, ClassInfo, NetworkSpec
    from geoseg.model.network import build_network
    from geoseg.model.store import save_bundle

    torch.manual_seed(0)
    network = NetworkSpec(
        architecture="Unet", encoder="resnet18", encoder_depth=3, decoder_channels=[32, 16, 8]
    )
    meta = BundleMeta(
        name="tiny",
        network=network,
        bands=[BandStats(name=n, mean=60.0, std=25.0) for n in NC_BANDS],
        units="DN",
        pixel_size=28.5,
        classes=[ClassInfo(code=c, name=f"class{c}", color="#336699") for c in (1, 2, 4, 5, 6, 7)],
        tile_size=64,
        overlap=16,
    )
    path = tmp_path_factory.mktemp("bundles") / "tiny.geoseg"
    save_bundle(meta, build_network(network, 5, 6).state_dict(), path, "# tiny test model\n")
    return path


@pytest.fixture(scope="session")
def tiny_model(tiny_bundle: Path) -> Callable[[], Any]:
    """A factory returning the process-wide predictor of ``tiny_bundle`` on CPU."""
    from geoseg.model.predictor import predictor

    return functools.partial(predictor, tiny_bundle, "cpu")


def gdal_client_check(*paths: Path) -> None:
    """Every vector path opens in GDAL's ``ogrinfo`` and every .tif passes rio-cogeo's validator.

    ``.ci/run`` installs Debian's gdal-bin; without ``ogrinfo`` on PATH only the COG check runs.
    """
    from geoseg.export.raster import validate_cog

    for path in paths:
        if path.suffix == ".tif":
            assert validate_cog(path) == [], path
        elif shutil.which("ogrinfo"):
            out = subprocess.run(
                ["ogrinfo", "-ro", "-so", "-al", str(path)], capture_output=True, text=True
            )
            assert out.returncode == 0 and "Feature Count:" in out.stdout, (path, out.stderr)
