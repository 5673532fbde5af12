// Builds the farmer's app into dist/, which the API serves at /app/:
//   index.html            the shell, naming the hashed bundle (served no-cache)
//   assets/app-<hash>.*   the app's JS and CSS (immutable)
//   i18n/<lang>.json      the one catalogue, ../schemas/catalogue/, copied here at build time (never a copy in git)
//   icons/, examples/, manifest.webmanifest   from public/
//   ort/                  onnxruntime-web's .mjs and .wasm, loaded only when the phone model first runs
//   sw.js                 Workbox: precaches the shell (not ort/, not the model), CacheFirst for ort/
// and prints the shell's size, gzipped, as a phone on 2G would fetch it.
import { cp, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

import * as esbuild from 'esbuild';
import { generateSW } from 'workbox-build';

const HERE = dirname(fileURLToPath(import.meta.url));
const DIST = join(HERE, 'dist');
const CATALOGUE = join(HERE, '..', 'schemas', 'catalogue');
const ORT = join(HERE, 'node_modules', 'onnxruntime-web');
const ORT_FILES = ['ort.wasm.min.mjs', 'ort-wasm-simd-threaded.mjs', 'ort-wasm-simd-threaded.wasm'];
const LANGUAGE_ORDER = ['en', 'sw', 'fr', 'rw', 'lg']; // schemas/catalogue.py LANGUAGES
const BASE = '/app/';
const PRECACHE = ['index.html', 'assets/app-*.{js,css}', 'i18n/*.json', 'icons/*.png', 'examples/*.jpg', 'manifest.webmanifest'];

async function languages() {
  const files = (await readdir(CATALOGUE)).filter((f) => f.endsWith('.json'));
  const found = [];
  await mkdir(join(DIST, 'i18n'), { recursive: true });
  for (const file of files) {
    const catalogue = JSON.parse(await readFile(join(CATALOGUE, file), 'utf8'));
    await writeFile(join(DIST, 'i18n', file), JSON.stringify(catalogue));
    const { language, name, flag, checked_by_native_speaker: checked } = catalogue._meta;
    found.push({ code: language, name, flag, checked });
  }
  const rank = (code) => (LANGUAGE_ORDER.includes(code) ? LANGUAGE_ORDER.indexOf(code) : LANGUAGE_ORDER.length);
  return found.sort((a, b) => rank(a.code) - rank(b.code) || a.code.localeCompare(b.code));
}

async function bundle(langs, ortVersion) {
  const result = await esbuild.build({
    entryPoints: { app: join(HERE, 'src', 'main.jsx') },
    outdir: join(DIST, 'assets'),
    entryNames: '[name]-[hash]',
    bundle: true,
    format: 'esm',
    minify: true,
    target: ['es2020', 'chrome87', 'safari15'], // Android's Chrome and WebView update themselves; onnxruntime-web needs WASM SIMD anyway
    jsx: 'automatic',
    jsxImportSource: 'preact',
    legalComments: 'linked',
    metafile: true,
    logLevel: 'warning',
    define: {
      __MHOGO_LANGUAGES__: JSON.stringify(langs),
      __ORT_VERSION__: JSON.stringify(ortVersion),
      'process.env.NODE_ENV': '"production"',
    },
  });
  const outputs = Object.keys(result.metafile.outputs).map((p) => relative(join(DIST, 'assets'), join(process.cwd(), p)));
  return { js: outputs.find((p) => p.endsWith('.js')), css: outputs.find((p) => p.endsWith('.css')) };
}

// The agronomists' workbench (src/review/), served by the API at /review: a bundle of its own, not precached (it is
// for a tablet with a connection, not an offline phone).
async function workbench() {
  const result = await esbuild.build({
    entryPoints: { review: join(HERE, 'src', 'review', 'main.js') },
    outdir: join(DIST, 'assets'),
    entryNames: '[name]-[hash]',
    bundle: true,
    format: 'esm',
    minify: true,
    target: ['es2020', 'chrome87', 'safari15'],
    legalComments: 'linked',
    metafile: true,
    logLevel: 'warning',
  });
  const outputs = Object.keys(result.metafile.outputs).map((p) => relative(join(DIST, 'assets'), join(process.cwd(), p)));
  const js = outputs.find((p) => p.endsWith('.js'));
  const css = outputs.find((p) => p.endsWith('.css'));
  const html = (await readFile(join(HERE, 'src', 'review', 'review.html'), 'utf8')).replace('%JS%', js).replace('%CSS%', css);
  await writeFile(join(DIST, 'review.html'), html);
  return { js, css };
}

async function serviceWorker(ortVersion) {
  return generateSW({
    globDirectory: DIST,
    globPatterns: PRECACHE,
    swDest: join(DIST, 'sw.js'),
    mode: 'production',
    inlineWorkboxRuntime: true,
    sourcemap: false,
    skipWaiting: true,
    clientsClaim: true,
    cleanupOutdatedCaches: true,
    navigateFallback: 'index.html',
    dontCacheBustURLsMatching: /^assets\//,
    runtimeCaching: [{
      urlPattern: new RegExp(`${BASE.replaceAll('/', '\\/')}ort\\/`),
      handler: 'CacheFirst',
      options: { cacheName: `mhogo-ort-${ortVersion}`, cacheableResponse: { statuses: [200] } },
    }],
  });
}

async function sizeOf(path) {
  const bytes = await readFile(path);
  return { raw: bytes.length, gzip: gzipSync(bytes, { level: 9 }).length };
}

async function walk(folder) {
  const entries = await readdir(folder, { withFileTypes: true });
  const files = await Promise.all(entries.map((e) => (e.isDirectory() ? walk(join(folder, e.name)) : [join(folder, e.name)])));
  return files.flat();
}

const kb = (n) => `${(n / 1024).toFixed(1)} KB`;

async function main() {
  await rm(DIST, { recursive: true, force: true });
  await mkdir(DIST, { recursive: true });
  const ortVersion = JSON.parse(await readFile(join(ORT, 'package.json'), 'utf8')).version;
  const langs = await languages();
  const { js, css } = await bundle(langs, ortVersion);
  const html = (await readFile(join(HERE, 'src', 'index.html'), 'utf8'))
    .replace('%JS%', js).replace('%CSS%', css).replaceAll('%BASE%', BASE);
  await writeFile(join(DIST, 'index.html'), html);
  const review = await workbench();
  await cp(join(HERE, 'public'), DIST, { recursive: true });
  await mkdir(join(DIST, 'ort'));
  for (const file of ORT_FILES) await cp(join(ORT, 'dist', file), join(DIST, 'ort', file));
  const sw = await serviceWorker(ortVersion);
  for (const warning of sw.warnings) console.warn('workbox:', warning);

  // What the service worker precaches, as its manifest names it, and sw.js itself.
  const worker = await readFile(join(DIST, 'sw.js'), 'utf8');
  const precached = [...worker.matchAll(/url:"([^"]+)"/g)].map((m) => m[1]).concat('sw.js');
  const total = { raw: 0, gzip: 0 };
  for (const name of precached) {
    const size = await sizeOf(join(DIST, name));
    total.raw += size.raw;
    total.gzip += size.gzip;
  }
  const firstLoad = { raw: 0, gzip: 0 }; // before the worker fetches the rest: the page, its JS and CSS, English
  for (const name of ['index.html', `assets/${js}`, `assets/${css}`, 'i18n/en.json']) {
    const size = await sizeOf(join(DIST, name));
    firstLoad.raw += size.raw;
    firstLoad.gzip += size.gzip;
  }
  let rest = 0;
  for (const path of await walk(DIST)) if (!relative(DIST, path).startsWith('ort/')) rest += (await stat(path)).size;
  const appJs = await sizeOf(join(DIST, 'assets', js));
  console.log(`dist/: assets/${js} (${kb(appJs.raw)}, ${kb(appJs.gzip)} gzip), assets/${css}, ${langs.length} languages (${langs.map((l) => l.code).join(' ')}), onnxruntime-web ${ortVersion} in ort/`);
  console.log(`first load (index.html, JS, CSS, en.json): ${kb(firstLoad.raw)}, ${kb(firstLoad.gzip)} gzip`);
  console.log(`shell (the ${precached.length} files the service worker keeps, sw.js included): ${kb(total.raw)}, ${kb(total.gzip)} gzip`);
  console.log(`dist/ without ort/: ${kb(rest)}`);
  const reviewJs = await sizeOf(join(DIST, 'assets', review.js));
  console.log(`workbench: review.html, assets/${review.js} (${kb(reviewJs.raw)}, ${kb(reviewJs.gzip)} gzip), assets/${review.css}`);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
