"""Class map -> polygons, chunk by chunk, equal to a whole-scene polygonize (docs/DESIGN.md §4)."""
