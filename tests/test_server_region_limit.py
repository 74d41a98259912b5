"""The daemon's region limit: each region is a data directory and an open LMDB environment, so
a request signed for one more region than ``max_regions`` is refused, and makes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

import millpond
from millpond import errors
from millpond.server import config as config_module
from tests.daemon import Daemon


def _create(daemon: Daemon, region: str) -> str:
    return daemon.client("sqs", region=region).create_queue(QueueName="q")["QueueUrl"]  # type: ignore[no-any-return]


def test_a_region_past_max_regions_is_refused_and_makes_no_directory(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    daemon = Daemon(data, extra=["--max-regions", "2"], native=True)
    try:
        _create(daemon, "us-east-1")  # the default region: always served
        _create(daemon, "eu-west-1")  # the second
        for service, call in (("sqs", "create_queue"), ("sns", "create_topic")):
            client = daemon.client(service, region="ap-south-1")
            with pytest.raises(ClientError) as caught:
                getattr(client, call)(**({"QueueName": "q"} if service == "sqs" else {"Name": "t"}))
            assert caught.value.response["Error"]["Code"] == "OverLimit"
            assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
            assert "max_regions" in caught.value.response["Error"]["Message"]
        with pytest.raises(errors.TooManyRegions):
            millpond.connect(
                daemon.native_url, access_key_id="AKID", secret_access_key="s", region="sa-east-1"
            ).list_queues()
        assert sorted(os.listdir(data)) == ["eu-west-1", "us-east-1"]
        # the regions it serves go on working
        west = daemon.client("sqs", region="eu-west-1")
        assert west.list_queues()["QueueUrls"] == [_create(daemon, "eu-west-1")]
    finally:
        daemon.stop()
    # Restarted with a lower limit, every region that has data is still served.
    daemon = Daemon(data, extra=["--max-regions", "1"])
    try:
        assert daemon.client("sqs", region="eu-west-1").list_queues()["QueueUrls"]
        with pytest.raises(ClientError, match="OverLimit"):
            _create(daemon, "ap-south-1")
    finally:
        daemon.stop()


@pytest.mark.parametrize("value", ["0", "-1", "true", '"2"'])
def test_max_regions_in_the_config_must_be_a_positive_number(tmp_path: Path, value: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f"[server]\nmax_regions = {value}\n")
    with pytest.raises(config_module.ConfigError, match="max_regions"):
        config_module.load(str(path))


def test_max_regions_on_the_command_line_must_be_a_positive_number(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "millpond.cli", "serve", "--data", str(tmp_path), "--port", "0"]
        + ["--max-regions", "0"],
        capture_output=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert b"at least 1" in run.stderr
