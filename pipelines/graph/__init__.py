"""The Beam graph: planning shards, building them, routing outputs, the report, and running on Dask."""
