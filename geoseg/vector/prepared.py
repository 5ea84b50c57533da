"""What a predict chunk task prepares for vectorising, while its class map is still in memory.

The chunk task labels its components (pass 1 of :mod:`geoseg.vector.vectorise`) and, when every
region is a component (no minimum mapping unit), also traces their outlines and sums their
confidence. The vectorise stage then reads these small files instead of reading the class map
back and labelling it twice, and its remaining work (numbering regions, joining seam pieces,
attributes, writing) needs no pixels at all.

A chunk's file holds arrays only (``numpy.savez``, no pickles); the chunk task writes it
atomically beside its parts, and it belongs to the chunk's record like the parts do.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from geoseg.tiling.grid import Chunk
from geoseg.vector.components import ChunkComponents, components_of, label_classes
from geoseg.vector.polygonize import Outlines, trace_offset, trace_outlines

#: The arrays saved per chunk: every field of the components but the chunk, and of the outlines.
_COMPONENT_FIELDS = tuple(f.name for f in fields(ChunkComponents) if f.name != "chunk")
_OUTLINE_FIELDS = tuple(f.name for f in fields(Outlines))


def prepared_path(folder: Path, chunk: Chunk) -> Path:
    """The prepared file of ``chunk`` in ``folder`` (a predict run's parts folder)."""
    return folder / f"vectors-{chunk.key}.npz"


@dataclass(frozen=True, slots=True)
class PreparedChunk:
    """A chunk's components, and (when traced) its components' outlines and confidence sums.

    ``outlines.values`` and ``confidence_sums`` are indexed by local label, like the components.
    """

    components: ChunkComponents
    outlines: Outlines | None = None
    confidence_sums: NDArray[np.float64] | None = None


def prepare_chunk(
    classes: NDArray[np.uint8],
    confidence: NDArray[np.float32],
    chunk: Chunk,
    width: int,
    outlines: bool,
) -> PreparedChunk:
    """Components of a chunk's class map (image ``width``), with outlines when asked.

    ``confidence`` holds the values as the confidence raster stores them (NaN = no data), so
    the sums equal those read back from the raster.
    """
    labels, label_class = label_classes(classes)
    components = components_of(labels, label_class, chunk, width)
    if not outlines:
        return PreparedChunk(components)
    weights = np.nan_to_num(confidence.ravel())
    sums = np.bincount(labels.ravel(), weights=weights, minlength=len(label_class))
    traced = trace_outlines(labels, trace_offset(chunk))
    return PreparedChunk(components, traced, np.asarray(sums, dtype=np.float64))


def save_prepared(prepared: PreparedChunk, path: Path) -> None:
    """Write ``prepared`` to ``path`` (``.npz``; the chunk task writes it atomically)."""
    arrays = {f"c_{k}": getattr(prepared.components, k) for k in _COMPONENT_FIELDS}
    if prepared.outlines is not None and prepared.confidence_sums is not None:
        arrays.update({f"o_{k}": getattr(prepared.outlines, k) for k in _OUTLINE_FIELDS})
        coords = prepared.outlines.coords
        if not len(coords) or np.abs(coords).max() < 2**31:  # pixel corners: exact as int32
            arrays["o_coords"] = coords.astype(np.int32)
        arrays["confidence_sums"] = prepared.confidence_sums
    with path.open("wb") as f:
        np.savez(f, **arrays)


def load_components(path: Path, chunk: Chunk) -> ChunkComponents:
    """The components saved for ``chunk`` (its outlines stay on disk)."""
    with np.load(path, allow_pickle=False) as data:
        return ChunkComponents(chunk, *(data[f"c_{k}"] for k in _COMPONENT_FIELDS))


@dataclass(frozen=True, slots=True)
class TracedChunk:
    """A traced chunk as pass 2 needs it: outlines, and per local label confidence and pixels."""

    outlines: Outlines
    confidence_sums: NDArray[np.float64]
    pixels: NDArray[np.int64]


def load_traced(path: Path) -> TracedChunk | None:
    """The outlines saved for a chunk, None when it was not traced."""
    with np.load(path, allow_pickle=False) as data:
        if "confidence_sums" not in data:
            return None
        values, coords, rings, polygons = (data[f"o_{k}"] for k in _OUTLINE_FIELDS)
        outlines = Outlines(values, coords.astype(np.float64), rings, polygons)
        return TracedChunk(outlines, data["confidence_sums"], data["c_counts"])
