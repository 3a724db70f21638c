"""The embedding network (backbone, pooling, projection), the ArcFace head and the losses (pure functions checked against NumPy)."""
