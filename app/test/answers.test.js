import { test } from 'node:test';
import assert from 'node:assert/strict';

import { answerOf, certainty, stateKey } from '../src/answers.js';

test('certainty in words', () => {
  assert.equal(certainty(0.95), 'high');
  assert.equal(certainty(0.8), 'high');
  assert.equal(certainty(0.79), 'medium');
  assert.equal(certainty(0.55), 'medium');
  assert.equal(certainty(0.3), 'low');
});

test("the server's answer replaces the phone's; the phone's shows until then", () => {
  const phone = { label: 'cmd', confidence: 0.9, shownAt: 1 };
  assert.deepEqual(answerOf({ state: 'waiting' }), { source: null, kind: 'pending' });
  assert.equal(answerOf({ state: 'sending', phone }).source, 'phone');
  assert.equal(answerOf({ state: 'sent', phone: { reason: 'too_dark', shownAt: 1 } }).reason, 'too_dark');
  assert.equal(answerOf({ state: 'sent', phone: { label: 'cmd' } }).kind, 'pending', 'computed but never shown');
  const server = answerOf({ state: 'diagnosed', phone, result: { label: 'cbsd', confidence: 0.6 } });
  assert.deepEqual(server, { source: 'server', kind: 'diagnosis', label: 'cbsd', confidence: 0.6 });
  assert.equal(answerOf({ state: 'rejected', rejection: { reason: 'blurry' } }).reason, 'blurry');
  assert.equal(answerOf({ state: 'failed' }).kind, 'failed');
  assert.equal(answerOf({ state: 'refused' }).kind, 'refused');
});

test('every state has its words', () => {
  assert.equal(stateKey({ state: 'waiting' }), 'app.state.waiting');
  assert.equal(stateKey({ state: 'refused' }), 'app.state.failed');
});
