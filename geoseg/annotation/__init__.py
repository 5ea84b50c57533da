"""The annotation loop: pre-annotations for labelling tools, corrections back, label QA."""
