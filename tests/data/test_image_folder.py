"""A folder of the user's images: classes, a seeded stratified split, fixed shapes, bad files."""

import re

import numpy as np
import pytest
from PIL import Image

from cnnjax.data import image_folder, pipeline
from cnnjax.errors import UserError
from cnnjax.data.preprocessing import Preprocessing

COUNTS = {"cat": 5, "dog": 4, "emu": 3}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  """Images of varied sizes and modes (RGB JPEG, grey PNG, RGBA PNG, nested folder), plus a
  truncated JPEG and a text file."""
  root = tmp_path_factory.mktemp("photos")
  rng = np.random.default_rng(0)
  for c, (name, n) in enumerate(COUNTS.items()):
    (root / name / "more").mkdir(parents=True)
    for i in range(n):
      h, w = rng.integers(20, 60, 2)
      pixels = np.clip(rng.normal(60 * c + 40, 30, (h, w, 3)), 0, 255).astype(np.uint8)
      image = Image.fromarray(pixels)
      if i % 3 == 0:
        image.save(root / name / f"{i}.jpg", quality=95)
      elif i % 3 == 1:
        image.convert("L").save(root / name / "more" / f"{i}.png")
      else:
        image.convert("RGBA").save(root / name / f"{i}.png")
  (root / "dog" / "notes.txt").write_text("not an image")
  good = (root / "cat" / "0.jpg").read_bytes()
  (root / "emu" / "broken.jpg").write_bytes(good[:len(good) // 3])
  (root / ".hidden").mkdir()
  (root / "README").write_text("top-level files are not classes")
  return str(root)


def test_classes_split_and_skipped_files(folder):
  train = image_folder.read_split(folder, "train", image_size=16, val_fraction=0.25, seed=3)
  val = image_folder.read_split(folder, "val", image_size=16, val_fraction=0.25, seed=3)
  assert train.classes == val.classes == ("cat", "dog", "emu")
  assert train.images.shape[1:] == (16, 16, 3) and train.images.dtype == np.uint8
  # Stratified: n/4 rounded of each class's files (5, 5, 4 with the bad ones) are held out.
  files = image_folder.list_classes(folder)[1]
  held_out = image_folder.split_files(files, "val", val_fraction=0.25, seed=3)
  assert [label for _, label in held_out] == [0, 1, 2]
  assert len(val.labels) + len(val.skipped) == 3
  assert len(train.labels) + len(val.labels) == sum(COUNTS.values())
  assert len(train.skipped) + len(val.skipped) == 2
  reasons = dict(train.skipped + val.skipped)
  assert {p.rsplit("/", 1)[-1] for p in reasons} == {"notes.txt", "broken.jpg"}
  every = image_folder.read_split(folder, "all", image_size=16)
  assert np.bincount(every.labels).tolist() == list(COUNTS.values())
  # train + val is every readable image, each once.
  both = np.concatenate([train.images, val.images])
  assert sorted(map(bytes, both)) == sorted(map(bytes, every.images))


def test_split_is_seeded(folder):
  files = image_folder.list_classes(folder)[1]
  split = lambda seed: image_folder.split_files(files, "val", val_fraction=0.5, seed=seed)
  assert split(0) == split(0)
  assert any(split(0) != split(s) for s in range(1, 5))
  assert [label for _, label in split(0)] == [0, 0, 0, 1, 1, 1, 2, 2]  # halves round up
  assert image_folder.split_files(files, "test", val_fraction=0.5, seed=0) == split(0)


def test_dataset_feeds_the_pipeline_and_uses_the_weights_preprocessing(folder):
  pre = Preprocessing(resize=40, crop=32, transform_input=True)
  ds = image_folder.load_image_folder(folder, "train", val_fraction=0.25, seed=0,
                                      preprocessing=pre)
  assert ds.image_shape == (32, 32, 3) and ds.num_classes == 3
  assert np.allclose(ds.mean, 0.5) and np.allclose(ds.std, 0.5)
  batch = next(pipeline.train_stream(ds, global_batch=4, seed=0, flip=True))
  assert batch["image"].shape == (4, 32, 32, 3) and batch["label"].max() < 3
  assert sum(b["mask"].sum() for b in pipeline.eval_batches(ds, global_batch=4)) == len(ds)
  # Held-out images are exactly what the weights' eval transform makes of the file.
  val = image_folder.load_image_folder(folder, "all", preprocessing=pre)
  with Image.open(f"{folder}/cat/0.jpg") as image:
    want = pre.crop_images([image.convert("RGB")])[0]
  np.testing.assert_array_equal(val.source[0]["image"], want)


def test_grey_and_defaults(folder):
  ds = image_folder.load_image_folder(folder, "all", image_size=24, channels=1)
  assert ds.image_shape == (24, 24, 1) and ds.name == f"folder:{folder}"
  assert ds.mean == (0.485, 0.456, 0.406)


@pytest.mark.parametrize("kwargs, match", [
    (dict(path="/nonexistent/photos"), "does not exist"),
    (dict(split="validation"), r"'validation'. Valid choices: all, test, train, val"),
    (dict(val_fraction=1.0), r"val_fraction must be in \[0, 1\)"),
    (dict(split="val", val_fraction=0.0), "no readable images"),
    (dict(channels=4), "channels must be 1 or 3"),
])
def test_errors(folder, kwargs, match):
  kwargs = {"path": folder, "split": "train", **kwargs}
  with pytest.raises(UserError, match=match):
    image_folder.read_split(kwargs.pop("path"), kwargs.pop("split"), image_size=8, **kwargs)


def test_empty_class_folder(tmp_path):
  (tmp_path / "a").mkdir()
  (tmp_path / "b").mkdir()
  Image.new("RGB", (8, 8)).save(tmp_path / "a" / "x.png")
  with pytest.raises(UserError, match="has no files"):
    image_folder.list_classes(str(tmp_path))


def test_one_class_folder_is_refused_naming_the_folder_and_the_class(tmp_path):
  (tmp_path / "cat").mkdir()
  Image.new("RGB", (8, 8)).save(tmp_path / "cat" / "x.png")
  (tmp_path / ".hidden").mkdir()  # hidden folders are not classes
  message = (f"image folder '{tmp_path}' has one class subfolder, 'cat'; a classifier needs "
             "at least 2.")
  with pytest.raises(UserError, match=f"^{re.escape(message)}$"):
    image_folder.load_image_folder(str(tmp_path), "train", image_size=8)
