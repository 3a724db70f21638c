"""One training run: devices and strategy, the loop and its checkpoints, the rerun guard, retrieval validation, and the export."""
