from __future__ import annotations

from pathlib import Path

import pytest
import torch

from geoseg.errors import BundleError
from geoseg.model.bundle import NetworkSpec
from geoseg.model.network import build_network


@pytest.mark.parametrize(
    "spec",
    [
        NetworkSpec(),  # the default: U-Net on MobileNetV2, depth 3
        NetworkSpec(architecture="Unet", encoder="resnet18", encoder_depth=4),
        NetworkSpec(architecture="UnetPlusPlus", encoder="resnet18", encoder_depth=3),
        NetworkSpec(architecture="FPN", encoder="resnet18", encoder_depth=5),
        NetworkSpec(architecture="Linknet", encoder="mobilenet_v2", encoder_depth=5),
        NetworkSpec(architecture="DeepLabV3Plus", encoder="resnet18", encoder_depth=5),
    ],
    ids=lambda s: f"{s.architecture}-{s.encoder}-d{s.encoder_depth}",
)
def test_any_smp_architecture_builds_from_scratch_and_keeps_the_tile_shape(
    spec: NetworkSpec,
) -> None:
    network = build_network(spec, in_channels=5, classes=7).eval()
    size = max(64, spec.divisor * 2)
    with torch.inference_mode():
        out = network(torch.zeros(2, 5, size, size))
    assert out.shape == (2, 7, size, size)


def test_unknown_architecture_or_encoder_is_a_bundle_error() -> None:
    with pytest.raises(BundleError, match="cannot build Nope with encoder resnet18"):
        build_network(NetworkSpec(architecture="Nope", encoder="resnet18"), 3, 2)
    with pytest.raises(BundleError, match="cannot build Unet with encoder not-an-encoder"):
        build_network(NetworkSpec(encoder="not-an-encoder"), 3, 2)


def test_an_edited_bundle_json_is_refused_and_legacy_bundles_can_be_sealed(
    tmp_path: Path, tiny_bundle: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import json
    import shutil

    from geoseg.model.bundle import load_meta
    from geoseg.model.store import reseal_bundle

    copy = tmp_path / "copy.geoseg"
    shutil.copytree(tiny_bundle, copy)
    data = json.loads((copy / "bundle.json").read_text())
    assert data["meta_sha256"], "save_bundle seals the metadata"
    (copy / "bundle.json").write_text(json.dumps(data, indent=4))  # re-indented: still fine
    assert load_meta(copy).name == "tiny"
    data["bands"][0], data["bands"][1] = data["bands"][1], data["bands"][0]  # swapped bands
    (copy / "bundle.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match=r"copy\.geoseg/bundle\.json does not match its own"):
        load_meta(copy)
    del data["meta_sha256"]  # a bundle written before bundles carried a checksum
    (copy / "bundle.json").write_text(json.dumps(data))
    assert load_meta(copy).band_names[0] == "green"
    assert "carries no checksum of its metadata" in caplog.text
    assert reseal_bundle(copy).meta_sha256 and load_meta(copy).meta_sha256


def test_a_bundle_folder_gets_the_permissions_of_an_ordinary_folder(tiny_bundle: Path) -> None:
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    assert tiny_bundle.stat().st_mode & 0o777 == 0o777 & ~mask, "not mkdtemp's 0700"
