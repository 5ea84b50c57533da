"""The ``geoseg`` command: a thin Typer layer over the library functions."""
