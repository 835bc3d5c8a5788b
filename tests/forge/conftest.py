"""Shared set-up for the stand-in's own tests (the `forge` fixture comes from the root plugin)."""
