"""Writing a bundle folder and loading its network (torch side of :mod:`geoseg.model.bundle`)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from geoseg import __version__
from geoseg.errors import BundleError, OutputExistsError
from geoseg.model.bundle import (
    CARD_FILE,
    BundleMeta,
    bundle_paths,
    file_sha256,
    load_meta,
    meta_checksum,
)
from geoseg.model.network import build_network


def save_bundle(
    meta: BundleMeta,
    state: dict[str, torch.Tensor],
    path: Path,
    card: str,
    overwrite: bool = False,
) -> BundleMeta:
    """Write the ``.geoseg`` folder ``path`` atomically: built beside it, then renamed."""
    if path.exists() and not overwrite:
        raise OutputExistsError(f"model bundle {path} exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    try:
        tmp.chmod(0o777 & ~_umask())  # mkdtemp's 0700 would keep the bundle from other users
        meta_path, weights_path = bundle_paths(tmp)
        dtype = torch.float16 if meta.weights_dtype == "float16" else torch.float32
        torch.save(
            {
                k: v.detach().cpu().to(dtype) if v.is_floating_point() else v.detach().cpu()
                for k, v in state.items()
            },
            weights_path,
        )
        meta = sealed(
            meta.model_copy(
                update={"weights_sha256": file_sha256(weights_path), "geoseg_version": __version__}
            )
        )
        meta_path.write_text(meta.model_dump_json(indent=2) + "\n", encoding="utf-8")
        (tmp / CARD_FILE).write_text(card, encoding="utf-8")
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def _umask() -> int:
    """The process's umask (read by setting it, then restoring it at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def sealed(meta: BundleMeta) -> BundleMeta:
    """``meta`` with its ``meta_sha256`` set (the checksum of what bundle.json will hold)."""
    data = json.loads(meta.model_dump_json())
    return meta.model_copy(update={"meta_sha256": meta_checksum(data)})


def reseal_bundle(path: Path) -> BundleMeta:
    """Add the metadata checksum to a bundle written before bundles carried one.

    Only for bundles whose bundle.json is known to be as trained: the checksum then protects it
    from later edits. A bundle that has a checksum keeps it (an edited one stays refused).
    """
    meta = load_meta(path)
    if meta.meta_sha256:
        return meta
    meta = sealed(meta)
    meta_path, _ = bundle_paths(path)
    tmp = meta_path.with_name(f".{meta_path.name}.partial")
    tmp.write_text(meta.model_dump_json(indent=2) + "\n", encoding="utf-8")
    tmp.replace(meta_path)
    return meta


def load_network(path: Path, device: torch.device) -> tuple[BundleMeta, torch.nn.Module]:
    """The bundle's metadata and its network in eval mode on ``device``, weights checked."""
    meta = load_meta(path)
    _, weights_path = bundle_paths(path)
    if meta.weights_sha256 and file_sha256(weights_path) != meta.weights_sha256:
        raise BundleError(
            f"{weights_path} does not match the checksum in its bundle.json; the bundle is "
            "corrupt or was edited, re-create it"
        )
    network = build_network(meta.network, meta.input_channels, len(meta.classes))
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        network.load_state_dict(
            {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
        )
    except (RuntimeError, OSError, KeyError) as exc:
        raise BundleError(f"cannot load weights {weights_path}: {exc}") from exc
    return meta, network.to(device).eval()


def describe_card(meta: BundleMeta) -> str:
    """A machine-written summary appended to model cards: the metadata as JSON."""
    return (
        "```json\n" + json.dumps(meta.model_dump(exclude={"weights_sha256"}), indent=2) + "\n```\n"
    )
