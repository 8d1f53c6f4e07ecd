"""Reads the local trial's SQS queue (moto): verifies each message's `signature` attribute with
the app secret, prints the event, deletes the message. Creates the queue if it is missing."""

import hashlib
import hmac
import os

import boto3

SECRET = os.environ["STREAM_API_SECRET"].encode()
sqs = boto3.client("sqs")
queue_url = sqs.create_queue(QueueName=os.environ["SQS_QUEUE_URL"].rsplit("/", 1)[1])["QueueUrl"]
print(f"queue-reader: reading {queue_url}")
while True:
    resp = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=20,
                               MessageAttributeNames=["All"])
    for m in resp.get("Messages", []):
        attrs = {k: v["StringValue"] for k, v in m.get("MessageAttributes", {}).items()}
        expected = hmac.new(SECRET, m["Body"].encode(), hashlib.sha256).hexdigest()
        signed = hmac.compare_digest(expected, attrs.get("signature", ""))
        print(f"queue-reader: {attrs.get('event_type')} webhook_id={attrs.get('webhook_id')} "
              f"signature={'ok' if signed else 'BAD'}")
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
