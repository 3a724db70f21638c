"""Records to P x K batches: shard pools, class-balanced planning, crop-window decode on the host and the batched device augmentation, record counts, damaged shards."""
