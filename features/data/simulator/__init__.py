"""The embedded default: a seeded simulation of a customs administration's declarations, manifests and registry."""
from features.data.simulator.world import World, simulate, write_world

__all__ = ["World", "simulate", "write_world"]
