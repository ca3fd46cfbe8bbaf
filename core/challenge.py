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
TRACKS = tuple(TRACK_COLUMNS)  # (1, 2, 3): a track is an int everywhere past the command line

# torch dtype name -> safetensors dtype tag (checkpoint headers are read without torch)
TORCH_TO_SAFETENSORS = {"float32": "F32", "float64": "F64", "float16": "F16", "bfloat16": "BF16", "int64": "I64",
                        "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL"}

# Track 1's fixed CTR model, the official baseline (DIN on FuxiCTR 2.3.7, DIN_MicroLens_1M_x1). Its training as
# FuxiCTR's BaseModel.fit runs it: Adam at 1e-3, batch 8192, early stopping with patience 3, gradient norm
# clipped at 10, unsorted batches (its batch norm sees random batches), lr x0.1 (floor 1e-6) after every epoch
# without a new best, decided every epoch (plateau_steps 0) at the batch given (min_epoch_steps 0). The keys
# are task2.train.TrainConfig's; task2 trains DIN with these, and the referee compares a Track 1 run's config
# with them. Track 1 may change only the tunables below.
DIN_BASELINE_TRAIN = {"epochs": 100, "batch_size": 8192, "learning_rate": 1e-3, "weight_decay": 0.0,
                      "lr_epoch_decay": 1.0, "lr_decay": 0.1, "min_learning_rate": 1e-6,
                      "early_stop_patience": 3, "grad_clip": 10.0, "length_aware": False,
                      "plateau_steps": 0, "min_epoch_steps": 0}
# its model config (task2.din.DINConfig's keys; the sizes of the item table and tag vocabulary come from the data)
DIN_BASELINE_MODEL = {"item_emb_dim": EMB_DIM, "tags_len": TAGS_LEN, "embedding_dim": 64, "max_len": HISTORY_LEN,
                      "attention_units": [512, 256], "attention_dropout": 0.1, "dnn_units": [1024, 512, 256],
                      "batch_norm": True, "level_vocab": LEVEL_VOCAB}
TRACK1_TUNABLE_MODEL = ("embedding_regularizer", "net_regularizer", "net_dropout")
TRACK1_TUNABLE_TRAIN = ("learning_rate", "batch_size")
