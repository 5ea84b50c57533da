"""The QGIS Processing provider (issue 14), headless in Debian's QGIS.

``tests/qgis/check_provider.py`` runs in Debian's ``python3`` (which has the ``qgis`` module;
geoseg's own environment never imports it): it loads the provider, runs its predict algorithm on
the sample scene, which runs this environment's ``geoseg`` out of process, and reports what QGIS
sees. Skipped, saying why, where QGIS is not installed (``.ci/run`` installs ``python3-qgis``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

QGIS_PYTHON = os.environ.get("GEOSEG_QGIS_PYTHON", "/usr/bin/python3")


def _has_qgis() -> bool:
    if not Path(QGIS_PYTHON).exists():
        return False
    probe = subprocess.run([QGIS_PYTHON, "-c", "import qgis.core"], capture_output=True)
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(
    not _has_qgis(),
    reason=f"no QGIS Python at {QGIS_PYTHON}: install Debian's python3-qgis and qgis-providers "
    "(.ci/run does) or set GEOSEG_QGIS_PYTHON",
)


def test_the_provider_loads_predicts_the_sample_and_its_outputs_are_valid_and_styled(
    tmp_path: Path,
) -> None:
    geoseg = shutil.which("geoseg", path=str(Path(sys.executable).parent))
    assert geoseg is not None
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "GEOSEG_EXECUTABLE": geoseg}
    env["XDG_RUNTIME_DIR"] = str(tmp_path)
    done = subprocess.run(
        [QGIS_PYTHON, str(REPO / "tests" / "qgis" / "check_provider.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["algorithms"] == ["geoseg:evaluate", "geoseg:predict", "geoseg:runworkflow"]
    assert found["to_load"] == ["geoseg classes", "geoseg confidence", "geoseg polygons"]
    assert found["progress_steps"] > 1 and found["progress_max"] == 100.0, "the progress bar moved"
    assert found["classes_valid"] and found["confidence_valid"] and found["polygons_valid"]
    assert found["classes_renderer"] == "paletted", "styled by classes.qml"
    assert found["classes_entries"][:2] == ["water", "tree"]
    assert found["polygons_renderer"] == "categorizedSymbol", "styled by landcover.qml"
    assert found["polygons_count"] > 10
    assert found["classes_crs"] == found["polygons_crs"] == "EPSG:32119"
    assert Path(found["rendered"]).stat().st_size > 10_000, "QGIS rendered the map"
