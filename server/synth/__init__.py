"""Test-case synthesis: AceCoder's rewrite -> imagined tests -> proxy filter pipeline."""
