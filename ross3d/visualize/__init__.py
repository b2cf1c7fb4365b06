"""Reconstruction previews: sample the denoiser for masked views and the BEV, compare in latent space, decode."""
