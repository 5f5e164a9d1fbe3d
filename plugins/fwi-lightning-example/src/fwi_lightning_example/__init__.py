"""fwi-lightning-example: a small component in every fwi-lightning entry-point group.

==============================  ================  ==========================================
registered name                 group             what it is
==============================  ================  ==========================================
``example_mlp``                 networks          fully connected net on pooled gathers
``example_noise_consistency``   paradigms         supervised + prediction consistency under noise;
                                                  produces ``velocity`` and ``noisy_velocity``
``example_anomaly``             velocity          Gaussian anomaly in a depth-gradient background
``example_gradient_difference`` losses            difference of velocity gradient magnitudes
``example_noisy_l1``            losses            L1 of the ``noisy_velocity`` output (a named output)
``example_saturation``          callbacks         logs how much of the prediction sits at the bounds
``example_dead_traces``         datamodules       any data module with dead receivers
==============================  ================  ==========================================

The package imports only fwi-lightning's public API; fwi-lightning finds the components
through the entry points in ``pyproject.toml`` (nothing here is imported until used).
"""

__version__ = "0.1.0"
