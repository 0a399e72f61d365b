"""Pure helpers with no project imports beyond ``utils``: geometry, heatmaps, drawing on arrays, and the
user-facing error type. Nothing here reads or writes a file (``tests/test_architecture.py`` checks it); files
are ``storage``'s."""
