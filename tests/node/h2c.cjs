// The AWS SDK for JavaScript v3 on its default request handler, which speaks HTTP/2 (h2c, or h2 over TLS
// with prior knowledge on an http:// endpoint) to Kinesis: a put and get round trip.
const assert = require("node:assert/strict");
const {
  KinesisClient, CreateStreamCommand, DescribeStreamSummaryCommand, PutRecordCommand,
  GetShardIteratorCommand, GetRecordsCommand, RegisterStreamConsumerCommand,
  DescribeStreamConsumerCommand, SubscribeToShardCommand,
} = require("@aws-sdk/client-kinesis");

async function main() {
  const client = new KinesisClient({
    endpoint: process.env.ENDPOINT,
    region: "us-east-1",
    credentials: { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "secret" },
  });
  let passed = 0;
  const handler = client.config.requestHandler.constructor.name;
  assert.equal(handler, "NodeHttp2Handler", "the SDK's default handler for Kinesis is HTTP/2");
  passed++;
  await client.send(new CreateStreamCommand({ StreamName: "node", ShardCount: 1 }));
  const summary = await client.send(new DescribeStreamSummaryCommand({ StreamName: "node" }));
  assert.equal(summary.StreamDescriptionSummary.StreamStatus, "ACTIVE");
  passed++;
  const put = await client.send(new PutRecordCommand({
    StreamName: "node", PartitionKey: "p", Data: new TextEncoder().encode("over h2c"),
  }));
  assert.equal(put.ShardId, "shardId-000000000000");
  passed++;
  const iterator = await client.send(new GetShardIteratorCommand({
    StreamName: "node", ShardId: put.ShardId, ShardIteratorType: "TRIM_HORIZON",
  }));
  const records = await client.send(new GetRecordsCommand({ ShardIterator: iterator.ShardIterator }));
  assert.equal(records.Records.length, 1);
  assert.equal(new TextDecoder().decode(records.Records[0].Data), "over h2c");
  assert.equal(records.Records[0].SequenceNumber, put.SequenceNumber);
  assert.ok(records.Records[0].ApproximateArrivalTimestamp instanceof Date);
  passed++;

  // Enhanced fan-out over the same HTTP/2 connection: SubscribeToShard's event stream.
  const consumer = await client.send(new RegisterStreamConsumerCommand({
    StreamARN: summary.StreamDescriptionSummary.StreamARN, ConsumerName: "node-reader",
  }));
  for (let i = 0; i < 200; i++) {
    const described = await client.send(new DescribeStreamConsumerCommand({ ConsumerARN: consumer.Consumer.ConsumerARN }));
    if (described.ConsumerDescription.ConsumerStatus === "ACTIVE") break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const subscription = await client.send(new SubscribeToShardCommand({
    ConsumerARN: consumer.Consumer.ConsumerARN, ShardId: put.ShardId,
    StartingPosition: { Type: "TRIM_HORIZON" },
  }));
  let delivered = [];
  for await (const event of subscription.EventStream) {
    if (event.SubscribeToShardEvent) {
      delivered = delivered.concat(event.SubscribeToShardEvent.Records.map((r) => new TextDecoder().decode(r.Data)));
      if (delivered.length > 0) break;
    }
  }
  assert.deepEqual(delivered, ["over h2c"]);
  passed++;
  client.destroy();
  console.log(`${process.env.TEST_LABEL || "node-sdk-h2c"}: ${passed} passed, 0 failed`);
  // The open subscription would keep the process alive until the broker ends it.
  process.exit(0);
}

main().catch((error) => {
  console.error(error);
  console.log(`${process.env.TEST_LABEL || "node-sdk-h2c"}: 0 passed, 1 failed`);
  process.exit(1);
});
