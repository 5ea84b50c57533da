"""The job summary of a ``predict_scenes`` step: one row per scene, as CSV and as a page."""

from __future__ import annotations

import csv
import html
import io

from geoseg.config import ClosedModel
from geoseg.workflow.manifest import Figures


class SceneRow(ClosedModel):
    """One line of the job summary."""

    scene: str
    location: str
    folder: str
    status: str  # done | up to date | failed
    pixels: int | None = None
    polygons: int | None = None
    seconds: float
    error: str = ""


class ScenesFigures(Figures):
    """The job: how many scenes were done, already up to date, or failed; one row each."""

    done: int
    up_to_date: int
    failed: int
    scenes: list[SceneRow]


def summary_csv(rows: list[SceneRow]) -> str:
    """The job summary as CSV (one row per scene)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(SceneRow.model_fields))
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.model_dump().items()})
    return out.getvalue()


def summary_html(where: str, figures: ScenesFigures) -> str:
    """The job summary as a self-contained HTML page linking each scene's own report."""
    cells = []
    for r in figures.scenes:
        link = (
            f'<a href="{html.escape(r.folder)}/report.html">{html.escape(r.scene)}</a>'
            if r.status != "failed"
            else html.escape(r.scene)
        )
        cells.append(
            f"<tr class='{r.status.replace(' ', '-')}'><td>{link}</td><td>{r.status}</td>"
            f"<td>{'' if r.pixels is None else f'{r.pixels:,}'}</td>"
            f"<td>{'' if r.polygons is None else f'{r.polygons:,}'}</td>"
            f"<td>{r.seconds:.1f}</td><td>{html.escape(r.error)}</td></tr>"
        )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>geoseg job summary</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px}.failed{background:#fdd}</style></head>"
        f"<body><h1>Job summary</h1><p>{html.escape(where)}: {len(figures.scenes)} scenes, "
        f"{figures.done} done, {figures.up_to_date} already up to date, {figures.failed} "
        "failed.</p><table><tr><th>scene</th><th>status</th><th>pixels</th><th>polygons</th>"
        f"<th>seconds</th><th>error</th></tr>{''.join(cells)}</table></body></html>\n"
    )
