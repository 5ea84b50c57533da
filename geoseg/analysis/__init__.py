"""Analyses on class maps for GIS deliverables: zonal statistics, change between dates, plant
instances and boxes, and the weed-pressure grid."""
