"""Stage 4: benchmark runners and metrics."""
