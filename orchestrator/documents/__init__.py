"""Parsers and renderers for the harness's markdown documents (lossless round trip)."""
