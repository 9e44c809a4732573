"""The LLM gateway: the only path from project code to a language model."""

import os

# litellm fetches a remote cost map at import unless told not to; nothing here may download.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
