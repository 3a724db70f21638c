"""What the trainer exports and the indexer loads: names only, no TensorFlow import.

Under a training run's `--output_dir`:
  export/embedding.keras   Keras model: float32 images [N, S, S, 3] in [0, 255] -> embedding [N, D]
  export/saved_model/      SavedModel with two signatures, both with the evaluation preprocessing
                           (decode, centre crop, resize) inside the graph and L2-normalised
                           float32 embeddings [N, D] out:
                             serving_default  image_bytes -> embedding, at the training size S
                             serving_sized    image_bytes, image_size -> embedding, the same network
                                              run at image_size x image_size (since version 2;
                                              multi-scale test-time augmentation,
                                              indexer/embedding/tta.py)
  export/export.json       {"embedding_dim", "image_size", "backbone", "weights", "epochs_trained",
                            "contract_version"}

Versions (export.json's "contract_version"; an export without it is version 1):
  1  serving_default only
  2  + serving_sized
"""

CONTRACT_VERSION = 2
EXPORT_DIR = "export"
KERAS_FILE = "embedding.keras"
SAVED_MODEL_DIR = "saved_model"
EXPORT_INFO = "export.json"
SIGNATURE = "serving_default"
INPUT_KEY = "image_bytes"  # tf.string, shape [None]
OUTPUT_KEY = "embedding"  # tf.float32, shape [None, embedding_dim], unit L2 norm
SIZED_SIGNATURE = "serving_sized"  # inputs INPUT_KEY and SIZE_KEY, output OUTPUT_KEY (version >= 2)
SIZE_KEY = "image_size"  # tf.int32 scalar >= 1: the side of the square the images are resized to
SIZED_SINCE = 2  # the contract version that added SIZED_SIGNATURE


def contract_version(export_info: dict) -> int:
    """The contract version an export's export.json declares (1 when it predates the field)."""
    return int(export_info.get("contract_version", 1))
