"""Task 1: the multimodal item embedding model (covers + titles -> 128-d item_emb_d128).

`harness embed` / `python -m task1` (task1/cli.py) runs task1/pipeline.py: encoders (task1/models.py,
task1/efficientnet_lite.py), resumable per-modality caches (task1/cache.py), fusion and reducers
(task1/reducers.py), the quality metric (task1/quality.py). This package never imports task2.
"""
