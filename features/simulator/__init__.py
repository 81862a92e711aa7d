"""The embedded worlds: the default (a seeded simulation of a customs administration's declarations, manifests
and registry) and islas (a third-party export in its own layout, ingested through its mapping file)."""
from features.simulator.files import generate_world, write_world
from features.simulator.islas import IslasWorld, simulate_islas, write_islas
from features.simulator.world import World, simulate, world_slices

__all__ = ["IslasWorld", "World", "generate_world", "simulate", "simulate_islas", "world_slices", "write_islas",
           "write_world"]
