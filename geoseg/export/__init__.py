"""Writing outputs: atomic file replacement, COG rasters, vector formats, QGIS styles."""
