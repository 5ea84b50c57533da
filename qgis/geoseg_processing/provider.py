"""The Processing provider: geoseg's algorithms in the toolbox under "geoseg"."""

from qgis.core import QgsProcessingProvider

from .algorithms import EvaluateAlgorithm, PredictAlgorithm, RunWorkflowAlgorithm


class GeosegProvider(QgsProcessingProvider):
    """Provider ``geoseg``: run a workflow, predict a raster layer, evaluate a class map."""

    def id(self):
        """The provider id, ``geoseg``."""
        return "geoseg"

    def name(self):
        """The provider name shown in the toolbox."""
        return "geoseg"

    def longName(self):
        """The provider's long name."""
        return "geoseg segmentation"

    def loadAlgorithms(self):
        """Add the three algorithms."""
        for algorithm in (RunWorkflowAlgorithm(), PredictAlgorithm(), EvaluateAlgorithm()):
            self.addAlgorithm(algorithm)
