"""The index on disk: Annoy files (checked before load), shards queried as one, the committed index folder and its manifest."""
