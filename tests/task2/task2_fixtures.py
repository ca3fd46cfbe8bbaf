"""Constants shared by the task2 tests (a plain module: test folders here are not packages)."""

MINI_TRAIN_ROWS = 3000

# A small SASRecDCN: every module of the reference architecture, narrower and shallower, so that a
# CPU epoch over MINI_TRAIN_ROWS rows takes about a second.
FAST_MODEL = {"id_emb_dim": 16, "n_layers": 1, "ffn_dim": 64, "max_len": 16, "cross_layers": 2,
              "mlp_dims": [64, 32], "dropout": 0.1}
# The batch as given and a decision every epoch (the defaults fit both to the data: tests that check those
# rules set them themselves)
FAST_TRAIN = {"model": FAST_MODEL, "epochs": 2, "batch_size": 256, "learning_rate": 2e-3, "plateau_steps": 0,
              "min_epoch_steps": 0}
