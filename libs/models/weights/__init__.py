"""Llama weights from GGUF, Hugging Face safetensors and Meta .pth files, into our param tree and back to HF.

    cfg = import_checkpoint("model.gguf", "/ckpt/smollm2")      # orbax params + llama_config.json
    cfg, params = load_params("/ckpt/smollm2", mesh=mesh)         # sharded by the model's logical axes
    cfg, params = load_gguf(embedded_model_path())                # in memory, the shipped SmolLM2
    export_hf(cfg, params, "/hf/smollm2")                         # model.safetensors + config.json
"""

from libs.models.weights.store import (FORMATS, detect_format, embedded_model_path, export_hf, import_checkpoint,
                                       load, load_gguf, load_params, read)

__all__ = ["FORMATS", "detect_format", "embedded_model_path", "export_hf", "import_checkpoint", "load", "load_gguf",
           "load_params", "read"]
