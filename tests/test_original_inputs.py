"""What the model is fed, against references built by hand from the original's definitions (docs/model.md,
"Differences from the original"): the training and evaluation prompt tokens of every task with and without the
spatial instruction; token means and object membership with zero-depth pixels, both modes; the order in which
max-coverage frames reach PREP and the cache."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from ross3d.chat import ChatEncoder
from ross3d.prep import geometry, selection
from ross3d.prep.membership import membership
from ross3d.model.tokenizer import build_tokenizer

IMAGE = -200  # the original's IMAGE_TOKEN_INDEX
SYSTEM = "You are a helpful assistant."
INSTRUCTION = ("The video captures 3D spatial information of a scene. Please focus on the spatial relationships in the "
               "video and answer the following questions.")
REFER = ("<image>Identify the object according to the following description.\n"
         "This is a brown chair. It is near the desk.")
# (first turn, answer) of every task, written out from the original's templates (docs/original-data.md A, B.8)
TASKS = {
    "scanqa": ("<image> What is in the right corner of the room by the curtains? Answer the question simply.",
               "brown cabinet with tv sitting in it"),
    "sqa3d": ("<image> I am facing a chair, while having a couch on my left. What color is the table on my right? "
              "Answer the question using a single word or phrase.", "white"),
    "scan2cap": ("<image> Given an object located at <coord> , describe the object in detail.",
                 "this is a brown chair. it is near the desk."),
    "scanrefer": (REFER, "<ground>"),
    "multi3drefer": (REFER + "\nThere may be no corresponding object, or there may be one or more objects.",
                     "<ground>"),
}
CHAT_TEMPLATE = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
                 "'<|im_end|>' + '\n'}}{% endfor %}")


@pytest.fixture(scope="module")
def tokenizer():
    texts = [SYSTEM, INSTRUCTION, "system user assistant", *[t for pair in TASKS.values() for t in pair]]
    tok = build_tokenizer(texts, vocab_size=500)
    tok.add_tokens(["<ground>", "<coord>"], special_tokens=True)
    return tok


def original_training(tokenizer, question: str, answer: str, spatial: bool) -> list[int]:
    """The original's training preprocessing: the spatial rewrite, then `apply_chat_template` per message with the
    chat template above on a copy of the tokenizer where `<image>` is a special token, whose id becomes -200."""
    if spatial:
        question = f"<image>\n{INSTRUCTION}\n{question.replace('<image>', '')}"
    tok = copy.deepcopy(tokenizer)
    tok.add_tokens(["<image>"], special_tokens=True)
    tok.chat_template = CHAT_TEMPLATE
    ids = []
    for role, content in (("system", SYSTEM), ("user", question), ("assistant", answer)):
        ids += list(tok.apply_chat_template([{"role": role, "content": content}], tokenize=True, return_dict=False))
    image = tok.convert_tokens_to_ids("<image>")
    return [IMAGE if t == image else t for t in ids]


def original_eval(tokenizer, question: str, answer: str | None) -> list[int]:
    """The original's evaluation preprocessing: every piece tokenised on its own, a "\\n" after the image."""
    def tok(text):
        return tokenizer(text).input_ids

    im_start, im_end = tokenizer.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    nl = tok("\n")
    ids = [im_start] + tok("system") + nl + tok(SYSTEM) + [im_end] + nl
    ids += tok("<|im_start|>user") + nl
    before, after = question.split("<image>")
    ids += tok(before) + [IMAGE] + nl + tok(after) + [im_end] + nl
    ids += tok("<|im_start|>assistant") + nl
    if answer is not None:
        ids += tok(answer) + [im_end] + nl
    return ids


@pytest.mark.parametrize("task", sorted(TASKS))
@pytest.mark.parametrize("spatial", [False, True])
def test_training_tokens_equal_the_original(tokenizer, task, spatial):
    question, answer = TASKS[task]
    enc = ChatEncoder(tokenizer, IMAGE).encode([{"from": "human", "value": question},
                                                {"from": "gpt", "value": answer}], spatial)
    assert enc.input_ids == original_training(tokenizer, question, answer, spatial)
    if spatial and not question.startswith("<image>Identify"):  # the space after the sentence's "\n" is kept
        after = tokenizer.decode(enc.input_ids[enc.input_ids.index(IMAGE) + 1:])
        assert after.startswith(f"\n{INSTRUCTION}\n {question[len('<image> '):][:20]}")


@pytest.mark.parametrize("task", sorted(TASKS))
def test_eval_tokens_equal_the_original(tokenizer, task):
    question, answer = TASKS[task]
    encoder = ChatEncoder(tokenizer, IMAGE)
    if answer == "<ground>":  # teacher-forced grounding
        got = encoder.encode_eval([{"from": "human", "value": question}, {"from": "gpt", "value": answer}]).input_ids
        assert got == original_eval(tokenizer, question, answer)
    else:
        got = encoder.encode_prompt(question)
        assert got == original_eval(tokenizer, question, None)
    assert got[got.index(IMAGE) + 1] == tokenizer("\n").input_ids[0]  # the "\n" the original inserts


@pytest.mark.parametrize("task", sorted(TASKS))
def test_eval_with_the_spatial_instruction_is_the_training_prompt(tokenizer, task):
    """The original's evaluation never adds the sentence; asked for, the prompt is the training sequence up to the
    answer (the eval "\\n" after the image is the rewrite's first)."""
    question, answer = TASKS[task]
    train = original_training(tokenizer, question, answer, spatial=True)
    header = tokenizer("<|im_start|>assistant\n").input_ids
    cut = next(i for i in range(len(train)) if train[i:i + len(header)] == header) + len(header)
    encoder = ChatEncoder(tokenizer, IMAGE)
    if answer == "<ground>":
        got = encoder.encode_eval([{"from": "human", "value": question}, {"from": "gpt", "value": answer}],
                                  spatial_instruction=True).input_ids
        assert got == train
    else:
        assert encoder.encode_prompt(question, spatial_instruction=True) == train[:cut]


# ---------------------------------------------------------------- zero-depth pixels

def _frame_with_holes():
    """A 384x384 depth frame (the crop is the frame itself), depth 1.5 m + (u + v) mm, identity rotation, camera
    centre (1, 2, 3): holes scattered in token cell (0, 0), token cell (1, 1) all holes."""
    v, u = np.mgrid[0:384, 0:384]
    depth = (1500 + u + v).astype(np.uint16)
    depth[0:27:3, 0:27:4] = 0  # 9 x 7 = 63 holes among the cell's 729 pixels
    depth[27:54, 27:54] = 0
    k = np.array([[300.0, 0, 191.5, 0], [0, 300.0, 191.5, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    pose = np.eye(4)
    pose[:3, 3] = [1.0, 2.0, 3.0]
    return depth, k, pose


def _hand_cell_mean(depth, i, j, include):
    """Pixel by pixel: (u - 191.5) z / 300 + 1, (v - 191.5) z / 300 + 2, z + 3; a hole is the camera centre."""
    centre = np.array([1.0, 2.0, 3.0])
    total, n = np.zeros(3), 0
    for v in range(27 * i, 27 * i + 27):
        for u in range(27 * j, 27 * j + 27):
            z = depth[v, u] / 1000.0
            if z > 0:
                total += [(u - 191.5) * z / 300 + 1, (v - 191.5) * z / 300 + 2, z + 3]
                n += 1
            elif include:
                total += centre
                n += 1
    return total / n if n else centre


@pytest.mark.parametrize("exclude", [False, True])
def test_token_mean_on_a_frame_with_holes(exclude):
    depth, k, pose = _frame_with_holes()
    points, valid = geometry.frame_crop_points(depth, k, pose, 1000.0, exclude)
    means = geometry.cell_means(points, valid, geometry.TOKEN_GRID, pose[:3, 3])
    for i, j in [(0, 0), (1, 1), (2, 3)]:
        np.testing.assert_allclose(means[i, j], _hand_cell_mean(depth, i, j, not exclude), rtol=0, atol=1e-5)
    # the 63 holes pull cell (0, 0) towards the camera centre by 63/729 of the way (include) or not at all
    shift = np.abs(_hand_cell_mean(depth, 0, 0, True) - _hand_cell_mean(depth, 0, 0, False)).max()
    assert shift > 0.1


@pytest.mark.parametrize("exclude", [False, True])
def test_membership_counts_holes_at_the_camera_centre(exclude):
    """A 0.2 m box around the camera centre: patch (0, 0) with 100 holes of 196 belongs to it when holes count
    (100 >= 98), patch (0, 1) with 97 holes never; the real points lie >= 1.5 m away."""
    depth, k, pose = _frame_with_holes()
    depth = np.full_like(depth, 1500)
    first = np.arange(196).reshape(14, 14)  # row-major pixel number within a patch
    depth[0:14, 0:14][first < 100] = 0
    depth[0:14, 14:28][first < 97] = 0
    points, valid = geometry.frame_crop_points(depth, k, pose, 1000.0, exclude)
    box = np.array([[1.0, 2.0, 3.0, 0.2, 0.2, 0.2]], np.float32)
    member = membership(points[None], valid[None], box)[0, 0]
    assert member[0, 0] == (not exclude) and not member[0, 1] and member.sum() == (0 if exclude else 1)


# ---------------------------------------------------------------- max-coverage order

def test_in_frame_order_sorts_the_greedy_picks_and_recounts_gains():
    sets = [np.array([0]), np.array([1, 2, 3]), np.array([0, 4]), np.array([1, 2, 3, 4, 5])]
    greedy = selection.Selection(np.array([3, 0, 2]), np.array([5, 1, 0]))  # picks in greedy order
    ordered = selection.in_frame_order(greedy, sets, 6, 3)
    assert ordered.picks.tolist() == [0, 2, 3] and ordered.gains.tolist() == [1, 1, 4]  # {0}, {4}, {1, 2, 3, 5}
    short = selection.in_frame_order(selection.Selection(np.array([1, 0, 1, 0]), np.array([3, 1, 0, 0])), sets, 6, 4)
    assert short.picks.tolist() == [0, 1, 0, 1] and short.gains.tolist() == [1, 3, 0, 0]  # padded from the first


# ---------------------------------------------------------------- both switches through `prep scannet`

def _hand_coords(depth, pose_raw, axis, exclude):
    """Token means by the plain formula: crop pixel (r, c) is depth pixel (r * 48 // 384, (c + 64) * 64 // 512)
    (64x48 resized to 512x384, crop from column 64); a hole is the camera centre or, excluded, left out."""
    from prep_scannet_scene import depth_intrinsic
    from test_prep_scannet import _aligned_world

    world = _aligned_world(depth, pose_raw, axis, depth_intrinsic())
    rows, cols = np.arange(378) * 48 // 384, (np.arange(378) + 64) * 64 // 512
    pts = world[rows][:, cols].reshape(14, 27, 14, 27, 3)
    ok = (depth[rows][:, cols] > 0).reshape(14, 27, 14, 27, 1) | (not exclude)
    count = ok.sum((1, 3))
    centre = (axis @ pose_raw.astype(np.float64))[:3, 3]
    return np.where(count > 0, (pts * ok).sum((1, 3)) / np.maximum(count, 1), centre)


def test_prep_follows_the_original_by_default_and_the_switches_give_the_alternative(tmp_path):
    import json

    import pyarrow.parquet as pq
    import zarr

    from prep_scannet_scene import write_scene
    from ross3d.prep.options import PrepOptions
    from ross3d.prep.run import prep_scannet

    scene = "scene0000_00"
    w = write_scene(tmp_path / "scans", scene, n_frames=24, invalid=(), holes=0.03)
    runs = {"original": PrepOptions(frame_stride=2, num_frames=6, bev_size=32),
            "ross3d": PrepOptions(frame_stride=2, num_frames=6, bev_size=32, exclude_zero_depth=True,
                                  max_coverage_order="greedy")}
    rows, fingerprints = {}, []
    for name, options in runs.items():
        assert prep_scannet(tmp_path / "scans", tmp_path / name, options).ok == [scene]
        sel = sorted((r for r in pq.read_table(tmp_path / name / "selections.parquet").to_pylist()
                      if r["strategy"] == "max-coverage"), key=lambda r: r["rank"])
        rows[name] = [(r["frame_idx"], r["new_voxels"]) for r in sel]
        arrays = zarr.open_group(tmp_path / name / "scenes" / scene / "arrays.zarr", mode="r")
        coords = arrays["coords/max-coverage"][:]
        for v, (frame, _) in enumerate(rows[name]):
            want = _hand_coords(w["depths"][frame], w["poses"][frame], w["axis"], name == "ross3d")
            np.testing.assert_allclose(coords[v], want, rtol=0, atol=1e-4)
        fingerprints.append(json.loads((tmp_path / name / "manifest.json").read_text())["options_fingerprint"])
    assert fingerprints[0] != fingerprints[1]  # the switches enter the PREP fingerprint
    frames = [f for f, _ in rows["original"]]
    assert frames == sorted(frames) and len(set(frames)) == len(frames)  # frame order, as the original's loader
    gains = [g for _, g in rows["ross3d"]]
    assert gains == sorted(gains, reverse=True)  # greedy order: non-increasing new voxels
    assert [f for f, _ in rows["ross3d"]] != sorted(f for f, _ in rows["ross3d"])  # and not frame order here
