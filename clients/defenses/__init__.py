"""Client-side defenses, one file each; they wrap the honest client's rows or training step."""

from clients.defenses import inference_filter, psim, w2s_defense  # noqa: F401  (register the defenses)
from clients.defenses.inference_filter import INFERENCE_FILTERS  # noqa: E402

__all__ = ["INFERENCE_FILTERS"]
