import { test } from 'node:test';
import assert from 'node:assert/strict';

import { backoffDelay, Holds, parseRetryAfter, POLL_BACKOFF, UPLOAD_BACKOFF } from '../src/backoff.js';

test('full jitter: every wait is within [0, min(cap, base * 2^attempt)]', () => {
  for (let attempt = 0; attempt < 20; attempt++) {
    const ceiling = Math.min(UPLOAD_BACKOFF.cap, UPLOAD_BACKOFF.base * 2 ** attempt);
    for (let i = 0; i < 200; i++) {
      const wait = backoffDelay(attempt, UPLOAD_BACKOFF);
      assert.ok(wait >= 0 && wait <= ceiling, `attempt ${attempt}: ${wait} outside [0, ${ceiling}]`);
    }
  }
  assert.equal(backoffDelay(0, UPLOAD_BACKOFF, () => 0), 0);
  assert.equal(backoffDelay(3, UPLOAD_BACKOFF, () => 0.999999), Math.floor(0.999999 * 16_000));
  assert.equal(backoffDelay(1000, UPLOAD_BACKOFF, () => 0.5), UPLOAD_BACKOFF.cap / 2); // no Infinity
});

test('the waits are spread, not all the same', () => {
  const waits = new Set(Array.from({ length: 50 }, () => backoffDelay(6, UPLOAD_BACKOFF)));
  assert.ok(waits.size > 40);
});

test('polls wait at least their floor', () => {
  for (let i = 0; i < 100; i++) assert.ok(backoffDelay(0, POLL_BACKOFF) >= POLL_BACKOFF.floor);
});

test('Retry-After: seconds, an HTTP date, or nothing', () => {
  const now = Date.parse('2026-12-07T10:00:00Z');
  assert.equal(parseRetryAfter('5', now), 5000);
  assert.equal(parseRetryAfter(' 300 ', now), 300_000);
  assert.equal(parseRetryAfter('Mon, 07 Dec 2026 10:01:00 GMT', now), 60_000);
  assert.equal(parseRetryAfter('Mon, 07 Dec 2026 09:00:00 GMT', now), 0);
  assert.equal(parseRetryAfter(null, now), null);
  assert.equal(parseRetryAfter('soon', now), null);
  assert.equal(parseRetryAfter('-3', now), null);
});

test('a hold keeps the whole action back until its time, and only that action', () => {
  const holds = new Holds();
  holds.hold('upload', 5000, 1000);
  assert.equal(holds.heldUntil('upload', 1000), 6000);
  assert.equal(holds.heldUntil('upload', 5999), 6000);
  assert.equal(holds.heldUntil('upload', 6000), 0);
  assert.equal(holds.heldUntil('feedback', 1000), 0);
  holds.hold('upload', 1000, 2000); // a shorter hold does not shorten the longer one
  assert.equal(holds.heldUntil('upload', 2500), 6000);
  assert.deepEqual(new Holds(holds.toJSON()).heldUntil('upload', 3000), 6000); // survives a restart
});
