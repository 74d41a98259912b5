"""Listings at scale and the daemon's HTTP limits.

References: the SQS API reference (ListQueues: MaxResults 1-1000, a NextToken only when
MaxResults is given, QueueNamePrefix), the SNS API reference (ListTopics: pages of 100 with a
NextToken), the SQS API reference's Common Errors (ServiceUnavailable, 503) and botocore's retry
rules (a 503 is retried in its legacy and standard modes).
"""

from __future__ import annotations

import http.client
from collections import Counter
from typing import Any

import botocore.config
import botocore.exceptions
import pytest

from millpond.server import sns, sqs
from millpond.server.context import Context

from .daemon import Daemon
from .test_outbox_hunt import call_handler


@pytest.fixture
def ctx(tmp_path: Any) -> Any:
    """A daemon's Context (its handlers called in this process)."""
    context = Context(str(tmp_path / "data"), durability="os", workers=2)
    yield context
    context.close()


class _CountingCursor:
    """An LMDB cursor that counts the keys it steps over (under "keys")."""

    def __init__(self, cursor: Any, counts: Counter[str]) -> None:
        self._cursor, self._counts = cursor, counts

    def __enter__(self) -> _CountingCursor:
        self._cursor.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._cursor.__exit__(*exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)

    def iternext(self, *args: Any, **kwargs: Any) -> Any:
        for item in self._cursor.iternext(*args, **kwargs):
            self._counts["keys"] += 1
            yield item

    def __iter__(self) -> Any:
        return self.iternext()


class _CountingTxn:
    def __init__(self, txn: Any, counts: Counter[str]) -> None:
        self._txn, self._counts = txn, counts

    def __getattr__(self, name: str) -> Any:
        return getattr(self._txn, name)

    def cursor(self, *args: Any, **kwargs: Any) -> _CountingCursor:
        return _CountingCursor(self._txn.cursor(*args, **kwargs), self._counts)


def _count_keys_read(monkeypatch: pytest.MonkeyPatch, broker: Any) -> Counter[str]:
    """Counts the keys the broker's reads step over with a cursor (under "keys")."""
    counts: Counter[str] = Counter()
    storage = broker._storage
    read = storage.read
    monkeypatch.setattr(storage, "read", lambda fn: read(lambda txn: fn(_CountingTxn(txn, counts))))
    return counts


def _list_all(ctx: Context, handler: Any, counts: Counter[str], page_size: int, **params: Any):
    """Every page of a listing, checking that each read at most a page (+1) of keys; between
    the first two pages, ``params["between"]()`` runs (entries come and go)."""
    between = params.pop("between")
    pages: list[dict[str, Any]] = []
    token = None
    while True:
        counts.clear()
        page = call_handler(ctx, handler, **params, **({"NextToken": token} if token else {}))
        assert counts["keys"] <= page_size + 2, counts  # a page, the next, the key past them
        pages.append(page)
        token = page.get("NextToken")
        if token is None:
            return pages
        if len(pages) == 1:
            between()


def test_a_list_topics_page_reads_one_page_not_every_topic_name(ctx, monkeypatch):
    # Each ListTopics page read the name of every topic of the region, then kept the 100 after
    # the NextToken: at 20,000 topics ~30 ms a page, ~6 s for a full listing (quadratic),
    # holding a worker. A page now reads from its NextToken on, one page (+1) of names.
    broker = ctx.broker()
    names = [f"t{i:03}" for i in range(250)]
    for name in names:
        broker.create_topic(name)
    gone, added = names[150:160] + names[-3:], ["t1000-new", "t0-new"]

    def between() -> None:  # after the first page: some go, others come
        for name in gone:
            broker.delete_topic(name)
        for name in added:
            broker.create_topic(name)

    counts = _count_keys_read(monkeypatch, broker)
    pages = _list_all(ctx, sns.list_topics, counts, sns.PAGE, between=between)
    seen = [t["TopicArn"].rsplit(":", 1)[1] for page in pages for t in page["Topics"]]
    # 250 topics, 13 gone, 1 new after the first page: 238
    assert [len(page["Topics"]) for page in pages] == [100, 100, 38]
    assert seen == sorted(set(seen))  # in order, each once
    assert set(names) - set(gone) <= set(seen)  # what exists throughout is listed
    assert not set(gone[10:]) & set(seen)  # gone before their page came
    assert "t1000-new" in seen and "t0-new" not in seen  # sorts before the first page's end
    assert broker.list_topics() == sorted(set(names) - set(gone) | set(added))


def test_a_list_queues_page_reads_one_page_not_every_queue_name(ctx, monkeypatch):
    # The same for ListQueues with MaxResults: a page read every queue name of the region (or
    # of the QueueNamePrefix). The prefix still selects; names past it are not read.
    broker = ctx.broker()
    names = [f"jobs-{i:03}" for i in range(25)]
    for name in ["aaa", "jobs", "job", "jobt", *names]:
        broker.create_queue(name)
    gone, added = names[12:14] + names[-2:], ["jobs-100", "jobs-000a-new", "jobsx"]

    def between() -> None:
        for name in gone:
            broker.delete_queue(name)
        for name in added:
            broker.create_queue(name)

    counts = _count_keys_read(monkeypatch, broker)
    pages = _list_all(
        ctx, sqs.list_queues, counts, 10, QueueNamePrefix="jobs-", MaxResults="10", between=between
    )
    seen = [url.rsplit("/", 1)[1] for page in pages for url in page.get("QueueUrls", [])]
    assert [len(page["QueueUrls"]) for page in pages] == [10, 10, 2]
    assert seen == sorted(set(seen))
    assert set(names) - set(gone) <= set(seen)
    assert not set(gone[2:]) & set(seen)
    assert "jobs-100" in seen and "jobs-000a-new" not in seen and "jobsx" not in seen
    everything = ["aaa", "job", "jobs", "jobt", "jobsx", *names, *added[:2]]
    assert broker.list_queues() == sorted(set(everything) - set(gone))
    assert broker.list_queues("jobs") == [n for n in broker.list_queues() if n.startswith("jobs")]


def test_list_queues_without_max_results_lists_up_to_1000_and_no_token(ctx):
    broker = ctx.broker()
    for name in ["a", "b", "c"]:
        broker.create_queue(name)
    page = call_handler(ctx, sqs.list_queues)
    assert [u.rsplit("/", 1)[1] for u in page["QueueUrls"]] == ["a", "b", "c"]
    assert "NextToken" not in page
    assert call_handler(ctx, sqs.list_queues, QueueNamePrefix="z") == {}


LIST_QUEUES_QUERY = "Action=ListQueues&Version=2012-11-05"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _refusal(call: Any) -> dict[str, Any]:
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        call()
    return caught.value.response  # type: ignore[no-any-return]


def test_a_connection_past_the_limit_gets_an_aws_error_and_the_open_ones_keep_working(tmp_path):
    # uvicorn's limit_concurrency (4096, fixed) answered every request with a plain-text
    # "503 Service Unavailable" once that many connections were open, idle keep-alive ones
    # included: the connections already open were refused too (4096 long polls locked every
    # other HTTP call out), and an SDK out of retries reported a bare 503, no AWS error. Now
    # only a connection opened past the limit is refused, with AWS's ServiceUnavailable (503)
    # in the request's protocol (which SDKs retry), and closed; the limit is configurable.
    daemon = Daemon(str(tmp_path / "data"), extra=["--max-http-connections", "2"])
    held = [http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=5) for _ in range(2)]
    try:
        for conn in held:  # two keep-alive connections, open and idle
            conn.request("GET", "/health")
            assert conn.getresponse().read() == b"ok\n"
        once = botocore.config.Config(retries={"total_max_attempts": 1})
        sqs_json = daemon.client("sqs", config=once)
        refused = _refusal(sqs_json.list_queues)
        assert refused["Error"]["Code"] == "ServiceUnavailable"
        assert refused["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert refused["ResponseMetadata"]["HTTPHeaders"]["connection"] == "close"
        assert "max_http_connections" in refused["Error"]["Message"]
        sns_client = daemon.client("sns", config=once)
        assert _refusal(sns_client.list_topics)["Error"]["Code"] == "ServiceUnavailable"
        query = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=5)
        query.request("POST", "/", body=LIST_QUEUES_QUERY, headers=FORM)
        response = query.getresponse()
        assert response.status == 503
        assert b"<Code>ServiceUnavailable</Code>" in response.read()
        query.close()
        for conn in held:  # the connections open before the limit still get answers
            conn.request("POST", "/", body=LIST_QUEUES_QUERY, headers=FORM)
            response = conn.getresponse()
            assert response.status == 200, response.read()
            response.read()
        held.pop().close()  # one closes: a new connection is served
        for _ in range(50):  # the daemon sees the close soon, not at once
            try:
                assert daemon.client("sqs", config=once).list_queues()["ResponseMetadata"]
                break
            except botocore.exceptions.ClientError:
                continue
        else:
            raise AssertionError("no connection served after one closed")
    finally:
        for conn in held:
            conn.close()
        daemon.stop()


def test_the_http_connection_limit_follows_the_open_file_limit(monkeypatch):
    # a quarter of the descriptors (the native port may take half, the data files need theirs)
    import resource

    from millpond import server

    monkeypatch.setattr(resource, "getrlimit", lambda kind: (1024, 524288))
    assert server.default_max_http_connections() == 256
    monkeypatch.setattr(resource, "getrlimit", lambda kind: (524288, 524288))
    assert server.default_max_http_connections() == 131072
    # the soft limit (systemd's 1024) is raised to the hard one before the limits are taken
    raised: list[Any] = []
    monkeypatch.setattr(resource, "getrlimit", lambda kind: (1024, 524288))
    monkeypatch.setattr(resource, "setrlimit", lambda kind, limits: raised.append(limits))
    server.raise_open_files_limit()
    assert raised == [(524288, 524288)]


@pytest.mark.parametrize("value", ["0", "-1", "true", '"10"'])
def test_max_http_connections_in_the_config_must_be_a_positive_number(tmp_path, value):
    from millpond.server import config as config_module

    path = tmp_path / "millpond.toml"
    path.write_text(f"[server]\nmax_http_connections = {value}\n")
    with pytest.raises(config_module.ConfigError, match="max_http_connections"):
        config_module.load(str(path))
    path.write_text("[server]\nmax_http_connections = 10\n")
    assert config_module.load(str(path))["server"]["max_http_connections"] == 10


def test_the_daemon_freezes_start_up_objects_and_collects_young_ones_less_often():
    import gc

    from millpond import server

    threshold = gc.get_threshold()
    try:
        server.tune_gc()
        assert gc.get_threshold() == (server.GC_YOUNG_THRESHOLD, *threshold[1:])
        assert gc.get_freeze_count() > 0  # the modules loaded so far, out of every collection
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
