// Uploads through the real tus-js-client (its node build) against a small tus server that cuts links.
import 'fake-indexeddb/auto';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Upload } from 'tus-js-client';

import { openStore } from '../src/store.js';
import { Outbox } from '../src/outbox.js';
import { OutboxUrlStorage, uploadPhoto } from '../src/upload.js';
import { startTusServer } from './helpers/tus-server.js';

let n = 0;
async function setUp(bytes) {
  const db = await openStore(`upload-test-${++n}`);
  const outbox = new Outbox(db);
  const photo = await outbox.capture({ bytes: new Uint8Array(bytes).buffer });
  await outbox.beginSend(photo.id);
  return { db, outbox, photo };
}

const send = (server, outbox, photo, bytes, extra = {}) => uploadPhoto({
  Upload, endpoint: server.endpoint, token: 'tok', photo, blob: Buffer.from(bytes), urlStorage: new OutboxUrlStorage(outbox), ...extra,
});

test('a photo goes up in 32 KB chunks with its key and comes back with its job id', async () => {
  const server = await startTusServer();
  const bytes = randomBytes(100_000);
  const { db, outbox, photo } = await setUp(bytes);
  const result = await send(server, outbox, photo, bytes);
  assert.equal(result.jobId, 'job-1');
  assert.deepEqual(server.bytesOf(photo.id), bytes);
  const patches = server.log.filter((r) => r.method === 'PATCH');
  assert.equal(patches.length, Math.ceil(100_000 / 32_768));
  assert.ok(server.log.every((r) => r.key === photo.id), 'every request carries the Idempotency-Key');
  assert.match(await outbox.uploadUrl(photo.id), /\/v1\/uploads\/1$/, 'the URL is in the outbox until the job is recorded');
  await server.close();
  db.close();
});

test('a link cut every few KB: each attempt resumes from the server offset, and the photo arrives once', async () => {
  const server = await startTusServer({ cutAfter: 5_000 });
  const bytes = randomBytes(40_000);
  const { db, outbox, photo } = await setUp(bytes);
  let result;
  for (let attempt = 0; attempt < 10 && !result; attempt++) { // each attempt gives up after tus's own retries
    try {
      result = await send(server, outbox, photo, bytes);
    } catch (error) {
      assert.equal(error.kind, 'network');
    }
  }
  assert.equal(result.jobId, 'job-1');
  assert.ok(result.retries > 0 && result.resumes > 0);
  assert.deepEqual(server.bytesOf(photo.id), bytes);
  assert.equal(server.uploads.size, 1);
  assert.equal(server.jobs.size, 1);
  await server.close();
  db.close();
});

test('after a restart the upload goes on from where the server stood, not from zero', async () => {
  const server = await startTusServer({ cutAfter: 30_000 });
  const bytes = randomBytes(60_000);
  const { db, outbox, photo } = await setUp(bytes);
  // First run: tus gives up at once (no retries of its own), as when the app is closed mid-upload.
  await assert.rejects(uploadPhoto({ Upload: class extends Upload {
    constructor(file, options) { super(file, { ...options, retryDelays: [] }); }
  }, endpoint: server.endpoint, token: 'tok', photo, blob: Buffer.from(bytes), urlStorage: new OutboxUrlStorage(outbox) }));
  assert.equal(server.uploads.get('1').received, 30_000);
  server.state.cutAfter = null;
  const result = await send(server, outbox, photo, bytes);
  assert.equal(result.resumedFrom, 30_000);
  const posts = server.log.filter((r) => r.method === 'POST');
  assert.equal(posts.length, 1, 'no second upload was created');
  assert.deepEqual(server.bytesOf(photo.id), bytes);
  await server.close();
  db.close();
});

test('the last answer lost: HEAD says complete and names the job', async () => {
  const server = await startTusServer({ loseLastAnswer: true });
  const bytes = randomBytes(10_000);
  const { db, outbox, photo } = await setUp(bytes);
  const result = await send(server, outbox, photo, bytes);
  assert.equal(result.jobId, 'job-1');
  assert.equal(server.jobs.size, 1);
  await server.close();
  db.close();
});

test('429 is a wait with its Retry-After; 413 is final; neither is retried by tus', async () => {
  const server = await startTusServer({ refuse: { status: 429, retryAfter: '7' } });
  const bytes = randomBytes(1000);
  const { db, outbox, photo } = await setUp(bytes);
  await assert.rejects(send(server, outbox, photo, bytes), (e) => e.kind === 'wait' && e.retryAfterMs === 7000 && e.retries === 0);
  server.state.refuse = { status: 413, body: { status: 413, detail: 'The photo is larger than 20 MB.' } };
  await assert.rejects(send(server, outbox, photo, bytes), (e) => e.kind === 'final' && e.status === 413 && /larger/.test(e.message));
  server.state.refuse = { status: 401, body: { status: 401, reason: 'revoked' } };
  await assert.rejects(send(server, outbox, photo, bytes), (e) => e.kind === 'revoked');
  assert.equal(server.log.length, 3);
  await server.close();
  db.close();
});

test('a stalled link is given up after the stall time', async () => {
  const server = await startTusServer();
  const bytes = randomBytes(1000);
  const { db, outbox, photo } = await setUp(bytes);
  const NeverAnswers = class { constructor() {} findPreviousUploads() { return Promise.resolve([]); } start() {} abort() { this.aborted = true; } };
  await assert.rejects(send(server, outbox, photo, bytes, { Upload: NeverAnswers, stallMs: 50 }), (e) => e.kind === 'network');
  await server.close();
  db.close();
});
