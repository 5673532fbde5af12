// Every key the app's code names is in the catalogue (English, the source; the other languages have its keys).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';

import { LABELS } from '../src/answers.js';

const english = JSON.parse(readFileSync(new URL('../../schemas/catalogue/en.json', import.meta.url)));
const REASONS = ['unreadable', 'too_small', 'too_dark', 'too_bright', 'blurry', 'leaf_too_small', 'not_cassava_leaf'];
const STATES = ['waiting', 'sending', 'sent', 'diagnosed', 'rejected', 'failed'];

function sources(folder) {
  return readdirSync(folder, { withFileTypes: true }).flatMap((entry) => {
    const path = new URL(entry.name + (entry.isDirectory() ? '/' : ''), folder);
    if (entry.isDirectory()) return sources(path);
    return /\.(js|jsx)$/.test(entry.name) ? [readFileSync(path, 'utf8')] : [];
  });
}

test('every literal key the app names is in the catalogue', () => {
  const named = new Set();
  for (const text of sources(new URL('../src/', import.meta.url))) {
    for (const [, key] of text.matchAll(/\.t\(\s*'([a-z_.]+)'/g)) named.add(key);
    for (const [, key] of text.matchAll(/\?\s*'(app\.[a-z_.]+)'\s*:\s*'app\./g)) named.add(key);
  }
  assert.ok(named.size > 20, `found only ${named.size} keys`);
  for (const key of named) assert.ok(key in english, key);
});

test('every label, reason and state the app can show has its words', () => {
  for (const label of LABELS) for (const part of ['name', 'advice']) assert.ok(`label.${label}.${part}` in english);
  for (const reason of REASONS) assert.ok(`reason.${reason}` in english, reason);
  for (const state of STATES) assert.ok(`app.state.${state}` in english, state);
  for (const sure of ['high', 'medium', 'low']) assert.ok(`app.sure.${sure}` in english);
  assert.ok('job.failed' in english);
});
