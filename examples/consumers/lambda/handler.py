"""An AWS Lambda handler for an SQS trigger on the queue hookfan sends to.

Each record is decoded (``body: stream_compressed`` sends base64(gzip(json))), its
``signature`` attribute is checked against your Stream API secret, and the event is parsed
by Stream's Python SDK. Records that fail are reported in ``batchItemFailures``: Lambda
deletes the others and returns only those to the queue, whose redrive policy moves them to a
dead-letter queue after ``maxReceiveCount`` receives. The event source mapping must have
``FunctionResponseTypes: [ReportBatchItemFailures]``, or any failure retries the whole
batch.

Environment: STREAM_API_SECRET (in production, read it from Secrets Manager or SSM
instead). Package with ``pip install -r requirements.txt -t package/``.
"""

import os
import warnings

from getstream.webhook import (
    InvalidWebhookError,
    decode_sqs_payload,
    parse_event,
    verify_signature,
)

# Stream's models warn about every field an event leaves out; the event is still complete.
warnings.filterwarnings("ignore", category=RuntimeWarning, module="dataclasses_json")

SECRET = os.environ["STREAM_API_SECRET"]


def handle(event, attributes):
    """Your code. Runs at least once per event: deduplicate on attributes["webhook_id"]."""
    print(f"ok {event.type} {attributes.get('webhook_id', '-')}", flush=True)


def process(record):
    # Lambda spells the attributes of an SQS record in camelCase, unlike ReceiveMessage.
    attributes = {
        name: value["stringValue"]
        for name, value in record.get("messageAttributes", {}).items()
    }
    payload = decode_sqs_payload(record["body"])
    if not verify_signature(payload, attributes.get("signature", ""), SECRET):
        raise InvalidWebhookError(InvalidWebhookError.SIGNATURE_MISMATCH)
    handle(parse_event(payload), attributes)


def handler(event, context):
    failures = []
    for record in event["Records"]:
        try:
            process(record)
        except Exception as error:  # any failure: this record goes back to the queue
            print(f"failed {record['messageId']}: {error}", flush=True)
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
