import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';

import { Catalogue, chooseLanguage, format, loadCatalogue, primary, splitCatalogue } from '../src/i18n.js';

const FOLDER = new URL('../../schemas/catalogue/', import.meta.url);
const files = Object.fromEntries(readdirSync(FOLDER).filter((f) => f.endsWith('.json'))
  .map((f) => [f.replace('.json', ''), JSON.parse(readFileSync(new URL(f, FOLDER)))]));
const SUPPORTED = ['en', 'sw', 'fr', 'rw', 'lg'];

test('the app starts in the phone language when it has it', () => {
  assert.equal(chooseLanguage(null, ['sw-TZ', 'en-US'], SUPPORTED), 'sw');
  assert.equal(chooseLanguage(null, ['de-DE', 'fr-CD'], SUPPORTED), 'fr');
  assert.equal(chooseLanguage(null, ['rw_RW'], SUPPORTED), 'rw');
  assert.equal(chooseLanguage(null, ['LG'], SUPPORTED), 'lg');
  assert.equal(chooseLanguage(null, ['de-DE', 'zh'], SUPPORTED), 'en');
  assert.equal(chooseLanguage(null, undefined, SUPPORTED), 'en');
});

test("the farmer's own choice wins, while the app still has it", () => {
  assert.equal(chooseLanguage('lg', ['sw-TZ'], SUPPORTED), 'lg');
  assert.equal(chooseLanguage('xx', ['sw-TZ'], SUPPORTED), 'sw');
  assert.equal(primary('sw-KE'), 'sw');
});

test('a key falls back to English, then to itself; placeholders are filled', () => {
  const catalogue = new Catalogue('sw', { 'app.waiting': 'Zinasubiri: {n}' }, { 'app.waiting': 'Waiting: {n}', 'app.yes': 'Yes' });
  assert.equal(catalogue.t('app.waiting', { n: 3 }), 'Zinasubiri: 3');
  assert.equal(catalogue.t('app.yes'), 'Yes');
  assert.equal(catalogue.t('app.nowhere'), 'app.nowhere');
  assert.equal(format('{n} of {m}', { n: 1 }), '1 of {m}');
});

test('the catalogue is loaded from i18n/, English behind it; a missing language is English', async () => {
  const fetchJson = async (url) => {
    const code = url.match(/i18n\/(\w+)\.json/)[1];
    if (!files[code]) throw new Error('404');
    return files[code];
  };
  const sw = await loadCatalogue('sw', fetchJson);
  assert.equal(sw.language, 'sw');
  assert.equal(sw.t('label.cmd.name'), files.sw['label.cmd.name']);
  assert.ok(!('_meta' in sw.strings));
  assert.equal((await loadCatalogue('xx', fetchJson)).language, 'en');
});

test('every language file has the keys the app reads, with the same placeholders, and its _meta', () => {
  const source = splitCatalogue(files.en).strings;
  for (const code of SUPPORTED) {
    const { meta, strings } = splitCatalogue(files[code]);
    assert.deepEqual(Object.keys(strings).sort(), Object.keys(source).sort(), code);
    for (const [key, text] of Object.entries(strings)) {
      const holes = (s) => (s.match(/\{[a-z_]+\}/g) || []).sort();
      assert.deepEqual(holes(text), holes(source[key]), `${code} ${key}`);
    }
    assert.equal(meta.language, code);
    assert.ok(meta.name && meta.flag, code);
  }
});
