"""Voxel worlds of Minecraft blocks: the palette, reference structures, functional constraints, exports.

Conventions shared by every module here and by the DreamCraft field and renderer:
- a grid is indexed [x, y, z] with y up (Minecraft's convention) and shape (X, Y, Z);
- a *hard* grid is an integer array of palette indices, 0 being `minecraft:air`;
- a *soft* grid is an array (X, Y, Z, C) of per-cell probabilities over the C palette entries (air first),
  summing to one over the last axis.
"""
