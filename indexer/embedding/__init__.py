"""Images to vectors: the exported model in process or as a Beam job (per-shard outputs, progress), test-time augmentation, photo folders."""
