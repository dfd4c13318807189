"""benchmarks/train_recipes.py without training: the CIFAR-10 extraction, the run list, the tables.

The tarball is a few images this test writes (the benchmark's data in ../shared is never read here).
"""

import importlib.util
import sys
import tarfile
from pathlib import Path

import pytest
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "train_recipes.py"


@pytest.fixture(scope="module")
def recipes():
    spec = importlib.util.spec_from_file_location("train_recipes", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_recipes"] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules["train_recipes"]


def _tarball(tmp_path: Path) -> Path:
    source = tmp_path / "source"
    for tree, count in (("train", 3), ("test", 2)):
        for name in ("cat", "dog"):
            folder = source / tree / name
            folder.mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (32, 32), (i * 40, 0, 0)).save(folder / f"{i:04d}.jpg")
    (source / "README").write_text("not an image")
    tar = tmp_path / "tiny.tar"
    with tarfile.open(tar, "w") as archive:
        for tree in ("train", "test", "README"):
            archive.add(source / tree, arcname=tree)
    return tar


def test_extract_writes_both_trees_once_and_refuses_another_tarball(recipes, tmp_path):
    tar = _tarball(tmp_path)
    scratch = tmp_path / "scratch"
    found = recipes.extract(tar, scratch)
    assert found["images"] == {"train": 6, "test": 4}
    assert sorted(p.name for p in scratch.iterdir()) == ["extracted.json", "test", "train"]
    (scratch / "train" / "cat" / "0000.jpg").unlink()  # a second call trusts its marker: no extraction
    assert recipes.extract(tar, scratch) == found
    assert not (scratch / "train" / "cat" / "0000.jpg").exists()
    other = tmp_path / "other.tar"
    other.write_bytes(tar.read_bytes())
    with pytest.raises(SystemExit, match="another extraction"):
        recipes.extract(other, scratch)


def test_cifar_runs_share_the_train_high_run_and_keep_the_order(recipes):
    jobs = recipes.cifar_runs({"recipe", "fixres", "ns"}, [0], "/data", 5, 0.35, 1)
    names = [name for name, _ in jobs]
    assert names == [
        "mobilenet-plain-r32-s0",
        "mobilenet-recipe-r32-s0",
        "mobilenet-recipe-crop0.35-r32-s0",  # (a)'s adapted recipe is (b)'s train-high baseline: once
        "mobilenet-recipe-crop0.35-r24-fixres-s0",
        "nb201-recipe-crop0.35-r24-fixres-s0",
        "nb201-recipe-crop0.35-r32-s0",
        "mobilenet-ns-crop0.35-r32-s0",
    ]
    settings = dict(jobs)
    assert settings["mobilenet-plain-r32-s0"]["randaugment_ops"] == 0
    assert "crop_scale" not in settings["mobilenet-recipe-r32-s0"]  # the recipe's own default (0.08)
    fixres = settings["nb201-recipe-crop0.35-r24-fixres-s0"]
    assert (fixres["resolution"], fixres["fixres"], fixres["fixres_epochs"]) == (24, (28, 32), 1)
    assert settings["mobilenet-ns-crop0.35-r32-s0"]["unlabeled_fraction"] == 0.9
    from nas.train.settings import TrainSettings

    for name, job in jobs:  # every run is a valid nas train
        TrainSettings(out=f"/tmp/{name}", **job).check()


def test_small_runs_read_a_subset_of_the_first_images_of_each_class(recipes, tmp_path):
    scratch = tmp_path / "scratch"
    recipes.extract(_tarball(tmp_path), scratch)
    small = recipes.subset(scratch, 2)
    assert sorted(p.name for p in (small / "train" / "dog").iterdir()) == ["0000.jpg", "0001.jpg"]
    assert sorted(p.name for p in (small / "test" / "dog").iterdir()) == ["0000.jpg", "0001.jpg"]
    assert recipes.subset(scratch, 2) == small
    jobs = dict(recipes.cifar_runs({"small"}, [1], str(scratch), 5, 0.35, 1, str(small), 40))
    assert list(jobs) == [
        "mobilenet-plain-500pc-e40-r32-s1",
        "mobilenet-recipe-500pc-e40-r32-s1",
        "mobilenet-recipe-crop0.35-500pc-e40-r32-s1",
    ]
    assert {(job["data_dir"], job["epochs"], job["seed"]) for job in jobs.values()} == {(str(small), 40, 1)}


def test_tables_put_fixres_beside_train_high(recipes):
    run = {"epochs": 5, "validation_accuracy": 0.5, "seconds": 10.0, "cpu_seconds": 8.0, "load_average": 1.0}
    results = {
        "net-recipe-r32-s0": {**run, "train_resolution": 32, "test_accuracy": 0.61},
        "net-recipe-r24-fixres-s0": {
            **run,
            "train_resolution": 24,
            "test_accuracy": 0.55,
            "fixres": [
                {"test_resolution": 32, "accuracy_at_train_resolution": 0.55, "before": 0.5, "after": 0.63},
            ],
        },
    }
    text = recipes.tables(results, "cmd")
    assert "| net-recipe-r24-fixres | 32 | 0.5500 | 0.5000 | 0.6300 | 0.6100 |" in text
