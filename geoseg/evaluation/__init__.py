"""Metrics on stitched class maps: confusion matrices, per-class IoU, macro mIoU."""
