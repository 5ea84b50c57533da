"""Opening, validating and reading rasters: sources as lazy Dask arrays, label layers."""
