"""Client-side defenses, one file each; they wrap the honest client's rows or training step."""

from clients.defenses import psim, w2s_defense  # noqa: F401  (register the defenses)
