"""acecoder: infrastructure for reinforcement learning of code models (AceCoder recipe)."""

__version__ = "0.1.0"
