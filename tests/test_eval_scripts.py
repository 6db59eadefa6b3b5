"""The measurement scripts' own machinery: rendered requests kept with --images are read back only when the
same kind, n, seed and renderer made them."""
from __future__ import annotations

import json
import subprocess

import pytest

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


def test_mcnemar_counts_only_the_drawings_read_differently():
    from scripts.compare_readings import mcnemar_p

    assert mcnemar_p(0, 0) == 1.0 and mcnemar_p(3, 3) == 1.0
    assert mcnemar_p(0, 7) == mcnemar_p(7, 0) == 2 / 2 ** 7  # seven all one way: p = 0.016
    assert 0.05 < mcnemar_p(3, 11) < 0.06 and 0.17 < mcnemar_p(4, 10) < 0.18  # 0.057, 0.180


def test_compare_readings_reads_the_same_files_with_an_earlier_commit(data_dir, tmp_path, capsys):
    """scripts/compare_readings.py against HEAD: the earlier side runs HEAD's own engine/ in a subprocess on the
    very files this checkout reads; with this checkout's reading code as committed, every reading agrees."""
    from scripts.compare_readings import ROOT, TAKEN, main

    if subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True).returncode:
        pytest.skip("not a git checkout: there is no earlier commit to compare with")
    with pytest.raises(SystemExit, match="not a commit"):
        main(["--before", "no-such-commit", "--n", "1", "--kinds", "sketch", "--data-dir", data_dir])
    result = main(["--before", "HEAD", "--n", "2", "--kinds", "sketch", "inverted", "--seeds", "0", "1",
                   "--data-dir", data_dir, "--json", str(tmp_path / "out.json")])
    assert [(k, v["n"]) for k, v in result["kinds"].items()] == [("sketch", 4), ("inverted", 4)]
    assert json.loads((tmp_path / "out.json").read_text())["before"] == result["before"]
    edited = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", *TAKEN], capture_output=True,
                            text=True).stdout
    if not edited:  # HEAD's reading is this checkout's: the same answers, drawing by drawing
        for kind in result["kinds"].values():
            assert kind["now"] == kind["before"] and kind["only_now"] == kind["only_before"] == [], kind
    assert "right only now / only before" in capsys.readouterr().out
