"""The embedded Python API as a user's program sees it: shapes, errors, connect() URLs."""

from __future__ import annotations

import pickle

import pytest

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
