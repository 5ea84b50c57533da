"""Building segmentation-models-pytorch networks from a :class:`NetworkSpec`."""

from __future__ import annotations

import segmentation_models_pytorch as smp
import torch

from geoseg.errors import BundleError
from geoseg.model.bundle import NetworkSpec


def build_network(spec: NetworkSpec, in_channels: int, classes: int) -> torch.nn.Module:
    """A freshly initialised network (no pretrained weights: none are reachable offline)."""
    try:
        return smp.create_model(
            spec.architecture,
            encoder_name=spec.encoder,
            encoder_weights=None,
            in_channels=in_channels,
            classes=classes,
            **spec.kwargs(),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise BundleError(
            f"cannot build {spec.architecture} with encoder {spec.encoder}: {exc}. See "
            "segmentation_models_pytorch's list of architectures and encoders"
        ) from exc
