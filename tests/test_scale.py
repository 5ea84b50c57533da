"""Issue 3 behaviour: identical outputs across executors and chunkings, surviving a killed
worker, and resuming a killed run (only missing chunks recomputed, identical outputs)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import geopandas as gpd
import pyogrio
import pytest
import shapely

from geoseg.errors import ResumeError
from geoseg.executor import ExecutorSpec
from geoseg.workflow.run import run_workflow
from tests.conftest import REPO, needs_data

pytestmark = needs_data()
CATALOG = REPO / "data_catalog.yaml"


def write_workflow(
    folder: Path, model: Path, chunk: int = 64, min_area: float = 3000, executor: str = "threads"
) -> Path:
    path = folder / f"wf-{chunk}-{int(min_area)}-{executor}.yaml"
    path.write_text(
        f"version: 1\ncatalog: {CATALOG}\nexecutor: {{kind: {executor}, workers: 2}}\n"
        f"steps:\n  - predict:\n      source: nc-landsat7\n      model: {model}\n"
        f"      output: {folder / 'out'}\n      chunk_size: {chunk}\n"
        f"      vector: {{min_area_m2: {min_area}}}\n",
        encoding="utf-8",
    )
    return path


def layer(folder: Path) -> gpd.GeoDataFrame:
    frame = pyogrio.read_dataframe(folder / "out" / "landcover.gpkg")
    frame = frame.sort_values("region_id").reset_index(drop=True)
    frame["geometry"] = shapely.normalize(frame.geometry.values)
    return frame


def assert_same_outputs(a: Path, b: Path) -> None:
    """Class maps byte-identical, vector layers equal after normalising."""
    assert (a / "out" / "classes.tif").read_bytes() == (b / "out" / "classes.tif").read_bytes()
    assert (a / "out" / "confidence.tif").read_bytes() == (
        b / "out" / "confidence.tif"
    ).read_bytes()
    la, lb = layer(a), layer(b)
    assert len(la) == len(lb) > 0
    assert (la.class_id == lb.class_id).all() and (la.pixels == lb.pixels).all()
    assert shapely.equals(la.geometry.values, lb.geometry.values).all()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, tiny_bundle: Path) -> Path:
    """An undisturbed threaded run with 64-px chunks."""
    folder = tmp_path_factory.mktemp("reference")
    run_workflow(write_workflow(folder, tiny_bundle), show_progress=False)
    return folder


@pytest.mark.slow
def test_other_chunk_size_and_a_local_cluster_give_identical_outputs(
    reference: Path, tmp_path: Path, tiny_bundle: Path
) -> None:
    other = tmp_path / "chunks"
    other.mkdir()
    run_workflow(write_workflow(other, tiny_bundle, chunk=160), show_progress=False)
    assert_same_outputs(reference, other)
    cluster = tmp_path / "cluster"
    cluster.mkdir()
    reports = run_workflow(
        write_workflow(cluster, tiny_bundle, executor="distributed"), show_progress=False
    )
    assert reports[0].figures.chunks > 10
    manifest = json.loads((cluster / "out" / "manifest.json").read_text())
    assert manifest["executor"] == {"kind": "distributed", "workers": 2}
    assert_same_outputs(reference, cluster)


@pytest.mark.slow
def test_the_process_pool_executor_gives_identical_outputs(
    reference: Path, tmp_path: Path, tiny_bundle: Path
) -> None:
    run_workflow(write_workflow(tmp_path, tiny_bundle, executor="processes"), show_progress=False)
    assert_same_outputs(reference, tmp_path)


@pytest.mark.slow
def test_a_worker_killed_mid_run_does_not_change_outputs(
    reference: Path, tmp_path: Path, tiny_bundle: Path
) -> None:
    from dask.distributed import Client, LocalCluster

    folder = tmp_path / "killed"
    folder.mkdir()
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        victims = list(client.run(os.getpid).values())
        parts = folder / "out" / ".geoseg-work" / "parts"

        def kill_when_started() -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if parts.exists() and len(list(parts.glob("r*.json"))) >= 3:
                    os.kill(victims[0], signal.SIGKILL)
                    return
                time.sleep(0.02)

        import threading

        killer = threading.Thread(target=kill_when_started)
        killer.start()
        spec = ExecutorSpec("distributed", 2, cluster.scheduler_address)
        reports = run_workflow(
            write_workflow(folder, tiny_bundle), show_progress=False, executor=spec
        )
        killer.join()
        assert reports[0].figures.chunks > 10
        assert victims[0] not in client.run(os.getpid).values(), "the worker really died"
    assert_same_outputs(reference, folder)


def start_and_kill(workflow: Path, out: Path, after_chunks: int) -> int:
    """Start ``geoseg run`` in a subprocess and SIGKILL it once some chunks are finished."""
    process = subprocess.Popen(
        [sys.executable, "-m", "geoseg.cli.main", "-q", "run", str(workflow)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    parts = out / ".geoseg-work" / "parts"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        if parts.exists() and len(list(parts.glob("r*.json"))) >= after_chunks:
            break
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    return len(list(parts.glob("r*.json")))


@pytest.mark.slow
def test_resume_after_kill_recomputes_only_missing_chunks(
    reference: Path, tmp_path: Path, tiny_bundle: Path
) -> None:
    workflow = write_workflow(tmp_path, tiny_bundle)
    finished = start_and_kill(workflow, tmp_path / "out", after_chunks=12)
    assert not (tmp_path / "out" / "classes.tif").exists()
    reports = run_workflow(workflow, show_progress=False, resume=True)
    figures = reports[0].figures
    assert figures.chunks_reused == finished >= 12
    assert figures.chunks_computed == figures.chunks - finished
    assert_same_outputs(reference, tmp_path)


@pytest.mark.slow
def test_a_changed_config_refuses_to_resume(tmp_path: Path, tiny_bundle: Path) -> None:
    start_and_kill(write_workflow(tmp_path, tiny_bundle), tmp_path / "out", after_chunks=2)
    changed = write_workflow(tmp_path, tiny_bundle, min_area=5000)
    with pytest.raises(ResumeError, match=r"cannot resume .*the step's configuration changed"):
        run_workflow(changed, show_progress=False, resume=True)
    # without --resume the unfinished run is discarded and a fresh one completes
    reports = run_workflow(changed, show_progress=False)
    assert reports[0].figures.chunks_reused == 0


def test_fingerprint_sees_catalog_model_and_band_order_changes(
    tmp_path: Path, tiny_bundle: Path
) -> None:
    import shutil

    from geoseg.errors import BundleError
    from geoseg.executor import ExecutorSpec
    from geoseg.model.bundle import meta_checksum
    from geoseg.workflow.manifest import Fingerprint
    from geoseg.workflow.plan import plan_workflow

    def fingerprint_of(catalog_text: str, bundle: Path) -> Fingerprint:
        catalog = tmp_path / "catalog.yaml"
        catalog.write_text(catalog_text)
        path = tmp_path / "wf.yaml"
        path.write_text(
            f"version: 1\ncatalog: {catalog}\nsteps:\n  - predict:\n      source: nc-landsat7\n"
            f"      model: {bundle}\n      output: {tmp_path / 'out'}\n"
        )
        found = plan_workflow(path).steps[0].fingerprint(ExecutorSpec(workers=2))
        assert found is not None, "predict steps have a fingerprint"
        return found

    original = CATALOG.read_text().replace("${GEOSEG_DATA}", str(REPO.parent / "shared/data"))
    base = fingerprint_of(original, tiny_bundle)
    assert fingerprint_of(original, tiny_bundle) == base
    scaled = original.replace('lsat7_2000_30.tif"}', 'lsat7_2000_30.tif", scale: 0.5}')
    assert base.differences(fingerprint_of(scaled, tiny_bundle)) == [
        "the source's catalog definition"
    ]
    swapped = (
        original.replace("lsat7_2000_30.tif", "TMP")
        .replace("lsat7_2000_40.tif", "lsat7_2000_30.tif")
        .replace("TMP", "lsat7_2000_40.tif")
    )
    changed = base.differences(fingerprint_of(swapped, tiny_bundle))
    assert "the source's catalog definition" in changed and any("input" in c for c in changed)
    copy = tmp_path / "copy.geoseg"
    shutil.copytree(tiny_bundle, copy)
    before = fingerprint_of(original, copy)
    edited = (copy / "bundle.json").read_text().replace('"mean": 60.0', '"mean": 61.0', 1)
    (copy / "bundle.json").write_text(edited)
    with pytest.raises(BundleError, match=r"bundle\.json does not match its own checksum"):
        fingerprint_of(original, copy)  # an edited bundle.json is refused outright
    data = json.loads(edited)
    (copy / "bundle.json").write_text(json.dumps({**data, "meta_sha256": meta_checksum(data)}))
    assert before.differences(fingerprint_of(original, copy)) == ["the model's bundle.json"]


def test_a_second_run_on_the_same_folder_is_refused(tmp_path: Path, tiny_bundle: Path) -> None:
    from geoseg.errors import OutputExistsError
    from geoseg.workflow.lock import output_lock
    from geoseg.workflow.step import LOCK_FILE

    workflow = write_workflow(tmp_path, tiny_bundle)
    with (
        output_lock(tmp_path / "out" / LOCK_FILE),
        pytest.raises(OutputExistsError, match=r"another geoseg run \(pid \d+\) is writing .*out"),
    ):
        run_workflow(workflow, show_progress=False)
    assert not (tmp_path / "out" / LOCK_FILE).exists(), "the holder removes it as it ends"
    run_workflow(workflow, show_progress=False)
    assert (tmp_path / "out" / "classes.tif").exists()
    assert not (tmp_path / "out" / LOCK_FILE).exists(), "a finished run leaves no lock file"


def test_a_lock_taken_on_a_file_its_holder_just_removed_is_taken_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race of removing lock files: B opens the file, A finishes and unlinks it, B locks
    the orphan. B must notice and lock a file that is really at the path."""
    from geoseg.workflow.lock import output_lock

    path = tmp_path / "out" / ".geoseg.lock"
    path.parent.mkdir()
    path.write_text("pid 1")
    orphan = os.open(path, os.O_RDWR)
    path.unlink()  # the previous holder finished
    real_open, opened = os.open, []

    def open_orphan_first(*args: Any, **kwargs: Any) -> int:
        opened.append(args[0])
        return orphan if len(opened) == 1 else real_open(*args, **kwargs)

    monkeypatch.setattr(os, "open", open_orphan_first)
    with output_lock(path):
        assert len(opened) == 2, "the orphan was dropped and the path opened again"
        assert path.read_text() == f"pid {os.getpid()}"
    assert not path.exists()


@pytest.mark.slow
def test_stale_outputs_go_even_after_an_interrupted_overwrite(
    tmp_path: Path, tiny_bundle: Path
) -> None:
    full = write_workflow(tmp_path, tiny_bundle)
    full.write_text(
        full.read_text().replace(
            "min_area_m2: 3000}", "min_area_m2: 3000, formats: [gpkg, geojson]}"
        )
    )
    run_workflow(full, show_progress=False)
    assert (tmp_path / "out" / "landcover.geojson").exists()
    slim = write_workflow(tmp_path, tiny_bundle, min_area=4000)  # gpkg only
    command = [sys.executable, "-m", "geoseg.cli.main", "-q", "run", str(slim), "--overwrite"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    parts = tmp_path / "out" / ".geoseg-work" / "parts"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        if parts.exists() and len(list(parts.glob("r*.json"))) >= 2:
            break
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert (tmp_path / "out" / "landcover.geojson").exists(), "untouched until commit"
    assert (tmp_path / "out" / "manifest.json").exists(), "the old run stays described"
    run_workflow(slim, overwrite=True, show_progress=False)
    assert not (tmp_path / "out" / "landcover.geojson").exists()


def _die(_: int) -> int:
    os.kill(os.getpid(), signal.SIGKILL)
    return 0


def test_a_dying_process_pool_worker_names_the_chunks() -> None:
    from geoseg.errors import ChunkFailedError
    from geoseg.executor import open_executor

    with (
        open_executor(ExecutorSpec("processes", 1), show_progress=False) as ex,
        pytest.raises(ChunkFailedError, match=r"a worker process died while running item 0"),
    ):
        ex.map(_die, [0], "test", lambda i: f"item {i}")
