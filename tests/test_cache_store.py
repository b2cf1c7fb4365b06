"""The CACHE_DIR scene store: one chunk file per array, bytes read back (through memory maps) equal to bytes
written for every dtype the contract uses, and the memory-mapped store equal to zarr's LocalStore on layouts with
byte-range reads (sharded arrays, partial selections), as caches written by earlier versions use; `raw_chunk` maps
exactly the arrays stored as one uncompressed chunk of their bytes; the record attests finite float data."""

import asyncio

import numpy as np
import pytest
import torch
import zarr
from zarr.codecs import ZstdCodec
from zarr.storage import LocalStore

from ross3d.cache.mapped_store import MappedStore, raw_chunk
from ross3d.cache.checksum import array_checksum
from ross3d.cache.store import BF16, bf16_bits, open_scene, prepare_store, scene_path, write_scene


def _scene_arrays(rng: np.random.Generator, n_obj: int) -> dict[str, np.ndarray]:
    boxes = rng.normal(size=(n_obj, 6)).astype(np.float32)
    if n_obj:
        boxes[0] = np.nan  # an object without vertices
    return {
        "bev/vae_mean": rng.normal(size=(16, 6, 6)).astype(np.float32),
        "bev/valid27": rng.random((27, 27)) > 0.5,
        "objects/boxes": boxes,
        "objects/object_ids": np.arange(n_obj, dtype=np.int32),
        "uniform/frames/vision": bf16_bits(torch.randn(4, 9, 8)),
        "uniform/tokens/voxels": rng.integers(-300, 300, (4, 14, 14, 3)).astype(np.int16),
        "uniform/objects/membership": rng.random((n_obj, 4, 27, 27)) > 0.7,
    }


@pytest.mark.parametrize("n_obj", [3, 0])
def test_written_scene_reads_back_bytes_equal_one_chunk_per_array(tmp_path, n_obj):
    prepare_store(tmp_path)
    arrays = _scene_arrays(np.random.default_rng(n_obj), n_obj)
    record = write_scene(tmp_path, "scene0000_00", arrays, {"uniform/frames/vision": {"encoding": BF16}}, {})
    group = open_scene(tmp_path, "scene0000_00")
    assert isinstance(group.store, MappedStore)
    for key, value in arrays.items():
        read = group[key][...]
        assert read.dtype == value.dtype and read.shape == value.shape
        assert read.tobytes() == value.tobytes()  # NaN boxes and bf16 bits included
        # the writer attests finiteness (the XXH3 of the bytes it found finite) for float data without NaN or inf
        widened = torch.from_numpy(value.view(np.int16)).view(torch.bfloat16).float().numpy() \
            if key == "uniform/frames/vision" else value
        attested = value.dtype.kind == "f" or key == "uniform/frames/vision"
        attested = attested and bool(np.isfinite(widened).all())
        assert attested == (key in ("bev/vae_mean", "uniform/frames/vision") or key == "objects/boxes" and not n_obj)
        assert record["arrays"][key] == {"shape": list(value.shape), "dtype": value.dtype.str,
                                         "xxh3": array_checksum(value),
                                         **({"finite_xxh3": array_checksum(value)} if attested else {})}
        chunk_files = [p for p in (scene_path(tmp_path, "scene0000_00") / key).rglob("c/**/*") if p.is_file()]
        assert len(chunk_files) == (1 if value.size else 0), key
    assert group["uniform/frames/vision"].attrs["encoding"] == BF16


def test_raw_chunk_maps_exactly_the_uncompressed_one_chunk_arrays(tmp_path):
    prepare_store(tmp_path)
    arrays = {**_scene_arrays(np.random.default_rng(2), 3), "bev/vae_logvar": np.zeros((16, 6, 6), np.float32)}
    write_scene(tmp_path, "scene0000_00", arrays, {"uniform/frames/vision": {"encoding": BF16}}, {})
    group, folder = open_scene(tmp_path, "scene0000_00"), scene_path(tmp_path, "scene0000_00")

    def chunk(key: str):
        return folder / key / group[key].metadata.encode_chunk_key((0,) * arrays[key].ndim)

    mapped = {key: raw_chunk(group[key], chunk(key)) for key in arrays}
    # float data are written uncompressed; integers and booleans zstd-compressed; the all-zero array has no chunk
    assert sorted(k for k, v in mapped.items() if v is not None) == ["bev/vae_mean", "objects/boxes",
                                                                   "uniform/frames/vision"]
    for key in ("bev/vae_mean", "objects/boxes", "uniform/frames/vision"):
        assert mapped[key].dtype == arrays[key].dtype and mapped[key].shape == arrays[key].shape
        assert mapped[key].tobytes() == arrays[key].tobytes() and not mapped[key].flags.writeable
    vision = chunk("uniform/frames/vision")
    vision.write_bytes(vision.read_bytes()[:-2])  # truncated: left to zarr, which reports it
    assert raw_chunk(group["uniform/frames/vision"], vision) is None


def test_mapped_store_equals_local_store_on_sharded_and_partial_reads(tmp_path):
    rng = np.random.default_rng(1)
    vision, voxels = bf16_bits(torch.randn(6, 10, 12)), rng.integers(0, 9, (6, 14, 14, 3)).astype(np.int16)
    group = zarr.open_group(tmp_path / "g", mode="w")
    # the layout of caches written before one-chunk arrays: one shard, an inner chunk per frame
    group.create_array("vision", shape=vision.shape, dtype=vision.dtype, chunks=(1, 10, 12), shards=vision.shape,
                       compressors=None)[...] = vision
    group.create_array("voxels", shape=voxels.shape, dtype=voxels.dtype, chunks=(1, 14, 14, 3),
                       shards=voxels.shape, compressors=ZstdCodec(level=3))[...] = voxels
    local = zarr.open_group(LocalStore(tmp_path / "g", read_only=True), mode="r")
    mapped = zarr.open_group(MappedStore(tmp_path / "g"), mode="r")
    for key, selection in [("vision", ...), ("vision", (slice(2, 5), slice(3, 7))), ("voxels", ...),
                           ("voxels", (4, slice(None), 2))]:
        np.testing.assert_array_equal(mapped[key][selection], local[key][selection])
    np.testing.assert_array_equal(mapped["vision"][...], vision)
    # a sharded array's chunk file holds inner chunks and a shard index, not the array's bytes
    assert (tmp_path / "g/vision/c/0/0/0").is_file()
    assert raw_chunk(mapped["vision"], tmp_path / "g/vision/c/0/0/0") is None


def test_mapped_store_is_read_only_and_reports_missing_keys(tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    store = MappedStore(tmp_path)
    assert asyncio.run(store.get("absent")) is None
    assert asyncio.run(store.get("empty")).to_bytes() == b""
    with pytest.raises(ValueError, match="read-only"):
        MappedStore(tmp_path, read_only=False)


def test_xarray_opens_scene_groups_by_their_dimension_names(tmp_path):
    xr = pytest.importorskip("xarray")
    prepare_store(tmp_path)
    arrays = _scene_arrays(np.random.default_rng(1), 3)
    arrays["bev/vae_mean"][0, 0, 0] = 0.0  # the arrays' fill value must stay a value, not become missing
    write_scene(tmp_path, "scene0000_00", arrays, {}, {})
    path = scene_path(tmp_path, "scene0000_00")
    bev = xr.open_zarr(path, group="bev", consolidated=False)
    assert dict(bev.sizes) == {"channel": 16, "y": 6, "x": 6, "cell_y": 27, "cell_x": 27}
    np.testing.assert_array_equal(bev["vae_mean"].values, arrays["bev/vae_mean"])
    objects = xr.open_zarr(path, group="uniform/objects", consolidated=False)
    assert objects["membership"].dims == ("object", "view", "y", "x")
    np.testing.assert_array_equal(objects["membership"].values, arrays["uniform/objects/membership"])
    tokens = xr.open_zarr(path, group="uniform/tokens", consolidated=False)
    assert dict(tokens.sizes) == {"view": 4, "row": 14, "col": 14, "xyz": 3}
