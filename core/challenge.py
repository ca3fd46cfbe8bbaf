"""The challenge's facts that code depends on, each declared once (docs/challenge.md explains them).

Everything here is the official MicroLens_1M_MMCTR layout and submission format; a model's own sizes
(its history window, its embedding widths) live in its config, not here.
"""

from __future__ import annotations

DATASET_DIR = "MicroLens_1M_x1"  # the folder of train/valid/test/item_info parquet files under a data root
HISTORY_LEN = 64  # item_seq: the last 64 items, left-padded with 0, most recent last
TAGS_LEN = 5  # item_tags: 5 tag ids per item, 0-padded
EMB_DIM = 128  # item_emb_d128: the Task 1 embedding's width
LEVEL_VOCAB = 11  # likes_level and views_level take 1..10; 0 is padding

# the prediction column of each track (prediction.csv: ID plus this column)
TRACK_COLUMNS = {1: "Task1", 2: "Task2", 3: "Task1&2"}
SCORE_COLUMNS = tuple(TRACK_COLUMNS.values())

# torch dtype name -> safetensors dtype tag (checkpoint headers are read without torch)
TORCH_TO_SAFETENSORS = {"float32": "F32", "float64": "F64", "float16": "F16", "bfloat16": "BF16", "int64": "I64",
                        "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL"}
