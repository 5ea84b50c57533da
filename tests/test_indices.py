"""Spectral indices as derived inputs (issue 13): values, chunk independence, the bundle's hold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from geoseg.catalog import Catalog
from geoseg.model.bundle import BandStats, BundleMeta, ClassInfo, NetworkSpec, load_meta
from geoseg.model.indices import INDICES, derive
from geoseg.stitch.predict import InferenceSpec
from geoseg.stitch.reference import predict_in_memory
from geoseg.tiling.grid import TileGrid
from tests.conftest import NC_BANDS, REPO, FakeModel, needs_data
from tests.test_stitch import chunked
from tests.test_train import small_nc_step

BANDS = ["blue", "green", "red", "nir", "swir1"]


def pixel(blue: float, green: float, red: float, nir: float, swir1: float) -> np.ndarray:
    return np.array([blue, green, red, nir, swir1], np.float32)[:, None, None]


def test_indices_equal_hand_computed_values() -> None:
    data = pixel(10, 20, 30, 50, 40)
    got = {name: float(derive(data, BANDS, [name])[0, 0, 0]) for name in INDICES}
    # chromatic r, g, b = 30/60, 20/60, 10/60
    expected = {
        "ndvi": (50 - 30) / (50 + 30),
        "ndwi": (20 - 50) / (20 + 50),
        "mndwi": (20 - 40) / (20 + 40),
        "ndbi": (40 - 50) / (40 + 50),
        "exg": 2 * 20 / 60 - 30 / 60 - 10 / 60,
        "exr": 1.4 * 30 / 60 - 20 / 60,
    }
    assert got == pytest.approx(expected, abs=1e-6)


def test_a_zero_denominator_gives_zero_and_nodata_stays_nodata() -> None:
    data = np.concatenate([pixel(0, 0, 0, 0, 0), pixel(np.nan, 5, 5, np.nan, 5)], axis=2)
    out = derive(data, BANDS, ["ndvi", "exg", "mndwi"])
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[:, 0, 0], [0, 0, 0])
    assert np.isnan(out[0, 0, 1]) and np.isnan(out[1, 0, 1]) and out[2, 0, 1] == 0


def test_index_channels_follow_the_bands_and_do_not_depend_on_chunking() -> None:
    rng = np.random.default_rng(3)
    data = rng.uniform(1, 100, size=(5, 70, 90)).astype(np.float32)
    data[:, :4, :6] = np.nan
    spec = InferenceSpec(
        TileGrid(32, 8), 3, (50.0,) * 5, (20.0,) * 5, (1, 2, 5, 7), "none", tuple(BANDS),
        ("ndvi", "mndwi"),
    )  # fmt: skip
    normalised = spec.normalise(data)
    assert normalised.shape == (7, 70, 90) and spec.channels == 7
    np.testing.assert_array_equal(
        normalised[5, 10:, 10:], derive(data, BANDS, ["ndvi"])[0, 10:, 10:]
    )
    assert (normalised[:, :4, :6] == 0).all(), "nodata is 0 in every channel"
    model = FakeModel(7, 4)
    reference = predict_in_memory(data, model, spec)
    for chunk in [(70, 90), (16, 40), (33, 17)]:
        classes, confidence = chunked(data, model, spec, chunk)
        np.testing.assert_array_equal(classes, reference.classes)
        np.testing.assert_array_equal(confidence, reference.confidence)


def test_a_spec_or_bundle_refuses_indices_its_bands_cannot_give() -> None:
    with pytest.raises(ValueError, match=r"ndvi: nir"):
        InferenceSpec(TileGrid(32, 8), 1, (0.0,) * 3, (1.0,) * 3, (1, 2), "none",
                      ("blue", "green", "red"), ("ndvi",))  # fmt: skip
    fields = {
        "name": "m",
        "network": NetworkSpec(),
        "bands": [BandStats(name=n, mean=0.0, std=1.0) for n in ("blue", "green", "red")],
        "units": "DN",
        "pixel_size": 10.0,
        "classes": [ClassInfo(code=c, name=str(c), color="#000000") for c in (1, 2)],
        "tile_size": 64,
        "overlap": 16,
    }
    with pytest.raises(ValueError, match=r"indices need bands the model does not take \(ndvi: nir"):
        BundleMeta(**fields, indices=["ndvi"])
    with pytest.raises(ValueError, match="indices must be unique"):
        BundleMeta(**fields, indices=["exg", "exg"])
    assert BundleMeta(**fields, indices=["exg", "exr"]).input_channels == 5


@needs_data()
def test_a_model_trained_with_indices_carries_them_and_prediction_computes_them(
    tmp_path: Path,
) -> None:
    import geoseg
    from geoseg.training.loop import train

    step = small_nc_step(epochs=1, chips_per_epoch=16, indices=["ndvi", "mndwi"])
    catalog = Catalog.load(REPO / "data_catalog.yaml")
    bundle = train(step, catalog, tmp_path / "ix.geoseg", show_progress=False).bundle
    meta = load_meta(bundle)
    assert meta.indices == ["ndvi", "mndwi"] and meta.input_channels == len(NC_BANDS) + 2
    card = (bundle / "MODEL_CARD.md").read_text()
    assert "ndvi = (nir - red) / (nir + red)" in card
    model = geoseg.load_model(bundle)
    with __import__("rasterio").open(REPO / "samples" / "nc_landsat7_2000.tif") as src:
        image = src.read([1, 2, 3, 4, 5]).astype(np.float32)
    image[image == -99999] = np.nan
    result = model.predict_array(image)  # a network of 7 input channels gets 7
    assert result.classes.shape == image.shape[1:] and (result.classes > 0).any()
    # the step-level path (chunked, through the catalog) gives the same map
    out = tmp_path / "out"
    geoseg.predict(REPO / "samples" / "nc_landsat7_2000.tif", bundle, out,
                   bands=[*NC_BANDS, "swir2"], vector={"enabled": False})  # fmt: skip
    with __import__("rasterio").open(out / "classes.tif") as ds:
        np.testing.assert_array_equal(ds.read(1), result.classes)
