"""fwi-lightning: an experiment framework for deep-learning full-waveform inversion.

Importing this package is cheap: it imports neither torch nor Lightning, so the
command-line entry (`fwi-run --help`, `fwi-run list`) answers at once.
"""

__version__ = "0.1.0"
