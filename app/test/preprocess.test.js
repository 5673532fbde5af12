// The phone's preprocessing against the server's: reference numbers from ml/imaging.py and ml/quality.py
// (tools/reference.py wrote test/fixtures/preprocess.json).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import {
  brightnessTable, centerSquare, imageStats, leafVerdict, normaliseBrightness, prepare, qualityGate, readOutputs,
  resize, roundHalfEven, toWorkingSize,
} from '../src/preprocess.js';

const reference = JSON.parse(readFileSync(new URL('./fixtures/preprocess.json', import.meta.url)));
const bytes = (b64) => new Uint8Array(Buffer.from(b64, 'base64'));
const differing = (a, b) => a.reduce((n, v, i) => n + (v !== b[i]), 0);

for (const c of reference.cases) {
  const input = { width: c.input.width, height: c.input.height, data: bytes(c.input.rgb) };

  test(`${c.name}: the working-size image is Pillow's Lanczos, pixel for pixel`, () => {
    const working = toWorkingSize(input, c.config.work_size);
    assert.equal(working.width, c.working.width);
    assert.equal(working.height, c.working.height);
    assert.equal(differing(working.data, bytes(c.working.rgb)), 0);
  });

  test(`${c.name}: image_stats match`, () => {
    const working = { width: c.working.width, height: c.working.height, data: bytes(c.working.rgb) };
    const stats = imageStats(working, [input.width, input.height]);
    for (const [key, expected] of Object.entries(c.stats)) {
      // numpy takes the Laplacian's variance in float32 (pairwise sums); the rest is exact or float64.
      const tolerance = key === 'sharpness' ? 1e-5 * expected : 1e-9 * Math.max(1, expected);
      assert.ok(Math.abs(stats[key] - expected) <= tolerance, `${key}: ${stats[key]} against ${expected}`);
    }
    assert.equal(qualityGate(stats, reference.limits), c.reason);
  });

  test(`${c.name}: brightness lift and centre square match`, () => {
    const working = { width: c.working.width, height: c.working.height, data: bytes(c.working.rgb) };
    const lifted = normaliseBrightness(working, c.stats.luma_mean, c.config);
    assert.equal(differing(lifted.data, bytes(c.lifted)), 0);
    const square = centerSquare(lifted, c.config.input_size);
    assert.equal(square.width, c.square.size);
    assert.equal(differing(square.data, bytes(c.square.rgb)), 0);
  });
}

test('prepare gives the NHWC float32 input, or the quality gate reason', () => {
  const c = reference.cases[0];
  const input = { width: c.input.width, height: c.input.height, data: bytes(c.input.rgb) };
  const ready = prepare(input, c.config, reference.limits);
  assert.equal(ready.reason, null);
  assert.ok(ready.pixels instanceof Float32Array);
  assert.equal(ready.pixels.length, c.config.input_size ** 2 * 3);
  assert.deepEqual(Array.from(ready.pixels.subarray(0, 6)), Array.from(bytes(c.square.rgb).subarray(0, 6)));
  const tiny = reference.cases.find((x) => x.reason === 'too_small');
  const small = { width: tiny.input.width, height: tiny.input.height, data: bytes(tiny.input.rgb) };
  assert.equal(prepare(small, tiny.config, reference.limits).reason, 'too_small');
});

test('the quality gate turns photos away in the order a farmer should fix them', () => {
  const limits = reference.limits;
  const ok = { width: 300, height: 200, luma_mean: 120, clipped_white: 0, sharpness: 500, green_fraction: 0.6 };
  assert.equal(qualityGate(ok, limits), null);
  assert.equal(qualityGate({ ...ok, width: 10, luma_mean: 10 }, limits), 'too_small');
  assert.equal(qualityGate({ ...ok, luma_mean: 44.9, sharpness: 1 }, limits), 'too_dark');
  assert.equal(qualityGate({ ...ok, luma_mean: 201 }, limits), 'too_bright');
  assert.equal(qualityGate({ ...ok, clipped_white: 0.26 }, limits), 'too_bright');
  assert.equal(qualityGate({ ...ok, sharpness: 34 }, limits), 'blurry');
  assert.equal(leafVerdict(ok, false, limits), 'not_cassava_leaf');
  assert.equal(leafVerdict({ ...ok, green_fraction: 0.1 }, true, limits), 'leaf_too_small');
  assert.equal(leafVerdict(ok, true, limits), null);
});

test('the gamma lift is left out for bright or black photos, and bounded', () => {
  const config = { target_luma: 100, max_gamma_lift: 0.6 };
  assert.equal(brightnessTable(100, config), null);
  assert.equal(brightnessTable(1, config), null);
  const table = brightnessTable(5, config); // the bound: gamma 0.6, not the 0.24 that would reach the target
  assert.equal(table[128], roundHalfEven(255 * (128 / 255) ** 0.6));
  assert.equal(table[0], 0);
  assert.equal(table[255], 255);
});

test('round halves to even, as Python does', () => {
  assert.deepEqual([0.5, 1.5, 2.5, 2.4999, 2.5001, 239.5].map(roundHalfEven), [0, 2, 2, 2, 3, 240]);
});

test('an image already at the working size is kept; a same-size resize copies', () => {
  const image = { width: 4, height: 2, data: new Uint8Array(24).fill(7) };
  assert.equal(toWorkingSize(image, 4), image);
  const copy = resize(image, 4, 2, 'bilinear');
  assert.notEqual(copy.data, image.data);
  assert.deepEqual(copy.data, image.data);
});

test('outputs: top label, and the leaf gate below its threshold', () => {
  const classes = ['cbb', 'cbsd', 'cgm', 'cmd', 'healthy'];
  const answer = readOutputs(classes, Float32Array.of(0.1, 0.05, 0.05, 0.7, 0.1), 0.5, 0.104);
  assert.equal(answer.label, 'cmd');
  assert.ok(Math.abs(answer.confidence - 0.7) < 1e-6);
  assert.equal(answer.notLeaf, false);
  assert.equal(readOutputs(classes, [0.2, 0.2, 0.2, 0.2, 0.2], 0.05, 0.104).notLeaf, true);
  assert.equal(readOutputs(classes, [0.2, 0.2, 0.2, 0.2, 0.2], null, 0.104).notLeaf, false);
});
