"""Raw ScanNet I/O: the .sens stream reader and writer, meshes, axis alignment, aggregations -> objects."""
