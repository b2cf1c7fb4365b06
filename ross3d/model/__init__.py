"""The Ross3D model on transformers: backbone, 3D position encoding, view masking, DiT denoiser, grounding."""
