"""Stage 2: frozen encoders (FLUX VAE, SigLIP) once per scene into a fingerprinted Zarr/Parquet cache."""
