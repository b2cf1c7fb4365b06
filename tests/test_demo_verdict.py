"""The demo's honest-win rules (ross3d.eval.verdict, docs/demo.md) on hand-made answer sets and metrics."""

from __future__ import annotations

from ross3d.eval.verdict import degenerate, verdict

BOX = [0.0, 0.0, 0.5, 1.0, 1.0, 1.0]


def _text(preds):
    return [{"sample_id": str(k), "pred_response": p, "gt_response": "x"} for k, p in enumerate(preds)]


def _m3dr(score_rows, n_objects=2):
    # object k sits at x = 3k: disjoint unit boxes
    objects = [[3.0 * k, 0.0, 0.5, 1.0, 1.0, 1.0] for k in range(n_objects)]
    return [{"sample_id": str(k), "scores": s, "objects": objects, "gt_response": []} for k, s in enumerate(score_rows)]


def test_text_answers_collapsing_to_one_or_two_values_are_degenerate():
    assert degenerate("scanqa", _text(["one"] * 5)) is not None
    # "Two." and "two" normalise alike (SQA3D cleaning): still only two distinct answers
    assert degenerate("sqa3d", _text(["one", "Two.", "two", "one"])).startswith("2 distinct")
    assert degenerate("scanqa", _text(["one", "two", "red", "one"])) is None


def test_multi3drefer_all_empty_sets_are_degenerate():
    # the zero target (last score) wins everywhere: every predicted set is empty
    assert "the empty set" in degenerate("multi3drefer", _m3dr([[0.0, 0.1, 0.9]] * 4))
    # object 0 alone, object 1 alone, the empty set: three distinct sets (softmax at T=0.07 puts > 0.4 on the top)
    assert degenerate("multi3drefer", _m3dr([[0.9, 0.0, 0.1], [0.0, 0.9, 0.1], [0.0, 0.1, 0.9]])) is None


def test_scanrefer_one_box_for_every_query_is_degenerate():
    lines = [{"sample_id": str(k), "pred_response": BOX, "gt_response": BOX} for k in range(4)]
    assert degenerate("scanrefer", lines) == "1 distinct prediction(s) over 4 samples (one box)"


def test_a_win_needs_every_required_metric_and_no_collapse():
    answers = _text(["one", "two", "red"])
    won = verdict("scanqa", {"EM": 40.0, "CIDEr": 50.0}, {"EM": 30.0, "CIDEr": 45.0}, answers)
    assert won["honest_win"] and won["reasons"] == [] and won["required"]["CIDEr"] == [50.0, 45.0]
    lost = verdict("scanqa", {"EM": 40.0, "CIDEr": 40.0}, {"EM": 30.0, "CIDEr": 45.0}, answers)
    assert not lost["honest_win"] and lost["reasons"] == ["CIDEr 40.0 <= baseline 45.0"]
    collapsed = verdict("sqa3d", {"EM": 60.0}, {"EM": 50.0}, _text(["left"] * 3))
    assert not collapsed["honest_win"] and collapsed["degenerate"].startswith("1 distinct")


def test_scanrefer_needs_twice_the_random_accuracy():
    lines = [{"sample_id": str(k), "pred_response": [float(k), 0, 0, 1, 1, 1], "gt_response": BOX} for k in range(3)]
    assert not verdict("scanrefer", {"all/Acc@0.25": 14.0}, {"all/Acc@0.25": 7.2}, lines)["honest_win"]
    assert verdict("scanrefer", {"all/Acc@0.25": 14.4}, {"all/Acc@0.25": 7.2}, lines)["honest_win"]


def test_multi3drefer_must_also_win_on_single_and_multi_target_types():
    lines = _m3dr([[0.9, 0.0, 0.1], [0.0, 0.9, 0.1], [0.0, 0.1, 0.9]])
    base = {"all/F1@0.25": 5.0, "st_w_d/F1@0.25": 4.0, "st_wo_d/F1@0.25": 6.0, "mt/F1@0.25": 3.0}
    # the reported all-type win of the issue: 100 on zero-target types, 0 on the others
    empty_only = {"all/F1@0.25": 43.3, "st_w_d/F1@0.25": 0.0, "st_wo_d/F1@0.25": 0.0, "mt/F1@0.25": 0.0}
    result = verdict("multi3drefer", empty_only, base, lines)
    assert not result["honest_win"] and len(result["reasons"]) == 3
    good = {"all/F1@0.25": 43.3, "st_w_d/F1@0.25": 20.0, "st_wo_d/F1@0.25": 30.0, "mt/F1@0.25": 10.0}
    assert verdict("multi3drefer", good, base, lines)["honest_win"]


def test_demo_gate_lists_every_failed_requirement():
    from ross3d.demo import failures

    win = {"honest_win": True, "reasons": []}
    summary = {"verdicts": {"scanqa": win, "sqa3d": {"honest_win": False, "reasons": ["degenerate: 1 distinct"]}},
               "vae_fit": {"heldout_psnr_db": 19.5},
               "reconstruction": [{"kind": "view", "view": 2, "cosine": 0.7}, {"kind": "bev", "view": None,
                                                                                 "cosine": 0.4}]}
    assert failures(summary) == ["sqa3d: degenerate: 1 distinct", "VAE: held-out round trip 19.5 dB < 20 dB",
                                 "reconstruction bev: latent cosine 0.40 < 0.5"]
    summary["verdicts"]["sqa3d"] = win
    summary["vae_fit"]["heldout_psnr_db"] = 20.0
    summary["reconstruction"][1]["cosine"] = 0.5
    assert failures(summary) == []


def test_learned_nothing_only_when_no_headline_metric_beats_its_baseline():
    from ross3d.demo import learned_nothing

    headline = {"scanqa": "EM", "sqa3d": "EM", "scan2cap": "CIDEr", "scanrefer": "all/Acc@0.25",
                "multi3drefer": "all/F1@0.25"}
    baseline = {b: {key: 30.0} for b, key in headline.items()}
    metrics = {b: {key: 30.0} for b, key in headline.items()}  # ties everywhere: nothing learned
    assert learned_nothing({"metrics": metrics, "baseline": baseline})
    metrics["scan2cap"]["CIDEr"] = 30.1  # one headline metric above its baseline, honest or not
    assert not learned_nothing({"metrics": metrics, "baseline": baseline})
