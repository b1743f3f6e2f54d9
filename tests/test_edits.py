"""SEARCH/REPLACE blocks and whole files in a model's answer: parsed and applied exactly, or refused."""

import pytest

from autoresearch.agents.edits import Edit, EditError, WholeFile, apply, parse

SOURCE = "DEPTH = 4\nLR = 0.02\n\ndef f():\n    return DEPTH * 2\n"


def block(path: str, search: str, replace: str, fence: bool = False) -> str:
    text = f"{path}\n<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n"
    return f"{path}\n```python\n{text.split(chr(10), 1)[1]}```\n" if fence else text


def test_blocks_and_prose_are_separated():
    answer = ("Deeper model, lower LR\n\n" + block("train.py", "DEPTH = 4\n", "DEPTH = 6\n")
              + "\n" + block("train.py", "LR = 0.02\n", "LR = 0.01\n", fence=True))
    edits, prose = parse(answer)
    assert edits == [Edit("train.py", "DEPTH = 4\n", "DEPTH = 6\n"), Edit("train.py", "LR = 0.02\n", "LR = 0.01\n")]
    assert prose == "Deeper model, lower LR"
    assert apply({"train.py": SOURCE}, edits) == {"train.py": SOURCE.replace("4", "6", 1).replace("0.02", "0.01")}


def test_a_whole_file_is_accepted_but_a_snippet_in_prose_is_not_a_file():
    answer = "Rewrote it\n\n```train.py\nDEPTH = 1\n```\n"
    assert parse(answer)[0] == [WholeFile("train.py", "DEPTH = 1\n")]
    answer = "Rewrote it\nsolve.py\n```python\nRATE = 2\n```\n"
    assert parse(answer)[0] == [WholeFile("solve.py", "RATE = 2\n")]
    snippet = "train.py is the file.\n\nFor example:\n```python\nx = 1\n```\n"
    assert parse(snippet)[0] == []


def test_a_mismatch_names_the_block_and_the_nearest_lines_and_applies_nothing():
    edits = [Edit("train.py", "DEPTH = 4\n", "DEPTH = 5\n"),
             Edit("train.py", "def f():\n    return DEPTH * 3\n", "def f():\n    return 0\n")]
    with pytest.raises(EditError) as caught:
        apply({"train.py": SOURCE}, edits)
    message = str(caught.value)
    assert "block 2" in message and "not found in train.py" in message
    assert "lines 4-5" in message and "    5|     return DEPTH * 2" in message and "Nothing was applied" in message


def test_an_ambiguous_search_is_refused_with_its_line_numbers():
    with pytest.raises(EditError, match=r"occurs 2 times in train.py \(at lines 1, 5\)"):
        apply({"train.py": SOURCE}, [Edit("train.py", "DEPTH", "D")])


def test_new_files_and_missing_files():
    assert apply({}, [Edit("notes.py", "", "X = 1\n")]) == {"notes.py": "X = 1\n"}
    with pytest.raises(EditError, match="does not exist; to create it, leave SEARCH empty"):
        apply({"gone.py": None}, [Edit("gone.py", "X\n", "Y\n")])
    with pytest.raises(EditError, match="exists and is not empty"):
        apply({"train.py": SOURCE}, [Edit("train.py", "", "X = 1\n")])


def test_malformed_blocks_are_refused():
    with pytest.raises(EditError, match="has no file name"):
        parse("Here is the change:\n<<<<<<< SEARCH\nA\n=======\nB\n>>>>>>> REPLACE\n")
    with pytest.raises(EditError, match="is not closed"):
        parse("train.py\n<<<<<<< SEARCH\nA\n=======\nB\n")


def test_edits_to_one_file_apply_in_order():
    edits = [Edit("train.py", "DEPTH = 4\n", "DEPTH = 5\n"), Edit("train.py", "DEPTH = 5\n", "DEPTH = 7\n")]
    assert apply({"train.py": SOURCE}, edits)["train.py"].startswith("DEPTH = 7\n")
