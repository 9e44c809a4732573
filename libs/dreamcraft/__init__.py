"""DreamCraft (Earle et al., FDG 2024): a quantized field of Minecraft blocks fitted to guidance under functional
constraints. Model and renderer: libs/models/voxel_field.py, voxel_render.py; blocks, constraints and exports:
libs/envs/voxels/; here: guidance, the training loop and the experiment."""
