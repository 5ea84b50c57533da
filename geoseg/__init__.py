"""geoseg: land-cover, crop and weed segmentation of large rasters into GIS-ready outputs.

The Python API (:mod:`geoseg.api`) is available from the package itself; it is imported on
first use, so ``import geoseg`` stays cheap::

    import geoseg

    report = geoseg.predict("nc-landsat7-sample", "models/landcover.geoseg", "out/nb")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Model",
    "__version__",
    "evaluate",
    "export_annotations",
    "import_annotations",
    "load_model",
    "open_source",
    "predict",
    "train",
]

if TYPE_CHECKING:
    from geoseg.api import Model, evaluate, load_model, open_source, predict, train


def __getattr__(name: str) -> Any:
    """The API functions, imported from :mod:`geoseg.api` when first used."""
    if name in __all__:
        import geoseg.api

        return getattr(geoseg.api, name)
    raise AttributeError(f"module 'geoseg' has no attribute {name!r}")
