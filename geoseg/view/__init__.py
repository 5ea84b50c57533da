"""``geoseg view``: a run's outputs as an interactive web map served on localhost."""
