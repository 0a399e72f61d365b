"""Command-line flags of the entry scripts and their mapping onto the config and the run description."""
