"""Run by tests/test_qgis.py with Debian's python3 (which has QGIS): load the geoseg Processing
provider headless, run its predict algorithm on the sample scene, check and render the outputs.

    QT_QPA_PLATFORM=offscreen GEOSEG_EXECUTABLE=.venv/bin/geoseg python3 check_provider.py OUT

Prints one JSON document with what it found.
"""

import json
import os
import shutil
import sys
from pathlib import Path

from qgis.core import (
    QgsApplication,
    QgsMapRendererSequentialJob,
    QgsMapSettings,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor

REPO = Path(__file__).resolve().parents[2]


class Progress(QgsProcessingFeedback):
    """Records the progress values the algorithm reports."""

    def __init__(self):
        super().__init__()
        self.values = []

    def setProgress(self, value):
        self.values.append(value)
        super().setProgress(value)


def main(out):
    QgsApplication.setPrefixPath("/usr", True)
    app = QgsApplication([], False)
    app.initQgis()
    sys.path.append("/usr/share/qgis/python/plugins")
    sys.path.insert(0, str(REPO / "qgis"))
    from processing.core.Processing import Processing

    Processing.initialize()
    from geoseg_processing import classFactory

    plugin = classFactory(None)
    plugin.initProcessing()
    registry = QgsApplication.processingRegistry()
    found = {
        "algorithms": sorted(a.id() for a in registry.algorithms() if a.provider().id() == "geoseg")
    }
    # A copy: QGIS writes histogram sidecars (.aux.xml) beside the rasters it opens.
    sample = out / "nc_landsat7_2000.tif"
    shutil.copyfile(REPO / "samples" / "nc_landsat7_2000.tif", sample)
    feedback = Progress()
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    algorithm = registry.createAlgorithmById("geoseg:predict")
    result, ok = algorithm.run(
        {
            "INPUT": str(sample),
            "MODEL": str(REPO / "models" / "landcover.geoseg"),
            "BANDS": "blue,green,red,nir,swir1,swir2",
            "MIN_AREA": 4000,
            "OUTPUT": str(out / "predict"),
        },
        context,
        feedback,
    )
    assert ok, "the algorithm failed"
    to_load = [details.name for details in context.layersToLoadOnCompletion().values()]
    classes = QgsRasterLayer(result["CLASSES"], "classes")
    confidence = QgsRasterLayer(result["CONFIDENCE"], "confidence")
    polygons = QgsVectorLayer(result["POLYGONS"] + "|layername=landcover", "polygons", "ogr")
    for layer in (classes, confidence, polygons):
        layer.loadDefaultStyle()  # the .qml beside each file, as QGIS does when it loads one
    found.update(
        to_load=sorted(to_load),
        progress_max=max(feedback.values or [0]),
        progress_steps=len(feedback.values),
        classes_valid=classes.isValid(),
        classes_renderer=classes.renderer().type(),
        classes_crs=classes.crs().authid(),
        classes_entries=[c.label for c in classes.renderer().classes()]
        if classes.renderer().type() == "paletted"
        else [],
        confidence_valid=confidence.isValid(),
        polygons_valid=polygons.isValid(),
        polygons_renderer=polygons.renderer().type(),
        polygons_count=polygons.featureCount(),
        polygons_crs=polygons.crs().authid(),
    )
    settings = QgsMapSettings()
    settings.setLayers([polygons, classes])
    settings.setDestinationCrs(classes.crs())
    settings.setExtent(classes.extent())
    settings.setOutputSize(QSize(978, 600))
    settings.setBackgroundColor(QColor("white"))
    job = QgsMapRendererSequentialJob(settings)
    job.start()
    job.waitForFinished()
    job.renderedImage().save(str(out / "qgis.png"), "png")
    found["rendered"] = str(out / "qgis.png")
    print(json.dumps(found), flush=True)
    # QGIS 3.22 can crash while tearing down a headless application; everything is reported,
    # so leave without the teardown.
    os._exit(0)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
