"""Training segmentation networks from labelled rasters (imports torch)."""
