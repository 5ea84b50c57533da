"""Analyses on class maps: zonal statistics, change, plant instances, weed-pressure grid."""
