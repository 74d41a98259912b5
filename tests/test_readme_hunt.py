"""What README.md and CHANGELOG.md say, checked against what the code does."""

from __future__ import annotations

from pathlib import Path

import pytest

from millpond import cli


@pytest.mark.parametrize("value", ["0", "1048577"])
def test_demo_refuses_a_body_size_no_queue_takes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    # --body-size 0 printed the demo's header, then "millpond demo: The request must contain
    # the parameter MessageBody." and exit 1; 1048577 failed the same way with MessageTooLong.
    # An SQS body is 1 byte to MaximumMessageSize (default and most 1048576).
    with pytest.raises(SystemExit) as exit_:
        cli.main(["demo", "--data", str(tmp_path / "data"), "--body-size", value])
    assert exit_.value.code == 2
    assert f"{value!r} is not a body size from 1 to 1048576" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def test_demo_runs_with_the_largest_body(tmp_path: Path) -> None:
    args = ["demo", "--data", str(tmp_path / "d"), "--messages", "2", "--threads", "1"]
    assert cli.main([*args, "--body-size", "1048576"]) == 0
