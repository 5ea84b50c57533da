"""Evaluation outputs a reviewer reads first.

Figures as JSON and CSV, a confusion-matrix plot, and an overlay of imagery, prediction,
reference and errors.

Plots use matplotlib's Agg backend (no display needed) and are written atomically.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch
from numpy.typing import NDArray

from geoseg.evaluation.metrics import Scores
from geoseg.export.atomic import atomic_path

#: The files :func:`write_metrics` writes.
METRICS_JSON, METRICS_CSV = "metrics.json", "metrics.csv"

CSV_COLUMNS = [
    "class",
    "code",
    "iou",
    "precision",
    "recall",
    "f1",
    "boundary_precision",
    "boundary_recall",
    "boundary_f",
    "support_px",
    "predicted_px",
]


def write_metrics(
    result: Scores, names: Mapping[int, str], folder: Path, extra: Mapping[str, Any]
) -> tuple[Path, Path]:
    """``metrics.json`` (everything) and ``metrics.csv`` (one row per class, then overall)."""
    figures = {**extra, **result.as_dict(dict(names))}
    json_path, csv_path = folder / METRICS_JSON, folder / METRICS_CSV
    with atomic_path(json_path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for name, row in figures["per_class"].items():
        writer.writerow(
            [
                name,
                *(row[c] for c in CSV_COLUMNS[1:] if c != "support_px" and c != "predicted_px"),
                row["support_px"],
                row["predicted_px"],
            ]
        )
    writer.writerow(
        [
            "(macro mIoU / overall accuracy / boundary F)",
            "",
            result.miou,
            "",
            "",
            result.overall_accuracy,
            "",
            "",
            result.boundary_f,
            "",
            "",
        ]
    )
    with atomic_path(csv_path, overwrite=True) as tmp:
        tmp.write_text(buffer.getvalue(), encoding="utf-8")
    return json_path, csv_path


def _save(fig: Any, path: Path) -> Path:
    with atomic_path(path, overwrite=True) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def plot_confusion(result: Scores, names: Mapping[int, str], path: Path) -> Path:
    """Row-normalised confusion matrix with pixel counts, plus per-class IoU in the labels."""
    codes = list(result.codes)
    counts = result.matrix
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=float), where=rows > 0)
    size = max(4.0, 0.9 * len(codes) + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    labels = [names.get(c, str(c)) for c in codes]
    ious = {c.code: c.iou for c in result.classes}
    ax.set_xticks(range(len(codes) + 1), [*labels, "other"], rotation=45, ha="right")
    ax.set_yticks(
        range(len(codes)),
        [
            f"{lab} (IoU {ious[c]:.2f})" if ious[c] is not None else f"{lab} (absent)"
            for lab, c in zip(labels, codes, strict=True)
        ],
    )
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            if counts[i, j]:
                ax.text(
                    j,
                    i,
                    f"{counts[i, j]:,}\n{share[i, j]:.0%}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if share[i, j] > 0.5 else "black",
                )
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    miou = "n/a" if result.miou is None else f"{result.miou:.3f}"
    bf = "n/a" if result.boundary_f is None else f"{result.boundary_f:.3f}"
    ax.set_title(f"confusion (row share); mIoU {miou}, boundary F@{result.tolerance_px}px {bf}")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of reference row")
    return _save(fig, path)


def stretch(image: NDArray[np.float32], joint: bool = False) -> NDArray[np.float32]:
    """2-98 % stretch to 0..1 (NaN -> 0) for display: per band, or one for all bands (``joint``).

    A joint stretch keeps a photo's colours (soil stays brown); per band suits satellite bands.
    """
    out = np.zeros(image.shape, dtype=np.float32)
    valid = np.isfinite(image)
    if joint and valid.any():
        low, high = np.percentile(image[valid], [2, 98])
        return np.clip((np.nan_to_num(image, nan=low) - low) / max(high - low, 1e-6), 0, 1)
    for i, band in enumerate(image):
        if valid[i].any():
            low, high = np.percentile(band[valid[i]], [2, 98])
            out[i] = np.clip((np.nan_to_num(band, nan=low) - low) / max(high - low, 1e-6), 0, 1)
    return out


def plot_overlay(
    rgb: NDArray[np.float32],
    prediction: NDArray[np.uint8],
    reference: NDArray[np.uint8],
    errors: NDArray[np.uint8],
    colours: Mapping[int, str],
    names: Mapping[int, str],
    error_colours: Mapping[int, str],
    error_names: Mapping[int, str],
    path: Path,
    joint_stretch: bool = False,
) -> Path:
    """Four panels: imagery, prediction, reference and error map (errors over the imagery)."""
    table = ["#ffffff"] * 256
    for code, colour in colours.items():
        table[code] = colour
    classes = ListedColormap(table)
    picture = np.moveaxis(stretch(rgb, joint_stretch), 0, -1)
    height, width = errors.shape
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.4 * height / width + 0.9))
    fig.subplots_adjust(left=0.01, right=0.99, top=0.9, bottom=0.12, wspace=0.04)
    axes[0].imshow(picture)
    axes[0].set_title("imagery")
    for ax, data, title in (
        (axes[1], prediction, "prediction"),
        (axes[2], reference, "reference (labelled only)"),
    ):
        ax.imshow(data, cmap=classes, vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(title)
    axes[3].imshow(picture * 0.6 + 0.4)
    overlay = np.zeros((*errors.shape, 4), dtype=np.float32)
    for code, colour in error_colours.items():
        rgba = matplotlib.colors.to_rgba(colour)
        overlay[errors == code] = rgba
    axes[3].imshow(overlay, interpolation="nearest")
    axes[3].set_title("errors over imagery")
    for ax in axes:
        ax.set_axis_off()
    present = sorted(set(np.unique(prediction)) | set(np.unique(reference)) - {0})
    handles = [
        Patch(color=colours.get(int(c), "#888888"), label=names.get(int(c), str(c)))
        for c in present
        if int(c) in colours or int(c) in names
    ]
    handles += [Patch(color=error_colours[c], label=error_names[c]) for c in error_colours]
    fig.legend(
        handles=handles,
        loc="lower center",
        ncol=min(len(handles), 8),
        frameon=False,
        bbox_to_anchor=(0.5, -0.02),
    )
    return _save(fig, path)
