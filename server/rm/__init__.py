"""The AceCode-RM scoring service."""
