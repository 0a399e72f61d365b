"""Files that describe runs for people: curves and pictures (``plots``), run records and summary tables
(``records``) for ``scripts/collect_results.py``, ``scripts/plot_curves.py``, ``test.py`` and the end of
training."""
