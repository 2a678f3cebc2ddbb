"""Apprentice: an OpenAI-compatible proxy that distils its teacher's calls into students."""

from __future__ import annotations

import os

# litellm fetches its price table from the internet at import unless told to use its own copy,
# and transformers would try the hub: apprentice works offline, whatever the entry point.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

__version__ = "0.1.0"
