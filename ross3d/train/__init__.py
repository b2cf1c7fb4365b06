"""Stage 3: the DeepSpeed trainer that reads only cached tensors."""
