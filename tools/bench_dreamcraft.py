r"""DreamCraft training-step speed: rays per second, forward + backward, on this machine's devices.

    python -m tools.bench_dreamcraft --grids=32 --rays=4096,16384
    python -m tools.bench_dreamcraft --grids=64,128 --rays=65536   # on a GPU

Rows, for each grid size N and rays per step:
  cached traversal   the training step as the photometric guidance runs it: the field at all N^3 cells, the
                     quantized blend, a gather of the precomputed ray traversals, compositing, the backward pass
                     and the Adam update (libs/dreamcraft/train.py), with the constraint losses (distribution,
                     adjacency, connectivity)
  traced per step    the anchor, in the same run: the same step tracing every ray through the grid inside the step
                     (what guidance from random cameras, such as text_image, pays)
Times are medians of `--repeats` timed steps after two untimed ones (compilation).
"""

from __future__ import annotations

import datetime
import statistics
import time

import jax
from absl import app, flags

from libs.dreamcraft import guidance as gd
from libs.dreamcraft.train import FieldRun, TrainConfig
from libs.envs.voxels import constraints as cs
from libs.envs.voxels.palette import load_palette
from libs.envs.voxels.structures import reference_structure
from libs.models import voxel_field
from libs.models import voxel_render as vr

_GRIDS = flags.DEFINE_list("grids", ["32"], "Grid sizes N (the field is N^3).")
_RAYS = flags.DEFINE_list("rays", ["4096", "16384"], "Rays per step.")
_REPEATS = flags.DEFINE_integer("repeats", 10, "Timed steps per row.")


class _TracedPerStep(gd.Photometric):
    """The anchor: traces each sampled ray inside the step instead of gathering a precomputed traversal."""

    def data(self):
        origins, dirs = vr.camera_rays(self.cameras, *self.images.shape[1:3])
        return {"origins": origins.reshape(-1, 3), "dirs": dirs.reshape(-1, 3), "rgb": self.images.reshape(-1, 3),
                "mask": self.masks.reshape(-1)}

    def sample(self, data, key):
        idx = jax.random.randint(key, (self.rays_per_step,), 0, data["origins"].shape[0])
        tr = vr.trace(data["origins"][idx], data["dirs"][idx], self.grid_shape)
        return tr, {"rgb": data["rgb"][idx], "mask": data["mask"][idx]}


def _time_step(run: FieldRun) -> float:
    state = run.init_state(0)
    data = run.guidance.data()
    step = jax.jit(run.train_step, donate_argnums=0)
    for _ in range(2):  # the second call compiles again: its state comes out of the first, committed to a device
        state, metrics = step(state, data)
    jax.block_until_ready(metrics)
    times = []
    for _ in range(_REPEATS.value):
        start = time.perf_counter()
        state, metrics = step(state, data)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv):
    del argv
    palette = load_palette()
    device = jax.devices()[0]
    print(f"# DreamCraft step speed: {device.platform} x{jax.device_count()} ({device.device_kind}), jax "
          f"{jax.__version__}, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print("| N | rays/step | traversal | ms/step | rays/s (fwd+bwd) |")
    print("|---|---|---|---|---|")
    for n in (int(g) for g in _GRIDS.value):
        reference = reference_structure(palette, "house", n)
        cams = gd.target_cameras(reference.shape, views=8)
        images, masks = gd.render_targets(reference, palette, cams, 128)
        constraints = cs.build(palette, [
            lambda p: cs.BlockDistribution(p, target={"stone_bricks": 0.5, "oak_planks": 0.5}),
            lambda p: cs.Adjacency(p, forbidden=[["water", "lava"]]), cs.Connectivity])
        for rays in (int(r) for r in _RAYS.value):
            for name, cls in (("cached", gd.Photometric), ("traced per step", _TracedPerStep)):
                guidance = cls(images, masks, cams, reference.shape, rays_per_step=rays)
                run = FieldRun(palette, guidance, constraints, voxel_field.FieldConfig(grid=(n, n, n)),
                               TrainConfig(steps=1000), method="quantized")
                seconds = _time_step(run)
                print(f"| {n} | {rays:,} | {name} | {seconds * 1e3:.1f} | {rays / seconds:,.0f} |", flush=True)


if __name__ == "__main__":
    app.run(main)
