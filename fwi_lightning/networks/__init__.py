"""Backbones mapping seismic data [B, S, T, R] to velocity [B, 1, NZ, NX] in m/s.

Each is registered in the ``fwi_lightning.networks`` entry-point group and built as
``registry.build("networks", {"name": ..., **params}, key=..., problem=problem)``.
"""

from fwi_lightning.networks.base import VelocityNetwork

__all__ = ["VelocityNetwork"]
