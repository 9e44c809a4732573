r"""Will a training run fit? Bytes per device of parameters, optimizer state, gradients and activations.

    python -m tools.plan_memory --gin_file=configs/llama/llama3_1_8b.gin --mesh=fsdp=8 \
        --batch=8 --seq_len=8192 --device_gib=80
    python -m tools.plan_memory --gin_file=configs/llama/llama3_1_70b.gin --mesh=fsdp=8,tensor=8 \
        --batch=64 --seq_len=8192 --device_gib=80 --suggest

Nothing is allocated: shapes come from `jax.eval_shape`, shardings from the config's logical-axis rules
over an abstract mesh of any size (`libs/train/planner.py`). `--suggest` searches fsdp x tensor meshes
for the smallest that fits. Activations are an analytic estimate (fused attention unless
--no-fused_attention); on small configs `--compile` also prints the compiled step's memory analysis on
this machine's devices.
"""

from __future__ import annotations

import sys

from absl import app, flags

from libs.models import registry  # registers make_model and the model configs with gin
from libs.train import launch, optim, planner  # noqa: F401 (optim registers make_optimizer)

_GIN_FILE = flags.DEFINE_multi_string("gin_file", [], "Gin files of the model (and optimizer), in order.")
_GIN_BINDINGS = flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, applied after the files.")
_MESH = flags.DEFINE_string("mesh", "fsdp=8", "Mesh as axis=size pairs over data, fsdp, tensor.")
_BATCH = flags.DEFINE_integer("batch", 8, "Global batch in sequences.")
_SEQ_LEN = flags.DEFINE_integer("seq_len", 8192, "Tokens per sequence.")
_DEVICE_GIB = flags.DEFINE_float("device_gib", 80.0, "Memory per device in GiB (0: do not judge).")
_SUGGEST = flags.DEFINE_bool("suggest", False, "Also find the smallest fsdp x tensor mesh that fits.")
_FUSED = flags.DEFINE_bool("fused_attention", True, "Attention keeps no T x T scores (cuDNN / flash).")


def _mesh(text: str) -> dict[str, int]:
    mesh = {}
    for part in filter(None, text.split(",")):
        name, _, size = part.partition("=")
        if name not in ("data", "fsdp", "tensor") or not size.isdigit() or int(size) < 1:
            raise launch.ConfigError(f"--mesh={text!r}: expected axis=size pairs over data, fsdp, tensor")
        mesh[name] = int(size)
    return mesh


def main(argv):
    del argv
    try:
        launch.parse_config(_GIN_FILE.value, _GIN_BINDINGS.value)
        device = int(_DEVICE_GIB.value * planner.GIB)
        plan = planner.plan_config(_SEQ_LEN.value, _BATCH.value, _mesh(_MESH.value), device, _FUSED.value)
    except (launch.ConfigError, launch.UserError) as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        sys.exit(launch.EXIT_USER_ERROR)
    print(plan.table())
    if _SUGGEST.value:
        cfg = registry.make_model().cfg
        kv = getattr(cfg, "num_kv_heads", cfg.num_heads)
        best = planner.smallest_mesh(
            lambda mesh: planner.plan_config(_SEQ_LEN.value, _BATCH.value, mesh, device, _FUSED.value),
            cfg.num_heads, kv)
        print("smallest fitting mesh:" if best else "no fsdp x tensor mesh up to 65,536 devices fits")
        if best:
            print(best.table())


if __name__ == "__main__":
    app.run(main)
