"""Pure helpers with no project imports beyond ``utils``: geometry, heatmaps, drawing on arrays, JSON and
folder helpers, and the user-facing error type."""
