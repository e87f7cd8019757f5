"""Chat templates in submitted checkpoints: rendered in a Jinja sandbox, refused with a 400."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from django.test import Client

from contestants.models import Contestant
from models_zoo.testing import CHATML_TEMPLATE, tiny_chat_tokenizer
from submissions.chat_template import check_chat_templates
from submissions.exceptions import SubmissionError
from tests.submissions.conftest import submit, tar_directory


def _with_template(directory: Path, template: object) -> Path:
    config_path = directory / "tokenizer_config.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    config["chat_template"] = template
    config_path.write_text(json.dumps(config))
    return directory


def test_a_chatml_template_renders_like_transformers(tmp_path: Path) -> None:
    _with_template(tmp_path, CHATML_TEMPLATE)
    assert check_chat_templates(tmp_path) == 1
    # What transformers itself renders for the same template agrees with the sandbox's output.
    tokenizer = tiny_chat_tokenizer()
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Name a colour."}], tokenize=False, add_generation_prompt=True
    )
    assert text.endswith("<|im_start|>assistant\n")


def test_a_template_file_beside_the_config_is_checked(tmp_path: Path) -> None:
    tiny_chat_tokenizer().save_pretrained(tmp_path)
    assert (tmp_path / "chat_template.jinja").is_file()
    assert check_chat_templates(tmp_path) >= 1
    (tmp_path / "chat_template.jinja").write_text("{% for m in messages %}{{ m.content }")
    with pytest.raises(SubmissionError) as raised:
        check_chat_templates(tmp_path)
    assert raised.value.code == "invalid_chat_template"
    assert "chat_template.jinja" in raised.value.message


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("{% for m in messages %}{{ m.content }", "does not render"),  # syntax error
        ("{{ raise_exception('roles must alternate') }}", "roles must alternate"),
        ("{{ messages.__class__.__mro__ }}", "does not render"),  # the sandbox refuses it
        ("{{ messages.append(1) }}", "does not render"),  # immutable: no mutation
        ("hello", "without the conversation"),
        (42, "string or a list"),
    ],
)
def test_bad_templates_are_refused_naming_the_file(
    tmp_path: Path, template: object, problem: str
) -> None:
    _with_template(tmp_path, template)
    with pytest.raises(SubmissionError) as raised:
        check_chat_templates(tmp_path)
    assert raised.value.code == "invalid_chat_template" and raised.value.status_code == 400
    assert raised.value.message.startswith("tokenizer_config.json: ")
    assert problem in raised.value.message
    assert "tokenizer_config.json" in raised.value.fields


def test_no_template_is_fine(tmp_path: Path) -> None:
    assert check_chat_templates(tmp_path) == 0


def test_a_submission_with_a_broken_template_fails_validation_on_the_worker(
    api: Client, checkpoint_copy: Callable[[], Path], tmp_path: Path
) -> None:
    from tests.submissions.conftest import validate_job

    directory = _with_template(checkpoint_copy(), "{% if %}")
    response = submit(api, tar_directory(directory, tmp_path / "t.tar.gz"))
    assert response.status_code == 202  # uploads are checked by the worker (issue 14)
    job = validate_job(response.json()["job"]["id"])
    assert job.status == "failed" and job.reason.startswith("invalid_chat_template: ")
    assert "tokenizer_config.json" in job.reason
    assert Contestant.objects.get().status == Contestant.Status.FAILED
