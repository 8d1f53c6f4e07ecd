// Consume Stream events that hookfan sends to SQS.
//
// Each message is decoded (`body: stream_compressed` sends base64(gzip(json))), its
// `signature` attribute is checked against your Stream API secret, and the event is parsed by
// Stream's Node SDK. A message is deleted only once it was handled; one that fails stays in
// the queue, comes back after the visibility timeout, and the queue's redrive policy moves it
// to a dead-letter queue after `maxReceiveCount` receives.
//
// Environment: SQS_QUEUE_URL, STREAM_API_KEY, STREAM_API_SECRET, and the standard AWS
// variables (region, credentials, AWS_ENDPOINT_URL for LocalStack or moto). `--drain` exits
// once the queue has nothing more to give (one-shot jobs, tests).
import { SQSClient, ReceiveMessageCommand, DeleteMessageCommand } from "@aws-sdk/client-sqs";
import { StreamClient } from "@stream-io/node-sdk";

const QueueUrl = process.env.SQS_QUEUE_URL;
const drain = process.argv.includes("--drain");
const sqs = new SQSClient({});
// Only verifies and parses here: no request goes to Stream's API.
const stream = new StreamClient(process.env.STREAM_API_KEY, process.env.STREAM_API_SECRET);

// Your code. Runs at least once per event: deduplicate on attributes.webhook_id.
function handle(event, attributes) {
  console.log(`ok ${event.type} ${attributes.webhook_id ?? "-"}`);
}

function processMessage(message) {
  const attributes = Object.fromEntries(
    Object.entries(message.MessageAttributes ?? {}).map(([name, v]) => [name, v.StringValue]),
  );
  // Raw JSON, or base64(gzip(json)): the SDK gunzips what starts with gzip's magic bytes.
  const body = message.Body.startsWith("{") ? message.Body : Buffer.from(message.Body, "base64");
  // Checks the signature over the uncompressed JSON, then parses; throws on any mismatch.
  handle(stream.verifyAndParseWebhook(body, attributes.signature ?? ""), attributes);
}

for (;;) {
  const { Messages = [] } = await sqs.send(
    new ReceiveMessageCommand({
      QueueUrl,
      MaxNumberOfMessages: 10,
      WaitTimeSeconds: drain ? 1 : 20,
      MessageAttributeNames: ["All"],
    }),
  );
  if (drain && Messages.length === 0) break;
  for (const message of Messages) {
    try {
      processMessage(message);
    } catch (error) {
      // Not deleted: left to the visibility timeout and the queue's redrive policy.
      console.error(`failed ${message.MessageId}: ${error.message}`);
      continue;
    }
    await sqs.send(new DeleteMessageCommand({ QueueUrl, ReceiptHandle: message.ReceiptHandle }));
  }
}
