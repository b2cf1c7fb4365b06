"""Stage 1: raw scans -> PREP_DIR (frames, selections, geometry, objects, BEV) and benchmark converters."""
