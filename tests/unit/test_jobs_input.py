"""Both input forms parse; every malformed line is refused naming its line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from producer.reader import collect_jobs, validate_file
from schemas.jobs import parse_job
from switchyard.errors import InputError


def test_batch_form_reads_messages_and_max_completion_tokens() -> None:
    job = parse_job({"custom_id": "doc-1", "method": "POST", "url": "/v1/chat/completions",
                     "body": {"model": "auto", "max_completion_tokens": 300,
                              "messages": [{"role": "system", "content": "Be brief."},
                                           {"role": "user", "content": "Hello"}]}})
    assert job.custom_id == "doc-1"
    assert job.max_tokens == 300
    assert [m.role for m in job.messages] == ["system", "user"]
    assert job.model == "auto"


def test_short_form_becomes_one_user_message_with_optional_fields() -> None:
    job = parse_job({"custom_id": "s-1", "prompt": "What is 2+2?", "max_tokens": 16, "model": "mistral-7b",
                     "metadata": {"k": 1}, "priority": 7, "tenant": "legal"})
    assert job.messages[0].role == "user" and job.messages[0].content == "What is 2+2?"
    assert (job.max_tokens, job.model, job.priority, job.tenant, job.metadata) == (16, "mistral-7b", 7, "legal",
                                                                                   {"k": 1})


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    job = parse_job({"custom_id": "a", "body": {"messages": [{"role": "user", "content": "x"}],
                                                "max_tokens": 10, "max_completion_tokens": 20}})
    assert job.max_tokens == 20


BAD_LINES = [
    ("{not json", "(line)", "not valid JSON"),
    (json.dumps({"prompt": "x"}), "custom_id", "missing"),
    (json.dumps({"custom_id": "m", "prompt": "x", "model": "gpt-5"}), "model", "unknown model"),
    (json.dumps({"custom_id": "n", "prompt": "x", "max_tokens": -5}), "max_tokens", "greater than or equal"),
    (json.dumps({"custom_id": "o", "prompt": "x", "max_tokens": 10**9}), "max_tokens", "less than or equal"),
    (json.dumps({"custom_id": "p", "body": {"messages": []}}), "body.messages", "at least 1"),
    (json.dumps({"custom_id": "q", "prompt": "   "}), "prompt", "empty"),
    (json.dumps({"custom_id": 42, "prompt": "x"}), "custom_id", "valid string"),
    (json.dumps({"custom_id": "r", "prompt": "x", "max_tokens": "many"}), "max_tokens", "valid integer"),
    (json.dumps({"custom_id": "s", "prompt": "x", "priority": 12}), "priority", "less than or equal"),
    (json.dumps({"custom_id": "t", "body": {"messages": [{"role": "user", "content": 3}]}}),
     "body.messages[0].content", "valid string"),
    (json.dumps(["a list"]), "(line)", "JSON object"),
]


@pytest.mark.parametrize("line,field,message", BAD_LINES)
def test_each_malformed_line_names_its_line_and_field(tmp_path: Path, line: str, field: str,
                                                      message: str) -> None:
    good = json.dumps({"custom_id": "ok", "prompt": "fine"})
    path = tmp_path / "in.jsonl"
    path.write_text(f"{good}\n{line}\n")
    check = validate_file(path)
    assert check.problems, "a malformed line was accepted"
    problem = check.problems[0]
    assert problem.line == 2
    assert problem.field == field
    assert message in problem.message


def test_duplicate_custom_id_names_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(json.dumps({"custom_id": c, "prompt": "x"}) for c in ("a", "b", "a")) + "\n")
    problems = validate_file(path).problems
    assert [(p.line, p.field) for p in problems] == [(3, "custom_id")]
    assert "first on line 1" in problems[0].message


def test_every_problem_of_a_file_is_listed(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(line for line, _, _ in BAD_LINES) + "\n")
    assert len({p.line for p in validate_file(path).problems}) == len(BAD_LINES)


def test_client_side_collection_refuses_whole_iterable() -> None:
    with pytest.raises(InputError) as info:
        collect_jobs([{"custom_id": "a", "prompt": "x"}, {"custom_id": "a", "prompt": "y"}, {"prompt": "z"}])
    assert [(p.line, p.field) for p in info.value.problems] == [(2, "custom_id"), (3, "custom_id")]


def test_duplicates_are_named_with_their_first_line_even_when_ids_share_a_hash(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """Validation keeps hashes of custom_ids, not the ids: a shared hash is only a suspect, settled by the ids."""
    import json

    from producer import reader

    ids = ["a", "b", "a", "c", "b", "a"]
    path = tmp_path / "jobs.jsonl"
    path.write_text("".join(json.dumps({"custom_id": i, "prompt": "hi"}) + "\n" for i in ids))
    for collide in (False, True):
        if collide:
            monkeypatch.setattr(reader, "hash", lambda _: 42, raising=False)  # every id shares one hash
        check = reader.validate_file(path)
        assert [(p.line, p.message) for p in check.problems] == [
            (3, "duplicate 'a' (first on line 1)"),
            (5, "duplicate 'b' (first on line 2)"),
            (6, "duplicate 'a' (first on line 1)"),
        ]
        assert check.jobs == 3
    distinct = tmp_path / "distinct.jsonl"
    distinct.write_text("".join(json.dumps({"custom_id": f"id{i}", "prompt": "hi"}) + "\n" for i in range(50)))
    assert (reader.validate_file(distinct).problems, reader.validate_file(distinct).jobs) == ([], 50)


def test_messages_as_plain_dicts_are_what_pydantic_dumps() -> None:
    """The hand-built dict of a plain text message equals model_dump(exclude_none=True); others use pydantic."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from schemas.jobs import parse_job

    keys = st.sampled_from(["name", "tool_call_id", "x"])
    extras = st.dictionaries(keys, st.none() | st.text(max_size=5), max_size=2)
    content = st.text(min_size=1).filter(lambda t: not t.isspace()) | st.lists(
        st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=5)}), min_size=1, max_size=2
    )

    roles = st.sampled_from(["system", "user", "assistant"])

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.tuples(roles, content, extras), min_size=1, max_size=3))
    def check(messages: list[tuple[str, object, dict[str, object]]]) -> None:
        body = {"messages": [{"role": r, "content": c, **x} for r, c, x in messages]}
        job = parse_job({"custom_id": "c", "body": body})
        assert job.messages_as_dicts() == [m.model_dump(exclude_none=True) for m in job.messages]

    check()
