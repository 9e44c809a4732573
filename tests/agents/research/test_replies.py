"""Plan / code extraction and review parsing of research-agent replies: every shape models produce."""

import pytest

from libs.agents.research import replies

PROGRAM = "import numpy as np\n\nLR = 0.1\nprint(np.ones(3).sum() * LR)\n"


def test_one_fenced_block_and_its_plan():
    plan, code = replies.extract_plan_and_code(f"I will scale a sum.\n\n```python\n{PROGRAM}```\nDone.")
    assert plan == "I will scale a sum." and code == PROGRAM


@pytest.mark.parametrize("fence", ["```py", "```", "~~~python", "```python3 title=train.py"])
def test_fence_variants(fence):
    closing = fence[:3]
    assert replies.extract_plan_and_code(f"Plan.\n{fence}\n{PROGRAM}{closing}\n")[1] == PROGRAM


def test_the_longest_parsing_block_is_the_program_and_other_languages_are_ignored():
    reply = ("Plan: tweak the rate. First `x`:\n```python\nLR = 0.2\n```\nThen:\n```bash\npip install x\n```\n"
             f"Full program:\n```python\n{PROGRAM}```")
    plan, code = replies.extract_plan_and_code(reply)
    assert code == PROGRAM and plan.startswith("Plan: tweak the rate.") and "pip install" in plan


def test_a_block_with_a_syntax_error_loses_to_one_that_parses():
    reply = f"```python\n{PROGRAM}```\nOops, a variant:\n```python\ndef broken(:\n    pass\n```"
    assert replies.extract_plan_and_code(reply)[1] == PROGRAM


def test_an_unterminated_fence_at_a_length_cut_still_gives_the_program():
    assert replies.extract_plan_and_code(f"Plan.\n```python\n{PROGRAM}")[1] == PROGRAM


def test_thinking_is_dropped_even_when_it_holds_code():
    reply = f"<think>maybe ```python\nLR = 9\n``` is better</think>Final plan.\n```python\n{PROGRAM}```"
    plan, code = replies.extract_plan_and_code(reply)
    assert code == PROGRAM and plan == "Final plan."


def test_unfenced_code_after_prose():
    plan, code = replies.extract_plan_and_code("Here is the program:\n" + PROGRAM)
    assert plan == "Here is the program:" and code == PROGRAM


@pytest.mark.parametrize("reply", ["", "I cannot help with that.", "```python\nprint(\n```",
                                   "<think>```python\nx = 1\n```</think>no code here", "```json\n{\"a\": 1}\n```"])
def test_replies_without_a_usable_program_raise_nocode(reply):
    with pytest.raises(replies.NoCode):
        replies.extract_plan_and_code(reply)


def test_review_from_json_in_prose_with_lenient_syntax():
    reply = "The run worked.\n{is_bug: false, summary: 'accuracy 0.93 on 5 folds', metric: '0.93', lower_is_better: 'no',}"
    review = replies.parse_review(reply)
    assert review == replies.Review(is_bug=False, summary="accuracy 0.93 on 5 folds", metric=0.93,
                                    lower_is_better=False)


@pytest.mark.parametrize("metric", [None, "n/a", float("nan"), True, [1]])
def test_a_metric_that_is_not_a_finite_number_is_none(metric):
    import json  # pylint: disable=import-outside-toplevel

    text = json.dumps({"is_bug": False, "summary": "", "metric": metric})  # nan -> NaN, which json5 reads
    assert replies.parse_review(text).metric is None


def test_the_last_review_wins_and_an_unreadable_is_bug_counts_as_a_bug():
    reply = '{"is_bug": false, "metric": 1}\nOn reflection:\n{"is_bug": "maybe", "metric": 2, "summary": "s"}'
    review = replies.parse_review(reply)
    assert review.is_bug and review.metric == 2.0 and review.lower_is_better is None


def test_a_reply_without_a_review_raises():
    with pytest.raises(ValueError, match="no JSON review"):
        replies.parse_review('The metric is 0.9. {"metric": 0.9}')



FILES = {"model.py": PROGRAM, "optim.py": "LR = 0.1\n", "run.gin": "train.steps = 10\n"}
EDITABLE = tuple(FILES)


def _block(*files: tuple[str, str], lang: str = "python") -> str:
    """A fenced block of marked files."""
    body = "".join(replies.FILE_MARKER.format(name=name) + "\n" + text for name, text in files)
    return f"```{lang}\n{body}```\n"


def test_a_bundle_lists_the_files_in_order_and_reads_back():
    text = replies.bundle(FILES, ["run.gin", "model.py", "absent.py"])
    assert text.startswith("# ==== file: run.gin ====\ntrain.steps = 10\n\n# ==== file: model.py ====\n")
    assert "absent.py" not in text
    reply = f"Plan.\n```python\n{replies.bundle(FILES, EDITABLE)}```"
    assert replies.extract_plan_and_files(reply, EDITABLE) == ("Plan.", FILES)


def test_program_text_is_the_first_file_or_the_bundle_of_all():
    assert replies.program_text(FILES, ["model.py"]) == PROGRAM
    assert replies.program_text(FILES, EDITABLE) == replies.bundle(FILES, EDITABLE)


def test_two_marked_files_and_the_plan():
    reply = "Lower the rate and train longer.\n\n" + _block(("optim.py", "LR = 0.05\n"),
                                                             ("run.gin", "train.steps = 20\n\n"))
    plan, files = replies.extract_plan_and_files(reply, EDITABLE)
    assert plan == "Lower the rate and train longer."
    assert files == {"optim.py": "LR = 0.05\n", "run.gin": "train.steps = 20\n"}


def test_marked_blocks_in_any_language_merge_and_later_copies_win():
    reply = ("Plan.\n" + _block(("optim.py", "LR = 0.2\n"), ("run.gin", "train.steps = 5\n")) + "The full change:\n"
             + _block(("optim.py", "LR = 0.05\n"), ("model.py", PROGRAM), lang="text"))
    plan, files = replies.extract_plan_and_files(reply, EDITABLE)
    assert files == {"optim.py": "LR = 0.05\n", "model.py": PROGRAM, "run.gin": "train.steps = 5\n"}
    assert plan == "Plan."


def test_an_unknown_file_raises_nocode_naming_it_and_the_editable_files():
    reply = _block(("optim.py", "LR = 1\n"), ("data.py", "X = 1\n"))
    with pytest.raises(replies.NoCode, match=r"data\.py.*model\.py, optim\.py, run\.gin"):
        replies.extract_plan_and_files(reply, EDITABLE)


def test_a_python_file_with_a_syntax_error_raises_nocode_naming_it():
    reply = _block(("run.gin", "not python (\n"), ("optim.py", "def f(:\n    pass\n"))
    with pytest.raises(replies.NoCode, match=r"optim\.py"):
        replies.extract_plan_and_files(reply, EDITABLE)


def test_a_reply_without_markers_falls_back_to_the_first_editable_file():
    reply = f"Plan.\n```python\n{PROGRAM}```"
    assert replies.extract_plan_and_files(reply, EDITABLE) == ("Plan.", {"model.py": PROGRAM})
    with pytest.raises(replies.NoCode):
        replies.extract_plan_and_files("```python\nprint(\n```", EDITABLE)


def test_unfenced_marked_files_are_read_from_the_first_marker():
    reply = "Plan.\n" + replies.FILE_MARKER.format(name="optim.py") + "\nLR = 3\n"
    assert replies.extract_plan_and_files(reply, EDITABLE) == ("Plan.", {"optim.py": "LR = 3\n"})


def test_thinking_is_ignored_in_multi_file_replies():
    thought = "<think>" + _block(("secret.py", "x = (\n"), ("model.py", PROGRAM * 5)) + "</think>"
    plan, files = replies.extract_plan_and_files(thought + "Final.\n" + _block(("optim.py", "LR = 2\n")), EDITABLE)
    assert plan == "Final." and files == {"optim.py": "LR = 2\n"}
