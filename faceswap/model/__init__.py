"""The face-swap model: autoencoder (shared encoder, two decoders), losses, augmentation,
the face-set sample stream for training, and the final model folder's I/O (export)."""
