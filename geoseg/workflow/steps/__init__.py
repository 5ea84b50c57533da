"""One module per step kind: its config model, its planned type and its run."""
