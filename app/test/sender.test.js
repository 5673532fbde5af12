// The sender over a real outbox (fake-indexeddb) with a fake server and a fake clock.
import 'fake-indexeddb/auto';
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { ApiError } from '../src/api.js';
import { LINK_BACKOFF } from '../src/backoff.js';
import { Events } from '../src/events.js';
import { Outbox } from '../src/outbox.js';
import { Sender } from '../src/sender.js';
import { openStore, Settings } from '../src/store.js';

let n = 0;
const down = () => new ApiError('network', { cause: new TypeError('Failed to fetch') });

async function world({ upload, api = {}, locks } = {}) {
  const clock = { now: 1_000_000 };
  const db = await openStore(`sender-test-${++n}`);
  const outbox = new Outbox(db, { now: () => clock.now });
  const settings = new Settings(db);
  await settings.set('token', 'tok');
  const calls = { upload: [], job: [], feedback: [], events: [] };
  const server = {
    upload: upload ?? (async (photo) => ({ jobId: `job-for-${photo.id.slice(0, 4)}`, retries: 0, resumes: 0 })),
    job: api.job ?? (async (id) => ({ job_id: id, status: 'classified', result: { label: 'cmd', confidence: 0.93 } })),
    feedback: api.feedback ?? (async () => ({ event_id: 'e' })),
    events: api.events ?? (async () => ({ accepted: 1 })),
  };
  const timers = { setTimeout: () => 1, clearTimeout: () => {} };
  const make = () => new Sender({
    outbox, settings, events: new Events(outbox), now: () => clock.now, random: () => 0.5, timers, locks,
    upload: (photo, blob, token) => { calls.upload.push({ key: photo.id, size: blob.size, token }); return server.upload(photo, blob); },
    api: {
      job: (id) => { calls.job.push(id); return server.job(id); },
      feedback: (id, label, key) => { calls.feedback.push({ id, label, key }); return server.feedback(id, label, key); },
      events: (batch) => { calls.events.push(batch); return server.events(batch); },
    },
  });
  return { clock, db, outbox, settings, server, calls, make };
}

const capture = (outbox) => outbox.capture({ bytes: new Uint8Array(5000).buffer });

test('offline: the photo stays, the link waits its jittered backoff; back online it goes once and gets its answer', async () => {
  const w = await world();
  w.server.upload = async () => { throw down(); };
  const sender = w.make();
  await sender.start();
  const photo = await capture(w.outbox);
  await sender.kick('capture');
  assert.equal((await w.outbox.get(photo.id)).state, 'waiting');
  assert.equal(sender.status.offline, true);
  const wait = sender.linkRetryAt - w.clock.now;
  assert.ok(wait >= 0 && wait <= LINK_BACKOFF.base, `first wait ${wait}`);
  for (let i = 0; i < 12; i++) { // a long outage: the link is tried again at most a minute apart
    w.clock.now = sender.linkRetryAt;
    await sender.kick('timer');
    assert.ok(sender.linkRetryAt - w.clock.now <= LINK_BACKOFF.cap);
  }
  assert.equal(await sender.pass(), sender.linkRetryAt, 'nothing is tried before the link wait is over');
  assert.equal(w.calls.upload.length, 13);

  w.server.upload = async (p) => ({ jobId: 'job-1', retries: 2, resumes: 1, resumedFrom: 4096 });
  w.clock.now += 60_000;
  await sender.kick('online');
  const done = await w.outbox.get(photo.id);
  assert.equal(done.state, 'diagnosed');
  assert.equal(done.jobId, 'job-1');
  assert.deepEqual(new Set(w.calls.upload.map((c) => c.key)), new Set([photo.id]), 'the same key every time');
  assert.equal(w.calls.upload.at(-1).token, 'tok');
  assert.equal(await w.outbox.count(), 0);
  assert.equal(sender.status.offline, false);
  const kinds = (await w.outbox.eventBatch()).map((e) => e.kind);
  assert.equal(kinds.filter((k) => k === 'upload_resumed').length, 1);
  assert.equal(kinds.filter((k) => k === 'upload_retried').length, 1, 'one report for the whole outage');
  const retried = (await w.outbox.eventBatch()).find((e) => e.kind === 'upload_retried');
  assert.equal(retried.data.attempt, 14);
  assert.equal(retried.job_id, 'job-1');
  w.db.close();
});

test('Retry-After holds every upload until its time, also after a restart', async () => {
  const w = await world();
  w.server.upload = async () => { throw new ApiError('wait', { status: 429, retryAfterMs: 7000 }); };
  let sender = w.make();
  await sender.start();
  await capture(w.outbox);
  w.clock.now += 1;
  await capture(w.outbox);
  const wake = await sender.pass();
  assert.equal(w.calls.upload.length, 1, 'the second photo was held back too');
  assert.equal(wake, w.clock.now + 7000);
  assert.equal(sender.status.busy, true);

  sender = w.make(); // the app restarts
  await sender.start();
  assert.equal(w.calls.upload.length, 1, 'the hold survived the restart');
  w.server.upload = async () => ({ jobId: `job-${w.calls.upload.length}`, retries: 0, resumes: 0 });
  w.clock.now += 7000;
  await sender.kick('timer');
  assert.equal(w.calls.upload.length, 3);
  assert.equal(await w.outbox.count(), 0);
  assert.ok((await w.outbox.eventBatch()).some((e) => e.kind === 'told_to_wait' && e.data.retry_after_s === 7));
  w.db.close();
});

test("a 4xx is the server's last word: kept with its reason, never sent again", async () => {
  const w = await world();
  w.server.upload = async () => { throw new ApiError('final', { status: 422, problem: { detail: 'The photo is 9000x9000 pixels' } }); };
  const sender = w.make();
  await sender.start();
  const photo = await capture(w.outbox);
  await sender.kick('capture');
  await sender.kick('online');
  w.clock.now += 3_600_000;
  await sender.kick('timer');
  assert.equal(w.calls.upload.length, 1);
  const refused = await w.outbox.get(photo.id);
  assert.equal(refused.state, 'refused');
  assert.match(refused.refusal.detail, /9000x9000/);
  assert.equal(await w.outbox.count(), 0);
  w.db.close();
});

test('a server error makes that photo wait its own backoff while the next one goes', async () => {
  const w = await world();
  let first = true;
  w.server.upload = async (photo) => {
    if (first) { first = false; throw new ApiError('transient', { status: 500 }); }
    return { jobId: 'job-2', retries: 0, resumes: 0 };
  };
  const sender = w.make();
  await sender.start();
  const a = await capture(w.outbox);
  w.clock.now += 1;
  const b = await capture(w.outbox);
  await sender.kick('capture');
  assert.equal((await w.outbox.get(a.id)).state, 'waiting');
  assert.ok((await w.outbox.get(a.id)).nextAttemptAt > w.clock.now);
  assert.equal((await w.outbox.get(b.id)).state, 'diagnosed');
  w.db.close();
});

test('revoked: the phone says so and stops sending', async () => {
  const w = await world();
  w.server.upload = async () => { throw new ApiError('revoked', { status: 401, problem: { reason: 'revoked' } }); };
  const sender = w.make();
  await sender.start();
  const photo = await capture(w.outbox);
  await sender.kick('capture');
  assert.equal(sender.status.revoked, true);
  assert.equal(await w.settings.get('revoked'), true);
  assert.equal(await sender.pass(), Infinity);
  await sender.kick('online');
  assert.equal(w.calls.upload.length, 1);
  assert.equal((await w.outbox.get(photo.id)).state, 'waiting', 'the photo is kept');
  w.db.close();
});

test('the answer is polled with backoff until final; the phone answer it replaces is reported', async () => {
  const w = await world();
  const statuses = ['queued', 'processing', 'classified'];
  w.server.job = async (id) => {
    const status = statuses.shift();
    return { job_id: id, status, ...(status === 'classified' ? { result: { label: 'cbsd', confidence: 0.7 } } : {}) };
  };
  const sender = w.make();
  await sender.start();
  const photo = await capture(w.outbox);
  await w.outbox.setPhoneAnswer(photo.id, { label: 'cmd', modelVersion: 'v1', shownAt: w.clock.now });
  await sender.kick('capture');
  assert.equal((await w.outbox.get(photo.id)).state, 'sent');
  for (let i = 0; i < 5 && (await w.outbox.get(photo.id)).state === 'sent'; i++) {
    w.clock.now = (await w.outbox.get(photo.id)).nextPollAt;
    await sender.kick('timer');
  }
  const done = await w.outbox.get(photo.id);
  assert.equal(done.state, 'diagnosed');
  assert.equal(w.calls.job.length, 3);
  const replaced = (await w.outbox.eventBatch()).find((e) => e.kind === 'offline_answer_replaced');
  assert.equal(replaced.job_id, done.jobId);
  assert.equal(replaced.data.same, false);
  assert.equal(replaced.data.phone_label, 'cmd');
  w.db.close();
});

test('feedback waits for the answer, then goes with its own key, the same on every retry', async () => {
  const w = await world();
  let conflicts = 1;
  w.server.feedback = async () => { if (conflicts-- > 0) throw new ApiError('transient', { status: 409 }); return { event_id: 'e' }; };
  w.server.upload = async () => { throw down(); };
  const sender = w.make();
  await sender.start();
  const photo = await capture(w.outbox);
  const feedback = await w.outbox.addFeedback(photo.id, 'healthy');
  await sender.kick('capture');
  assert.equal(w.calls.feedback.length, 0, 'no job yet');
  w.server.upload = async () => ({ jobId: 'job-9', retries: 0, resumes: 0 });
  for (let i = 0; i < 6 && (await w.outbox.dueFeedback(1e15)).length; i++) {
    w.clock.now += 10 * 60_000;
    await sender.kick('timer');
  }
  assert.deepEqual(w.calls.feedback.map((f) => [f.id, f.label, f.key]), [['job-9', 'healthy', feedback.key], ['job-9', 'healthy', feedback.key]]);
  assert.equal((await w.outbox.dueFeedback(1e15)).length, 0);
  w.db.close();
});

test('events go together in one batch once their time comes; a batch the server refuses is dropped', async () => {
  const w = await world();
  const sender = w.make();
  await sender.start();
  const events = new Events(w.outbox);
  await events.record('offline_answer_shown', { latency_ms: 812.4, model_version: 'v1' });
  await events.record('app_error', { where: 'camera', message: 'x'.repeat(500), 'Bad-Key': 1 });
  await sender.kick('timer');
  assert.equal(w.calls.events.length, 0, 'not yet: they wait to go together');
  w.clock.now += 31_000;
  await sender.kick('timer');
  assert.equal(w.calls.events.length, 1);
  assert.equal(w.calls.events[0].length, 2);
  const error = w.calls.events[0].find((e) => e.kind === 'app_error');
  assert.equal(error.data.message.length, 200);
  assert.ok(!('Bad-Key' in error.data));
  assert.equal(await w.outbox.eventCount(), 0);

  w.server.events = async () => { throw new ApiError('final', { status: 422 }); };
  await events.record('app_error', { where: 'x' });
  await sender.kick('hidden'); // the app goes to the background: send now
  assert.equal(w.calls.events.length, 2);
  assert.equal(await w.outbox.eventCount(), 0);
  w.db.close();
});

test('one tab sends at a time; the first pass puts back a photo a closed app left sending', async () => {
  const held = { busy: true };
  const locks = { request: async (name, options, body) => body(held.busy ? null : { name }) };
  const w = await world({ locks });
  const photo = await capture(w.outbox);
  await w.outbox.beginSend(photo.id); // the app was closed mid-upload
  const sender = w.make();
  await sender.start();
  assert.equal(w.calls.upload.length, 0, 'another tab holds the outbox');
  assert.equal((await w.outbox.get(photo.id)).state, 'sending', 'not taken from the tab that may be sending it');
  held.busy = false;
  await sender.kick('visible');
  assert.equal(w.calls.upload.length, 1);
  assert.equal((await w.outbox.get(photo.id)).state, 'diagnosed');
  w.db.close();
});
