"""geoseg's QGIS Processing provider (a QGIS plugin; QGIS imports it, geoseg never does)."""


def classFactory(iface):
    """The plugin object QGIS asks for."""
    from .plugin import GeosegPlugin

    return GeosegPlugin(iface)
