"""What the trainer exports and the indexer loads: names only, no TensorFlow import.

Under a training run's `--output_dir`:
  export/embedding.keras   Keras model: float32 images [N, S, S, 3] in [0, 255] -> embedding [N, D]
  export/saved_model/      SavedModel whose `serving_default` signature takes encoded image bytes
                           and returns L2-normalised embeddings, with evaluation preprocessing
                           (decode, centre crop, resize) inside the graph
  export/export.json       {"embedding_dim", "image_size", "backbone", "weights", "epochs_trained"}
"""

EXPORT_DIR = "export"
KERAS_FILE = "embedding.keras"
SAVED_MODEL_DIR = "saved_model"
EXPORT_INFO = "export.json"
SIGNATURE = "serving_default"
INPUT_KEY = "image_bytes"  # tf.string, shape [None]
OUTPUT_KEY = "embedding"  # tf.float32, shape [None, embedding_dim], unit L2 norm
