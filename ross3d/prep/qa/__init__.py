"""Stage 1b: benchmark annotations (ScanQA, SQA3D, ScanRefer, Scan2Cap, Multi3DRefer) -> PREP_DIR/samples.parquet."""
