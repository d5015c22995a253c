import subprocess
import sys
import tracemalloc
import zipfile

import numpy as np
import pytest
from conftest import assert_one_line_error, child_exit_code, run_cli, torch_blocker
from gankit_runtime import GankitError, Generator, plan, write_folder, write_npz
from PIL import Image
from tiny_models import tiny_generator


@pytest.fixture(scope="module")
def small_rgb(tmp_path_factory):
    """A narrow 32x32 RGB DCGAN: cheap to run thousands of times."""
    return tiny_generator(
        tmp_path_factory.mktemp("m") / "small.onnx", size=32, channels=3, metadata={"dataset": "none"}
    )


def test_info_comes_from_the_graph(small_rgb):
    g = Generator(small_rgb, threads=1)
    i = g.info
    assert (i.z_dim, i.channels, i.height, i.width, i.output_range) == (100, 3, 32, 32, (-1.0, 1.0))
    assert g.providers == ["CPUExecutionProvider"]


def test_pngs_named_by_seed_hold_the_generated_pixels(small_rgb, tmp_path):
    g = Generator(small_rgb)
    seeds = [5, 0, 123456, 17]
    write_folder(g, plan(g, seeds), tmp_path / "out", batch_size=3, grid=tmp_path / "grid.png")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "000000.png",
        "000005.png",
        "000017.png",
        "123456.png",
        "gankit-job.json",
        "metadata.jsonl",
    ]
    expected = g.generate(seeds)
    for seed, image in zip(seeds, expected):
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / f"{seed:06d}.png")), image)
    assert Image.open(tmp_path / "grid.png").size == (2 + 2 * 34, 2 + 2 * 34)


def test_npz_streams_images_and_seeds(small_rgb, tmp_path):
    import dataclasses

    g = Generator(small_rgb)
    # pixels from the runtime's to_uint8 (numpy's memory, which tracemalloc sees) rather than the graph's (onnxruntime's)
    g.info = dataclasses.replace(g.info, pixels_name=None)

    def peak_memory(seeds, name):
        tracemalloc.start()
        write_npz(g, plan(g, seeds), tmp_path / name, batch_size=64)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    image_bytes = 32 * 32 * 3
    small = peak_memory(list(range(40, 2040)), "small.npz")
    seeds = list(range(40, 8040))
    big = peak_memory(seeds, "d.npz")
    # flat: four times the images (18 MB more of them) cost no more memory; the batches in flight (a few MB) are
    # all that is held
    assert big - small < 0.25 * 6000 * image_bytes, (small, big)  # ~1 MB apart: batches in flight vary
    assert big < 6000 * image_bytes, big
    (tmp_path / "small.npz").unlink()
    with np.load(tmp_path / "d.npz") as f:
        assert f["images"].shape == (8000, 32, 32, 3) and f["images"].dtype == np.uint8
        np.testing.assert_array_equal(f["seeds"], seeds)
        np.testing.assert_array_equal(f["images"][:10], g.generate(seeds[:10]))
    assert [p.name for p in tmp_path.iterdir()] == ["d.npz"]


def test_runtime_and_cli_generate_work_without_torch(small_rgb, tmp_path):
    env = torch_blocker(tmp_path)
    code = (
        "import sys, gankit_runtime as r; g = r.Generator(sys.argv[1]); x = g.generate([1, 2]);"
        "assert 'torch' not in sys.modules and 'onnx' not in sys.modules; print(x.shape)"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(small_rgb)],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, **env},
    )
    assert r.returncode == 0 and "(2, 32, 32, 3)" in r.stdout, r.stderr
    r = run_cli("generate", small_rgb, "--seeds", "0-9", "--out", tmp_path / "o", env=env)
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "o").glob("*.png"))) == 10
    r = run_cli("generate", small_rgb, "--seeds", "0-9", "--shard", "1/2", "--out", tmp_path / "s", env=env)
    assert r.returncode == 0 and len(list((tmp_path / "s").glob("*.png"))) == 5, r.stderr
    r = run_cli("train", env=env)  # the training side says clearly that it needs torch
    assert_one_line_error(r.stderr, r.returncode, "needs PyTorch")


def test_interrupted_png_write_leaves_whole_files_and_a_rerun_completes_it(small_rgb, tmp_path, full_disk, monkeypatch):
    g = Generator(small_rgb)
    full_disk(4)  # the job file, then 3 images, then the disk is full
    with pytest.raises(GankitError, match="No space left on device"):
        write_folder(g, plan(g, range(20)), tmp_path / "o", batch_size=4)
    left = sorted((tmp_path / "o").iterdir())
    assert [p.name for p in left if p.suffix != ".png"] == ["gankit-job.json"]  # no metadata for an unfinished job
    assert 0 < len(left) - 1 < 20 and not [p for p in left if p.name.startswith(".")]
    for p in left[:-1]:  # every image there is a whole PNG
        Image.open(p).load()
    monkeypatch.undo()
    result = write_folder(g, plan(g, range(20)), tmp_path / "o", batch_size=4)
    assert (result.written, result.skipped) == (20 - (len(left) - 1), len(left) - 1)
    pngs = sorted((tmp_path / "o").glob("*.png"))
    assert [p.name for p in pngs] == [f"{s:06d}.png" for s in range(20)]
    expected = g.generate(range(20))
    for seed, p in enumerate(pngs):
        np.testing.assert_array_equal(np.asarray(Image.open(p)), expected[seed])
    assert len((tmp_path / "o" / "metadata.jsonl").read_text().splitlines()) == 20


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "cpu:0"])
def test_bad_device_names(small_rgb, device):
    with pytest.raises(GankitError, match="bad device"):
        Generator(small_rgb, device=device)


def test_npz_is_a_plain_zip_of_npy(small_rgb, tmp_path):
    g = Generator(small_rgb)
    write_npz(g, plan(g, [3]), tmp_path / "one.npz")
    assert sorted(zipfile.ZipFile(tmp_path / "one.npz").namelist()) == ["images.npy", "metadata.npy", "seeds.npy"]
    with np.load(tmp_path / "one.npz") as f:  # no pickle needed, for any of its arrays
        assert f["metadata"].dtype.kind == "U" and "model_sha256" in str(f["metadata"])


def test_images_do_not_depend_on_batches(small_rgb):
    """An image depends on its seed alone, wherever the batch boundaries fall."""
    from gankit_runtime import to_uint8

    g = Generator(small_rgb, threads=1)
    seeds = [9, 2**32 - 1, 0] + list(range(100, 140))
    want = to_uint8(np.concatenate([g.run(g.latents([s])) for s in seeds]))
    for batch in (1, 4, 64):
        got = np.concatenate([images for _, images in g.iter_images(seeds, batch)])
        np.testing.assert_array_equal(got, want)
    # iter_batches hands each item back with its image, in order
    items = [(s, None, f"name{s}") for s in seeds]
    back = [item for batch, _ in g.iter_batches(items, 3) for item in batch]
    assert back == items


def test_lanes_side_by_side_give_the_same_images_in_order(small_rgb):
    """Batches run in several lanes at once (Generator(lanes=k), one session): an image does not depend on the
    lane that made it, batches come out in order, run() splits a batch across the lanes, and a consumer that
    stops early leaves the session free."""
    one = Generator(small_rgb, threads=1, lanes=1)
    three = Generator(small_rgb, threads=3, lanes=3)
    seeds = list(range(500, 700))
    want = one.generate(seeds, batch_size=7)
    np.testing.assert_array_equal(three.generate(seeds, batch_size=7), want)
    order = [batch for batch, _ in three.iter_images(seeds, batch_size=9)]
    assert sum(order, []) == seeds
    z = one.latents(seeds[:10])
    np.testing.assert_array_equal(three.run(z), one.run(z))  # 10 rows: slices of 3, 3 and 4
    np.testing.assert_array_equal(three.run(z[:2]), one.run(z[:2]))  # fewer rows than lanes
    stream = three.iter_images(seeds, batch_size=5)
    next(stream)
    stream.close()  # stopped after one batch, with more in flight
    np.testing.assert_array_equal(three.generate(seeds[:20], batch_size=5), want[:20])


def test_a_generator_inherited_through_fork_says_so_and_the_parent_goes_on(small_rgb):
    """onnxruntime sessions do not survive os.fork(): a child that uses its parent's Generator gets one clear
    error (not a hang or a crash), a Generator it makes itself works, and the parent is unaffected."""
    import os

    g = Generator(small_rgb, threads=2, lanes=2)
    want = g.generate(range(40), batch_size=4)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            try:
                g.generate(range(4))
            except GankitError as e:
                code = 0 if "create Generators after forking" in str(e) else 2
        finally:
            os._exit(code)  # onnxruntime's own exit handlers can wait forever in a forked child: not ours to run
    assert child_exit_code(pid) == 0
    np.testing.assert_array_equal(g.generate(range(40), batch_size=4), want)


def test_close_frees_the_session_and_a_closed_generator_says_so(small_rgb):
    with Generator(small_rgb, threads=2, lanes=2) as g:
        g.generate(range(8), batch_size=2)
    assert g.session is None and g._pool is None
    with pytest.raises(GankitError, match="is closed"):
        g.generate(range(2))


def test_threads_are_the_total_exactly_and_bounded(small_rgb, monkeypatch):
    """threads means all threads together, exactly (threads=7 uses 7: 4 lanes' threads and 3 more in the session's
    pool); a lane needs one; more than THREADS_PER_CPU per usable CPU is refused (5,000 threads hung onnxruntime's
    start under a memory limit)."""
    import gankit_runtime.generator as generator_module
    from gankit_runtime.generator import thread_plan

    monkeypatch.setattr(generator_module, "usable_cpus", lambda: 64)
    assert thread_plan("cpu", 7, None) == (4, 4)
    assert thread_plan("cpu", 7, 1) == (7, 1)
    assert thread_plan("cpu", 2, 2) == (1, 2)
    assert thread_plan("cpu", None, None) == (5, 4)  # a 64-CPU host: DEFAULT_THREADS in all, not 64
    assert thread_plan("cuda:1", 3, None) == (3, 2)
    for args, message in [
        ((2, 3), "3 lanes need at least 3 threads"),
        ((257, None), "threads must be 1 to 256"),
        ((0, None), "threads must be 1 to"),
        ((None, 0), "lanes must be 1 to"),
    ]:
        with pytest.raises(GankitError, match=message):
            thread_plan("cpu", *args)
    monkeypatch.undo()
    assert Generator(small_rgb, threads=2).lanes == 2


def test_labels_must_cover_the_seeds(tmp_path):
    import itertools

    g = Generator(tiny_generator(tmp_path / "c.onnx", classes=["a", "b", "c"]), threads=1)
    assert len(g.generate(range(10), labels=itertools.cycle([0, 1, 2]))) == 10  # extra labels are not read
    with pytest.raises(GankitError, match="labels ran out"):
        g.generate(range(10), labels=[0, 1])
    with pytest.raises(GankitError, match=r"labels must lie in \[0, 2\]"):
        g.generate(range(3), labels=[0, 1, 3])
