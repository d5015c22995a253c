"""The labels a standard loader reads from `generate`'s imagefolder layout are the model's class indices.

torchvision's ImageFolder does not import beside the pinned CPU torch here, so these tests apply a faithful copy of
its rule (torchvision.datasets.folder.find_classes: the sub-folder names, sorted, numbered 0..n-1); Hugging Face's
imagefolder infers its label names from the sorted folder names in the same way when no metadata gives a label."""

import json
import os
from pathlib import Path

import pytest
from conftest import ROOT, call, expect_error
from gankit_runtime import Generator
from tiny_models import tiny_generator

# Twelve classes whose names sort in another order than their indices ("10" before "2" among them).
TWELVE = ["zebra", "2", "10", "Ankle boot", "apple", "Bag", "1", "x-ray", "T-shirt-top", "11", "Zulu", "0"]


def find_classes(directory: Path) -> dict[str, int]:
    """torchvision.datasets.folder.find_classes, as torchvision 0.2x writes it."""
    classes = sorted(entry.name for entry in os.scandir(directory) if entry.is_dir())
    return {name: i for i, name in enumerate(classes)}


def loader_labels(out: Path) -> dict[str, int]:
    """file (relative to out) -> the label ImageFolder gives it."""
    return {
        f"{folder}/{f.name}": index
        for folder, index in find_classes(out).items()
        for f in sorted((out / folder).glob("*.png"))
    }


def check_labels(out: Path, model: Path) -> int:
    classes = Generator(model).classes
    records = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    by_loader = loader_labels(out)
    assert len(records) == len(by_loader) > 0
    for r in records:
        assert by_loader[r["file_name"]] == r["label"] == classes.index(r["class_name"]), r
    return len(records)


@pytest.mark.parametrize("model", ["mnist-cdcgan", "fashion-cdcgan", "twelve"])
def test_imagefolder_labels_are_the_model_s_classes(capsys, tmp_path, model):
    path = (
        tiny_generator(tmp_path / "twelve.onnx", classes=TWELVE)
        if model == "twelve"
        else ROOT / "exported" / f"{model}.onnx"
    )
    rc, out = call(capsys, "generate", path, "--per-class", 2, "--out", tmp_path / "o")
    assert rc == 0, out.err
    n = len(Generator(path).classes)
    assert check_labels(tmp_path / "o", path) == 2 * n


def test_a_class_name_with_spaces_can_be_chosen(capsys, tmp_path):
    fashion = ROOT / "exported" / "fashion-cdcgan.onnx"
    rc, out = call(capsys, "generate", fashion, "--seeds", "0-2", "--class", "Ankle boot, Bag", "--out", tmp_path / "o")
    assert rc == 0, out.err
    assert sorted(p.name for p in (tmp_path / "o").iterdir() if p.is_dir()) == ["8-Bag", "9-Ankle boot"]
    records = [json.loads(line) for line in (tmp_path / "o" / "metadata.jsonl").read_text().splitlines()]
    assert [(r["label"], r["class_name"]) for r in records] == [(9, "Ankle boot")] * 3 + [(8, "Bag")] * 3


def test_a_folder_an_older_gankit_wrote_with_misnumbered_classes_is_refused(capsys, tmp_path):
    model = tiny_generator(tmp_path / "twelve.onnx", classes=TWELVE)
    out = tmp_path / "o"
    out.mkdir()
    claim = {"model_sha256": Generator(model).sha256, "truncation": 1.0, "layout": "imagefolder"}
    (out / "gankit-job.json").write_text(json.dumps(claim))  # as gankit 0.2 claimed it: folders named as classes
    expect_error(capsys, ["generate", model, "--per-class", 1, "--out", out], "older gankit")
    assert os.listdir(out) == ["gankit-job.json"]


def test_mnist_class_folders_keep_their_plain_names(capsys, tmp_path):
    rc, _ = call(capsys, "generate", ROOT / "exported" / "mnist-cdcgan.onnx", "--per-class", 1, "--out", tmp_path / "o")
    assert rc == 0 and sorted(p.name for p in (tmp_path / "o").iterdir() if p.is_dir()) == [str(d) for d in range(10)]


@pytest.mark.parametrize(
    "classes",
    [["A", "B", "a", "b"], ["aux", "cat"], ["Con.txt", "dog"]],
    ids=["case-collision", "reserved", "reserved-with-extension"],
)
def test_class_folders_stay_distinct_on_macos_and_windows(capsys, tmp_path, classes):
    """EMNIST-style "A" and "a" sort in index order but are one folder on a case-insensitive file system; "aux" is
    no folder at all on Windows. Such classes get their index in front, as unsorted names do."""
    model = tiny_generator(tmp_path / "m.onnx", classes=classes)
    rc, out = call(capsys, "generate", model, "--per-class", 1, "--out", tmp_path / "o")
    assert rc == 0, out.err
    folders = sorted(p.name for p in (tmp_path / "o").iterdir() if p.is_dir())
    assert folders == [f"{i}-{c}" for i, c in enumerate(classes)]
    assert len({f.casefold() for f in folders}) == len(classes)
    assert check_labels(tmp_path / "o", model) == len(classes)


@pytest.mark.parametrize(
    "name, problem",
    [("é" * 51, "bytes"), ("trailing.", "ends with '.'"), ("a:b", "Windows forbids"), ("what?", "Windows forbids")],
)
def test_class_names_unsafe_as_a_file_name_anywhere_are_refused(name, problem):
    from gankit_runtime.contract import class_name_problem

    assert problem in class_name_problem(name)
    assert class_name_problem("é" * 50) is None  # 100 bytes: the cap counts bytes, not characters
