"""Model bundles (metadata + weights) and the predictor that runs them.

``geoseg.model.bundle`` is torch-free so configs can be checked without loading torch.
"""
