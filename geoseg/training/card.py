"""Model cards: what a bundle was trained on, under which licences, and how well it validated."""

from __future__ import annotations

from typing import Any

from geoseg.model.bundle import BundleMeta
from geoseg.model.indices import INDICES


def _fmt(value: Any) -> str:
    return (
        f"{value:.3f}" if isinstance(value, float) else ("absent" if value is None else str(value))
    )


def model_card(meta: BundleMeta, notes: str = "") -> str:
    """A Markdown model card for ``meta``."""
    validation = meta.metrics.get("validation", {})
    lines = [
        f"# Model card: {meta.name}",
        "",
        f"- Network: {meta.network.architecture}, encoder {meta.network.encoder} "
        f"(depth {meta.network.encoder_depth}), trained from scratch (no pretrained weights).",
        f"- Input bands, in order: {', '.join(meta.band_names)} ({meta.units}); "
        "normalised per band with the mean/std in bundle.json"
        + (
            "; then spectral indices computed from them: "
            + "; ".join(f"{i} = {INDICES[i].formula}" for i in meta.indices)
            + "."
            if meta.indices
            else "."
        ),
        f"- Pixel size: {meta.pixel_size:g} {meta.crs_units}. Tiles: {meta.tile_size} px, "
        f"overlap {meta.overlap} px.",
        f"- Classes: {', '.join(f'{c.code} {c.name}' for c in meta.classes)} (0 = nodata).",
        "",
        "## Training data and licences",
        "",
    ]
    for data in meta.training_data:
        lines.append(
            f"- Source `{data.source}`: {data.description.strip()} Licence: "
            f"{data.licence.rstrip('.')}. Labels `{data.labels}`, licence: "
            f"{(data.labels_licence or data.licence).rstrip('.')}."
        )
    lines += [
        "",
        "## Validation (held out from training, scored on stitched predictions)",
        "",
        f"{_kept(meta)}; validation pixels: {meta.training.get('validation_pixels')} in "
        f"{_held_out(meta)}.",
        "",
        "| class | IoU | precision | recall | support (px) |",
        "|---|---|---|---|---|",
    ]
    for name, figures in validation.get("per_class", {}).items():
        lines.append(
            f"| {name} | {_fmt(figures['iou'])} | {_fmt(figures['precision'])} | "
            f"{_fmt(figures['recall'])} | {figures['support_px']} |"
        )
    lines += [
        "",
        f"Macro mIoU (classes present in the hold-out): {_fmt(validation.get('miou'))}; overall "
        f"accuracy: {_fmt(validation.get('overall_accuracy'))}.",
        "",
        f"Training pixels per class: {meta.training.get('training_pixels')}.",
        "",
    ]
    sources = meta.metrics.get("validation_per_source") or {}
    if len(sources) > 1:  # each source scored on its own hold-out
        names = list(sources)
        lines += [
            "### Per source",
            "",
            "| class | " + " | ".join(f"IoU {n}" for n in names) + " |",
            "|---|" + "---|" * len(names),
        ]
        classes = dict.fromkeys(c for figures in sources.values() for c in figures["per_class"])
        for name in [*classes, "mIoU"]:
            cells = [
                _fmt(
                    figures.get("miou")
                    if name == "mIoU"
                    else figures["per_class"].get(name, {}).get("iou")
                )
                for figures in sources.values()
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    crossval = meta.metrics.get("cross_validation")
    if crossval:
        lines += ["## Cross-validation of the recipe", "", crossval["protocol"] + ".", ""]
        lines += _crossval_table(crossval)
    if notes:
        lines += ["## Notes", "", notes.strip(), ""]
    return "\n".join(lines)


def _crossval_table(crossval: dict[str, Any]) -> list[str]:
    """Per class, IoU mean +- sd over the folds that held it (and n): overall, then per source."""
    columns = {"all sources": {"mIoU": crossval["miou"], **crossval["per_class"]}}
    columns.update(crossval.get("per_source") or {})

    def cell(spread: dict[str, Any] | None) -> str:
        if spread is None or spread["mean"] is None:
            return "absent"
        return f"{_fmt(spread['mean'])} +- {_fmt(spread['std'])} (n={spread['n']})"

    rows = dict.fromkeys(name for column in columns.values() for name in column)
    return [
        "| class | " + " | ".join(f"IoU {name}" for name in columns) + " |",
        "|---|" + "---|" * len(columns),
        *(
            f"| {row} | " + " | ".join(cell(c.get(row)) for c in columns.values()) + " |"
            for row in rows
        ),
        "",
        "IoU: mean +- sample standard deviation over the folds that held the class (n folds).",
        "",
    ]


def _kept(meta: BundleMeta) -> str:
    """Which epoch's weights the bundle holds, and how they were chosen."""
    epoch = meta.metrics.get("best_epoch")
    if meta.training.get("config", {}).get("keep") == "last":
        return f"Weights of the last epoch ({epoch}), not selected on the hold-out"
    return f"Best epoch {epoch}, selected on this hold-out (so slightly optimistic)"


def _held_out(meta: BundleMeta) -> str:
    """What was held out: whole images of an image set, or spatial blocks of scenes."""
    items = [i for ids in meta.training.get("holdout_items", {}).values() for i in ids]
    if items:
        return f"{len(items)} held-out images ({', '.join(map(str, items))})"
    return f"{meta.training.get('validation_blocks')} spatial hold-out blocks"
