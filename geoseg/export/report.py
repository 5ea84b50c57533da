"""The run report (one self-contained HTML file) and the STAC Item describing a run's outputs.

The report is what a GIS user opens first: an overview map with its legend, the area of each
class, the model's validation figures, stage timings, and where inputs and model came from
(with licences). The STAC Item (pystac) lists the outputs as assets with roles and media types,
the scene footprint in EPSG:4326, the projection, and the model bundle and config hashes.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pystac
import rasterio
import shapely
from pyproj import Transformer

from geoseg.export.atomic import atomic_path
from geoseg.export.style import ClassStyle
from geoseg.types import Grid

OVERVIEW_PX = 900

MEDIA_TYPES = {
    ".tif": pystac.MediaType.COG,
    ".gpkg": pystac.MediaType.GEOPACKAGE,
    ".geojson": pystac.MediaType.GEOJSON,
    ".parquet": "application/vnd.apache.parquet",
    ".fgb": pystac.MediaType.FLATGEOBUF,
    ".shp": "application/vnd.shp",
    ".html": pystac.MediaType.HTML,
    ".json": pystac.MediaType.JSON,
    ".qml": pystac.MediaType.XML,
}


def overview_png(class_map: Path, styles: Sequence[ClassStyle]) -> bytes:
    """The class map decimated to at most ``OVERVIEW_PX`` px, coloured, as PNG bytes."""
    with rasterio.open(class_map) as ds:
        scale = max(ds.height, ds.width) / OVERVIEW_PX
        shape = (max(1, round(ds.height / max(scale, 1))), max(1, round(ds.width / max(scale, 1))))
        codes = ds.read(1, out_shape=shape)
    table = np.ones((256, 4), dtype=np.float32)
    for style in styles:
        table[style.code] = (*[v / 255 for v in style.rgb], 1.0)
    rgba = table[codes]
    buffer = io.BytesIO()
    plt.imsave(buffer, rgba, format="png")
    return buffer.getvalue()


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _web_map(folder: Path | None) -> str:
    """How to open the run as a web map (``geoseg view``), with a link to its address."""
    if folder is None:
        return ""
    return (
        '<p class="webmap">Interactive web map of this run (imagery, the class map with this '
        "legend, confidence, errors where evaluated, polygons with their attributes): run "
        f"<code>geoseg view {html.escape(str(folder))}</code> and open "
        '<a href="http://127.0.0.1:8765/">http://127.0.0.1:8765/</a>.</p>'
    )


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "absent" if value is None else str(value)


def write_report(
    path: Path,
    title: str,
    overview: bytes,
    styles: Sequence[ClassStyle],
    areas_m2: Mapping[str, float],
    metrics: Mapping[str, Any],
    timings: Mapping[str, float],
    provenance: Mapping[str, Any],
    folder: Path | None = None,
) -> Path:
    """Write the self-contained HTML report (images embedded).

    ``folder``: the run's output folder, which ``geoseg view`` serves as a web map (linked).
    """
    total = sum(areas_m2.values()) or 1.0
    legend = "".join(
        f'<li><span class="swatch" style="background:{s.color}"></span>{html.escape(s.name)}</li>'
        for s in styles
    )
    area_rows = [
        (name, f"{m2 / 1e6:.4f}", f"{100 * m2 / total:.1f}")
        for name, m2 in sorted(areas_m2.items(), key=lambda kv: -kv[1])
    ]
    per_class = metrics.get("per_class", {})
    metric_rows = [
        (n, _fmt(v.get("iou")), _fmt(v.get("precision")), _fmt(v.get("recall")))
        for n, v in per_class.items()
    ]
    image = base64.b64encode(overview).decode()
    document = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1100px; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }}
.swatch {{ display: inline-block; width: 1em; height: 1em; margin-right: 0.4em;
  vertical-align: middle; border: 1px solid #555; }}
ul.legend {{ list-style: none; padding: 0; columns: 3; }}
pre {{ background: #f6f6f6; padding: 0.8em; overflow-x: auto; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<h2>Overview</h2>
<img alt="class map overview" src="data:image/png;base64,{image}" style="max-width:100%">
<ul class="legend">{legend}</ul>
{_web_map(folder)}
<h2>Area per class</h2>
{_table(["class", "area (km²)", "share (%)"], area_rows)}
<h2>Model validation (its spatial hold-out)</h2>
<p>macro mIoU: {_fmt(metrics.get("miou"))}; overall accuracy:
{_fmt(metrics.get("overall_accuracy"))}</p>
{_table(["class", "IoU", "precision", "recall"], metric_rows)}
<h2>Stage timings</h2>
{_table(["stage", "seconds"], [(k, f"{v:.2f}") for k, v in timings.items()])}
<h2>Inputs, model and provenance</h2>
<pre>{html.escape(json.dumps(provenance, indent=2, default=str))}</pre>
</body></html>
"""
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(document, encoding="utf-8")
    return path


def footprint_wgs84(grid: Grid) -> shapely.Polygon:
    """The grid's outline in EPSG:4326 (edges densified so curved edges stay close)."""
    t = grid.transform
    corners = [t @ (0, 0), t @ (grid.width, 0), t @ (grid.width, grid.height), t @ (0, grid.height)]
    outline = shapely.segmentize(shapely.Polygon(corners), max(grid.pixel_size) * 64)
    crs = grid.require_crs("a footprint in EPSG:4326")
    transformer = Transformer.from_crs(crs.to_wkt(), "EPSG:4326", always_xy=True)
    return shapely.transform(outline, lambda xy: np.column_stack(transformer.transform(*xy.T)))


def write_stac_item(
    path: Path,
    item_id: str,
    grid: Grid,
    when: datetime,
    assets: Mapping[str, tuple[Path, Sequence[str], str]],
    properties: Mapping[str, Any],
) -> Path:
    """Write a STAC Item (JSON) with ``assets`` = ``{key: (file, roles, title)}``.

    Asset hrefs are relative to the item, so the output folder can be moved or published as is.
    """
    outline = footprint_wgs84(grid)
    item = pystac.Item(
        id=item_id,
        geometry=shapely.geometry.mapping(outline),
        bbox=list(outline.bounds),
        datetime=when,
        properties=dict(properties),
    )
    epsg = grid.require_crs("a STAC Item").to_epsg()
    item.properties.update(
        {
            "proj:code": f"EPSG:{epsg}" if epsg else None,
            "proj:wkt2": None if epsg else grid.crs_wkt,
            "proj:shape": [grid.height, grid.width],
            "proj:transform": list(grid.transform)[:6],
        }
    )
    item.stac_extensions.append("https://stac-extensions.github.io/projection/v2.0.0/schema.json")
    for key, (file, roles, title) in assets.items():
        item.add_asset(
            key,
            pystac.Asset(
                href=file.name,
                media_type=MEDIA_TYPES.get(file.suffix),
                roles=list(roles),
                title=title,
            ),
        )
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(
            json.dumps(item.to_dict(include_self_link=False), indent=2), encoding="utf-8"
        )
    return path
