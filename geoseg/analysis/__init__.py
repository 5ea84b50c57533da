"""Analyses on class maps for GIS deliverables: zonal statistics and change between dates."""
