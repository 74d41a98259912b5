"""HTTP/S subscriptions on the daemon and their attributes, against Amazon SNS's recorded answers.

Embedded tests drive the outbox (``broker._topics.http``) with a manual clock; daemon tests use
an HTTP server on 127.0.0.1 as the endpoint.
"""

from __future__ import annotations

import base64
import json

import pytest

from millpond.errors import TopicNotFound
from millpond.sns_envelope import InvalidParameter

from .test_http_delivery_hunt import (  # noqa: F401 (fixtures)
    HOOK,
    confirmed,
    http_endpoint_fixture,
    sns_client_fixture,
)
from .test_server_sns import (
    confirmation,
    error_of,
    make_topic,
    unsigned_get,
)


def test_a_redrive_policy_with_an_unknown_member_is_refused(broker):
    # SNS's RedrivePolicy has deadLetterTargetArn only; the SQS queue's maxReceiveCount copied
    # into it is refused (AWS's answers, quoted in cloudposse/terraform-aws-sns-topic#48 and
    # ministryofjustice/cloud-platform-environments#11520): "Invalid parameter: Attributes
    # Reason: RedrivePolicy: invalid JSON. Attribute maxReceiveCount is unknown." It was stored,
    # so a policy AWS refuses passed every test run against millpond.
    topic = broker.create_topic("orders")
    dlq = broker.create_queue("orders-dlq")
    policy = json.dumps({"deadLetterTargetArn": dlq.arn, "maxReceiveCount": 5})
    reason = "RedrivePolicy: invalid JSON. Attribute maxReceiveCount is unknown."
    with pytest.raises(InvalidParameter) as info:
        topic.subscribe(HOOK, protocol="https", attributes={"RedrivePolicy": policy})
    assert str(info.value) == f"Invalid parameter: Attributes Reason: {reason}"
    assert topic.list_subscriptions() == []
    sub = topic.subscribe(broker.create_queue("orders-q"))
    with pytest.raises(InvalidParameter) as info:
        sub.set_attributes({"RedrivePolicy": policy})
    assert str(info.value) == f"Invalid parameter: {reason}"
    assert "RedrivePolicy" not in sub.get_attributes()
    sub.set_attributes({"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq.arn})})


def test_an_empty_topic_delivery_policy_removes_it(broker, clock):
    # AWS-recorded (LocalStack's test_topic_delivery_policy_crud, "set-topic-attrs-full-none"
    # then "get-topic-attrs-after-delete"): SetTopicAttributes DeliveryPolicy="" succeeds and
    # the topic has no DeliveryPolicy any more, its EffectiveDeliveryPolicy SNS's defaults. It
    # was refused ("DeliveryPolicy: failed to parse JSON."): a topic's policy could not be taken
    # back.
    retry = {"minDelayTarget": 5, "maxDelayTarget": 6, "numRetries": 1}
    http = {"defaultHealthyRetryPolicy": retry}
    topic = broker.create_topic("orders", {"DeliveryPolicy": json.dumps({"http": http})})
    sub = confirmed(broker, topic)
    topic.set_attributes({"DeliveryPolicy": ""})
    attributes = topic.get_attributes()
    assert "DeliveryPolicy" not in attributes
    effective = json.loads(attributes["EffectiveDeliveryPolicy"])["http"]
    assert effective["defaultHealthyRetryPolicy"]["minDelayTarget"] == 20
    retry = json.loads(sub.get_attributes()["EffectiveDeliveryPolicy"])["healthyRetryPolicy"]
    assert (retry["numRetries"], retry["minDelayTarget"]) == (3, 20)
    topic.publish("hello")  # retried as SNS's default says: 20 s later
    outbox = broker._topics.http
    (delivery,) = outbox.take()
    outbox.failed(delivery, reason="HTTP 503")
    assert outbox.next_due_ms() == clock.now_ms() + 20_000


# -- through the daemon ---------------------------------------------------------------------------


# (the daemon, its SNS client and a local HTTP endpoint: test_http_delivery_hunt's fixtures)


def test_the_subscribe_url_is_written_as_sns_writes_it(sns, endpoint, daemon):
    # AWS-recorded (LocalStack's test_subscribe_external_http_endpoint and
    # test_subscribe_external_http_endpoint_lambda_url_sig_validation, which assert it):
    # SubscribeURL == f"{service}/?Action=ConfirmSubscription&TopicArn={topic_arn}&Token={token}",
    # in SubscriptionConfirmation and UnsubscribeConfirmation alike. millpond percent-encoded the
    # ARN and added "&Version=2010-03-31", so an endpoint that reads the topic from the URL, or
    # checks its shape, saw another URL than SNS sends.
    topic = make_topic(sns)
    sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=endpoint.url + "/s1")
    message = confirmation(endpoint, "/s1")
    service = f"{daemon.url}"
    token = message["Token"]
    assert message["SubscribeURL"] == (
        f"{service}/?Action=ConfirmSubscription&TopicArn={topic}&Token={token}"
    )
    status, body = unsigned_get(message["SubscribeURL"])  # and a GET of it confirms
    assert status == 200 and "<ConfirmSubscriptionResult>" in body, body
    sub = body.split("<SubscriptionArn>")[1].split("</SubscriptionArn>")[0]
    sns.unsubscribe(SubscriptionArn=sub)
    _, headers, raw = endpoint.next()
    assert headers["x-amz-sns-message-type"] == "UnsubscribeConfirmation"
    goodbye = json.loads(raw)
    assert goodbye["SubscribeURL"] == (
        f"{service}/?Action=ConfirmSubscription&TopicArn={topic}&Token={goodbye['Token']}"
    )
    status, body = unsigned_get(goodbye["SubscribeURL"])  # restores the subscription
    assert status == 200 and sub in body, body
    assert sns.get_subscription_attributes(SubscriptionArn=sub)["Attributes"]["Endpoint"] == (
        endpoint.url + "/s1"
    )


def test_an_unconfirmed_subscription_is_gone_after_48_hours(broker, clock):
    # "Amazon SNS automatically deletes unconfirmed subscriptions after 48 hours" (Amazon SNS
    # Developer Guide, "Deleting an Amazon SNS subscription and topic"), when its confirmation
    # token stops working too. A pending HTTP/S subscription stayed for ever instead: listed as
    # PendingConfirmation, counted in SubscriptionsPending, and subscribing the endpoint again
    # days later gave back the old subscription.
    topic = broker.create_topic("orders")
    outbox = broker._topics.http
    sub = topic.subscribe(HOOK, protocol="https")
    outbox.delivered(outbox.take()[0])
    clock.advance(48 * 3600)  # 48 hours: still there
    assert topic.list_subscriptions() == [sub]
    assert topic.get_attributes()["SubscriptionsPending"] == "1"
    clock.advance(0.001)
    assert topic.list_subscriptions() == []
    assert broker.list_subscriptions() == []
    assert topic.get_attributes()["SubscriptionsPending"] == "0"
    with pytest.raises(TopicNotFound):
        sub.get_attributes()
    with pytest.raises(TopicNotFound):
        broker.subscription(sub.arn)
    again = topic.subscribe(HOOK, protocol="https")  # a new subscription, with a new token
    assert again != sub and again.pending
    (confirmation,) = outbox.take()
    assert confirmation.subscription_arn == again.arn
    assert topic.confirm_subscription(json.loads(confirmation.body)["Token"]) == again
    assert [s.pending for s in topic.list_subscriptions()] == [False]


def test_a_token_confirms_its_subscription_whatever_topic_of_its_region_is_named(
    sns, endpoint, daemon
):
    # AWS-recorded (LocalStack's test_subscribe_external_http_endpoint[True]/[False],
    # "nonexistent-token-confirm"): the SubscribeURL with the topic ARN changed to one of the
    # same region that names no topic answers 200 with the subscription's ARN, and the
    # subscription is confirmed ("weirdly, even with a wrong topic, SNS will confirm"). The
    # token names the subscription; millpond answered 400 "Invalid parameter: Token".
    topic = make_topic(sns)
    sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=endpoint.url + "/n1")
    message = confirmation(endpoint, "/n1")
    nonexistent = topic + "x"
    url = message["SubscribeURL"].replace(f"TopicArn={topic}&", f"TopicArn={nonexistent}&")
    assert url != message["SubscribeURL"]
    status, body = unsigned_get(url)
    assert status == 200, body
    sub = body.split("<SubscriptionArn>")[1].split("</SubscriptionArn>")[0]
    assert sub.startswith(topic + ":")
    attributes = sns.get_subscription_attributes(SubscriptionArn=sub)["Attributes"]
    assert attributes["PendingConfirmation"] == "false"
    # a token no subscription has is still refused
    wrong = url.replace(message["Token"], "ab" * 64)
    status, body = unsigned_get(wrong)
    assert status == 400 and "<Message>Invalid parameter: Token</Message>" in body, body


def test_a_subscription_pending_confirmation_cannot_be_unsubscribed(broker, clock):
    # SNS refuses it: "You can't delete a subscription that's pending confirmation" (Amazon SNS
    # Developer Guide, "Deleting an Amazon SNS subscription and topic"); Unsubscribe answers
    # InvalidParameter "Invalid parameter: SubscriptionArn Reason: Cannot unsubscribe a
    # subscription that is pending confirmation" (the text terraform-provider-aws and
    # CloudFormation tooling match, e.g. go-to-k/cdkd#1305). It was deleted: a deployment tool
    # that handles this answer never met it against millpond.
    topic = broker.create_topic("orders")
    sub = topic.subscribe(HOOK, protocol="https")
    outbox = broker._topics.http
    (confirmation,) = outbox.take()
    outbox.delivered(confirmation)
    with pytest.raises(InvalidParameter) as info:
        sub.unsubscribe()
    assert str(info.value) == (
        "Invalid parameter: SubscriptionArn Reason: Cannot unsubscribe a subscription that is "
        "pending confirmation"
    )
    assert topic.list_subscriptions() == [sub]  # still there, still confirmable
    assert topic.confirm_subscription(json.loads(confirmation.body)["Token"]) == sub
    sub.unsubscribe()  # confirmed: unsubscribed
    assert topic.list_subscriptions() == []
    gone = topic.subscribe(HOOK + "/gone", protocol="https")
    clock.advance(48 * 3600 + 1)  # deleted by SNS after 48 hours: unsubscribing it is a no-op
    gone.unsubscribe()


def test_the_daemon_refuses_to_unsubscribe_a_pending_subscription(sns, endpoint):
    topic = make_topic(sns)
    sub = sns.subscribe(
        TopicArn=topic, Protocol="http", Endpoint=endpoint.url + "/p1", ReturnSubscriptionArn=True
    )["SubscriptionArn"]
    confirmation(endpoint, "/p1")
    assert error_of(sns.unsubscribe, SubscriptionArn=sub) == (
        "InvalidParameter",
        "Invalid parameter: SubscriptionArn Reason: Cannot unsubscribe a subscription that is "
        "pending confirmation",
        400,
    )
    attributes = sns.get_subscription_attributes(SubscriptionArn=sub)["Attributes"]
    assert attributes["PendingConfirmation"] == "true"


def test_listings_mask_the_password_of_an_endpoint(sns, endpoint):
    # SNS lists an endpoint given as https://user:password@host/... with the password as ****
    # (AWS's ListSubscriptionsByTopic answer, as logged in hashicorp/terraform#11108:
    # <Endpoint>https://username:****@example.com/myroute</Endpoint>); the POSTs still use it.
    # ListSubscriptions(ByTopic) showed the password to anyone allowed to list subscriptions.
    topic = make_topic(sns)
    host = endpoint.url.split("://", 1)[1]
    secret = f"http://alice:s3cret@{host}/basic"
    sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=secret)
    _, headers, _ = endpoint.next()
    assert headers["authorization"] == "Basic " + base64.b64encode(b"alice:s3cret").decode()
    masked = f"http://alice:****@{host}/basic"
    (listed,) = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert listed["Endpoint"] == masked
    everywhere = [s["Endpoint"] for s in sns.list_subscriptions()["Subscriptions"]]
    assert masked in everywhere and secret not in everywhere
