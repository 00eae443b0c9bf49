"""hubroute's benchmark suite: one entry point (``bench/run.py``), one config per experiment
(``bench/configs/*.toml``), results in ``bench/results/<experiment>/``."""
