"""Client behaviours: the honest client (attacks and defenses wrap it)."""

from clients.honest import HonestClient

__all__ = ["HonestClient"]
