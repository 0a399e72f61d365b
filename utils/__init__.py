"""Pure helpers: geometry, heatmaps, evaluation, and the user-facing error type."""
