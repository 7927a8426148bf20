"""The `acecoder` command line, one module per command family; `main` is the entry point."""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
