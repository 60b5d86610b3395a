// A Node.js subscriber of sinch-postbacks events.
//
// It declares its subscriber queue NS.sub.NAME (a durable quorum queue, as `postbacks
// subscribe` makes it) bound to NS.events with each pattern, validates every event
// against the JSON Schema the Python package ships (`postbacks schema` prints it), and
// keeps, per tracking id, the event with the highest lifecycle.seq: whatever order events
// arrive in, that one holds the message's true state (contract section 6).
//
// Environment:
//   AMQP_URL             amqp://guest:guest@127.0.0.1:5672/
//   POSTBACKS_NAMESPACE  postbacks
//   SUBSCRIBER           node            (the queue is NS.sub.SUBSCRIBER)
//   PATTERNS             #               (comma-separated routing-key patterns)
//   EVENT_SCHEMA         the schema file (default: the package's, from this checkout)
//   EXPECT               stop after this many messages (default: run until SIGTERM)
//
// Prints one JSON line per message ({"valid": ..., ...}), "ready" lines on stderr, and on
// exit one JSON line {"summary": {"valid", "invalid", "state"}}.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const amqplib = require('amqplib');
const Ajv2020 = require('ajv/dist/2020').default;

const url = process.env.AMQP_URL || 'amqp://guest:guest@127.0.0.1:5672/';
const namespace = process.env.POSTBACKS_NAMESPACE || 'postbacks';
const subscriber = process.env.SUBSCRIBER || 'node';
const patterns = (process.env.PATTERNS || '#').split(',').filter(Boolean);
const schemaPath =
  process.env.EVENT_SCHEMA ||
  path.join(__dirname, '..', '..', 'ingest', 'contract', 'event.schema.json');
const expect = process.env.EXPECT ? Number(process.env.EXPECT) : Infinity;

const validate = new Ajv2020({ allErrors: true, strict: true }).compile(
  JSON.parse(fs.readFileSync(schemaPath, 'utf8')),
);

// tracking id -> the lifecycle of its event with the highest seq
const state = new Map();
let valid = 0;
let invalid = 0;

function keep(event) {
  const tracking = event.tracking_id;
  const lifecycle = event.lifecycle;
  if (tracking === null || lifecycle === null) return;
  const held = state.get(tracking);
  if (held === undefined || lifecycle.seq > held.seq) {
    state.set(tracking, {
      seq: lifecycle.seq,
      current: lifecycle.current,
      final: lifecycle.final,
      event_id: event.event_id,
      code: event.code,
    });
  }
}

function handle(body) {
  let event;
  try {
    event = JSON.parse(body.toString('utf8'));
  } catch (error) {
    invalid += 1;
    return { valid: false, errors: [`not JSON: ${error.message}`] };
  }
  if (!validate(event)) {
    invalid += 1;
    const errors = validate.errors.map((e) => `${e.instancePath || '(event)'} ${e.message}`);
    return { valid: false, errors };
  }
  valid += 1;
  keep(event);
  return { valid: true, event_id: event.event_id, tracking_id: event.tracking_id, seq: event.lifecycle && event.lifecycle.seq };
}

async function main() {
  const connection = await amqplib.connect(url);
  const channel = await connection.createChannel();
  const events = `${namespace}.events`;
  const queue = `${namespace}.sub.${subscriber}`;
  await channel.checkExchange(events);
  await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  for (const pattern of patterns) await channel.bindQueue(queue, events, pattern);
  await channel.prefetch(100);

  let seen = 0;
  let done = false;
  const finish = async (code) => {
    if (done) return;
    done = true;
    const summary = { valid, invalid, state: Object.fromEntries(state) };
    process.stdout.write(`${JSON.stringify({ summary })}\n`);
    await connection.close().catch(() => {});
    process.exit(code);
  };
  process.on('SIGTERM', () => finish(0));
  process.on('SIGINT', () => finish(0));

  await channel.consume(queue, (message) => {
    if (message === null) return finish(1); // the queue was deleted
    const outcome = handle(message.content);
    process.stdout.write(`${JSON.stringify({ message_id: message.properties.messageId, ...outcome })}\n`);
    channel.ack(message);
    seen += 1;
    if (seen >= expect) finish(0);
  });
  process.stderr.write(`ready: ${queue} bound to ${events} with ${patterns.join(' ')}\n`);
}

main().catch((error) => {
  process.stderr.write(`consumer: ${error.stack || error}\n`);
  process.exit(2);
});
