"""Integer grid arithmetic: the global inference-tile grid and the Dask chunk plan."""
