"""Files that describe runs for people: curves and pictures (``plots``), run records and summary tables
(``records``) for ``collect_results.py``, ``plot_curves.py``, ``test.py`` and the end of training."""
