"""geoseg: land-cover, crop and weed segmentation of large rasters into GIS-ready outputs."""

__version__ = "0.1.0"
