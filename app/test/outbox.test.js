// The outbox's state machine on a real IndexedDB implementation (fake-indexeddb), closed and opened again as a
// restarted phone would.
import 'fake-indexeddb/auto';
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { openStore } from '../src/store.js';
import { DIAGNOSED, Outbox, OutboxError, REFUSED, REJECTED, SENDING, SENT, WAITING } from '../src/outbox.js';

let dbs = 0;
const freshName = () => `outbox-test-${++dbs}`;
const jpeg = (n = 1000) => new Uint8Array(n).fill(0xff).buffer;

test('capture -> waiting -> sending -> sent(job) -> diagnosed, bytes gone once the server has the photo', async () => {
  const db = await openStore(freshName());
  const outbox = new Outbox(db);
  const photo = await outbox.capture({ bytes: jpeg(), width: 1024, height: 768 });
  assert.equal(photo.state, WAITING);
  assert.match(photo.id, /^[0-9a-f-]{36}$/);
  assert.equal(await outbox.count(), 1);
  assert.equal((await outbox.bytes(photo.id)).byteLength, 1000);

  assert.equal((await outbox.beginSend(photo.id)).state, SENDING);
  assert.equal(await outbox.beginSend(photo.id), null, 'a photo being sent is not sent twice at once');
  assert.equal(await outbox.count(), 1, 'still waiting for the server');

  const sent = await outbox.sent(photo.id, 'job-1');
  assert.equal(sent.state, SENT);
  assert.equal(sent.jobId, 'job-1');
  assert.equal(await outbox.count(), 0);
  assert.equal(await outbox.bytes(photo.id), undefined);

  const queued = await outbox.polled(photo.id, { status: 'queued' }, 5000);
  assert.equal(queued.state, SENT);
  assert.equal(queued.nextPollAt, 5000);
  const done = await outbox.polled(photo.id, { status: 'classified', result: { label: 'cmd', confidence: 0.9 } });
  assert.equal(done.state, DIAGNOSED);
  assert.equal(done.result.label, 'cmd');
  assert.equal(await outbox.polled(photo.id, { status: 'rejected' }), null, 'a final answer stays');
  db.close();
});

test('a photo leaves the outbox only with its job id', async () => {
  const db = await openStore(freshName());
  const outbox = new Outbox(db);
  const photo = await outbox.capture({ bytes: jpeg() });
  await outbox.beginSend(photo.id);
  await assert.rejects(() => outbox.sent(photo.id, null), OutboxError);
  assert.equal((await outbox.get(photo.id)).state, SENDING);
  db.close();
});

test('everything survives closing and opening again; a send cut by the end of the app waits again, URL kept', async () => {
  const name = freshName();
  let db = await openStore(name);
  let outbox = new Outbox(db);
  const photo = await outbox.capture({ bytes: jpeg(2048) });
  await outbox.beginSend(photo.id);
  await outbox.setUploadUrl(photo.id, '/v1/uploads/abc');
  db.close(); // the phone restarts mid-upload

  db = await openStore(name);
  outbox = new Outbox(db);
  assert.equal((await outbox.get(photo.id)).state, SENDING);
  assert.equal(await outbox.recover(), 1);
  const again = await outbox.get(photo.id);
  assert.equal(again.state, WAITING);
  assert.equal(again.uploadUrl, '/v1/uploads/abc', 'resumes from the server offset, not from zero');
  assert.equal(again.attempts, 1);
  assert.equal((await outbox.bytes(photo.id)).byteLength, 2048);
  assert.equal(await outbox.count(), 1);
  db.close();
});

test('never two jobs: every attempt, before and after a restart, carries the key made at capture', async () => {
  const name = freshName();
  const keysSent = [];
  let db = await openStore(name);
  let outbox = new Outbox(db);
  const { id } = await outbox.capture({ bytes: jpeg() });
  await outbox.beginSend(id);
  keysSent.push((await outbox.get(id)).id); // first attempt: cut
  await outbox.sendFailed(id, 0, 'cut');
  db.close();
  db = await openStore(name);
  outbox = new Outbox(db);
  await outbox.recover();
  const [due] = await outbox.dueUploads();
  await outbox.beginSend(due.id);
  keysSent.push(due.id);
  await outbox.sent(due.id, 'job-7');
  assert.deepEqual(keysSent, [id, id]);
  assert.equal(new Set((await outbox.all()).map((p) => p.jobId)).size, 1);
  db.close();
});

test('a failed send waits until its time; the server refusing it is final and never sent again', async () => {
  let clock = 1000;
  const db = await openStore(freshName());
  const outbox = new Outbox(db, { now: () => clock });
  const a = await outbox.capture({ bytes: jpeg() });
  clock = 1001;
  const b = await outbox.capture({ bytes: jpeg() });
  await outbox.beginSend(a.id);
  await outbox.sendFailed(a.id, 9000, 'HTTP 500');
  assert.deepEqual((await outbox.dueUploads(2000)).map((p) => p.id), [b.id]);
  assert.deepEqual((await outbox.dueUploads(9000)).map((p) => p.id), [a.id, b.id], 'oldest first');
  assert.equal(await outbox.nextUploadTime(), 0);
  assert.equal(await outbox.nextPollTime(), Infinity);

  await outbox.beginSend(b.id);
  const refused = await outbox.refused(b.id, 422, 'The photo is 9000x9000 pixels');
  assert.equal(refused.state, REFUSED);
  assert.equal(refused.refusal.status, 422);
  assert.deepEqual((await outbox.dueUploads(1e12)).map((p) => p.id), [a.id]);
  assert.equal(await outbox.bytes(b.id), undefined);
  db.close();
});

test("the server's list of jobs rebuilds a reinstalled app's history and settles photos cut before the answer", async () => {
  const db = await openStore(freshName());
  const outbox = new Outbox(db);
  const mine = await outbox.capture({ bytes: jpeg() });
  await outbox.beginSend(mine.id); // the last PATCH arrived, its answer did not
  await outbox.sendFailed(mine.id, 1e12, 'cut');
  const changed = await outbox.merge([
    { job_id: 'j2', status: 'rejected', rejection: { reason: 'too_dark', message: 'dark' }, idempotency_key: 'other-phone-install', created_at: '2026-12-01T10:00:00Z' },
    { job_id: 'j1', status: 'queued', idempotency_key: mine.id, created_at: '2026-12-07T10:00:00Z' },
  ]);
  assert.equal(changed, 2);
  const all = await outbox.all();
  assert.equal(all.length, 2);
  assert.equal((await outbox.get(mine.id)).state, SENT);
  assert.equal((await outbox.get(mine.id)).jobId, 'j1');
  assert.equal((await outbox.get('other-phone-install')).state, REJECTED);
  assert.equal(await outbox.count(), 0);
  assert.equal(await outbox.merge([{ job_id: 'j2', status: 'rejected', idempotency_key: 'other-phone-install' }]), 0);
  db.close();
});

test('feedback and events wait in the outbox with keys of their own', async () => {
  const db = await openStore(freshName());
  const outbox = new Outbox(db);
  const photo = await outbox.capture({ bytes: jpeg() });
  const feedback = await outbox.addFeedback(photo.id, 'cbsd');
  assert.notEqual(feedback.key, photo.id);
  assert.equal((await outbox.get(photo.id)).feedback.label, 'cbsd');
  assert.equal(await outbox.feedbackFailed(feedback.key, 5000), 1);
  assert.equal((await outbox.dueFeedback(4000)).length, 0);
  assert.equal((await outbox.dueFeedback(5000))[0].key, feedback.key);
  await outbox.feedbackDone(feedback.key);
  assert.equal((await outbox.dueFeedback(1e12)).length, 0);

  const e1 = await outbox.addEvent('upload_retried', { attempt: 1 });
  const e2 = await outbox.addEvent('offline_answer_shown', { latency_ms: 800 }, 'job-1');
  assert.notEqual(e1.event_id, e2.event_id);
  assert.equal(e2.job_id, 'job-1');
  assert.equal(e1.job_id, undefined);
  assert.equal((await outbox.eventBatch(1)).length, 1);
  await outbox.removeEvents([e1.event_id, e2.event_id]);
  assert.equal(await outbox.eventCount(), 0);
  db.close();
});
