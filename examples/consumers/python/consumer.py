"""Consume Stream events that hookfan sends to SQS.

Each message is decoded (``body: stream_compressed`` sends base64(gzip(json))), its
``signature`` attribute is checked against your Stream API secret, and the event is parsed
into a typed object by Stream's Python SDK. A message is deleted only once it was handled;
one that fails stays in the queue, comes back after the visibility timeout, and the queue's
redrive policy moves it to a dead-letter queue after ``maxReceiveCount`` receives.

Environment: SQS_QUEUE_URL, STREAM_API_SECRET, and the standard AWS variables (region,
credentials, AWS_ENDPOINT_URL for LocalStack or moto). ``--drain`` exits once the queue has
nothing more to give (one-shot jobs, tests); without it the consumer runs forever.
"""

import os
import sys
import warnings

import boto3
from getstream.webhook import (
    InvalidWebhookError,
    decode_sqs_payload,
    parse_event,
    verify_signature,
)

# Stream's models warn about every field an event leaves out; the event is still complete.
warnings.filterwarnings("ignore", category=RuntimeWarning, module="dataclasses_json")


def handle(event, attributes):
    """Your code. Runs at least once per event: deduplicate on attributes["webhook_id"]."""
    print(f"ok {event.type} {attributes.get('webhook_id', '-')}", flush=True)


def process(message, secret):
    attributes = {
        name: value["StringValue"]
        for name, value in message.get("MessageAttributes", {}).items()
    }
    # Raw JSON, or base64(gzip(json)): the SDK tells them apart.
    payload = decode_sqs_payload(message["Body"])
    # The signature covers the uncompressed JSON exactly as Stream sent it.
    if not verify_signature(payload, attributes.get("signature", ""), secret):
        raise InvalidWebhookError(InvalidWebhookError.SIGNATURE_MISMATCH)
    handle(parse_event(payload), attributes)


def main():
    drain = "--drain" in sys.argv[1:]
    queue_url = os.environ["SQS_QUEUE_URL"]
    secret = os.environ["STREAM_API_SECRET"]
    sqs = boto3.client("sqs")
    while True:
        response = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1 if drain else 20,
            MessageAttributeNames=["All"],
        )
        messages = response.get("Messages", [])
        if drain and not messages:
            return
        for message in messages:
            try:
                process(message, secret)
            except Exception as error:  # any failure: leave the message to the queue
                print(f"failed {message['MessageId']}: {error}", file=sys.stderr, flush=True)
                continue
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


if __name__ == "__main__":
    main()
