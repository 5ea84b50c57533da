"""Building segmentation-models-pytorch networks from a :class:`NetworkSpec`."""

from __future__ import annotations

import functools

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


#: Share of the sum of every layer's output that is alive at once in a forward pass without
#: gradients. Measured for the default U-Net/MobileNetV2 on CPU: peaks of 450-670 bytes per input
#: pixel (tiles of 256-1024 px, batches of 1-8) against a sum of 2,381; 0.35 keeps the estimate
#: above every measured peak.
LIVE_SHARE = 0.35


@functools.cache
def _layer_output_floats(spec_json: str, in_channels: int, classes: int) -> float:
    spec = NetworkSpec.model_validate_json(spec_json)
    network = build_network(spec, in_channels, classes).eval()
    total = [0]

    def count(module: torch.nn.Module, args: object, output: object) -> None:
        if isinstance(output, torch.Tensor):
            total[0] += output.numel()

    leaves = [m for m in network.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    side = 2 * spec.divisor
    with torch.no_grad():
        network(torch.zeros(1, in_channels, side, side))
    for hook in hooks:
        hook.remove()
    return total[0] / (side * side)


def forward_bytes_per_pixel(spec: NetworkSpec, in_channels: int, classes: int) -> float:
    """Estimated peak memory of inference, in bytes per input pixel of a batch (no gradients).

    Every layer's output is counted on a small input, of which :data:`LIVE_SHARE` is taken as
    alive at once.
    """
    floats = _layer_output_floats(spec.model_dump_json(), in_channels, classes)
    return 4 * LIVE_SHARE * floats
