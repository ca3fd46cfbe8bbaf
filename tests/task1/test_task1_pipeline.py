"""embed end to end with tiny random models: schema, alignment, resumption, sharding, bad inputs."""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from core.errors import UserError
from core.io import sha256_file
from task1 import cache as C
from task1.data import read_histories, read_items
from task1.models import ImageEncoder, decode_image
from task1.pipeline import make_caches, run
from task1.reducers import load_reducer
from task1_testkit import build_tiny_e5, quiet


def outputs(out: Path) -> dict[str, bytes]:
    """The files that must be byte-identical between equivalent runs (task1.json holds timings)."""
    files = {"item_info.parquet": out / "item_info.parquet", "reducer.safetensors": out / "reducer.safetensors"}
    files.update({str(p.relative_to(out)): p for p in sorted(out.glob("cache/*/chunk-*.safetensors"))})
    files.update({str(p.relative_to(out)): p for p in sorted(out.glob("cache/*/manifest.json"))})
    return {k: p.read_bytes() for k, p in files.items()}


def embed_cli(capsys, *args) -> tuple[int, str, str]:
    """`harness embed ARGS` in this process: exit code, stdout, and the last line of stderr (logs come before)."""
    from harness.cli import main

    with pytest.raises(SystemExit) as e:
        main(["embed", *map(str, args)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    last = err.splitlines()[-1] + "\n" if err.strip() else ""
    return e.value.code, out, last


@pytest.fixture(scope="module")
def reference_run(synth_tiny, tiny_models, tmp_path_factory):
    """One uninterrupted run (tiny models, 4 chunks per modality) that the other tests compare against."""
    from task1.config import make_config

    cfg = make_config("reference", {"image_model": tiny_models["clip"], "text_model": tiny_models["e5"],
                                    "image_workers": 0, "chunk_size": 128, "quality": {"eval_users": 400}})
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("ref") / "out"
    doc = run(synth_tiny, out, cfg, device="cpu", seed=0, log=quiet)
    return cfg, out, doc


def test_item_info_schema_and_record(reference_run, synth_tiny):
    cfg, out, doc = reference_run
    frame = pl.read_parquet(out / "item_info.parquet")
    assert frame.schema == pl.Schema({"item_id": pl.Int64, "item_tags": pl.Array(pl.Int64, 5),
                                      "item_emb_d128": pl.Array(pl.Float64, 128)})
    assert frame["item_id"].to_list() == list(range(401))
    emb = np.asarray(frame["item_emb_d128"].to_numpy())
    assert np.all(emb[0] == 0) and np.all(np.asarray(frame["item_tags"].to_numpy())[0] == 0)
    np.testing.assert_allclose(np.linalg.norm(emb[1:], axis=1), 1.0, atol=1e-9)
    official = pl.read_parquet(synth_tiny / "MicroLens_1M_x1" / "item_info.parquet")
    assert frame["item_tags"].to_list() == official["item_tags"].to_list()
    assert doc["item_tags"]["equal_to_dataset_item_info"] is True and doc["item_tags"]["source"].startswith("copied")
    assert doc["item_tags"]["items_whose_item_feature_last_five_differ"] == 0
    assert doc["schema_check"] == "core.schemas.validate_item_info"

    rec = json.loads((out / "task1.json").read_text())
    assert rec["profile"] == "reference" and rec["seed"] == 0 and rec["seeding"]["deterministic_algorithms"]
    assert {m["role"] for m in rec["models"]} == {"image", "text"}
    assert all(m["source"] == "local" and len(m["sha256"]) == 64 for m in rec["models"])
    assert rec["counts"] == {"items": 400, "images_ok": 400, "missing_images": 0, "unreadable_images": 0,
                             "missing_image_ids": [], "unreadable_image_ids": [], "titles_ok": 400,
                             "empty_titles": 0, "empty_title_ids": []}
    assert 0 < rec["reducer"]["explained_variance"] <= 1
    assert rec["inputs"]["sha256"]["item_feature.parquet"] == sha256_file(synth_tiny / "item_feature.parquet")
    assert rec["outputs"]["item_info.parquet"] == sha256_file(out / "item_info.parquet")
    q = rec["quality"]
    assert q["users"] == 400 and 0 <= q["recall@10"] <= q["recall@50"] <= 1
    assert q["random"]["recall@10"] == pytest.approx(10 / 400, rel=0.1)
    t = rec["timings"]["extraction_this_run"]
    assert t["image"]["items"] == 400 and t["image"]["items_per_s"] > 0 and t["text"]["items_per_s"] > 0


def test_reducer_file_reproduces_the_table(reference_run, synth_tiny):
    """reducer.safetensors is self-describing: applied to the caches it gives item_info's embeddings."""
    cfg, out, _ = reference_run
    items = read_items(synth_tiny)
    blocks = {}
    for m, cache in make_caches(out, cfg, items).items():
        emb, status, _, _ = cache.read_all()
        blocks[m] = (emb, status == C.OK)
    table = load_reducer(out / "reducer.safetensors").transform(blocks)
    emb = np.asarray(pl.read_parquet(out / "item_info.parquet")["item_emb_d128"].to_numpy())
    np.testing.assert_array_equal(table, emb[1:])


def test_rows_follow_item_ids_not_file_order(reference_run, data_copy, tmp_path):
    """Covers written in shuffled order and item_feature rows shuffled: the same bytes come out."""
    cfg, ref_out, _ = reference_run
    images = data_copy / "item_images"
    blobs = {p.name: p.read_bytes() for p in images.iterdir()}
    shutil.rmtree(images)
    images.mkdir()
    names = sorted(blobs)
    random.Random(7).shuffle(names)
    for name in names:  # directory order now differs from id order
        (images / name).write_bytes(blobs[name])
    feat = pl.read_parquet(data_copy / "item_feature.parquet")
    feat.sample(fraction=1.0, shuffle=True, seed=3).write_parquet(data_copy / "item_feature.parquet")
    out = tmp_path / "out"
    run(data_copy, out, cfg, device="cpu", seed=0, log=quiet)
    ref = outputs(ref_out)
    assert outputs(out)["item_info.parquet"] == ref["item_info.parquet"]
    assert {k: v for k, v in outputs(out).items() if "chunk" in k} == {k: v for k, v in ref.items() if "chunk" in k}


def test_cache_row_is_the_embedding_of_its_own_file(reference_run, synth_tiny, data_copy, tmp_path):
    """Row i of the image cache encodes item_images/i.jpg; swapping two files swaps exactly their rows."""
    cfg, ref_out, _ = reference_run
    items = read_items(synth_tiny)
    cache = make_caches(ref_out, cfg, items)["image"]
    emb, _, sha, _ = cache.read_all()
    enc = ImageEncoder(cfg.image_model, torch.device("cpu"), False)
    for i in (1, 129, 400):
        data = (synth_tiny / "item_images" / f"{i}.jpg").read_bytes()
        direct = enc.encode(torch.from_numpy(enc.preprocess(decode_image(data)))[None])[0]
        np.testing.assert_allclose(emb[i - 1], direct, atol=1e-5)
        assert bytes(sha[i - 1]).hex() == sha256_file(synth_tiny / "item_images" / f"{i}.jpg")

    a, b = data_copy / "item_images" / "5.jpg", data_copy / "item_images" / "300.jpg"
    ba, bb = a.read_bytes(), b.read_bytes()
    a.write_bytes(bb)
    b.write_bytes(ba)
    out = tmp_path / "out"
    run(data_copy, out, replace(cfg, modalities=("image",)), shard=(1, 1), device="cpu", seed=0, log=quiet)
    swapped, _, _, _ = make_caches(out, cfg, items)["image"].read_all()
    np.testing.assert_allclose(swapped[4], emb[299], atol=1e-5)
    np.testing.assert_allclose(swapped[299], emb[4], atol=1e-5)
    others = np.setdiff1d(np.arange(400), [4, 299])
    np.testing.assert_allclose(swapped[others], emb[others], atol=1e-5)


def test_a_cache_is_never_reused_by_another_encoder(synth_tiny, tiny_cfg, tmp_path):
    """The same encoder reuses its chunks; another encoder put in the same folder gets its own cache, and the
    first encoder's chunks are left as they were."""
    folder = tmp_path / "e5"
    build_tiny_e5(folder, seed=0)
    cfg = replace(tiny_cfg(text_model=str(folder)), modalities=("text",))
    out = tmp_path / "out"

    def extract() -> dict:
        return run(synth_tiny, out, cfg, shard=(1, 1), device="cpu", seed=0, log=quiet)["extraction"]["text"]

    assert extract()["items"] == 400
    first = {p: p.read_bytes() for p in out.glob("cache/text-*/chunk-*.safetensors")}
    assert extract() == {"items": 0, "chunks": 0, "reused_chunks": 4}

    shutil.rmtree(folder)
    build_tiny_e5(folder, seed=1)  # another encoder under the same name
    assert extract()["items"] == 400
    assert len(list(out.glob("cache/text-*"))) == 2
    assert {p: p.read_bytes() for p in first} == first
    new = make_caches(out, cfg, read_items(synth_tiny))["text"]
    assert new.dir not in {p.parent for p in first}
    assert not np.allclose(new.read_all()[0], _read_emb(sorted(first)))


def _read_emb(paths: list[Path]) -> np.ndarray:
    from safetensors.numpy import load_file

    return np.concatenate([load_file(str(p))["emb"] for p in paths])


class Interrupt(Exception):
    pass


def test_interrupted_run_resumes_to_identical_bytes(reference_run, synth_tiny, tmp_path):
    cfg, ref_out, _ = reference_run
    out = tmp_path / "out"
    done = []

    def stop_after_three(modality, chunk):
        done.append((modality, chunk))
        if len(done) == 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        run(synth_tiny, out, cfg, device="cpu", seed=0, on_chunk=stop_after_three, log=quiet)
    assert len(list(out.glob("cache/image-*/chunk-*.safetensors"))) == 3
    assert not (out / "item_info.parquet").exists()
    resumed = []
    doc = run(synth_tiny, out, cfg, device="cpu", seed=0, on_chunk=lambda m, c: resumed.append((m, c)), log=quiet)
    assert resumed == [("image", 3), ("text", 0), ("text", 1), ("text", 2), ("text", 3)]
    assert doc["timings"]["extraction_this_run"]["image"]["items"] == 400 - 3 * 128
    assert outputs(out) == outputs(ref_out)


def test_shards_then_merge_equal_a_single_run(reference_run, synth_tiny, tmp_path, capsys):
    cfg, ref_out, _ = reference_run
    out = tmp_path / "out"
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps({"image_model": cfg.image_model, "text_model": cfg.text_model,
                                    "image_workers": 0, "chunk_size": 128, "quality": {"eval_users": 400}}))
    common = ["--data", synth_tiny, "--out", out, "--config", cfg_file, "--device", "cpu"]
    code, stdout, err = embed_cli(capsys, *common, "--shard", "2/3")
    assert code == 0 and "shard 2/3 done" in stdout and "--merge" in stdout
    code, _, err = embed_cli(capsys, *common, "--merge")
    assert code == 2 and "chunks are not computed yet" in err and err.count("\n") == 1
    for k in (3, 1):
        code, _, _ = embed_cli(capsys, *common, "--shard", f"{k}/3")
        assert code == 0
    assert not (out / "item_info.parquet").exists()
    code, stdout, _ = embed_cli(capsys, *common, "--merge")
    assert code == 0 and "recall@10" in stdout
    assert outputs(out) == outputs(ref_out)
    runs = list(out.glob("cache/image-*/runs/*.json"))
    assert sorted(json.loads(p.read_text())["shard"][0] for p in runs) == [1, 2, 3]


def test_contrastive_reducer_uses_train_histories_only(tiny_cfg, data_copy, tmp_path):
    """valid/test removed from the folder: the learned reducer and the metric still run (they never read them)."""
    (data_copy / "MicroLens_1M_x1" / "valid.parquet").unlink()
    (data_copy / "MicroLens_1M_x1" / "test.parquet").unlink()
    cfg = tiny_cfg(reducer="contrastive")
    doc = run(data_copy, tmp_path / "a", cfg, device="cpu", seed=0, log=quiet)
    tr = doc["reducer"]["training"]
    assert tr["steps"] > 0 and tr["loss_last_epoch"] < tr["loss_first_epoch"]
    again = run(data_copy, tmp_path / "b", cfg, device="cpu", seed=0, log=quiet)
    assert (tmp_path / "a" / "item_info.parquet").read_bytes() == (tmp_path / "b" / "item_info.parquet").read_bytes()
    pca = run(data_copy, tmp_path / "a", replace(cfg, reducer="pca"), device="cpu", seed=0, log=quiet)
    assert pca["outputs"]["item_info.parquet"] != again["outputs"]["item_info.parquet"]
    red = load_reducer(tmp_path / "b" / "reducer.safetensors")
    assert red.kind == "contrastive" and red.model.hidden == cfg.contrastive.hidden


def test_held_out_clicks_are_not_in_training_sequences(synth_tiny):
    hist = read_histories(synth_tiny, 400, eval_users=300, seed=0)
    train = pl.read_parquet(synth_tiny / "MicroLens_1M_x1" / "train.parquet")
    users = train.select("user_id").unique().sort("user_id")["user_id"].to_numpy()
    assert hist.n_users == len(users) and len(hist.eval_users) == 300
    pos = train.filter(pl.col("label") == 1)
    n_pos = dict(zip(*np.unique(pos["user_id"].to_numpy(), return_counts=True)))
    seq = {int(u): np.asarray(s) for u, s in zip(train["user_id"].to_list(), train["item_seq"].to_numpy())}
    for k, u in enumerate(hist.eval_users[:50]):
        uid = int(users[u])
        history = seq[uid][seq[uid] > 0]
        got = hist.history(int(u))
        assert len(got) == len(history) + n_pos.get(uid, 0) - 1  # one click held out
        np.testing.assert_array_equal(got[:len(history)], history)
        clicked = pos.filter(pl.col("user_id") == uid)["item_id"].to_list()
        assert hist.eval_target[k] in clicked


# ---------------------------------------------------------------------------------------------
# Bad inputs


def test_missing_and_corrupt_covers_are_counted_and_replaced(tiny_cfg, data_copy, tmp_path, capsys):
    (data_copy / "item_images" / "7.jpg").unlink()
    (data_copy / "item_images" / "8.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    good = (data_copy / "item_images" / "9.jpg").read_bytes()
    (data_copy / "item_images" / "9.jpg").write_bytes(good[: len(good) // 2])  # truncated
    feat = pl.read_parquet(data_copy / "item_feature.parquet")
    feat = feat.with_columns(pl.when(pl.col("item_id") == 11).then(pl.lit("  ")).otherwise(pl.col("item_title"))
                             .alias("item_title"))
    feat.write_parquet(data_copy / "item_feature.parquet")
    out = tmp_path / "out"
    doc = run(data_copy, out, tiny_cfg(), device="cpu", seed=0, log=quiet)
    c = doc["counts"]
    assert (c["missing_images"], c["unreadable_images"], c["empty_titles"]) == (1, 2, 1)
    assert c["missing_image_ids"] == [7] and c["unreadable_image_ids"] == [8, 9] and c["empty_title_ids"] == [11]
    assert c["images_ok"] == 397 and "mean image embedding" in doc["policy"]["missing_or_unreadable_image"]
    # the placeholder is flagged in the cache, and fusion used the mean of the readable covers instead
    items = read_items(data_copy)
    emb, status, _, _ = make_caches(out, tiny_cfg(), items)["image"].read_all()
    assert status[6] == C.MISSING and status[7] == C.UNREADABLE and status[8] == C.UNREADABLE
    red = load_reducer(out / "reducer.safetensors")
    fill = emb[status == C.OK].astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(red.fusion.fill["image"], fill / np.linalg.norm(fill), atol=1e-12)
    final = np.asarray(pl.read_parquet(out / "item_info.parquet")["item_emb_d128"].to_numpy())
    assert np.all(np.isfinite(final)) and abs(np.linalg.norm(final[7]) - 1) < 1e-9

    # --strict: the same folder fails, naming the first bad file (from the cache of the run above too)
    for target in (out, tmp_path / "fresh"):
        code, _, err = embed_cli(capsys, "--data", data_copy, "--out", target, "--image-model", tiny_cfg().image_model,
                                 "--text-model", tiny_cfg().text_model, "--workers", "0", "--device", "cpu",
                                 "--strict")
        assert code == 1, err
        assert err.startswith(f"error: {data_copy / 'item_images' / '7.jpg'}: cover of item 7 is missing")
        assert err.count("\n") == 1 and "Traceback" not in err


def test_strict_names_an_unreadable_cover(tiny_cfg, data_copy, tmp_path, capsys):
    (data_copy / "item_images" / "12.jpg").write_bytes(b"GIF89a garbage")
    cfg = tiny_cfg()
    code, _, err = embed_cli(capsys, "--data", data_copy, "--out", tmp_path / "out", "--image-model", cfg.image_model,
                             "--text-model", cfg.text_model, "--workers", "0", "--device", "cpu", "--strict")
    assert code == 1 and err.count("\n") == 1
    assert err.startswith(f"error: {data_copy / 'item_images' / '12.jpg'}: cover of item 12 is unreadable (")
    assert "without --strict" in err


def test_covers_beyond_the_maximum_share_stop_the_run(tiny_cfg, data_copy, tmp_path):
    """core.covers' policy in embed: 400 items allow 4 bad covers (1 %). Five missing stop the run before
    anything is encoded; four missing and one corrupt stop it at the merge, once decoding has found it."""
    from core.covers import MAX_BAD_SHARE

    assert MAX_BAD_SHARE == 0.01
    images = data_copy / "item_images"
    for i in (20, 21, 22, 23, 24):
        (images / f"{i}.jpg").unlink()
    with pytest.raises(UserError) as e:
        run(data_copy, tmp_path / "out", tiny_cfg(), device="cpu", log=quiet)
    assert e.value.exit_code == 1 and e.value.path == str(images)
    assert "5 of 400 covers are missing or empty (1.2%; first: 20.jpg" in e.value.message
    assert "at most 1% of the items" in e.value.message
    assert not (tmp_path / "out" / "cache").exists()  # refused before any encoding
    (images / "24.jpg").write_bytes((images / "25.jpg").read_bytes()[:40])  # truncated: found by decoding only
    logged = []
    with pytest.raises(UserError) as e:
        run(data_copy, tmp_path / "out", tiny_cfg(), device="cpu", log=logged.append)
    assert e.value.exit_code == 1 and "5 of 400 covers are missing or unreadable" in e.value.message
    assert any("4 missing, 0 empty of 400" in line for line in logged)
    assert not (tmp_path / "out" / "item_info.parquet").exists()


def test_item_tags_are_copied_from_the_datasets_item_info(tiny_cfg, data_copy, tmp_path):
    """item_feature may list more than five tags; item_info keeps five, chosen by the organizers. Task 1
    copies the dataset's item_info tags (the fixed feature of Track 1) and only falls back to the last five
    of item_feature's list without one."""
    path = data_copy / "item_feature.parquet"
    feat = pl.read_parquet(path)
    extra = pl.when(pl.col("item_id") <= 30).then(pl.concat_list(pl.col("item_tags"), pl.lit([101, 102, 103, 104,
                                                                                                  105, 106])))
    feat.with_columns(extra.otherwise(pl.col("item_tags")).alias("item_tags")).write_parquet(path)
    official = pl.read_parquet(data_copy / "MicroLens_1M_x1" / "item_info.parquet")["item_tags"].to_list()
    doc = run(data_copy, tmp_path / "out", tiny_cfg(), device="cpu", log=quiet)
    got = pl.read_parquet(tmp_path / "out" / "item_info.parquet")["item_tags"].to_list()
    assert got == official and doc["item_tags"]["items_whose_item_feature_last_five_differ"] == 30
    (data_copy / "MicroLens_1M_x1" / "item_info.parquet").unlink()
    doc = run(data_copy, tmp_path / "out2", tiny_cfg(), device="cpu", log=quiet)
    got = pl.read_parquet(tmp_path / "out2" / "item_info.parquet")["item_tags"].to_list()
    assert got[1] == [102, 103, 104, 105, 106] and got[40] == official[40]
    assert doc["item_tags"]["source"].startswith("item_feature.parquet")


def test_missing_data_folder_and_files(tmp_path, capsys, data_copy):
    code, _, err = embed_cli(capsys, "--data", tmp_path / "nope", "--out", tmp_path / "out", "--profile", "offline")
    assert code == 2 and err == f"error: {tmp_path / 'nope'}: data folder not found; pass the MicroLens_1M_MMCTR " \
                                "folder to --data (or make one with `harness synth DIR`)\n"
    (data_copy / "item_feature.parquet").unlink()
    code, _, err = embed_cli(capsys, "--data", data_copy, "--out", tmp_path / "out", "--profile", "offline")
    assert code == 2 and f"{data_copy / 'item_feature.parquet'}: item_feature.parquet not found" in err


def test_missing_cover_folder_and_train(tiny_cfg, data_copy, tmp_path):
    shutil.rmtree(data_copy / "item_images")
    with pytest.raises(UserError) as e:
        run(data_copy, tmp_path / "out", tiny_cfg(), device="cpu", log=quiet)
    assert e.value.path == str(data_copy / "item_images") and "cover folder not found" in e.value.message
    (data_copy / "MicroLens_1M_x1" / "train.parquet").unlink()
    with pytest.raises(UserError) as e:
        run(data_copy, tmp_path / "out", tiny_cfg(modalities=["text"]), device="cpu", log=quiet)
    assert e.value.path.endswith("train.parquet") and "train histories" in e.value.message


def test_bad_item_ids_are_refused(data_copy, tmp_path, tiny_cfg):
    feat = pl.read_parquet(data_copy / "item_feature.parquet")
    feat.filter(pl.col("item_id") != 17).write_parquet(data_copy / "item_feature.parquet")
    with pytest.raises(UserError) as e:
        run(data_copy, tmp_path / "out", tiny_cfg(), device="cpu", log=quiet)
    assert "exactly 1..N" in e.value.message and e.value.path.endswith("item_feature.parquet")


def test_unloadable_model_offline_through_the_command(tmp_path, capsys, synth_tiny, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = embed_cli(capsys, "--data", synth_tiny, "--out", tmp_path / "out", "--device", "cpu",
                             "--workers", "0")  # the reference profile: CLIP ViT-L/14 from the hub
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: image model 'openai/clip-vit-large-patch14' is not in the local Hugging Face cache")
    assert not (tmp_path / "out" / "item_info.parquet").exists()


def test_bad_options_and_config(tmp_path, capsys, synth_tiny):
    base = ["--data", synth_tiny, "--out", tmp_path / "out"]
    code, _, err = embed_cli(capsys, *base, "--shard", "0/3")
    assert code == 2 and "--shard takes K/N with 1 <= K <= N" in err
    cfg = tmp_path / "c.json"
    cfg.write_text('{"image_batch_size": 8, "colour": 1}')
    code, _, err = embed_cli(capsys, *base, "--config", cfg)
    assert code == 2 and err.startswith(f"error: {cfg}: unknown key `colour`; known keys: ")
    cfg.write_text("{not json")
    code, _, err = embed_cli(capsys, *base, "--config", cfg)
    assert code == 2 and "not valid JSON" in err and err.count("\n") == 1
    code, _, err = embed_cli(capsys, *base, "--config", tmp_path / "absent.json")
    assert code == 2 and "config file not found" in err
    if not torch.cuda.is_available():
        code, _, err = embed_cli(capsys, *base, "--profile", "offline", "--device", "cuda")
        assert code == 2 and "--device cuda, but torch" in err and "use --device cpu" in err


def test_task1_never_imports_task2():
    root = Path(__file__).resolve().parents[2] / "task1"
    for path in root.rglob("*.py"):
        text = path.read_text()
        assert "import task2" not in text and "from task2" not in text, path
        assert "torch.load(" not in text or "weights_only=True" in text, path
    env = dict(os.environ)
    import subprocess
    import sys

    code = "import sys, task1.pipeline, task1.cli; sys.exit(any(m.startswith('task2') for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], env=env, cwd=root.parent).returncode == 0


def test_a_bad_item_info_is_refused_before_writing(tiny_cfg, data_copy, tmp_path, monkeypatch):
    """If the table Task 1 built breaks the schema (here row 0 is not the zero padding row), the run stops
    with one error naming item_info.parquet, and the item_info of an earlier run is left as it was."""
    import task1.pipeline as P

    out = tmp_path / "out"
    run(data_copy, out, tiny_cfg(), device="cpu", log=quiet)
    before = sha256_file(out / "item_info.parquet")
    good = P.item_info_frame

    def broken(tags, emb):
        emb = np.array(emb, copy=True)
        emb[0] = emb[1]
        return good(tags, emb)

    monkeypatch.setattr(P, "item_info_frame", broken)
    with pytest.raises(UserError, match="item_info failed its check before writing: row 0 is not all zeros") as e:
        run(data_copy, out, tiny_cfg(), device="cpu", log=quiet)
    assert str(e.value.path).endswith("item_info.parquet")
    assert sha256_file(out / "item_info.parquet") == before
