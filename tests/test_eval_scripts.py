"""The measurement scripts' own machinery: rendered requests kept with --images are read back only when the
same kind, n, seed and renderer made them."""
from __future__ import annotations

import json

from scripts.eval_drawings import kept_requests, make_requests


def test_kept_requests_are_reused_and_rendered_again_when_stale(mnist_test, tmp_path):
    calls = []

    def make(split, kinds, n, seed, folder):
        calls.append(kinds)
        return make_requests(split, kinds, n, seed, folder)

    first = kept_requests(make, mnist_test, ["sketch", "jpeg"], 2, 0, tmp_path)
    again = kept_requests(make, mnist_test, ["jpeg", "sketch"], 2, 0, tmp_path)
    assert calls == [["sketch"], ["jpeg"]]  # the second run rendered nothing
    assert sorted(map(str, again)) == sorted(map(str, first)) and len(first) == 4
    assert first[0][2] == "/predict_sketch" and first[2][2] == "/predict_upload"

    kept_requests(make, mnist_test, ["jpeg"], 2, 1, tmp_path)  # another seed: its own requests
    listing = tmp_path / "make_sketch_n2_seed0" / "requests.json"  # named by the maker, kind, n and seed
    listing.write_text(json.dumps({**json.loads(listing.read_text()), "renderer": "an older render.py"}))
    kept_requests(make, mnist_test, ["sketch"], 2, 0, tmp_path)
    assert calls == [["sketch"], ["jpeg"], ["jpeg"], ["sketch"]]  # a stale listing is rendered again


def test_blank_pages_count_right_when_no_digit_is_found(data_dir, tmp_path):
    """--blank: pages with no digit; "no digit found" is the right answer (an empty canvas, flat noisy paper)."""
    from conftest import CHECKPOINTS
    from scripts.eval_drawings import NO_DIGIT, main, make_blank_requests

    requests = make_blank_requests(None, ["sketch", "jpeg"], 2, 0, tmp_path)
    assert [r[:2] for r in requests] == [("sketch", NO_DIGIT)] * 2 + [("jpeg", NO_DIGIT)] * 2
    result = main(["--blank", "--n", "2", "--kinds", "sketch", "jpeg", "--in-process", "--data-dir", data_dir,
                   "--checkpoint", str(CHECKPOINTS / "mnist_cnn.pt"), "--json", str(tmp_path / "out.json")])
    assert result["overall"] == {"n": 4, "correct": 4, "accuracy": 1.0}
    assert json.loads((tmp_path / "out.json").read_text())["per_kind"]["sketch"]["correct"] == 2
