"""Run-directory JSONL files survive interrupted writers: torn lines are dropped and repaired, never fatal."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ropd_kit import rundir

records = st.lists(
    st.fixed_dictionaries({"task_id": st.text(min_size=1, max_size=8), "score": st.floats(0, 1), "ok": st.booleans()}),
    max_size=20,
)


@given(records)
def test_append_then_read_round_trips(tmp_path_factory, recs):
    path = tmp_path_factory.mktemp("rd") / "x.jsonl"
    rundir.append_jsonl(path, recs[: len(recs) // 2])
    rundir.append_jsonl(path, recs[len(recs) // 2 :])
    assert rundir.read_jsonl(path) == recs


def test_torn_last_line_is_skipped_and_repaired(tmp_path):
    path = tmp_path / "verdicts.jsonl"
    rundir.append_jsonl(path, [{"a": 1}, {"a": 2}])
    with open(path, "ab") as fh:  # a writer killed mid-line
        fh.write(b'{"a": 3, "b"')
    assert rundir.read_jsonl(path) == [{"a": 1}, {"a": 2}]
    rundir.append_jsonl(path, [{"a": 4}])  # the next append starts on a clean line
    assert rundir.read_jsonl(path) == [{"a": 1}, {"a": 2}, {"a": 4}]
    assert path.read_bytes().endswith(b"\n")


def test_corrupt_middle_line_names_file_and_line(tmp_path):
    path = tmp_path / "rubrics.jsonl"
    path.write_text('{"a": 1}\nnot json\n{"a": 2}\n')
    with pytest.raises(rundir.RecordError, match=r"rubrics.jsonl:2"):
        rundir.read_jsonl(path)


def test_write_is_atomic_replace(tmp_path):
    path = tmp_path / "tasks.jsonl"
    rundir.write_jsonl(path, [{"id": "a"}])
    rundir.write_jsonl(path, [{"id": "b"}, {"id": "c"}])
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == ["b", "c"]
    assert not path.with_name("tasks.jsonl.tmp").exists()


def test_frame_of_missing_file_is_empty(tmp_path):
    assert rundir.read_frame(tmp_path / "nope.jsonl").empty
