from __future__ import annotations

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
