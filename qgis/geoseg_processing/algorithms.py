"""The algorithms: run a workflow, predict a raster layer, evaluate a class map."""

import json
import os
import tempfile

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingOutputRasterLayer,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingUtils,
)

from .runner import run_geoseg


class _GeosegAlgorithm(QgsProcessingAlgorithm):
    """What every geoseg algorithm shares: group, creation, loading styled outputs."""

    name_ = ""
    title = ""
    help = ""

    def name(self):
        """The provider name shown in the toolbox."""
        return self.name_

    def displayName(self):
        return self.title

    def group(self):
        return "geoseg"

    def groupId(self):
        return "geoseg"

    def shortHelpString(self):
        return self.help

    def createInstance(self):
        return type(self)()

    def load(self, context, path, name, layer_name=None):
        """Load ``path`` into the project when the algorithm ends, styled by its .qml sidecar."""
        if not os.path.exists(path):
            return
        source = f"{path}|layername={layer_name}" if layer_name else path
        details = QgsProcessingContext.LayerDetails(name, context.project(), name)
        context.addLayerToLoadOnCompletion(source, details)
        self._styles = getattr(self, "_styles", {})
        self._styles[source] = os.path.splitext(path)[0] + ".qml"

    def postProcessAlgorithm(self, context, feedback):
        """Apply geoseg's QGIS styles (class colours and names) to the loaded layers."""
        for source, qml in getattr(self, "_styles", {}).items():
            layer = QgsProcessingUtils.mapLayerFromString(source, context)
            if layer is not None and os.path.exists(qml):
                layer.loadNamedStyle(qml)
                layer.triggerRepaint()
        return {}


class RunWorkflowAlgorithm(_GeosegAlgorithm):
    """``geoseg run WORKFLOW``."""

    name_ = "runworkflow"
    title = "Run a geoseg workflow"
    help = (
        "Runs a geoseg workflow YAML file (geoseg run). Steps already up to date are skipped; "
        "Overwrite replaces existing outputs; Resume continues an interrupted run."
    )

    def initAlgorithm(self, config=None):
        """Declare the parameters and outputs."""
        self.addParameter(QgsProcessingParameterFile("WORKFLOW", "Workflow", extension="yaml"))
        self.addParameter(QgsProcessingParameterBoolean("OVERWRITE", "Overwrite", False))
        self.addParameter(QgsProcessingParameterBoolean("RESUME", "Resume", False))

    def processAlgorithm(self, parameters, context, feedback):
        """Run geoseg for these parameters."""
        arguments = ["run", self.parameterAsFile(parameters, "WORKFLOW", context)]
        if self.parameterAsBool(parameters, "OVERWRITE", context):
            arguments.append("--overwrite")
        if self.parameterAsBool(parameters, "RESUME", context):
            arguments.append("--resume")
        return {"EXIT_CODE": run_geoseg(arguments, feedback)}


class PredictAlgorithm(_GeosegAlgorithm):
    """Predict a raster layer with a model bundle: class map, confidence, polygons."""

    name_ = "predict"
    title = "Predict land cover of a raster layer"
    help = (
        "Classifies a raster layer with a geoseg model bundle (a .geoseg folder). Band names "
        "default to the model's when the layer has as many bands; otherwise give them in "
        "order, comma-separated. Writes classes.tif, confidence.tif and polygons into the "
        "output folder and loads them, styled."
    )

    def initAlgorithm(self, config=None):
        """Declare the parameters and outputs."""
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Raster layer"))
        self.addParameter(
            QgsProcessingParameterFile(
                "MODEL", "Model bundle (.geoseg folder)", QgsProcessingParameterFile.Folder
            )
        )
        self.addParameter(
            QgsProcessingParameterString("BANDS", "Band names, in order", optional=True)
        )
        self.addParameter(QgsProcessingParameterString("UNITS", "Units of the values", "DN"))
        self.addParameter(
            QgsProcessingParameterNumber(
                "MIN_AREA", "Minimum polygon area (m²)", QgsProcessingParameterNumber.Double, 0.0
            )
        )
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT", "Output folder"))
        self.addOutput(QgsProcessingOutputRasterLayer("CLASSES", "Class map"))
        self.addOutput(QgsProcessingOutputRasterLayer("CONFIDENCE", "Confidence"))
        self.addOutput(QgsProcessingOutputVectorLayer("POLYGONS", "Polygons"))

    def processAlgorithm(self, parameters, context, feedback):
        """Run geoseg for these parameters."""
        layer = self.parameterAsRasterLayer(parameters, "INPUT", context)
        model = self.parameterAsFile(parameters, "MODEL", context)
        output = self.parameterAsString(parameters, "OUTPUT", context)
        path = layer.source().split("|")[0]
        if not os.path.isfile(path):
            raise QgsProcessingException(f"{layer.name()} is not a local raster file ({path})")
        bands = [b.strip() for b in self.parameterAsString(parameters, "BANDS", context).split(",")]
        bands = [b for b in bands if b] or _model_bands(model, layer.bandCount())
        work = tempfile.mkdtemp(prefix="geoseg-qgis-")
        catalog = os.path.join(work, "catalog.yaml")
        with open(catalog, "w", encoding="utf-8") as handle:
            json.dump(  # JSON is YAML
                {
                    "version": 1,
                    "sources": {
                        "layer": {
                            "file": path,
                            "units": self.parameterAsString(parameters, "UNITS", context),
                            "bands": [{"name": b} for b in bands],
                        }
                    },
                },
                handle,
            )
        workflow = os.path.join(work, "predict.yaml")
        min_area = self.parameterAsDouble(parameters, "MIN_AREA", context)
        with open(workflow, "w", encoding="utf-8") as handle:
            json.dump(
                {
                    "version": 1,
                    "catalog": catalog,
                    "steps": [
                        {
                            "predict": {
                                "source": "layer",
                                "model": model,
                                "output": output,
                                "vector": {"min_area_m2": min_area},
                            }
                        }
                    ],
                },
                handle,
            )
        run_geoseg(["run", workflow, "--overwrite"], feedback)
        classes = os.path.join(output, "classes.tif")
        confidence = os.path.join(output, "confidence.tif")
        polygons = os.path.join(output, "landcover.gpkg")
        self.load(context, classes, "geoseg classes")
        self.load(context, confidence, "geoseg confidence")
        self.load(context, polygons, "geoseg polygons", "landcover")
        return {"CLASSES": classes, "CONFIDENCE": confidence, "POLYGONS": polygons}


def _model_bands(model, count):
    """The model bundle's band names, when the layer has that many bands."""
    try:
        with open(os.path.join(model, "bundle.json"), encoding="utf-8") as handle:
            names = [b["name"] for b in json.load(handle)["bands"]]
    except (OSError, KeyError, ValueError) as exc:
        raise QgsProcessingException(f"{model} is not a geoseg model bundle: {exc}") from exc
    if len(names) != count:
        raise QgsProcessingException(
            f"the layer has {count} bands and the model takes {len(names)} ({', '.join(names)}): "
            "give the layer's band names in order in 'Band names'"
        )
    return names


class EvaluateAlgorithm(_GeosegAlgorithm):
    """``geoseg evaluate``: a class map against a catalog source's labels."""

    name_ = "evaluate"
    title = "Evaluate a class map"
    help = (
        "Scores a class map against the labels of a source in a geoseg data catalog: per-class "
        "IoU, mIoU, boundary F, confusion and overlay plots, and an error map (loaded, styled)."
    )

    def initAlgorithm(self, config=None):
        """Declare the parameters and outputs."""
        self.addParameter(QgsProcessingParameterRasterLayer("PREDICTION", "Class map"))
        self.addParameter(QgsProcessingParameterFile("CATALOG", "Data catalog", extension="yaml"))
        self.addParameter(QgsProcessingParameterString("SOURCE", "Catalog source"))
        self.addParameter(QgsProcessingParameterString("LABELS", "Label layer", optional=True))
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT", "Output folder"))
        self.addOutput(QgsProcessingOutputFile("METRICS", "Metrics (JSON)"))
        self.addOutput(QgsProcessingOutputRasterLayer("ERRORS", "Error map"))

    def processAlgorithm(self, parameters, context, feedback):
        """Run geoseg for these parameters."""
        output = self.parameterAsString(parameters, "OUTPUT", context)
        arguments = [
            "evaluate",
            "--prediction",
            self.parameterAsRasterLayer(parameters, "PREDICTION", context).source().split("|")[0],
            "--source",
            self.parameterAsString(parameters, "SOURCE", context),
            "--catalog",
            self.parameterAsFile(parameters, "CATALOG", context),
            "--output",
            output,
            "--overwrite",
        ]
        labels = self.parameterAsString(parameters, "LABELS", context)
        if labels:
            arguments += ["--labels", labels]
        run_geoseg(arguments, feedback)
        errors = os.path.join(output, "errors.tif")
        self.load(context, errors, "geoseg errors")
        return {"METRICS": os.path.join(output, "metrics.json"), "ERRORS": errors}
