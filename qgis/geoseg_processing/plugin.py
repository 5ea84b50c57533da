"""The plugin: registers the geoseg Processing provider while QGIS runs it."""

from qgis.core import QgsApplication

from .provider import GeosegProvider


class GeosegPlugin:
    """Adds the provider on start, removes it on unload."""

    def __init__(self, iface=None):
        self.iface = iface
        self.provider = None

    def initProcessing(self):
        """Register the provider with QGIS's Processing registry."""
        self.provider = GeosegProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):
        """QGIS calls this when the GUI starts; Processing is all there is."""
        self.initProcessing()

    def unload(self):
        """Remove the provider."""
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
