// The millpond daemon checked by a second SDK: the AWS SDK for JavaScript v3 (@aws-sdk/client-sqs).
//
// Usage: node sqs_md5_check.mjs --endpoint http://127.0.0.1:PORT [--prefix NAME]
//
// What is checked, and by whom:
//   * MD5OfMessageBody (SendMessage, SendMessageBatch) and MD5OfBody (ReceiveMessage): by the SDK
//     itself, whose middleware (@aws-sdk/middleware-sdk-sqs) throws on a mismatch. The script
//     first asserts that this validation is switched on (config.md5 set, middleware in the stack).
//   * MD5OfMessageAttributes (send, batch, receive with "All", ".*" and a "prefix.*" filter) and
//     MD5OfMessageSystemAttributes (send with AWSTraceHeader): the JS SDK v3 does NOT verify these
//     (only the Java, .NET, PHP and Ruby SDKs do), so this script recomputes them with its own
//     implementation of the AWS algorithm, after proving that implementation on AWS-recorded
//     digests.
// Exit status 0 when everything matched; 1 with "FAIL: ..." lines on stderr otherwise.

import { createHash } from "node:crypto";
import { parseArgs } from "node:util";
import {
  SQSClient,
  CreateQueueCommand,
  SendMessageCommand,
  SendMessageBatchCommand,
  ReceiveMessageCommand,
  DeleteMessageBatchCommand,
  DeleteQueueCommand,
} from "@aws-sdk/client-sqs";

const { values: args } = parseArgs({
  options: {
    endpoint: { type: "string" },
    prefix: { type: "string", default: `jsmd5-${process.pid}` },
  },
});
if (!args.endpoint) {
  console.error("usage: node sqs_md5_check.mjs --endpoint http://127.0.0.1:PORT");
  process.exit(2);
}

const failures = [];
const fail = (what) => {
  failures.push(what);
  console.error(`FAIL: ${what}`);
};
let checks = 0;
const expectEqual = (actual, expected, what) => {
  checks += 1;
  if (actual !== expected) fail(`${what}: got ${actual}, expected ${expected}`);
};

// -- the AWS MD5OfMessageAttributes algorithm, written independently of the daemon ------------

const md5hex = (buffer) => createHash("md5").update(buffer).digest("hex");
const u32 = (n) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
const lengthPrefixed = (bytes) => [u32(bytes.length), bytes];

export function md5OfAttributes(attributes) {
  const names = Object.keys(attributes || {});
  if (names.length === 0) return undefined;
  // Sorted by the bytes of the UTF-8 name (AWS's order).
  names.sort((a, b) => Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8")));
  const parts = [];
  for (const name of names) {
    const { DataType, StringValue, BinaryValue } = attributes[name];
    parts.push(...lengthPrefixed(Buffer.from(name, "utf8")));
    parts.push(...lengthPrefixed(Buffer.from(DataType, "utf8"))); // full type, custom label too
    if (DataType.startsWith("Binary")) {
      parts.push(Buffer.from([2]), ...lengthPrefixed(Buffer.from(BinaryValue)));
    } else {
      parts.push(Buffer.from([1]), ...lengthPrefixed(Buffer.from(StringValue, "utf8")));
    }
  }
  return md5hex(Buffer.concat(parts));
}

// AWS-recorded digests (LocalStack snapshot tests marked aws.validated): the checker must agree.
const str = (v) => ({ DataType: "String", StringValue: v });
const vectors = [
  [{ MyAttribute: str("foobar") }, "adb59cd4678ea5a855436b949cd07ab6"],
  [{ General: str("Kenobi"), Hello: str("There"), "Help.Me": str("Me") },
    "4c360f3fdafd970e05fae2f149d997f5"],
  [{ General: str("Kenobi"), Hello: str("There") }, "fca026605781cb4126a1e9044df24232"],
  [{ Hello: str("There") }, "a311262e065454b75da111d535b8dacd"],
  [{ Hello: str("There"), "Help.Me": str("Me") }, "83fee93c1bcd8b9a5a923ffacdc636c7"],
  [{
    attr1: {
      DataType: "Binary",
      BinaryValue: Buffer.from("traceparent\x1e00-774062d6c37081a5a0b9b5b88e30627c-2d2482211f6489da-01",
        "latin1"),
    },
  }, "8cbe4db156db8a94db8b801b7addb984"],
];
for (const [attributes, digest] of vectors) {
  expectEqual(md5OfAttributes(attributes), digest,
    `checker self-test on AWS vector ${Object.keys(attributes).join(",")}`);
}
if (failures.length) {
  console.error("the attribute MD5 checker itself is wrong; not testing the server");
  process.exit(1);
}

// -- the SDK client, with its own MD5 validation asserted on ---------------------------------

const client = new SQSClient({
  endpoint: args.endpoint,
  region: "us-east-1",
  credentials: { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "secret" },
  maxAttempts: 1, // a retry must not hide a first wrong answer
});
checks += 1;
if (typeof client.config.md5 !== "function") fail("SDK MD5 validation is off (config.md5)");
// The validating middleware is added per command when the command resolves its stack.
for (const [Command, name] of [[SendMessageCommand, "sendMessageMiddleware"],
  [SendMessageBatchCommand, "sendMessageBatchMiddleware"],
  [ReceiveMessageCommand, "receiveMessageMiddleware"]]) {
  const command = new Command({});
  command.resolveMiddleware(client.middlewareStack, client.config, {});
  checks += 1;
  if (!command.middlewareStack.identify().some((entry) => entry.startsWith(`${name} `))) {
    fail(`SDK middleware ${name} is not in the ${Command.name} stack`);
  }
}

// -- the messages ----------------------------------------------------------------------------

const bytes = (...xs) => Uint8Array.from(xs);
const single = [
  {
    body: "hello \u2713 unicode \u{1F600}",
    attributes: {
      s: str("foobar"),
      n: { DataType: "Number", StringValue: "3.14" },
      b: { DataType: "Binary", BinaryValue: bytes(0, 1, 2, 255, 254, 10, 13) },
      "str.label": { DataType: "String.custom", StringValue: "x \u00e9 y" },
      "num.float": { DataType: "Number.float", StringValue: "-1.5E+10" },
      "bin.png": { DataType: "Binary.png", BinaryValue: bytes(0x89, 0x50, 0x4e, 0x47, 0, 0) },
      "Zeta-last_1": str("z"),
    },
  },
  { body: "aws vector", attributes: { MyAttribute: str("foobar") },
    expectSendMd5: "adb59cd4678ea5a855436b949cd07ab6" },
  { body: "no attributes at all", attributes: undefined },
];
const batch = Array.from({ length: 10 }, (_, i) => ({
  body: `batch message ${i} ${"x".repeat(i * 7)}`,
  attributes: i % 4 === 3 ? undefined : {
    index: { DataType: "Number.int", StringValue: String(i) },
    "str.k": str(`value ${i}`),
    ...(i % 2 ? { "bin.raw": { DataType: "Binary", BinaryValue: bytes(i, 0, 255 - i) } } : {}),
  },
}));
const all = [...single, ...batch];

// ReceiveMessage's MessageAttributeNames filter, as AWS applies it.
function select(attributes, names) {
  if (!attributes) return {};
  const out = {};
  for (const [name, value] of Object.entries(attributes)) {
    for (const sel of names) {
      if (sel === "All" || sel === ".*" || name === sel ||
        (sel.endsWith(".*") && name.startsWith(sel.slice(0, -2)))) {
        out[name] = value;
        break;
      }
    }
  }
  return out;
}

async function sendAll(queueUrl) {
  for (const m of single) {
    const out = await client.send(new SendMessageCommand({
      QueueUrl: queueUrl, MessageBody: m.body, MessageAttributes: m.attributes,
    })); // the SDK has checked MD5OfMessageBody here
    expectEqual(out.MD5OfMessageAttributes, md5OfAttributes(m.attributes),
      `SendMessage MD5OfMessageAttributes for "${m.body}"`);
    if (m.expectSendMd5) {
      expectEqual(out.MD5OfMessageAttributes, m.expectSendMd5,
        "SendMessage MD5OfMessageAttributes vs the AWS-recorded digest");
    }
  }
  const out = await client.send(new SendMessageBatchCommand({
    QueueUrl: queueUrl,
    Entries: batch.map((m, i) => ({ Id: `e${i}`, MessageBody: m.body,
      MessageAttributes: m.attributes })),
  })); // the SDK has checked every entry's MD5OfMessageBody here
  expectEqual((out.Failed || []).length, 0, "SendMessageBatch failed entries");
  expectEqual((out.Successful || []).length, batch.length, "SendMessageBatch successful entries");
  for (const entry of out.Successful || []) {
    const m = batch[Number(entry.Id.slice(1))];
    expectEqual(entry.MD5OfMessageAttributes, md5OfAttributes(m.attributes),
      `SendMessageBatch MD5OfMessageAttributes for entry ${entry.Id}`);
  }
}

async function receiveAll(queueUrl, names) {
  const got = [];
  const deadline = Date.now() + 20000;
  while (got.length < all.length && Date.now() < deadline) {
    const out = await client.send(new ReceiveMessageCommand({
      QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
      VisibilityTimeout: 60, MessageAttributeNames: names,
      MessageSystemAttributeNames: ["All"],
    })); // the SDK has checked every MD5OfBody here
    got.push(...(out.Messages || []));
  }
  expectEqual(got.length, all.length, `messages received with filter ${JSON.stringify(names)}`);
  for (const message of got) {
    const sent = all.find((m) => m.body === message.Body);
    checks += 1;
    if (!sent) {
      fail(`received an unknown body ${JSON.stringify(message.Body)}`);
      continue;
    }
    const expected = select(sent.attributes, names);
    const what = `ReceiveMessage ${JSON.stringify(names)} "${message.Body.slice(0, 20)}"`;
    // The digest covers exactly the attributes returned, and matches what was sent.
    expectEqual(message.MD5OfMessageAttributes, md5OfAttributes(message.MessageAttributes),
      `${what}: MD5OfMessageAttributes vs the returned attributes`);
    expectEqual(message.MD5OfMessageAttributes, md5OfAttributes(expected),
      `${what}: MD5OfMessageAttributes vs the sent attributes`);
    expectEqual(Object.keys(message.MessageAttributes || {}).sort().join(","),
      Object.keys(expected).sort().join(","), `${what}: attribute names`);
    for (const [name, value] of Object.entries(expected)) {
      const back = (message.MessageAttributes || {})[name];
      if (!back) continue;
      expectEqual(back.DataType, value.DataType, `${what}: ${name} DataType`);
      if (value.BinaryValue !== undefined) {
        expectEqual(Buffer.from(back.BinaryValue || []).toString("hex"),
          Buffer.from(value.BinaryValue).toString("hex"), `${what}: ${name} BinaryValue`);
      } else {
        expectEqual(back.StringValue, value.StringValue, `${what}: ${name} StringValue`);
      }
    }
  }
  if (got.length) {
    for (let i = 0; i < got.length; i += 10) {
      const out = await client.send(new DeleteMessageBatchCommand({
        QueueUrl: queueUrl,
        Entries: got.slice(i, i + 10).map((m, j) => ({ Id: `d${j}`,
          ReceiptHandle: m.ReceiptHandle })),
      }));
      expectEqual((out.Failed || []).length, 0, "DeleteMessageBatch failed entries");
    }
  }
}

async function main() {
  const filters = [["All"], [".*"], ["str.*", "n", "index"], ["nothing.matches.*"]];
  for (const [i, names] of filters.entries()) {
    const { QueueUrl } = await client.send(new CreateQueueCommand({
      QueueName: `${args.prefix}-${i}`,
    }));
    await sendAll(QueueUrl);
    await receiveAll(QueueUrl, names);
    await client.send(new DeleteQueueCommand({ QueueUrl }));
  }
  // MD5OfMessageSystemAttributes (same algorithm) on a send with an AWSTraceHeader.
  const { QueueUrl } = await client.send(new CreateQueueCommand({
    QueueName: `${args.prefix}-system`,
  }));
  const system = { AWSTraceHeader: str("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1") };
  const out = await client.send(new SendMessageCommand({
    QueueUrl, MessageBody: "traced", MessageSystemAttributes: system,
  }));
  expectEqual(out.MD5OfMessageSystemAttributes, md5OfAttributes(system),
    "SendMessage MD5OfMessageSystemAttributes");
  await client.send(new DeleteQueueCommand({ QueueUrl }));
}

try {
  await main();
} catch (error) {
  // The SDK's own MD5 middleware throws "InvalidChecksumError" / "Invalid MD5 checksum on
  // messages: ..."; any other error (HTTP, parsing) fails the run too.
  fail(`${error.name}: ${error.message}`);
}
console.log(JSON.stringify({ checks, failures: failures.length }));
process.exit(failures.length ? 1 : 0);
