"""The embedded Python API as a user's program sees it: shapes, errors, connect() URLs."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

import millpond
from millpond import errors


def test_aws_service_error_survives_pickling() -> None:
    # pickle.loads raised "AwsServiceError.__init__() missing 3 required positional
    # arguments": an error of the sqs:// backend could not cross a multiprocessing pool (the
    # worker's exception is pickled back to the parent), which hid it behind a
    # MaybeEncodingError. Every other millpond error pickles.
    aws_errors = pytest.importorskip("millpond.aws.errors")
    error = aws_errors.AwsServiceError("ThrottlingException", "Rate exceeded", 400, True)
    vars(error)["batch_results"] = ["message-id", None]  # as raise_first_failure adds it

    copy = pickle.loads(pickle.dumps(error))

    assert type(copy) is aws_errors.AwsServiceError
    assert str(copy) == "ThrottlingException: Rate exceeded"
    assert (copy.code, copy.json_type, copy.http_status, copy.sender_fault) == (
        "ThrottlingException",
        "ThrottlingException",
        400,
        True,
    )
    assert copy.batch_results == ["message-id", None]
    assert isinstance(copy, errors.MillpondError)


# -- millpond.connect() URLs --------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "millpond://127.0.0.1:99999",
        "millpond://127.0.0.1:abc",
        "millpond://127.0.0.1:-1",
        "millpond://127.0.0.1:0",
    ],
)
def test_connect_refuses_a_bad_port_with_its_own_error(url: str) -> None:
    # urlsplit's "Port out of range 0-65535" came out as a bare ValueError; connect() is
    # documented to raise InvalidParameterValue for a URL that lacks what its backend needs.
    with pytest.raises(errors.InvalidParameterValue, match="port") as raised:
        millpond.connect(url)
    assert url in str(raised.value)


@pytest.mark.parametrize(
    "url",
    [
        "millpond://127.0.0.1:9?region=eu-west-1",
        "millpond://AKIAEXAMPLE:hunter2@127.0.0.1:9",
        "file://{path}?durability=os",
    ],
)
def test_connect_refuses_url_parts_it_would_ignore(tmp_path: Path, url: str) -> None:
    # The query of a millpond:// or file:// URL and the user:password of a millpond:// URL
    # were dropped without a word: "?region=eu-west-1" talked to the daemon's default region
    # (the queues of another region, silently), "?durability=os" opened the directory with
    # fsync. Only sqs:// takes options in its query; the others take them as keywords.
    url = url.format(path=tmp_path / "data")
    with pytest.raises(errors.InvalidParameterValue, match="keyword") as raised:
        millpond.connect(url)
    assert "://" in str(raised.value) and "hunter2" not in str(raised.value)
    assert not (tmp_path / "data").exists()  # nothing opened, nothing made


def test_connect_still_takes_a_path_with_a_question_mark(tmp_path: Path) -> None:
    path = tmp_path / "what?data"
    with millpond.connect(str(path)) as broker:
        assert isinstance(broker, millpond.Broker)
    assert path.is_dir()
