"""Many scenes in one step (issue 14): files, globs and STAC catalogs; done scenes are skipped,
failed scenes reported while the others go on, and a job summary ends every run."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pystac
import pytest
import rasterio
from rasterio.windows import Window as RioWindow

import geoseg
from geoseg.errors import ConfigError, ScenesFailedError
from geoseg.workflow.run import run_workflow
from tests.conftest import REPO
from tests.test_remote import same_pixels

SAMPLE = REPO / "samples" / "nc_landsat7_2000.tif"
#: Three 128 px squares of the sample scene (row, col), five bands (the tiny model's).
SQUARES = {"east": (40, 300), "north": (0, 0), "south": (160, 120)}


def write_scene(path: Path, row: int, col: int) -> Path:
    """A 128 x 128 px, five-band crop of the sample scene."""
    window = RioWindow(col, row, 128, 128)
    with rasterio.open(SAMPLE) as src:
        profile = src.profile | {
            "height": 128,
            "width": 128,
            "count": 5,
            "transform": src.window_transform(window),
        }
        data = src.read([1, 2, 3, 4, 5], window=window)
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def job(tmp_path: Path, model: Path, scenes: str, extra: str = "") -> Path:
    """A workflow with one predict_scenes step writing into ``tmp_path/job``."""
    path = tmp_path / "job.yaml"
    path.write_text(
        f"version: 1\ncatalog: {REPO / 'data_catalog.yaml'}\nsteps:\n  - predict_scenes:\n"
        f"      scenes: {scenes}\n      model: {model}\n      output: {tmp_path / 'job'}\n"
        f"      chunk_size: 128\n      vector: {{min_area_m2: 3000}}\n{extra}",
        encoding="utf-8",
    )
    return path


def files_in(folder: Path) -> str:
    """The ``scenes:`` of a job over every GeoTIFF in ``folder/scenes``."""
    return f"{{files: ['{folder}/scenes/*.tif']}}"


def summary(tmp_path: Path) -> dict[str, dict[str, str]]:
    with (tmp_path / "job" / "summary.csv").open(encoding="utf-8") as handle:
        return {row["scene"]: row for row in csv.DictReader(handle)}


def statuses(tmp_path: Path) -> dict[str, str]:
    return {scene: row["status"] for scene, row in summary(tmp_path).items()}


def test_every_file_gets_its_folder_and_a_rerun_does_only_the_new_ones(
    tmp_path: Path, tiny_bundle: Path
) -> None:
    for name in ("east", "north"):
        write_scene(tmp_path / "scenes" / f"{name}.tif", *SQUARES[name])
    workflow = job(tmp_path, tiny_bundle, files_in(tmp_path))
    report = run_workflow(workflow, show_progress=False)[0]
    assert (report.figures.done, report.figures.up_to_date) == (2, 0)
    assert statuses(tmp_path) == {"east": "done", "north": "done"}
    rows = summary(tmp_path)
    assert int(rows["east"]["pixels"]) == 128 * 128 and rows["east"]["polygons"] != ""
    for name in ("east", "north"):
        folder = tmp_path / "job" / name
        assert (folder / "classes.tif").exists() and (folder / "manifest.json").exists()
    assert "east" in (tmp_path / "job" / "report.html").read_text()

    # The same scene predicted on its own gives the same pixels.
    geoseg.predict(
        tmp_path / "scenes" / "east.tif",
        tiny_bundle,
        tmp_path / "plain",
        chunk_size=128,
        vector={"min_area_m2": 3000},
    )
    assert same_pixels(tmp_path / "plain", tmp_path / "job" / "east")

    write_scene(tmp_path / "scenes" / "south.tif", *SQUARES["south"])
    report = run_workflow(workflow, show_progress=False)[0]  # no --overwrite needed
    assert statuses(tmp_path) == {"east": "up to date", "north": "up to date", "south": "done"}
    assert (report.figures.done, report.figures.up_to_date, report.figures.failed) == (1, 2, 0)
    assert not any((tmp_path / "job").rglob(".geoseg.lock")), "no lock file is left"


def test_a_failed_scene_is_reported_and_the_others_are_done(
    tmp_path: Path, tiny_bundle: Path
) -> None:
    write_scene(tmp_path / "scenes" / "east.tif", *SQUARES["east"])
    (tmp_path / "scenes" / "broken.tif").write_bytes(b"II*\x00 not a whole TIFF")
    write_scene(tmp_path / "scenes" / "north.tif", *SQUARES["north"])
    workflow = job(tmp_path, tiny_bundle, files_in(tmp_path))
    with pytest.raises(
        ScenesFailedError, match=r"1 of 3 scene\(s\) failed \(broken\); the others are done"
    ):
        run_workflow(workflow, show_progress=False)
    rows = summary(tmp_path)
    assert {k: r["status"] for k, r in rows.items()} == {
        "broken": "failed",
        "east": "done",
        "north": "done",
    }
    assert "broken.tif" in rows["broken"]["error"]
    assert not (tmp_path / "job" / "broken" / "classes.tif").exists()

    (tmp_path / "scenes" / "broken.tif").unlink()
    write_scene(tmp_path / "scenes" / "broken.tif", *SQUARES["south"])  # repaired
    report = run_workflow(workflow, show_progress=False)[0]
    assert statuses(tmp_path) == {"broken": "done", "east": "up to date", "north": "up to date"}
    assert report.figures.failed == 0


def write_catalog_items(
    folder: Path, ids: list[str], catalog: pystac.Catalog | None = None
) -> Path:
    """A static STAC catalog (pystac) with one item per id, each a scene's five bands."""
    from tests.test_stac import COMMON, KEYS, NAMES

    catalog = catalog or pystac.Catalog("scenes", "test scenes")
    for number, sid in enumerate(ids):
        square = list(SQUARES.values())[number % len(SQUARES)]
        scene = write_scene(folder / "data" / f"{sid}.tif", *square)
        with rasterio.open(scene) as ds:
            bbox = list(ds.bounds)
        item = pystac.Item(
            sid,
            {"type": "Point", "coordinates": [0, 0]},
            bbox,
            dt.datetime(2000, 3, 1 + number, tzinfo=dt.UTC),
            {},
        )
        item.add_asset(
            "image",
            pystac.Asset(
                str(scene),
                media_type=pystac.MediaType.GEOTIFF,
                roles=["data"],
                extra_fields={
                    "eo:bands": [
                        {"name": k, "common_name": c}
                        for k, c, _ in list(zip(KEYS, COMMON, NAMES, strict=True))[:5]
                    ]
                },
            ),
        )
        catalog.add_item(item)
    catalog.normalize_hrefs(str(folder / "stac"))
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    return folder / "stac" / "catalog.json"


def test_a_stac_catalog_job_processes_exactly_the_new_items(
    tmp_path: Path, tiny_bundle: Path
) -> None:
    bands = (
        "[{name: blue}, {name: green}, {name: red}, {name: nir, asset: nir08}, "
        "{name: swir1, asset: swir16}]"
    )
    root = write_catalog_items(tmp_path, ["LE07_a", "LE07_b"])
    scenes = f"{{stac: {root}, bands: {bands}, units: DN}}"
    workflow = job(tmp_path, tiny_bundle, scenes, "      naming: '{date}_{id}'\n")
    run_workflow(workflow, show_progress=False)
    assert statuses(tmp_path) == {"LE07_a": "done", "LE07_b": "done"}
    assert (tmp_path / "job" / "2000-03-01_LE07_a" / "classes.tif").exists()

    catalog = pystac.Catalog.from_file(str(root))
    write_catalog_items(tmp_path, ["LE07_c", "LE07_d", "LE07_e"], catalog)  # three new items
    report = run_workflow(workflow, show_progress=False)[0]
    assert (report.figures.done, report.figures.up_to_date) == (3, 2)
    assert [r.scene for r in report.figures.scenes if r.status == "done"] == [
        "LE07_c",
        "LE07_d",
        "LE07_e",
    ]


@pytest.mark.parametrize(
    ("scenes", "extra", "message"),
    [
        ("{files: ['nothing-*.tif']}", "", r"scenes\.files: 'nothing-\*\.tif' matches no file"),
        ("{files: [a.tif], stac: c.json}", "", r"give the scenes as either 'files' or 'stac'"),
        ("{stac: c.json}", "", r"a STAC job must list 'bands'"),
        ("{files: [a.tif], bands: [{name: red, asset: B4}]}", "", r"files have none"),
        ("{stac: c.json, bands: [{name: red, file: x.tif}]}", "", r"name no 'file'"),
        ("{files: [a.tif]}", "      naming: '{date}'\n", r"naming '\{date\}' must use \{id\}"),
        ("{files: [a.tif]}", "      naming: '../{id}'\n", r"must stay inside the job's folder"),
    ],
)
def test_a_job_that_cannot_name_its_scenes_is_refused_before_any_work(
    tmp_path: Path, tiny_bundle: Path, scenes: str, extra: str, message: str
) -> None:
    workflow = job(tmp_path, tiny_bundle, scenes, extra)
    with pytest.raises(ConfigError, match=message):
        run_workflow(workflow, show_progress=False)
    assert not (tmp_path / "job" / "summary.csv").exists()


def test_an_item_collection_without_self_links_is_refused_with_the_fix(
    tmp_path: Path, tiny_bundle: Path
) -> None:
    loose: dict[str, Any] = {
        "type": "FeatureCollection",
        "features": [
            pystac.Item("x", None, None, dt.datetime(2000, 1, 1, tzinfo=dt.UTC), {}).to_dict(
                include_self_link=False
            )
        ],
    }
    path = tmp_path / "items.json"
    path.write_text(json.dumps(loose))
    workflow = job(tmp_path, tiny_bundle, f"{{stac: {path}, bands: [{{name: red}}]}}")
    with pytest.raises(ConfigError, match=r"items without a 'self' link \(x\): save them"):
        run_workflow(workflow, show_progress=False)


@pytest.mark.slow
def test_scenes_side_by_side_on_a_local_cluster_equal_one_after_another(
    tmp_path: Path, tiny_bundle: Path
) -> None:
    for name, square in SQUARES.items():
        write_scene(tmp_path / "scenes" / f"{name}.tif", *square)
    files = files_in(tmp_path)
    sequential = tmp_path / "sequential"
    sequential.mkdir()
    run_workflow(job(sequential, tiny_bundle, files), show_progress=False)
    side = tmp_path / "side"
    side.mkdir()
    workflow = job(side, tiny_bundle, files, "      parallel: 3\n")
    workflow.write_text(
        workflow.read_text().replace("steps:", "executor: {kind: distributed, workers: 2}\nsteps:")
    )
    report = run_workflow(workflow, show_progress=False)[0]
    assert report.figures.done == 3
    for name in SQUARES:
        assert same_pixels(sequential / "job" / name, side / "job" / name)
    manifest = json.loads((side / "job" / "east" / "manifest.json").read_text())
    assert manifest["executor"]["kind"] == "distributed"


def test_scenes_in_parallel_without_a_cluster_are_refused(
    tmp_path: Path, tiny_bundle: Path
) -> None:
    write_scene(tmp_path / "scenes" / "east.tif", *SQUARES["east"])
    files = files_in(tmp_path)
    workflow = job(tmp_path, tiny_bundle, files, "      parallel: 2\n")
    with pytest.raises(ConfigError, match=r"parallel: 2 needs a Dask cluster"):
        run_workflow(workflow, show_progress=False)


def test_an_interrupt_stops_the_whole_job_not_just_one_scene(
    tmp_path: Path, tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from geoseg.errors import InterruptedRun
    from geoseg.workflow.steps.predict import PlannedPredict

    for name, square in SQUARES.items():
        write_scene(tmp_path / "scenes" / f"{name}.tif", *square)
    started: list[str] = []

    def interrupted(self: PlannedPredict, *args: Any) -> Any:
        started.append(self.folder.name)
        raise KeyboardInterrupt

    monkeypatch.setattr(PlannedPredict, "run", interrupted)
    workflow = job(tmp_path, tiny_bundle, files_in(tmp_path))
    with pytest.raises(InterruptedRun, match="interrupted"):
        run_workflow(workflow, show_progress=False)
    assert started == ["east"], "the next scenes did not start"


def test_scene_folders_stay_inside_the_job_and_need_what_naming_uses(
    tmp_path: Path, tiny_bundle: Path
) -> None:
    write_scene(tmp_path / "scenes" / "east.tif", *SQUARES["east"])
    files = files_in(tmp_path)
    dated = job(tmp_path, tiny_bundle, files, "      naming: '{date}/{id}'\n")
    with pytest.raises(ConfigError, match=r"uses \{date\} but scene 'east' has no date"):
        run_workflow(dated, show_progress=False)
    root = write_catalog_items(tmp_path / "stac-src", ["ok_id"])
    item = json.loads((root.parent / "ok_id" / "ok_id.json").read_text())
    item["id"] = "../escape"
    (root.parent / "ok_id" / "ok_id.json").write_text(json.dumps(item))
    bands = "[{name: blue}]"
    escaping = job(tmp_path, tiny_bundle, f"{{stac: {root}, bands: {bands}}}")
    with pytest.raises(ConfigError, match=r"scene id '\.\./escape' cannot name a folder"):
        run_workflow(escaping, show_progress=False)
