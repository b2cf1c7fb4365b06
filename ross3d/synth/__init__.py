"""Procedural ScanNet-format scenes and benchmark-style annotations: the embedded default data."""
