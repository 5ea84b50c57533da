"""Workflow files: typed schema, planning (validation without data), execution, manifests."""
